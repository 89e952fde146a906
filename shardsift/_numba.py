"""numba for every kernel module, imported without the SciPy import of its BLAS probe.

When numba loads its first kernel it imports ``numba.np.arraymath``, whose import-time
``_check_blas()`` imports ``scipy.linalg.cython_blas`` only to learn whether SciPy is installed:
0.25 CPU-s per process (SciPy's linalg package and its array-API shims), a tenth of a 40,000
document ``minhash_dedup`` run, though no shardsift kernel calls BLAS. So arraymath is imported
here with that probe asking only whether SciPy can be found; the real probe is put back at once,
and numba calls it again when it compiles a function that does use BLAS (``np.dot``, ``np.linalg``),
which imports SciPy then. Nothing changes where arraymath was already imported, or where numba's
layout differs from what this expects: the probe then runs as numba wrote it.
"""
from __future__ import annotations

import importlib.util
import sys

import numba as nb

__all__ = ["nb"]


def _import_arraymath_without_scipy() -> None:
    if "numba.np.arraymath" in sys.modules:
        return
    try:
        from numba.np import linalg
        probe = linalg.ensure_blas
    except (ImportError, AttributeError):
        return

    def scipy_present():
        if importlib.util.find_spec("scipy") is None:
            raise ImportError("scipy 0.16+ is required for linear algebra")

    linalg.ensure_blas = scipy_present
    try:
        import numba.np.arraymath  # noqa: F401
    finally:
        linalg.ensure_blas = probe


_import_arraymath_without_scipy()
