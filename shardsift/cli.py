"""`shardsift ...` and `python -m shardsift ...`.

Errors print one line on stderr: exit code 2 for usage and config errors, 1 for data errors.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from .errors import ShardsiftError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="shardsift", description="Curate pretraining corpora from Parquet shards.")
    p.add_argument("--version", action="store_true", help="print the version and exit")
    sub = p.add_subparsers(dest="command")

    s = sub.add_parser("select", help="run a pipeline config")
    s.add_argument("config", help="YAML config file")
    s.add_argument("--input", help="override input.path")
    s.add_argument("--output", help="override output.path")
    s.add_argument("--workers", type=int, help="override workers")
    s.add_argument("--executor", choices=["local", "ray"], help="override executor")
    s.add_argument("--seed", type=int, help="override seed")
    s.add_argument("--overwrite", action="store_true", help="replace a finished output at the same path")
    s.add_argument("--quiet", action="store_true", help="no progress lines")
    s.add_argument("--json", action="store_true", help="print the manifest as JSON instead of a table")

    i = sub.add_parser("inspect", help="show an output's manifest as a table")
    i.add_argument("output")
    i.add_argument("--json", action="store_true", help="print the raw manifest")

    sub.add_parser("selectors", help="list built-in and plugged-in selectors with their parameters")

    sm = sub.add_parser("sample", help="write the generated sample corpus")
    sm.add_argument("out", help="directory to write pool/, target/ and example inputs into")
    sm.add_argument("--docs", type=int, default=4000, help="pool documents (default 4000)")
    sm.add_argument("--shards", type=int, default=4, help="pool shards (default 4)")
    sm.add_argument("--seed", type=int, default=0)
    return p


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    if args.version:
        from . import __version__

        print(__version__)
        return 0
    if not args.command:
        parser.print_help()
        return 2
    try:
        return {"select": _select, "inspect": _inspect, "selectors": _selectors, "sample": _sample}[args.command](args)
    except ShardsiftError as err:
        print(f"shardsift: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("shardsift: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


def _select(args) -> int:
    from .pipeline.config import apply_overrides, load_yaml, parse_config
    from .pipeline.executors import Progress
    from .pipeline.runner import run_pipeline
    from .report_text import manifest_table

    raw = load_yaml(args.config)
    raw = apply_overrides(raw, input=args.input, output=args.output, workers=args.workers,
                          executor=args.executor, seed=args.seed)
    cfg = parse_config(raw)
    manifest = run_pipeline(cfg, overwrite=args.overwrite, progress=Progress(enabled=not args.quiet))
    if args.json:
        print(json.dumps(manifest, indent=2))
    else:
        print(manifest_table(manifest, cfg.output.path))
    return 0


def _inspect(args) -> int:
    from .errors import DataError
    from .report_text import manifest_table

    path = os.path.join(args.output, "manifest.json")
    if not os.path.exists(path):
        raise DataError(f"{args.output}: no manifest.json (not a finished shardsift output)")
    with open(path, encoding="utf-8") as fh:
        manifest = json.load(fh)
    print(json.dumps(manifest, indent=2) if args.json else manifest_table(manifest, args.output))
    return 0


def _selectors(args) -> int:
    from .selectors import available, resolve

    for name, ref in available().items():
        try:
            cls = resolve(name)
        except ShardsiftError as err:
            print(f"{name}  ({ref})  unavailable: {err}")
            continue
        doc = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
        print(f"{name}  [{cls.scope}]  {doc}")
        for pname, spec in cls.param_specs().items():
            print(f"    {pname}: {spec.describe()}{'  - ' + spec.doc if spec.doc else ''}")
    return 0


def _sample(args) -> int:
    from .sample import write_sample

    info = write_sample(args.out, n_docs=args.docs, n_shards=args.shards, seed=args.seed)
    print(f"wrote {info['docs']} pool documents in {info['shards']} shards and {info['target_docs']} "
          f"target documents to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
