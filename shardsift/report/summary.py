"""The manifest as a plain-text table, for `shardsift select` and `shardsift inspect`."""
from __future__ import annotations

from .html import flat_metrics


def manifest_table(m: dict, output: str = "") -> str:
    """Counts, drop reasons, timings and metrics of every stage, one line each."""
    lines = []
    if output:
        lines.append(f"output: {output}")
    lines.append(
        f"documents: {m['docs_in']:,} in, {m['docs_kept']:,} kept ({100 * m['docs_kept'] / max(1, m['docs_in']):.1f}%)"
        f"; tokens (whitespace words): {m['tokens_in']:,} in, {m['tokens_kept']:,} kept"
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
    for st in m["stages"]:
        pairs = list(flat_metrics(st.get("metrics") or {}))
        if pairs:
            lines.append(f"metrics of {st['name']}:")
            for k, v in pairs:
                lines.append(f"    {k}: {v}")
    return "\n".join(lines)
