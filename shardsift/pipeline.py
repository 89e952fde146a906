"""The Python API: build a pipeline from selector objects, names or ``{name: params}``, run it on
paths or a ``datasets.Dataset``, and get the kept documents back.

    import shardsift
    result = shardsift.Pipeline(["exact_dedup", {"length": {"min_words": 50}}], seed=0).run(
        "corpus/*.parquet", "out/")
    ds = result.to_dataset()          # the kept documents, as a datasets.Dataset

``shardsift select CONFIG`` runs through the same code: ``Pipeline.from_yaml(CONFIG)``.
"""
from __future__ import annotations

import os
from typing import Any

from .engine.config import apply_overrides, apply_sets, load_yaml, parse_config, resolve_config_paths
from .errors import ConfigError


class Pipeline:
    """Stages in order, each a Selector instance, a registered name, or ``{name: params}``.

    Every other keyword is a top-level config key (``seed``, ``workers``, ``executor``, ``ray``, ``tokenizer``,
    ``on_duplicate_id``); ``input`` and ``output`` may hold reader and writer options (a mapping
    as in YAML), their paths coming from :meth:`run`.
    """

    def __init__(self, stages: list | None = None, **config: Any):
        self.config: dict = {k: v for k, v in config.items() if v is not None}
        self.config["stages"] = list(stages or [])

    @classmethod
    def from_yaml(cls, path: str, sets: list[str] | None = None) -> Pipeline:
        """A pipeline from a config file; ``sets`` are ``KEY.PATH=VALUE`` overrides (``--set``).
        Relative paths in the file are relative to its folder; those of ``sets`` to the working
        directory, as on any command line."""
        base = os.path.dirname(os.path.abspath(path))
        raw = apply_sets(resolve_config_paths(load_yaml(path), base), sets or [])
        stages = raw.pop("stages", None) or []
        if not isinstance(stages, list):
            raise ConfigError(f"{path}: stages: expected a list of stages, got {type(stages).__name__} {stages!r} "
                              "(one stage a line: '- name' or '- name: {params}')")
        return cls(stages, **raw)

    def check(self, input=None, output=None, **overrides):
        """The validated config of a run (every key and parameter checked), without any I/O."""
        return parse_config(self._raw(input, output, **overrides))

    def run(self, input=None, output=None, *, overwrite: bool = False, progress=False,
            fresh: bool = False, **overrides) -> Result:
        """Run on ``input`` (a path, glob, list of paths, or a ``datasets.Dataset``; default: the
        config's) into ``output`` (a directory; default: the config's). ``overrides`` are top-level
        keys for this run only (``workers=2``). ``fresh`` recomputes everything instead of reusing
        the work dir of an earlier run."""
        from .engine.executors import Progress
        from .engine.runner import run_pipeline
        from .engine.shards import tree_cpu

        cpu0 = tree_cpu()  # the run's CPU counts reading the config and loading the selectors too
        cfg = self.check(input, output, **overrides)
        prog = progress if isinstance(progress, Progress) else Progress(enabled=bool(progress))
        manifest = run_pipeline(cfg, overwrite=overwrite, progress=prog, fresh=fresh, tree_cpu0=cpu0)
        return Result(cfg.output.path, manifest)

    def _raw(self, input, output, **overrides) -> dict:
        raw = {k: v for k, v in self.config.items() if k != "stages"}
        raw = apply_overrides(raw, input=input, output=output)
        raw.update({k: v for k, v in overrides.items() if v is not None})
        raw["stages"] = list(self.config["stages"])  # selector objects are not copied here
        return raw

    def __repr__(self) -> str:
        return f"Pipeline({self.config['stages']!r})"


class Result:
    """A finished run: its manifest and its kept documents."""

    def __init__(self, output: str, manifest: dict):
        self.output = output
        self.manifest = manifest

    @property
    def files(self) -> list[str]:
        return [os.path.join(self.output, f["path"]) for f in self.manifest["output"]["files"]]

    def to_table(self):
        """The kept documents as one Arrow table, in output order."""
        import pyarrow as pa

        from .errors import UsageError
        from .output import read_table

        if self.manifest["output"].get("format") == "tokens":
            raise UsageError(f"{self.output}: holds token shards (ids, no columns); read them with Megatron's "
                             "IndexedDataset (docs/output_formats.md)")
        tables = [read_table(path) for path in self.files]  # Parquet or JSON Lines parts
        return pa.concat_tables(tables, promote_options="permissive") if tables else None

    def to_dataset(self):
        """The kept documents as a ``datasets.Dataset`` (in memory)."""
        import datasets

        return datasets.Dataset(self.to_table())

    def __repr__(self) -> str:
        return (f"Result({self.output!r}: kept {self.manifest['docs_kept']:,} of "
                f"{self.manifest['docs_in']:,} documents)")

