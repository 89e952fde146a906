"""Gopher repetition rules (Rae et al. 2021, table A1): is a document mostly repeated text?

Paragraphs are the stripped text split on two or more newlines, lines the text split on runs of
newlines; words are runs of non-whitespace. Character fractions are over the document's length in
characters. An n-gram is hashed from its words' hashes (a polynomial over them), so two n-grams are
equal when their words are. Defaults are the paper's (datatrove's ``GopherRepetitionFilter``).
"""
from __future__ import annotations

import numba as nb
import numpy as np

from ...api import Param
from ...text import _mix64
from .charsets import SPACE
from .kernels import FNV_OFFSET, FNV_PRIME, decode, max_doc_length, set_slot, table_mask
from .rules import RuleFilter

TOP_NGRAMS = (2, 3, 4)
DUP_NGRAMS = (5, 6, 7, 8, 9, 10)
MEASUREMENTS = (("empty", "dup_para_frac", "dup_para_char_frac", "dup_line_frac", "dup_line_char_frac")
                + tuple(f"top_{n}_gram" for n in TOP_NGRAMS) + tuple(f"dup_{n}_gram" for n in DUP_NGRAMS))
_BASE = np.uint64(0x100000001B3)
_PARAGRAPH_SALT = np.uint64(0x9E3779B97F4A7C15)


@nb.njit(cache=True, nogil=True)
def _is_dup(keys, stamps, cur, mask, h):
    """Whether key h is in the set stamped ``cur``; adds it when not."""
    slot, found = set_slot(keys, stamps, cur, mask, h)
    if not found:
        keys[slot] = h
        stamps[slot] = cur
    return found


@nb.njit(cache=True, nogil=True)
def _dup_lines_paragraphs(cps, n, lo, hi, keys, stamps, cur, mask, out, d):
    """Duplicate lines (cps[:n] split on runs of newlines) and paragraphs (cps[lo:hi], the stripped
    text, split on runs of two or more) in one pass, hashing both as it goes; paragraph keys are
    salted so the two share one set (stamped ``cur``, empty, room for every line and paragraph)."""
    lines = dup_lines = dup_line_chars = 0
    paras = dup_paras = dup_para_chars = 0
    hl = FNV_OFFSET
    hp = FNV_OFFSET
    line_start = 0
    para_start = lo
    i = 0
    while i <= n:
        c = 10 if i == n else cps[i]
        if c != 10:
            hl = (hl ^ np.uint64(c)) * FNV_PRIME
            if lo <= i < hi:
                hp = (hp ^ np.uint64(c)) * FNV_PRIME
            i += 1
            continue
        run = 1
        while i + run < n and cps[i + run] == 10:
            run += 1
        lines += 1
        if _is_dup(keys, stamps, cur, mask, _mix64(hl)):
            dup_lines += 1
            dup_line_chars += i - line_start
        hl = FNV_OFFSET
        line_start = i + run
        if lo <= i < hi and run == 1:           # one newline stays inside its paragraph
            hp = (hp ^ np.uint64(10)) * FNV_PRIME
        elif (lo <= i < hi) or i == n:          # a paragraph ends (the last one at the end)
            paras += 1
            if _is_dup(keys, stamps, cur, mask, _mix64(hp ^ _PARAGRAPH_SALT)):
                dup_paras += 1
                dup_para_chars += min(i, hi) - para_start
            hp = FNV_OFFSET
            para_start = i + run
        i += run
    out[1, d] = dup_paras / paras
    out[2, d] = dup_para_chars / n
    out[3, d] = dup_lines / lines
    out[4, d] = dup_line_chars / n


