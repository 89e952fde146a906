"""Tables from the committed bench results (bench/figures/*.json): never typed by hand.

    python bench/table.py                      # write docs/benchmarks.md, print the README table
    python bench/table.py --readme README.md   # also replace the README's table between the markers

docs/benchmarks.md gets every figure with the command and the machine that produced it; the
README table has one short line per workload (workload | shardsift | reference | ratio | goal),
from the largest corpus measured. A figure that is not in the JSON is shown as missing, with the
recorded reason where there is one.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import FIGURES, ROOT  # noqa: E402

START, END = "<!-- bench-table:start -->", "<!-- bench-table:end -->"
SCALE_SIZES = [250_000, 1_000_000, 3_000_000]
SCALE_CONFIGS = ["length", "minhash_dedup", "dsir", "kmeans_diversity", "chain"]
REF_NAMES = {"minhash": ("datatrove", "datatrove 0.10.1"), "dsir": ("data_selection", "data-selection 1.0.3"),
             "overhead": ("pyarrow", "pyarrow read + write")}


def load(name: str, folder: str = FIGURES) -> dict | None:
    path = os.path.join(folder, f"{name}.json")
    if not os.path.exists(path):
        return None
    with open(path) as fh:
        return json.load(fh)


def num(x, fmt="{:,.0f}", missing="—") -> str:
    return missing if x is None else fmt.format(x)


def docs(n) -> str:
    if n is None:
        return "—"
    return f"{n / 1e6:.3g}M" if n >= 1_000_000 else f"{n / 1e3:.3g}k"


def cmd(text: str) -> str:
    """A recorded command with this checkout's absolute path left out (older results have it)."""
    return text.replace(ROOT + os.sep, "")


def largest(sizes: dict) -> dict | None:
    return sizes[max(sizes, key=int)] if sizes else None


# -- the README table ------------------------------------------------------------------------------

def readme_rows(vs: dict | None, scale: dict | None) -> list[list[str]]:
    rows = []
    entry = largest(vs["sizes"]) if vs else None
    comps = entry["comparisons"] if entry else {}
    w = f", {entry['workers']} workers" if entry else ""

    def missing_row(label, goal, why):
        rows.append([label, f"not measured ({why})", "—", "—", goal])

    # MinHash
    c = comps.get("minhash")
    label = f"MinHash dedup end to end, {docs(entry and entry['docs'])} docs{w}"
    if not c or "missing" in c or "ratio" not in c:
        missing_row("MinHash dedup end to end", "≥ 20x", (c or {}).get("missing", "no result"))
    else:
        rows.append([label, num(c["shardsift"]["docs_per_cpu_s"]),
                     f"datatrove 0.10.1: {num(c['datatrove']['docs_per_cpu_s'])} ({docs(c['reference_docs'])} docs)",
                     f"**{c['ratio']:.1f}x** (marginal {num(c.get('marginal_ratio'), '{:.1f}x')})",
                     f"≥ 20x: {'met' if c['ratio'] >= 20 else 'not met'}"])
    c = comps.get("dsir")
    label = f"DSIR fit + weights, {docs(entry and entry['docs'])} docs{w}"
    if not c or "missing" in c or "ratio" not in c:
        missing_row("DSIR fit + weights", "≥ 30x", (c or {}).get("missing", "no result"))
    else:
        rows.append([label, num(c["shardsift"]["stage_docs_per_cpu_s"]),
                     f"data-selection 1.0.3: {num(c['data_selection']['fit_weights_docs_per_cpu_s'])} "
                     f"({docs(c['reference_docs'])} docs)",
                     f"**{c['ratio']:.1f}x** (end to end {num(c.get('end_to_end_ratio'), '{:.1f}x')})",
                     f"≥ 30x: {'met' if c['ratio'] >= 30 else 'not met'}"])
    c = comps.get("overhead")
    label = f"Pipeline overhead (read + length + write), {docs(entry and entry['docs'])} docs{w}"
    if not c or "missing" in c or "cpu_ratio" not in c:
        missing_row("Pipeline overhead", "≤ 1.5x CPU", (c or {}).get("missing", "no result"))
    else:
        rows.append([label, num(c["shardsift"]["docs_per_cpu_s"]),
                     f"pyarrow read + write: {num(c['pyarrow']['docs_per_cpu_s'])}",
                     f"**{c['cpu_ratio']:.2f}x** CPU", f"≤ 1.5x CPU: {'met' if c['cpu_ratio'] <= 1.5 else 'not met'}"])
    # the selectors without a reference, from the scale-out runs at the largest size measured; k-means has
    # a throughput and memory goal of its own (>= 2,000 docs/CPU-s, peak < 2 GB)
    se = largest(scale["sizes"]) if scale else None
    if se:
        for cfg, what, goal in (("kmeans_diversity", "k-means diversity (keep 0.5)", "kmeans"),
                                ("chain", "chain: length, exact, MinHash, DSIR, k-means", None)):
            r = se["runs"].get(cfg)
            if r is None:
                continue
            label = f"{what}, {docs(se['docs'])} docs, {scale.get('workers')} workers"
            if "missing" in r:
                rows.append([label, f"not measured ({r['missing']})", "none", "—", "—"])
                continue
            peak = max(r.get("driver_peak_rss_mb") or 0, r.get("worker_peak_rss_mb") or 0)
            cell = f"{num(r['docs_per_cpu_s'])} (peak {num(peak)} MB)"
            if goal:
                met = r["docs_per_cpu_s"] >= 2000 and peak < 2048
                rows.append([label, cell, "none", "—", f"≥ 2,000 docs/CPU-s, < 2 GB: {'met' if met else 'not met'}"])
            else:
                rows.append([label, cell, "none", "—", "—"])
    return rows


