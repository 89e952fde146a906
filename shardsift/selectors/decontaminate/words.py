"""Normalized words of a batch of texts, as hashes and byte spans, in one compiled pass.

A word is a maximal run of letters, digits and combining marks (``str.isalnum`` or Unicode
category M); every other code point (whitespace, punctuation, symbols, ``_``) separates words and
is dropped. Texts are lowercased first: ASCII letters in the kernel, and the texts with a non-ASCII
byte by Arrow's Unicode ``utf8_lower`` (``normalize.prepared_spans``). So ``"The U.S.-based"`` is
the words ``the u s based``. Each word's hash is FNV-1a 64 over its lowercased UTF-8 bytes, then
splitmix64, and its byte span points into the (possibly lowercased) batch buffer, so a matching
n-gram can be written back as text.
"""
from __future__ import annotations

import unicodedata
from functools import lru_cache

import numba as nb
import numpy as np

from ...text import _mix64
from ..normalize import prepared_spans


@lru_cache(maxsize=1)
def word_table() -> np.ndarray:
    """uint8 per code point: 1 where it belongs to a word (built once per process, ~0.2 CPU-s)."""
    alnum = np.frombuffer(bytes(chr(c).isalnum() for c in range(0x110000)), dtype=np.uint8)
    marks = np.frombuffer(bytes(unicodedata.category(chr(c))[0] == "M" for c in range(0x110000)),
                          dtype=np.uint8)
    table = alnum | marks
    table.flags.writeable = False
    return table


@nb.njit(cache=True, nogil=True)
def _code_point(data, i):
    """(code point, byte length) of the valid UTF-8 character at data[i]."""
    b = np.int64(data[i])
    if b < 0x80:
        return b, 1
    if b < 0xE0:
        return ((b & 0x1F) << 6) | (np.int64(data[i + 1]) & 0x3F), 2
    if b < 0xF0:
        return ((b & 0x0F) << 12) | ((np.int64(data[i + 1]) & 0x3F) << 6) | (np.int64(data[i + 2]) & 0x3F), 3
    return ((((b & 0x07) << 18) | ((np.int64(data[i + 1]) & 0x3F) << 12)
             | ((np.int64(data[i + 2]) & 0x3F) << 6) | (np.int64(data[i + 3]) & 0x3F)), 4)


@nb.njit(cache=True, nogil=True)
def _count_words(starts, ends, data, table):
    total = 0
    for d in range(starts.shape[0]):
        i = starts[d]
        inside = False
        while i < ends[d]:
            cp, size = _code_point(data, i)
            w = table[cp] != 0
            if w and not inside:
                total += 1
            inside = w
            i += size
    return total


@nb.njit(cache=True, nogil=True)
def _words(starts, ends, data, table):
    """(hash, start, end) of every word of every text, and each text's first word (offsets[n+1]).
    A counting pass first: the arrays are allocated at their size (a bound from the bytes would
    be four times the words' memory)."""
    n = starts.shape[0]
    total = _count_words(starts, ends, data, table)
    hashes = np.empty(total, dtype=np.uint64)
    wstart = np.empty(total, dtype=np.int64)
    wend = np.empty(total, dtype=np.int64)
    offsets = np.zeros(n + 1, dtype=np.int64)
    prime = np.uint64(0x100000001B3)
    t = 0
    for d in range(n):
        i = starts[d]
        end = ends[d]
        inside = False
        h = np.uint64(0xCBF29CE484222325)
        while i < end:
            cp, size = _code_point(data, i)
            if table[cp]:
                if not inside:
                    inside = True
                    h = np.uint64(0xCBF29CE484222325)
                    wstart[t] = i
                for k in range(size):
                    c = data[i + k]
                    if 65 <= c <= 90:
                        c += 32
                    h = (h ^ np.uint64(c)) * prime
            elif inside:
                inside = False
                hashes[t] = _mix64(h)
                wend[t] = i
                t += 1
            i += size
        if inside:
            hashes[t] = _mix64(h)
            wend[t] = end
            t += 1
        offsets[d + 1] = t
    return hashes, wstart, wend, offsets


class Words:
    """The normalized words of a batch: ``hashes[offsets[d]:offsets[d+1]]`` are text d's words,
    ``starts``/``ends`` their byte spans in ``data``."""

    def __init__(self, texts):
        starts, ends, data = prepared_spans(texts, lower_case=True, spaces=False)
        self.data = data
        self.hashes, self.starts, self.ends, self.offsets = _words(
            np.ascontiguousarray(starts, dtype=np.int64), np.ascontiguousarray(ends, dtype=np.int64),
            data, word_table())

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def counts(self) -> np.ndarray:
        return np.diff(self.offsets)


@nb.njit(cache=True, nogil=True)
def _phrases(data, wstart, wend, first, length, width):
    """UTF-8 bytes (uint8[n, width], zero padded) of the words first[d]..first[d]+length[d]-1,
    ASCII lowercased, joined by single spaces, for the rows with length > 0. A longer phrase is
    cut at a character boundary and ends with '…' (width >= 4)."""
    n = first.shape[0]
    out = np.zeros((n, width), dtype=np.uint8)
    for d in range(n):
        col = 0
        cut = False
        for w in range(first[d], first[d] + max(length[d], 0)):
            if col:
                if col >= width:
                    cut = True
                    break
                out[d, col] = 32
                col += 1
            for i in range(wstart[w], wend[w]):
                if col >= width:
                    cut = True
                    break
                c = data[i]
                out[d, col] = c + 32 if 65 <= c <= 90 else c
                col += 1
            if cut:
                break
        if cut:
            col = width - 3
            while col > 0 and (out[d, col] & 0xC0) == 0x80:
                col -= 1          # out[d, col] starts a character: cut before it
            out[d, col:] = 0
            out[d, col] = 0xE2
            out[d, col + 1] = 0x80
            out[d, col + 2] = 0xA6
    return out


def phrases(words: Words, first: np.ndarray, length: np.ndarray, max_bytes: int) -> np.ndarray:
    """A NumPy bytes array (UTF-8): per text, its words ``first .. first + length - 1`` (word
    indices into ``words``) as one space-joined phrase, or ``b""`` where length is 0. Its width is
    the longest phrase, at most ``max_bytes`` (a longer one is cut and ends with '…'): UTF-8
    keeps the column at a byte per character of Latin text, where a str array takes four."""
    n = len(first)
    span = np.zeros(n, dtype=np.int64)
    has = length > 0
    if has.any():
        f, ln = first[has], length[has]
        span[has] = words.ends[f + ln - 1] - words.starts[f]   # the phrase is no longer
    width = int(min(max(int(span.max()) if n else 1, 4), max_bytes))
    raw = _phrases(words.data, words.starts, words.ends, np.asarray(first, np.int64),
                   np.asarray(length, np.int64), width)
    return raw.view(f"S{width}").reshape(n)
