"""Config loading and validation.

Every error names the key and its place (``stages[1].dsir.keep``) and suggests the nearest valid
key; selector parameters are validated by the selector's own Param declarations.
"""
from __future__ import annotations

import copy
import difflib
import os
import re
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError
from ..selectors import resolve
from ..selectors.base import Selector

_SIZE_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
               "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def parse_size(value, where: str) -> int:
    """Bytes from an int or a string like '256MB' or '1GiB'."""
    if isinstance(value, bool):
        raise ConfigError(f"{where}: expected a size like 256MB, got {value!r}")
    if isinstance(value, (int, float)):
        if value <= 0:
            raise ConfigError(f"{where}: {value!r} must be positive")
        return int(value)
    if isinstance(value, str):
        m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)\s*", value)
        if m and m.group(2).lower() in _SIZE_UNITS:
            n = int(float(m.group(1)) * _SIZE_UNITS[m.group(2).lower()])
            if n > 0:
                return n
    raise ConfigError(f"{where}: {value!r} is not a size (examples: 256MB, 1GiB, 1000000)")


def _check_keys(mapping: dict, allowed: dict, where: str) -> None:
    if not isinstance(mapping, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(mapping).__name__} {mapping!r}")
    for key in mapping:
        if key not in allowed:
            near = difflib.get_close_matches(str(key), list(allowed), n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            raise ConfigError(
                f"{where}: unknown key {key!r}{hint}; valid keys: {', '.join(allowed)}"
            )


def _typed(mapping: dict, key: str, types, where: str, default=None):
    value = mapping.get(key)
    if value is None:  # absent, or written with no value (`workers:`): the default
        return default
    if isinstance(value, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
        raise ConfigError(f"{where}.{key}: expected {_tn(types)}, got bool {value!r}")
    if not isinstance(value, types):
        raise ConfigError(f"{where}.{key}: expected {_tn(types)}, got {type(value).__name__} {value!r}")
    return value


def _tn(types) -> str:
    types = types if isinstance(types, tuple) else (types,)
    names = {str: "string", int: "int", float: "number", bool: "bool", list: "list", dict: "mapping"}
    return " or ".join(names.get(t, t.__name__) for t in types)


@dataclass
class InputConfig:
    path: Any  # str, list of str, or a datasets.Dataset given from Python
    text_column: str = "text"
    id_column: str = "id"
    format: str = "auto"
    batch_size: int = 8192
    batch_bytes: int = 4 * 2**20  # and about this much data per batch (io.batch_rows)
    storage_options: dict = field(default_factory=dict)
    cache: Any = "auto"  # auto | True | False: decoded shard copies in the work dir (io.ShardCache)

    KEYS = {"path": "files, globs, directories or URIs", "text_column": "default text",
            "id_column": "default id", "format": "auto|parquet|jsonl", "batch_size": "rows per batch",
            "batch_bytes": "data per batch (default 4MiB): a batch ends at batch_size rows or about this size",
            "storage_options": "fsspec options for remote URIs",
            "cache": "auto|true|false: a decoded copy of each shard in the work dir for the passes after the scan"}

    @classmethod
    def parse(cls, raw, where: str = "input") -> InputConfig:
        if isinstance(raw, (str, list)) or _is_dataset(raw):
            raw = {"path": raw}
        _check_keys(raw, cls.KEYS, where)
        path = raw.get("path")
        if path is None:
            raise ConfigError(f"{where}.path: a value is required (files, globs, directories or URIs)")
        if not (isinstance(path, str) or _is_dataset(path)
                or (isinstance(path, list) and path and all(isinstance(p, str) for p in path))):
            raise ConfigError(f"{where}.path: expected a string or a list of strings, got {path!r}")
        fmt = _typed(raw, "format", str, where, "auto")
        if fmt not in ("auto", "parquet", "jsonl"):
            raise ConfigError(f"{where}.format: {fmt!r} is not one of auto, parquet, jsonl")
        bs = _typed(raw, "batch_size", int, where, cls.batch_size)
        if bs < 1:
            raise ConfigError(f"{where}.batch_size: {bs} is out of range (must be >= 1)")
        batch_bytes = parse_size(raw.get("batch_bytes", cls.batch_bytes), f"{where}.batch_bytes")
        cache = raw.get("cache", "auto")
        if not (cache == "auto" or isinstance(cache, bool)):
            raise ConfigError(f"{where}.cache: {cache!r} is not one of auto, true, false")
        return cls(
            path=path,
            text_column=_typed(raw, "text_column", str, where, "text"),
            id_column=_typed(raw, "id_column", str, where, "id"),
            format=fmt,
            batch_size=bs,
            batch_bytes=batch_bytes,
            storage_options=_typed(raw, "storage_options", dict, where, {}) or {},
            cache=cache,
        )


def _is_dataset(obj) -> bool:
    return type(obj).__name__ == "Dataset" and hasattr(obj, "to_parquet")


@dataclass
class OutputConfig:
    path: str
    max_shard_bytes: int = 256 * 10**6
    row_group_bytes: int = 8 * 2**20
    compression: str = "zstd"
    scores: bool = False
    work_dir: str | None = None
    storage_options: dict = field(default_factory=dict)

    KEYS = {"path": "", "max_shard_bytes": "", "row_group_bytes": "", "compression": "", "scores": "",
            "work_dir": "", "storage_options": ""}

    @classmethod
    def parse(cls, raw, where: str = "output") -> OutputConfig:
        if isinstance(raw, str):
            raw = {"path": raw}
        _check_keys(raw, cls.KEYS, where)
        path = _typed(raw, "path", str, where)
        if not path:
            raise ConfigError(f"{where}.path: a value is required (a directory or URI)")
        comp = _typed(raw, "compression", str, where, "zstd")
        if comp not in ("zstd", "snappy", "gzip", "lz4", "none", "brotli"):
            raise ConfigError(f"{where}.compression: {comp!r} is not one of zstd, snappy, gzip, lz4, brotli, none")
        return cls(
            path=path,
            max_shard_bytes=parse_size(raw.get("max_shard_bytes", cls.max_shard_bytes), f"{where}.max_shard_bytes"),
            row_group_bytes=parse_size(raw.get("row_group_bytes", cls.row_group_bytes), f"{where}.row_group_bytes"),
            compression=comp,
            scores=bool(_typed(raw, "scores", bool, where, False)),
            work_dir=_typed(raw, "work_dir", str, where),
            storage_options=_typed(raw, "storage_options", dict, where, {}) or {},
        )


@dataclass
class StageConfig:
    name: str            # as written in the config
    params: dict
    cls: type[Selector]
    where: str

    def build(self) -> Selector:
        sel = self.cls.__new__(self.cls)
        sel._set_params(dict(self.params), where=self.where)
        return sel


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
            "stages": [{s.name: s.build().get_params()} for s in self.stages],
        }


TOP_KEYS = {"input": "", "output": "", "executor": "", "workers": "", "seed": "", "stages": "",
            "ray": "", "on_duplicate_id": ""}
RAY_KEYS = {"address": "", "num_cpus": "", "resources": "", "max_retries": "", "runtime_env": ""}


def default_workers() -> int:
    return max(1, min(os.cpu_count() or 1, 8))


def parse_config(raw: dict, *, require_io: bool = True) -> Config:
    """Validate a config mapping; raise ConfigError naming the first bad key."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"config: expected a mapping at the top level, got {type(raw).__name__}")
    raw = copy.copy(raw)
    _check_keys(raw, TOP_KEYS, "config")
    executor = _typed(raw, "executor", str, "config", "local")
    if executor not in ("local", "ray"):
        near = difflib.get_close_matches(executor, ["local", "ray"], n=1)
        hint = f" (did you mean {near[0]!r}?)" if near else ""
        raise ConfigError(f"config.executor: {executor!r} is not one of local, ray{hint}")
    workers = _typed(raw, "workers", int, "config", default_workers())
    if workers < 1:
        raise ConfigError(f"config.workers: {workers} is out of range (must be >= 1)")
    seed = _typed(raw, "seed", int, "config", 0)
    ray = _typed(raw, "ray", dict, "config", {}) or {}
    _check_keys(ray, RAY_KEYS, "config.ray")
    dup = _typed(raw, "on_duplicate_id", str, "config", "error")
    if dup not in ("error", "keep_first"):
        raise ConfigError(f"config.on_duplicate_id: {dup!r} is not one of error, keep_first")

    stages_raw = raw.get("stages") or []
    if not isinstance(stages_raw, list):
        raise ConfigError(f"config.stages: expected a list of stages, got {type(stages_raw).__name__}")
    stages = []
    for i, item in enumerate(stages_raw):
        where = f"stages[{i}]"
        if isinstance(item, str):
            name, params = item, {}
        elif isinstance(item, dict) and len(item) == 1:
            name, params = next(iter(item.items()))
            params = {} if params is None else params
            if not isinstance(params, dict):
                raise ConfigError(f"{where}.{name}: expected a mapping of parameters, got {params!r}")
        else:
            raise ConfigError(f"{where}: expected 'name' or {{name: {{params}}}}, got {item!r}")
        cls = resolve(str(name), where)
        st = StageConfig(name=str(name), params=params, cls=cls, where=f"{where}.{name}")
        st.build()  # validates the parameters now, before any work
        stages.append(st)

    inp = out = None
    if raw.get("input") is not None or require_io:
        if raw.get("input") is None:
            raise ConfigError("config.input: a value is required (input: {path: ...} or --input)")
        inp = InputConfig.parse(raw["input"])
    if raw.get("output") is not None or require_io:
        if raw.get("output") is None:
            raise ConfigError("config.output: a value is required (output: {path: ...} or --output)")
        out = OutputConfig.parse(raw["output"])
    return Config(input=inp, output=out, stages=stages, executor=executor, workers=workers,
                  seed=seed, ray=ray, on_duplicate_id=dup, raw=raw)


def load_yaml(path: str) -> dict:
    import yaml  # here: a run from Python with a mapping needs no YAML parser

    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{path}: invalid YAML{at}: {getattr(err, 'problem', err)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def apply_overrides(raw: dict, *, input=None, output=None, workers=None, executor=None, seed=None) -> dict:
    """CLI flags override config values."""
    raw = copy.deepcopy(raw)
    if input is not None:
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
