"""C4's rules (Raffel et al. 2020), at document level: does a page have enough clean sentences?

C4 keeps only lines that end in terminal punctuation, hold at least ``min_words_per_line`` words,
no word over ``max_word_length`` characters, and mention neither "javascript" nor a cookie or
terms-of-use phrase; it drops a page with fewer than ``min_sentences`` sentences in those lines,
or whose lines say "lorem ipsum" or hold a curly bracket. shardsift never rewrites text, so the
kept lines are only counted: the page is kept or dropped whole (the line-dropping variant is not
offered). Lines are ``str.splitlines``' stripped; trailing Wikipedia citations ("[1]", "[edit]",
"[citation needed]") are removed before the punctuation check; a sentence ends at '.', '!' or '?'
followed by whitespace. Defaults are datatrove's ``C4QualityFilter``'s.
"""
from __future__ import annotations

import numba as nb
import numpy as np

from ...api import Param
from .charsets import SPACE
from .kernels import decode, line_break, max_doc_length
from .rules import RuleFilter

MEASUREMENTS = ("lines", "kept_lines", "sentences", "lorem_ipsum", "curly_bracket")
POLICY_PHRASES = ("terms of use", "privacy policy", "cookie policy", "uses cookies", "use of cookies",
                  "use cookies")


def _patterns(phrases) -> tuple[np.ndarray, np.ndarray]:
    """(code points of every phrase concatenated, offsets) for the kernel."""
    cps = np.array([ord(c) for p in phrases for c in p], dtype=np.int32)
    return cps, np.cumsum([0] + [len(p) for p in phrases]).astype(np.int64)


LOREM, JAVASCRIPT, POLICY, CURLY = 1, 2, 4, 8
_PHRASES, _PHRASE_OFFSETS = _patterns(("lorem ipsum", "javascript") + POLICY_PHRASES)
_PHRASE_FLAGS = np.array([LOREM, JAVASCRIPT] + [POLICY] * len(POLICY_PHRASES), dtype=np.int64)
_EDIT = np.array([ord(c) for c in "[edit]"], dtype=np.int32)
_CITATION = np.array([ord(c) for c in "[citation needed]"], dtype=np.int32)


@nb.njit(cache=True, nogil=True)
def _phrases(cps, a, b):
    """Flags (LOREM, JAVASCRIPT, POLICY, CURLY) of what cps[a:b] holds, phrases matched ASCII
    case-insensitively, in one pass."""
    flags = 0
    n_phrases = _PHRASE_OFFSETS.shape[0] - 1
    for i in range(a, b):
        c = cps[i]
        if c == 123:
            flags |= CURLY
            continue
        if 65 <= c <= 90:
            c += 32
        if not (c == 108 or c == 106 or c == 116 or c == 112 or c == 99 or c == 117):
            continue             # no phrase starts with it (l j t p c u)
        for p in range(n_phrases):
            start = _PHRASE_OFFSETS[p]
            if c != _PHRASES[start] or flags & _PHRASE_FLAGS[p]:
                continue
            m = _PHRASE_OFFSETS[p + 1] - start
            if i + m > b:
                continue
            ok = True
            for k in range(1, m):
                x = cps[i + k]
                if 65 <= x <= 90:
                    x += 32
                if x != _PHRASES[start + k]:
                    ok = False
                    break
            if ok:
                flags |= _PHRASE_FLAGS[p]
    return flags


@nb.njit(cache=True, nogil=True)
def _ends_with(cps, a, b, pat):
    m = pat.shape[0]
    if b - a < m:
        return False
    for k in range(m):  # noqa: SIM110 (a plain loop: numba compiles it without a generator)
        if cps[b - m + k] != pat[k]:
            return False
    return True


@nb.njit(cache=True, nogil=True)
def _strip_citations(cps, a, b):
    """End of cps[a:b] once trailing "[digits]", "[edit]" and "[citation needed]" are removed."""
    while b > a and cps[b - 1] == 93:
        j = b - 2
        while j >= a and 48 <= cps[j] <= 57:
            j -= 1
        if j >= a and cps[j] == 91:
            b = j
        elif _ends_with(cps, a, b, _EDIT):
            b -= _EDIT.shape[0]
        elif _ends_with(cps, a, b, _CITATION):
            b -= _CITATION.shape[0]
        else:
            break
    return b


