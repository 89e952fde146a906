"""shardsift: curate pretraining corpora from Parquet shards with a staged pipeline of selectors."""
import os as _os
import sys as _sys


def _arrow_on_malloc() -> None:
    """Make Arrow's C++ default memory pool the C library's malloc, when pyarrow is not loaded yet
    and ``ARROW_DEFAULT_MEMORY_POOL`` is unset (the variable is read once, as pyarrow loads, and
    removed again here, so the environment is left as it was).

    That pool is not the one ``pa.set_memory_pool`` (``io.malloc_pool``, during runs) changes: the
    Parquet reader's decompression and read buffers and the writer's pages come from it. The wheels'
    default, mimalloc, reserves its arena with MADV_HUGEPAGE, and a 40k-document dedup run faulted
    in 29-33 huge pages (58-66 MB, zeroed by the kernel) for those buffers; with malloc none, and a
    peak of 171 against 189 MB. docs/pipeline.md, "Arrow's C++ default pool on malloc when
    shardsift loads first". Where pyarrow came first, its choice stands and runs are as before."""
    if "pyarrow" in _sys.modules or _os.environ.get("ARROW_DEFAULT_MEMORY_POOL"):
        return
    _os.environ["ARROW_DEFAULT_MEMORY_POOL"] = "system"
    try:
        import pyarrow  # noqa: F401  (reads the variable now)
    finally:
        _os.environ.pop("ARROW_DEFAULT_MEMORY_POOL", None)


_arrow_on_malloc()

from .selectors.base import DecideContext, Decision, Docs, FitContext, Param, Scores, Selector  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "DecideContext",
    "Decision",
    "Docs",
    "FitContext",
    "Param",
    "Scores",
    "Selector",
    "__version__",
]
