"""The process's store of score-to-decide handoffs (selectors.base.Handoff), by stage and shard.

It is active only inside ``Runner.run`` (``active``), that is in the driver: a worker process (a
spawned pool process, a Ray worker) never activates it, so a score running there gets no handoff
and holds nothing for a decide that would never see it. A score task opens its shard's handoff
afresh (a rerun replaces the old one), marks it finished after its last batch, and the stage's
decide takes it; the runner drops what a stage left once its decide is over, and everything when
the run ends.
"""
from __future__ import annotations

import contextlib

from ..selectors.base import Handoff

_active = 0
_slots: dict[tuple[str, int], Handoff] = {}
_shared: dict[str, dict] = {}  # stage dir -> the dict its handoffs share


@contextlib.contextmanager
def active():
    """Handoffs are kept while inside (nested runs share the store; the outermost clears it)."""
    global _active
    _active += 1
    try:
        yield
    finally:
        _active -= 1
        if not _active:
            for key in list(_slots):
                _release(key)
            _shared.clear()


def open_slot(stage_dir: str, index: int) -> Handoff | None:
    """A fresh handoff for shard ``index``'s score in the stage at ``stage_dir`` (replacing one
    left by an earlier try), or None outside an active store."""
    if not _active:
        return None
    _release((stage_dir, index))
    h = Handoff(_shared.setdefault(stage_dir, {}))
    _slots[(stage_dir, index)] = h
    return h


def finish(h: Handoff | None) -> None:
    """The score that filled ``h`` is done: its decide may take it."""
    if h is not None:
        h.complete = True


def take(stage_dir: str, index: int) -> list | None:
    """The items of a finished, kept handoff, removed from the store; else None."""
    h = _slots.get((stage_dir, index))
    if h is None or not h.complete or h.dropped:
        return None
    items = h.items
    _release((stage_dir, index))
    return items


def drop_stage(stage_dir: str) -> None:
    """Free whatever the stage's scores left (its decide is over, or failed)."""
    for key in [k for k in _slots if k[0] == stage_dir]:
        _release(key)
    _shared.pop(stage_dir, None)


def _release(key: tuple[str, int]) -> None:
    h = _slots.pop(key, None)
    if h is not None:
        h.drop()
