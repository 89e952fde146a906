"""The sections of the page: summary, funnel, composition of the output, and one per stage with the
stage's score distribution, score against length, cluster plots, metrics and example documents."""
from __future__ import annotations

import json
import re

import numpy as np
import pyarrow as pa

from . import plots
from .data import (
    RunData,
    column,
    cut_of,
    is_duplicate_stage,
    scalar_metrics,
    score_meaning,
    value_counts,
)
from .html import esc, flat_metrics, note, num, pct, size, small, table
from .sampling import duplicate_pairs, pick, rng, sample_rows
from .summary import token_label

TEXT_CHARS = 300
MAX_LABELS = 40
NOT_STORED = "(text not in the output: only the documents kept by every stage are stored)"


def summary(run: RunData) -> str:
    m = run.manifest
    cfg = m.get("config") or {}
    rows = [[what, num(m.get(f"{key}_in", 0)), num(m.get(f"{key}_kept", 0)),
             pct(m.get(f"{key}_kept", 0), m.get(f"{key}_in", 0))]
            for what, key in (("documents", "docs"), (token_label(m), "tokens"), ("bytes", "bytes"))]
    out = table(rows, ["", "in", "kept", "kept share"])
    info = [["input", json.dumps((cfg.get("input") or {}).get("path"))], ["seed", num(cfg.get("seed", "-"))],
            ["workers", num(cfg.get("workers", "-"))], ["executor", cfg.get("executor", "-")],
            ["wall s / cpu s / peak MB",
             f"{m.get('wall_s', 0):.2f} / {m.get('cpu_s', 0):.2f} / {m.get('peak_rss_mb', 0):.0f}"],
            ["output files", num(len((m.get("output") or {}).get("files") or []))]]
    out += table(info)
    head = ["#", "stage", "selector", "in", "kept", "dropped", "why dropped", "wall s", "cpu s", "peak MB"]
    rows = []
    for i, st in enumerate(run.stages):
        d = st.get("dropped") or {}
        why = ", ".join(f"{k} {v:,}" for k, v in sorted(d.items(), key=lambda kv: -kv[1]))
        rows.append([i, st.get("name", "?"), st.get("selector", ""), num(st.get("docs_in", 0)),
                     num(st.get("kept", 0)), num(sum(d.values())), why, f"{st.get('wall_s', 0):.2f}",
                     f"{st.get('cpu_s', 0):.2f}", f"{st.get('peak_rss_mb', 0):.0f}"])
    w = m.get("write") or {}
    rows.append(["", "write", "", "", num(m.get("docs_kept", 0)), "", "", f"{w.get('wall_s', 0):.2f}",
                 f"{w.get('cpu_s', 0):.2f}", ""])
    return out + table(rows, head)


def sources(run: RunData) -> str:
    """A mixture's sources: documents and tokens read, after their stages, written; share and epochs."""
    from .summary import SOURCE_HEAD, source_rows

    out = table(source_rows(run.manifest), SOURCE_HEAD)
    short = [s["name"] for s in run.manifest.get("sources") or [] if s.get("short")]
    if short:
        out += note(f"too small for their share even repeated mix.max_epochs times: {', '.join(short)}")
    return out


def proxy_lm(run: RunData) -> str:
    """`shardsift eval --save`'s table: each compared output's bigram perplexity on the held-out
    target documents, this output's row marked."""
    res = run.eval_results()
    rows = [[f"{r['output']} (this output)" if i == res.get("this_output") else r["output"], num(r["words"]),
             num(r["docs"]), f"{r['perplexity']:.2f}", f"{100 * r['train_oov_rate']:.2f}%"]
            for i, r in enumerate(res["outputs"])]
    out = table(rows, ["output", "training words", "documents", "perplexity", "training OOV"])
    return out + small(f"Interpolated Kneser-Ney bigram models, each trained on an output's first "
                       f"{res['words']:,} words, scored on {res['heldout_docs']:,} held-out documents of "
                       f"{res['target']} ({res['heldout_words']:,} words, OOV {100 * res['oov_rate']:.2f}%); "
                       f"vocabulary: {res['vocab_size']:,} words of {res['vocabulary']}. Lower is closer to the "
                       "target. Written by `shardsift eval --save`.")


