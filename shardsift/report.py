"""`shardsift report OUTPUT`: one self-contained HTML page that shows what a run kept, dropped and why.

Everything on the page is driven by what the output holds, so a stage that a selector did not
describe (a custom selector, an older output) still gets what can be shown generically:

- ``manifest.json``: the funnel (documents per stage; tokens when the input is readable), the
  per-stage table of counts, reasons, timings and metrics. Known metric keys add plots: a
  ``top_keys`` list of ``{key, estimate, weight}`` (perplexity correlation), ``*precision`` /
  ``*recall`` / ``*accuracy`` scalars (a classifier's held-out quality), ``cluster_sizes_before``
  / ``cluster_sizes_after`` lists (k-means).
- ``scores/stage-NN-NAME.parquet`` (``output.scores: true``): the score distribution of kept and
  dropped documents with the cut, score against document length, sample documents, and for a
  ``cluster`` column either duplicate clusters (size histogram and duplicate pairs side by side)
  or partition clusters (sizes before/after and a 2-D projection of the embeddings).
- the input corpus named in the manifest (when still readable): document lengths, texts of the
  sampled documents, and the label column for the composition chart.

Plots are PNG images (matplotlib, Agg backend) embedded as base64 data URIs; the page has no
script and loads nothing from the network.
"""
from __future__ import annotations

import base64
import glob
import html
import io
import json
import os
import re
import time
from collections.abc import Iterable
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .engine.accounting import read_parts
from .errors import DataError

REPORT = "report.html"
KEPT_C, DROP_C = "#2a9d4b", "#d1495b"
LABEL_CANDIDATES = ("domain", "label", "source", "category", "lang", "language")
MAX_LABELS = 40
CUT_METRICS = ("include_prob_threshold", "threshold", "score_threshold", "cut")
TEXT_CHARS = 300


# -- small helpers -------------------------------------------------------------------------------

def _esc(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _num(v: Any) -> str:
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, (int, np.integer)):
        return f"{int(v):,}"
    if isinstance(v, (float, np.floating)):
        v = float(v)
        if not np.isfinite(v):
            return str(v)
        return f"{v:.4g}"
    return str(v)


def _pct(a: float, b: float) -> str:
    return f"{100.0 * a / b:.1f}%" if b else "-"


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> str:
    """The figure, laid out tight, as an <img> with a base64 PNG data URI; closes the figure."""
    plt = _plt()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return f'<img class="plot" alt="plot" src="data:image/png;base64,{data}">'


def _flat(metrics: dict, prefix: str = "") -> Iterable[tuple[str, str]]:
    for k, v in (metrics or {}).items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            yield from _flat(v, key + ".")
        elif isinstance(v, (list, tuple)):
            if len(v) <= 8 and all(isinstance(x, (int, float, str, bool)) or x is None for x in v):
                yield key, "[" + ", ".join(_num(x) for x in v) + "]"
            else:
                yield key, f"<{len(v)} values>"
        elif v is None:
            yield key, "-"
        else:
            yield key, _num(v)


def scalar_metrics(metrics: dict, prefix: str = "") -> dict[str, int | float]:
    """Numeric scalars of a (nested) metrics dict, keys joined with dots; for `compare`."""
    out = {}
    for k, v in (metrics or {}).items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(scalar_metrics(v, key + "."))
        elif isinstance(v, (bool, np.bool_)):
            continue
        elif isinstance(v, (int, np.integer)):
            out[key] = int(v)
        elif isinstance(v, (float, np.floating)) and np.isfinite(float(v)):
            out[key] = float(v)
    return out


def _table(rows: list[list[Any]], head: list[str] | None = None, cls: str = "") -> str:
    h = ""
    if head:
        h = "<tr>" + "".join(f"<th>{_esc(c)}</th>" for c in head) + "</tr>"
    body = "".join("<tr>" + "".join(f"<td>{_esc(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f'<table class="{cls}">{h}{body}</table>'


def _note(msg: str) -> str:
    return f'<p class="note">{_esc(msg)}</p>'


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "_-" else "_" for ch in name)[:40]


# -- loading -------------------------------------------------------------------------------------

def load_manifest(output_dir: str) -> dict:
    path = os.path.join(output_dir, "manifest.json")
    if not os.path.exists(path):
        raise DataError(f"{output_dir}: no manifest.json (not a finished shardsift output)")
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, ValueError) as err:
        raise DataError(f"{path}: not a readable manifest ({err})") from None


def load_sidecars(output_dir: str) -> dict[int, pa.Table]:
    """{manifest stage index: table} from OUTPUT/scores/stage-NN-NAME.parquet."""
    out = {}
    for path in sorted(glob.glob(os.path.join(output_dir, "scores", "stage-*.parquet"))):
        m = re.match(r"stage-(\d+)-", os.path.basename(path))
        if not m:
            continue
        try:
            out[int(m.group(1))] = pq.read_table(path)
        except (pa.ArrowException, OSError):
            continue
    return out


def load_decisions(output_dir: str) -> pa.Table | None:
    """OUTPUT/decisions/ (id, stage that dropped the document or -1 for kept), when the output has one."""
    try:
        t = read_parts(os.path.join(output_dir, "decisions"), columns=["id", "stage"])
    except (pa.ArrowException, OSError, KeyError):
        return None
    if t is None:
        return None
    return pa.table({"id": t.column("id").combine_chunks().cast(pa.string()),
                     "stage": t.column("stage").combine_chunks().cast(pa.int32())})


def _input_config(manifest: dict) -> dict | None:
    inp = (manifest.get("config") or {}).get("input")
    if not isinstance(inp, dict):
        return None
    path = inp.get("path")
    if not (isinstance(path, str) and not path.startswith("<datasets.Dataset")) and not isinstance(path, list):
        return None
    return inp


