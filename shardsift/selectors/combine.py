"""``combine``: keep documents by a weighted combination of earlier stages' scores.

Each named stage's score is first turned into a percentile rank over the documents reaching this
stage (so scores on different scales add up: a DSIR log weight and a classifier probability), then
the ranks are summed with the given weights and divided by the sum of their absolute values. A
negative weight prefers low scores. The stages are usually run with ``drop: false`` so that every
score is computed on the same documents (the Nemotron-CC and GneissWeb ensembles).
"""
from __future__ import annotations

import numpy as np

from ..api import Budget, Decision, Param, Selector
from ..columns import hash_strings
from ..errors import ConfigError
from .budget import BUDGET_PARAMS, check_budget, percentile_ranks, rank, select


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

    def _stages(self) -> list:
        """The weights' stages as names or 1-based positions."""
        return [int(stage) if stage.isdigit() else stage for stage in self.weights]

    def _combined(self, ranks: list[np.ndarray], n: int) -> np.ndarray:
        total = sum(abs(w) for w in self.weights.values())
        combined = np.zeros(n, dtype=np.float64)
        for w, pct in zip(self.weights.values(), ranks):
            combined += abs(w) * (pct if w > 0 else 1.0 - pct)
        combined /= total
        return combined

    def budget(self) -> Budget:
        """Budget selection over the combined rank: the engine runs it in shard tasks, the
        percentile ranks included (engine/global_budget.py)."""
        return Budget(keep=self.keep, n=self.n, tokens=self.tokens, threshold=self.threshold,
                      reason="below_combined_cut", percentiles=tuple(self._stages()), percentiles_param="weights")

    def budget_rank(self, scores):
        combined = self._combined([scores[f"percentile:{s}"] for s in self._stages()], len(scores))
        r, tie = rank(combined, scores["idhash"], self.seed_, threshold=self.threshold, mode=self.mode,
                      temperature=self.temperature)
        return r, tie, combined

    def budget_metrics(self, summary: dict) -> dict:
        if self.threshold is not None:
            info = {"cut": float(self.threshold), "kept": summary["kept"]}
        else:
            info = {"cut": summary["cut"], "kept": summary["kept"], "kept_tokens": summary["kept_tokens"]}
        return {**info, "weights": {k: float(v) for k, v in self.weights.items()}}

    def decide(self, scores, ctx) -> Decision:
        """The same selection over every document in one process (the engine uses ``budget()``)."""
        ranks = []
        for stage in self._stages():
            try:
                ranks.append(percentile_ranks(ctx.stage_scores(stage)))
            except KeyError as err:
                raise ConfigError(f"{self.name}.weights: {err.args[0]}") from None
        combined = self._combined(ranks, len(scores))
        keep, info = select(combined, scores["idhash"], scores["n_tokens"], ctx.seed, keep=self.keep, n=self.n,
                            tokens=self.tokens, threshold=self.threshold, mode=self.mode,
                            temperature=self.temperature)
        return Decision(keep=keep, reason="below_combined_cut", score=combined,
                        metrics={**info, "weights": {k: float(v) for k, v in self.weights.items()}})
