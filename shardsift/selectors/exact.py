"""``exact_dedup``: exact duplicate removal across all shards, by one 64-bit hash (plus the byte
length) of each document's normalized text. The score hashes the normalized text in one compiled
pass over the UTF-8 bytes without writing it; ``normalize()`` is the same text as Arrow computes it
(the tests compare the two on every option)."""
from __future__ import annotations

import numpy as np
import pyarrow as pa

from ..api import Decision, Param, Selector
from ..columns import spans
from .keep_policy import KeepPolicy, size_histogram, survivors
from .normalize import lower_spans


class ExactDedup(KeepPolicy, Selector):
    """Exact duplicate removal across all shards: one 64-bit hash (plus length) of normalized text."""

    name = "exact_dedup"
    scope = "global"

    lowercase = Param(bool, True, "compare texts lowercased (Unicode)")
    collapse_whitespace = Param(bool, True, "treat every whitespace run as one space and trim the ends")
    strip_punctuation = Param(bool, False, "drop punctuation (Unicode) before comparing")
    keep = Param(str, "first", "survivor of each group: first | longest | a numeric input column (largest)")

    def validate(self):
        self.check_keep()

    def normalize(self, texts):
        """The text documents are compared by (as Arrow computes it; score hashes it in one pass)."""
        import pyarrow.compute as pc  # imported when needed: ~0.045 CPU-s, which minhash_dedup's runs do without

        t = self._lowered_stripped(texts)
        if self.collapse_whitespace:
            t = pc.utf8_trim_whitespace(pc.replace_substring_regex(t, r"\s+", " "))
        return t

    def _lowered_stripped(self, texts):
        """normalize() up to its whitespace step: Unicode-lowercased, punctuation dropped, as set."""
        import pyarrow.compute as pc

        t = texts
        if self.lowercase:
            t = pc.utf8_lower(t)
        if self.strip_punctuation:
            t = pc.replace_substring_regex(t, r"[\p{P}\p{S}]+", "")
        return t

    def normalized_hashes(self, texts) -> tuple[np.ndarray, np.ndarray]:
        """(hash, byte length) of each text's ``normalize()``: the values of ``hash_strings`` and
        ``binary_length`` on it (tests check), from one pass over the bytes that writes no
        normalized text (text._normalized_hashes). Only documents with a non-ASCII byte are
        lowercased by Arrow first (lower_spans), and ``strip_punctuation``'s regex stays Arrow's.
        Arrow's regex for the whitespace alone ran at ~57 MB/s on the pool."""
        from ..text import TRIM_CODE_POINTS, _normalized_hashes

        if not isinstance(texts, (pa.Array, pa.ChunkedArray)):
            texts = pa.array(texts, pa.large_string())
        if self.strip_punctuation:
            starts, ends, data = spans(self._lowered_stripped(texts))
        elif self.lowercase:
            starts, ends, data = lower_spans(texts)
        else:
            starts, ends, data = spans(texts)
        return _normalized_hashes(np.ascontiguousarray(starts, dtype=np.int64),
                                  np.ascontiguousarray(ends, dtype=np.int64), data, bool(self.lowercase),
                                  bool(self.collapse_whitespace), TRIM_CODE_POINTS)

    def score(self, docs):
        h, size = self.normalized_hashes(docs.text)
        return {"hash": h, "norm_bytes": size, **self.keep_scores(docs)}

    def decide(self, scores, ctx):
        n = len(scores)
        if n == 0:
            return Decision(keep=np.zeros(0, dtype=bool), metrics={"groups": 0, "docs_removed": 0})
        h, ln = scores["hash"], scores["norm_bytes"]
        order = np.lexsort((np.arange(n), ln, h))
        hs, ls = h[order], ln[order]
        new = np.ones(n, dtype=bool)
        new[1:] = (hs[1:] != hs[:-1]) | (ls[1:] != ls[:-1])
        group_first = order[np.flatnonzero(new)]  # the first position of each group (stable order)
        gid = np.cumsum(new) - 1
        cluster = np.empty(n, dtype=np.int64)
        cluster[order] = group_first[gid]
        size = np.bincount(cluster, minlength=n)
        keep = survivors(cluster, self.keep, scores)
        sizes = size[size >= 2]
        metrics = {"groups": len(sizes), "docs_in_groups": int(sizes.sum()),
                   "docs_removed": int((~keep).sum()), "largest_group": int(sizes.max()) if len(sizes) else 0,
                   "group_sizes": size_histogram(sizes), "index_bytes_per_doc": 16 + 24}
        return Decision(keep=keep, reason="exact_duplicate",
                        score=size[cluster].astype(np.float64),
                        extra={"cluster": cluster, "cluster_size": size[cluster].astype(np.int64)},
                        metrics=metrics)
