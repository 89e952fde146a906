"""A small filesystem layer for the work dir and the output: plain ``os`` for local paths, fsspec for URIs.

Local paths go through exactly the calls the runner always made (``os.replace`` of a temporary
name, ``os.makedirs``, ...), so local behaviour and bytes do not change. Remote URIs (``s3://``,
``gs://``, ``abfs://``, ...) go through fsspec with the options registered for their prefix
(``output.storage_options``): the executors send them with every task to the worker processes.

Object stores have no directories and no rename. What stands in for them:

- a file write is one PUT (or one multipart upload), which an object store makes visible whole or not
  at all: the same guarantee as write-to-temporary-then-rename on a local disk;
- "directories" exist when an object is under their prefix; ``makedirs`` is a no-op;
- ``replace_dir`` (the data/ rename) copies every object from the temporary prefix to the final one,
  then deletes the temporary prefix. It is not atomic, which is why the runner writes manifest.json
  only after it returns: a reader that sees manifest.json sees every data part.
- listings are not cached: another process (a worker) may have written the object a moment ago.
"""
from __future__ import annotations

import hashlib
import io
import os
import posixpath
import shutil
import tempfile
from typing import Any

_OPTIONS: dict[str, dict] = {}  # "scheme://bucket/prefix" -> fsspec options


def is_remote(path: str) -> bool:
    return isinstance(path, str) and "://" in path and not path.startswith("file://")


def _root(uri: str) -> str:
    return uri.rstrip("/")


def set_options(uri: str, options: dict | None) -> None:
    """Register fsspec options for every path under ``uri`` (sent with every task)."""
    if not is_remote(uri):
        return
    _OPTIONS[_root(uri)] = dict(options or {})


def registry() -> dict:
    """The registered options, to send with a task to another process."""
    return dict(_OPTIONS)


def load_registry(reg: dict | None) -> None:
    """Install options received from the driver (every task in a worker process, before it runs)."""
    if reg:
        _OPTIONS.update(reg)


def options_for(uri: str) -> dict:
    best, opts = -1, {}
    for prefix, o in _OPTIONS.items():
        if (uri == prefix or uri.startswith(prefix + "/")) and len(prefix) > best:
            best, opts = len(prefix), o
    return opts


def _fs(uri: str):
    """(fsspec filesystem, path within it) for a remote URI."""
    import fsspec

    opts = dict(options_for(uri))
    proto = uri.split("://", 1)[0]
    if proto in ("s3", "s3a", "gs", "gcs", "abfs", "az"):
        opts.setdefault("use_listings_cache", False)  # workers write what the driver then lists
    return fsspec.core.url_to_fs(uri, **opts)


def _uri(uri: str, fs_path: str) -> str:
    return f"{uri.split('://', 1)[0]}://{fs_path}"


# -- paths -------------------------------------------------------------------------------------

def abspath(path: str) -> str:
    if is_remote(path):
        return path.rstrip("/")
    return os.path.abspath(path.removeprefix("file://"))


def join(base: str, *parts: str) -> str:
    return posixpath.join(base, *parts) if is_remote(base) else os.path.join(base, *parts)


def basename(path: str) -> str:
    return posixpath.basename(path.rstrip("/")) if is_remote(path) else os.path.basename(path)


# -- queries -----------------------------------------------------------------------------------

def exists(path: str) -> bool:
    if not is_remote(path):
        return os.path.exists(path)
    fs, p = _fs(path)
    return fs.exists(p)


def isdir(path: str) -> bool:
    if not is_remote(path):
        return os.path.isdir(path)
    fs, p = _fs(path)
    return fs.isdir(p)


def listdir(path: str) -> list[str]:
    """Names directly under ``path`` ([] when there is nothing)."""
    if not is_remote(path):
        return os.listdir(path)
    fs, p = _fs(path)
    try:
        return sorted({posixpath.basename(x.rstrip("/")) for x in fs.ls(p, detail=False)} - {""})
    except FileNotFoundError:
        return []


def getsize(path: str) -> int:
    if not is_remote(path):
        return os.path.getsize(path)
    fs, p = _fs(path)
    return int(fs.size(p))


# -- changes -----------------------------------------------------------------------------------

def makedirs(path: str) -> None:
    if not is_remote(path):
        os.makedirs(path, exist_ok=True)


def remove(path: str) -> None:
    """Remove a file or a whole tree; nothing when it does not exist."""
    if not is_remote(path):
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        elif os.path.exists(path) or os.path.islink(path):
            os.unlink(path)
        return
    fs, p = _fs(path)
    try:
        if fs.isdir(p):
            fs.rm(p, recursive=True)
        elif fs.exists(p):
            fs.rm(p)
    except FileNotFoundError:
        pass


