"""What the output's data parts are (``output.format``): Parquet, JSON Lines, or Megatron token shards.

Each shard's output task writes its kept rows through the format's writer into parts named after
the shard (``part-SSSSS-KKKKK``), so the bytes depend on the shard alone, for any number of
workers. For ``tokens`` the task tokenizes the kept texts (documents never pass through the driver),
writes each document's ids followed by the tokenizer's end-of-document id and, with
``output.shuffle``, permutes the shard's documents with a generator seeded by ``output.seed`` and
the shard's index. docs/output_formats.md describes the files.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import ConfigError, DataError
from ..io import BoundedParquetWriter, layout, storage
from ..io.json_lines import CODECS, BoundedJsonlWriter, check_schema, empty_part
from ..io.megatron import BoundedTokenWriter, token_dtype
from ..tokenizer import Tokenizer


@dataclass
class OutputFormat:
    name: str                    # parquet | jsonl | tokens
    compression: str
    max_shard_bytes: int
    row_group_bytes: int
    text_column: str = "text"
    tokenizer: Tokenizer | None = None  # tokens: ids from its encode, then its eos_id
    shard_tokens: int = 0
    shuffle: bool = False
    seed: int = 0

    @classmethod
    def of(cls, cfg) -> OutputFormat:
        out = cfg.output
        tokens = out.format == "tokens"
        return cls(out.format, out.compression, out.max_shard_bytes, out.row_group_bytes, cfg.input.text_column,
                   cfg.tokenizer if tokens else None, out.shard_tokens, out.shuffle,
                   cfg.seed if out.seed is None else out.seed)

    @property
    def dtype(self) -> str:
        return token_dtype(self.tokenizer.vocab_size)

    def key(self) -> list:
        """What decides the parts' bytes besides the kept rows (for the work dir's fingerprint)."""
        if self.name == "parquet":
            return [self.max_shard_bytes, self.row_group_bytes, self.compression]
        if self.name == "jsonl":
            return ["jsonl", self.max_shard_bytes, self.compression]
        return ["tokens", self.tokenizer.fingerprint(), self.tokenizer.eos_id, self.dtype, self.shard_tokens,
                self.shuffle, self.seed if self.shuffle else None, self.text_column]

    def check(self, schema: pa.Schema) -> None:
        """Refuse, before any work, an input this format cannot write (one line)."""
        if self.name == "jsonl":
            check_schema(schema)
        elif self.name == "tokens":
            i = schema.get_field_index(self.text_column)
            t = schema.field(i).type if i >= 0 else None
            if t is not None and not (pa.types.is_string(t) or pa.types.is_large_string(t)):
                raise ConfigError(f"output.format: tokens: text column {self.text_column!r} is {t}, not strings")

    def writer(self, data_dir: str, schema: pa.Schema, shard_index: int):
        """The shard's part writer: ``write(table)`` in output order, ``close()`` -> files written."""
        prefix = f"part-{shard_index:05d}-"
        if self.name == "jsonl":
            return BoundedJsonlWriter(data_dir, self.max_shard_bytes, self.compression, prefix)
        if self.name == "tokens":
            return TokenPartsWriter(self, data_dir, prefix, shard_index)
        return BoundedParquetWriter(data_dir, schema, self.max_shard_bytes, self.row_group_bytes,
                                    self.compression, prefix=prefix)

    def empty_files(self, tmp: str, schema: pa.Schema) -> list[dict]:
        """What data/ holds when the run kept nothing: one readable empty part (Parquet: the schema,
        no row group; JSON Lines: no line); token shards: none (an empty .bin cannot be mapped)."""
        if self.name == "tokens":
            return []
        if self.name == "jsonl":
            path = os.path.join(tmp, "part-00000" + CODECS[self.compression][1])
            empty_part(path, self.compression)
        else:
            path = os.path.join(tmp, "part-00000.parquet")
            fs, where = storage.arrow_fs(path)
            pq.ParquetWriter(where, schema, filesystem=fs).close()
        return [{"path": path, "rows": 0}]

    def manifest_files(self, files: list[dict]) -> list[dict]:
        """The manifest's data entries: one per file; token shards one per part, named by the
        prefix Megatron takes (``data/part-SSSSS-KKKKK``), with its documents, tokens and bytes."""
        out = []
        for f in files:
            name, size = os.path.basename(f["path"]), storage.getsize(f["path"])
            if self.name != "tokens":
                out.append({"path": f"{layout.DATA}/{name}", "rows": f["rows"], "bytes": size})
            elif name.endswith(".bin"):
                out.append({"path": f"{layout.DATA}/{name[:-4]}", "rows": f["rows"], "tokens": f["tokens"],
                            "bytes": size})
            else:  # its .idx, listed right after its .bin
                out[-1]["bytes"] += size
        return out

    def manifest(self, entries: list[dict]) -> dict:
        """The format's facts for the manifest's output section."""
        if self.name != "tokens":
            return {"format": self.name}
        return {"format": "tokens", "tokenizer": self.tokenizer.name, "tokenizer_fingerprint":
                self.tokenizer.fingerprint(), "vocab_size": self.tokenizer.vocab_size, "eos_id": self.tokenizer.eos_id,
                "dtype": self.dtype, "tokens": sum(e["tokens"] for e in entries), "shuffle": self.shuffle,
                "seed": self.seed if self.shuffle else None}


