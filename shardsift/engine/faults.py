"""Kill points for crash tests: ``SHARDSIFT_KILL_AT=<glob>`` SIGKILLs the run's process group when
execution reaches a point whose name matches (e.g. ``score:1:*``, ``write:2``, ``manifest``).

``SHARDSIFT_SLEEP_AT=<glob>=<seconds>`` pauses there instead. The names are listed by ``SHARDSIFT_LIST_POINTS=<file>``, which appends each point reached to the
file. Unset (the normal case), a point costs one environment lookup per task. Workers that do
not inherit the driver's environment (a Ray cluster) get these settings with each task
(:func:`settings`, :func:`use`), never through their own environment.
"""
from __future__ import annotations

import fnmatch
import os
import signal

_given: dict[str, str] = {}


def settings() -> dict:
    """The setting that must reach the workers of a cluster the driver did not start (the list of
    points reached), to send with each task."""
    log = _get("SHARDSIFT_LIST_POINTS")
    return {"SHARDSIFT_LIST_POINTS": log} if log else {}


def use(given: dict) -> None:
    """Take the settings a task brought (they win over this process's environment)."""
    _given.clear()
    _given.update(given or {})


def _get(key: str) -> str | None:
    return _given.get(key) or os.environ.get(key)


def point(name: str) -> None:
    log = _get("SHARDSIFT_LIST_POINTS")
    if log:
        with open(log, "a", encoding="utf-8") as fh:
            fh.write(name + "\n")
    nap = _get("SHARDSIFT_SLEEP_AT")  # "<glob>=<seconds>": hold a run at a point (lock tests)
    if nap:
        pat, _, secs = nap.rpartition("=")
        if fnmatch.fnmatchcase(name, pat):
            import time

            time.sleep(float(secs))
    pat = _get("SHARDSIFT_KILL_AT")
    if pat and fnmatch.fnmatchcase(name, pat):
        try:
            os.killpg(os.getpgrp(), signal.SIGKILL)
        finally:
            os.kill(os.getpid(), signal.SIGKILL)