def open_file(path: str, mode: str = "rb"):
    if not is_remote(path):
        return open(path, mode)
    fs, p = _fs(path)
    return fs.open(p, mode)


def read_bytes(path: str) -> bytes:
    with open_file(path, "rb") as fh:
        return fh.read()


def put_bytes(path: str, data: bytes) -> None:
    """Write a remote object whole: one PUT (one multipart upload when large) is atomic on object stores."""
    fs, p = _fs(path)
    fs.pipe_file(p, data)


def replace_dir(src: str, dst: str) -> None:
    """Move the tree ``src`` to ``dst`` (which must not exist). Local: one atomic rename.

    Remote: copy every object, then delete ``src``. Not atomic: callers publish a marker
    (manifest.json) only after this returns.
    """
    if not is_remote(src):
        os.replace(src, dst)
        return
    fs, sp = _fs(src)
    _, dp = _fs(dst)
    sp = sp.rstrip("/")
    for f in sorted(fs.find(sp)):
        fs.copy(f, dp.rstrip("/") + "/" + f[len(sp) + 1:])
    fs.rm(sp, recursive=True)


def move(src: str, dst: str) -> None:
    """One file to another place: a rename on a local disk (a copy where the two are on different
    file systems), a copy then a delete on object storage."""
    if not is_remote(src) and not is_remote(dst):
        shutil.move(src, dst)
        return
    with open_file(src, "rb") as fin, open_file(dst, "wb") as fout:
        shutil.copyfileobj(fin, fout, 8 << 20)
    remove(src)


def upload(local: str, dst: str) -> None:
    """Copy a local file or directory to ``dst`` (local or remote)."""
    if not is_remote(dst):
        (shutil.copytree if os.path.isdir(local) else shutil.copyfile)(local, dst)
        return
    fs, p = _fs(dst)
    if os.path.isdir(local):
        for root, _, files in os.walk(local):
            for f in sorted(files):
                rel = os.path.relpath(os.path.join(root, f), local).replace(os.sep, "/")
                fs.put_file(os.path.join(root, f), f"{p}/{rel}")
    else:
        fs.put_file(local, p)


def write_local_atomic(path: str, writer, sync: bool = False) -> None:
    """Write the local file ``path`` whole or not at all: ``writer(fh)`` fills a temporary file in
    the same folder, which then replaces ``path`` (after an fsync with ``sync``)."""
    d = os.path.dirname(path) or "."
    os.makedirs(d, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=d)
    try:
        with os.fdopen(fd, "wb") as fh:
            writer(fh)
            if sync:
                fh.flush()
                os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; results are ordinary readable files
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def write_atomic(path: str, data: bytes | None = None, writer=None, sync: bool = False) -> None:
    """Write ``data``, or what ``writer(fh)`` writes to a binary file handle, to ``path`` (local or a
    URI) whole or not at all: an object PUT is already all-or-nothing; a local file is filled under a
    temporary name and renamed into place. A local writer streams into the file (no copy in memory)."""
    if is_remote(path):
        if writer is not None:
            buf = io.BytesIO()
            writer(buf)
            data = buf.getvalue()
        put_bytes(path, data)
        return
    write_local_atomic(path, writer if writer is not None else lambda fh: fh.write(data), sync=sync)


def download(src: str, local: str) -> None:
    """Copy the file ``src`` (local or remote) to the local path ``local``, whole or not at all."""
    def copy(fout):
        with open_file(src, "rb") as fin:
            shutil.copyfileobj(fin, fout, 8 << 20)

    write_local_atomic(local, copy)


def arrow_fs(path: str) -> tuple[Any, str]:
    """A pyarrow filesystem (None for a local path, i.e. pyarrow's default) and the path within it."""
    if not is_remote(path):
        return None, path
    import pyarrow.fs as pafs

    fs, p = _fs(path)
    return pafs.PyFileSystem(pafs.FSSpecHandler(fs)), p


def local_dir(path: str) -> str:
    """A local directory standing for ``path``: itself when local; a stable scratch dir for a URI.

    Selectors write their private fit/decide files with plain ``open``/``numpy``; with a remote work
    dir those files live on the driver's disk, under a name derived from the URI so that a rerun on
    the same machine finds them.
    """
    if not is_remote(path):
        os.makedirs(path, exist_ok=True)
        return path
    h = hashlib.sha256(path.encode()).hexdigest()[:16]
    base = os.environ.get("SHARDSIFT_SCRATCH") or os.path.join(tempfile.gettempdir(), "shardsift-scratch")
    d = os.path.join(base, f"{h}-{basename(path)}")
    os.makedirs(d, exist_ok=True)
    return d


class NoLock:
    """Stands in for the output lock on an object store (which has no exclusive create)."""

    held = False

    def acquire(self) -> None:
        pass

    def release(self) -> None:
        pass
