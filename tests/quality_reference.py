"""datatrove's web-text filters as the reference of shardsift's quality rules (tests and bench).

datatrove's default English word tokenizer is spaCy's (punctuation split off as words), while
shardsift's rules count whitespace words. For the parity tests both sides split words on whitespace
(``str.split``) and sentences after '.', '!' or '?' followed by whitespace:
``use_whitespace_tokenizer`` installs that tokenizer in datatrove. (bench/bench_quality_rules.py
also measures datatrove as shipped, with spaCy.)
"""
from __future__ import annotations

import re

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


class WhitespaceTokenizer:
    """datatrove's WordTokenizer interface: words on whitespace, sentences after . ! ? + space."""

    def word_tokenize(self, text: str) -> list[str]:
        return text.split()

    def sent_tokenize(self, text: str) -> list[str]:
        return [s for s in _SENTENCE_END.split(text) if s]

    def span_tokenize(self, text: str) -> list[tuple[int, int]]:
        out, start = [], 0
        for m in _SENTENCE_END.finditer(text):
            out.append((start, m.start()))
            start = m.end()
        out.append((start, len(text)))
        return out


def use_whitespace_tokenizer() -> None:
    """Make datatrove split words and sentences as shardsift's rules do."""
    import datatrove.utils.word_tokenizers as wt

    tokenizer = WhitespaceTokenizer()
    wt.load_word_tokenizer = lambda language=None: tokenizer


def reference_filters(**thresholds):
    """name -> datatrove filter with the given per-filter kwargs (C4 at document level)."""
    from datatrove.pipeline.filters import (
        C4QualityFilter,
        FineWebQualityFilter,
        GopherQualityFilter,
        GopherRepetitionFilter,
    )

    use_whitespace_tokenizer()
    return {
        "gopher_quality": GopherQualityFilter(**thresholds.get("gopher_quality", {})),
        "gopher_repetition": GopherRepetitionFilter(**thresholds.get("gopher_repetition", {})),
        "c4_quality": C4QualityFilter(**thresholds.get("c4_quality", {})),
        "fineweb_quality": FineWebQualityFilter(**thresholds.get("fineweb_quality", {})),
    }


# datatrove's drop reasons, by filter, as the names of shardsift's rules
REASONS = {
    "gopher_quality": {"gopher_short_doc": "word_count", "gopher_long_doc": "word_count",
                       "gopher_below_avg_threshold": "mean_word_length",
                       "gopher_above_avg_threshold": "mean_word_length",
                       "gopher_too_many_hashes": "hash_ratio", "gopher_too_many_ellipsis": "ellipsis_ratio",
                       "gopher_too_many_bullets": "bullet_lines", "gopher_too_many_end_ellipsis": "ellipsis_lines",
                       "gopher_below_alpha_threshold": "alpha_words", "gopher_enough_stop_words": "stop_words"},
    "gopher_repetition": {**{f"duplicated_{n}_n_grams": f"dup_{n}_gram" for n in range(5, 11)}},
    "c4_quality": {"too_few_sentences": "sentences"},
    "fineweb_quality": {"list_ratio": "newline_ratio"},
}


def reference_decisions(name: str, flt, texts: list[str]) -> tuple[list[bool], list[str]]:
    """datatrove's keep/drop per text and the reason as shardsift names it ('' when kept).
    Each document is a fresh copy: C4 rewrites the text it keeps."""
    from datatrove.data import Document

    keep, reasons = [], []
    for i, text in enumerate(texts):
        res = flt.filter(Document(text=text, id=str(i)))
        kept = bool(res[0] if isinstance(res, tuple) else res)
        keep.append(kept)
        why = "" if kept else str(res[1])
        reasons.append(f"{name}:{REASONS[name].get(why, why)}" if why else "")
    return keep, reasons


_WORDS = ("the", "be", "to", "of", "and", "that", "have", "with", "a", "in", "is", "it", "for", "on",
          "as", "was", "at", "by", "this", "from", "are", "or", "an", "we", "can", "data", "model",
          "page", "home", "news", "about", "contact", "search", "login", "shop", "price", "free",
          "online", "click", "information", "service", "product", "search", "results", "report",
          "history", "city", "river", "market", "school", "extraordinarily", "internationalization",
          "café", "naïve", "über", "straße", "день", "мир", "東京", "データ")
_ENDS = (".", ".", "!", "?", '"', "...", "…", ":", "", ",", ".[1]", ". [2]", "[edit]", "」", "。")
_LINES = ("Home", "About us", "Contact", "Privacy Policy", "Terms of use apply to this site.",
          "This site uses cookies to improve your experience.", "Please enable JavaScript to view it.",
          "Lorem ipsum dolor sit amet, consectetur adipiscing elit.", "function f() { return 1; }",
          "#tag #news #today", "Share on Facebook", "- item one", "• item two", "Read more...",
          "Copyright 2024 All rights reserved.", "x" * 1200,
          "Set the {name} field to the value you want.")


def web_like_texts(n: int, seed: int = 0) -> list[str]:
    """n web-page-like documents mixing prose, menus, lists, boilerplate and repetition, so every
    rule of the four filters both passes and fails on some of them."""
    import numpy as np

    rng = np.random.default_rng(seed)
    texts = []
    for _ in range(n):
        kind = rng.integers(6)
        lines = []
        for _ in range(int(rng.integers(0, 40))):
            if kind < 3 and rng.random() < 0.75:
                k = int(rng.integers(1, 25 if kind else 60))
                words = [_WORDS[i] for i in rng.integers(0, len(_WORDS) if kind != 1 else 20, k)]
                if rng.random() < 0.3:
                    words[0] = words[0].capitalize()
                line = " ".join(words) + _ENDS[rng.integers(len(_ENDS))]
                if rng.random() < 0.2:
                    line = line.replace(" ", ". ", 1)
            elif kind == 3 and rng.random() < 0.7:
                line = "- " + " ".join(_WORDS[i] for i in rng.integers(0, len(_WORDS), 6))  # a list
            else:
                line = _LINES[rng.integers(len(_LINES))]
            if kind == 4 and lines and rng.random() < 0.5:
                line = lines[int(rng.integers(len(lines)))]           # repeated lines
            if rng.random() < 0.05:
                line = " \u00a0" + line + " \t"
            lines.append(line)
        sep = ("\n", "\n\n", "\r\n", "\n \n", "\n\n\n")[int(rng.integers(5))]
        text = sep.join(lines)
        if kind == 5 and text:
            text = text + "\n" + text                                   # a page printed twice
        if rng.random() < 0.1:
            text = "\n" + text + "\n"
        texts.append(text)
    return texts