def output_ids(output_dir: str, manifest: dict, columns: Iterable[str] = ()) -> pa.Table:
    """The id column (and any of ``columns``) of the output shards in OUTPUT/data."""
    inp = (manifest.get("config") or {}).get("input") or {}
    id_col = inp.get("id_column", "id")
    files = sorted(glob.glob(os.path.join(output_dir, "data", "*.parquet")))
    parts = []
    for f in files:
        names = pq.read_schema(f).names
        cols = [c for c in [id_col, *columns] if c in names]
        t = pq.read_table(f, columns=cols)
        if id_col in t.column_names:
            t = t.set_column(t.column_names.index(id_col), "id", t.column(id_col).cast(pa.string()))
        parts.append(t)
    if not parts:
        return pa.table({"id": pa.array([], pa.string())})
    return pa.concat_tables(parts, promote_options="permissive")


def _detect_label(output_dir: str, manifest: dict) -> str | None:
    files = sorted(glob.glob(os.path.join(output_dir, "data", "*.parquet")))
    if not files:
        return None
    inp = (manifest.get("config") or {}).get("input") or {}
    skip = {inp.get("text_column", "text"), inp.get("id_column", "id")}
    schema = pq.read_schema(files[0])
    for name in LABEL_CANDIDATES:
        if name in schema.names and name not in skip:
            t = pq.read_table(files[0], columns=[name]).column(name)
            if (pa.types.is_string(t.type) or pa.types.is_large_string(t.type) or pa.types.is_integer(t.type)) \
                    and len(pc.unique(t)) <= MAX_LABELS:
                return name
    return None


class Corpus:
    """One streaming pass over the input named in the manifest: every document's id, length (whitespace
    words) and label, and the texts of the few documents the page shows."""

    def __init__(self, manifest: dict, label_column: str | None):
        self.manifest = manifest
        self.label_column = label_column
        self.ids: pa.Array | None = None
        self.n_words: np.ndarray | None = None
        self.labels: pa.Array | None = None
        self.texts: dict[str, str] = {}
        self.error: str | None = None
        self._index = None

    def load(self, wanted: set[str]) -> bool:
        from .columns import count_words
        from .io import iter_tables, normalize, resolve_shards

        inp = _input_config(self.manifest)
        if inp is None:
            self.error = "the input is not a file path (a datasets.Dataset given from Python)"
            return False
        text_col, id_col = inp.get("text_column", "text"), inp.get("id_column", "id")
        try:
            shards = resolve_shards(inp["path"], inp.get("format", "auto"), inp.get("storage_options") or {})
            ids, words, labels = [], [], []
            want = pa.array(sorted(wanted), pa.string())
            label = self.label_column
            for sh in shards:
                start = 0
                cols = [text_col, id_col] + ([label] if label else [])
                for tbl in iter_tables(sh, cols, int(inp.get("batch_size", 8192))):
                    n = tbl.num_rows
                    tbl, valid = normalize(tbl, sh, text_col, id_col, start)
                    start += n
                    if not valid.all():
                        tbl = tbl.filter(pa.array(valid))
                    tid = tbl.column(id_col).combine_chunks().cast(pa.string())
                    text = tbl.column(text_col).combine_chunks()
                    ids.append(tid)
                    words.append(count_words(text))
                    if label:
                        col = tbl.column(label).combine_chunks() if label in tbl.column_names \
                            else pa.nulls(tbl.num_rows)
                        labels.append(col.cast(pa.string()))
                    if len(want):
                        hit = pc.is_in(tid, value_set=want)
                        if pc.any(hit).as_py():
                            for i, t in zip(tid.filter(hit).to_pylist(), text.filter(hit).to_pylist()):
                                self.texts[i] = t
        except (DataError, OSError, pa.ArrowException) as err:
            self.error = f"the input is not readable now ({err})"
            return False
        self.ids = pa.concat_arrays(ids) if ids else pa.array([], pa.string())
        self.n_words = np.concatenate(words) if words else np.zeros(0, np.int64)
        self.labels = pa.concat_arrays(labels) if labels else None
        return True

    def positions(self, ids: pa.Array) -> np.ndarray:
        """Positions of ``ids`` in the corpus (-1 where absent)."""
        return np.asarray(pc.index_in(ids.cast(pa.string()), value_set=self.ids).fill_null(-1)
                          .to_numpy(zero_copy_only=False), dtype=np.int64)

    def words_of(self, ids: pa.Array) -> np.ndarray:
        pos = self.positions(ids)
        out = np.full(len(pos), -1, np.int64)
        ok = pos >= 0
        out[ok] = self.n_words[pos[ok]]
        return out

    def labels_of(self, ids: pa.Array) -> pa.Array | None:
        if self.labels is None:
            return None
        pos = self.positions(ids)
        return self.labels.take(pa.array(np.where(pos >= 0, pos, 0)))


# -- the page ------------------------------------------------------------------------------------

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


def write_report(output_dir: str, label_column: str | None = None, *, path: str | None = None,
                 samples: int = 3, max_points: int = 5000, seed: int = 0) -> str:
    """Write OUTPUT/report.html (or ``path``) and return its path.

    ``label_column``: an input column to show the composition by (None: look for a low-cardinality
    ``domain``/``label``/``source``/... column in the output; "" to show none). ``samples``: kept and
    dropped example documents per stage. ``max_points``: points per scatter plot.
    """
    output_dir = os.path.abspath(output_dir)
    manifest = load_manifest(output_dir)
    if label_column is None:
        label_column = _detect_label(output_dir, manifest)
    label_column = label_column or None
    page = _Page(output_dir, manifest, label_column, samples=samples, max_points=max_points, seed=seed)
    doc = page.render()
    path = path or os.path.join(output_dir, REPORT)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(doc)
    os.replace(tmp, path)
    return path