@nb.njit(cache=True, nogil=True)
def _measure(starts, ends, data, cls):
    nd = starts.shape[0]
    out = np.zeros((5 + len(TOP_NGRAMS) + len(DUP_NGRAMS), nd), dtype=np.float64)
    cap = max_doc_length(starts, ends) + 1
    cps = np.empty(cap, dtype=np.uint32)
    word_hash = np.empty(cap, dtype=np.uint64)
    prefix = np.empty(cap + 1, dtype=np.uint64)    # polynomial prefix hashes over word hashes
    chars = np.empty(cap + 1, dtype=np.int64)      # prefix sums of word lengths
    size = 1 << 12                                 # grown for the largest document that needs more
    keys = np.empty(size, dtype=np.uint64)
    stamps = np.zeros(size, dtype=np.int32)
    counts = np.empty(size, dtype=np.int32)
    firsts = np.empty(size, dtype=np.int32)
    cur = np.int32(0)
    powers = np.empty(11, dtype=np.uint64)
    powers[0] = np.uint64(1)
    for k in range(1, 11):
        powers[k] = powers[k - 1] * _BASE
    for d in range(nd):
        n = decode(data, starts[d], ends[d], cps)
        if n == 0:
            out[0, d] = 1.0
            continue
        lo, hi = 0, n
        while lo < hi and cls[cps[lo]] & SPACE:
            lo += 1
        while hi > lo and cls[cps[hi - 1]] & SPACE:
            hi -= 1
        newlines = 0
        for i in range(n):
            if cps[i] == 10:
                newlines += 1
        mask = table_mask(2 * newlines + 2)
        if mask >= keys.shape[0]:
            keys = np.empty(mask + 1, dtype=np.uint64)
            stamps = np.zeros(mask + 1, dtype=np.int32)
            counts = np.empty(mask + 1, dtype=np.int32)
            firsts = np.empty(mask + 1, dtype=np.int32)
        cur += 1
        _dup_lines_paragraphs(cps, n, lo, hi, keys, stamps, cur, mask, out, d)
        w = 0
        i = 0
        prefix[0] = np.uint64(0)
        chars[0] = 0
        while i < n:
            if cls[cps[i]] & SPACE:
                i += 1
                continue
            a = i
            h = FNV_OFFSET
            while i < n:
                c = cps[i]
                if cls[c] & SPACE:
                    break
                h = (h ^ np.uint64(c)) * FNV_PRIME
                i += 1
            word_hash[w] = _mix64(h)
            prefix[w + 1] = prefix[w] * _BASE + word_hash[w]
            chars[w + 1] = chars[w] + (i - a)
            w += 1
        row = 5
        mask = table_mask(w)
        if mask >= keys.shape[0]:
            keys = np.empty(mask + 1, dtype=np.uint64)
            stamps = np.zeros(mask + 1, dtype=np.int32)
            counts = np.empty(mask + 1, dtype=np.int32)
            firsts = np.empty(mask + 1, dtype=np.int32)
        distinct = False                          # every n-gram so far occurs once
        for g in TOP_NGRAMS:                      # the most frequent n-gram's characters
            if distinct:                          # so do the longer ones: the first one is the top
                out[row, d] = (chars[g] - chars[0] + g - 1) / n if w >= g else 0.0
                row += 1
                continue
            best_count, best_first, best_len = 0, 0, 0
            cur += 1
            for j in range(w - g + 1):
                h = prefix[j + g] - prefix[j] * powers[g]   # over mixed word hashes: no remix
                slot, found = set_slot(keys, stamps, cur, mask, h)
                if not found:
                    keys[slot] = h
                    stamps[slot] = cur
                    counts[slot] = 0
                    firsts[slot] = j
                counts[slot] += 1
                c = counts[slot]
                if c > best_count or (c == best_count and firsts[slot] < best_first):
                    best_count, best_first = c, firsts[slot]
                    best_len = chars[j + g] - chars[j] + g - 1
            out[row, d] = best_len * best_count / n
            row += 1
            distinct = best_count <= 1
        for g in DUP_NGRAMS:                      # characters of n-grams seen before, skipping them
            if distinct:
                break                             # no n-gram repeats: every fraction stays 0
            cur += 1
            repeated = 0
            j = 0
            while j < w - g + 1:
                h = prefix[j + g] - prefix[j] * powers[g]   # over mixed word hashes: no remix
                slot, found = set_slot(keys, stamps, cur, mask, h)
                if found:
                    repeated += chars[j + g] - chars[j]
                    j += g
                else:
                    keys[slot] = h
                    stamps[slot] = cur
                    j += 1
            out[row, d] = repeated / n
            row += 1
            distinct = repeated == 0              # no repeated n-gram: none of any greater n either
    return out


class GopherRepetition(RuleFilter):
    """Drop documents made mostly of repeated lines, paragraphs or n-grams."""

    name = "gopher_repetition"

    dup_line_frac = Param(float, 0.3, "drop documents with a larger fraction of duplicate lines", ge=0, le=1)
    dup_para_frac = Param(float, 0.3, "drop documents with a larger fraction of duplicate paragraphs", ge=0, le=1)
    dup_line_char_frac = Param(float, 0.2, "drop documents with a larger fraction of characters in "
                               "duplicate lines", ge=0, le=1)
    dup_para_char_frac = Param(float, 0.2, "drop documents with a larger fraction of characters in "
                               "duplicate paragraphs", ge=0, le=1)
    top_2_gram_frac = Param(float, 0.20, "drop documents whose most frequent 2-gram covers a larger "
                            "fraction of the characters", ge=0, le=1)
    top_3_gram_frac = Param(float, 0.18, "the same for 3-grams", ge=0, le=1)
    top_4_gram_frac = Param(float, 0.16, "the same for 4-grams", ge=0, le=1)
    dup_5_gram_frac = Param(float, 0.15, "drop documents with a larger fraction of characters in "
                            "repeated 5-grams", ge=0, le=1)
    dup_6_gram_frac = Param(float, 0.14, "the same for 6-grams", ge=0, le=1)
    dup_7_gram_frac = Param(float, 0.13, "the same for 7-grams", ge=0, le=1)
    dup_8_gram_frac = Param(float, 0.12, "the same for 8-grams", ge=0, le=1)
    dup_9_gram_frac = Param(float, 0.11, "the same for 9-grams", ge=0, le=1)
    dup_10_gram_frac = Param(float, 0.10, "the same for 10-grams", ge=0, le=1)

    def measure(self, starts, ends, data, classes):
        return dict(zip(MEASUREMENTS, _measure(starts, ends, data, classes)))

    def failures(self, m):
        rules = [("empty", m["empty"] > 0),
                 ("dup_para_frac", m["dup_para_frac"] > self.dup_para_frac),
                 ("dup_para_char_frac", m["dup_para_char_frac"] > self.dup_para_char_frac),
                 ("dup_line_frac", m["dup_line_frac"] > self.dup_line_frac),
                 ("dup_line_char_frac", m["dup_line_char_frac"] > self.dup_line_char_frac)]
        for n in TOP_NGRAMS:
            rules.append((f"top_{n}_gram", m[f"top_{n}_gram"] > getattr(self, f"top_{n}_gram_frac")))
        for n in DUP_NGRAMS:
            rules.append((f"dup_{n}_gram", m[f"dup_{n}_gram"] > getattr(self, f"dup_{n}_gram_frac")))
        return rules
