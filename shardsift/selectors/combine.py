"""``combine``: keep documents by a weighted combination of earlier stages' scores.

Each named stage's score is first turned into a percentile rank over the documents reaching this
stage (so scores on different scales add up: a DSIR log weight and a classifier probability), then
the ranks are summed with the given weights and divided by the sum of their absolute values. A
negative weight prefers low scores. The stages are usually run with ``drop: false`` so that every
score is computed on the same documents (the Nemotron-CC and GneissWeb ensembles).
"""
from __future__ import annotations

import numpy as np

from ..api import Decision, Param, Selector
from ..columns import hash_strings
from ..errors import ConfigError
from .budget import BUDGET_PARAMS, check_budget, percentile_ranks, select


class Combine(Selector):
    """Keep documents by a weighted sum of earlier stages' percentile-ranked scores."""

    name = "combine"
    scope = "global"
    needs_text = False
    weights = Param(dict, doc="earlier stage (its name, or its 1-based position) -> weight")
    keep = BUDGET_PARAMS["keep"]
    n = BUDGET_PARAMS["n"]
    tokens = BUDGET_PARAMS["tokens"]
    threshold = BUDGET_PARAMS["threshold"]
    mode = BUDGET_PARAMS["mode"]
    temperature = BUDGET_PARAMS["temperature"]

    def validate(self) -> None:
        self.weights = {str(k): v for k, v in (self.weights or {}).items()}  # YAML may give int keys
        if not self.weights:
            raise ConfigError(f"{self.name}.weights: name at least one earlier stage, e.g. {{dsir: 0.5}}")
        for stage, w in self.weights.items():
            if isinstance(w, bool) or not isinstance(w, (int, float)) or w == 0:
                raise ConfigError(f"{self.name}.weights.{stage}: expected a non-zero number, got {w!r}")
        if self.threshold is not None and not 0 <= self.threshold <= 1:
            raise ConfigError(f"{self.name}.threshold: {self.threshold} is out of range (a combined rank in [0, 1])")
        check_budget(self, self.name)

    def score(self, docs):
        return {"idhash": hash_strings(docs.ids)}

    def decide(self, scores, ctx) -> Decision:
        total = sum(abs(w) for w in self.weights.values())
        combined = np.zeros(len(scores), dtype=np.float64)
        for stage, w in self.weights.items():
            try:
                raw = ctx.stage_scores(int(stage) if stage.isdigit() else stage)
            except KeyError as err:
                raise ConfigError(f"{self.name}.weights: {err.args[0]}") from None
            rank = percentile_ranks(raw)
            combined += abs(w) * (rank if w > 0 else 1.0 - rank)
        combined /= total
        keep, info = select(combined, scores["idhash"], scores["n_tokens"], ctx.seed, keep=self.keep, n=self.n,
                            tokens=self.tokens, threshold=self.threshold, mode=self.mode,
                            temperature=self.temperature)
        return Decision(keep=keep, reason="below_combined_cut", score=combined,
                        metrics={**info, "weights": {k: float(v) for k, v in self.weights.items()}})