class _Page:
    def __init__(self, output_dir, manifest, label_column, *, samples, max_points, seed):
        self.out = output_dir
        self.m = manifest
        self.label = label_column
        self.samples = samples
        self.max_points = max_points
        self.seed = seed
        self.stages = list(manifest.get("stages") or [])
        self.side = load_sidecars(output_dir)
        self.decisions = load_decisions(output_dir)
        self.corpus = Corpus(manifest, label_column)
        self.notes: list[str] = []
        self.plan: dict[int, dict] = {}
        self._toc: list[tuple[str, str]] = []

    # -- choosing what to show ---------------------------------------------------------------
    def _rng(self, i: int):
        return np.random.default_rng([self.seed, i])

    def _pick(self, n: int, k: int, i: int) -> np.ndarray:
        if n <= k:
            return np.arange(n)
        return np.sort(self._rng(i).choice(n, size=k, replace=False))

    def _plan(self) -> set[str]:
        """Choose sample documents and duplicate pairs per stage; returns the ids whose text is needed."""
        wanted: set[str] = set()
        for i, t in self.side.items():
            p: dict = {}
            ids = t.column("id").combine_chunks().cast(pa.string())
            kept = np.asarray(t.column("kept").to_numpy(zero_copy_only=False), dtype=bool)
            for name, mask in (("kept", kept), ("dropped", ~kept)):
                idx = np.flatnonzero(mask)
                sel = idx[self._pick(len(idx), self.samples, 100 + i * 2 + (name == "dropped"))]
                p[name] = sel
                wanted.update(ids.take(pa.array(sel, pa.int64())).to_pylist())
            if _is_duplicate_stage(t, self.stages[i] if i < len(self.stages) else {}):
                pairs = _duplicate_pairs(t, 4, self._rng(300 + i))
                p["pairs"] = pairs
                for a, b in pairs:
                    wanted.update(ids.take(pa.array([a, b], pa.int64())).to_pylist())
            elif "cluster" in t.column_names and _find_embeddings(self.out, i, self.stages[i]["name"]
                                                                  if i < len(self.stages) else "") is None \
                    and "embedding" not in t.column_names:
                # no stored embeddings: the projection falls back to hashed TF-IDF of sampled texts
                sel = self._pick(len(ids), min(self.max_points, 1500), 400 + i)
                p["proj_rows"] = sel
                wanted.update(ids.take(pa.array(sel, pa.int64())).to_pylist())
            self.plan[i] = p
        return wanted

    # -- render --------------------------------------------------------------------------------
    def render(self) -> str:
        wanted = self._plan()
        have_input = self.corpus.load(wanted)
        if not have_input:
            self.notes.append(f"Document lengths, texts and labels are not shown: {self.corpus.error}.")
        if not self.side:
            self.notes.append("No scores/ sidecar in this output (run with output.scores: true): score "
                              "distributions, sample documents and cluster plots are not shown.")
        parts = [self._section("summary", "Summary", self._summary),
                 self._section("funnel", "Funnel", self._funnel)]
        if self.label:
            parts.append(self._section("composition", f"Composition by {self.label}", self._composition))
        for i, st in enumerate(self.stages):
            if i == 0:
                continue
            parts.append(self._section(f"stage-{i}", f"Stage {i}: {st.get('name', '?')}",
                                       lambda i=i, st=st: self._stage(i, st)))
        nav = " ".join(f'<a href="#{a}">{_esc(t)}</a>' for a, t in self._toc)
        notes = "".join(_note(n) for n in self.notes)
        title = f"shardsift report: {os.path.basename(self.out)}"
        return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
                f"<title>{_esc(title)}</title><style>{CSS}</style></head><body>"
                f"<h1>{_esc(title)}</h1><p class=\"small\">{_esc(self.out)} &middot; shardsift "
                f"{_esc(self.m.get('shardsift_version', '?'))} &middot; run {_esc(self.m.get('created', '?'))}"
                f" &middot; report {_esc(time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()))}</p>"
                f"<nav>{nav}</nav>{notes}{''.join(parts)}</body></html>\n")

    def _section(self, anchor: str, title: str, fn) -> str:
        self._toc.append((anchor, title))
        try:
            body = fn()
        except Exception as err:  # noqa: BLE001 - one broken section must not lose the page
            body = _note(f"this section could not be drawn: {type(err).__name__}: {err}")
        return f'<section id="{_esc(anchor)}"><h2>{_esc(title)}</h2>{body}</section>'

    def _summary(self) -> str:
        m = self.m
        cfg = m.get("config") or {}
        inp = cfg.get("input") or {}
        rows = [
            ["documents", _num(m.get("docs_in", 0)), _num(m.get("docs_kept", 0)),
             _pct(m.get("docs_kept", 0), m.get("docs_in", 0))],
            ["tokens (whitespace words)", _num(m.get("tokens_in", 0)), _num(m.get("tokens_kept", 0)),
             _pct(m.get("tokens_kept", 0), m.get("tokens_in", 0))],
            ["bytes", _num(m.get("bytes_in", 0)), _num(m.get("bytes_kept", 0)),
             _pct(m.get("bytes_kept", 0), m.get("bytes_in", 0))],
        ]
        out = _table(rows, ["", "in", "kept", "kept share"])
        info = [["input", json.dumps(inp.get("path"))], ["seed", _num(cfg.get("seed", "-"))],
                ["workers", _num(cfg.get("workers", "-"))], ["executor", cfg.get("executor", "-")],
                ["wall s / cpu s / peak MB",
                 f"{m.get('wall_s', 0):.2f} / {m.get('cpu_s', 0):.2f} / {m.get('peak_rss_mb', 0):.0f}"],
                ["output files", _num(len((m.get("output") or {}).get("files") or []))]]
        out += _table(info)
        head = ["#", "stage", "selector", "in", "kept", "dropped", "why dropped", "wall s", "cpu s", "peak MB"]
        rows = []
        for i, st in enumerate(self.stages):
            d = st.get("dropped") or {}
            why = ", ".join(f"{k} {v:,}" for k, v in sorted(d.items(), key=lambda kv: -kv[1]))
            rows.append([i, st.get("name", "?"), st.get("selector", ""), _num(st.get("docs_in", 0)),
                         _num(st.get("kept", 0)), _num(sum(d.values())), why, f"{st.get('wall_s', 0):.2f}",
                         f"{st.get('cpu_s', 0):.2f}", f"{st.get('peak_rss_mb', 0):.0f}"])
        w = m.get("write") or {}
        rows.append(["", "write", "", "", _num(m.get("docs_kept", 0)), "", "", f"{w.get('wall_s', 0):.2f}",
                     f"{w.get('cpu_s', 0):.2f}", ""])
        return out + _table(rows, head)

    # -- funnel ------------------------------------------------------------------------------
    def _stage_tokens(self) -> list[tuple[int, int]] | None:
        """(tokens in, tokens kept) per manifest stage: from the manifest when it records them, else
        from the sidecar's kept ids and the input's lengths."""
        alive = self._alive_after()
        if alive is not None and self.corpus.n_words is not None \
                and not all("tokens_kept" in st for st in self.stages):
            words = self.corpus.words_of(self.decisions.column("id"))
            if not (words < 0).any():
                tin = int(words.sum())
                out = []
                for a in alive:
                    kept = int(words[a].sum())
                    out.append((tin, kept))
                    tin = kept
                return out
        out = []
        for i, st in enumerate(self.stages):
            if "tokens_in" in st and "tokens_kept" in st:
                out.append((int(st["tokens_in"]), int(st["tokens_kept"])))
            elif i == 0 and self.corpus.n_words is not None:
                out.append((int(self.m.get("tokens_in", 0)), int(self.corpus.n_words.sum())))
            elif i in self.side and self.corpus.n_words is not None:
                t = self.side[i]
                words = self._words(i)
                kept = np.asarray(t.column("kept").to_numpy(zero_copy_only=False), dtype=bool)
                if (words < 0).any():
                    return None
                out.append((int(words.sum()), int(words[kept].sum())))
            else:
                return None
        return out

    def _alive_after(self) -> list[np.ndarray] | None:
        """From decisions/: for each manifest stage, which input documents survive it."""
        if self.decisions is None:
            return None
        st = np.asarray(self.decisions.column("stage").to_numpy(zero_copy_only=False))
        return [(st == -1) | (st > i) for i in range(len(self.stages))]

    def _words(self, i: int) -> np.ndarray:
        t = self.side[i]
        if "n_words" in t.column_names:
            return np.asarray(t.column("n_words").to_numpy(zero_copy_only=False), dtype=np.int64)
        if "_words" not in self.plan.setdefault(i, {}):
            self.plan[i]["_words"] = self.corpus.words_of(t.column("id").combine_chunks()) \
                if self.corpus.n_words is not None else np.full(t.num_rows, -1, np.int64)
        return self.plan[i]["_words"]

    def _funnel(self) -> str:
        plt = _plt()
        names = ["input"] + [st.get("name", "?") for st in self.stages]
        docs = [self.m.get("docs_in", 0)] + [st.get("kept", 0) for st in self.stages]
        toks = self._stage_tokens()
        tok_series = None
        if toks is not None:
            tok_series = [self.m.get("tokens_in", 0)] + [k for _, k in toks]
        if self.stages and not sum((self.stages[0].get("dropped") or {}).values()):
            # the read step dropped nothing (no null texts, no duplicate ids): one bar, not two
            names.pop(1)
            docs.pop(1)
            if tok_series:
                tok_series.pop(1)
        ncols = 2 if tok_series else 1
        fig, axes = plt.subplots(1, ncols, figsize=(5.2 * ncols + 1, 0.45 * len(names) + 1.6), squeeze=False)
        for ax, vals, what in zip(axes[0], [docs, tok_series], ["documents", "tokens (whitespace words)"]):
            if vals is None:
                continue
            y = np.arange(len(names))[::-1]
            ax.barh(y, vals, color=["#777"] + [KEPT_C] * (len(vals) - 1))
            ax.set_yticks(y, [f"after {n}" if j else n for j, n in enumerate(names)])
            for yy, v in zip(y, vals):
                ax.text(v, yy, f" {v:,} ({_pct(v, vals[0])})", va="center", fontsize=8)
            ax.set_xlim(0, max(vals + [1]) * 1.35)
            ax.set_title(what)
        rows = []
        for j, n in enumerate(names):
            r = [n if j == 0 else f"after {n}", _num(docs[j]), _pct(docs[j], docs[0])]
            if tok_series:
                r += [_num(tok_series[j]), _pct(tok_series[j], tok_series[0])]
            rows.append(r)
        head = ["", "documents", "share"] + (["tokens", "share"] if tok_series else [])
        note = "" if tok_series else _note("tokens per stage need the scores/ sidecar and a readable input; "
                                           "only the totals are known: "
                                           f"{_num(self.m.get('tokens_in', 0))} in, "
                                           f"{_num(self.m.get('tokens_kept', 0))} kept")
        return f'<div class="funnel">{_png(fig)}{_table(rows, head)}{note}</div>'

    # -- composition -------------------------------------------------------------------------
    def _composition(self) -> str:
        plt = _plt()
        lab = self.label
        series: list[tuple[str, dict]] = []
        alive = self._alive_after()
        if self.corpus.labels is not None and alive is not None:
            series.append(("input", _counts(self.corpus.labels)))
            labels = self.corpus.labels_of(self.decisions.column("id"))
            for i in range(1, len(self.stages)):
                series.append((f"after {self.stages[i].get('name')}", _counts(labels.filter(pa.array(alive[i])))))
        elif self.corpus.labels is not None:
            series.append(("input", _counts(self.corpus.labels)))
            for i in sorted(self.side):
                if i == 0 or i >= len(self.stages):
                    continue
                t = self.side[i]
                kept = np.asarray(t.column("kept").to_numpy(zero_copy_only=False), dtype=bool)
                ids = t.column("id").combine_chunks().filter(pa.array(kept))
                labels = self.corpus.labels_of(ids)
                if labels is not None:
                    series.append((f"after {self.stages[i].get('name')}", _counts(labels)))
        out_t = output_ids(self.out, self.m, [lab])
        if lab in out_t.column_names:
            series.append(("output", _counts(out_t.column(lab))))
        if not series:
            return _note(f"no column {lab!r} in the input or output")
        keys = sorted({k for _, c in series for k in c}, key=lambda k: -series[0][1].get(k, 0))
        if len(keys) > MAX_LABELS:
            return _note(f"column {lab!r} has {len(keys)} values; composition is shown for at most {MAX_LABELS}")
        shown = series if len(series) <= 3 else [series[0], series[-1]]
        fig, axes = plt.subplots(1, 2, figsize=(12, 0.22 * len(keys) * len(shown) + 1.8))
        width = 0.8 / len(shown)
        y = np.arange(len(keys))
        cmap = plt.get_cmap("viridis")
        for s, (name, c) in enumerate(shown):
            name = "before (input)" if s == 0 and name == "input" else name
            name = "after (output)" if name == "output" else name
            cnt = np.array([c.get(k, 0) for k in keys], dtype=float)
            color = "#777" if s == 0 else (KEPT_C if s == len(shown) - 1 else cmap(s / len(shown)))
            axes[0].barh(y + s * width, cnt, height=width, label=name, color=color)
            axes[1].barh(y + s * width, 100 * cnt / max(cnt.sum(), 1), height=width, label=name, color=color)
        for ax, what in zip(axes, ["documents", "share of documents (%)"]):
            ax.set_yticks(y + width * (len(shown) - 1) / 2, [str(k) for k in keys])
            ax.invert_yaxis()
            ax.set_xlabel(what)
        axes[1].legend(fontsize=8, loc="lower right")
        head = [lab] + [n for n, _ in series]
        rows = []
        for k in keys:
            r = [k]
            for _, c in series:
                tot = sum(c.values())
                r.append(f"{c.get(k, 0):,} ({_pct(c.get(k, 0), tot)})")
            rows.append(r)
        return _png(fig) + _table(rows, head)

    # -- one stage ---------------------------------------------------------------------------
    def _stage(self, i: int, st: dict) -> str:
        parts = []
        d = st.get("dropped") or {}
        parts.append(f"<p><b>{_esc(st.get('selector', ''))}</b>: {_num(st.get('docs_in', 0))} in, "
                     f"<span class=\"kept\">{_num(st.get('kept', 0))} kept</span> "
                     f"({_pct(st.get('kept', 0), st.get('docs_in', 0))}), "
                     f"<span class=\"dropped\">{_num(sum(d.values()))} dropped</span>"
                     + (" (" + ", ".join(f"{_esc(k)} {v:,}" for k, v in d.items()) + ")" if d else "")
                     + f"; wall {st.get('wall_s', 0):.2f} s, cpu {st.get('cpu_s', 0):.2f} s, "
                       f"peak {st.get('peak_rss_mb', 0):.0f} MB</p>")
        metrics = st.get("metrics") or {}
        params = st.get("params") or {}
        plots, wide = [], []
        t = self.side.get(i)
        dup = t is not None and _is_duplicate_stage(t, st)
        if t is not None:
            plots.append(self._safe(lambda: self._score_hist(i, st, t, cut=not dup)))
            if not dup:
                plots.append(self._safe(lambda: self._score_vs_length(i, st, t)))
        plots.append(self._safe(lambda: self._top_keys(metrics)))
        plots.append(self._safe(lambda: self._classifier(metrics)))
        if t is not None and "cluster" in t.column_names:
            if dup:
                plots.append(self._safe(lambda: self._dup_hist(t, metrics)))
            else:
                plots.append(self._safe(lambda: self._cluster_bars(t, metrics)))
                wide.append(self._safe(lambda: self._projection(i, st, t)))
        elif "cluster_sizes_before" in metrics:
            plots.append(self._safe(lambda: self._cluster_bars(None, metrics)))
        plots = [p for p in plots if p]
        if plots:
            parts.append('<div class="grid">' + "".join(f"<div>{p}</div>" for p in plots) + "</div>")
        parts.extend(p for p in wide if p)
        if t is not None and "pairs" in self.plan.get(i, {}):
            parts.append(self._safe(lambda: self._pairs(i, st, t)))
        if t is not None:
            parts.append(self._safe(lambda: self._samples(i, t)))
        elif i not in self.side:
            parts.append(_note("no scores sidecar for this stage"))
        flat = list(_flat(metrics))
        if flat:
            parts.append("<details open><summary>metrics</summary>" + _table([list(r) for r in flat]) + "</details>")
        if params:
            parts.append("<details><summary>parameters</summary>"
                         + _table([[k, json.dumps(v, default=str)] for k, v in params.items()]) + "</details>")
        return "".join(parts)

    @staticmethod
    def _safe(fn) -> str:
        try:
            return fn() or ""
        except Exception as err:  # noqa: BLE001
            return _note(f"plot not drawn: {type(err).__name__}: {err}")

    def _score_hist(self, i, st, t, cut: bool = True) -> str:
        score = np.asarray(t.column("score").to_numpy(zero_copy_only=False), dtype=np.float64)
        kept = np.asarray(t.column("kept").to_numpy(zero_copy_only=False), dtype=bool)
        ok = np.isfinite(score)
        if ok.sum() < 2 or np.ptp(score[ok]) == 0:
            return ""
        plt = _plt()
        fig, ax = plt.subplots(figsize=(5.6, 3.4))
        lo, hi = np.quantile(score[ok], [0.0, 1.0])
        bins = np.linspace(lo, hi, 50)
        ax.hist([score[ok & kept], score[ok & ~kept]], bins=bins, stacked=True, histtype="stepfilled",
                color=[KEPT_C, DROP_C],
                label=[f"kept ({int((ok & kept).sum()):,})", f"dropped ({int((ok & ~kept).sum()):,})"])
        at, how = _cut(score[ok], kept[ok], st.get("metrics") or {}) if cut else (None, "")
        if at is not None:
            ax.axvline(at, color="k", ls="--", lw=1.2, label=f"cut: {how}")
        ax.set_xlabel(_score_name(st))
        ax.set_ylabel("documents")
        ax.set_title("score distribution")
        ax.legend(fontsize=8)
        return _png(fig)

    def _score_vs_length(self, i, st, t) -> str:
        score = np.asarray(t.column("score").to_numpy(zero_copy_only=False), dtype=np.float64)
        words = self._words(i)
        ok = np.isfinite(score) & (words >= 0)
        if ok.sum() < 2 or np.ptp(score[ok]) == 0 or np.allclose(score[ok], words[ok]):
            return ""  # nothing to show (e.g. the length filter's score *is* the length)
        kept = np.asarray(t.column("kept").to_numpy(zero_copy_only=False), dtype=bool)
        idx = np.flatnonzero(ok)
        idx = idx[self._pick(len(idx), self.max_points, 500 + i)]
        plt = _plt()
        fig, ax = plt.subplots(figsize=(5.6, 3.4))
        for mask, c, lab in ((~kept[idx], DROP_C, "dropped"), (kept[idx], KEPT_C, "kept")):
            ax.scatter(np.maximum(words[idx][mask], 1), score[idx][mask], s=5, alpha=0.5, c=c, label=lab,
                       linewidths=0)
        ax.set_xscale("log")
        from matplotlib.ticker import NullFormatter

        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("document length (whitespace words, log)")
        ax.set_ylabel(_score_name(st))
        r = np.corrcoef(np.log(np.maximum(words[ok], 1)), score[ok])[0, 1] if ok.sum() > 2 else np.nan
        ax.set_title(f"{_score_name(st)} vs length (r = {r:.2f})", fontsize=10)
        ax.legend(fontsize=8, markerscale=3)
        return _png(fig)

    def _top_keys(self, metrics) -> str:
        top = metrics.get("top_keys")
        if not isinstance(top, list) or not top or not all(isinstance(x, dict) for x in top):
            return ""
        keys = [str(x.get("key", "?")) for x in top]
        est = np.array([float(x.get("estimate", np.nan) or 0.0) for x in top])
        plt = _plt()
        fig, ax = plt.subplots(figsize=(5.6, 0.3 * len(keys) + 1.4))
        y = np.arange(len(keys))
        ax.barh(y, est, color=[KEPT_C if e >= 0 else DROP_C for e in est])
        ax.set_yticks(y, keys)
        ax.invert_yaxis()
        ax.set_xlabel("correlation estimate")
        ax.set_title("top keys by correlation")
        cols = sorted({k for x in top for k in x if k != "key"})
        rows = [[x.get("key")] + [_num(x.get(c, "-")) for c in cols] for x in top]
        return _png(fig) + _table(rows, ["key"] + cols)

    def _classifier(self, metrics) -> str:
        flat = scalar_metrics(metrics)
        keys = [k for k in flat if re.search(r"(precision|recall|accuracy|f1)$", k)]
        if not keys:
            return ""
        plt = _plt()
        fig, ax = plt.subplots(figsize=(4.6, 0.4 * len(keys) + 1.3))
        vals = [flat[k] for k in keys]
        y = np.arange(len(keys))
        ax.barh(y, vals, color="#4c72b0")
        ax.set_yticks(y, keys)
        ax.set_xlim(0, 1.05)
        ax.invert_yaxis()
        for yy, v in zip(y, vals):
            ax.text(v, yy, f" {v:.3f}", va="center", fontsize=8)
        ax.set_title("classifier quality (held out)")
        return _png(fig)

    def _dup_hist(self, t, metrics) -> str:
        cl = np.asarray(t.column("cluster").to_numpy(zero_copy_only=False))
        if cl.ndim != 1:
            return ""
        sizes = np.unique(cl, return_counts=True)[1]
        dup = sizes[sizes >= 2]
        if len(dup) == 0:
            return _note("no duplicate clusters in this stage")
        plt = _plt()
        fig, ax = plt.subplots(figsize=(5.6, 3.4))
        top = int(dup.max())
        bins = np.arange(2, top + 2) - 0.5 if top <= 40 else np.unique(np.geomspace(2, top + 1, 30).astype(int))
        ax.hist(dup, bins=bins, color="#4c72b0")
        ax.set_yscale("log")
        if top > 40:
            ax.set_xscale("log")
        ax.set_xlabel("cluster size (documents)")
        ax.set_ylabel("clusters (log)")
        summary = f"{len(dup):,} duplicate clusters, {int(dup.sum()):,} documents, largest {top:,}"
        ax.set_title(summary)
        return _png(fig) + f'<p class="small">{_esc(summary)}</p>'


    def _cluster_bars(self, t, metrics) -> str:
        before = metrics.get("cluster_sizes_before")
        after = metrics.get("cluster_sizes_after")
        if not (isinstance(before, list) and isinstance(after, list) and len(before) == len(after)):
            if t is None:
                return ""
            cl = np.asarray(t.column("cluster").to_numpy(zero_copy_only=False)).astype(np.int64)
            kept = np.asarray(t.column("kept").to_numpy(zero_copy_only=False), dtype=bool)
            u, inv = np.unique(cl, return_inverse=True)
            if len(u) > 2000:
                return ""
            before = np.bincount(inv, minlength=len(u))
            after = np.bincount(inv[kept], minlength=len(u))
        before, after = np.asarray(before, float), np.asarray(after, float)
        order = np.argsort(-before, kind="stable")
        plt = _plt()
        fig, ax = plt.subplots(figsize=(5.6, 3.4))
        x = np.arange(len(order))
        ax.bar(x, before[order], color="#bbb", label=f"before ({int(before.sum()):,})", width=0.85)
        ax.bar(x, after[order], color=KEPT_C, label=f"after ({int(after.sum()):,})", width=0.5)
        if len(order) <= 30:
            ax.set_xticks(x, [str(c) for c in order], fontsize=7)
        ax.set_xlabel(f"cluster (by size before; {len(order)} clusters)")
        ax.set_ylabel("documents")
        ax.set_title("cluster sizes before / after")
        ax.legend(fontsize=8)
        return _png(fig)

    def _projection(self, i, st, t) -> str:
        kept = np.asarray(t.column("kept").to_numpy(zero_copy_only=False), dtype=bool)
        cl = np.asarray(t.column("cluster").to_numpy(zero_copy_only=False)).astype(np.int64)
        what = ""
        xy = rows = None
        if "embedding" in t.column_names:
            rows = self._pick(t.num_rows, self.max_points, 600 + i)
            emb = np.asarray(t.column("embedding").take(pa.array(rows)).to_pylist(), dtype=np.float32)
            xy, what = _pca2(emb), "PCA of the stage's embeddings (sidecar)"
        else:
            found = _find_embeddings(self.out, i, st.get("name", ""))
            if found is not None:
                emb_by_id = found
                ids = t.column("id").combine_chunks().cast(pa.string())
                pos = np.asarray(pc.index_in(ids, value_set=emb_by_id[0]).fill_null(-1)
                                 .to_numpy(zero_copy_only=False), np.int64)
                have = np.flatnonzero(pos >= 0)
                rows = have[self._pick(len(have), self.max_points, 600 + i)]
                xy = _pca2(emb_by_id[1][pos[rows]].astype(np.float32))
                what = "PCA of the stage's embeddings (work dir)"
            elif "proj_rows" in self.plan.get(i, {}) and self.corpus.texts:
                rows0 = self.plan[i]["proj_rows"]
                ids = t.column("id").combine_chunks().cast(pa.string()).take(pa.array(rows0)).to_pylist()
                ok = [j for j, x in enumerate(ids) if x in self.corpus.texts]
                if len(ok) >= 3:
                    rows = rows0[ok]
                    xy = _tfidf2([self.corpus.texts[ids[j]] for j in ok], self.seed)
                    what = ("2-D SVD of hashed TF-IDF of sampled texts (the stage's embeddings were not "
                            "found: keep OUTPUT/.work or store an 'embedding' sidecar column)")
        if xy is None:
            return ""
        plt = _plt()
        fig, axes = plt.subplots(1, 2, figsize=(11, 4.6), sharex=True, sharey=True)
        k = kept[rows]
        axes[0].scatter(xy[~k, 0], xy[~k, 1], s=6, c=DROP_C, alpha=0.5, linewidths=0,
                        label=f"dropped ({int((~k).sum()):,})")
        axes[0].scatter(xy[k, 0], xy[k, 1], s=6, c=KEPT_C, alpha=0.7, linewidths=0, label=f"kept ({int(k.sum()):,})")
        axes[0].legend(fontsize=8, markerscale=3)
        axes[0].set_title("kept / dropped")
        axes[1].scatter(xy[:, 0], xy[:, 1], s=6, c=cl[rows] % 20, cmap="tab20", alpha=0.7, linewidths=0)
        axes[1].set_title("cluster")
        fig.suptitle(f"{st.get('name')}: {what}", fontsize=10)
        return _png(fig)

    def _text(self, doc_id: str) -> str:
        t = self.corpus.texts.get(doc_id)
        if t is None:
            return "(text not available)"
        s = t[:TEXT_CHARS]
        return s + ("..." if len(t) > TEXT_CHARS else "")

    def _pairs(self, i, st, t) -> str:
        pairs = self.plan[i]["pairs"]
        if not pairs:
            return ""
        ids = t.column("id").combine_chunks().cast(pa.string())
        score = np.asarray(t.column("score").to_numpy(zero_copy_only=False), dtype=np.float64)
        params = st.get("params") or {}
        n = int(params.get("ngram", 5) or 5) if str(params.get("shingle", "word")) == "word" else 5
        rows = []
        for a, b in pairs:
            ia, ib = ids[a].as_py(), ids[b].as_py()
            ta, tb = self.corpus.texts.get(ia), self.corpus.texts.get(ib)
            jac = _jaccard(ta, tb, n) if ta is not None and tb is not None else None
            rows.append(f"<tr><td>{_esc(ia)}<br><span class=\"kept\">kept</span></td><td>{_esc(self._text(ia))}</td>"
                        f"<td>{_esc(ib)}<br><span class=\"dropped\">dropped</span></td><td>{_esc(self._text(ib))}"
                        f"</td><td class=\"num\">{'-' if jac is None else f'{jac:.3f}'}</td>"
                        f"<td class=\"num\">{_num(score[b]) if np.isfinite(score[b]) else '-'}</td></tr>")
        head = ("<tr><th>kept id</th><th>kept text</th><th>dropped id</th><th>dropped text</th>"
                f"<th>Jaccard ({n}-word shingles, recomputed)</th><th>stage score</th></tr>")
        return f"<h3>sample duplicate pairs</h3><table class=\"docs\">{head}{''.join(rows)}</table>"

    def _samples(self, i, t) -> str:
        p = self.plan.get(i, {})
        ids = t.column("id").combine_chunks().cast(pa.string())
        score = np.asarray(t.column("score").to_numpy(zero_copy_only=False), dtype=np.float64)
        reason = t.column("reason").to_pylist() if "reason" in t.column_names else [None] * t.num_rows
        out = []
        for name in ("kept", "dropped"):
            sel = p.get(name, [])
            if len(sel) == 0:
                continue
            rows = []
            for j in sel:
                doc_id = ids[int(j)].as_py()
                rows.append(f"<tr><td>{_esc(doc_id)}</td><td class=\"num\">"
                            f"{_num(score[j]) if np.isfinite(score[j]) else '-'}</td>"
                            f"<td>{_esc(reason[j] or '')}</td><td>{_esc(self._text(doc_id))}</td></tr>")
            out.append(f"<h3>sample {name} documents</h3><table class=\"docs\"><tr><th>id</th><th>score</th>"
                       f"<th>reason</th><th>first {TEXT_CHARS} characters</th></tr>{''.join(rows)}</table>")
        return "".join(out)


