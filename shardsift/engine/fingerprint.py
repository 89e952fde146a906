"""Fingerprints that key the work dir: a stage's results are reused only when its inputs, its
parameters and its code are those of the run asking for them."""
from __future__ import annotations

import hashlib
import json
import sys


def fingerprint(*parts) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(json.dumps(p, sort_keys=True, default=str).encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


def _hash_code(h, code) -> None:
    """A compiled function's bytecode, constants (nested functions too) and names into ``h``."""
    h.update(code.co_code)
    h.update(repr(code.co_names).encode())
    for c in code.co_consts:
        if hasattr(c, "co_code"):
            _hash_code(h, c)
        else:
            h.update(repr(c).encode())


def code_fp(cls) -> str:
    """What a selector's code is, for its stage's fingerprint: a work dir's results of a selector
    whose code changed are not served again. shardsift's own selectors are covered by the version
    in the input's fingerprint; any other class (and each non-shardsift class it inherits from) by
    the bytes of the file that defines it, or where it has none (a class typed into ``python -c``
    or a notebook) by its methods' compiled code. Code it calls in other modules is not covered:
    a selector's ``version`` attribute is the way to say that changed."""
    h = hashlib.sha256()
    seen = set()
    for klass in cls.__mro__:
        mod = klass.__module__ or ""
        if klass is object or mod == "shardsift" or mod.startswith("shardsift."):
            continue
        path = getattr(sys.modules.get(mod), "__file__", None)
        if path and path not in seen:
            seen.add(path)
            try:
                with open(path, "rb") as fh:
                    h.update(fh.read())
                continue
            except OSError:
                pass
        for name, v in sorted(vars(klass).items()):
            # functions; staticmethod and classmethod (__func__); property (fget, fset)
            for fn in (getattr(v, "__func__", v), getattr(v, "fget", None), getattr(v, "fset", None)):
                code = getattr(fn, "__code__", None)
                if code is not None:
                    h.update(name.encode())
                    _hash_code(h, code)
    return h.hexdigest()[:16]


def stage_seed(seed: int, index: int) -> int:
    return int(hashlib.sha256(f"{seed}:{index}".encode()).hexdigest()[:8], 16) & 0x7FFFFFFF
