"""The plugin contract: what a selector is and what the engine hands it.

A selector is one small class in scikit-learn's habits: parameters are declared with
:class:`~shardsift.params.Param` and validated in one place; the engine calls the class's real
``__init__`` with them; learned state lives in attributes ending in ``_``; capabilities (scope,
whether it fits, the columns it reads) are declared on the class, not detected.

A stage runs a selector in these steps:

``setup()``       once per process before its first batch: load models and word lists here.
``fit(ctx)``      declared with ``needs_fit = True``; global statistics (:class:`FitContext`);
                  returns its metrics for the manifest.
``score(docs)``   per batch of one shard's surviving documents (:class:`Docs`), in parallel tasks:
                  a 1-D array (named ``score``) or a dict of arrays whose first dimension is
                  ``len(docs)``.
``decide(scores, ctx)``  keep/drop (:class:`Scores` in, a bool array or :class:`Decision` out).
                  ``scope = "document"``: per shard, inside the shard's task. ``scope = "global"``:
                  once over every shard's scores (exact top-k, resampling, clustering).
                  A global decide that is "rank by a per-document value, keep by a budget" may
                  say so instead (``budget()`` and ``budget_rank(scores)``): the engine then finds
                  the exact cut in shard tasks and the driver holds no per-document array.

:class:`Filter` is the one-method shortcut for per-document filters: ``keep(docs)``.
Selectors must be picklable: the fitted selector is saved in the work dir and loaded by workers.
This module imports nothing of the engine: plugins depend on it, it depends on no plugin.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa

from .columns import one_array
from .errors import ConfigError
from .params import Param, did_you_mean

__all__ = ["Budget", "Capabilities", "DecideContext", "Decision", "Docs", "FitContext", "Filter", "Param", "Scores",
           "Selector", "check_keep_n", "count_to_keep", "top_k_mask"]


@dataclass(frozen=True)
class Capabilities:
    """What a selector declares to the engine (``Selector.capabilities()``).

    scope:      "document" (decided per shard, in the shard's task) or "global" (across shards).
    needs_fit:  the engine calls ``fit(ctx)`` before scoring.
    columns:    input columns ``score`` reads besides the text and id.
    reads_text: False for selectors that never read the text (word and byte counts come anyway).
    """

    scope: str = "document"
    needs_fit: bool = False
    columns: tuple[str, ...] = ()
    reads_text: bool = True


class Selector:
    """Base class of every selector. Subclass it, declare Params, implement ``score`` and ``decide``.

    Class attributes a subclass may set (its declared capabilities):

    - ``name``: the name used in YAML (defaults to the class name).
    - ``scope``: ``"document"`` (decide per shard) or ``"global"`` (decide across all shards).
    - ``needs_fit``: True when ``fit`` learns something before scoring.
    - ``columns``: extra input columns ``score`` reads besides the text and id.
    - ``needs_text``: False for selectors that never read the text (e.g. ``random``).

    Where a capability depends on parameters (a column named by a parameter), override
    :meth:`capabilities`.
    """

    name: ClassVar[str] = ""
    scope: ClassVar[str] = "document"
    needs_fit: ClassVar[bool] = False
    columns: ClassVar[tuple[str, ...]] = ()
    needs_text: ClassVar[bool] = True

    def __init__(self, **params):
        self._set_params(params, where=self.display_name())

    def capabilities(self) -> Capabilities:
        """The capabilities the engine plans with; derived from the class attributes by default."""
        return Capabilities(scope=self.scope, needs_fit=self.needs_fit, columns=tuple(self.columns),
                            reads_text=self.needs_text)

    def setup(self) -> None:
        """Called once per process before the first batch (and before ``fit``): load models, word
        lists and other state that is not worth pickling. The default does nothing."""

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
                valid = ", ".join(specs) or "none"
                raise ConfigError(f"{where}: unknown key {key!r}{did_you_mean(key, specs)}; valid keys: {valid}")
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
    def fit(self, ctx: FitContext) -> dict | None:
        """Learn global state before scoring (called when ``needs_fit``); return metrics for the
        manifest. The seed is ``ctx.seed``."""
        return None

    def score(self, docs: Docs):
        raise NotImplementedError(f"{type(self).__name__} must implement score(docs)")

    def decide(self, scores: Scores, ctx: DecideContext) -> np.ndarray | Decision:
        raise NotImplementedError(f"{type(self).__name__} must implement decide(scores, ctx)")

    def check(self, read_input: Callable[[Any, str], Iterator[Docs]]) -> None:
        """Look at the selector's own inputs before any document is read (the driver calls it
        before the scan, ``shardsift check`` too) and raise DataError naming what is wrong, so a
        bad benchmark or target fails before the run writes anything. ``read_input(spec, what)``
        streams another corpus as ``FitContext.read_input`` does. The default does nothing."""

    def fitted_files(self) -> dict[str, str]:
        """Files (name -> path) that hold the fitted state, copied to the output's ``models/``."""
        return {}

    # -- opt-in: a global decide that is budget selection over a per-document value ---------------
    def budget(self) -> Budget | None:
        """The budget when this global selector's decide is "rank by a per-document value, keep by a
        budget" (:class:`Budget`); the engine then selects in passes of shard tasks and the driver
        holds no per-document array (docs/scale.md). None (the default): ``decide`` runs in the
        driver over every document's scores."""
        return None

    def budget_rank(self, scores: Scores) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """With :meth:`budget`: for one shard's scores, (rank, tie, score). Documents are kept highest
        ``rank`` (float64) first, equal ranks by lower ``tie`` (uint64, e.g. a seeded id hash), a NaN
        rank lowest; ``score`` is the number written to the scores sidecar. A function of each
        document's own scores only, so any shard sees the same order."""
        raise NotImplementedError(f"{type(self).__name__}.budget() is set: implement budget_rank(scores)")

    def budget_metrics(self, summary: dict) -> dict:
        """With :meth:`budget`: the manifest's metrics from the engine's summary (docs, kept,
        kept_tokens, cut: the score of the last document kept, score_sum, score_sum_kept,
        score_min_kept, and ``sums``: :meth:`budget_decision`'s metrics summed over the shards).
        The default reports the summary."""
        return dict(summary)

    def budget_decision(self, scores: Scores, keep: np.ndarray, score: np.ndarray, shard) -> Decision:
        """With :meth:`budget`: one shard's Decision once the cut is known (``keep``; ``score``
        from :meth:`budget_rank`), in that shard's task. ``shard`` reads its documents back
        (``shard.iter_docs(rows=...)``). Numbers and arrays in the Decision's metrics are summed
        over the shards into the summary's ``sums``. The default: ``Budget.reason`` for every
        dropped document, no metrics."""
        return Decision(keep=keep, reason=self.budget().reason or None, score=score)

    # -- opt-in: a global decide run as tasks over the shards' score files -------------------------
    def decide_sharded(self, ctx: ShardedDecideContext) -> dict:
        """A global decide as passes of tasks, for a selector whose decide can be partitioned (a
        dedup by hash, say): the engine calls this instead of concatenating every shard's scores
        for :meth:`decide`, so the driver holds no per-document array. Steps run through
        ``ctx.tasks`` (one file per task: resumable), the keep files through
        ``ctx.write_decisions``; the result must equal :meth:`decide`'s, byte for byte. Returns the
        stage's metrics, or ``NotImplemented`` where this configuration is decided by
        :meth:`decide` (as are selectors that do not override it)."""
        raise NotImplementedError