# -- data helpers --------------------------------------------------------------------------------

def _counts(values) -> dict:
    """{label: count} of an Arrow array (nulls as "(null)")."""
    arr = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    arr = arr.cast(pa.string()).fill_null("(null)")
    vc = pc.value_counts(arr)
    return {str(k): int(c) for k, c in zip(vc.field("values").to_pylist(), vc.field("counts").to_pylist())}


def _score_name(st: dict) -> str:
    sel = str(st.get("selector", "")) + " " + str(st.get("name", ""))
    if "dsir" in sel.lower():
        return "log importance weight"
    if "minhash" in sel.lower():
        return "best Jaccard to a duplicate"
    if "kmeans" in sel.lower() or "semdedup" in sel.lower():
        return "distance to centroid"
    if "perplexity" in sel.lower():
        return "include probability"
    return "score"


def _cut(score: np.ndarray, kept: np.ndarray, metrics: dict) -> tuple[float | None, str]:
    """Where the stage cut the scores: a threshold metric, or the boundary when kept and dropped
    scores do not overlap. None for a sampled selection (kept and dropped scores interleave)."""
    for key in CUT_METRICS:
        v = metrics.get(key)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v):
            return float(v), f"{key} = {v:.4g}"
    if kept.all() or not kept.any():
        return None, ""
    ks, ds = score[kept], score[~kept]
    if ks.min() >= ds.max():
        return (float(ks.min()) + float(ds.max())) / 2, f"kept >= {ks.min():.4g} > dropped"
    if ks.max() <= ds.min():
        return (float(ks.max()) + float(ds.min())) / 2, f"kept <= {ks.max():.4g} < dropped"
    return None, ""


