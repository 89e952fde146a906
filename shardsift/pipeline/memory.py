"""How a pipeline process allocates memory: Arrow's system allocator on a glibc heap that keeps
what it frees for the next batch.

A pass decodes a batch, works on it and frees it, then decodes the next one of about the same
size. Memory the process gives back to the OS between two batches comes back as fresh pages,
which the kernel must zero (and a virtual machine's host may have to back again). Arrow's default
allocator in the wheels, mimalloc, takes its memory in 2 MB huge pages and hands freed pages back
after 10 ms; glibc's malloc maps every block above 128 KB separately and unmaps it when freed.
Either way every batch pays for fresh memory: on the bench machine, after another process had used
1.5 GB, a 40,000-document minhash_dedup run spent 0.54 CPU-s in the kernel with mimalloc and 0.20
with the settings below (peak RSS 237 vs 227 MB; bench/bench_dedup.py, docs/dedup.md).

:func:`tune` therefore, once per process (the driver and every worker):
- makes Arrow's system allocator (glibc's malloc) the default pool, unless
  ``ARROW_DEFAULT_MEMORY_POOL`` names one: then the user's choice stands;
- on glibc, serves blocks up to 32 MB (the most glibc allows) from the heap instead of separate
  mappings, and keeps up to 1 GB of freed memory at the top of the heap instead of trimming it
  past 128 KB: at most the process's own peak is kept, for its next batch.
``SHARDSIFT_MEMORY_TUNING=0`` leaves the process as it is. The settings are process-wide, and
stay after a run that was started from another program (a notebook, a training script).
"""
from __future__ import annotations

import os

_DONE: list = []
_M_TRIM_THRESHOLD = -1  # glibc's mallopt parameters (malloc.h)
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 * 2**20
TRIM_THRESHOLD = 2**30


def tune() -> dict:
    """Apply the settings (see the module's text) once per process; returns what was set."""
    if _DONE:
        return _DONE[0]
    done: dict = {}
    if os.environ.get("SHARDSIFT_MEMORY_TUNING", "1") != "0":
        done["glibc"] = _tune_glibc()
        if not os.environ.get("ARROW_DEFAULT_MEMORY_POOL"):
            import pyarrow as pa

            pa.set_memory_pool(pa.system_memory_pool())
            done["arrow_pool"] = "system"
    _DONE.append(done)
    return done


def _tune_glibc() -> bool:
    import ctypes

    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018 - glibc only: musl's mallopt does nothing
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
