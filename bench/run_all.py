"""Run every benchmark in bench/ (bench_*.py), one after another, each in its own process.

Usage: python bench/run_all.py [--only NAME] [--quick]
Results are printed and saved as JSON under bench/results/.
"""
from __future__ import annotations

import argparse
import glob
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", help="run only bench_NAME.py")
    ap.add_argument("--quick", action="store_true", help="pass --quick to benchmarks that take it")
    args = ap.parse_args()
    scripts = sorted(glob.glob(os.path.join(HERE, "bench_*.py")))
    if args.only:
        scripts = [s for s in scripts if os.path.basename(s) == f"bench_{args.only}.py"]
    failed = []
    for s in scripts:
        name = os.path.basename(s)
        print(f"\n=== {name}", flush=True)
        cmd = [sys.executable, s]
        with open(s, encoding="utf-8") as fh:
            takes_quick = "--quick" in fh.read()
        if args.quick and takes_quick:
            cmd.append("--quick")
        t = time.perf_counter()
        rc = subprocess.call(cmd)
        print(f"=== {name}: exit {rc} in {time.perf_counter() - t:.1f} s", flush=True)
        if rc != 0:
            failed.append(name)
    if failed:
        sys.exit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
