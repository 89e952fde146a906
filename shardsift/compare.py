"""`shardsift compare OUT_A OUT_B`: how two finished outputs differ.

Overlap of the kept ids (Jaccard, A-only, B-only), composition by a label column when the outputs
have one, config differences, and per stage the document counts and every numeric metric that differs.
Both outputs are read through `shardsift.output` (local or on object storage).
"""
from __future__ import annotations

import json

import pyarrow.compute as pc

from .output import detect_label, load_manifest, read_kept
from .report.data import scalar_metrics, value_counts


def _flat_config(cfg, prefix: str = "") -> dict:
    out = {}
    if isinstance(cfg, dict):
        for k, v in cfg.items():
            out.update(_flat_config(v, f"{prefix}{k}." if prefix or k else k))
    elif isinstance(cfg, list) and cfg and all(isinstance(x, dict) for x in cfg):
        for i, v in enumerate(cfg):
            out.update(_flat_config(v, f"{prefix}{i}."))
    else:
        out[prefix.rstrip(".")] = json.dumps(cfg, sort_keys=True, default=str)
    return out


def compare_outputs(a: str, b: str, label_column: str | None = None) -> dict:
    """A dict describing the differences between outputs ``a`` and ``b`` (see `format_compare`)."""
    ma, mb = load_manifest(a), load_manifest(b)
    if label_column is None:
        label_column = detect_label(a, ma) or detect_label(b, mb)
    label_column = label_column or None
    cols = [label_column] if label_column else []
    ta, tb = read_kept(a, ma, cols), read_kept(b, mb, cols)
    ida = pc.unique(ta.column("id").combine_chunks())
    idb = pc.unique(tb.column("id").combine_chunks())
    both = int(pc.sum(pc.is_in(ida, value_set=idb)).as_py() or 0)
    union = len(ida) + len(idb) - both
    res = {
        "a": a, "b": b,
        "kept": {"a": len(ida), "b": len(idb), "both": both, "a_only": len(ida) - both, "b_only": len(idb) - both,
                 "jaccard": both / union if union else 1.0},
        "docs_in": {"a": ma.get("docs_in"), "b": mb.get("docs_in")},
        "tokens_kept": {"a": ma.get("tokens_kept"), "b": mb.get("tokens_kept")},
        "label_column": label_column,
        "composition": None,
        "config": [],
        "stages": [],
    }
    if label_column and label_column in ta.column_names and label_column in tb.column_names:
        ca, cb = value_counts(ta.column(label_column)), value_counts(tb.column(label_column))
        na, nb = max(sum(ca.values()), 1), max(sum(cb.values()), 1)
        keys = sorted(set(ca) | set(cb), key=lambda k: (-(ca.get(k, 0) + cb.get(k, 0)), k))
        res["composition"] = [{"label": k, "a": ca.get(k, 0), "b": cb.get(k, 0),
                               "a_share": ca.get(k, 0) / na, "b_share": cb.get(k, 0) / nb} for k in keys]
    fa, fb = _flat_config(ma.get("config") or {}), _flat_config(mb.get("config") or {})
    skip = ("output.path", "output.work_dir")
    for k in sorted(set(fa) | set(fb)):
        if k not in skip and fa.get(k) != fb.get(k):
            res["config"].append({"key": k, "a": fa.get(k), "b": fb.get(k)})
    sa, sb = ma.get("stages") or [], mb.get("stages") or []
    for i in range(max(len(sa), len(sb))):
        x = sa[i] if i < len(sa) else {}
        y = sb[i] if i < len(sb) else {}
        xm, ym = scalar_metrics(x.get("metrics") or {}), scalar_metrics(y.get("metrics") or {})
        metrics = []
        for k in sorted(set(xm) | set(ym)):
            if xm.get(k) != ym.get(k):
                metrics.append({"key": k, "a": xm.get(k), "b": ym.get(k)})
        res["stages"].append({
            "index": i, "name_a": x.get("name"), "name_b": y.get("name"),
            "docs_in": [x.get("docs_in"), y.get("docs_in")], "kept": [x.get("kept"), y.get("kept")],
            "dropped": [x.get("dropped") or {}, y.get("dropped") or {}],
            "cpu_s": [x.get("cpu_s"), y.get("cpu_s")], "metrics": metrics})
    return res


def _v(x) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.4g}"
    if isinstance(x, int):
        return f"{x:,}"
    return str(x)


def _delta(a, b) -> str:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        d = b - a
        return f"{'+' if d >= 0 else ''}{_v(d)}"
    return ""


def format_compare(res: dict) -> str:
    k = res["kept"]
    lines = [f"A: {res['a']}", f"B: {res['b']}",
             (f"kept ids: A {k['a']:,}, B {k['b']:,}, both {k['both']:,}, A only {k['a_only']:,}, "
              f"B only {k['b_only']:,}; Jaccard {k['jaccard']:.4f}"),
             (f"documents in: A {_v(res['docs_in']['a'])}, B {_v(res['docs_in']['b'])}; tokens kept: "
              f"A {_v(res['tokens_kept']['a'])}, B {_v(res['tokens_kept']['b'])}")]
    if res["config"]:
        lines.append("config differences:")
        for c in res["config"]:
            lines.append(f"    {c['key']}: A {c['a']}  B {c['b']}")
    if res["composition"]:
        lines.append(f"composition by {res['label_column']} (kept documents):")
        w = max([len(str(c["label"])) for c in res["composition"]] + [5])
        lines.append(f"    {'':<{w}}  {'A':>8} {'A %':>7}  {'B':>8} {'B %':>7}  {'B-A pts':>8}")
        for c in res["composition"]:
            lines.append(f"    {c['label']!s:<{w}}  {c['a']:>8,} {100 * c['a_share']:>6.1f}%  {c['b']:>8,} "
                         f"{100 * c['b_share']:>6.1f}%  {100 * (c['b_share'] - c['a_share']):>+8.1f}")
    elif res["label_column"]:
        lines.append(f"composition: no column {res['label_column']!r} in both outputs")
    lines.append("stages:")
    for s in res["stages"]:
        name = s["name_a"] if s["name_a"] == s["name_b"] else f"{s['name_a']} | {s['name_b']}"
        lines.append(f"  {s['index']} {name}: in A {_v(s['docs_in'][0])} B {_v(s['docs_in'][1])}; kept "
                     f"A {_v(s['kept'][0])} B {_v(s['kept'][1])} ({_delta(s['kept'][0], s['kept'][1])})")
        if s["dropped"][0] != s["dropped"][1]:
            lines.append(f"      dropped: A {s['dropped'][0]}  B {s['dropped'][1]}")
        for m in s["metrics"]:
            lines.append(f"      {m['key']}: A {_v(m['a'])}  B {_v(m['b'])}  ({_delta(m['a'], m['b'])})")
    return "\n".join(lines)

