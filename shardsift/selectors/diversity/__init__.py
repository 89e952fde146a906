"""k-means diversity selection: ``kmeans_diversity`` (balanced quotas, SemDeDup, prototypes,
density-based pruning, D4) and ``semdedup``.

- :mod:`.embedders`: hashed TF-IDF + SVD, sentence-transformers, a precomputed column.
- :mod:`.kmeans_fit`: spherical k-means, nearest-centroid assignment, sub-cluster split, fitted files.
- :mod:`.strategies`: per-cluster quotas, SemDeDup, density-based quotas, coverage.
- :mod:`.members`: facility location and farthest-first inside clusters of any size.
- :mod:`.heldout`: coverage in an independent embedding of a sample.
- :mod:`.selector`: the two selector classes (parameters, fit, score, decide).
"""
from __future__ import annotations

from .selector import KMeansDiversity, SemDeDup

__all__ = ["KMeansDiversity", "SemDeDup"]
