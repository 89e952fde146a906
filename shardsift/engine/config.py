"""Config loading and validation, before any I/O.

Every section (the top level, ``input``, ``output``, ``ray``) is declared with the same
:class:`~shardsift.params.Param` machinery as selector parameters, so every error names the key and
its place (``stages[1].dsir.keep``) and suggests the nearest valid key. Stages are built through
their selector's real ``__init__``. YAML with a duplicate key is refused, naming the key and line.
"""
from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field
from typing import Any

from ..api import Selector
from ..errors import ConfigError
from ..params import Count, Param, Size, map_paths, resolve_path, resolve_paths, validate
from ..selectors import resolve
from ..tokenizer import NAMED, Tokenizer, load_tokenizer
from .sources import MixConfig, SourceConfig, is_source_list, parse_mix, parse_sources, resolved_sources


def default_workers() -> int:
    return max(1, min(os.cpu_count() or 1, 8))


def _is_dataset(obj) -> bool:
    return type(obj).__name__ == "Dataset" and hasattr(obj, "to_parquet")


TOP = {
    "input": Param(object, None, "files, globs, directories or URIs, a mapping (see input), or a list of "
                                 "sources (docs/mixtures.md)"),
    "mix": Param(dict, None, "each source's share of the output in tokens (docs/mixtures.md)"),
    "output": Param(object, None, "a directory or URI, or a mapping (see output)"),
    "executor": Param(str, "local", "where tasks run", choices=("local", "ray")),
    "workers": Param(int, None, "parallel tasks (default: the CPUs, at most 8)", ge=1),
    "seed": Param(int, 0, "seed of every random choice"),
    "stages": Param(list, [], "the selectors, in order"),
    "ray": Param(dict, {}, "Ray executor options (see ray)"),
    "on_duplicate_id": Param(str, "error", "refuse duplicate ids or keep the first",
                             choices=("error", "keep_first")),
    "tokenizer": Param(object, None, "the token unit of counts and budgets: a tokenizer.json, a .tiktoken file, "
                       "'minilm', or {path, kind, pattern, eos} (default: whitespace words)"),
}
INPUT = {
    "path": Param(object, doc="files, globs, directories or URIs", path="corpus"),
    "text_column": Param(str, "text", "the column holding the text"),
    "id_column": Param(str, "id", "the column holding document ids (made from file and row when absent)"),
    "format": Param(str, "auto", "file format", choices=("auto", "parquet", "jsonl")),
    "batch_size": Param(int, 8192, "rows per batch", ge=1),
    "batch_bytes": Param(Size, 4 * 2**20, "a batch ends at batch_size rows or about this much data"),
    "storage_options": Param(dict, {}, "fsspec options for remote URIs"),
}
OUTPUT = {
    "path": Param(str, doc="a directory or URI", path="output"),
    "format": Param(str, "parquet", "what data/ holds (docs/output_formats.md)", choices=("parquet", "jsonl", "tokens")),
    "max_shard_bytes": Param(Size, 256 * 10**6, "largest output part"),
    "row_group_bytes": Param(Size, 8 * 2**20, "Parquet row group size"),
    "compression": Param(str, "zstd", "Parquet compression; jsonl: zstd, gzip or none",
                         choices=("zstd", "snappy", "gzip", "lz4", "brotli", "none")),
    "shard_tokens": Param(Count, 250_000_000, "tokens format: most tokens in one .bin/.idx part (250M)", ge=1),
    "shuffle": Param(bool, False, "tokens format: shuffle the documents of each input shard (seeded)"),
    "seed": Param(int, None, "seed of the shuffle (default: the top-level seed)"),
    "scores": Param(bool, True, "write the scores sidecar: every stage's score, decision and extras per document"),
    "keep_work": Param(bool, True, "false: remove the work dir once the run has finished"),
    "work_dir": Param(str, None, "where task results live (default OUTPUT/.work)", path="output"),
    "storage_options": Param(dict, {}, "fsspec options for remote URIs"),
    "tokens": Param(Count, None, "cap the output at this many tokens (2B, 500M): documents in a seeded "
                    "hash order until the next would pass it", ge=0),
}
# keys of every stage, beside its selector's parameters
STAGE_KEYS = {
    "drop": Param(bool, True, "false: annotate only (score and record the decision, keep every document)"),
}
RAY = {
    "address": Param(str, None, "a running cluster (auto, ray://host:10001); none: start a local one"),
    "num_cpus": Param(float, None, "CPUs each task asks for", gt=0),
    "resources": Param(dict, None, "custom resources each task asks for"),
    "max_retries": Param(int, 2, "retries of a failed task", ge=0),
    "runtime_env": Param(dict, None, "passed to ray.init (ship plugins with working_dir or pip)"),
}


