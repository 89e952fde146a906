"""One run per output: ``OUTPUT/.lock`` holds the owner's pid, host and start time.

A second run pointed at the same output refuses with the owner's details. A lock left by a run that
was killed is taken over when its pid no longer runs on this host; a lock from another host is never
taken over automatically (delete the file once you know that run is gone).
"""
from __future__ import annotations

import errno
import json
import os
import socket
import time

from ..errors import UsageError


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class OutputLock:
    def __init__(self, out_dir: str):
        self.path = os.path.join(out_dir, ".lock")
        self.held = False

    def acquire(self) -> None:
        me = {"pid": os.getpid(), "host": socket.gethostname(),
              "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError as exists:
                owner = self._owner()
                if owner is None:
                    continue  # vanished or half-written: try again
                if owner.get("host") == me["host"] and not _alive(int(owner.get("pid", -1))):
                    try:
                        os.unlink(self.path)  # stale: its run was killed
                    except FileNotFoundError:
                        pass
                    continue
                raise UsageError(
                    f"{os.path.dirname(self.path)}: another shardsift run is writing here (pid {owner.get('pid')} "
                    f"on {owner.get('host')}, started {owner.get('started')}); if it is gone, delete {self.path}"
                ) from exists
            with os.fdopen(fd, "w") as fh:
                json.dump(me, fh)
            self.held = True
            return
        raise UsageError(f"{self.path}: could not take the output lock")

    def _owner(self):
        try:
            with open(self.path, encoding="utf-8") as fh:
                return json.load(fh)
        except (OSError, ValueError):
            return None

    def release(self) -> None:
        if self.held:
            try:
                os.unlink(self.path)
            except OSError as err:
                if err.errno != errno.ENOENT:
                    raise
            self.held = False
