"""The benchmark suite (`make bench`): reference comparisons, scale-out runs, then the tables.

    python bench/run_all.py                 # vs_reference at 1M documents, scale at 0.25M, 1M and 3M
    python bench/run_all.py --quick         # 20k documents, small reference shares (a few minutes)
    python bench/run_all.py --only scale --scale-docs 250000 --timeout 1800
    python bench/run_all.py --legacy        # also the older bench_*.py (they need ../shared/corpora)

Full runs write bench/figures/*.json (committed) and regenerate docs/benchmarks.md; --quick writes
to bench/results/quick/ (scratch) so a smoke run never replaces the committed figures. Each script
runs in its own process; a failing one is reported and the others still run.
"""
from __future__ import annotations

import argparse
import glob
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from common import FIGURES, RESULTS, ROOT  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="20k documents; results to bench/results/quick/")
    ap.add_argument("--only", help="vs_reference, scale, table or a legacy bench_NAME")
    ap.add_argument("--docs", type=int, default=None, help="vs_reference's corpus size (default 1,000,000)")
    ap.add_argument("--scale-docs", default=None, help="scale's sizes (default 250000,1000000,3000000)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=None, help="scale: seconds per run before it counts as missing")
    ap.add_argument("--repeat", type=int, default=1, help="vs_reference: runs per tool at full size")
    ap.add_argument("--legacy", action="store_true", help="also the older bench_*.py scripts")
    args = ap.parse_args()
    figures = os.path.join(RESULTS, "quick") if args.quick else FIGURES
    docs = args.docs or (20_000 if args.quick else 1_000_000)
    scale_docs = args.scale_docs or ("20000" if args.quick else "250000,1000000,3000000")
    py = sys.executable
    steps = [
        ("vs_reference", [py, os.path.join(HERE, "vs_reference.py"), "--docs", str(docs), "--workers",
                          str(args.workers), "--repeat", str(args.repeat),
                          "--out", os.path.join(figures, "vs_reference.json")]
         + (["--ref-docs-minhash", "5000", "--ref-docs-dsir", "2000"] if args.quick else [])),
        ("scale", [py, os.path.join(HERE, "scale.py"), "--docs", scale_docs, "--workers", str(args.workers),
                   "--out", os.path.join(figures, "scale.json")]
         + (["--timeout", str(args.timeout)] if args.timeout else [])),
    ]
    if args.legacy:
        steps += [(os.path.basename(s)[:-3], [py, s] + (["--quick"] if args.quick and _takes_quick(s) else []))
                  for s in sorted(glob.glob(os.path.join(HERE, "bench_*.py")))]
    doc = os.path.join(figures, "benchmarks.md") if args.quick else os.path.join(ROOT, "docs", "benchmarks.md")
    steps.append(("table", [py, os.path.join(HERE, "table.py"), "--figures", figures, "--doc", doc]))
    if args.only:
        steps = [s for s in steps if s[0] in (args.only, f"bench_{args.only}")]
        if not steps:
            sys.exit(f"--only {args.only}: no such step")
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    failed = []
    for name, cmd in steps:
        print(f"\n=== {name}: {' '.join(os.path.relpath(c) if c.startswith(ROOT) else c for c in cmd[1:])}",
              flush=True)
        t = time.perf_counter()
        rc = subprocess.call(cmd, env=env)
        print(f"=== {name}: exit {rc} in {time.perf_counter() - t:.0f} s", flush=True)
        if rc != 0:
            failed.append(name)
    if failed:
        sys.exit(f"failed: {', '.join(failed)}")


def _takes_quick(path: str) -> bool:
    with open(path, encoding="utf-8") as fh:
        return "--quick" in fh.read()


if __name__ == "__main__":
    main()