def _section(raw, specs: dict, where: str) -> dict:
    """A section validated against its specs; a missing or empty value takes the default."""
    raw = {k: v for k, v in raw.items() if v is not None} if isinstance(raw, dict) else raw
    return validate(raw, specs, where)


@dataclass
class InputConfig:
    path: Any  # str, list of str, or a datasets.Dataset given from Python
    text_column: str = "text"
    id_column: str = "id"
    format: str = "auto"
    batch_size: int = 8192
    batch_bytes: int = 4 * 2**20
    storage_options: dict = field(default_factory=dict)

    @classmethod
    def parse(cls, raw, where: str = "input") -> InputConfig:
        if isinstance(raw, (str, list)) or _is_dataset(raw):
            raw = {"path": raw}
        values = _section(raw, INPUT, where)
        path = values["path"]
        if not (isinstance(path, str) or _is_dataset(path)
                or (isinstance(path, list) and path and all(isinstance(p, str) for p in path))):
            raise ConfigError(f"{where}.path: expected a string or a list of strings, got {path!r}")
        return cls(**values)


@dataclass
class OutputConfig:
    path: str
    format: str = "parquet"
    max_shard_bytes: int = 256 * 10**6
    row_group_bytes: int = 8 * 2**20
    compression: str = "zstd"
    shard_tokens: int = 250_000_000
    shuffle: bool = False
    seed: int | None = None
    scores: bool = True
    keep_work: bool = True
    work_dir: str | None = None
    storage_options: dict = field(default_factory=dict)
    tokens: int | None = None

    @classmethod
    def parse(cls, raw, where: str = "output") -> OutputConfig:
        if isinstance(raw, str):
            raw = {"path": raw}
        values = _section(raw, OUTPUT, where)
        if not values["path"]:
            raise ConfigError(f"{where}.path: a value is required (a directory or URI)")
        if values["format"] == "jsonl" and values["compression"] not in ("zstd", "gzip", "none"):
            raise ConfigError(f"{where}.compression: {values['compression']!r}: JSON Lines parts are written "
                              "with zstd, gzip or none")
        if values["format"] != "tokens" and (values["shuffle"] or values["seed"] is not None):
            key = "shuffle" if values["shuffle"] else "seed"
            raise ConfigError(f"{where}.{key}: applies to format: tokens only (format is {values['format']})")
        return cls(**values)


@dataclass
class StageConfig:
    """One stage: its selector class and parameters (or a selector instance given from Python)."""

    name: str            # as written in the config
    params: dict
    cls: type[Selector]
    where: str
    instance: Selector | None = None
    drop: bool = True    # False: annotate only (score and record, keep every document)
    source: str | None = None  # a source's own stage: the other sources' documents pass through

    def build(self) -> Selector:
        """A fresh selector for a run: the class's real ``__init__`` with the parameters, or a
        copy of the instance given (a run never changes the caller's object)."""
        if self.instance is not None:
            return copy.deepcopy(self.instance)
        display = self.cls.display_name()
        try:
            return self.cls(**self.params)
        except ConfigError as err:
            msg = str(err)
            msg = self.where + msg[len(display):] if msg.startswith(display) else f"{self.where}: {msg}"
            raise ConfigError(msg) from None
        except TypeError as err:  # a plugin whose __init__ does not take a given parameter
            raise ConfigError(f"{self.where}: {err}") from None

    @classmethod
    def of(cls, item, i: int, where: str | None = None) -> StageConfig:
        """A stage from a config item: 'name', {name: params}, or a Selector instance."""
        where = where or f"stages[{i}]"
        if isinstance(item, Selector):
            st = cls(name=item.display_name(), params=item.get_params(), cls=type(item),
                     where=f"{where}.{item.display_name()}", instance=item)
            item.validate()
            return st
        if isinstance(item, str):
            name, params = item, {}
        elif isinstance(item, dict) and len(item) == 1:
            name, params = next(iter(item.items()))
            params = {} if params is None else params
            if not isinstance(params, dict):
                raise ConfigError(f"{where}.{name}: expected a mapping of parameters, got {params!r}")
        elif isinstance(item, dict) and len(item) > 1:
            raise ConfigError(f"{where}: one selector per list item, got {len(item)} keys ({', '.join(map(str, item))}); "
                              "indent a selector's parameters under its name, or start each stage with '- '")
        else:
            raise ConfigError(f"{where}: expected 'name' or {{name: {{params}}}}, got {item!r}")
        params = dict(params)
        drop = STAGE_KEYS["drop"].check(params.pop("drop", True), f"{where}.{name}.drop")
        return cls(name=str(name), params=params, cls=resolve(str(name), where), where=f"{where}.{name}", drop=drop)


