"""Kill points for crash tests: ``SHARDSIFT_KILL_AT=<glob>`` SIGKILLs the run's process group when
execution reaches a point whose name matches (e.g. ``score:1:*``, ``write:2``, ``manifest``).

``SHARDSIFT_SLEEP_AT=<glob>=<seconds>`` pauses there instead. The names are listed by ``SHARDSIFT_LIST_POINTS=<file>``, which appends each point reached to the
file. Unset (the normal case), a point costs one environment lookup per task.
"""
from __future__ import annotations

import fnmatch
import os
import signal


def point(name: str) -> None:
    log = os.environ.get("SHARDSIFT_LIST_POINTS")
    if log:
        with open(log, "a", encoding="utf-8") as fh:
            fh.write(name + "\n")
    nap = os.environ.get("SHARDSIFT_SLEEP_AT")  # "<glob>=<seconds>": hold a run at a point (lock tests)
    if nap:
        pat, _, secs = nap.rpartition("=")
        if fnmatch.fnmatchcase(name, pat):
            import time

            time.sleep(float(secs))
    pat = os.environ.get("SHARDSIFT_KILL_AT")
    if pat and fnmatch.fnmatchcase(name, pat):
        try:
            os.killpg(os.getpgrp(), signal.SIGKILL)
        finally:
            os.kill(os.getpid(), signal.SIGKILL)