def filter_rows(folder: str) -> list[list[str]]:
    """One row per document-scope filter bench (quality rules, language, decontaminate), the token
    count and the training-ready output runs, each against the reference its script measured in the
    same run."""
    rows = []
    q = load("quality_rules", folder)
    if q:
        rows.append([f"4 web quality rules together, {docs(q['docs'])} pool docs", num(q["shardsift"]["docs_per_cpu_s"]),
                     f"datatrove 0.10.1, whitespace words: {num(q['datatrove']['docs_per_cpu_s'])} "
                     f"({docs(q['datatrove']['docs'])} docs)",
                     f"{q['same_docs']['speedup']:.1f}x (same docs)", "—"])
        dflt = q.get("datatrove_default")
        if dflt:
            ratio = q["speedup_vs_datatrove_default"]
            rows.append(["4 web quality rules, vs datatrove as shipped", num(q["shardsift"]["docs_per_cpu_s"]),
                         f"datatrove 0.10.1, spaCy words (its default): {num(dflt['docs_per_cpu_s'])} "
                         f"({docs(dflt['docs'])} docs)",
                         f"**{ratio:.0f}x**", f"≥ 100x: {'met' if ratio >= 100 else 'not met'}"])
    lang = load("language", folder)
    if lang:
        ref = lang.get("reference_per_document_predict", {})
        rate = lang["shardsift"]["docs_per_cpu_s"]
        rows.append([f"language ID, {docs(lang['docs'])} docs of ~{lang['mean_doc_bytes']:.0f} B", num(rate),
                     f"fastText predict per document: {num(ref.get('docs_per_cpu_s'))}",
                     f"{lang.get('speedup', 0):.2f}x", f"≥ 5,000 docs/CPU-s: {'met' if rate >= 5000 else 'not met'}"])
    d = load("decontaminate", folder)
    if d:
        rows.append([f"decontaminate, {docs(d['docs'])} docs, {d['benchmark']['ngrams'] / 1e6:.1f}M benchmark n-grams",
                     num(d["shardsift"]["docs_per_cpu_s"]),
                     f"Python set of n-grams: {num(d['reference']['docs_per_cpu_s'])}",
                     f"{d['speedup_score']:.1f}x", "—"])
    f = load("filters_scale", folder)
    if f:
        labels = {"language": "language ID", "quality_rules": "4 web quality rules", "decontaminate": "decontaminate"}
        for name, r in f["runs"].items():
            ref = f["references"][name]
            peak = max(r["driver_peak_rss_mb"], r["worker_peak_rss_mb"])
            rows.append([f"{labels[name]} pipeline, {docs(r['docs'])} docs of ~2 KB, {f['workers']} workers",
                         f"{num(r['docs_per_cpu_s'])} (peak {num(peak)} MB)",
                         f"{ref['what'].split(',')[0]}: {num(ref['docs_per_cpu_s'])} ({docs(ref['docs'])} docs)",
                         f"{r['ratio_to_reference']:.1f}x", "—"])
    c = load("classifier", folder)
    if c:
        sc, tr = c["scoring"], c["training"]
        rows.append([f"quality_classifier score + top-k, {docs(sc['docs'])} docs, {c['workers']} workers",
                     f"{num(sc['stage_docs_per_cpu_s'])} (stage; peak {num(max(sc['driver_peak_rss_mb'], sc['worker_peak_rss_mb']))} MB)",
                     f"fastText predict per document: {num(c['reference']['docs_per_cpu_s'])}",
                     f"{c['scoring_vs_reference_stage']:.2f}x",
                     f"≥ 20,000 docs/CPU-s: {'met' if sc['stage_docs_per_cpu_s'] >= 20000 else 'not met'}"])
        rows.append([f"quality_classifier training, {docs(tr['train_docs'])} docs", f"{tr['train_cpu_s']:.1f} CPU-s",
                     "none", "—", f"< 300 CPU-s: {'met' if tr['train_cpu_s'] < 300 else 'not met'}"])
    t = load("tokens", folder)
    if t:
        for key, what in (("generated", "generated"), ("real_pool", "pool")):
            c = t.get(key) or {}
            if "docs" not in c:
                continue
            rows.append([f"token count ({t['tokenizer']['spec']}), {docs(c['docs'])} {what} docs of "
                         f"~{c['mean_doc_bytes']:.0f} B", num(c["shardsift_count"]["docs_per_cpu_s"]),
                         f"tokenizers batch call: {num(c['package_batch_call']['docs_per_cpu_s'])}; "
                         f"encode per document: {num(c['per_document_encode']['docs_per_cpu_s'])}",
                         f"{c['speedup_per_cpu_s_vs_batch_call']:.1f}x; {c['speedup_per_cpu_s_vs_per_document']:.1f}x",
                         "—"])
    o = load("training_output", folder)
    if o:
        ours, ref = o["runs"]["tokens_all"], o["datatrove_tokens"]
        peak = max(ours["driver_peak_rss_mb"], ours["worker_peak_rss_mb"])
        rows.append([f"Megatron token shards ({o['tokenizer']}), {docs(ours['docs_in'])} docs, {o['workers']} workers",
                     f"{num(ours['docs_per_cpu_s'])} (peak {num(peak)} MB)",
                     f"datatrove 0.10.1 DocumentTokenizer: {num(ref['docs_per_cpu_s'])} "
                     f"(peak {num(max(ref['driver_peak_rss_mb'], ref['worker_peak_rss_mb']))} MB)",
                     f"{o['tokens_speedup_per_cpu_s_vs_datatrove']:.1f}x", "—"])
        mix = o["runs"]["mixture_tokens"]
        rows.append([f"3-source mixture to token shards, {docs(mix['docs_in'])} docs", f"{num(mix['docs_per_cpu_s'])} "
                     f"(peak {num(max(mix['driver_peak_rss_mb'], mix['worker_peak_rss_mb']))} MB)", "none", "—", "—"])
    return rows


def markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def readme_table(vs, scale, source: str = "bench/figures", folder: str = FIGURES) -> str:
    rows = readme_rows(vs, scale) + filter_rows(folder)
    head = ["workload", "shardsift docs/CPU-s", "reference docs/CPU-s", "ratio", "goal"]
    text = markdown(head, rows) if rows else "_no bench results committed yet (bench/figures/*.json)_"
    return text + f"\n\nGenerated by `python bench/table.py` from {source}/*.json; all figures, commands and " \
                  "the machine: [docs/benchmarks.md](docs/benchmarks.md)."


# -- docs/benchmarks.md ----------------------------------------------------------------------------

def machine_lines(m: dict) -> list[str]:
    if not m:
        return ["machine: not recorded"]
    return [f"- CPU: {m.get('cpu_model')}, {m.get('cpus')} cores; memory {m.get('memory_gb')} GB",
            f"- {m.get('platform')}, Python {m.get('python')}",
            f"- load average at start: {', '.join(f'{x:.2f}' for x in m.get('load_avg_at_start', []))} "
            "(the machine is shared: compare figures within one run)"]


def vs_section(vs: dict) -> list[str]:
    out = ["## shardsift against the reference tools", "",
           "Each figure is one fresh process tree (CPU of the process and all its descendants). "
           "*cold*: the first run on a 250-document input with an empty numba cache (a first run after install); "
           "*warm*: the same run again (the fixed start-up of every later run); *marginal*: "
           "(N - 250) / (CPU at N - warm CPU). The references run on the first `reference docs` documents of the "
           "same corpus when that is fewer; rates are per CPU-second.", ""]
    out += machine_lines(vs.get("machine", {}))
    out += ["- versions: " + ", ".join(f"{k} {v}" for k, v in (vs.get("versions") or {}).items()), ""]
    for size in sorted(vs["sizes"], key=int):
        e = vs["sizes"][size]
        out += [f"### {docs(int(size))} documents ({e['corpus']['mean_doc_bytes']:.0f} bytes each on average, "
                f"{e['corpus']['shards']} shard(s)), shardsift with {e['workers']} workers", "",
                f"Command: `{cmd(e['command'])}` ({e['measured_at']}).", ""]
        head = ["comparison", "tool", "docs", "CPU s", "wall s", "docs/CPU-s", "marginal docs/CPU-s", "cold CPU s",
                "warm CPU s", "driver peak MB", "worker peak MB"]
        rows = []
        for name, c in e["comparisons"].items():
            if "missing" in c:
                rows.append([name, "—", "—", "—", "—", f"missing: {c['missing']}", "—", "—", "—", "—", "—"])
                continue
            ref_key = REF_NAMES[name][0]
            for tool, r in (("shardsift", c["shardsift"]), (REF_NAMES[name][1], c[ref_key])):
                if r.get("missing"):
                    rows.append([name, tool, "—", "—", "—", f"missing: {r['missing']}", "—", "—", "—", "—", "—"])
                    continue
                rows.append([name, tool, num(r.get("docs_in")), num(r.get("cpu_s"), "{:.1f}"),
                             num(r.get("wall_s"), "{:.1f}"), num(r.get("docs_per_cpu_s")),
                             num(r.get("marginal_docs_per_cpu_s")), num(r.get("cold_cpu_s"), "{:.2f}"),
                             num(r.get("warm_cpu_s"), "{:.2f}"), num(r.get("driver_peak_rss_mb")),
                             num(r.get("worker_peak_rss_mb"))])
            a = c.get("shardsift_at_reference_size")
            if a and a is not c["shardsift"] and a.get("docs_in") != c["shardsift"].get("docs_in"):
                rows.append([name, "shardsift at the reference's size", num(a.get("docs_in")),
                             num(a.get("cpu_s"), "{:.1f}"), num(a.get("wall_s"), "{:.1f}"),
                             num(a.get("docs_per_cpu_s")), "—", "—", "—", num(a.get("driver_peak_rss_mb")),
                             num(a.get("worker_peak_rss_mb"))])
        out += [markdown(head, rows), ""]
        for name, c in e["comparisons"].items():
            if "missing" in c:
                continue
            if name == "minhash":
                out.append(f"- MinHash: **{num(c.get('ratio'), '{:.1f}x')}** datatrove's docs/CPU-s end to end "
                           f"(goal ≥ 20x), marginal {num(c.get('marginal_ratio'), '{:.1f}x')}, at the reference's "
                           f"size {num(c.get('ratio_at_reference_size'), '{:.1f}x')}; minhash_dedup stage alone "
                           f"{num(c['shardsift'].get('stage_docs_per_cpu_s'))} docs/CPU-s; documents kept: shardsift "
                           f"{num(c['shardsift'].get('docs_kept'))} of {num(c['shardsift'].get('docs_in'))}, datatrove "
                           f"{num(c['datatrove'].get('docs_kept'))} of {num(c['datatrove'].get('docs_in'))}.")
            elif name == "dsir":
                d = c["data_selection"]
                out.append(f"- DSIR: the dsir stage (fit, weights, keep-0.1 selection) "
                           f"{num(c['shardsift'].get('stage_docs_per_cpu_s'))} docs/CPU-s against data-selection's "
                           f"fit + weights {num(d.get('fit_weights_docs_per_cpu_s'))} "
                           f"({num(d.get('fit_weights_cpu_s'), '{:.1f}')} CPU-s for {num(d.get('docs_in'))} docs): "
                           f"**{num(c.get('ratio'), '{:.1f}x')}** (goal ≥ 30x), at the reference's size "
                           f"{num(c.get('ratio_at_reference_size'), '{:.1f}x')}; whole processes "
                           f"{num(c.get('end_to_end_ratio'), '{:.1f}x')} (the reference's includes writing its "
                           f"JSONL input), marginal {num(c.get('marginal_ratio'), '{:.1f}x')}.")
            elif name == "overhead":
                out.append(f"- Overhead: shardsift (read + length + write) takes **{num(c.get('cpu_ratio'), '{:.2f}x')}** "
                           f"the CPU of plain pyarrow read + write (goal ≤ 1.5x); marginal "
                           f"{num(c.get('marginal_cpu_ratio'), '{:.2f}x')}.")
        out.append("")
    return out