@dataclass
class Config:
    input: InputConfig | None
    output: OutputConfig | None
    stages: list[StageConfig]
    executor: str = "local"
    workers: int = 1
    seed: int = 0
    ray: dict = field(default_factory=dict)
    on_duplicate_id: str = "error"
    raw: dict = field(default_factory=dict)
    built: list = field(default_factory=list, repr=False)  # each stage's selector as validated
    sources: list[SourceConfig] | None = None  # input as a list of sources (a mixture)
    mix: MixConfig | None = None
    tokenizer: Tokenizer = field(default_factory=lambda: load_tokenizer(None))

    def __post_init__(self):
        if self.output is not None and self.output.format == "tokens":
            _check_token_output(self.tokenizer)

    def resolved(self) -> dict:
        """The config as run (defaults filled in), for the manifest."""
        inp = None
        if self.input is not None:
            inp = {k: (v if not _is_dataset(v) else f"<datasets.Dataset {getattr(v, '_fingerprint', '')}>")
                   for k, v in vars(self.input).items()}
        return {
            "input": inp,
            "output": dict(vars(self.output)) if self.output else None,
            "executor": self.executor,
            "workers": self.workers,
            "seed": self.seed,
            "ray": self.ray,
            "on_duplicate_id": self.on_duplicate_id,
            "tokenizer": self.tokenizer.name,
            "stages": [{s.name: {**sel.get_params(), **({} if s.drop else {"drop": False})}}
                       for s, sel in zip(self.stages, self.built)],
            **({"sources": resolved_sources(self.sources, lambda i: {k: v for k, v in vars(i).items()}),
                "mix": vars(self.mix) if self.mix else None} if self.sources else {}),
        }


def _check_token_output(tok: Tokenizer) -> None:
    """output.format: tokens needs token ids and an end-of-document id to write after each document."""
    if tok.name == "words":
        raise ConfigError("output.format: tokens needs token ids: set `tokenizer:` to a tokenizer file "
                          "(whitespace words have none)")
    if tok.eos_id is None:
        raise ConfigError(f"output.format: tokens: tokenizer {tok.name} has no end-of-document token; "
                          "name one with tokenizer: {path: ..., eos: <token>}")


def parse_config(raw: dict, *, require_io: bool = True) -> Config:
    """Validate a config mapping; raise ConfigError naming the first bad key."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"config: expected a mapping at the top level, got {type(raw).__name__}")
    raw = copy.copy(raw)
    top = _section(raw, TOP, "config")
    ray = {k: v for k, v in _section(top["ray"] or {}, RAY, "config.ray").items() if v is not None}
    stages_raw = top["stages"] or []
    stages = [StageConfig.of(item, i) for i, item in enumerate(stages_raw)]
    built = [st.build() for st in stages]  # validates every parameter now, before any work
    inp = out = sources = None
    if top["input"] is not None or require_io:
        if top["input"] is None:
            raise ConfigError("config.input: a value is required (input: {path: ...} or --input)")
        if is_source_list(top["input"]):
            sources = parse_sources(top["input"], InputConfig.parse, StageConfig.of)
            inp = _shared_input(sources)
        else:
            inp = InputConfig.parse(top["input"])
    mix = parse_mix(top["mix"], sources)
    if top["output"] is not None or require_io:
        if top["output"] is None:
            raise ConfigError("config.output: a value is required (output: {path: ...} or --output)")
        out = OutputConfig.parse(top["output"])
    if out is not None and out.tokens is not None and sources and (mix or any(s.target for s in sources)):
        raise ConfigError("output.tokens: a mixture's output size is mix.tokens (shared by the sources' weights); "
                          "give one, not both")
    workers = top["workers"] if top["workers"] is not None else default_workers()
    return Config(input=inp, output=out, stages=stages, executor=top["executor"], workers=workers,
                  seed=top["seed"], ray=ray, on_duplicate_id=top["on_duplicate_id"], raw=raw, built=built,
                  sources=sources, mix=mix, tokenizer=load_tokenizer(top["tokenizer"]))


def _shared_input(sources: list[SourceConfig]) -> InputConfig:
    """The reader options every source shares (text and id columns, batches), with every
    source's paths: what code that reads ``cfg.input`` as one input sees."""
    first = sources[0].input
    for k, s in enumerate(sources):
        if _is_dataset(s.input.path):
            raise ConfigError(f"input[{k}].path: a source of a mixture is files (write the dataset to Parquet first)")
    paths = [p for s in sources for p in ([s.input.path] if isinstance(s.input.path, str) else s.input.path)]
    return InputConfig(**{**vars(first), "path": paths})


