"""Ahead-of-time builds of the kernels on ``minhash_dedup``'s and ``exact_dedup``'s default paths.

``python -m shardsift._aot build`` compiles the kernels listed in :data:`EXPORTS` (numba's
``pycc``, for this machine's CPU) into one extension module. A process that finds it runs those
kernels without importing numba or loading LLVM (see ``shardsift._numba``): ~0.6 CPU-s and
~70 MB less per process. The build is keyed by the kernels' source files, the numba, llvmlite,
NumPy and Python versions and the CPU's features: after any change the key differs, the old
build is ignored and the kernels run under numba's JIT as before, with the same results, until
the next build. A kernel called with arguments its build does not take (another dtype, a
non-contiguous array) also runs under the JIT. ``make`` builds it after installing.

Where: ``$SHARDSIFT_AOT_DIR``, else ``shardsift/__pycache__/aot`` next to the sources.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import sys

import numpy as np

# "module:kernel" -> variants, each (return type, argument types) in numba's notation; the
# arguments are also checked before a call: an array's dtype, dimensions and C order, a scalar's kind
_WORD = ["i8[::1]", "i8[::1]", "u1[::1]", "u8[::1]", "u8[::1]", "u8[::1]", "i8"]  # _word_args
EXPORTS: dict[str, list[tuple[str, list[str]]]] = {
    "shardsift.selectors.dedup:_ascii_docs": [("b1[::1]", ["i8[::1]", "i8[::1]", "u1[::1]"])],
    "shardsift.selectors.dedup:_word_signatures": [("Tuple((u8[:, ::1], i4[::1]))", _WORD + ["u8[::1]", "u8[::1]"])],
    "shardsift.selectors.dedup:_band_keys": [("u8[:, ::1]", ["u8[:, ::1]", "i8", "i8"])],
    "shardsift.selectors.dedup:_word_band_keys": [("Tuple((u8[:, ::1], i4[::1]))",
                                                   _WORD + ["u8[::1]", "u8[::1]", "i8", "i8", "u4[::1]"])],
    "shardsift.selectors.dedup:_row_hash": [("u8[::1]", ["u8[:, ::1]", "i4[::1]"]),
                                            ("u8[::1]", ["u8[:, ::1]", "i8[::1]"])],
    "shardsift.selectors.dedup:_runs": [("Tuple((i4[::1], i8[::1]))", ["u8[::1]", "i4[::1]"])],
    "shardsift.selectors.dedup:_word_sets_into": [("none", _WORD + ["u4[::1]", "i8[::1]", "i8"])],
    "shardsift.selectors.dedup:_sets_from_kept": [("none", ["u4[::1]", "i8[::1]", "i8[::1]", "u4[::1]", "i8[::1]",
                                                            "i8"])],
    "shardsift.selectors.dedup:_cluster_band": [
        ("none", ["i4[::1]", "i8[::1]", "i4[::1]", "u4[::1]", "i8[::1]", "f8", "b1", "i8", "f4[::1]", "i8[::1]",
                  "u8[::1]"])],
    "shardsift.selectors.dedup:_roots": [("i4[::1]", ["i4[::1]"])],
    # exact_dedup's hash and length of the normalized text; hash_strings' plain hash (the scan's
    # ids longer than the NumPy path takes)
    "shardsift.text:_normalized_hashes": [("Tuple((u8[::1], i8[::1]))",
                                           ["i8[::1]", "i8[::1]", "u1[::1]", "b1", "b1", "i8[::1]"])],
}
# the files whose code the build holds (the kernels, what they call, this list)
SOURCES = ["selectors/dedup.py", "text.py", "pipeline/kernels.py", "_numba.py", "_aot.py"]

_DTYPES = {"b1": np.bool_, "i4": np.int32, "i8": np.int64, "u1": np.uint8, "u4": np.uint32, "u8": np.uint64,
           "f4": np.float32, "f8": np.float64}
_SCALAR_KINDS = {"b1": (bool, np.bool_), "i8": (int, np.integer), "f8": (float, int, np.floating, np.integer)}
_LOADED: list = []  # [module or None], once looked up


def folder() -> str:
    return os.environ.get("SHARDSIFT_AOT_DIR") or os.path.join(os.path.dirname(__file__), "__pycache__", "aot")


def _cpu_features() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith(("flags", "Features")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def _dist_version(dist: str) -> str:
    """The installed version of a distribution, as importlib.metadata.version finds it (the first
    sys.path entry with its .dist-info), from the folder's name: importing importlib.metadata
    costs ~0.02 CPU-s per process, a tenth of a small run's fixed cost."""
    prefix = dist.lower().replace("-", "_") + "-"
    for entry in sys.path:
        try:
            names = os.listdir(entry or ".")
        except OSError:
            continue
        for name in names:
            if name.lower().startswith(prefix) and name.endswith((".dist-info", ".egg-info")):
                return name[len(prefix):].rsplit(".", 1)[0].split("-")[0]
    import importlib.metadata  # a zipped or otherwise unlisted install

    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "none"