def scale_section(scale: dict) -> list[str]:
    out = ["## Scale-out: every selector at 0.25M, 1M and 3M documents", "",
           f"`python -m shardsift select CONFIG --overwrite` with {scale.get('workers')} workers on bench/corpus.py's "
           "corpus (~2 KB documents, 100k-document shards), each run a fresh process tree after a warm-up run on "
           "250 documents. CPU: the whole process tree. Driver: the `shardsift` process's own peak RSS; workers: the "
           "largest peak among its worker processes (none when the run needs no pool); manifest: the peak the "
           "manifest reports. Work dir: OUTPUT/.work after the run; output: OUTPUT/data. A wall time well above CPU / (workers) means the run "
           "waited: for I/O, or for CPU taken by other processes on a shared machine; the CPU figures are much less "
           "affected by that.", ""]
    out += machine_lines(scale.get("machine", {}))
    out += ["- configs: " + "; ".join(f"`{k}`: " + " → ".join(next(iter(s)) + json.dumps(next(iter(s.values())),
                                                                                          separators=(',', ':'))
                                                                  for s in v)
                                      for k, v in (scale.get("configs") or {}).items()), ""]
    head = ["docs", "config", "wall s", "CPU s", "docs/CPU-s", "docs/wall-s", "kept", "driver MB", "workers MB",
            "manifest MB", "work dir MB", "output MB"]
    rows = []
    sizes = sorted(set(SCALE_SIZES) | {int(s) for s in scale["sizes"]})
    for n in sizes:
        e = scale["sizes"].get(str(n))
        if e is None:
            rows.append([docs(n), "all", "not measured (no run of this size in bench/figures/scale.json)"]
                        + ["—"] * 9)
            continue
        for cfg in SCALE_CONFIGS + [c for c in e["runs"] if c not in SCALE_CONFIGS]:
            r = e["runs"].get(cfg)
            if r is None:
                rows.append([docs(n), cfg, "not measured (not run)"] + ["—"] * 9)
            elif "missing" in r:
                rows.append([docs(n), cfg, f"missing: {r['missing']}"] + ["—"] * 9)
            else:
                m = r.get("manifest") or {}
                rows.append([docs(n), cfg, num(r["wall_s"], "{:.1f}"), num(r["cpu_s"], "{:.1f}"),
                             num(r.get("docs_per_cpu_s")), num(r.get("docs_per_wall_s")), num(r.get("docs_kept")),
                             num(r.get("driver_peak_rss_mb")), num(r.get("worker_peak_rss_mb") or None),
                             num(m.get("peak_rss_mb")), num(r.get("work_dir_bytes", 0) / 1e6, "{:.1f}"),
                             num(r.get("output_bytes", 0) / 1e6, "{:.0f}")])
    out += [markdown(head, rows), ""]
    for n in sorted(scale["sizes"], key=int):
        e = scale["sizes"][n]
        out.append(f"- {docs(int(n))}: `{cmd(e['command'])}` ({e['measured_at']}); corpus "
                   f"{e['corpus']['text_bytes'] / 1e9:.2f} GB of text in {e['corpus']['shards']} shard(s).")
    out.append("")
    return out


