"""Token counts and ids from the distinct space-separated chunks of a batch, for tokenizers where a
space is a hard word boundary.

Under a whitespace-splitting pre-tokenizer (BERT's, ``Whitespace``, ``WhitespaceSplit``) and a
normalizer that maps characters one by one, a document's tokens are the concatenation of the
tokens of its chunks split on U+0020: no token spans a space, and a space yields no token. Text
repeats its words, so a batch of documents holds far fewer distinct chunks than chunks; each
distinct chunk is tokenized once, and documents gather their counts or ids from them with NumPy.

The distinct chunks go to the tokenizer joined into long strings by a separator that is added to a
private copy of the tokenizer as a special token: special tokens are matched in the raw text before
anything else, so the text between two separators is tokenized on its own, exactly as if alone, and
each separator yields exactly one id that no text can produce (the separator holds a space, and the
chunks hold none). One batch call over a few long strings costs far less than a call per chunk.

The engine hands the tokenizer batches of a few thousand documents, and the frequent chunks recur in
every batch, so the tokenizer keeps the chunks it has seen, with their ids, up to a bound
(``CACHE_CHUNKS`` distinct chunks): a batch looks its distinct chunks up there first (one Arrow
``index_in``) and tokenizes only the others.
"""
from __future__ import annotations

import json
from itertools import chain
from operator import attrgetter

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

SEPARATOR = "\x1f shardsift-chunk-end \x1f"
WHITESPACE_SPLITTERS = {"BertPreTokenizer", "Whitespace", "WhitespaceSplit"}
OTHER_SPLITTERS = {"Punctuation", "Digits"}
CHAR_NORMALIZERS = {"BertNormalizer", "Lowercase", "StripAccents", "NFD", "NFKD", "NFC", "NFKC"}
_GROUP_CHARS = 1 << 16  # characters per joined string: many strings let the Rust pool split the work
CACHE_CHUNKS = 200_000  # distinct chunks remembered across batches (their ids too: a few MB)


def _offsets(lengths: np.ndarray) -> np.ndarray:
    """int64 offsets[n+1] of n consecutive runs of the given lengths."""
    out = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=out[1:])
    return out


def _flatten(node: dict | None, key: str) -> list[dict]:
    if node is None:
        return []
    if node.get("type") == "Sequence":
        return [leaf for child in node.get(key, []) for leaf in _flatten(child, key)]
    return [node]


def space_is_a_boundary(spec: dict) -> bool:
    """True when a ``tokenizer.json`` (as a dict) tokenizes space-separated chunks independently:
    a whitespace-splitting pre-tokenizer, per-character normalizers only, and no added token that
    holds a space. Anything else (byte-level BPE, Metaspace, replacements) is left to the plain path."""
    pre = _flatten(spec.get("pre_tokenizer"), "pretokenizers")
    norm = _flatten(spec.get("normalizer"), "normalizers")
    types = {p.get("type") for p in pre}
    if not types & WHITESPACE_SPLITTERS or not types <= WHITESPACE_SPLITTERS | OTHER_SPLITTERS:
        return False
    if any(n.get("type") not in CHAR_NORMALIZERS for n in norm):
        return False
    return not any(any(ch.isspace() for ch in t.get("content", "")) for t in spec.get("added_tokens") or [])


