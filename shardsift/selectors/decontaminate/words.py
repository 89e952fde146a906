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
def _decode_into(data, lo, hi, out, row, col, width):
    """Decode UTF-8 data[lo:hi] into out[row, col:]; returns the next column (stops at width)."""
    i = lo
    while i < hi:
        if col >= width:
            return width + 1     # cut
        cp, size = _code_point(data, i)
        if 65 <= cp <= 90:
            cp += 32
        out[row, col] = cp
        col += 1
        i += size
    return col


@nb.njit(cache=True, nogil=True)
def _phrases(data, wstart, wend, first, length, width):
    """Code points (uint32[n, width], zero padded) of the words first[d]..first[d]+length[d]-1
    joined by single spaces, for the rows with length > 0; longer phrases end with '…'."""
    n = first.shape[0]
    out = np.zeros((n, width), dtype=np.uint32)
    for d in range(n):
        if length[d] <= 0:
            continue
        col = 0
        for w in range(first[d], first[d] + length[d]):
            if col > 0:
                if col >= width:
                    col = width + 1
                    break
                out[d, col] = 32
                col += 1
            col = _decode_into(data, wstart[w], wend[w], out, d, col, width)
            if col > width:
                break
        if col > width:
            out[d, width - 1] = 0x2026
    return out


def phrases(words: Words, first: np.ndarray, length: np.ndarray, max_chars: int) -> np.ndarray:
    """A NumPy str array: per text, its words ``first .. first + length - 1`` (word indices into
    ``words``) as one space-joined phrase, or ``""`` where length is 0. Its width is the longest
    phrase, at most ``max_chars`` characters (a longer one is cut and ends with '…'); the
    characters are written by the kernel straight into the array's buffer."""
    n = len(first)
    span = np.zeros(n, dtype=np.int64)
    has = length > 0
    if has.any():
        f, ln = first[has], length[has]
        last = f + ln - 1
        span[has] = words.ends[last] - words.starts[f]   # bytes >= characters
    width = int(min(max(int(span.max()) if n else 1, 1), max_chars))
    cps = _phrases(words.data, words.starts, words.ends, np.asarray(first, np.int64),
                   np.asarray(length, np.int64), width)
    return cps.view(f"<U{width}").reshape(n)
