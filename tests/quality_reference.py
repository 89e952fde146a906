"""datatrove's web-text filters as the reference of shardsift's quality rules (tests and bench).

datatrove's English word tokenizer needs spaCy (and its sentence splitter a model download), so
both sides split words on whitespace (``str.split``) and sentences after '.', '!' or '?' followed
by whitespace: ``use_whitespace_tokenizer`` installs that tokenizer in datatrove.
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


def reference_keep(flt, texts: list[str]) -> list[bool]:
    """datatrove's keep/drop per text (a copy of each document: C4 rewrites the text it keeps)."""
    from datatrove.data import Document

    out = []
    for i, text in enumerate(texts):
        res = flt.filter(Document(text=text, id=str(i)))
        out.append(bool(res[0] if isinstance(res, tuple) else res))
    return out
