"""How ``quality_classifier`` picks documents from their scores: exact top-k with ties broken by a
seeded hash of the id, or a seeded Gumbel top-k sample, cut at a count or a token budget.

Both orders are functions of (score, id, seed) only, so the selection is the same for any shard
layout, batch size or number of workers.
"""
from __future__ import annotations

import numpy as np

from ...columns import mix64


def _seeded(idhash: np.ndarray, seed: int, salt: int) -> np.ndarray:
    """A uint64 per document from its id hash, the seed and a salt."""
    with np.errstate(over="ignore"):
        s = np.uint64((int(seed) * 0x9E3779B97F4A7C15 + salt) % (1 << 64))
        return mix64(np.asarray(idhash, dtype=np.uint64) ^ s)


def rank_topk(score: np.ndarray, idhash: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(rank, tie) of top-k: the score, equal scores by a seeded hash of the id (lower first)."""
    return np.asarray(score, dtype=np.float64), _seeded(idhash, seed, 0x3C6EF372FE94F82B)


def rank_sample(score: np.ndarray, idhash: np.ndarray, seed: int, temperature: float):
    """(rank, tie) of the sample: the score / temperature plus seeded Gumbel noise, ties by id hash."""
    u = ((_seeded(idhash, seed, 0x1BD11BDAA9FC1A22) >> np.uint64(11)).astype(np.float64) + 0.5) / float(1 << 53)
    key = np.asarray(score, dtype=np.float64) / temperature - np.log(-np.log(u))
    return key, np.asarray(idhash, dtype=np.uint64)


def order_topk(score: np.ndarray, idhash: np.ndarray, seed: int) -> np.ndarray:
    """Document indices, best score first; equal scores in the order of a seeded hash of the id."""
    rank, tie = rank_topk(score, idhash, seed)
    return np.lexsort((tie, -rank))


def order_sample(score: np.ndarray, idhash: np.ndarray, seed: int, temperature: float) -> np.ndarray:
    """A seeded sample order without replacement: the first k are a draw of k documents with
    probability proportional to ``exp(score / temperature)`` (Gumbel top-k)."""
    rank, tie = rank_sample(score, idhash, seed, temperature)
    return np.lexsort((tie, -rank))


def count_within_budget(order: np.ndarray, n_tokens: np.ndarray, budget: int) -> int:
    """How many documents, taken in ``order``, fit in ``budget`` tokens (the run's unit)."""
    cum = np.cumsum(np.asarray(n_tokens, dtype=np.int64)[order])
    return int(np.searchsorted(cum, budget, side="right"))
