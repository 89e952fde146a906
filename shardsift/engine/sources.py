"""Mixtures: an ``input:`` that lists several named sources, each with its own files, reader
options, stages and share of the output (docs/mixtures.md).

A source's own stages run only on its shards (the other sources' documents pass through them
untouched), before the shared stages; the ``mix`` step (engine/mix.py) comes last. Every output row
records its source in the ``source`` column.
"""
from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from ..errors import ConfigError, DataError
from ..params import Count, Param, validate

SOURCE_COLUMN = "source"  # every output row's source name
EPOCH_COLUMN = "epoch"    # which repetition of an upsampled document a row is (0 for the first)

# keys of a source entry beside the reader options of ``input``
SOURCE_KEYS = {
    "name": Param(str, doc="the source's name (in the source column, the manifest and the report)"),
    "weight": Param(float, None, "share of the mix's tokens (the weights of all sources sum to 1)", gt=0, le=1),
    "tokens": Param(Count, None, "tokens of this source in the output (e.g. 500M, 2B)", ge=1),
    "fraction": Param(float, None, "this source's tokens after its stages times this (2.0: two epochs)", gt=0),
    "stages": Param(list, [], "stages that run on this source only, before the shared stages"),
}
MIX = {
    "tokens": Param(Count, None, "the output's tokens, shared by the sources' weights (e.g. 2B); default: "
                                 "the largest mix at those weights that repeats no document", ge=1),
    "max_epochs": Param(float, 1.0, "at most this many repetitions of a source's documents", ge=1),
    "seed": Param(int, None, "seed of the hash order that picks documents (default: the config's seed)"),
}
WEIGHT_SUM_TOLERANCE = 1e-6


@dataclass
class SourceConfig:
    name: str
    input: Any                     # InputConfig: its files and reader options
    stages: list = field(default_factory=list)  # StageConfig, this source's own
    built: list = field(default_factory=list, repr=False)
    weight: float | None = None
    tokens: int | None = None
    fraction: float | None = None

    @property
    def target(self) -> dict:
        """The source's share as the mix step reads it: {weight | tokens | fraction: value}."""
        for k in ("weight", "tokens", "fraction"):
            if getattr(self, k) is not None:
                return {k: getattr(self, k)}
        return {}


@dataclass
class MixConfig:
    tokens: int | None = None
    max_epochs: float = 1.0
    seed: int | None = None


def is_source_list(raw) -> bool:
    """Whether ``input:`` is written as a list of sources (mappings), not of paths."""
    return isinstance(raw, list) and bool(raw) and all(isinstance(x, dict) for x in raw)


def parse_sources(raw: list, parse_input: Callable, parse_stage: Callable) -> list[SourceConfig]:
    """The sources of a mixture, validated: distinct names, one way of giving shares, weights
    summing to 1 (an error otherwise: a typo in a weight must not silently rescale the others)."""
    sources, seen = [], {}
    for k, item in enumerate(raw):
        where = f"input[{k}]"
        own = {key: item[key] for key in SOURCE_KEYS if key in item}
        values = validate({key: v for key, v in own.items() if v is not None}, SOURCE_KEYS, where)
        name = values["name"]
        if not name or not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
            raise ConfigError(f"{where}.name: {name!r}: a source name is letters, digits, '_', '-' or '.'")
        if name in seen:
            raise ConfigError(f"{where}.name: source name {name!r} is used twice (input[{seen[name]}] and {where})")
        seen[name] = k
        given = [key for key in ("weight", "tokens", "fraction") if values[key] is not None]
        if len(given) > 1:
            raise ConfigError(f"{where} ({name}): give one of weight, tokens or fraction, not {' and '.join(given)}")
        inp = parse_input({key: v for key, v in item.items() if key not in SOURCE_KEYS}, where)
        stages = [parse_stage(st, i, f"{where}.stages[{i}]") for i, st in enumerate(values["stages"] or [])]
        sources.append(SourceConfig(name=name, input=inp, stages=stages, built=[st.build() for st in stages],
                                    weight=values["weight"], tokens=values["tokens"], fraction=values["fraction"]))
    _check_shared_reader(sources)
    _check_weights(sources)
    return sources