def _is_duplicate_stage(t: pa.Table, st: dict) -> bool:
    if "cluster" not in t.column_names:
        return False
    if "cluster_size" in t.column_names:
        return True
    reasons = set((st.get("dropped") or {}).keys())
    return any("dup" in r for r in reasons)


def _duplicate_pairs(t: pa.Table, k: int, rng) -> list[tuple[int, int]]:
    """Up to k (kept, dropped) row pairs from distinct duplicate clusters."""
    cl = np.asarray(t.column("cluster").to_numpy(zero_copy_only=False))
    kept = np.asarray(t.column("kept").to_numpy(zero_copy_only=False), dtype=bool)
    if cl.ndim != 1 or not len(cl):
        return []
    dropped = np.flatnonzero(~kept)
    if not len(dropped):
        return []
    # the survivor of each cluster (the first kept member)
    kept_rows = np.flatnonzero(kept)
    u, first = np.unique(cl[kept_rows], return_index=True)
    surv_of = dict(zip(u.tolist(), kept_rows[first].tolist()))
    dcl = cl[dropped]
    ok = np.array([c in surv_of for c in dcl.tolist()], dtype=bool)
    dropped, dcl = dropped[ok], dcl[ok]
    if not len(dropped):
        return []
    uc, firstd = np.unique(dcl, return_index=True)
    choice = rng.permutation(len(uc))[:k]
    return [(surv_of[uc[c].item()], int(dropped[firstd[c]])) for c in sorted(choice)]


