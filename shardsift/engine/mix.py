"""The mix step: each source's share of the output, in tokens, after every stage.

A global stage the runner appends when a source asks for a share (docs/mixtures.md). Each source's
documents are ordered by a seeded hash of their ids (the same order for any sharding and any
number of workers). A source with more tokens than its target keeps the shortest prefix of that
order closest to the target; one with fewer is repeated: every document once per whole epoch,
then a prefix of the order for the rest, at most ``max_epochs`` times in all. A source too small
even then keeps every document ``max_epochs`` times and is reported, not refused. The number of
copies of each document travels as the ``copies`` column of the stage's decisions, which the
output writer repeats rows by.
"""
from __future__ import annotations

import numpy as np

from ..api import Decision, Selector
from ..columns import hash_strings
from ..params import Param
from .config import StageConfig

# The per-document token count the mix budgets in: the scan's column of that name, which every
# stage's score file and every Docs batch carry.
TOKENS = "n_tokens"


def doc_tokens(arrays) -> np.ndarray:
    """Each document's tokens, from a score table, a scan record or a Docs batch."""
    value = arrays[TOKENS] if isinstance(arrays, dict) or hasattr(arrays, "columns") else getattr(arrays, TOKENS)
    return np.asarray(value, dtype=np.int64)


def hash_order_key(ids, seed: int) -> np.ndarray:
    """A seeded 64-bit key per id: the order in which a source's documents are taken."""
    h = hash_strings(ids) ^ np.uint64((seed * 0x9E3779B97F4A7C15 + 0x632BE59BD9B4E019) % (1 << 64))
    h = (h ^ (h >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    h = (h ^ (h >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return h ^ (h >> np.uint64(31))


def plan_copies(tokens: np.ndarray, target: float, max_epochs: float) -> np.ndarray:
    """Copies of each document (given in hash order) so that their tokens come closest to
    ``target``: whole epochs, then the prefix of the order nearest the rest; at most
    ``max_epochs`` epochs (a fractional last one is a prefix too)."""
    n = len(tokens)
    total = int(tokens.sum())
    copies = np.zeros(n, np.int32)
    if n == 0 or total == 0 or target <= 0:
        return copies
    goal = min(float(target), max_epochs * total)
    full = int(goal // total)
    copies[:] = full
    rest = goal - full * total
    if rest > 0 and full < max_epochs:
        cum = np.cumsum(tokens)
        k = int(np.searchsorted(cum, rest, side="left"))  # cum[k-1] < rest <= cum[k]
        above = int(cum[min(k, n - 1)])
        below = int(cum[k - 1]) if k > 0 else 0
        limit = (max_epochs - full) * total
        take = k + 1 if (above - rest <= rest - below and above <= limit) else k
        copies[:min(take, n)] += 1
    return copies


class Mix(Selector):
    """The sources' shares of the output, in tokens (added by the runner; not a YAML stage)."""

    name = "mix"
    scope = "global"
    needs_text = False
    sources = Param(list, doc="each source: {name, weight | tokens | fraction}")
    tokens = Param(int, None, "the output's tokens, shared by weights", ge=1)
    max_epochs = Param(float, 1.0, "at most this many repetitions", ge=1)
    seed = Param(int, 0, "seed of the hash order")

    def score(self, docs):
        return {"key": hash_order_key(docs.ids, self.seed)}

    def targets(self, avail: np.ndarray) -> np.ndarray:
        """Each source's target tokens, given the tokens each has after the stages."""
        weights = [s.get("weight") for s in self.sources]
        if all(w is not None for w in weights):
            w = np.array(weights, float)
            budget = self.tokens
            if budget is None:  # the largest mix at these weights that repeats nothing
                budget = float(np.min(avail / w)) if len(w) else 0.0
            return w * budget
        out = np.zeros(len(self.sources))
        for k, s in enumerate(self.sources):
            out[k] = s["tokens"] if "tokens" in s else s.get("fraction", 1.0) * avail[k]
        return out

    def decide(self, scores, ctx):
        src = np.asarray(self.shard_source_, np.int64)[scores.shard_index]
        tok, key = doc_tokens(scores), scores["key"]
        n_src = len(self.sources)
        avail = np.bincount(src, weights=tok, minlength=n_src).astype(np.int64)
        docs = np.bincount(src, minlength=n_src)
        target = self.targets(avail.astype(float))
        copies = np.zeros(len(tok), np.int32)
        report = {}
        for k, s in enumerate(self.sources):  # one pass per source, columnar within it
            idx = np.flatnonzero(src == k)
            order = idx[np.argsort(key[idx], kind="stable")]
            copies[order] = plan_copies(tok[order], target[k], self.max_epochs)
            out = int((tok[idx] * copies[idx]).sum())
            report[s["name"]] = {
                "docs_in": int(docs[k]), "tokens_in": int(avail[k]), "target_tokens": int(round(target[k])),
                "docs_out": int((copies[idx] > 0).sum()), "rows_out": int(copies[idx].sum()),
                "tokens_out": out, "epochs": out / avail[k] if avail[k] else 0.0,
                "short": bool(target[k] > self.max_epochs * avail[k])}
        total = sum(r["tokens_out"] for r in report.values())
        for r in report.values():
            r["share"] = r["tokens_out"] / total if total else 0.0
        order_score = (key >> np.uint64(11)).astype(np.float64) / float(1 << 53)  # its place in the hash order
        return Decision(keep=copies > 0, reason="mix_downsample", score=order_score, extra={"copies": copies},
                        metrics={"sources": report, "tokens_out": total})


def mix_stage(cfg) -> StageConfig:
    """The mix as the run's last stage, from the sources' shares and the ``mix:`` section."""
    mix = cfg.mix
    sources = [{"name": s.name, **s.target} for s in cfg.sources]
    params = {"sources": sources, "tokens": mix.tokens if mix else None,
              "max_epochs": mix.max_epochs if mix else 1.0,
              "seed": mix.seed if mix and mix.seed is not None else cfg.seed}
    sel = Mix(**params)
    return StageConfig(name="mix", params=params, cls=Mix, where="config.mix", instance=sel)