def resolve_config_paths(raw: dict, base: str) -> dict:
    """A copy of a config file's mapping whose relative paths (the input, the output, the work dir
    and every stage parameter declared ``Param(path=...)``) are resolved against ``base``, the
    config file's folder: a config means the same files from any working directory. A stage whose
    selector does not resolve is left as written (validation names it)."""
    raw = dict(raw)
    for key, specs in (("input", INPUT), ("output", OUTPUT)):
        value = raw.get(key)
        raw[key] = (resolve_paths(value, specs, base) if isinstance(value, dict)
                    else map_paths(value, lambda p: resolve_path(p, base)))
        if value is None:
            del raw[key]
    raw.update(resolve_paths({k: v for k, v in raw.items() if k in TOP}, TOP, base))
    tok = raw.get("tokenizer")  # a file, or a name ("words", a named default) left as written
    if tok is not None and not (isinstance(tok, str) and tok in ("words", *NAMED)):
        raw["tokenizer"] = map_paths(tok, lambda p: resolve_path(p, base))
    if is_source_list(raw.get("input")):  # a mixture: each source's own stages too
        raw["input"] = [{**src, "stages": [_resolve_stage_paths(item, i, base) for i, item in enumerate(st)]}
                        if isinstance(st := src.get("stages"), list) else src for src in raw["input"]]
    stages = raw.get("stages")
    if isinstance(stages, list):
        raw["stages"] = [_resolve_stage_paths(item, i, base) for i, item in enumerate(stages)]
    return raw


def _resolve_stage_paths(item, i: int, base: str):
    if not (isinstance(item, dict) and len(item) == 1):
        return item
    name, params = next(iter(item.items()))
    if not isinstance(params, dict):
        return item
    try:
        specs = resolve(str(name), f"stages[{i}]").param_specs()
    except ConfigError:
        return item
    return {name: resolve_paths(params, specs, base)}


def load_yaml(path: str) -> dict:
    """A config file as a mapping; a duplicate key anywhere is an error naming it and its line."""
    import yaml  # here: a run from Python with a mapping needs no YAML parser

    class _UniqueKeys(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            seen = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                if key in seen:
                    raise ConfigError(f"{path}: duplicate key {key!r} at line {key_node.start_mark.line + 1}")
                seen.add(key)
            return super().construct_mapping(node, deep)

    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.load(fh, Loader=_UniqueKeys)  # noqa: S506 - a SafeLoader subclass
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{path}: invalid YAML{at}: {getattr(err, 'problem', err)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        hint = " (a list of stages goes under 'stages:', beside 'input:' and 'output:')" if isinstance(data, list) else ""
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}{hint}")
    return data


def apply_overrides(raw: dict, *, input=None, output=None, workers=None, executor=None, seed=None) -> dict:
    """CLI flags override config values."""
    raw = copy.deepcopy(raw)
    if input is not None and is_source_list(raw.get("input")):
        raise ConfigError("--input: this config's input is a list of sources (a mixture); set a source's "
                          "files with --set input.K.path=PATH (K: its index)")
    if is_source_list(input):  # from Python: the sources of a mixture
        raw["input"] = input
    elif input is not None:
        if isinstance(raw.get("input"), dict):
            raw["input"]["path"] = input
        else:
            raw["input"] = {"path": input}
    if output is not None:
        if isinstance(raw.get("output"), dict):
            raw["output"]["path"] = output
        else:
            raw["output"] = {"path": output}
    for key, val in (("workers", workers), ("executor", executor), ("seed", seed)):
        if val is not None:
            raw[key] = val
    return raw


def apply_sets(raw: dict, sets: list[str]) -> dict:
    """``--set KEY=VALUE`` overrides: a dotted path into the config (list items by index, a stage by
    its index then its selector's name: ``stages.2.dsir.target.path=wiki/``); the value is read as
    YAML (``5``, ``0.3``, ``true``, ``[a, b]``, ``{k: v}``). A path through a missing key creates it;
    a path through a list index or a value that does not exist is an error naming it."""
    import yaml

    raw = copy.deepcopy(raw)
    for item in sets:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE (e.g. stages.0.length.min_words=50)")
        try:
            value = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError:
            value = text
        parts = key.split(".")
        node: Any = raw
        for k, part in enumerate(parts):
            where = ".".join(parts[:k + 1])
            last = k == len(parts) - 1
            if isinstance(node, list):
                if not part.isdigit() or int(part) >= len(node):
                    raise ConfigError(f"--set {key}: {where!r}: no item {part} in a list of {len(node)}")
                idx = int(part)
                if last:
                    node[idx] = value
                elif isinstance(node[idx], str):  # a stage written as a bare name: give it parameters
                    node[idx] = {node[idx]: {}}
                node = node[idx]
            elif isinstance(node, dict):
                if last:
                    node[part] = value
                else:
                    if node.get(part) is None:
                        node[part] = {}
                    elif isinstance(node[part], str) and part in ("input", "output"):
                        node[part] = {"path": node[part]}
                    node = node[part]
            else:
                raise ConfigError(f"--set {key}: {'.'.join(parts[:k])!r} is {node!r}, not a mapping or list")
    return raw