_PUNCT = re.compile(r"[!-/:-@\[-`{-~]")


def _jaccard(a: str, b: str, n: int) -> float:
    def sh(s):
        w = _PUNCT.sub("", s.lower()).split()
        if len(w) < n:
            return {tuple(w)}
        return {tuple(w[j:j + n]) for j in range(len(w) - n + 1)}

    x, y = sh(a), sh(b)
    return len(x & y) / max(len(x | y), 1)


def _pca2(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    x = x - x.mean(axis=0, keepdims=True)
    if x.shape[0] < 2 or x.shape[1] < 2:
        return np.c_[x[:, :1], np.zeros(len(x))] if x.shape[1] else np.zeros((len(x), 2))
    u, s, _ = np.linalg.svd(x, full_matrices=False)
    return u[:, :2] * s[:2]


def _tfidf2(texts: list[str], seed: int) -> np.ndarray:
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import HashingVectorizer, TfidfTransformer

    x = HashingVectorizer(n_features=2**16, alternate_sign=False, norm=None).transform(texts)
    x = TfidfTransformer().fit_transform(x)
    return TruncatedSVD(n_components=2, random_state=seed).fit_transform(x)


def _find_embeddings(out: str, i: int, name: str):
    """(ids, embeddings) of stage i from the work dir's score files, when the run kept them: the
    stage's newest finished directory OUTPUT/.work/stages/{i-1:02d}-NAME-*/scores-*.npz with an
    ``embedding`` array; ids come from the scan's id order. None when absent."""
    work = os.path.join(out, ".work", "stages")
    if not os.path.isdir(work) or i < 1:
        return None
    dirs = [d for d in glob.glob(os.path.join(work, f"{i - 1:02d}-{_safe(name)}-*"))
            if os.path.exists(os.path.join(d, "done.json"))]
    if not dirs:
        return None
    d = max(dirs, key=os.path.getmtime)
    files = sorted(glob.glob(os.path.join(d, "scores-*.npz")))
    if not files:
        return None
    try:
        with np.load(files[0], allow_pickle=False) as z:
            if "embedding" not in z.files:
                return None
    except Exception:  # noqa: BLE001
        return None
    return _embeddings_with_ids(out, files)


def _embeddings_with_ids(out: str, files: list[str]):
    """Join score files (per input shard j: rows + embedding) to ids through the sidecar-free path:
    the scan records no ids, so read ids from the input named in the manifest."""
    manifest = load_manifest(out)
    inp = _input_config(manifest)
    if inp is None:
        return None
    from .io import iter_tables, normalize, resolve_shards

    shards = resolve_shards(inp["path"], inp.get("format", "auto"), inp.get("storage_options") or {})
    ids_all, embs = [], []
    for f in files:
        j = int(re.search(r"scores-(\d+)\.npz$", f).group(1))
        with np.load(f, allow_pickle=False) as z:
            rows, emb = z["row"], z["embedding"]
        if j >= len(shards) or not len(rows):
            continue
        sh = shards[j]
        parts, start = [], 0
        id_col = inp.get("id_column", "id")
        for tbl in iter_tables(sh, [id_col], int(inp.get("batch_size", 8192))):
            tbl, _ = normalize(tbl, sh, inp.get("text_column", "text"), id_col, start, need_text=False)
            parts.append(tbl.column(id_col).combine_chunks().cast(pa.string()))
            start += tbl.num_rows
        ids = pa.concat_arrays(parts)
        ids_all.append(ids.take(pa.array(rows.astype(np.int64))))
        embs.append(np.asarray(emb))
    if not ids_all:
        return None
    return pa.concat_arrays(ids_all), np.concatenate(embs)