def benchmarks_md(vs, scale, folder: str = FIGURES) -> str:
    out = ["# Benchmarks", "",
           "Generated by `python bench/table.py` from bench/figures/*.json (vs_reference.json and scale.json "
           "written by `python bench/vs_reference.py` and `python bench/scale.py`, which `make bench` runs; each "
           "filter's and the token count's JSON by its own `bench/bench_*.py`, whose command the JSON records). "
           "Do not edit by hand: rerun the bench, commit the JSON, regenerate.", "",
           "## Summary (the README's table)", "", readme_table(vs, scale, folder=folder).split("\n\nGenerated")[0], ""]
    out += vs_section(vs) if vs else ["## shardsift against the reference tools", "", "not measured: no "
                                      "bench/figures/vs_reference.json", ""]
    out += scale_section(scale) if scale else ["## Scale-out", "", "not measured: no bench/figures/scale.json", ""]
    return "\n".join(out)


def replace_region(path: str, table: str) -> None:
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    i, j = text.find(START), text.find(END)
    if i < 0 or j < i:
        sys.exit(f"{path}: markers {START} ... {END} not found; add them where the table goes")
    new = text[: i + len(START)] + "\n" + table + "\n" + text[j:]
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(new)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--readme", help="replace the table between the bench-table markers in this file")
    ap.add_argument("--doc", default=os.path.join(ROOT, "docs", "benchmarks.md"))
    ap.add_argument("--figures", default=FIGURES, help="folder of vs_reference.json and scale.json")
    args = ap.parse_args()
    vs, scale = load("vs_reference", args.figures), load("scale", args.figures)
    os.makedirs(os.path.dirname(args.doc), exist_ok=True)
    with open(args.doc, "w", encoding="utf-8") as fh:
        fh.write(benchmarks_md(vs, scale, args.figures) + "\n")
    table = readme_table(vs, scale, os.path.relpath(args.figures, ROOT), args.figures)
    print(table)
    print(f"\nwrote {os.path.relpath(args.doc)}", file=sys.stderr)
    if args.readme:
        replace_region(args.readme, table)
        print(f"updated the table in {args.readme}", file=sys.stderr)


if __name__ == "__main__":
    main()
