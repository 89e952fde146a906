"""Extrapolate the per-document figures measured at 1M-3M documents to larger pools on a stated cluster.

    python bench/scale_extrapolate.py [--docs 100000000,1000000000] [--nodes 64] [--cores 32]

Arithmetic on bench/figures/scale.json (each config's largest run and its 250k run) and
bench/figures/scale_driver.json (the driver's CPU share where the run did not record it), not a
measurement: every per-document figure is assumed to stay constant as the pool grows. CPU: the
run's whole-tree CPU per document; the driver's CPU (its CPU in the largest run plus its marginal CPU
per document between the 250k and the largest run, times the extra documents) runs on one core, the
rest spreads over nodes x cores task slots, so wall >= driver CPU + rest / slots. Driver memory: the driver's peak RSS in the
largest run plus its marginal bytes per document (largest less 250k, never below 0) times the extra
documents. Workers: the largest run's peak per process, assumed not to grow further (it does where a
one-task step holds state proportional to duplicates: MinHash's candidates). Disk: the work dir's and
the output folder's peak bytes per document in the largest run.
Prints a Markdown table for docs/scale.md.
"""
from __future__ import annotations

import argparse
import json
import os

FIGURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "figures")
MIB = 1 << 20
LABELS = {"length": "length (read + filter + write)", "minhash_dedup": "minhash_dedup",
          "dsir": "dsir", "kmeans_diversity": "kmeans_diversity", "chain": "chain of all five"}


def per_doc(figs: dict, drv: dict) -> dict:
    """{config: per-document figures} from the largest and the 250k runs. The driver's CPU share is
    the largest run's own (the tree's CPU less the workers' polled CPU) where it was recorded, else
    that of the driver-share runs."""
    sizes = figs["sizes"]
    small = sizes["250000"]
    out = {}
    for name in small["runs"]:
        big = max((sizes[k] for k in sizes if name in sizes[k]["runs"] and k != "250000"),
                  key=lambda x: x["docs"], default=None)
        if big is None:
            continue
        r, s = big["runs"][name], small["runs"][name]
        n, dn = r["docs_in"], r["docs_in"] - s["docs_in"]
        marg = max(0.0, (r["driver_peak_rss_mb"] - s["driver_peak_rss_mb"]) * MIB / dn)
        drv_cpu = None
        if r.get("worker_cpu_s_polled") is not None and s.get("worker_cpu_s_polled") is not None:
            # the driver's CPU: what it spent at the largest size, plus its marginal CPU per document
            big_cpu = max(0.0, r["cpu_s"] - r["worker_cpu_s_polled"])
            small_cpu = max(0.0, s["cpu_s"] - s["worker_cpu_s_polled"])
            drv_cpu = (big_cpu, max(0.0, (big_cpu - small_cpu) / dn))
        else:
            d = next((x["runs"][name] for x in drv.get("sizes", {}).values() if name in x["runs"]), None)
            if d and d.get("driver_cpu_s") is not None:
                drv_cpu = (0.0, d["driver_cpu_s"] / d["docs_in"])
        out[name] = {"cpu_us": r["cpu_s"] / n * 1e6, "driver_cpu": drv_cpu, "measured_at": n,
                     "driver_bytes": marg, "driver_base": r["driver_peak_rss_mb"] * MIB - marg * n,
                     "worker_mib": r["worker_peak_rss_mb"], "work_bytes": r["work_dir_bytes"] / n,
                     "out_peak_bytes": r["out_dir_peak_bytes"] / n}
    return out


def _hours(h: float) -> str:
    return f"{h:,.1f} h" if h >= 2 else f"{h * 60:,.0f} min"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", default="100000000,1000000000")
    ap.add_argument("--nodes", type=int, default=64)
    ap.add_argument("--cores", type=int, default=32, help="task slots per node (workers = nodes x cores)")
    args = ap.parse_args()
    with open(os.path.join(FIGURES, "scale.json")) as fh:
        figs = json.load(fh)
    drv = {}
    if os.path.exists(os.path.join(FIGURES, "scale_driver.json")):
        with open(os.path.join(FIGURES, "scale_driver.json")) as fh:
            drv = json.load(fh)
    slots = args.nodes * args.cores
    rows = per_doc(figs, drv)
    print(f"EXTRAPOLATION on {args.nodes} nodes x {args.cores} task slots = {slots} workers, one driver\n")
    print("| config | documents | CPU (core-hours) | of which driver | wall, about | driver memory | "
          "worker memory | work dir | output folder peak |")
    print("|---|---|---|---|---|---|---|---|---|")
    for n in (int(float(x)) for x in args.docs.split(",")):
        for name, p in rows.items():
            cpu_h = p["cpu_us"] * n / 1e6 / 3600
            if p["driver_cpu"] is None:
                drv_h, wall = "not measured", f"{_hours(cpu_h / slots)} + the driver's"
            else:
                base, marginal = p["driver_cpu"]
                d_h = min(cpu_h, (base + marginal * max(0, n - p["measured_at"])) / 3600)
                drv_h = f"{d_h:,.2f}"
                wall = _hours(d_h + (cpu_h - d_h) / slots)
            mem = (p["driver_base"] + p["driver_bytes"] * n) / 1e9
            print(f"| {LABELS.get(name, name)} | {n:,} | {cpu_h:,.1f} | {drv_h} | {wall} | {mem:,.0f} GB | "
                  f"{p['worker_mib']:,.0f} MiB x {args.cores} per node | {p['work_bytes'] * n / 1e12:,.2f} TB | "
                  f"{p['out_peak_bytes'] * n / 1e12:,.2f} TB |")


if __name__ == "__main__":
    main()
