"""The Selector plugin API.

A selector is one small class, written in scikit-learn's habits: the constructor stores parameters
only (declared with :class:`Param` and validated in one place), ``fit`` learns state held in
attributes ending in ``_``, and ``get_params`` feeds the manifest.

A stage runs a selector in up to three steps (DESIGN.md, "The staged pipeline"):

``fit(ctx)``      optional, global: statistics the selector needs (``ctx`` is a :class:`FitContext`).
``score(docs)``   map, one task per input shard, in parallel: per-document scores or features for one
                  batch of the shard's surviving documents (:class:`Docs`). Return a 1-D array (named
                  ``score``) or a dict of arrays whose first dimension is ``len(docs)``.
``decide(scores, ctx)``  turns scores into keep/drop (:class:`Scores` in, bool array or
                  :class:`Decision` out). With ``scope = "document"`` it runs inside each shard's task
                  on that shard's scores only (per-document filters: memory never grows with the
                  corpus). With ``scope = "global"`` it runs once on the driver over every shard's
                  scores (exact top-k, resampling, clustering).

Selectors must be picklable: the fitted selector is saved in the work dir and loaded by workers.

A global stage's score may also leave data in memory for its decide (``docs.handoff``, a
:class:`Handoff`, when the score runs in the process that decides): what the decide would otherwise
recompute from the documents read back (minhash_dedup: the candidates' shingles). The decide gets
it per shard from ``ctx.handoff(shard_index)``; where a shard has none (its score ran in a worker
process or an earlier run) it reads the documents back as before, to the same result.
"""
from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa

from ..errors import ConfigError
from ..pipeline.kernels import one_array

_REQUIRED = object()


