"""Input shards: resolve paths, globs, directories and URIs to the files of a corpus, each with
its format, size and fingerprint (the work dir is keyed by them)."""
from __future__ import annotations

import glob as globlib
import hashlib
import os
from dataclasses import dataclass, field

import pyarrow.fs as pafs

from ..errors import DataError
from . import layout

PARQUET_EXT = (".parquet", ".pq")
JSONL_EXT = (".jsonl", ".jsonl.gz", ".jsonl.zst", ".json", ".json.gz", ".json.zst", ".ndjson")


def is_remote(path: str) -> bool:
    return "://" in path and not path.startswith("file://")


def filesystem(path: str, storage_options: dict | None = None) -> tuple[pafs.FileSystem, str]:
    """A pyarrow filesystem and the path within it, for local paths and any fsspec URI."""
    if not is_remote(path):
        return pafs.LocalFileSystem(), os.path.abspath(path.removeprefix("file://"))
    import fsspec

    fs, fs_path = fsspec.core.url_to_fs(path, **(storage_options or {}))
    return pafs.PyFileSystem(pafs.FSSpecHandler(fs)), fs_path


def _fsspec(path: str, storage_options: dict | None):
    import fsspec

    return fsspec.core.url_to_fs(path, **(storage_options or {}))


@dataclass(frozen=True)
class Shard:
    """One input file: the unit of parallel work."""

    uri: str            # as the user gave it (for messages)
    path: str           # path within the filesystem
    format: str         # parquet | jsonl
    size: int
    fingerprint: str
    name: str           # short unique name, used in generated ids
    storage_options: dict = field(default_factory=dict, hash=False, compare=False)

    def fs(self) -> pafs.FileSystem:
        return filesystem(self.uri, self.storage_options)[0]

    @property
    def compression(self) -> str | None:
        if self.path.endswith(".gz"):
            return "gzip"
        if self.path.endswith(".zst"):
            return "zstd"
        return None


def _format_of(path: str, fmt: str) -> str | None:
    if fmt != "auto":
        return fmt
    low = path.lower()
    if low.endswith(PARQUET_EXT):
        return "parquet"
    if low.endswith(JSONL_EXT):
        return "jsonl"
    return None


def _fingerprint(fs: pafs.FileSystem, path: str, size: int, mtime) -> str:
    """Size, mtime and the first and last 64 KiB: cheap, and changes when the file does."""
    h = hashlib.sha256(f"{size}:{mtime}".encode())
    try:
        with fs.open_input_file(path) as fh:
            h.update(fh.read(65536))
            if size > 65536:
                fh.seek(max(65536, size - 65536))
                h.update(fh.read(65536))
    except Exception:  # unreadable files are reported when read
        pass
    return h.hexdigest()[:24]


def resolve_shards(paths, fmt: str = "auto", storage_options: dict | None = None,
                   what: str = "input") -> list[Shard]:
    """Expand files, globs and directories into a sorted list of shards. Raises DataError."""
    if isinstance(paths, str):
        paths = [paths]
    found: list[tuple[str, str]] = []  # (uri, fs path)
    for p in paths:
        found.extend(_expand(p, fmt, storage_options, what))
    if not found:
        raise DataError(f"{what}: no input files match {', '.join(map(repr, paths))}")
    seen = set()
    uniq = []
    for uri, path in found:
        if uri not in seen:
            seen.add(uri)
            uniq.append((uri, path))
    names = _short_names([u for u, _ in uniq])
    shards = []
    for (uri, _), name in zip(uniq, names):
        fs, fs_path = filesystem(uri, storage_options)
        try:
            info = fs.get_file_info(fs_path)
        except Exception as err:
            raise DataError(f"{uri}: cannot read ({err})") from None
        if info.type == pafs.FileType.NotFound:
            raise DataError(f"{uri}: file not found")
        f = _format_of(fs_path, fmt)
        if f is None:
            raise DataError(f"{uri}: unknown file type (expected .parquet or .jsonl[.gz|.zst]; "
                            + ("CSV is not read: convert it to Parquet)" if _is_csv(uri) else "set input.format)"))
        size = int(info.size or 0)
        shards.append(Shard(uri=uri, path=fs_path, format=f, size=size,
                            fingerprint=_fingerprint(fs, fs_path, size, info.mtime_ns),
                            name=name, storage_options=dict(storage_options or {})))
    return shards


