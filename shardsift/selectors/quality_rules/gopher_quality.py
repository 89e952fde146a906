"""Gopher quality rules (Rae et al. 2021, MassiveText, appendix A): does a document read like prose?

Words are runs of non-whitespace (``str.split``); a word made only of punctuation is a symbol and
does not count toward the word count or the mean word length. Lines are ``str.splitlines``'.
Defaults are the paper's thresholds (datatrove's ``GopherQualityFilter`` defaults).
"""
from __future__ import annotations

import numba as nb
import numpy as np

from ...api import Param
from .charsets import ALPHA, PUNCT, SPACE
from .kernels import decode, line_break, max_doc_length
from .rules import RuleFilter

MEASUREMENTS = ("word_count", "mean_word_length", "hash_ratio", "ellipsis_ratio", "bullet_lines",
                "ellipsis_lines", "alpha_words", "stop_words")


@nb.njit(cache=True, nogil=True)
def _stop_word(cps, a, b):
    """Bit of the Gopher stop word cps[a:b] is (the be to of and that have with), or 0."""
    m = b - a
    if m < 2 or m > 4:
        return 0
    c0, c1 = cps[a], cps[a + 1]
    if m == 2:
        if c0 == 98 and c1 == 101:
            return 2      # be
        if c0 == 116 and c1 == 111:
            return 4      # to
        if c0 == 111 and c1 == 102:
            return 8      # of
        return 0
    c2 = cps[a + 2]
    if m == 3:
        if c0 == 116 and c1 == 104 and c2 == 101:
            return 1      # the
        if c0 == 97 and c1 == 110 and c2 == 100:
            return 16     # and
        return 0
    c3 = cps[a + 3]
    if c0 == 116 and c1 == 104 and c2 == 97 and c3 == 116:
        return 32         # that
    if c0 == 104 and c1 == 97 and c2 == 118 and c3 == 101:
        return 64         # have
    if c0 == 119 and c1 == 105 and c2 == 116 and c3 == 104:
        return 128        # with
    return 0


@nb.njit(cache=True, nogil=True)
def _measure(starts, ends, data, cls):
    """One pass per document: words, symbols and lines together, one class lookup per character."""
    nd = starts.shape[0]
    out = np.zeros((8, nd), dtype=np.float64)
    cps = np.empty(max_doc_length(starts, ends) + 1, dtype=np.uint32)
    for d in range(nd):
        n = decode(data, starts[d], ends[d], cps)
        words = content_words = content_chars = alpha_words = stops = 0
        hashes = ellipses = dots = 0
        lines = bullets = ellipsis_lines = 0
        in_word = content = alpha = False
        word_start = 0
        line_start = 0
        line_first = -1          # first non-space character of the current line, -1 while none
        line_last = -1           # position of its last non-space character
        i = 0
        while i <= n:
            at_end = i == n
            c = 10 if at_end else cps[i]
            k = SPACE if at_end else cls[c]
            if c == 35:
                hashes += 1
            if c == 46:
                dots += 1
            else:
                ellipses += dots // 3
                dots = 0
                if c == 0x2026:
                    ellipses += 1
            if k & SPACE:
                if in_word:
                    in_word = False
                    words += 1
                    if content:
                        content_words += 1
                        content_chars += i - word_start
                    if alpha:
                        alpha_words += 1
                    stops |= _stop_word(cps, word_start, i)
                brk = line_break(cps, i, n) if not at_end else (1 if line_start < n else 0)
                if brk:
                    lines += 1
                    if line_first == 0x2022 or line_first == 45:
                        bullets += 1
                    if line_last >= 0 and (cps[line_last] == 0x2026 or (
                            line_last - 2 >= line_start and cps[line_last] == 46
                            and cps[line_last - 1] == 46 and cps[line_last - 2] == 46)):
                        ellipsis_lines += 1
                    i += brk
                    line_start = i
                    line_first = -1
                    line_last = -1
                    continue
            else:
                if not in_word:
                    in_word = True
                    word_start = i
                    content = alpha = False
                if not (k & PUNCT):
                    content = True
                if k & ALPHA:
                    alpha = True
                if line_first < 0:
                    line_first = c
                line_last = i
            i += 1
        out[0, d] = content_words
        out[1, d] = content_chars / content_words if content_words else np.nan
        out[2, d] = hashes / words if words else 0.0
        out[3, d] = ellipses / words if words else 0.0
        out[4, d] = bullets / lines if lines else 0.0
        out[5, d] = ellipsis_lines / lines if lines else 0.0
        out[6, d] = alpha_words / words if words else 0.0
        bits = 0
        while stops:
            bits += stops & 1
            stops >>= 1
        out[7, d] = bits
    return out


class GopherQuality(RuleFilter):
    """Keep documents that read like prose: enough words of ordinary length, few symbols, bullets
    or trailing ellipses, mostly alphabetic words, and some English stop words."""

    name = "gopher_quality"

    min_doc_words = Param(int, 50, "drop documents with fewer non-symbol words", ge=0)
    max_doc_words = Param(int, 100_000, "drop documents with more non-symbol words", ge=0)
    min_avg_word_length = Param(float, 3.0, "drop documents whose mean word length (characters) is below", ge=0)
    max_avg_word_length = Param(float, 10.0, "drop documents whose mean word length (characters) is above", ge=0)
    max_symbol_word_ratio = Param(float, 0.1, "drop documents with more '#', or more '...'/'…', per word", ge=0)
    max_bullet_lines_ratio = Param(float, 0.9, "drop documents with a larger fraction of lines starting with "
                                   "a bullet ('•' or '-')", ge=0, le=1)
    max_ellipsis_lines_ratio = Param(float, 0.3, "drop documents with a larger fraction of lines ending "
                                     "with an ellipsis", ge=0, le=1)
    min_alpha_words_ratio = Param(float, 0.8, "drop documents with a smaller fraction of words holding an "
                                  "alphabetic character", ge=0, le=1)
    min_stop_words = Param(int, 2, "drop documents with fewer distinct stop words (the, be, to, of, and, "
                           "that, have, with)", ge=0, le=8)

    def validate(self):
        self.check_order("min_doc_words", "max_doc_words")
        self.check_order("min_avg_word_length", "max_avg_word_length")

    def measure(self, starts, ends, data, classes):
        return dict(zip(MEASUREMENTS, _measure(starts, ends, data, classes)))

    def failures(self, m):
        return [
            ("word_count", (m["word_count"] < self.min_doc_words) | (m["word_count"] > self.max_doc_words)),
            ("mean_word_length", (m["mean_word_length"] < self.min_avg_word_length)
             | (m["mean_word_length"] > self.max_avg_word_length)),
            ("hash_ratio", m["hash_ratio"] > self.max_symbol_word_ratio),
            ("ellipsis_ratio", m["ellipsis_ratio"] > self.max_symbol_word_ratio),
            ("bullet_lines", m["bullet_lines"] > self.max_bullet_lines_ratio),
            ("ellipsis_lines", m["ellipsis_lines"] > self.max_ellipsis_lines_ratio),
            ("alpha_words", m["alpha_words"] < self.min_alpha_words_ratio),
            ("stop_words", m["stop_words"] < self.min_stop_words),
        ]
