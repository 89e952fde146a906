"""The base of the web-text rule filters: measure every rule per document, drop on the first failure.

A subclass's ``measure`` returns one array per measurement (a numba kernel over the batch's Arrow
buffers); ``failures`` turns them into one bool mask per rule, in the fixed order the reference
applies them. A dropped document's reason is ``<filter>:<rule>`` of the first rule it fails; every
measurement goes to the scores sidecar through ``Decision.extra``.
"""
from __future__ import annotations

import numpy as np

from ...api import Decision, Docs, Filter
from ...columns import spans
from ...errors import ConfigError
from .charsets import char_classes


class RuleFilter(Filter):
    """A document-scope filter made of ordered threshold rules."""

    def setup(self) -> None:
        char_classes()  # built once per process: every code point's class bits

    def measure(self, starts: np.ndarray, ends: np.ndarray, data: np.ndarray,
                classes: np.ndarray) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def failures(self, m: dict[str, np.ndarray]) -> list[tuple[str, np.ndarray]]:
        raise NotImplementedError

    def check_order(self, low: str, high: str) -> None:
        lo, hi = getattr(self, low), getattr(self, high)
        if lo is not None and hi is not None and hi < lo:
            raise ConfigError(f"{self.display_name()}.{high}: {hi} is below {low} ({lo})")

    def keep(self, docs: Docs) -> Decision:
        starts, ends, data = spans(docs.text)
        measured = self.measure(starts, ends, data, char_classes())
        n = len(starts)
        keep = np.ones(n, dtype=bool)
        reason = np.full(n, "", dtype=object)
        prefix = self.display_name()
        for rule, failed in self.failures(measured):
            first = failed & keep
            reason[first] = f"{prefix}:{rule}"
            keep &= ~failed
        return Decision(keep=keep, reason=reason.astype(str), extra=measured)
