"""The ``decontaminate`` stage: drop documents that share a word n-gram with an evaluation set.

``fit`` reads every benchmark once (any path the input readers take: Parquet, JSONL, a glob, a
folder, an object-store URI) and keeps the hashes of its normalized word n-grams (``ngram_set``); the
fitted selector, set included, is what every worker loads. ``score`` looks up each document's
n-grams in a compiled pass per batch and records the number of matching n-grams, the benchmark of
the first match and that n-gram's words; ``decide`` drops every document with a match, its reason
``decontaminate:<benchmark name>``.
"""
from __future__ import annotations

import os

import numpy as np

from ...api import Decision, Param, Selector
from ...errors import ConfigError, DataError
from .ngram_set import NgramSet, UniqueHashes, _eval_ngrams, combine
from .words import Words, phrases, word_table

BENCHMARK_KEYS = ("path", "name", "text_column")
MAX_PHRASE_BYTES = 200   # the recorded matching n-gram is cut (with '…') beyond this many UTF-8 bytes
READ_BATCH_BYTES = 1 << 20   # benchmark text per batch: the fit's scratch is ~60 bytes per word of it


class Decontaminate(Selector):
    """Drop documents sharing a normalized word n-gram with any text of the given evaluation sets."""

    name = "decontaminate"
    scope = "document"
    needs_fit = True

    benchmarks = Param(list, doc="evaluation sets [{path, name, text_column}]: path any input "
                       "(Parquet, JSONL, glob), name as in the drop reason (default the file name), "
                       "text_column default text", path="corpus")
    n = Param(int, 13, "n-gram length in normalized words (lowercase, punctuation dropped)", ge=1)
    min_words = Param(int, 8, "an evaluation text shorter than n words counts as one n-gram of its "
                      "own length when it has at least this many words (shorter ones are ignored)",
                      ge=1)

    def validate(self):
        if not self.benchmarks:
            raise ConfigError("decontaminate.benchmarks: give at least one evaluation set {path, name}")
        if len(self.benchmarks) > 65535:
            raise ConfigError(f"decontaminate.benchmarks: at most 65535 sets, got {len(self.benchmarks)}")
        seen: dict[str, int] = {}
        for i, b in enumerate(self.benchmarks):
            where = f"decontaminate.benchmarks[{i}]"
            if isinstance(b, str):
                b = {"path": b}
            if not isinstance(b, dict):
                raise ConfigError(f"{where}: expected a mapping {{path, name, text_column}}, got {b!r}")
            extra = sorted(set(b) - set(BENCHMARK_KEYS))
            if extra:
                raise ConfigError(f"{where}: unknown key {extra[0]!r}; valid keys: {', '.join(BENCHMARK_KEYS)}")
            if not isinstance(b.get("path"), str) or not b["path"]:
                raise ConfigError(f"{where}.path: a path is required (a file, glob or folder)")
            for key in ("name", "text_column"):
                if key in b and (not isinstance(b[key], str) or not b[key]):
                    raise ConfigError(f"{where}.{key}: expected a non-empty string, got {b[key]!r}")
            name = self._name(b)
            if name in seen:
                raise ConfigError(f"{where}.name: benchmark name {name!r} is used twice "
                                  f"(also benchmarks[{seen[name]}])")
            seen[name] = i

    @staticmethod
    def _name(b) -> str:
        if isinstance(b, str):
            b = {"path": b}
        if b.get("name"):
            return b["name"]
        base = os.path.basename(b["path"].rstrip("/"))
        for ext in (".gz", ".zst", ".parquet", ".jsonl", ".json"):
            base = base[:-len(ext)] if base.endswith(ext) else base
        return base or b["path"]

    def _specs(self):
        """(name, read_input spec) of each benchmark."""
        for b in self.benchmarks:
            b = {"path": b} if isinstance(b, str) else b
            yield self._name(b), {"path": b["path"], "text_column": b.get("text_column", "text"),
                                  "batch_bytes": READ_BATCH_BYTES}

    # -- fit -------------------------------------------------------------------------------
    def check(self, read_input) -> None:
        """Each benchmark, before the run writes anything: the path resolves, the text column is
        there, the set is not empty and some text has min_words words (evaluation sets are small:
        reading them twice is cheap next to a run that fails after its scan)."""
        for i, (name, spec) in enumerate(self._specs()):
            where = f"decontaminate.benchmarks[{i}] ({name})"
            texts = used = 0
            try:
                for docs in read_input(spec, where):
                    texts += len(docs)
                    used += int((np.diff(Words(docs.text).offsets) >= self.min_words).sum())
                    if used:
                        break
            except DataError as err:
                raise self._named(err, where) from None
            self._refuse_unusable(where, spec, texts, used)

    def _refuse_unusable(self, where: str, spec: dict, texts: int, used: int) -> None:
        """One line for a benchmark with no texts, or none of at least min_words words."""
        if texts == 0:
            raise DataError(f"{where}: {spec['path']} is empty (no texts in column {spec['text_column']!r})")
        if used == 0:
            raise DataError(f"{where}: none of the {texts} texts of {spec['path']} has {self.min_words} "
                            "words or more (min_words): nothing to decontaminate against")

    @staticmethod
    def _named(err: DataError, where: str) -> DataError:
        msg = str(err).replace("set input.text_column", "set text_column")
        return DataError(msg if msg.startswith(where) else f"{where}: {msg}")

    def setup(self) -> None:
        word_table()

    def fit(self, ctx) -> dict:
        long, shorts, stats = [], [], {}
        short = np.zeros(self.n + 1, dtype=bool)
        for i, (name, spec) in enumerate(self._specs()):
            where = f"decontaminate.benchmarks[{i}] ({name})"
            hashes, short_hashes, st = self._read_benchmark(ctx, spec, where, short)
            long.append(hashes)
            shorts.append(short_hashes)
            stats[name] = st
        hashes, bench = combine(long)
        del long
        self.set_ = NgramSet(hashes, bench, *combine(shorts), short, self.n)
        self.names_ = [name for name, _ in self._specs()]
        return {"benchmarks": stats, "ngrams": len(self.set_), "set_bytes": self.set_.nbytes,
                "bytes_per_ngram": 10, "short_lengths": [int(k) for k in np.flatnonzero(short)]}

    def _read_benchmark(self, ctx, spec, where: str, short: np.ndarray):
        """One benchmark's unique n-gram hashes and its short texts' hashes, read batch by batch
        (UniqueHashes: memory follows the distinct n-grams, not the text)."""
        acc, short_acc = UniqueHashes(), UniqueHashes()
        texts = used = short_texts = 0
        try:
            for docs in ctx.read_input(spec, what=where):
                words = Words(docs.text)
                h, n_words, per_text = _eval_ngrams(words.hashes, words.offsets, self.n, self.min_words)
                texts += len(docs)
                used += int((per_text > 0).sum())
                is_short = (n_words < self.n) & (per_text > 0)
                short_texts += int(is_short.sum())
                short[n_words[is_short]] = True
                if is_short.any():
                    from_short = np.repeat(is_short, per_text)
                    acc.add(h[~from_short])
                    short_acc.add(h[from_short])
                else:
                    acc.add(h)
                del words, h
        except DataError as err:
            raise self._named(err, where) from None
        self._refuse_unusable(where, spec, texts, used)
        hashes, short_hashes = acc.result(), short_acc.result()
        return hashes, short_hashes, {"texts": texts, "texts_used": used, "short_texts": short_texts,
                                      "ngrams": int(len(hashes) + len(short_hashes))}

    # -- score and decide --------------------------------------------------------------------
    def score(self, docs):
        words = Words(docs.text)
        count, first, length, bench = self.set_.match(words.hashes, words.offsets)
        return {"matches": count, "benchmark": bench,
                "match_ngram": phrases(words, first, length, MAX_PHRASE_BYTES)}

    def decide(self, scores, ctx) -> Decision:
        count = scores["matches"]
        bench = scores["benchmark"]
        keep = count == 0
        names = np.array([*self.names_, ""])
        name = names[np.where(bench >= 0, bench, len(self.names_))]
        reason = np.char.add("decontaminate:", name)
        return Decision(keep=keep, reason=np.where(keep, "", reason), score=count.astype(np.float64),
                        extra={"matches": count, "benchmark": name, "match_ngram": scores["match_ngram"]})