def _check_shared_reader(sources: list[SourceConfig]) -> None:
    """Every source reads the same text and id columns (the output has one of each)."""
    first = sources[0]
    for k, src in enumerate(sources[1:], start=1):
        for key in ("text_column", "id_column"):
            if getattr(src.input, key) != getattr(first.input, key):
                raise ConfigError(f"input[{k}].{key}: {getattr(src.input, key)!r} differs from input[0]'s "
                                  f"{getattr(first.input, key)!r}; the sources of a mixture share one {key}")


def _check_weights(sources: list[SourceConfig]) -> None:
    weighted = [s for s in sources if s.weight is not None]
    if not weighted:
        return
    if len(weighted) != len(sources):
        k, other = next((k, s) for k, s in enumerate(sources) if s.weight is None)
        raise ConfigError(f"input[{k}] ({other.name}): give a weight like the other sources "
                          "(weights share the mix's tokens; tokens and fraction do not mix with them)")
    total = sum(s.weight for s in sources)
    if abs(total - 1.0) > WEIGHT_SUM_TOLERANCE:
        listed = ", ".join(f"{s.name} {s.weight:g}" for s in sources)
        raise ConfigError(f"input: source weights sum to {total:g} ({listed}); they must sum to 1")


def parse_mix(raw, sources: list[SourceConfig] | None) -> MixConfig | None:
    """The ``mix:`` section; it needs a list of sources, and its tokens need weights."""
    if raw is None:
        return None
    if not sources:
        raise ConfigError("config.mix: a mix needs input to be a list of sources ({name, path, weight})")
    values = validate(raw or {}, MIX, "config.mix")
    tokens = values["tokens"]
    if tokens is not None and sources[0].weight is None:
        raise ConfigError("config.mix.tokens: the budget is shared by the sources' weights; give every source a weight")
    return MixConfig(tokens=tokens, max_epochs=values["max_epochs"], seed=values["seed"])


def resolved_sources(sources: list[SourceConfig], resolve_input: Callable) -> list[dict]:
    """The sources as run (defaults filled in), for the manifest."""
    out = []
    for s in sources:
        stages = [{st.name: {**sel.get_params(), **({} if st.drop else {"drop": False})}}
                  for st, sel in zip(s.stages, s.built)]
        out.append({"name": s.name, **resolve_input(s.input), **s.target, "stages": stages})
    return out


# -- the run -----------------------------------------------------------------------------------

def engine_stages(cfg) -> list:
    """The stages a run executes: each source's own (named ``SOURCE/NAME``, in source order), the
    shared ones, then the mix step when a source asks for a share."""
    from .mix import mix_stage

    out = []
    for src in cfg.sources or ():
        out += [dataclasses.replace(st, name=f"{src.name}/{st.name}", source=src.name) for st in src.stages]
    out += list(cfg.stages)
    if cfg.sources and (cfg.mix is not None or any(s.target for s in cfg.sources)):
        out.append(mix_stage(cfg))
    return out


def passthrough(stage, source_name: str | None) -> bool:
    """Whether a shard of ``source_name`` passes through ``stage`` untouched (another source's stage)."""
    return getattr(stage, "source", None) is not None and stage.source != source_name


def check_schema(uri: str, names: list[str], mixing: bool) -> None:
    """An input column the mixture would overwrite is an error naming it."""
    for col in (SOURCE_COLUMN, EPOCH_COLUMN) if mixing else (SOURCE_COLUMN,):
        if col in names:
            raise DataError(f"{uri}: has a column {col!r}, which a mixture writes each row's {col} into; "
                            "rename it in the input")


def output_fields(mixing: bool) -> list[pa.Field]:
    """The columns a mixture adds to the output schema."""
    return [pa.field(SOURCE_COLUMN, pa.string())] + ([pa.field(EPOCH_COLUMN, pa.int32())] if mixing else [])


