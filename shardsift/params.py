"""One validator for every key a user writes: selector parameters and the config's own sections.

A :class:`Param` declares a key's type, default, range, choices and doc line; :func:`validate`
checks a whole mapping against a dict of them, naming the first bad key with its place
(``stages[1].dsir.keep``) and the nearest valid key. Sizes are parsed here, once: ``MB`` is 10^6
bytes and ``MiB`` 2^20, everywhere.
"""
from __future__ import annotations

import difflib
import math
import re
from collections.abc import Sequence
from typing import Any

from .errors import ConfigError

REQUIRED = object()

_TYPE_NAMES = {int: "int", float: "number", str: "string", bool: "bool", list: "list", dict: "mapping"}
_SIZE_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
               "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def did_you_mean(value, candidates) -> str:
    """' (did you mean 'x'?)' for the nearest candidate, or ''."""
    near = difflib.get_close_matches(str(value), [str(c) for c in candidates], n=1)
    return f" (did you mean {near[0]!r}?)" if near else ""


def parse_size(value, where: str) -> int:
    """Bytes from an int or a string such as '256MB' (10^6) or '1GiB' (2^30)."""
    if isinstance(value, bool):
        raise ConfigError(f"{where}: expected a size like 256MB, got {value!r}")
    if isinstance(value, (int, float)):
        if value <= 0 or (isinstance(value, float) and math.isnan(value)):
            raise ConfigError(f"{where}: {value!r} must be positive")
        return int(value)
    if isinstance(value, str):
        m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)\s*", value)
        if m and m.group(2).lower() in _SIZE_UNITS:
            n = int(float(m.group(1)) * _SIZE_UNITS[m.group(2).lower()])
            if n > 0:
                return n
    raise ConfigError(f"{where}: {value!r} is not a size (examples: 256MB, 1GiB, 1000000)")


class Size:
    """A Param type: a byte size written as a number or '256MB' / '1GiB'; checked to an int."""


_COUNT_UNITS = {"": 1, "k": 10**3, "m": 10**6, "b": 10**9, "t": 10**12}


def parse_count(value, where: str) -> int:
    """A count from an int or a string such as '2B' (2e9) or '500M'; K/M/B/T are 10^3/6/9/12."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if value >= 0 and float(value).is_integer():
            return int(value)
    elif isinstance(value, str):
        m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]?)\s*", value.replace("_", ""))
        if m and m.group(2).lower() in _COUNT_UNITS:
            n = float(m.group(1)) * _COUNT_UNITS[m.group(2).lower()]
            if n.is_integer():
                return int(n)
    raise ConfigError(f"{where}: {value!r} is not a count (examples: 2B, 500M, 1.5K, 1000000)")


class Count:
    """A Param type: a non-negative count written as a number or '2B' / '500M'; checked to an int."""


class Param:
    """Declares one key: its type, default, allowed range and choices, and a doc line."""

    def __init__(
        self,
        type: type | tuple = object,
        default: Any = REQUIRED,
        doc: str = "",
        *,
        choices: Sequence | None = None,
        ge: float | None = None,
        gt: float | None = None,
        le: float | None = None,
        lt: float | None = None,
    ):
        self.type = type if isinstance(type, tuple) else (type,)
        self.default = default
        self.doc = doc
        self.choices = tuple(choices) if choices is not None else None
        self.ge, self.gt, self.le, self.lt = ge, gt, le, lt
        self.name = ""

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    # a Param is also a descriptor on a Selector class: reading it gives the instance's value
    def __set_name__(self, owner, name):
        self.name = name

    def __get__(self, obj, objtype=None):
        if obj is None:
            return self
        return obj.__dict__.get(self.name, None if self.required else self.default)

    def __set__(self, obj, value):
        obj.__dict__[self.name] = value

    def type_names(self) -> str:
        return " or ".join("size" if t is Size else "count" if t is Count else _TYPE_NAMES.get(t, getattr(t, "__name__", str(t)))
                           for t in self.type)

    def describe(self) -> str:
        bits = ["|".join(map(str, self.choices))] if self.choices else [self.type_names()]
        rng = [f"{txt} {b}" for b, txt in ((self.gt, ">"), (self.ge, ">="), (self.lt, "<"), (self.le, "<="))
               if b is not None]
        if rng:
            bits.append(", ".join(rng))
        bits.append("required" if self.required else f"default {self.default!r}")
        return "; ".join(bits)

    def check(self, value, where: str):
        """The value, validated and converted (ints where numbers are taken, sizes to bytes)."""
        if value is None and (self.required or self.default is None):
            if self.required:
                raise ConfigError(f"{where}: a value is required ({self.describe()})")
            return None
        given = value  # messages echo what the user wrote, not the converted value
        if Size in self.type and (isinstance(value, str) or
                                  (isinstance(value, (int, float)) and not isinstance(value, bool))):
            value = parse_size(value, where)
        elif Count in self.type and (isinstance(value, str) or
                                     (isinstance(value, (int, float)) and not isinstance(value, bool))):
            value = parse_count(value, where)
        elif object not in self.type:
            value = self._typed(value, where)
        if self.choices is not None and value not in self.choices:
            raise ConfigError(f"{where}: {value!r} is not one of {', '.join(map(str, self.choices))}"
                              f"{did_you_mean(value, self.choices)}")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if isinstance(value, float) and math.isnan(value):
                raise ConfigError(f"{where}: NaN is not allowed")
            for bound, ok, txt in ((self.gt, value > (self.gt or 0), ">"), (self.ge, value >= (self.ge or 0), ">="),
                                   (self.lt, value < (self.lt or 0), "<"), (self.le, value <= (self.le or 0), "<=")):
                if bound is not None and not ok:
                    raise ConfigError(f"{where}: {given!r} is out of range (must be {txt} {bound})")
        return value

    def _typed(self, value, where: str):
        for t in self.type:
            if t is float and isinstance(value, (int, float)) and not isinstance(value, bool):
                return float(value)
            if t is int and isinstance(value, bool):
                continue
            if t not in (Size, Count) and isinstance(value, t):
                return value
        raise ConfigError(f"{where}: expected {self.type_names()}, got {type(value).__name__} {value!r}")


def check_keys(mapping, allowed, where: str) -> None:
    """Every key of ``mapping`` is one of ``allowed``; else one line naming it and the nearest."""
    if not isinstance(mapping, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(mapping).__name__} {mapping!r}")
    for key in mapping:
        if key not in allowed:
            raise ConfigError(f"{where}: unknown key {key!r}{did_you_mean(key, allowed)}; "
                              f"valid keys: {', '.join(allowed) or 'none'}")


def validate(mapping: dict, specs: dict[str, Param], where: str) -> dict:
    """Every key of ``specs`` with its checked value (defaults filled in); unknown keys refused."""
    check_keys(mapping, specs, where)
    out = {}
    for key, spec in specs.items():
        if key not in mapping and spec.required:
            raise ConfigError(f"{where}.{key}: a value is required ({spec.describe()})")
        value = mapping.get(key, None if spec.required else spec.default)
        out[key] = spec.check(value, f"{where}.{key}")
    return out
