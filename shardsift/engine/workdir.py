"""Atomic files in the work dir: a file either exists whole or not at all.

Every task writes its result under a temporary name and renames it into place, so a crash at any
point leaves the work dir consistent and a rerun skips exactly the finished tasks. On an object
store (``s3://...``) a write is a single PUT, which is all-or-nothing in the same way.
"""
from __future__ import annotations

import io
import json
import pickle
import zipfile

import numpy as np

from ..io import storage


def write_json(path: str, obj) -> None:
    storage.write_atomic(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default).encode(), sync=True)


def read_json(path: str):
    with storage.open_file(path, "rb") as fh:
        return json.loads(fh.read().decode("utf-8"))


def write_npz(path: str, arrays: dict) -> None:
    storage.write_atomic(path, writer=lambda fh: np.savez(fh, **arrays), sync=True)


def _source(path: str):
    """A local path as it is; an object store's file fetched into memory."""
    return io.BytesIO(storage.read_bytes(path)) if storage.is_remote(path) else path


def read_npz(path: str, keys=None) -> dict:
    """The arrays of an .npz file (only ``keys``, when given: the others are not read)."""
    with np.load(_source(path), allow_pickle=False) as z:
        return {k: z[k] for k in (z.files if keys is None else keys)}


def npz_headers(path: str) -> dict:
    """{name: (shape, dtype)} of the arrays of an .npz file, from their headers alone."""
    out = {}
    with zipfile.ZipFile(_source(path)) as zf:
        for name in zf.namelist():
            with zf.open(name) as fh:
                major, _ = np.lib.format.read_magic(fh)
                read = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
                shape, _, dtype = read(fh)
            out[name[:-4] if name.endswith(".npy") else name] = (shape, dtype)
    return out


def write_pickle(path: str, obj) -> None:
    storage.write_atomic(path, pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL), sync=True)


def read_pickle(path: str):
    with storage.open_file(path, "rb") as fh:
        return pickle.load(fh)


def remove(path: str) -> None:
    storage.remove(path)


def _json_default(o):
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, np.bool_):
        return bool(o)
    return str(o)