class ChunkTokenizer:
    """Counts and ids through distinct chunks, with a ``tokenizers.Tokenizer`` of a qualifying
    ``tokenizer.json`` (truncation and padding off) that it owns: the separator is added to it."""

    def __init__(self, tok):
        from tokenizers import AddedToken

        self.tok = tok
        self.tok.add_special_tokens([AddedToken(SEPARATOR, special=True, normalized=False)])
        self.sep_id = self.tok.token_to_id(SEPARATOR)
        self._known = pa.array([], pa.large_string())  # chunks seen, in the order first seen
        self._known_ids = np.zeros(0, dtype=np.int64)  # their ids back to back
        self._known_off = np.zeros(1, dtype=np.int64)

    @staticmethod
    def qualifies(path: str) -> bool:
        with open(path, encoding="utf-8") as fh:
            return space_is_a_boundary(json.load(fh))

    def _chunks(self, texts: pa.Array):
        """(distinct chunks as an Arrow string array, chunk index per occurrence, chunks per document)."""
        parts = pc.split_pattern(texts, " ")
        per_doc = pc.list_value_length(parts).fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
        codes = pc.dictionary_encode(pc.list_flatten(parts))
        return codes.dictionary.cast(pa.large_string()), codes.indices.to_numpy(zero_copy_only=False), per_doc

    def _lookup(self, distinct: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(ids pool, start and length of each distinct chunk's ids in it): known chunks from the
        cache, the others tokenized now and remembered while the cache has room."""
        found = pc.index_in(distinct, value_set=self._known)
        hit = found.is_valid().to_numpy(zero_copy_only=False)
        miss = np.flatnonzero(~hit)
        new_ids, new_off = self._tokenize(distinct.take(pa.array(miss))) if len(miss) else \
            (np.zeros(0, dtype=np.int64), np.zeros(1, dtype=np.int64))
        starts = np.empty(len(distinct), dtype=np.int64)
        lengths = np.empty(len(distinct), dtype=np.int64)
        k = found.to_numpy(zero_copy_only=False)[hit].astype(np.int64)
        starts[hit], lengths[hit] = self._known_off[k], np.diff(self._known_off)[k]
        starts[miss], lengths[miss] = len(self._known_ids) + new_off[:-1], np.diff(new_off)
        pool = np.concatenate([self._known_ids, new_ids])
        room = CACHE_CHUNKS - len(self._known)
        if len(miss) and room > 0:
            take = min(room, len(miss))
            self._known = pa.concat_arrays([self._known, distinct.take(pa.array(miss[:take]))])
            self._known_ids = pool[:len(self._known_ids) + int(new_off[take])]
            self._known_off = np.concatenate([self._known_off, self._known_off[-1] + new_off[1:take + 1]])
        return pool, starts, lengths

    def _tokenize(self, distinct: pa.Array) -> tuple[np.ndarray, np.ndarray]:
        """(ids of all chunks back to back, int64 offsets[len(distinct)+1])."""
        if not len(distinct):
            return np.zeros(0, dtype=np.int64), np.zeros(1, dtype=np.int64)
        sizes = pc.utf8_length(distinct).to_numpy(zero_copy_only=False).astype(np.int64) + len(SEPARATOR)
        group = np.cumsum(sizes) // _GROUP_CHARS
        cuts = [0, *(np.flatnonzero(np.diff(group)) + 1).tolist(), len(distinct)]
        chunks = distinct.to_pylist()
        groups = [SEPARATOR.join(chunks[a:b]) + SEPARATOR for a, b in zip(cuts[:-1], cuts[1:])]
        encs = self.tok.encode_batch_fast(groups, add_special_tokens=False)
        seqs = list(map(attrgetter("ids"), encs))
        flat = np.fromiter(chain.from_iterable(seqs), np.int64, sum(map(len, seqs)))
        ends = np.flatnonzero(flat == self.sep_id)
        if len(ends) != len(chunks):  # cannot happen unless the tokenizer drops special tokens
            raise RuntimeError(f"chunk tokenizer: {len(ends)} separators for {len(chunks)} chunks")
        return flat[flat != self.sep_id], _offsets(np.diff(ends, prepend=-1) - 1)

    def count(self, texts: pa.Array) -> np.ndarray:
        """int64 tokens per document (nulls count 0)."""
        distinct, index, per_doc = self._chunks(texts)
        _, _, lengths = self._lookup(distinct)
        # tokens per chunk occurrence, then per document: the occurrences of a document are contiguous
        return np.diff(_offsets(lengths[index])[_offsets(per_doc)])

    def encode(self, texts: pa.Array) -> tuple[np.ndarray, np.ndarray]:
        """(uint32 ids of all documents back to back, int64 offsets[n+1]): each occurrence of a
        chunk copies that chunk's ids, by one fancy-indexing gather."""
        distinct, index, per_doc = self._chunks(texts)
        pool, starts, chunk_lengths = self._lookup(distinct)
        lengths = chunk_lengths[index]
        out_starts = _offsets(lengths)
        # output position p inside occurrence k reads pool[starts[index[k]] + p - out_starts[k]]
        src = np.repeat(starts[index] - out_starts[:-1], lengths) + np.arange(out_starts[-1], dtype=np.int64)
        return pool[src].astype(np.uint32), out_starts[_offsets(per_doc)]
