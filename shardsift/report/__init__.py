"""`shardsift report OUTPUT`: one self-contained HTML page that shows what a run kept, dropped and why.

Everything on the page comes from the finished output, read through `shardsift.output` (never the
input corpus, never the work dir): the manifest gives the funnel and the per-stage table; the
scores sidecar (``output.scores: true``) gives score distributions, scores against length, cluster
plots and example documents; the kept documents give texts, lengths and the composition by a label
column. What a plot would need that the output lacks is said in a note on the page.

Modules: `data` (what is read, what a stage's score means), `sampling` (which documents are shown),
`plots` (matplotlib figures with axes chosen from the data), `sections` (summary, funnel,
composition, one section per stage), `page` (assembly and `write_report`), `html` (small pieces).
Plots are PNG images embedded as data URIs; the page has no script and loads nothing.
"""
from .page import REPORT, render, write_report

__all__ = ["REPORT", "render", "write_report"]
