"""What the two dedup selectors share once the clusters are known: which document of each cluster
survives (``keep: first | longest | <numeric input column>``), which survivor each dropped document
duplicates (``duplicate_of``), and the cluster-size histogram of their metrics."""
from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow as pa

from ..api import Capabilities
from ..errors import ConfigError, DataError

KEEP_BUILTIN = ("first", "longest")


def size_histogram(sizes: np.ndarray) -> dict:
    """Cluster sizes (>= 2) in power-of-two bins: {"2": n, "3-4": n, "5-8": n, ...}."""
    out = {}
    sizes = np.asarray(sizes)
    sizes = sizes[sizes >= 2]
    if len(sizes) == 0:
        return out
    top = int(sizes.max())
    lo, hi = 2, 2
    while lo <= top:
        c = int(((sizes >= lo) & (sizes <= hi)).sum())
        if c:
            out[str(lo) if lo == hi else f"{lo}-{hi}"] = c
        lo, hi = hi + 1, hi * 2
    return out


def survivors(cluster: np.ndarray, keep: str, scores, pos: np.ndarray | None = None) -> np.ndarray:
    """One survivor per cluster: the first document, the longest (most bytes), or the largest value
    of a score column; ties go to the first. ``cluster`` ids are each cluster's first document's
    position; ``pos`` is each entry's position (default: the entries are every document, in order),
    so the same rule applies to a subset that holds whole clusters."""
    n = len(cluster)
    pos = np.arange(n, dtype=cluster.dtype) if pos is None else pos
    if keep == "first":
        return cluster == pos
    if keep == "longest":
        value = np.asarray(scores["n_bytes"], dtype=np.float64)
    else:
        value = np.asarray(scores["keep_by"], dtype=np.float64)
    value = np.where(np.isnan(value), -np.inf, value)
    order = np.lexsort((pos, -value, cluster))
    first = np.ones(n, dtype=bool)
    first[1:] = cluster[order][1:] != cluster[order][:-1]
    mask = np.zeros(n, dtype=bool)
    mask[order[first]] = True
    return mask


def duplicate_of(cluster: np.ndarray, cluster_size: np.ndarray, keep: np.ndarray, rows: np.ndarray,
                 shard_offsets: np.ndarray, pos: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Decision.extra columns naming, for every dropped document, the survivor of its cluster: its
    input shard (``duplicate_of_shard``, int32, the position in the manifest's ``inputs``) and its
    row in that shard (``duplicate_of_row``, int64, as the ``row`` of every document); -1 for kept
    documents. ``cluster`` ids are positions (each cluster's first document); ``keep`` has exactly
    one survivor per cluster; ``rows`` is each entry's row and ``pos`` its position (default: the
    entries are every document, in order). Beside the two columns (12 bytes per entry) only the
    documents of clusters of two or more are indexed."""
    n = len(cluster)
    shard = np.full(n, -1, dtype=np.int32)
    row = np.full(n, -1, dtype=np.int64)
    members = np.flatnonzero(cluster_size >= 2)
    if len(members):
        kept = members[keep[members]]
        kept = kept[np.argsort(cluster[kept])]  # one per cluster: distinct ids, ascending
        dropped = members[~keep[members]]
        of = kept[np.searchsorted(cluster[kept], cluster[dropped])]
        shard[dropped] = np.searchsorted(shard_offsets, of if pos is None else pos[of], side="right") - 1
        row[dropped] = np.asarray(rows)[of]
    return {"duplicate_of_shard": shard, "duplicate_of_row": row}


def keep_by(docs, column: str, where: str) -> np.ndarray:
    """The ``keep`` column of a batch as float64 (nulls NaN, which never win)."""
    col = docs.column(column)
    if not (pa.types.is_integer(col.type) or pa.types.is_floating(col.type) or pa.types.is_boolean(col.type)):
        raise DataError(f"{where}.keep: column {column!r} of {docs.shard} is {col.type}, not numeric")
    return np.asarray(col.cast(pa.float64()).fill_null(float("nan")).to_numpy(zero_copy_only=False))


class KeepPolicy:
    """Mixin of a dedup selector with a ``keep`` parameter: a column named by ``keep`` is declared
    in :meth:`capabilities` (the engine reads it for the score) and read into ``keep_by``."""

    def check_keep(self) -> None:
        if not self.keep:
            raise ConfigError(f"{self.display_name()}.keep: give first, longest or a numeric column name")

    def keep_column(self) -> str | None:
        return None if self.keep in KEEP_BUILTIN else self.keep

    def capabilities(self) -> Capabilities:
        caps = super().capabilities()
        col = self.keep_column()
        return dataclasses.replace(caps, columns=caps.columns + ((col,) if col else ()))

    def keep_scores(self, docs) -> dict:
        """The score columns the keep policy needs from a batch: ``keep_by`` for a column."""
        col = self.keep_column()
        return {"keep_by": keep_by(docs, col, self.display_name())} if col else {}