@dataclass
class Decision:
    """The outcome of ``decide``.

    keep:    bool per document, aligned with the Scores it was given.
    reason:  why dropped documents were dropped: one string, or a str array per document.
    score:   the per-document number written to the scores sidecar (default: ``scores["score"]``).
    extra:   more per-document sidecar columns, e.g. ``cluster`` and ``cluster_size``; in a str
             (or UTF-8 bytes) column, "" is written as null.
    metrics: selector metrics for the manifest (JSON-serialisable).
    """

    keep: np.ndarray
    reason: Any = None
    score: np.ndarray | None = None
    extra: dict[str, np.ndarray] = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Budget:
    """What a budget-selection decide keeps (``Selector.budget()``): exactly one of ``keep`` (a
    fraction of the documents reaching the stage), ``n`` (a count), ``tokens`` (the longest prefix
    of the ranking whose tokens fit) and ``threshold`` (every document whose rank is at least it).

    reason:  why dropped documents were dropped.
    clip_n:  an ``n`` above the documents reaching the stage keeps them all (False: a ConfigError).
    percentiles: earlier stages (name, or 1-based position) whose scores the rank reads as percentile
             ranks over the documents reaching this stage (``percentile_ranks``); the engine
             computes them exactly in shard tasks and gives them to ``budget_rank`` as the
             columns ``percentile:<stage>``. ``percentiles_param``: the parameter that names them.
    nan_kept: False: a document whose rank is NaN is never kept (not eligible); a count larger
             than the other documents is a ConfigError, ``short`` its message (a format string
             with ``{k}``, ``{available}`` and ``{total}``).
    """

    keep: float | None = None
    n: int | None = None
    tokens: int | None = None
    threshold: float | None = None
    reason: str = ""
    clip_n: bool = True
    percentiles: tuple = ()
    percentiles_param: str = ""
    nan_kept: bool = True
    short: str = ""


