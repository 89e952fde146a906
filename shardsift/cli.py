"""`shardsift ...` and `python -m shardsift ...`.

Errors print one line on stderr: exit code 2 for usage and config errors, 1 for data errors.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from .errors import ShardsiftError, missing_file


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
    s.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="sets",
                   help="override any config value by its dotted path, e.g. --set stages.0.length.min_words=50 "
                        "(repeatable; the value is read as YAML)")
    s.add_argument("--overwrite", action="store_true", help="replace a finished output at the same path")
    s.add_argument("--fresh", action="store_true", help="recompute everything (do not reuse the work dir)")
    s.add_argument("--quiet", action="store_true", help="no progress lines: the summary table only")
    s.add_argument("--log-file", help="also append the progress lines to this file")
    s.add_argument("--json", action="store_true", help="print the manifest as JSON instead of a table")
    s.add_argument("--report", action="store_true", help="then write OUTPUT/.shardsift/report.html and print its path")
    s.add_argument("--label-column", help="with --report: input column to show the composition by")

    ck = sub.add_parser("check", help="validate a config (every key, parameter and input file) without running it")
    ck.add_argument("config", help="YAML config file")
    ck.add_argument("--input", help="override input.path")
    ck.add_argument("--output", help="override output.path")
    ck.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="sets",
                    help="override any config value by its dotted path (repeatable)")

    i = sub.add_parser("inspect", help="show an output's manifest as a table")
    i.add_argument("output")
    i.add_argument("--json", action="store_true", help="print the raw manifest")
    i.add_argument("--all-metrics", action="store_true", help="after the table, every metric by its raw name")

    r = sub.add_parser("report", help="write OUTPUT/.shardsift/report.html: plots of what a run kept and dropped")
    r.add_argument("output")
    r.add_argument("--label-column", help="input column to show the composition by (default: a domain/label/"
                   "source column when the output has one; '' for none)")
    r.add_argument("--samples", type=int, default=3, help="kept and dropped example documents per stage")
    r.add_argument("--path", help="write the page here instead of OUTPUT/.shardsift/report.html")

    c = sub.add_parser("compare", help="compare two outputs: kept-id overlap, composition, metrics")
    c.add_argument("output_a")
    c.add_argument("output_b")
    c.add_argument("--label-column", help="column to compare the composition by (default: detected)")
    c.add_argument("--json", action="store_true", help="print the comparison as JSON")

    ev = sub.add_parser("eval", help="proxy LM check: perplexity on held-out target documents of a Kneser-Ney "
                        "bigram model trained on each output's first words")
    ev.add_argument("outputs", nargs="+", metavar="OUTPUT", help="finished outputs to compare")
    ev.add_argument("--target", required=True, help="target corpus (files, globs or directories)")
    ev.add_argument("--target-text-column", default="text", help="the target's text column (default text)")
    ev.add_argument("--words", type=int, default=1_000_000, help="train on each output's first N words (default 1000000)")
    ev.add_argument("--vocab", type=int, default=50_000, help="vocabulary: the N most frequent words (default 50000)")
    ev.add_argument("--vocab-from", metavar="PATH_OR_OUTPUT",
                    help="count the vocabulary in this corpus, or in this output's input pool "
                         "(default: the first output's input pool)")
    ev.add_argument("--heldout", type=int, default=500, help="held-out target documents (default 500)")
    ev.add_argument("--seed", type=int, default=0, help="seed of the held-out sample")
    ev.add_argument("--json", action="store_true", help="print the results as JSON")
    ev.add_argument("--save", action="store_true",
                    help="also write the table into each OUTPUT/.shardsift/eval.json, where `shardsift report` shows it")

    sub.add_parser("selectors", help="list built-in and plugged-in selectors with their parameters")

    e = sub.add_parser("explain", help="say whether a document was kept and, if not, which stage dropped it and why")
    e.add_argument("output")
    e.add_argument("id", help="the document's id")

    cl = sub.add_parser("clean", help="remove a finished output's work dir (what a resume or --overwrite reuses)")
    cl.add_argument("output")

    v = sub.add_parser("verify", help="check an output: accounting adds up, output ids are exactly the kept ids")
    v.add_argument("output")

    sub.add_parser("losses", add_help=False,
                   help="compute the bits-per-byte loss matrix of local causal LMs (perplexity_correlation input;"
                        " `shardsift losses --help`)")

    sm = sub.add_parser("sample", help="write the generated sample corpus")
    sm.add_argument("out", help="directory to write pool/, target/ and example inputs into")
    sm.add_argument("--docs", type=int, default=4000, help="pool documents (default 4000)")
    sm.add_argument("--shards", type=int, default=4, help="pool shards (default 4)")
    sm.add_argument("--seed", type=int, default=0)
    sm.add_argument("--if-stale", action="store_true",
                    help="do nothing when OUT already holds a complete sample of this version")
    return p


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # module:Class selectors in the current folder, as with python -m
    if argv and argv[0] == "losses":  # its own argparse lives beside the code (needs the lm extra)
        from .lm_losses import main as losses_main

        return losses_main(argv[1:])
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
        commands = {"select": _select, "check": _check, "clean": _clean, "inspect": _inspect, "selectors": _selectors, "sample": _sample,
                    "explain": _explain, "verify": _verify, "report": _report, "compare": _compare,
                    "eval": _eval}
        return commands[args.command](args)
    except ShardsiftError as err:
        print(f"shardsift: error: {err}", file=sys.stderr)
        return err.exit_code
    except BrokenPipeError:  # `shardsift inspect OUT | head`: the reader went away, nothing is wrong
        try:
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - stdout's own close at exit must not fail
        except OSError:
            pass
        return 0
    except FileNotFoundError as err:  # a rerun would find the same nothing: no rerun offered
        print(f"shardsift: error: {missing_file(err)}", file=sys.stderr)
        return 1
    except OSError as err:  # disk full, read-only output, permissions: one line naming the path
        where = f"{err.filename}: " if getattr(err, "filename", None) else ""
        print(f"shardsift: error: {where}{err.strerror or err}; fix it and rerun the same command to resume",
              file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("shardsift: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


def _select(args) -> int:
    from .pipeline import Pipeline
    from .report.summary import manifest_table

    progress = not args.quiet
    if args.log_file:
        progress = _tee(args.log_file, echo=not args.quiet)
    result = Pipeline.from_yaml(args.config, args.sets).run(
        args.input, args.output, overwrite=args.overwrite, progress=progress, fresh=args.fresh,
        workers=args.workers, executor=args.executor, seed=args.seed)
    manifest = result.manifest
    if args.json:
        print(json.dumps(manifest, indent=2))
    else:
        print(manifest_table(manifest, result.output))
    if args.report:
        from .report import write_report

        path = write_report(result.output, label_column=args.label_column)
        print(f"report: {path}", file=sys.stderr if args.json else sys.stdout)
    return 0


def _tee(path: str, echo: bool):
    """A Progress whose lines go to ``path`` (appended) and, with ``echo``, to stderr too."""
    from .engine.executors import Progress

    class Tee:
        def __init__(self):
            self.log = open(path, "a", encoding="utf-8")  # noqa: SIM115 - open for the run's life

        def write(self, text):
            self.log.write(text)
            if echo:
                sys.stderr.write(text)

        def flush(self):
            self.log.flush()
            sys.stderr.flush()

        def isatty(self):
            return False

    return Progress(enabled=True, stream=Tee())


def _check(args) -> int:
    from .engine.check import check_config
    from .pipeline import Pipeline

    cfg = Pipeline.from_yaml(args.config, args.sets).check(args.input, args.output)
    lines, problems = check_config(cfg)
    for line in lines:
        print(line)
    for problem in problems:
        print(f"shardsift: error: {problem}", file=sys.stderr)
    if problems:
        print(f"{args.config}: {len(problems)} problem(s); nothing was written")
        return 1
    print(f"{args.config}: ok ({len(cfg.stages)} stage(s); nothing was read beyond file listings and footers)")
    return 0


def _clean(args) -> int:
    from .engine.workdir import remove
    from .errors import UsageError
    from .io import storage
    from .output import load_manifest

    manifest = load_manifest(args.output)  # only a finished output: an unfinished one needs its work dir
    work = (manifest.get("config", {}).get("output") or {}).get("work_dir") or storage.join(args.output, ".work")
    if not storage.exists(work):
        raise UsageError(f"{args.output}: no work dir at {work}")
    remove(work)
    print(f"removed {work}")
    return 0


def _report(args) -> int:
    from .report import write_report

    print(write_report(args.output, label_column=args.label_column, samples=args.samples, path=args.path))
    return 0


def _compare(args) -> int:
    from .compare import compare_outputs, format_compare

    res = compare_outputs(args.output_a, args.output_b, label_column=args.label_column)
    print(json.dumps(res, indent=2) if args.json else format_compare(res))
    return 0


def _eval(args) -> int:
    from .evaluate import evaluate, format_eval, save_results

    res = evaluate(args.outputs, args.target, target_text_column=args.target_text_column, words=args.words,
                   vocab=args.vocab, vocab_from=args.vocab_from, heldout=args.heldout, seed=args.seed)
    print(json.dumps(res, indent=2) if args.json else format_eval(res))
    if args.save:
        for path in save_results(res):
            print(f"wrote {path}", file=sys.stderr)
    return 0


def _inspect(args) -> int:
    from .errors import DataError
    from .io import layout
    from .report.summary import all_metrics, manifest_table

    path = os.path.join(args.output, layout.MANIFEST)
    if not os.path.exists(path):
        raise DataError(f"{args.output}: no {layout.MANIFEST} (not a finished shardsift output)")
    with open(path, encoding="utf-8") as fh:
        manifest = json.load(fh)
    print(json.dumps(manifest, indent=2) if args.json else manifest_table(manifest, args.output))
    if args.all_metrics and not args.json:
        print("\n".join(all_metrics(manifest)))
    report = os.path.join(args.output, layout.REPORT)
    if not args.json:
        print(f"report: {report}" if os.path.exists(report) else f"no report yet: shardsift report {args.output}")
    return 0


def _explain(args) -> int:
    from .output import explain

    print("\n".join(explain(args.output, args.id)))
    return 0


def _verify(args) -> int:
    from .output import verify_output

    r = verify_output(args.output)
    once = "each once" if r["rows"] == r["docs_kept"] else f"each once, {r['rows']:,} rows with the mix's repetitions"
    print(f"{args.output}: ok ({r['docs_in']:,} documents in, {r['docs_kept']:,} kept, {r['files']} data file(s); "
          f"every input document accounted for, output ids = kept ids, {once})")
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
    from .sample import is_current, write_sample

    if args.if_stale and is_current(args.out, args.docs, args.shards, args.seed):
        return 0
    info = write_sample(args.out, n_docs=args.docs, n_shards=args.shards, seed=args.seed)
    print(f"wrote {info['docs']} pool documents in {info['shards']} shards and {info['target_docs']} "
          f"target documents to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