def funnel(run: RunData) -> str:
    """Documents and tokens (the run's unit) left after each stage, from the manifest's per-stage counts."""
    m, stages = run.manifest, run.stages
    names = ["input"] + [f"after {st.get('name', '?')}" for st in stages]
    docs = [int(m.get("docs_in", 0))] + [int(st.get("kept", 0)) for st in stages]
    toks = _words_after(m, stages)
    if stages and not sum((stages[0].get("dropped") or {}).values()):
        # reading dropped nothing (no null texts, no duplicate ids): one bar, not two
        for series in (names, docs, toks):
            if series:
                series.pop(1)
    unit = token_label(m)
    series = [("documents", docs)] + ([(unit, toks)] if toks else [])
    rows = [[n, num(docs[j]), pct(docs[j], docs[0])] + ([num(toks[j]), pct(toks[j], toks[0])] if toks else [])
            for j, n in enumerate(names)]
    head = ["", "documents", "share"] + ([unit, "share"] if toks else [])
    extra = "" if toks else note(f"the manifest has no per-stage {unit} counts; only the totals are known: "
                                 f"{num(m.get('tokens_in', 0))} in, {num(m.get('tokens_kept', 0))} kept")
    return f'<div class="funnel">{plots.funnel(names, series)}{table(rows, head)}{extra}</div>'


def _words_after(m: dict, stages: list[dict]) -> list[int] | None:
    """Tokens in the input and left after each stage: a stage's tokens_kept, else the next stage's
    tokens_in, else (the last stage) the output's; None when the manifest does not say."""
    out = [int(m.get("tokens_in", 0))]
    for i, st in enumerate(stages):
        if "tokens_kept" in st:
            out.append(int(st["tokens_kept"]))
        elif i + 1 < len(stages) and "tokens_in" in stages[i + 1]:
            out.append(int(stages[i + 1]["tokens_in"]))
        elif i + 1 == len(stages) and "tokens_kept" in m:
            out.append(int(m["tokens_kept"]))
        else:
            return None
    return out


def composition(run: RunData) -> str:
    """The output by label: documents and words per value of the label column."""
    lab = run.label
    t = run.kept_labels()
    if lab not in t.column_names:
        return note(f"the output has no column {lab!r}")
    docs = value_counts(t.column(lab))
    if len(docs) > MAX_LABELS:
        return note(f"column {lab!r} has {len(docs)} values; composition is shown for at most {MAX_LABELS}")
    keys = sorted(docs, key=lambda k: (-docs[k], k))
    series = [("documents", docs)]
    ids = t.column("id").combine_chunks()
    words_per_doc, _ = run.words_of(ids)
    words = {}
    if len(ids) and (words_per_doc >= 0).all():
        labels = t.column(lab).combine_chunks().cast(pa.string()).fill_null("(null)")
        sums = pa.table({"label": labels, "words": words_per_doc}).group_by("label").aggregate([("words", "sum")])
        words = dict(zip(sums.column("label").to_pylist(), sums.column("words_sum").to_pylist()))
        series.append(("words", words))
    rows = [[k, f"{docs[k]:,}", pct(docs[k], t.num_rows)]
            + ([f"{words.get(k, 0):,}", pct(words.get(k, 0), sum(words.values()))] if words else []) for k in keys]
    head = [lab, "output", "share"] + (["words", "share"] if words else [])
    why = note("The input's composition and the composition after each stage are not shown: the output "
               "stores the label of kept documents only.")
    return plots.composition(keys, series) + table(rows, head) + why


