"""The page: sections in order, a table of contents, page-wide notes, written atomically."""
from __future__ import annotations

import time

from ..io import storage
from ..io.layout import REPORT
from . import sections
from .data import RunData
from .html import CSS, esc, note


def write_report(output_dir: str, label_column: str | None = None, *, path: str | None = None,
                 samples: int = 3, max_points: int = 5000, seed: int = 0) -> str:
    """Write OUTPUT/.shardsift/report.html (or ``path``) and return its path.

    ``label_column``: a column of the kept documents to show the composition by (None: look for a
    low-cardinality ``domain``/``label``/``source``/... column; "" to show none). ``samples``: kept and
    dropped example documents per stage. ``max_points``: points per scatter plot.
    """
    from .. import output

    output_dir = storage.abspath(output_dir)
    run = RunData(output_dir, None)
    if label_column is None:
        label_column = output.detect_label(output_dir, run.manifest)
    run.label = label_column or None
    doc = render(run, samples=samples, max_points=max_points, seed=seed)
    path = path or storage.join(output_dir, REPORT)
    storage.write_atomic(path, doc.encode("utf-8"))
    return path


def render(run: RunData, *, samples: int, max_points: int, seed: int) -> str:
    toc: list[tuple[str, str]] = []

    def section(anchor: str, title: str, fn) -> str:
        toc.append((anchor, title))
        try:
            body = fn()
        except Exception as err:  # noqa: BLE001 - one broken section must not lose the page
            body = note(f"this section could not be drawn: {type(err).__name__}: {err}")
        return f'<section id="{esc(anchor)}"><h2>{esc(title)}</h2>{body}</section>'

    notes = []
    if not run.scores:
        notes.append("No scores/ sidecar in this output (run with output.scores: true): score distributions, "
                     "sample documents and cluster plots are not shown.")
    parts = [section("summary", "Summary", lambda: sections.summary(run)),
             section("funnel", "Funnel", lambda: sections.funnel(run))]
    if run.manifest.get("sources"):
        parts.append(section("sources", "Sources", lambda: sections.sources(run)))
    if run.has_eval():
        parts.append(section("eval", "Proxy LM check", lambda: sections.proxy_lm(run)))
    if run.label:
        parts.append(section("composition", f"Composition by {run.label}", lambda: sections.composition(run)))
    for i, st in enumerate(run.stages):
        if i == 0:
            continue
        stage = sections.StageSection(run, i, samples, max_points, seed)
        parts.append(section(f"stage-{i}", f"Stage {i}: {st.get('name', '?')}", stage.render))
    nav = " ".join(f'<a href="#{a}">{esc(t)}</a>' for a, t in toc)
    m = run.manifest
    title = f"shardsift report: {storage.basename(run.out)}"
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{esc(title)}</title><style>{CSS}</style></head><body>"
            f"<h1>{esc(title)}</h1><p class=\"small\">{esc(run.out)} &middot; shardsift "
            f"{esc(m.get('shardsift_version', '?'))} &middot; run {esc(m.get('created', '?'))}"
            f" &middot; report {esc(time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()))}</p>"
            f"<nav>{nav}</nav>{''.join(note(n) for n in notes)}{''.join(parts)}</body></html>\n")
