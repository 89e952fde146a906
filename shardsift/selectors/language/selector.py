"""The ``language`` filter: keep documents whose detected language is wanted and confidently so.

Each document gets the top label of a fastText language-ID model and its probability (sidecar
columns ``language`` and ``language_score``); it is dropped with reason
``language:not_in_languages`` when the label is not one of ``languages``, else with
``language:low_score`` when the probability is below ``min_score`` (FineWeb keeps English at 0.65).
The label comes from the first ``prefix_chars`` characters where that prefix is confident, else from
the first ``max_chars`` (``model.predict_cascade``).
"""
from __future__ import annotations

import os

import numpy as np

from ...api import Decision, Docs, Filter, Param
from ...errors import ConfigError
from ...params import did_you_mean
from . import model as lid

NOT_IN_LANGUAGES = "language:not_in_languages"
LOW_SCORE = "language:low_score"


class LanguageFilter(Filter):
    """Keep documents in the listed languages whose top language-ID probability reaches min_score."""

    name = "language"

    languages = Param(list, None, "language codes to keep (lid.176 codes such as en, de, zh; see "
                      "docs/language.md); unset: any language, only min_score applies")
    min_score = Param(float, 0.65, "drop documents whose top language probability is below this", ge=0, le=1)
    max_chars = Param(int, 10000, "identify the language from the first this many characters", gt=0)
    prefix_chars = Param(int, 500, "first read only this many characters and re-read up to max_chars only "
                         "the documents whose prefix label is not confident; 0: read max_chars at once",
                         ge=0)
    confident = Param(float, 0.8, "a prefix label with at least this probability (and not within 0.1 of "
                      "min_score) is final", ge=0, le=1)
    model = Param(str, None, "a local fastText language-ID model file (labels __label__xx) instead of the "
                  "built-in lid.176", path=True)

    def validate(self) -> None:
        where = self.display_name()
        if self.model is None:
            codes = lid.BUILTIN_CODES
        else:
            path = os.path.abspath(os.path.expanduser(self.model))
            codes = lid.model_codes(lid.load_model(path, f"{where}.model"), path, f"{where}.model")
        if self.languages is None:
            return
        if not self.languages:
            raise ConfigError(f"{where}.languages: the list is empty; name at least one code (e.g. [en]) "
                              "or leave languages out to keep any language")
        for code in self.languages:
            if isinstance(code, bool):   # YAML reads a bare no / on / yes as a boolean
                raise ConfigError(f"{where}.languages: {code!r} is not a language code; quote it "
                                  "(e.g. 'no' for Norwegian)")
            if not isinstance(code, str) or code not in codes:
                source = "lid.176" if self.model is None else self.model
                raise ConfigError(f"{where}.languages: unknown language code {code!r}"
                                  f"{did_you_mean(code, codes)}; {source} knows {len(codes)} codes "
                                  "(docs/language.md lists them)")

    def model_path(self) -> str:
        where = f"{self.display_name()}.model"
        return lid.builtin_model_path(where) if self.model is None else os.path.abspath(
            os.path.expanduser(self.model))

    @property
    def version(self) -> str:
        """Part of the stage's fingerprint: a model file that changed is not served from an earlier
        run's work dir."""
        path = self.model_path()
        try:
            st = os.stat(path)
        except OSError:
            return f"{path}:missing"
        return f"{path}:{st.st_size}:{st.st_mtime_ns}"

    def setup(self) -> None:
        """Load the model once per process (fastText models do not pickle)."""
        if getattr(self, "model_", None) is None:
            self.model_ = lid.load_model(self.model_path(), f"{self.display_name()}.model")

    def __getstate__(self):
        state = dict(self.__dict__)
        state.pop("model_", None)
        return state

    def keep(self, docs: Docs) -> Decision:
        self.setup()
        code, score, _ = lid.predict_cascade(self.model_, docs.text, self.max_chars, self.prefix_chars,
                                             self.confident, self.min_score)
        wanted = (np.ones(len(code), dtype=bool) if self.languages is None
                  else np.isin(code, np.asarray(self.languages, dtype=str)))
        confident = score >= self.min_score
        reason = np.where(wanted, np.where(confident, "", LOW_SCORE), NOT_IN_LANGUAGES)
        return Decision(keep=wanted & confident, reason=reason, score=score,
                        extra={"language": code, "language_score": score})
