"""The end of a run: the output's data parts (written by tasks), decisions, scores sidecar and
models beside them, the renames, then manifest.json last (a reader takes an output as finished
only when its manifest exists)."""
from __future__ import annotations

import functools
import os
import resource
import socket
import time

import pyarrow as pa
import pyarrow.parquet as pq

from .. import __version__
from ..errors import DataError
from ..io import layout, shard_schema, storage
from . import faults, workdir
from .executors import LocalExecutor
from .fingerprint import fingerprint
from .output_formats import OutputFormat
from .output_parts import output_tasks, write_shards
from .shards import tree_cpu, usage
from .sources import check_schema, mixture_summary, output_fields
from .token_cap import stage_names


class OutputWriting:
    """The Runner's output steps (a mixin: they read the runner's config, shards and work dir)."""

    def _write(self, stage_reports: list[dict], alive_path: list) -> dict:
        t0, c0 = time.perf_counter(), usage()["cpu_s"] - self.fused_write_cpu
        self.progress.line("write: output shards")
        tmp, schema = self._write_begin()
        dec_tmp = self._tmp(layout.DECISIONS)
        tasks = self.output_tasks(schema, alive_path, [r["dir"] for r in stage_reports[1:]])
        done = write_shards(self, tasks, tmp, dec_tmp)
        self._alive_path = alive_path
        if self.cfg.output.scores:
            self._write_scores(tasks)
        files, kept_rows, kept_bytes, kept_words = done["files"], done["rows"], done["bytes"], done["tokens"]
        return self._write_end(stage_reports, tmp, schema, files, kept_rows, kept_bytes, kept_words,
                               time.perf_counter() - t0, usage()["cpu_s"] - c0)

    def output_tasks(self, schema: pa.Schema, alive_path: list, stage_dirs: list) -> list:
        """Each shard's output task, in a work-dir folder keyed by the last stage and the output's
        settings (what decides the bytes)."""
        out = self.cfg.output
        key = fingerprint(self.last_fp, str(schema), *self.out_format.key())
        names = stage_names(self)
        return output_tasks(self, schema, alive_path, stage_dirs, names, os.path.join(self.work, "output", key),
                            out.scores, self.out_format)

    @functools.cached_property
    def out_format(self) -> OutputFormat:
        """The output's format (``output.format``), checked against the inputs' schema: called before
        the scan, so an input the format cannot write stops the run before any work."""
        fmt = OutputFormat.of(self.cfg)
        if fmt.name != "parquet":
            fmt.check(self.output_schema())
        return fmt

    def _write_begin(self) -> tuple[str, pa.Schema]:
        tmp = os.path.join(self.out, ".data.tmp")
        workdir.remove(tmp)
        workdir.remove(os.path.join(self.out, layout.DATA))  # a data/ without manifest.json is an unfinished write
        storage.makedirs(tmp)
        return tmp, self.output_schema()

    def _write_end(self, stage_reports, tmp, schema, files, kept_rows, kept_bytes, kept_words, wall, cpu) -> dict:
        """Decisions, scores and models next to the data, the renames, then manifest.json last."""
        t0, c0 = time.perf_counter() - wall, usage()["cpu_s"] - cpu
        final = os.path.join(self.out, layout.DATA)
        if not files:  # an empty selection: the format's empty part (Parquet: the schema, no row group)
            files = self.out_format.empty_files(tmp, schema)
        out_files = self.out_format.manifest_files(files)
        faults.point("write:decisions")
        models = self._copy_models(stage_reports)
        faults.point("write:before-rename")
        storage.replace_dir(tmp, final)  # object stores: a copy, not atomic; manifest.json comes after
        faults.point("write:renamed")
        for name in (layout.DECISIONS, layout.SCORES, layout.MODELS):
            if storage.exists(self._tmp(name, make=False)):
                workdir.remove(os.path.join(self.out, name))
                storage.replace_dir(self._tmp(name, make=False), os.path.join(self.out, name))
        write_rep = {"wall_s": time.perf_counter() - t0, "cpu_s": usage()["cpu_s"] - c0}
        if isinstance(self._executor, LocalExecutor):
            self._close_executor()  # its worker processes are reaped: their CPU counts in the tree's
        manifest = self._manifest(stage_reports, out_files, kept_rows, kept_bytes, kept_words, write_rep, models)
        manifest["output"].update(self.out_format.manifest(out_files))
        if kept_rows == 0:
            manifest["warnings"].append("the run kept no documents: data/ holds " + (
                "no token shard" if self.out_format.name == "tokens" else "one empty part"))
        if self.cfg.sources:  # a mixture: per-source counts, and the sources too small for their share
            manifest["sources"], warns = mixture_summary(self, stage_reports, self._alive_path)
            manifest["rows_written"] = sum(f["rows"] for f in out_files)
            manifest["warnings"] += warns
        faults.point("manifest")
        workdir.write_json(os.path.join(self.out, layout.MANIFEST), manifest)
        self.progress.line(f"done: kept {kept_rows} of {manifest['docs_in']} documents -> {final}")
        for w in manifest["warnings"]:
            self.progress.warn(w)
        if not self.cfg.output.keep_work:
            workdir.remove(self.work)
        return manifest

    def _tmp(self, name: str, make: bool = True) -> str:
        """The temporary folder an output folder is written in before its rename (emptied first)."""
        head, _, tail = name.rpartition("/")
        tmp = os.path.join(self.out, head, f".{tail}.tmp")
        if make:
            workdir.remove(tmp)
            storage.makedirs(tmp)
        return tmp

    def output_schema(self) -> pa.Schema:
        """The output's schema: every input column (unified across shards) and the id column."""
        if self._schema is None:
            self._schema = self._unified_schema()
        return self._schema

    def _unified_schema(self) -> pa.Schema:
        inp = self.cfg.input
        schemas = []
        raw = [shard_schema(sh) for sh in self.shards]
        text_types = [s.field(inp.text_column).type for s in raw if inp.text_column in s.names]
        str_type = next((t for t in text_types if pa.types.is_string(t) or pa.types.is_large_string(t)), pa.string())
        for s in raw:
            i = s.get_field_index(inp.text_column)
            if i >= 0 and s.field(i).type != str_type:  # string against large_string, or all null
                s = s.set(i, pa.field(inp.text_column, str_type))
            if inp.id_column not in s.names:
                s = s.append(pa.field(inp.id_column, pa.string()))
            schemas.append(s)
        if self.cfg.sources:
            for sh, s in zip(self.shards, raw):
                check_schema(sh.uri, s.names, self.mixing)
            schemas = [pa.schema(list(s) + output_fields(self.mixing)) for s in schemas]
        try:
            return pa.unify_schemas(schemas, promote_options="permissive")
        except (pa.ArrowInvalid, pa.ArrowTypeError) as err:
            first = schemas[0]
            for sh, s in zip(self.shards, schemas):
                for f in s:
                    if f.name in first.names and first.field(f.name).type != f.type:
                        raise DataError(
                            f"{sh.uri}: column {f.name!r} is {f.type} but {first.field(f.name).type} in "
                            f"{self.shards[0].uri}") from None
            raise DataError(f"inputs have incompatible schemas ({err})") from None

    def _write_scores(self, tasks: list) -> None:
        """scores/stage-NN-NAME.parquet: each stage's per-shard score tables (written by the output
        tasks) in shard order, streamed one shard at a time (a row group each, under the schema
        all shards' columns promote to), so the driver never holds a stage's table of every
        document."""
        tmp = self._tmp(layout.SCORES)
        for i, st in enumerate(self.stages):
            paths = [p for p in (task.scores_path(i) for task in tasks) if storage.exists(p)]
            if not paths:
                continue
            schemas = []
            for path in paths:
                with storage.open_file(path) as fh:
                    schemas.append(pq.ParquetFile(fh).schema_arrow)
            schema = pa.unify_schemas(schemas, promote_options="permissive")
            fs, where = storage.arrow_fs(os.path.join(tmp, layout.scores_file_name(i + 1, st.name)))
            with pq.ParquetWriter(where, schema, filesystem=fs, compression="zstd") as out:
                for path in paths:
                    with storage.open_file(path) as fh:  # ParquetFile: read_table would import pandas
                        table = pq.ParquetFile(fh).read()
                    if table.num_rows:
                        out.write_table(_conform(table, schema))

    def _copy_models(self, stage_reports) -> dict:
        out = {}
        tmp = self._tmp(layout.MODELS, make=False)
        workdir.remove(tmp)
        for i, rep in enumerate(stage_reports[1:]):
            for key, path in (rep.get("models") or {}).items():
                if not os.path.exists(path):
                    continue
                d = os.path.join(tmp, f"stage-{i + 1:02d}-{layout.safe_name(rep['name'])}")
                storage.makedirs(d)
                dest = os.path.join(d, os.path.basename(path))
                storage.upload(path, dest)
                out.setdefault(rep["name"], {})[key] = f"{layout.MODELS}/{os.path.relpath(dest, tmp)}"
        return out

    def _manifest(self, stage_reports, out_files, kept_rows, kept_bytes, kept_words, write_rep, models) -> dict:
        docs_in = stage_reports[0]["docs_in"]
        dropped_total = sum(sum(r["dropped"].values()) for r in stage_reports)
        if docs_in != kept_rows + dropped_total:
            raise RuntimeError(f"accounting error: {docs_in} in, {kept_rows} kept, {dropped_total} dropped")
        for r in stage_reports:
            r.pop("dir", None)
            r.pop("models", None)
        ru = resource.getrusage(resource.RUSAGE_SELF)
        return {
            "shardsift_version": __version__,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "host": socket.gethostname(),
            "config": self.cfg.resolved(),
            "inputs": [{"path": s.uri, "bytes": s.size, "fingerprint": s.fingerprint, "rows": st["rows"]}
                       for s, st in zip(self.shards, self.scan_stats)],
            "docs_in": docs_in,
            "docs_kept": kept_rows,
            "docs_dropped": dropped_total,
            "bytes_in": sum(st["bytes"] for st in self.scan_stats),
            "bytes_kept": kept_bytes,
            "tokens_in": sum(st["tokens"] for st in self.scan_stats),
            "tokens_kept": kept_words,
            "token_unit": self.cfg.tokenizer.unit, "tokenizer": self.cfg.tokenizer.name,
            "stages": stage_reports,
            "write": write_rep,
            "output": {"files": out_files, "models": models, "scores": bool(self.cfg.output.scores)},
            "wall_s": time.perf_counter() - self.t0,
            "cpu_s": self.total_cpu(),
            "peak_rss_mb": max(ru.ru_maxrss / 1024.0, self.task_rss),
            "warnings": [],
        }

    def total_cpu(self) -> float:
        """The whole run's CPU seconds: with local workers the process tree's (reaped children
        included, their start-up and imports too); on Ray this process's plus its tasks'."""
        if self._executor is None or isinstance(self._executor, LocalExecutor):
            return tree_cpu() - self.tree_cpu0
        return usage()["cpu_s"] - self.cpu0 + self.task_cpu


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` under ``schema``: its columns in the schema's order and types, the ones it lacks
    null (what concat_tables' permissive promotion gives, without its pandas import)."""
    cols = [table.column(f.name).cast(f.type) if f.name in table.column_names else pa.nulls(table.num_rows, f.type)
            for f in schema]
    return pa.Table.from_arrays(cols, schema=schema)
