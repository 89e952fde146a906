"""The manifest as a plain-text table, for `shardsift select` and `shardsift inspect`."""
from __future__ import annotations

from .html import flat_metrics


def token_label(m: dict) -> str:
    """What the manifest's tokens count: ``tokens (whitespace words)`` without a tokenizer, else the
    tokenizer's unit (``tokens (minilm)``)."""
    unit = m.get("token_unit") or "whitespace words"
    return unit if unit.startswith("tokens") else f"tokens ({unit})"


def manifest_table(m: dict, output: str = "") -> str:
    """Counts, drop reasons, timings and metrics of every stage, one line each."""
    lines = []
    if output:
        lines.append(f"output: {output}")
    lines.append(
        f"documents: {m['docs_in']:,} in, {m['docs_kept']:,} kept ({100 * m['docs_kept'] / max(1, m['docs_in']):.1f}%)"
        f"; {token_label(m)}: {m['tokens_in']:,} in, {m['tokens_kept']:,} kept"
        f"; bytes: {m['bytes_in']:,} in, {m['bytes_kept']:,} kept"
    )
    head = f"{'#':>2}  {'stage':<22}{'in':>10}{'kept':>10}{'dropped':>10}  {'wall s':>8}{'cpu s':>8}{'peak MB':>9}  why dropped"
    lines.append(head)
    lines.append("-" * len(head))
    for i, st in enumerate(m["stages"]):
        dropped = sum(st["dropped"].values())
        why = ", ".join(f"{k} {v:,}" for k, v in sorted(st["dropped"].items(), key=lambda kv: -kv[1]))
        lines.append(f"{i:>2}  {st['name'][:21]:<22}{st['docs_in']:>10,}{st['kept']:>10,}{dropped:>10,}  "
                     f"{st.get('wall_s', 0):>8.2f}{st.get('cpu_s', 0):>8.2f}{st.get('peak_rss_mb', 0):>9.0f}  {why}")
    w = m.get("write", {})
    lines.append(f"{'':>2}  {'write':<22}{'':>10}{m['docs_kept']:>10,}{'':>10}  {w.get('wall_s', 0):>8.2f}"
                 f"{w.get('cpu_s', 0):>8.2f}")
    lines.append(f"total: wall {m['wall_s']:.2f} s, cpu {m['cpu_s']:.2f} s, peak memory {m['peak_rss_mb']:.0f} MB; "
                 f"{len(m['output']['files'])} output file(s)")
    lines += key_metrics(m)
    return "\n".join(lines)


def all_metrics(m: dict) -> list[str]:
    """Every metric of every stage under its raw name (``inspect --all-metrics``)."""
    lines = []
    for st in m["stages"]:
        pairs = list(flat_metrics(st.get("metrics") or {}))
        if pairs:
            lines.append(f"metrics of {st['name']}:")
            lines += [f"    {k}: {v}" for k, v in pairs]
    return lines


# the metrics worth a line after the table, in words; every other one is in the manifest (--json)
LABELS = {
    "clusters": "duplicate clusters", "largest_cluster": "largest cluster", "pairs_checked": "candidate pairs verified",
    "pairs_rejected": "candidate pairs rejected by exact Jaccard", "groups": "groups of identical text",
    "kl_reduction": "KL to the target reduced by", "kl_reduction_random": "(a random selection: by",
    "holdout_precision": "classifier holdout precision", "holdout_recall": "holdout recall", "holdout_auc": "holdout AUC",
    "budget_share_from_include_keys": "budget share from the included keys", "cut": "score at the cut",
    "k": "clusters (k)", "coverage.mean_distance": "mean distance to the selection",
    "coverage.random_mean_distance": "(a random selection:", "coverage_heldout.mean_distance":
    "held-out embedding: mean distance", "selected": "would select (annotate only)",
}


def key_metrics(m: dict) -> list[str]:
    """One line per stage with its labelled metrics; all of them: ``shardsift inspect OUTPUT --json``."""
    lines = []
    for st in m["stages"]:
        flat = dict(flat_metrics(st.get("metrics") or {}))
        shown = [f"{label} {flat[key]}" + (")" if label.startswith("(") else "")
                 for key, label in LABELS.items() if key in flat and (key != "selected" or st.get("annotate_only"))]
        if shown:
            lines.append(f"  {st['name']}: " + "; ".join(shown))
    if lines:
        lines.insert(0, "key figures (every metric: shardsift inspect OUTPUT --json):")
    return lines
