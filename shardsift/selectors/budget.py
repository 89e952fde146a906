"""Selection by a budget over a per-document value, shared by the global selectors that rank.

Exactly one budget: ``keep`` (a fraction of the documents), ``n`` (a count), ``tokens`` (the run's
token unit: the configured tokenizer's tokens, else whitespace words; ``2B``, ``500M``) or
``threshold`` (on the value). ``mode: topk`` takes the highest values, ties broken by a
seeded hash of the id, so the cut is exact and the same for any sharding; ``mode: sample`` takes
a Gumbel top-k on value / temperature (sampling in proportion to exp(value / temperature) without
replacement), seeded the same way.
"""
from __future__ import annotations

import numpy as np

from ..api import Param
from ..columns import mix64
from ..errors import ConfigError
from ..params import Count

BUDGET_PARAMS = {
    "keep": Param(float, None, "fraction of the documents reaching the stage to keep", gt=0, le=1),
    "n": Param(int, None, "number of documents to keep", ge=0),
    "tokens": Param(Count, None, "tokens to keep, in the run's token unit (2B, 500M): the highest-ranked "
                    "documents that fit", ge=0),
    "threshold": Param(float, None, "keep documents whose value is at least this"),
    "mode": Param(str, "topk", "topk: the highest values; sample: Gumbel top-k on value / temperature",
                  choices=("topk", "sample")),
    "temperature": Param(float, 1.0, "with mode: sample, the softness of the draw", gt=0),
}


def check_budget(sel, where: str) -> None:
    """Exactly one of keep, n, tokens and threshold; a ConfigError naming them otherwise."""
    given = [k for k in ("keep", "n", "tokens", "threshold") if getattr(sel, k) is not None]
    if len(given) != 1:
        raise ConfigError(f"{where}: give exactly one of keep, n, tokens or threshold"
                          + (f" (got {', '.join(given)})" if given else ""))
    if sel.threshold is not None and sel.mode == "sample":
        raise ConfigError(f"{where}.mode: sample needs keep, n or tokens, not threshold")


def tie_keys(idhash: np.ndarray, seed: int) -> np.ndarray:
    """A seeded uint64 per document from its id hash: the tie-break and the draw."""
    return mix64(np.asarray(idhash, dtype=np.uint64) ^ np.uint64((seed * 0x9E3779B97F4A7C15 + 0x51) % (1 << 64)))


def rank(values: np.ndarray, idhash: np.ndarray, seed: int, *, threshold=None, mode="topk",
         temperature=1.0) -> tuple[np.ndarray, np.ndarray]:
    """(rank, tie) of each document: kept highest rank first, equal ranks by lower tie key. A NaN
    value ranks with -inf (and never passes a threshold); in sample mode the rank is value /
    temperature plus seeded Gumbel noise. A function of each document alone, so shard tasks can
    compute it (``Selector.budget_rank``)."""
    values = np.asarray(values, dtype=np.float64)
    ties = tie_keys(idhash, seed)
    if threshold is not None:
        return values, ties
    rank_by = np.where(np.isnan(values), -np.inf, values)
    if mode == "sample":
        u = (ties >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))
        u = np.clip(u, 1e-300, 1 - 1e-16)
        rank_by = rank_by / temperature - np.log(-np.log(u))
    return rank_by, ties


def select(values: np.ndarray, idhash: np.ndarray, n_tokens: np.ndarray, seed: int, *, keep=None, n=None,
           tokens=None, threshold=None, mode="topk", temperature=1.0) -> tuple[np.ndarray, dict]:
    """The documents to keep (bool mask) and metrics (the cut's value, what was kept). With
    ``tokens`` the cut is the longest prefix of the ranking whose ``n_tokens`` fit the budget."""
    values = np.asarray(values, dtype=np.float64)
    total = len(values)
    if threshold is not None:
        mask = values >= threshold
        return mask, {"cut": float(threshold), "kept": int(mask.sum())}
    rank_by, ties = rank(values, idhash, seed, mode=mode, temperature=temperature)
    order = np.lexsort((ties, -rank_by))  # highest first; equal values by the seeded id hash
    if tokens is not None:
        cum = np.cumsum(np.asarray(n_tokens, dtype=np.int64)[order])
        k = int(np.searchsorted(cum, tokens, side="right"))
    elif n is not None:
        k = min(int(n), total)
    else:
        k = int(round(keep * total))
    mask = np.zeros(total, dtype=bool)
    mask[order[:k]] = True
    cut = float(values[order[k - 1]]) if k else float("inf")
    return mask, {"cut": cut, "kept": k, "kept_tokens": int(np.asarray(n_tokens)[mask].sum())}


def percentile_ranks(values: np.ndarray) -> np.ndarray:
    """Each value's percentile rank in (0, 1], ties sharing their mean rank; NaN ranks lowest (0)."""
    values = np.asarray(values, dtype=np.float64)
    ok = ~np.isnan(values)
    out = np.zeros(len(values), dtype=np.float64)
    if not ok.any():
        return out
    uniq, inv, counts = np.unique(values[ok], return_inverse=True, return_counts=True)
    below = np.concatenate([[0], np.cumsum(counts)[:-1]])
    out[ok] = (below[inv] + (counts[inv] + 1) / 2.0) / ok.sum()
    return out
