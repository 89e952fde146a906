"""Small HTML pieces of the report page: escaping, numbers, tables, notes and the style sheet."""
from __future__ import annotations

import html
from typing import Any

import numpy as np

CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:0 auto;max-width:1150px;
 padding:0 18px 40px;color:#222;line-height:1.4}
h1{margin:18px 0 4px} h2{border-bottom:2px solid #ddd;padding-bottom:3px;margin-top:34px}
h3{margin:18px 0 6px} .note{color:#666;font-style:italic}
table{border-collapse:collapse;margin:6px 0 12px;font-size:13px}
td,th{border:1px solid #ddd;padding:3px 7px;text-align:left;vertical-align:top}
th{background:#f3f3f3} td.num{text-align:right}
img.plot{max-width:100%;height:auto;display:block;margin:6px 0}
.docs td{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12px;white-space:pre-wrap;
 max-width:520px;word-break:break-word}
.kept{color:#2a9d4b;font-weight:bold} .dropped{color:#d1495b;font-weight:bold}
.grid{display:flex;flex-wrap:wrap;gap:14px} .grid>div{flex:1 1 480px;min-width:0}
nav a{margin-right:10px} .small{font-size:12px;color:#555}
details{margin:6px 0}
"""


def esc(x: Any) -> str:
    return html.escape(str(x), quote=True)


def num(v: Any) -> str:
    """A number as the page shows it: integers with thousands separators, floats to 4 digits."""
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v)).lower()
    if isinstance(v, (int, np.integer)):
        return f"{int(v):,}"
    if isinstance(v, (float, np.floating)):
        v = float(v)
        return f"{v:.4g}" if np.isfinite(v) else str(v)
    return str(v)


def size(n: int) -> str:
    """A byte count in the largest unit that keeps it at least 1 (B, kB, MB, GB; powers of 1000)."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def pct(a: float, b: float) -> str:
    return f"{100.0 * a / b:.1f}%" if b else "-"


def table(rows: list[list[Any]], head: list[str] | None = None, cls: str = "") -> str:
    h = "<tr>" + "".join(f"<th>{esc(c)}</th>" for c in head) + "</tr>" if head else ""
    body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f'<table class="{cls}">{h}{body}</table>'


def note(msg: str) -> str:
    return f'<p class="note">{esc(msg)}</p>'


def small(msg: str) -> str:
    return f'<p class="small">{esc(msg)}</p>'


def flat_metrics(metrics: dict, prefix: str = ""):
    """(key, shown value) of a nested metrics dict, keys joined with dots; long lists summarised."""
    for k, v in (metrics or {}).items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            yield from flat_metrics(v, key + ".")
        elif isinstance(v, (list, tuple)):
            if len(v) <= 8 and all(isinstance(x, (int, float, str, bool)) or x is None for x in v):
                yield key, "[" + ", ".join(num(x) for x in v) + "]"
            else:
                yield key, f"<{len(v)} values>"
        else:
            yield key, "-" if v is None else num(v)
