"""Token shards in Megatron-LM's indexed-dataset layout (a ``.bin``/``.idx`` pair per part).

``PREFIX.bin`` holds every sequence's token ids back to back, in the dtype the index names, with
no header. ``PREFIX.idx`` (all integers little-endian):

    9 bytes   magic ``MMIDIDX\\x00\\x00``
    uint64    version, 1
    uint8     dtype code of the ids (Megatron's codes: 4 = int32, 8 = uint16)
    uint64    S, the number of sequences
    uint64    D, the number of entries in the document index (documents + 1)
    int32[S]  tokens per sequence
    int64[S]  byte offset of each sequence in the .bin
    int64[D]  document index: sequence numbers where documents start, from 0, ending with S

Here every document is one sequence, so the document index is 0, 1, ..., S. The dtype follows
Megatron's rule for a vocabulary of V ids: uint16 when V < 65,500, else int32.
"""
from __future__ import annotations

import os
import struct

import numpy as np

from ..errors import DataError
from . import storage
from .writers import PartCutter

MAGIC = b"MMIDIDX\x00\x00"
VERSION = 1
DTYPE_CODES = {"uint16": 8, "int32": 4}
_CODE_DTYPES = {1: "uint8", 2: "int8", 3: "int16", 4: "int32", 5: "int64", 6: "float64", 7: "float32",
                8: "uint16"}
UINT16_VOCAB = 65_500  # Megatron's cut: a vocabulary below it is stored as uint16


def token_dtype(vocab_size: int | None) -> str:
    """The ids' dtype for a vocabulary of ``vocab_size`` ids (unknown: int32)."""
    return "uint16" if vocab_size is not None and vocab_size < UINT16_VOCAB else "int32"


def index_bytes(lengths: np.ndarray, dtype: str) -> bytes:
    """The .idx of documents of ``lengths`` tokens (one sequence each)."""
    n = len(lengths)
    lengths = np.asarray(lengths, dtype=np.int64)
    pointers = np.zeros(n, dtype=np.int64)
    if n:
        np.cumsum(lengths[:-1] * np.dtype(dtype).itemsize, out=pointers[1:])
    head = MAGIC + struct.pack("<QBQQ", VERSION, DTYPE_CODES[dtype], n, n + 1)
    return b"".join([head, lengths.astype("<i4").tobytes(), pointers.astype("<i8").tobytes(),
                     np.arange(n + 1, dtype="<i8").tobytes()])


def read_index(path: str) -> dict:
    """The header and arrays of an .idx file (its dtype, tokens per document, byte offsets)."""
    data = storage.read_bytes(path)
    if data[:9] != MAGIC or len(data) < 34:
        raise DataError(f"{path}: not a Megatron index (.idx) file")
    version, code, n, d = struct.unpack_from("<QBQQ", data, 9)
    if version != VERSION or code not in _CODE_DTYPES:
        raise DataError(f"{path}: index version {version}, dtype code {code}: not readable here")
    lengths = np.frombuffer(data, "<i4", n, 34)
    pointers = np.frombuffer(data, "<i8", n, 34 + 4 * n)
    docs = np.frombuffer(data, "<i8", d, 34 + 12 * n)
    return {"dtype": _CODE_DTYPES[code], "lengths": lengths, "pointers": pointers, "doc_index": docs}


class BoundedTokenWriter:
    """Writes {prefix}00000.bin/.idx, {prefix}00001.bin/.idx, ... each holding at most
    ``shard_tokens`` tokens of whole documents (a longer document gets a part of its own). The cuts
    depend on the documents' lengths alone, not on how they arrive in calls."""

    def __init__(self, out_dir: str, dtype: str, shard_tokens: int, prefix: str = "part-"):
        self.out_dir, self.prefix, self.dtype = out_dir, prefix, dtype
        self.cutter = PartCutter(shard_tokens, shard_tokens)
        self.files: list[dict] = []
        self._bin = None
        self._lengths: list[np.ndarray] = []
        self.tokens = 0

    def _path(self, suffix: str) -> str:
        return os.path.join(self.out_dir, f"{self.prefix}{len(self.files) - 1:05d}{suffix}")

    def write(self, ids: np.ndarray, offsets: np.ndarray) -> None:
        """Documents as flat ids and int64 offsets[n+1] (document i is ids[offsets[i]:offsets[i+1]])."""
        lengths = np.diff(offsets)
        if not len(lengths):
            return
        if self.dtype == "uint16" and len(ids) and int(ids.max()) >= 2**16:
            raise DataError(f"token id {int(ids.max())} does not fit the uint16 shards of a vocabulary "
                            f"under {UINT16_VOCAB}")
        for ev in self.cutter.cut(lengths):
            if ev[0] == "rows":
                lo, hi = offsets[ev[1]], offsets[ev[1] + ev[2]]
                self._bin.write(np.ascontiguousarray(ids[lo:hi], dtype=self.dtype).tobytes())
                self._lengths.append(lengths[ev[1]:ev[1] + ev[2]])
                self.files[-1]["rows"] += ev[2]
                self.files[-1]["tokens"] += int(hi - lo)
            elif ev[0] == "open":
                self.files.append({"path": "", "rows": 0, "tokens": 0})
                self.files[-1]["path"] = self._path(".bin")
                self._bin = storage.open_file(self.files[-1]["path"], "wb")
            elif ev[0] == "close":
                self._close_part()

    def _close_part(self) -> None:
        self._bin.close()
        self._bin = None
        lengths = np.concatenate(self._lengths) if self._lengths else np.zeros(0, np.int64)
        self._lengths = []
        with storage.open_file(self._path(".idx"), "wb") as fh:
            fh.write(index_bytes(lengths, self.dtype))

    def close(self) -> list[dict]:
        """The parts written: for each, its .bin (rows, tokens) then its .idx (rows)."""
        for ev in self.cutter.finish():
            if ev[0] == "close":
                self._close_part()
        out = []
        for f in self.files:
            out += [f, {"path": f["path"][:-4] + ".idx", "rows": f["rows"]}]
        return out
