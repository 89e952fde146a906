"""A selector for tests/test_global_budget.py: budget selection over a per-document value (the input
column ``v``), decided in the driver with budget.select (``in_tasks: false``) or by the engine in
shard tasks (``in_tasks: true``). Importable by worker processes (the tests put this folder on
PYTHONPATH)."""
import numpy as np

from shardsift import Decision, Param, Selector
from shardsift.api import Budget
from shardsift.columns import hash_strings
from shardsift.selectors.budget import BUDGET_PARAMS, check_budget, rank, select
from shardsift.selectors.combine import Combine


class BudgetValue(Selector):
    """Keeps by a budget over the column ``v`` (NaN for a null), in the driver with budget.select."""

    name = "budget_value"
    scope = "global"
    needs_text = False
    columns = ("v",)
    keep = BUDGET_PARAMS["keep"]
    n = BUDGET_PARAMS["n"]
    tokens = BUDGET_PARAMS["tokens"]
    threshold = BUDGET_PARAMS["threshold"]
    mode = BUDGET_PARAMS["mode"]
    temperature = BUDGET_PARAMS["temperature"]
    in_tasks = Param(bool, True, "opt in to the engine's task-based budget selection")

    def validate(self):
        check_budget(self, self.name)

    def score(self, docs):
        v = docs.column("v").to_numpy(zero_copy_only=False).astype(np.float64)
        return {"v": v, "idhash": hash_strings(docs.ids)}

    def decide(self, scores, ctx):
        keep, info = select(scores["v"], scores["idhash"], scores["n_tokens"], ctx.seed, keep=self.keep, n=self.n,
                            tokens=self.tokens, threshold=self.threshold, mode=self.mode,
                            temperature=self.temperature)
        return Decision(keep=keep, reason="below_cut", score=scores["v"], metrics=info)

    def budget(self):
        if not self.in_tasks:
            return None
        return Budget(keep=self.keep, n=self.n, tokens=self.tokens, threshold=self.threshold, reason="below_cut")

    def budget_rank(self, scores):
        r, tie = rank(scores["v"], scores["idhash"], self.seed_, threshold=self.threshold, mode=self.mode,
                      temperature=self.temperature)
        return r, tie, np.asarray(scores["v"], dtype=np.float64)


class WScore(Selector):
    """Keeps every document; its score is the input column ``w`` (what combine ranks)."""

    name = "w_score"
    needs_text = False
    columns = ("w",)

    def score(self, docs):
        return docs.column("w").to_numpy(zero_copy_only=False).astype(np.float64)

    def decide(self, scores, ctx):
        return Decision(keep=np.ones(len(scores), bool), score=scores["score"])


class CombineInDriver(Combine):
    """``combine`` with its decide over every document in the driver (no ``budget()``)."""

    def budget(self):
        return None