def decorate(tbl: pa.Table, positions: np.ndarray, copies: np.ndarray | None, source: str,
             mixing: bool) -> pa.Table:
    """The output rows of a batch: the kept rows at ``positions`` (ascending), each ``copies`` times
    in a row (epoch 0, 1, ...), with their source (and epoch) columns."""
    from ..io import select_rows

    if copies is not None and len(copies) and copies.max() > 1:
        reps = np.repeat(positions, copies)
        starts = np.repeat(np.cumsum(copies) - copies, copies)
        epoch = (np.arange(len(reps)) - starts).astype(np.int32)
        out = tbl.take(pa.array(reps))
    else:
        reps, epoch = positions, np.zeros(len(positions), np.int32)
        out = select_rows(tbl, reps)
    out = out.append_column(SOURCE_COLUMN, pa.array([source], pa.string()).take(np.zeros(len(reps), np.int32)))
    if mixing:
        out = out.append_column(EPOCH_COLUMN, pa.array(epoch, pa.int32()))
    return out


def resolve_source_shards(sources: list[SourceConfig], resolve: Callable) -> tuple[list, np.ndarray]:
    """Every source's shards in source order, named ``SOURCE/FILE`` (generated ids stay distinct
    across sources), and each shard's source index."""
    shards, owner = [], []
    for k, src in enumerate(sources):
        inp = src.input
        found = resolve(inp.path, inp.format, inp.storage_options, f"input[{k}] ({src.name})")
        shards += [dataclasses.replace(sh, name=f"{src.name}/{sh.name}") for sh in found]
        owner += [k] * len(found)
    return shards, np.array(owner, np.int64)


def mixture_summary(runner, stage_reports: list[dict], alive_path: list) -> tuple[list[dict], list[str]]:
    """Per source: documents and tokens read, after the stages (what the mix step saw), written
    (rows count repetitions) and epochs; plus a warning line per source too small for its share."""
    from .mix import doc_tokens

    names = [s.name for s in runner.cfg.sources]
    owner = runner.shard_source
    mix = (stage_reports[-1].get("metrics") or {}).get("sources", {}) if runner.mixing else {}
    per_shard = []  # (docs read, tokens read, docs kept, tokens kept) of each shard
    for j in range(len(runner.shards)):
        ctx = runner.shard_ctx(j, alive_path[j])
        scan, kept = ctx.stats(), ctx.alive_rows()
        tokens = doc_tokens(scan)
        per_shard.append((len(scan["valid"]), int(tokens.sum()), len(kept), int(tokens[kept].sum())))
    rows, warnings = [], []
    for k, name in enumerate(names):
        mine = np.flatnonzero(owner == k)
        docs_in, tokens_in, kept_docs, kept_tokens = (sum(per_shard[j][c] for j in mine) for c in range(4))
        m = mix.get(name, {})
        row = {"name": name, "files": len(mine), "docs_in": docs_in, "tokens_in": tokens_in,
               "docs_selected": m.get("docs_in", kept_docs), "tokens_selected": m.get("tokens_in", kept_tokens),
               "docs_out": kept_docs, "rows_out": m.get("rows_out", kept_docs),
               "tokens_out": m.get("tokens_out", kept_tokens)}
        row["epochs"] = row["tokens_out"] / row["tokens_selected"] if row["tokens_selected"] else 0.0
        if m:
            row.update(target_tokens=m["target_tokens"], share=m["share"], short=m["short"])
            if m["short"]:
                warnings.append(f"source {name!r} is too small for its share: {row['tokens_out']:,} of "
                                f"{m['target_tokens']:,} tokens at max_epochs {runner.cfg.mix.max_epochs:g}"
                                if runner.cfg.mix else
                                f"source {name!r} is too small for its share: {row['tokens_out']:,} of "
                                f"{m['target_tokens']:,} tokens (mix.max_epochs allows repetition)")
        rows.append(row)
    return rows, warnings