class Docs:
    """One batch of one shard's surviving documents, as Arrow columns (no per-row objects).

    text:    the text column (string, never null: null texts were dropped before any stage).
    ids:     document ids (string).
    row:     int64 row index of each document within its input shard.
    n_words: whitespace word count per document; n_bytes: UTF-8 byte length.
    n_tokens: tokens per document in the run's unit (the configured tokenizer's, else n_words);
             every token budget and the manifest's tokens count these.
    shard:   the input shard's name; shard_index its position among the inputs.
    """

    def __init__(self, table: pa.Table, *, text_column: str, id_column: str, row: np.ndarray,
                 n_words: np.ndarray, n_bytes: np.ndarray, shard: str, shard_index: int,
                 n_tokens: np.ndarray | None = None):
        self.table = table
        self.text_column = text_column
        self.id_column = id_column
        self.row = row
        self.n_words = n_words
        self.n_bytes = n_bytes
        self.n_tokens = n_words if n_tokens is None else n_tokens
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
    shard i's slice. ``n_words``, ``n_tokens`` (the run's token unit), ``n_bytes`` and ``row`` are
    always present.
    """

    def __init__(self, columns: dict[str, np.ndarray], shard_offsets: np.ndarray, shard_names: list[str]):
        self._columns = columns
        self.shard_offsets = np.asarray(shard_offsets, dtype=np.int64)
        self.shard_names = shard_names

    def __getitem__(self, name: str) -> np.ndarray:
        if name == "n_tokens" and name not in self._columns and "n_words" in self._columns:
            return self._columns["n_words"]  # Scores built without a token count: the unit is words
        try:
            return self._columns[name]
        except KeyError:
            raise KeyError(f"no score column {name!r}; have {sorted(self._columns)}") from None

    def __contains__(self, name: str) -> bool:
        return name in self._columns

    def get(self, name: str, default=None):
        return self._columns.get(name, default)

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
    The engine implements it."""

    seed: int
    work_dir: str          # a directory private to this stage, for fitted artifacts
    n_docs: int            # documents reaching this stage
    workers: int

    def map_shards(self, fn: Callable[[Iterator[Docs]], Any], columns: Sequence[str] = (),
                   need_text: bool = True) -> list:
        """Run ``fn(batches_of_one_shard)`` for every shard in parallel; results in shard order.
        Without ``need_text`` the batches carry no text (word and byte counts, ids, ``columns``)."""
        raise NotImplementedError

    def iter_docs(self, columns: Sequence[str] = (), need_text: bool = True) -> Iterator[Docs]:
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

    def stage_scores(self, stage: int | str) -> np.ndarray:
        """The score an earlier stage (its name, or its 1-based position) gave each document of
        this decide's ``scores``, in the same order: what ``combine`` ranks on."""
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