def with_eos(ids: np.ndarray, offsets: np.ndarray, eos: int) -> tuple[np.ndarray, np.ndarray]:
    """Every document's ids followed by ``eos`` (flat ids, int64 offsets[n+1])."""
    n = len(offsets) - 1
    return np.insert(ids, offsets[1:], np.uint32(eos)), offsets + np.arange(n + 1, dtype=np.int64)


def permute_documents(ids: np.ndarray, offsets: np.ndarray, perm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The documents in the order ``perm`` (a gather over the flat ids, no per-document loop)."""
    lengths = np.diff(offsets)[perm]
    new = np.zeros(len(perm) + 1, dtype=np.int64)
    np.cumsum(lengths, out=new[1:])
    gather = np.repeat(offsets[:-1][perm] - new[:-1], lengths) + np.arange(new[-1], dtype=np.int64)
    return ids[gather], new


class TokenPartsWriter:
    """One shard's token parts: each kept text tokenized in the task, its ids then the EOS id, in
    input order, or shuffled over the whole shard (then the shard's ids are held until close)."""

    def __init__(self, fmt: OutputFormat, data_dir: str, prefix: str, shard_index: int):
        self.fmt, self.shard_index = fmt, shard_index
        self.parts = BoundedTokenWriter(data_dir, fmt.dtype, fmt.shard_tokens, prefix)
        self.held: list[tuple[np.ndarray, np.ndarray]] | None = [] if fmt.shuffle else None

    def write(self, table: pa.Table) -> None:
        if table.num_rows == 0:
            return
        tok = self.fmt.tokenizer
        try:
            ids, offsets = tok.encode(table.column(self.fmt.text_column))
        except (ConfigError, DataError):
            raise
        except Exception as err:  # noqa: BLE001 - the tokenizer package's own error, in one line
            raise DataError(f"tokenizer {tok.name}: {type(err).__name__}: {err}") from None
        ids, offsets = with_eos(np.asarray(ids, dtype=np.uint32), np.asarray(offsets, dtype=np.int64), tok.eos_id)
        if self.held is None:
            self.parts.write(ids, offsets)
        else:
            self.held.append((ids, offsets))

    def close(self) -> list[dict]:
        if self.held:
            ids = np.concatenate([h[0] for h in self.held])
            starts = np.cumsum([0] + [len(h[0]) for h in self.held[:-1]])
            offsets = np.concatenate([[0]] + [h[1][1:] + s for h, s in zip(self.held, starts)]).astype(np.int64)
            rng = np.random.default_rng([self.fmt.seed % 2**64, self.shard_index])
            self.parts.write(*permute_documents(ids, offsets, rng.permutation(len(offsets) - 1)))
            self.held = []
        return self.parts.close()
