"""Two small built-ins that prove the plugin API: a per-document filter and a global selector."""
from __future__ import annotations

import numpy as np

from ..api import Decision, Param, Selector, check_keep_n, count_to_keep, top_k_mask
from ..columns import hash_strings
from ..errors import ConfigError


class LengthSelector(Selector):
    """Keep documents whose whitespace word count and UTF-8 byte length lie within bounds."""

    name = "length"
    scope = "document"
    needs_text = False  # word and byte counts come with every batch

    min_words = Param(int, 0, "drop documents with fewer whitespace words", ge=0)
    max_words = Param(int, None, "drop documents with more whitespace words", ge=0)
    min_bytes = Param(int, 0, "drop documents with fewer UTF-8 bytes", ge=0)
    max_bytes = Param(int, None, "drop documents with more UTF-8 bytes", ge=0)

    def validate(self):
        for lo, hi in (("min_words", "max_words"), ("min_bytes", "max_bytes")):
            if getattr(self, hi) is not None and getattr(self, hi) < getattr(self, lo):
                raise ConfigError(f"length.{hi}: {getattr(self, hi)} is below {lo} ({getattr(self, lo)})")

    def score(self, docs):
        return docs.n_words.astype(np.float64)  # n_words and n_bytes reach decide() anyway

    def decide(self, scores, ctx=None):
        words, nbytes = scores["n_words"], scores["n_bytes"]
        reason = np.full(len(words), "", dtype=object)
        too_long = np.zeros(len(words), dtype=bool)
        if self.max_words is not None:
            too_long |= words > self.max_words
        if self.max_bytes is not None:
            too_long |= nbytes > self.max_bytes
        too_short = (words < self.min_words) | (nbytes < self.min_bytes)
        reason[too_long] = "too_long"
        reason[too_short] = "too_short"
        return Decision(keep=~(too_short | too_long), reason=reason)


class RandomSelector(Selector):
    """Keep an exact uniform random fraction (or count), seeded; the baseline for every benchmark.

    Each document's random key is a stable hash of (seed, id), so the selection does not depend on
    how documents are split into shards or how many workers run.
    """

    name = "random"
    scope = "global"
    needs_text = False

    keep = Param(float, None, "fraction of documents to keep", gt=0, le=1)
    n = Param(int, None, "number of documents to keep", ge=0)

    def validate(self):
        check_keep_n(self)
        if self.keep is None and self.n is None:
            raise ConfigError("random: give keep (a fraction in (0, 1]) or n (a count)")

    def score(self, docs):
        h = hash_strings(docs.ids) ^ np.uint64(self.seed_ * 0x9E3779B97F4A7C15 % (1 << 64))
        # splitmix-style remix so nearby seeds give unrelated keys; top 53 bits -> [0, 1)
        h = (h ^ (h >> np.uint64(31))) * np.uint64(0xBF58476D1CE4E5B9)
        return (h >> np.uint64(11)).astype(np.float64) / float(1 << 53)

    def decide(self, scores, ctx=None):
        k = count_to_keep(len(scores), self.keep, self.n, "random")
        return Decision(keep=top_k_mask(scores["score"], k), reason="random")