class Param:
    """Declares one constructor parameter: its type, default, allowed range and doc line."""

    def __init__(
        self,
        type: type | tuple = object,
        default: Any = _REQUIRED,
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
        return self.default is _REQUIRED

    def __set_name__(self, owner, name):
        self.name = name

    def __get__(self, obj, objtype=None):
        if obj is None:
            return self
        return obj.__dict__.get(self.name, None if self.required else self.default)

    def __set__(self, obj, value):
        obj.__dict__[self.name] = value

    def type_names(self) -> str:
        names = {int: "int", float: "number", str: "string", bool: "bool", list: "list", dict: "mapping"}
        return " or ".join(names.get(t, getattr(t, "__name__", str(t))) for t in self.type)

    def describe(self) -> str:
        bits = [self.type_names()]
        if self.choices:
            bits = ["|".join(map(str, self.choices))]
        rng = []
        if self.gt is not None:
            rng.append(f"> {self.gt}")
        if self.ge is not None:
            rng.append(f">= {self.ge}")
        if self.lt is not None:
            rng.append(f"< {self.lt}")
        if self.le is not None:
            rng.append(f"<= {self.le}")
        if rng:
            bits.append(", ".join(rng))
        default = "required" if self.required else f"default {self.default!r}"
        return f"{'; '.join(bits)}; {default}"

    def check(self, value, where: str):
        """Validate ``value``; return it (ints accepted where numbers are). Raises ConfigError."""
        if value is None and (self.required or self.default is None):
            if self.required:
                raise ConfigError(f"{where}: a value is required ({self.describe()})")
            return None
        given = value  # messages echo what the user wrote, not the converted value
        if object not in self.type:
            ok = False
            for t in self.type:
                if t is float and isinstance(value, (int, float)) and not isinstance(value, bool):
                    value = float(value) if not isinstance(value, float) else value
                    ok = True
                    break
                if t is int and isinstance(value, bool):
                    continue
                if isinstance(value, t):
                    ok = True
                    break
            if not ok:
                raise ConfigError(
                    f"{where}: expected {self.type_names()}, got {type(value).__name__} {value!r}"
                )
        if self.choices is not None and value not in self.choices:
            near = difflib.get_close_matches(str(value), [str(c) for c in self.choices], n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            raise ConfigError(
                f"{where}: {value!r} is not one of {', '.join(map(str, self.choices))}{hint}"
            )
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if isinstance(value, float) and math.isnan(value):
                raise ConfigError(f"{where}: NaN is not allowed")
            for bound, op, txt in (
                (self.gt, lambda v, b: v > b, ">"),
                (self.ge, lambda v, b: v >= b, ">="),
                (self.lt, lambda v, b: v < b, "<"),
                (self.le, lambda v, b: v <= b, "<="),
            ):
                if bound is not None and not op(value, bound):
                    raise ConfigError(f"{where}: {given!r} is out of range (must be {txt} {bound})")
        return value


class Selector:
    """Base class of every selector. Subclass it, declare Params, implement ``score``.

    Class attributes a subclass may set:

    - ``name``: the name used in YAML (defaults to the class name).
    - ``scope``: ``"document"`` (decide per shard) or ``"global"`` (decide across all shards).
    - ``columns``: extra input columns ``score`` reads besides the text and id.
    - ``needs_text``: False for selectors that never read the text (e.g. ``random``).
    """

    name: ClassVar[str] = ""
    scope: ClassVar[str] = "document"
    columns: ClassVar[tuple[str, ...]] = ()
    needs_text: ClassVar[bool] = True

    def __init__(self, **params):
        self._set_params(params, where=self.display_name())

    # -- parameters -------------------------------------------------------------------------
    @classmethod
    def display_name(cls) -> str:
        return cls.name or cls.__name__

    @classmethod
    def param_specs(cls) -> dict[str, Param]:
        specs: dict[str, Param] = {}
        for klass in reversed(cls.__mro__):
            for key, val in vars(klass).items():
                if isinstance(val, Param):
                    specs[key] = val
        return specs

    def _set_params(self, params: dict, where: str) -> None:
        specs = self.param_specs()
        for key in params:
            if key not in specs:
                near = difflib.get_close_matches(key, list(specs), n=1)
                hint = f" (did you mean {near[0]!r}?)" if near else ""
                valid = ", ".join(specs) or "none"
                raise ConfigError(f"{where}: unknown key {key!r}{hint}; valid keys: {valid}")
        for key, spec in specs.items():
            value = params.get(key, None if spec.required else spec.default)
            if key not in params and spec.required:
                raise ConfigError(f"{where}.{key}: a value is required ({spec.describe()})")
            setattr(self, key, spec.check(value, f"{where}.{key}"))
        self.validate()

    def validate(self) -> None:
        """Cross-parameter checks; raise ConfigError naming the keys. Override as needed."""

    def get_params(self) -> dict:
        return {k: getattr(self, k) for k in self.param_specs()}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    # -- the three steps ------------------------------------------------------------------------
    def fit(self, ctx: FitContext) -> None:
        """Learn global state before scoring (optional)."""

    def score(self, docs: Docs):
        raise NotImplementedError(f"{type(self).__name__} must implement score(docs)")

    def decide(self, scores: Scores, ctx: DecideContext) -> np.ndarray | Decision:
        raise NotImplementedError(f"{type(self).__name__} must implement decide(scores, ctx)")

    def fitted_files(self) -> dict[str, str]:
        """Files (name -> path) that hold the fitted state, copied to the output's ``models/``."""
        return {}


@dataclass
class Decision:
    """The outcome of ``decide``.

    keep:    bool per document, aligned with the Scores it was given.
    reason:  why dropped documents were dropped: one string, or a str array per document.
    score:   the per-document number written to the scores sidecar (default: ``scores["score"]``).
    extra:   more per-document sidecar columns, e.g. ``cluster`` and ``cluster_size``.
    metrics: selector metrics for the manifest (JSON-serialisable).
    """

    keep: np.ndarray
    reason: Any = None
    score: np.ndarray | None = None
    extra: dict[str, np.ndarray] = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)


class Handoff:
    """What one shard's score leaves in memory for the stage's global decide, in batch order.

    ``docs.handoff`` is one during a score whose decide will run in the same process (one worker
    on a local executor), else None. ``add`` appends an item; ``shared`` is one dict for all the
    stage's handoffs in this process (a selector keeps a stage-wide buffer or tally there, to stay
    within its memory budget); ``drop`` gives up for this shard (its decide then reads the
    documents back). The decide sees a shard's items only when its score finished with every
    batch added (``DecideContext.handoff``).
    """

    def __init__(self, shared: dict):
        self.items: list = []
        self.shared = shared
        self.dropped = False
        self.complete = False

    def add(self, item) -> None:
        if not self.dropped:
            self.items.append(item)

    def drop(self) -> None:
        """Free what was added and take nothing more: this shard's decide reads its documents back."""
        self.items, self.dropped = [], True


class Docs:
    """One batch of one shard's surviving documents, as Arrow columns (no per-row objects).

    text:    the text column (string, never null: null texts were dropped before any stage).
    ids:     document ids (string).
    row:     int64 row index of each document within its input shard.
    n_words: whitespace word count per document; n_bytes: UTF-8 byte length.
    shard:   the input shard's name; shard_index its position among the inputs.
    handoff: during a score, the shard's :class:`Handoff` to the stage's decide, or None.
    """

    handoff: Handoff | None = None

    def __init__(self, table: pa.Table, *, text_column: str, id_column: str, row: np.ndarray,
                 n_words: np.ndarray, n_bytes: np.ndarray, shard: str, shard_index: int):
        self.table = table
        self.text_column = text_column
        self.id_column = id_column
        self.row = row
        self.n_words = n_words
        self.n_bytes = n_bytes
        self.shard = shard
        self.shard_index = shard_index

    def __len__(self) -> int:
        return self.table.num_rows

    # one_array: a column's only chunk as it is (combine_chunks copies even a single chunk)
    @property
    def text(self) -> pa.Array:
        return one_array(self.table.column(self.text_column))

    @property
    def ids(self) -> pa.Array:
        return one_array(self.table.column(self.id_column))

    def column(self, name: str) -> pa.Array:
        return one_array(self.table.column(name))


class Scores:
    """Per-document score arrays of the documents that reached a stage, concatenated in shard order.

    ``scores["name"]`` is the whole column; ``scores.shard_offsets[i]:shard_offsets[i+1]`` is input
    shard i's slice. ``n_words``, ``n_bytes`` and ``row`` are always present.
    """

    def __init__(self, columns: dict[str, np.ndarray], shard_offsets: np.ndarray, shard_names: list[str]):
        self._columns = columns
        self.shard_offsets = np.asarray(shard_offsets, dtype=np.int64)
        self.shard_names = shard_names

    def __getitem__(self, name: str) -> np.ndarray:
        try:
            return self._columns[name]
        except KeyError:
            raise KeyError(f"no score column {name!r}; have {sorted(self._columns)}") from None

    def __contains__(self, name: str) -> bool:
        return name in self._columns

    def __len__(self) -> int:
        return int(self.shard_offsets[-1])

    @property
    def columns(self) -> list[str]:
        return list(self._columns)

    @property
    def shard_index(self) -> np.ndarray:
        """Input shard index of each document."""
        return np.repeat(np.arange(len(self.shard_names)), np.diff(self.shard_offsets))


class FitContext:
    """What ``fit`` may use: the stage's documents, parallel map over shards, seed and work dir.

    Implemented by the runner; see shardsift/pipeline/runner.py.
    """

    seed: int
    work_dir: str          # a directory private to this stage, for fitted artifacts
    n_docs: int            # documents reaching this stage
    workers: int

    def map_shards(self, fn: Callable[[Iterator[Docs]], Any], columns: Sequence[str] = ()) -> list:
        """Run ``fn(batches_of_one_shard)`` for every shard in parallel; results in shard order."""
        raise NotImplementedError

    def iter_docs(self, columns: Sequence[str] = ()) -> Iterator[Docs]:
        """Stream every document reaching this stage, batch by batch, in shard order."""
        raise NotImplementedError

    def sample(self, n: int, columns: Sequence[str] = ()) -> Docs:
        """A seeded uniform sample of ``n`` documents (all of them if fewer), in one Docs."""
        raise NotImplementedError

    def read_input(self, spec, what: str) -> Iterator[Docs]:
        """Stream another corpus (e.g. a target) given as an input spec: a path/glob string,
        a mapping like the config's ``input``, or a ``datasets.Dataset``."""
        raise NotImplementedError


class DecideContext:
    """What a global ``decide`` may use: seed, work dir, parallel map, and reading documents back."""

    seed: int
    work_dir: str
    workers: int

    def map(self, fn: Callable, items: Sequence) -> list:
        raise NotImplementedError

    def read_docs(self, shard_index: int, rows: np.ndarray, columns: Sequence[str] = ()) -> Docs:
        """The documents at the given row indices of one input shard (in the order given)."""
        raise NotImplementedError

    def read_batches(self, shard_index: int, rows: np.ndarray, columns: Sequence[str] = ()) -> Iterator[Docs]:
        """The documents at the given ascending row indices of one input shard, streamed in batches
        in that order: one pass over the shard, memory bounded by a batch. The runner's context
        reads each input batch once; this default calls ``read_docs`` in chunks."""
        rows = np.asarray(rows, dtype=np.int64)
        for lo in range(0, len(rows), 8192):
            yield self.read_docs(shard_index, rows[lo:lo + 8192], columns)

    def read_texts(self, shard_index: int, rows: np.ndarray) -> Iterator[tuple[pa.Array, np.ndarray]]:
        """(text, positions): the given ascending rows of one input shard as the text column of
        the batches that hold them, with their positions in it, in row order. A batch may hold
        other rows too (unselected, possibly null): the runner's context passes each decoded batch
        as it is, without copying the selected texts out. This default gives ``read_batches``'
        texts, all selected."""
        for docs in self.read_batches(shard_index, rows):
            yield docs.text, np.arange(len(docs), dtype=np.int64)

    def handoff(self, shard_index: int) -> list | None:
        """The items this stage's score added to ``docs.handoff`` for one input shard, in batch
        order, once (they are released to the caller); None when there are none to trust: the
        shard's score ran in another process or an earlier run, failed, or dropped its handoff."""
        return None


# -- helpers shared by selectors -------------------------------------------------------------

def count_to_keep(n_total: int, keep: float | None, n: int | None, where: str) -> int:
    """Exact number of documents to keep from ``keep`` (fraction) or ``n`` (count)."""
    if n is not None:
        if n > n_total:
            raise ConfigError(f"{where}.n: {n} is larger than the {n_total} documents reaching this stage")
        return int(n)
    if keep is None:
        raise ConfigError(f"{where}: give keep (a fraction) or n (a count)")
    return int(round(keep * n_total))


def top_k_mask(values: np.ndarray, k: int) -> np.ndarray:
    """Keep the k largest values; ties broken by position (earlier first), so it is deterministic."""
    n = len(values)
    mask = np.zeros(n, dtype=bool)
    if k <= 0:
        return mask
    if k >= n:
        mask[:] = True
        return mask
    order = np.lexsort((np.arange(n), -np.asarray(values, dtype=np.float64)))
    mask[order[:k]] = True
    return mask


def check_keep_n(sel: Selector, where: str | None = None) -> None:
    """The usual 'keep or n, not both' check for selectors that take both."""
    where = where or sel.display_name()
    keep, n = getattr(sel, "keep", None), getattr(sel, "n", None)
    if keep is not None and n is not None:
        raise ConfigError(f"{where}: give either keep ({keep}) or n ({n}), not both")
