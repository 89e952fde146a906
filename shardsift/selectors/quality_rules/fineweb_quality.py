"""FineWeb's quality rules (Penedo et al. 2024): punctuated lines, not a list, not repeated lines.

Lines are the text split on '\\n' with blank lines left out; a line ends with punctuation when its
last character (whitespace included) is one of datatrove's terminal punctuation marks; lengths are
in characters. Defaults are datatrove's ``FineWebQualityFilter``'s.
"""
from __future__ import annotations

import numba as nb
import numpy as np

from ...api import Param
from ...text import _mix64
from .charsets import SPACE, TERMINAL
from .kernels import FNV_OFFSET, FNV_PRIME, decode, max_doc_length, set_slot, table_mask
from .rules import RuleFilter

MEASUREMENTS = ("lines", "line_punct_ratio", "short_line_ratio", "char_dup_ratio", "newline_ratio")


@nb.njit(cache=True, nogil=True)
def _measure(starts, ends, data, cls, short_length):
    nd = starts.shape[0]
    out = np.zeros((5, nd), dtype=np.float64)
    cap = max_doc_length(starts, ends) + 1
    cps = np.empty(cap, dtype=np.uint32)
    keys = np.empty(1 << 12, dtype=np.uint64)     # grown for the largest document that needs more
    stamps = np.zeros(1 << 12, dtype=np.int64)
    for d in range(nd):
        n = decode(data, starts[d], ends[d], cps)
        newlines = 0
        for i in range(n):
            if cps[i] == 10:
                newlines += 1
        mask = table_mask(newlines + 1)
        if mask >= keys.shape[0]:
            keys = np.empty(mask + 1, dtype=np.uint64)
            stamps = np.zeros(mask + 1, dtype=np.int64)
        cur = d + 1
        lines = 0
        punct = 0
        short = 0
        dup_chars = 0
        words = 0
        a = 0
        while a <= n:
            b = a
            blank = True
            in_word = False
            h = FNV_OFFSET
            while b < n:
                c = cps[b]
                if c == 10:
                    break
                h = (h ^ np.uint64(c)) * FNV_PRIME
                if cls[c] & SPACE:
                    in_word = False
                else:
                    blank = False
                    if not in_word:
                        words += 1
                        in_word = True
                b += 1
            if not blank:
                lines += 1
                if cls[cps[b - 1]] & TERMINAL:
                    punct += 1
                if b - a <= short_length:
                    short += 1
                h = _mix64(h)
                slot, found = set_slot(keys, stamps, cur, mask, h)
                if found:
                    dup_chars += b - a
                else:
                    keys[slot] = h
                    stamps[slot] = cur
            a = b + 1
        out[0, d] = lines
        if lines:
            out[1, d] = punct / lines
            out[2, d] = short / lines
        out[3, d] = dup_chars / (n - newlines) if n > newlines else 0.0
        out[4, d] = newlines / words if words else 0.0
    return out


class FineWebQuality(RuleFilter):
    """Drop documents with few punctuated lines, mostly short lines, duplicated lines, or more
    newlines than a list of words would have."""

    name = "fineweb_quality"

    line_punct_thr = Param(float, 0.12, "drop documents with a smaller fraction of lines ending in "
                           "punctuation", ge=0, le=1)
    line_punct_exclude_zero = Param(bool, False, "keep documents with no punctuated line at all "
                                    "(the punctuation rule applies only above zero)")
    short_line_thr = Param(float, 0.67, "drop documents with a larger fraction of short lines", ge=0, le=1)
    short_line_length = Param(int, 30, "a line of at most this many characters is short", ge=0)
    char_duplicates_ratio = Param(float, 0.01, "drop documents with a larger fraction of characters "
                                  "(newlines excluded) in duplicated lines", ge=0, le=1)
    new_line_ratio = Param(float, 0.3, "drop documents with more newlines per word", ge=0)

    def measure(self, starts, ends, data, classes):
        out = _measure(starts, ends, data, classes, self.short_line_length)
        return dict(zip(MEASUREMENTS, out))

    def failures(self, m):
        punct = m["line_punct_ratio"]
        few_punct = punct < self.line_punct_thr
        if self.line_punct_exclude_zero:
            few_punct &= punct != 0
        return [("empty", m["lines"] == 0),
                ("line_punct_ratio", few_punct),
                ("short_line_ratio", m["short_line_ratio"] > self.short_line_thr),
                ("char_dup_ratio", m["char_dup_ratio"] > self.char_duplicates_ratio),
                ("newline_ratio", m["newline_ratio"] > self.new_line_ratio)]
