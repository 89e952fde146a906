"""numba pieces shared by the web-text rules: UTF-8 decoding, line breaks, a reusable hash set.

Each rule's kernel decodes one document's bytes into code points once (a buffer reused across the
batch), so lengths are in characters as in the reference, then measures it in one pass per rule
family. Duplicates within a document are found by 64-bit FNV-1a hashes of lines, paragraphs and
words (then mixed), kept in an open-addressing set sized per document and emptied by bumping a
stamp, not by clearing.
"""
from __future__ import annotations

import numba as nb
import numpy as np

FNV_OFFSET = np.uint64(0xCBF29CE484222325)
FNV_PRIME = np.uint64(0x100000001B3)


@nb.njit(cache=True, nogil=True)
def decode(data, start, end, out):
    """Decode the valid UTF-8 bytes data[start:end] into out; returns the count. ``out`` is uint32:
    a code point used as a table index is then never negative (no wraparound check)."""
    n = 0
    i = start
    while i < end:
        b = np.int32(data[i])
        if b < 0x80:
            cp = b
            i += 1
        elif b < 0xE0:
            cp = ((b & 0x1F) << 6) | (np.int32(data[i + 1]) & 0x3F)
            i += 2
        elif b < 0xF0:
            cp = ((b & 0x0F) << 12) | ((np.int32(data[i + 1]) & 0x3F) << 6) | (np.int32(data[i + 2]) & 0x3F)
            i += 3
        else:
            cp = (((b & 0x07) << 18) | ((np.int32(data[i + 1]) & 0x3F) << 12)
                  | ((np.int32(data[i + 2]) & 0x3F) << 6) | (np.int32(data[i + 3]) & 0x3F))
            i += 4
        out[n] = cp
        n += 1
    return n


@nb.njit(cache=True, nogil=True)
def line_break(cps, i, n):
    """Length of the line break at cps[i] as ``str.splitlines`` sees it (\\r\\n is one), or 0."""
    c = cps[i]
    if 30 < c < 0x85:
        return 0
    if c == 13:
        return 2 if i + 1 < n and cps[i + 1] == 10 else 1
    if c == 10 or c == 11 or c == 12 or c == 28 or c == 29 or c == 30 or c == 0x85 or c == 0x2028 or c == 0x2029:
        return 1
    return 0


@nb.njit(cache=True, nogil=True)
def table_mask(items):
    """Mask of the smallest power-of-two table at most half full with ``items`` keys: each
    document uses only the front of the table, so its probes stay in cache."""
    size = 16
    while size < 2 * items + 2:
        size *= 2
    return size - 1


@nb.njit(cache=True, nogil=True)
def set_slot(keys, stamps, cur, mask, h):
    """(slot, found) of key h in the set stamped ``cur``: its slot if present, else the free slot
    where it goes. Slots stamped with an older value read as free, so a new stamp empties the set."""
    i = np.int64(h & np.uint64(mask))
    while stamps[i] == cur:
        if keys[i] == h:
            return i, True
        i = (i + 1) & mask
    return i, False


@nb.njit(cache=True, nogil=True)
def max_doc_length(starts, ends):
    """The longest document in bytes (an upper bound on its code points)."""
    m = 0
    for d in range(starts.shape[0]):
        m = max(m, ends[d] - starts[d])
    return m