@nb.njit(cache=True, nogil=True)
def _measure(starts, ends, data, cls, opts):
    terminal, citations, min_words, max_word, lorem, javascript, curly, policy = (
        opts[0], opts[1], opts[2], opts[3], opts[4], opts[5], opts[6], opts[7])
    nd = starts.shape[0]
    out = np.zeros((5, nd), dtype=np.float64)
    cps = np.empty(max_doc_length(starts, ends) + 1, dtype=np.uint32)
    for d in range(nd):
        n = decode(data, starts[d], ends[d], cps)
        lines = 0
        kept = 0
        sentences = 0
        a = 0
        while a < n:             # one line: its stripped bounds, words and longest word in one pass
            lo = -1
            hi = a
            words = 0
            longest = 0
            w0 = -1
            b = a
            brk = 0
            while b < n:
                c = cps[b]
                if cls[c] & SPACE:
                    if w0 >= 0:
                        words += 1
                        longest = max(longest, b - w0)
                        w0 = -1
                    brk = line_break(cps, b, n)
                    if brk:
                        break
                else:
                    if w0 < 0:
                        w0 = b
                        if lo < 0:
                            lo = b
                    hi = b + 1
                b += 1
            if w0 >= 0:
                words += 1
                longest = max(longest, b - w0)
            if lo < 0:
                lo = hi = b
            lines += 1
            a = b + brk
            if max_word >= 0 and longest > max_word:
                continue
            end = _strip_citations(cps, lo, hi) if citations else hi
            if terminal:
                if end == lo:
                    continue
                c = cps[end - 1]
                if not (c == 46 or c == 63 or c == 33 or c == 34 or c == 39):
                    continue
                if end - lo >= 3 and cps[end - 2] == 46 and cps[end - 3] == 46 and c == 46:
                    continue
            if words < min_words:
                continue
            found = _phrases(cps, lo, end)
            if lorem and found & LOREM:
                out[3, d] = 1.0
                break
            if javascript and found & JAVASCRIPT:
                continue
            if curly and found & CURLY:
                out[4, d] = 1.0
                break
            if policy and found & POLICY:
                continue
            kept += 1
            sentences += 1
            for k in range(lo, end - 1):
                c = cps[k]
                if (c == 46 or c == 33 or c == 63) and cls[cps[k + 1]] & SPACE:
                    sentences += 1
        out[0, d] = lines
        out[1, d] = kept
        out[2, d] = sentences
    return out


class C4Quality(RuleFilter):
    """Drop pages with too few clean, punctuated sentences, or with "lorem ipsum" or a curly bracket."""

    name = "c4_quality"

    min_sentences = Param(int, 5, "drop documents with fewer sentences in their kept lines", ge=0)
    min_words_per_line = Param(int, 3, "a line with fewer whitespace words is not kept", ge=0)
    max_word_length = Param(int, 1000, "a line with a longer word (characters) is not kept; -1: no limit", ge=-1)
    filter_no_terminal_punct = Param(bool, True, "a line not ending in . ? ! \" ' (or ending in ...) is not kept")
    remove_citations = Param(bool, True, "ignore trailing [1], [edit], [citation needed] when checking the end")
    filter_lorem_ipsum = Param(bool, True, "drop documents with a kept line saying \"lorem ipsum\"")
    filter_javascript = Param(bool, True, "a line mentioning \"javascript\" is not kept")
    filter_curly_bracket = Param(bool, True, "drop documents with a kept line holding '{'")
    filter_policy = Param(bool, True, "a line with a cookie, privacy or terms-of-use phrase is not kept")

    def measure(self, starts, ends, data, classes):
        opts = np.array([self.filter_no_terminal_punct, self.remove_citations, self.min_words_per_line,
                         self.max_word_length, self.filter_lorem_ipsum, self.filter_javascript,
                         self.filter_curly_bracket, self.filter_policy], dtype=np.int64)
        return dict(zip(MEASUREMENTS, _measure(starts, ends, data, classes, opts)))

    def failures(self, m):
        return [("lorem_ipsum", m["lorem_ipsum"] > 0),
                ("curly_bracket", m["curly_bracket"] > 0),
                ("sentences", m["sentences"] < self.min_sentences)]