class ShardedDecideContext:
    """What :meth:`Selector.decide_sharded` uses. It is picklable: a task function is called as
    ``fn(ctx, item)`` in whatever process runs it and reads and writes through the same ``ctx``.
    Documents have global positions in shard order (``shard_offsets``), the same positions
    :class:`Scores` gives them; shards of another source's stage (a mixture) have none."""

    seed: int
    workers: int
    shard_offsets: np.ndarray  # int64, one more than the shards: shard j is offsets[j]:offsets[j + 1]
    shard_names: list[str]

    @property
    def n_shards(self) -> int:
        return len(self.shard_offsets) - 1

    def tasks(self, fn: Callable, items: Sequence, step: str) -> list[str]:
        """Run ``fn(ctx, item)`` as one task per item; each returns a dict of arrays, saved as the
        file named by ``step`` and the item's position. A file already there (a resumed run) is
        not computed again. Returns the names to :meth:`load` them by."""
        raise NotImplementedError

    def load(self, name: str, keys: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """The arrays a task saved under ``name`` (only ``keys`` when given)."""
        raise NotImplementedError

    def scores(self, shard: int, columns: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """One shard's score columns (``row``, ``n_bytes``, ... and the selector's), as ``score`` wrote them."""
        raise NotImplementedError

    def read_texts(self, shard: int, rows: np.ndarray) -> Iterator[tuple[pa.Array, np.ndarray]]:
        """As :meth:`DecideContext.read_texts`: the given ascending rows of one input shard."""
        raise NotImplementedError

    def write_decisions(self, fn: Callable) -> list[dict]:
        """The stage's keep files, one task per shard: ``fn(ctx, shard, columns)`` returns the
        :class:`Decision` of that shard's documents (in its score file's order, ``columns`` its
        score columns). Returns each shard's ``Decision.metrics`` (small summaries only: they
        come back to the driver)."""
        raise NotImplementedError


class Filter(Selector):
    """A per-document filter in one method: ``keep(docs)`` returns a bool array (True: keep) or a
    :class:`Decision` (per-document reasons, a score for the sidecar).

    A dropped document's reason is the Decision's reason or, by default, the filter's name. The
    engine runs ``keep`` inside each shard's task; memory never grows with the corpus.
    """

    scope: ClassVar[str] = "document"

    def keep(self, docs: Docs) -> np.ndarray | Decision:
        raise NotImplementedError(f"{type(self).__name__} must implement keep(docs)")

    def score(self, docs: Docs) -> dict:
        out = self.keep(docs)
        dec = out if isinstance(out, Decision) else Decision(keep=out)
        keep = np.asarray(dec.keep)
        if keep.dtype != bool or keep.shape != (len(docs),):
            raise ValueError(f"{self.display_name()}.keep: expected {len(docs)} booleans, "
                             f"got {keep.dtype} {keep.shape}")
        cols = {"keep": keep,
                "score": (keep.astype(np.float64) if dec.score is None
                          else np.asarray(dec.score, dtype=np.float64))}
        if dec.reason is not None and not isinstance(dec.reason, str):
            cols["reason"] = np.asarray(dec.reason, dtype=str)   # per document, decoded in decide
        elif dec.reason is not None:
            cols["reason"] = np.full(len(docs), dec.reason)
        for k, v in (dec.extra or {}).items():
            cols[f"extra_{k}"] = np.asarray(v)
        return cols

    def decide(self, scores: Scores, ctx: DecideContext | None = None) -> Decision:
        keep = scores["keep"].astype(bool)
        reason = scores.get("reason")
        extra = {c[len("extra_"):]: scores[c] for c in scores.columns if c.startswith("extra_")}
        return Decision(keep=keep, reason=reason, score=scores["score"], extra=extra)


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