class StageSection:
    """One stage's section; plots are drawn from its scores sidecar when the output has one."""

    def __init__(self, run: RunData, i: int, samples: int, max_points: int, seed: int):
        self.run, self.i, self.st = run, i, run.stages[i]
        self.samples, self.max_points, self.seed = samples, max_points, seed
        self.t = run.scores.get(i)
        self.what, self.positive = score_meaning(self.st)

    def render(self) -> str:
        st, t = self.st, self.t
        d = st.get("dropped") or {}
        parts = [f"<p><b>{esc(st.get('selector', ''))}</b>: {num(st.get('docs_in', 0))} in, "
                 f"<span class=\"kept\">{num(st.get('kept', 0))} kept</span> "
                 f"({pct(st.get('kept', 0), st.get('docs_in', 0))}), "
                 f"<span class=\"dropped\">{num(sum(d.values()))} dropped</span>"
                 + (" (" + ", ".join(f"{esc(k)} {v:,}" for k, v in d.items()) + ")" if d else "")
                 + f"; wall {st.get('wall_s', 0):.2f} s, cpu {st.get('cpu_s', 0):.2f} s, "
                   f"peak {st.get('peak_rss_mb', 0):.0f} MB. Score: {esc(self.what)}.</p>"]
        metrics = st.get("metrics") or {}
        dup = t is not None and is_duplicate_stage(t, st)
        grid, wide = [], []
        if t is not None:
            grid.append(_safe(lambda: self.score_hist(cut=not dup)))
            if not dup:
                grid.append(_safe(self.score_vs_length))
        grid.append(_safe(lambda: _top_keys(metrics)))
        grid.append(_safe(lambda: _classifier(metrics)))
        if t is not None and "cluster" in t.column_names:
            if dup:
                grid.append(_safe(self.duplicate_sizes))
            else:
                grid.append(_safe(lambda: self.cluster_sizes(metrics)))
                wide.append(_safe(self.projection))
        elif isinstance(metrics.get("cluster_sizes_before"), list):
            grid.append(_safe(lambda: self.cluster_sizes(metrics)))
        grid = [p for p in grid if p]
        if grid:
            parts.append('<div class="grid">' + "".join(f"<div>{p}</div>" for p in grid) + "</div>")
        parts.extend(p for p in wide if p)
        if t is not None:
            if dup:
                parts.append(_safe(self.pairs))
            parts.append(_safe(self.examples))
        else:
            parts.append(note("no scores sidecar for this stage"))
        fitted = self.run.models_of(st.get("name", ""))
        if fitted:
            parts.append("<p>fitted models in the output: " + ", ".join(
                f"{esc(k)} (<code>{esc(rel)}</code>, {size(n)})" for k, rel, n in fitted) + "</p>")
        flat = list(flat_metrics(metrics))
        if flat:
            state = " open" if len(flat) <= 12 else ""
            parts.append(f"<details{state}><summary>metrics ({len(flat)})</summary>" + table([list(r) for r in flat])
                         + "</details>")
        params = st.get("params") or {}
        if params:
            parts.append("<details><summary>parameters</summary>"
                         + table([[k, json.dumps(v, default=str)] for k, v in params.items()]) + "</details>")
        return "".join(parts)

    # -- plots ------------------------------------------------------------------------------------
    def score_hist(self, cut: bool) -> str:
        score = column(self.t, "score", np.float64)
        kept = column(self.t, "kept", bool)
        aside = ""
        if not cut and "cluster_size" in self.t.column_names:
            # a duplicate stage: documents without a duplicate would fill one bar at 0
            in_cluster = column(self.t, "cluster_size", np.int64) >= 2
            if (~in_cluster).any() and in_cluster.sum() >= 2:
                aside = f"{int((~in_cluster).sum()):,} documents without a duplicate (all kept) are not shown"
                score, kept = score[in_cluster], kept[in_cluster]
        ok = np.isfinite(score)
        at = cut_of(score[ok], kept[ok], self.st.get("metrics") or {}) if cut and ok.any() else (None, "")
        return plots.score_hist(score, kept, self.what, self.positive, at, aside)

    def score_vs_length(self) -> str:
        if self.i == self.run.length_stage():
            return ""  # the length filter's score is the length
        score = column(self.t, "score", np.float64)
        kept = column(self.t, "kept", bool)
        words, source = self.run.words_of(self.t.column("id").combine_chunks().cast(pa.string()))
        known = np.flatnonzero((words >= 0) & np.isfinite(score))
        if len(known) < 3:
            return note("document lengths of this stage's documents are not in the output (no length stage "
                        "with a scores sidecar, and dropped documents' texts are not stored)")
        rows = known[pick(len(known), self.max_points, rng(self.seed, 500 + self.i))]
        if len(known) < len(score):
            source += f"; {len(score) - len(known):,} documents of unknown length not shown"
        return plots.score_vs_length(words[rows], score[rows], kept[rows], self.what, self.positive, source)

    def duplicate_sizes(self) -> str:
        if "cluster_size" in self.t.column_names:
            cl = column(self.t, "cluster")
            size = column(self.t, "cluster_size", np.int64)
            _, first = np.unique(cl, return_index=True)
            sizes = size[first]
        else:
            sizes = np.unique(column(self.t, "cluster"), return_counts=True)[1]
        if not (sizes >= 2).any():
            return note("no duplicate clusters in this stage")
        name = "MinHash cluster size" if "minhash" in self.what.lower() else "duplicate cluster size"
        return plots.cluster_size_hist(sizes, name)

    def cluster_sizes(self, metrics: dict) -> str:
        before, after = metrics.get("cluster_sizes_before"), metrics.get("cluster_sizes_after")
        if not (isinstance(before, list) and isinstance(after, list) and len(before) == len(after)):
            if self.t is None:
                return ""
            cl = column(self.t, "cluster", np.int64)
            u, inv = np.unique(cl, return_inverse=True)
            if len(u) > 2000:
                return note(f"{len(u):,} clusters: too many to draw one bar each")
            before = np.bincount(inv, minlength=len(u))
            after = np.bincount(inv[column(self.t, "kept", bool)], minlength=len(u))
        return plots.cluster_bars(np.asarray(before, float), np.asarray(after, float))

    def projection(self) -> str:
        t = self.t
        if "embedding" not in t.column_names:
            return note("no projection of the documents: the scores sidecar of this stage has no "
                        "'embedding' column")
        rows = pick(t.num_rows, self.max_points, rng(self.seed, 600 + self.i))
        emb = np.asarray(t.column("embedding").take(pa.array(rows)).to_pylist(), dtype=np.float32)
        return plots.projection(plots.pca2(emb), column(t, "kept", bool)[rows], column(t, "cluster", np.int64)[rows],
                                f"{self.st.get('name')}: PCA of the stage's embeddings ({len(rows):,} documents)")

    # -- example documents ----------------------------------------------------------------------
    def _shown(self, doc_id: str) -> str:
        text = self.run.text(doc_id)
        if text is None:
            return NOT_STORED
        return text[:TEXT_CHARS] + ("..." if len(text) > TEXT_CHARS else "")

    def pairs(self) -> str:
        t = self.t
        ids = t.column("id").combine_chunks().cast(pa.string())
        chosen = duplicate_pairs(t, self.run.in_output(ids), 4, rng(self.seed, 300 + self.i))
        if not chosen:
            return ""
        score = column(t, "score", np.float64)
        self.run.fetch_texts(ids[a].as_py() for a, _ in chosen)
        rows = []
        for a, b in chosen:
            ia, ib = ids[a].as_py(), ids[b].as_py()
            rows.append(f"<tr><td>{esc(ia)}<br><span class=\"kept\">kept</span></td><td>{esc(self._shown(ia))}</td>"
                        f"<td>{esc(ib)}<br><span class=\"dropped\">dropped</span></td>"
                        f"<td class=\"num\">{num(score[b]) if np.isfinite(score[b]) else '-'}</td></tr>")
        head = (f"<tr><th>kept id</th><th>kept text (first {TEXT_CHARS} characters)</th><th>dropped id</th>"
                f"<th>{esc(self.what)}</th></tr>")
        return (f"<h3>sample duplicate pairs</h3><table class=\"docs\">{head}{''.join(rows)}</table>"
                + note("the dropped duplicate's text is not stored in the output"))

    def examples(self) -> str:
        t = self.t
        ids = t.column("id").combine_chunks().cast(pa.string())
        chosen = sample_rows(t, self.run.in_output(ids), self.samples, self.seed, self.i)
        score = column(t, "score", np.float64)
        reason = t.column("reason").to_pylist() if "reason" in t.column_names else [None] * t.num_rows
        self.run.fetch_texts(ids.take(pa.array(chosen["kept"], pa.int64())).to_pylist())
        out = []
        for name, rows in chosen.items():
            if not len(rows):
                continue
            body = []
            for j in rows.tolist():
                doc_id = ids[j].as_py()
                cells = [esc(doc_id), num(score[j]) if np.isfinite(score[j]) else "-", esc(reason[j] or "")]
                text = f"<td>{esc(self._shown(doc_id))}</td>" if name == "kept" else ""
                body.append(f"<tr><td>{cells[0]}</td><td class=\"num\">{cells[1]}</td><td>{cells[2]}</td>{text}</tr>")
            head = (f"<tr><th>id</th><th>{esc(self.what)}</th><th>reason</th>"
                    + (f"<th>first {TEXT_CHARS} characters</th>" if name == "kept" else "") + "</tr>")
            out.append(f"<h3>sample {name} documents</h3><table class=\"docs\">{head}{''.join(body)}</table>")
        if len(chosen["dropped"]):
            out.append(note("dropped documents' texts are not stored in the output; `shardsift explain OUTPUT ID` "
                            "says what happened to one"))
        return "".join(out)


def _top_keys(metrics: dict) -> str:
    top = metrics.get("top_keys")
    if not isinstance(top, list) or not top or not all(isinstance(x, dict) for x in top):
        return ""
    cols = sorted({k for x in top for k in x if k != "key"})
    rows = [[x.get("key")] + [num(x.get(c, "-")) for c in cols] for x in top]
    return plots.top_keys(top) + table(rows, ["key"] + cols)


def _classifier(metrics: dict) -> str:
    flat = scalar_metrics(metrics)
    quality = {k: v for k, v in flat.items() if re.search(r"(precision|recall|accuracy|f1)$", k)}
    return plots.classifier(quality) if quality else ""


def _safe(fn) -> str:
    """A plot, or a note saying why it could not be drawn: one broken plot must not lose the page."""
    try:
        return fn() or ""
    except Exception as err:  # noqa: BLE001
        return note(f"plot not drawn: {type(err).__name__}: {err}")