# files of a shardsift output that a directory walk must not take for input documents
_OUTPUT_FILES = ("manifest.json",)  # a run's manifest is never an input document


def _expand(p: str, fmt: str, storage_options, what) -> list[tuple[str, str]]:
    """The files a path names: a glob's matches, a folder's data files (skipping hidden folders,
    such as a work dir, and the folders of finished shardsift outputs), or the file itself."""
    if is_remote(p):
        fs, fs_path = _fsspec(p, storage_options)
        proto = p.split("://", 1)[0]
        if any(c in fs_path for c in "*?["):
            hits = sorted(fs.glob(fs_path))
        elif fs.isdir(fs_path):
            found = [x for x in fs.find(fs_path) if _format_of(x, fmt)]
            hits = sorted(x for x in found if "/." not in x[len(fs_path):]  # hidden: audit and work dirs
                          and not any(x.startswith(o + "/") for o in _remote_outputs(fs, fs_path)))
        elif fs.exists(fs_path):
            hits = [fs_path]
        else:
            raise DataError(f"{what}: {p} not found")
        return [(f"{proto}://{h}", h) for h in hits]
    local = p.removeprefix("file://")
    if any(c in local for c in "*?["):
        hits = sorted(h for h in globlib.glob(local, recursive=True) if os.path.isfile(h))
        return [(os.path.abspath(h), os.path.abspath(h)) for h in hits]
    if os.path.isdir(local):
        if layout.is_output(local) and os.path.isdir(os.path.join(local, layout.DATA)):
            local = os.path.join(local, "data")  # a finished shardsift output: its kept documents
        hits = []
        for root, dirs, files in os.walk(local):
            if root != local and layout.is_output(root):  # an earlier shardsift output: not input
                dirs[:] = []
                continue
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for f in sorted(files):
                if _format_of(f, fmt) and not f.startswith(".") and f not in _OUTPUT_FILES:
                    hits.append(os.path.join(root, f))
        if not hits:
            raise DataError(f"{what}: folder {p} holds no .parquet or .jsonl files{_other_files(local)}")
        return [(os.path.abspath(h), os.path.abspath(h)) for h in sorted(hits)]
    if not os.path.exists(local):
        raise DataError(f"{what}: {p} not found")
    return [(os.path.abspath(local), os.path.abspath(local))]


def _is_csv(path: str) -> bool:
    return path.lower().endswith((".csv", ".tsv", ".csv.gz", ".tsv.gz"))


def _other_files(folder: str) -> str:
    """' (it holds N other files: .csv, ...)' for the message of a folder with no data files."""
    names = [f for _, dirs, files in os.walk(folder) for f in files if not f.startswith(".")]
    if not names:
        return " (it is empty)"
    exts = sorted({os.path.splitext(f)[1] or f for f in names})
    hint = "; CSV is not read: convert it to Parquet" if any(map(_is_csv, names)) else "; set input.format"
    return f" (it holds {len(names)} other file(s): {', '.join(exts[:5])}{hint})"


def _remote_outputs(fs, root: str) -> set[str]:
    """The folders under ``root`` that hold a finished shardsift output (other than root)."""
    suffix = "/" + layout.MANIFEST
    return {x[: -len(suffix)] for x in fs.find(root) if x.endswith(suffix)} - {root.rstrip("/")}


def _short_names(uris: list[str]) -> list[str]:
    """File names, made unique by their parent folders when two files share a name."""
    base = [u.rstrip("/").split("/")[-1] for u in uris]
    if len(set(base)) == len(base):
        return base
    common = os.path.commonpath([u.split("://")[-1] for u in uris]) if len(uris) > 1 else ""
    return [u.split("://")[-1][len(common):].lstrip("/") for u in uris]