def key() -> str:
    """What the build depends on; its hash names the module."""
    h = hashlib.sha256()
    here = os.path.dirname(os.path.abspath(__file__))
    for rel in SOURCES:
        with open(os.path.join(here, rel), "rb") as fh:
            h.update(rel.encode() + b"\0" + fh.read())
    for dist in ("numba", "llvmlite", "numpy"):
        h.update(f"{dist}={_dist_version(dist)}".encode())
    h.update(f"{sys.version_info[:2]} {os.uname().machine} {_cpu_features()}".encode())
    return h.hexdigest()[:16]


def module_name() -> str:
    return f"_shardsift_kernels_{key()}"


def _module_path(name: str) -> str | None:
    d = folder()
    try:
        names = os.listdir(d)
    except OSError:
        return None
    for f in names:
        if f.startswith(name + ".") and f.endswith((".so", ".pyd")):
            return os.path.join(d, f)
    return None


def load():
    """The build for the current key, or None (not built, or built from other sources)."""
    if not _LOADED:
        mod = None
        if os.environ.get("SHARDSIFT_AOT", "1") != "0":
            name = module_name()
            path = _module_path(name)
            if path is not None:
                spec = importlib.util.spec_from_file_location(name, path)
                mod = importlib.util.module_from_spec(spec)
                spec.loader.exec_module(mod)
        _LOADED.append(mod)
    return _LOADED[0]


def _export_name(qual: str, i: int) -> str:
    mod, func = qual.split(":")
    return f"{mod.rsplit('.', 1)[-1]}__{func.lstrip('_')}__{i}"


def _arg_check(spec: str):
    """A test of one argument against its type in the build."""
    m = re.fullmatch(r"(\w+)(?:\[(.*)\])?", spec.replace(" ", ""))
    code, dims = m.group(1), m.group(2)
    if dims is None:
        kinds = _SCALAR_KINDS[code]
        return lambda a: isinstance(a, kinds)
    dtype, ndim = np.dtype(_DTYPES[code]), len(dims.split(","))
    return lambda a: (isinstance(a, np.ndarray) and a.dtype == dtype and a.ndim == ndim
                      and a.flags.c_contiguous)


def _fits(specs: list[str]):
    checks = [_arg_check(s) for s in specs]
    n = len(checks)
    return lambda args: len(args) == n and all(c(a) for c, a in zip(checks, args))


def variants(kernel) -> tuple:
    """((function, fits(args)), ...) of a kernel's build; empty without one."""
    qual = f"{kernel.__module__}:{kernel.__qualname__}"
    sigs = EXPORTS.get(qual)
    if not sigs:
        return ()
    mod = load()
    if mod is None:
        return ()
    return tuple((getattr(mod, _export_name(qual, i)), _fits(args)) for i, (_, args) in enumerate(sigs))


def build(out_dir: str | None = None, quiet: bool = False) -> str:
    """Compile every exported kernel into this key's module; returns its path."""
    import importlib
    import shutil
    import tempfile

    from numba.pycc import CC

    from . import _numba

    out_dir = out_dir or folder()
    os.makedirs(out_dir, exist_ok=True)
    name = module_name()
    # built in a temporary folder and renamed into place whole: a process starting meanwhile
    # never loads half a file
    tmp = tempfile.mkdtemp(prefix=".build-", dir=out_dir)
    cc = CC(name)
    cc.output_dir = tmp
    cc.target_cpu = "host"
    cc.verbose = not quiet
    for qual, sigs in EXPORTS.items():
        mod, func = qual.split(":")
        kernel = getattr(importlib.import_module(mod), func)
        py_func = kernel.py_func
        for i, (ret, args) in enumerate(sigs):
            cc.export(_export_name(qual, i), f"{ret}({', '.join(args)})")(py_func)
    _numba._materialize()  # the kernels' callees must be numba dispatchers to compile
    for f in os.listdir(out_dir):  # builds of older keys
        if f.startswith("_shardsift_kernels_") and not f.startswith(name + "."):
            try:
                os.remove(os.path.join(out_dir, f))
            except OSError:
                pass
    try:
        cc.compile()
        built = [f for f in os.listdir(tmp) if f.startswith(name + ".") and f.endswith((".so", ".pyd"))]
        if not built:
            raise RuntimeError(f"numba.pycc wrote no module {name} in {tmp}")
        path = os.path.join(out_dir, built[0])
        os.replace(os.path.join(tmp, built[0]), path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def main(argv=None) -> int:
    import argparse
    import time

    ap = argparse.ArgumentParser(prog="python -m shardsift._aot", description=__doc__.split("\n\n")[0])
    ap.add_argument("command", choices=["build", "status"])
    ap.add_argument("--if-stale", action="store_true", help="build only when no module matches the current key")
    args = ap.parse_args(argv)
    path = _module_path(module_name())
    if args.command == "status":
        print(path or f"not built for key {key()} (in {folder()})")
        return 0 if path else 1
    if args.if_stale and path:
        print(f"kernels up to date: {path}")
        return 0
    t0 = time.perf_counter()
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # numba.pycc's pending-deprecation notice
        path = build(quiet=True)
    print(f"kernels built in {time.perf_counter() - t0:.0f} s: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
