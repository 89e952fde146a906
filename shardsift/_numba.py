"""numba for every kernel module: imported on the first kernel call that needs it, not before.

``nb.njit(...)`` returns a :class:`Kernel`, a stand-in for the numba dispatcher. Calling it runs
the kernel's ahead-of-time compiled build when one is installed and the arguments fit it
(``shardsift._aot``: a plain extension module, so neither numba nor LLVM is loaded), and the
numba dispatcher otherwise. numba is imported the first time a dispatcher is needed; every kernel
defined so far then gets its dispatcher, and each module's global that names a kernel is pointed
at that dispatcher, so kernels calling kernels are typed and inlined by numba exactly as when they
were decorated by numba itself. Kernels defined after that are numba dispatchers straight away.

Why: importing numba and loading its cached kernels costs ~0.6 CPU-s and ~70 MB of fresh memory
per process (LLVM, numba's type registries), a quarter of a 40,000-document ``minhash_dedup``
run; with the kernels compiled ahead of time a process pays neither.

numba's own import is made without the SciPy import of its BLAS probe: when numba loads its first
kernel it imports ``numba.np.arraymath``, whose import-time ``_check_blas()`` imports
``scipy.linalg.cython_blas`` only to learn whether SciPy is installed (0.25 CPU-s per process),
though no shardsift kernel calls BLAS. So arraymath is imported with that probe asking only
whether SciPy can be found; the real probe is put back at once, and numba calls it again when it
compiles a function that does use BLAS (``np.dot``, ``np.linalg``), which imports SciPy then.
Nothing changes where arraymath was already imported, or where numba's layout differs from what
this expects: the probe then runs as numba wrote it.
"""
from __future__ import annotations

import importlib
import importlib.util
import sys
import threading

__all__ = ["nb", "Kernel"]

_PENDING: list = []      # kernels without a dispatcher yet
_NUMBA: list = []        # the numba module, once imported
_LOCK = threading.RLock()


def _global(module: str, name: str):
    return getattr(importlib.import_module(module), name)


class Kernel:
    """A numba kernel before numba is imported: ahead-of-time build or dispatcher, on call."""

    def __init__(self, func, options: dict):
        self.py_func = func
        self.options = options
        self._dispatcher = None
        self._aot = None
        self.__name__ = func.__name__
        self.__qualname__ = func.__qualname__
        self.__module__ = func.__module__
        self.__doc__ = func.__doc__
        self.__wrapped__ = func
        _PENDING.append(self)

    def __call__(self, *args):
        if self._aot is None:
            from . import _aot

            self._aot = _aot.variants(self)
        for fn, fits in self._aot:
            if fits(args):
                return fn(*args)
        return self.dispatcher(*args)

    @property
    def dispatcher(self):
        """The numba dispatcher (imports numba on first use)."""
        if self._dispatcher is None:
            _materialize()
        return self._dispatcher

    def __repr__(self) -> str:
        return f"<shardsift kernel {self.__module__}.{self.__qualname__}>"

    def __reduce__(self):  # by name, like a function: unpickled as what the module holds then
        return _global, (self.__module__, self.__qualname__)


def _njit(*args, **options):
    if _NUMBA:  # numba is loaded: a dispatcher straight away
        return _NUMBA[0].njit(*args, **options)
    if len(args) == 1 and callable(args[0]) and not options:
        return Kernel(args[0], {})
    return lambda func: Kernel(func, options)


class _Namespace:
    """``nb.njit`` as numba's, lazily; any other attribute is numba's own (importing it)."""

    njit = staticmethod(_njit)

    def __getattr__(self, name):
        return getattr(_import_numba(), name)


nb = _Namespace()


def _import_numba():
    with _LOCK:
        if not _NUMBA:
            import numba

            _import_arraymath_without_scipy()
            from numba.extending import typeof_impl

            # a kernel reached through a closure or a local name (not a module global) is typed as its dispatcher
            @typeof_impl.register(Kernel)
            def _typeof_kernel(val, c):
                return typeof_impl(val.dispatcher, c)

            _NUMBA.append(numba)
        return _NUMBA[0]


def _materialize() -> None:
    with _LOCK:
        numba = _import_numba()
        pending = list(_PENDING)
        for k in pending:
            k._dispatcher = numba.njit(**k.options)(k.py_func)
        del _PENDING[:len(pending)]
        for name, mod in list(sys.modules.items()):
            if mod is None or not (name == "shardsift" or name.startswith("shardsift.")):
                continue
            space = vars(mod)
            for key, val in list(space.items()):
                if isinstance(val, Kernel) and val._dispatcher is not None:
                    space[key] = val._dispatcher


def _import_arraymath_without_scipy() -> None:
    if "numba.np.arraymath" in sys.modules:
        return
    try:
        from numba.np import linalg
        probe = linalg.ensure_blas
    except (ImportError, AttributeError):
        return

    def scipy_present():
        if importlib.util.find_spec("scipy") is None:
            raise ImportError("scipy 0.16+ is required for linear algebra")

    linalg.ensure_blas = scipy_present
    try:
        import numba.np.arraymath  # noqa: F401
    finally:
        linalg.ensure_blas = probe
