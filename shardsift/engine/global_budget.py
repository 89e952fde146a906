"""Exact global budget selection in passes of shard tasks, the driver holding summaries only.

A selector whose decide is "rank by a per-document value, keep by a budget" (``Selector.budget()``)
is decided here instead of over every document's scores in the driver. Each document's place in
the ranking is a 128-bit key, (rank as an order-preserving uint64, tie key), then its (shard,
position) as numpy's stable lexsort has it: highest rank first, a NaN rank lowest, equal ranks by
lower tie key. Shard tasks build histograms of the key's next ``BITS`` bits among the documents
under a prefix; the driver merges them (O(bins)), finds the bin where the cut falls (by count for
``keep``/``n``, by cumulative tokens for ``tokens``), and narrows the prefix to it until the bin
holds at most ``FETCH_MAX`` documents; those alone come back to the driver, which resolves the
exact cut. A ``threshold`` is a cut by value and needs no pass. Last, per-shard tasks write the
keep files from the cut. Every histogram and fetch is a file in the stage's work folder, so a run
killed between tasks resumes where it stopped and writes the same bytes.
"""
from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..api import Scores, count_to_keep
from ..errors import ConfigError
from ..io import storage
from . import faults, workdir
from .shards import annotate_only, decision_arrays, load_selector, task_stats, usage, write_keep

BITS = 12                          # histogram bins per pass: 2**BITS
FETCH_MAX = 1 << 16                # documents of the cut's bin the driver reads back, at most
_PER_WORD = -(-64 // BITS)         # levels per 64-bit key word
_LEVELS = 2 * _PER_WORD            # rank word, then tie word
_ONES = (1 << 64) - 1
_SIGN = np.uint64(1 << 63)


def rank_keys(rank: np.ndarray) -> np.ndarray:
    """uint64 keys whose ascending order is ``rank``'s descending order, a NaN last; -0.0 is 0.0."""
    v = np.asarray(rank, dtype=np.float64) + 0.0
    b = v.view(np.uint64)
    up = np.where(b & _SIGN, ~b, b | _SIGN)  # ascending with the value
    key = ~up
    key[np.isnan(v)] = np.uint64(_ONES)
    return key


def _level(level: int) -> tuple[int, int, int]:
    """(word, shift, width) of a level's bits: word 0 is the rank key, 1 the tie key."""
    hi = 64 - BITS * (level % _PER_WORD)
    width = min(BITS, hi)
    return level // _PER_WORD, hi - width, width


def _extend(prefix: tuple, level: int, b: int) -> tuple:
    """The prefix (mask and value per word) narrowed to bin ``b`` of ``level``."""
    word, shift, width = _level(level)
    masks, vals = list(prefix[0]), list(prefix[1])
    masks[word] |= ((1 << width) - 1) << shift
    vals[word] |= int(b) << shift
    return tuple(masks), tuple(vals)


_ALL = ((0, 0), (0, 0))


@dataclass
class BudgetTask:
    """One shard's pass: ``hist`` (bins of a level under a prefix), ``fetch`` (the documents under a
    prefix) or ``write`` (the keep file from the cut)."""

    what: str
    index: int
    scores_path: str
    selector_path: str
    out_path: str
    stage_label: str
    point: str
    prefix: tuple = _ALL
    level: int = 0
    cut: tuple | None = None   # (rank key, tie, shard, position, inclusive), or None: keep none
    drop: bool = True
    stage_name: str = ""
    pct_path: str | None = None  # the shard's percentile ranks (Budget.percentiles), once computed
    pct_stages: tuple = ()       # (stage key, stage folder) of each
    peers: tuple = ()            # (index, scores path) of every shard of the stage
    shard: Any = None            # the ShardContext (write: Selector.budget_decision reads documents back)


    @property
    def label(self):
        return f"{self.stage_label}: budget {self.what} shard {self.index}"


def _aligned(stage_dir: str, j: int, rows: np.ndarray) -> np.ndarray:
    """An earlier stage's score of these rows of shard j (its keep file lists rows ascending)."""
    z = workdir.read_npz(os.path.join(stage_dir, f"keep-{j:05d}.npz"), ["row", "score"])
    return np.asarray(z["score"][np.searchsorted(z["row"], rows)], dtype=np.float64)


def _percentiles(task: BudgetTask) -> None:
    """The shard's percentile ranks of each stage's score among every shard's documents of this
    stage (budget.percentile_ranks, exactly): counts below and equal from each shard in turn."""
    rows = workdir.read_npz(task.scores_path, ["row"])["row"]
    out = {}
    for k, (_, stage_dir) in enumerate(task.pct_stages):
        mine = _aligned(stage_dir, task.index, rows) if len(rows) else np.zeros(0)
        ok = ~np.isnan(mine)
        below, equal, total = np.zeros(int(ok.sum()), np.int64), np.zeros(int(ok.sum()), np.int64), 0
        for i, path in task.peers:  # one other shard's values in memory at a time
            peer_rows = workdir.read_npz(path, ["row"])["row"]
            if not len(peer_rows):
                continue
            theirs = _aligned(stage_dir, i, peer_rows)
            theirs = np.sort(theirs[~np.isnan(theirs)])
            lo = np.searchsorted(theirs, mine[ok], side="left")
            below += lo
            equal += np.searchsorted(theirs, mine[ok], side="right") - lo
            total += len(theirs)
        p = np.zeros(len(rows), np.float64)
        p[ok] = (below + (equal + 1) / 2.0) / total
        out[f"p{k}"] = p
    workdir.write_npz(task.pct_path, out)


def _keys(task: BudgetTask):
    cols = workdir.read_npz(task.scores_path)
    if task.pct_stages:
        pct = workdir.read_npz(task.pct_path)
        cols.update({f"percentile:{key}": pct[f"p{k}"] for k, (key, _) in enumerate(task.pct_stages)})
    n = len(cols["row"])
    sel = load_selector(task.selector_path)
    if not n:
        z = np.zeros(0, np.uint64)
        return sel, cols, z, z, np.zeros(0, np.float64)
    rank, tie, score = sel.budget_rank(Scores(cols, np.array([0, n]), [str(task.index)]))
    if len(rank) != n or len(tie) != n or len(score) != n:
        raise ValueError(f"{task.stage_label}: budget_rank must return {n} values per array")
    return sel, cols, rank_keys(rank), np.asarray(tie, dtype=np.uint64), np.asarray(score, dtype=np.float64)


def _under(keys: tuple, prefix: tuple) -> np.ndarray:
    m = np.ones(len(keys[0]), bool)
    for word in (0, 1):
        if prefix[0][word]:
            m &= (keys[word] & np.uint64(prefix[0][word])) == np.uint64(prefix[1][word])
    return m


def run_budget(task: BudgetTask) -> tuple[dict | None, dict]:
    """(one shard's pass, the task's CPU and memory figures); its result is a file, so a resumed run
    skips it."""
    t0, before = time.perf_counter(), usage()
    return _pass(task), task_stats(before, t0)


def _pass(task: BudgetTask) -> dict | None:
    if task.what != "write" and storage.exists(task.out_path):
        return None
    if task.what == "pct":
        _percentiles(task)
        faults.point(task.point)
        return None
    sel, cols, k1, tie, score = _keys(task)
    tokens = np.asarray(cols["n_tokens"] if "n_tokens" in cols else cols["n_words"], dtype=np.int64)
    if task.what == "hist":
        word, shift, width = _level(task.level)
        m = _under((k1, tie), task.prefix)
        b = (((k1, tie)[word][m] >> np.uint64(shift)) & np.uint64((1 << width) - 1)).astype(np.intp)
        counts = np.bincount(b, minlength=1 << width).astype(np.int64)
        toks = np.bincount(b, weights=tokens[m], minlength=1 << width)  # exact below 2**53 a bin
        nz = np.flatnonzero(counts)  # the bins in use: skewed values fill few of them
        nan = int((k1 == np.uint64(_ONES)).sum()) if task.level == 0 else 0  # NaN ranks: the all-ones key
        workdir.write_npz(task.out_path, {"bin": nz, "count": counts[nz], "tokens": toks[nz].astype(np.int64),
                                          "nan": np.int64(nan)})
    elif task.what == "fetch":
        pos = np.flatnonzero(_under((k1, tie), task.prefix))
        workdir.write_npz(task.out_path, {"k1": k1[pos], "tie": tie[pos], "pos": pos.astype(np.int64),
                                          "tokens": tokens[pos], "score": score[pos]})
    else:
        return _write(task, sel, cols, k1, tie, score, tokens)
    faults.point(task.point)
    return None


def _write(task, sel, cols, k1, tie, score, tokens) -> dict:
    """The shard's keep file from the cut, and its part of the summary."""
    n = len(k1)
    keep = np.zeros(n, bool)
    if task.cut is not None and n:
        c1, c2, cs, cp, inclusive = task.cut
        c1, c2 = np.uint64(c1), np.uint64(c2)
        pos = np.arange(n)
        same_doc = (pos < cp) | ((pos == cp) & inclusive) if task.index == cs else (task.index < cs)
        keep = (k1 < c1) | ((k1 == c1) & ((tie < c2) | ((tie == c2) & same_doc)))
    if not sel.budget().nan_kept:
        keep &= k1 != np.uint64(_ONES)
    dec = sel.budget_decision(Scores(cols, np.array([0, n]), [str(task.index)]), keep, score, task.shard)
    keep = dec.keep
    sums = dict(dec.metrics or {})
    if not task.drop:
        dec = annotate_only(dec)
    write_keep(task.out_path, decision_arrays(cols, dec, sel.display_name(), task.stage_name))
    faults.point(task.point)
    last = None
    if keep.any():
        i = np.flatnonzero(keep)
        j = i[np.lexsort((i, tie[i], k1[i]))[-1]]
        last = (int(k1[j]), int(tie[j]), task.index, int(j), float(score[j]))
    return {"docs": n, "kept": int(keep.sum()), "kept_tokens": int(tokens[keep].sum()),
            "score_sum": float(np.sum(score)), "score_sum_kept": float(np.sum(score[keep])),
            "score_min_kept": float(np.min(score[keep])) if keep.any() else None, "last": last, "sums": sums}


class BudgetDecide:
    """The driver's side: passes of shard tasks, summaries merged, the exact cut resolved."""

    def __init__(self, runner, sel, st, stage_dir: str, tasks: list, keep_paths: list):
        self.runner, self.sel, self.st, self.dir = runner, sel, st, stage_dir
        self.mine = [t for t in tasks if not t.passthrough]  # another source's shard wrote its keep file
        self.keep_paths = keep_paths
        self.tag = os.path.basename(stage_dir)[:2]
        self.label = tasks[0].stage_label if tasks else st.name
        self.sel_path = os.path.join(stage_dir, "selector.pkl")
        self.work = os.path.join(stage_dir, "budget")
        storage.makedirs(self.work)
        self.pct_stages = tuple(self._earlier_stage(key) for key in sel.budget().percentiles)
        self.peers = tuple((t.ctx.index, t.scores_path) for t in self.mine)
        self.stats: list[dict] = []  # each pass task's CPU and memory

    def _earlier_stage(self, key) -> tuple:
        """(key, folder) of an earlier stage named by ``Budget.percentiles``; a ConfigError otherwise."""
        earlier = self.runner._earlier
        names = [n for n, _ in earlier]
        if isinstance(key, int) and 1 <= key <= len(names):
            return key, earlier[key - 1][1]
        if key in names:
            return key, earlier[len(names) - 1 - names[::-1].index(key)][1]  # the latest of that name
        param = self.sel.budget().percentiles_param
        raise ConfigError(f"{self.sel.display_name()}{'.' + param if param else ''}: no earlier stage {key!r}; "
                          f"earlier stages: {', '.join(map(str, names)) or 'none'}")

    def _tasks(self, what: str, prefix=_ALL, level=0, cut=None) -> list[BudgetTask]:
        tag = hashlib.sha1(repr((prefix, level)).encode()).hexdigest()[:12]
        out = []
        for t in self.mine:
            j = t.ctx.index
            shard = t.ctx if what == "write" else None
            if what == "write":
                path, point = self.keep_paths[j], f"decide:{self.tag}:{j}"
            elif what == "pct":
                path, point = os.path.join(self.work, f"pct-{j:05d}.npz"), f"budget:{self.tag}:pct:{j}"
            else:
                path = os.path.join(self.work, f"{what}-{level:02d}-{tag}-{j:05d}.npz")
                point = f"budget:{self.tag}:{what}:{level}:{j}"
            pct = os.path.join(self.work, f"pct-{j:05d}.npz") if self.pct_stages else None
            out.append(BudgetTask(what, j, t.scores_path, self.sel_path, path, self.label, point, prefix, level,
                                  cut, self.st.drop, self.st.name, pct, self.pct_stages,
                                  self.peers if what == "pct" else (), shard))
        return out

    def _map(self, tasks: list[BudgetTask]) -> list:
        out = self.runner.executor.map(run_budget, tasks, desc=f"{self.label}: budget {tasks[0].what}"
                                       if tasks else "", progress=self.runner.progress)
        self.stats += [st for _, st in out]  # the stage's accounting
        return [res for res, _ in out]

    def _hist(self, prefix, level) -> tuple[np.ndarray, np.ndarray, int]:
        """(count, tokens) per bin of ``level`` under ``prefix``, and the NaN ranks (level 0 only)."""
        tasks = self._tasks("hist", prefix, level)
        self._map(tasks)
        width = _level(level)[2]
        count, toks, nan = np.zeros(1 << width, np.int64), np.zeros(1 << width, np.int64), 0
        for t in tasks:  # one shard's histogram in memory at a time
            h = workdir.read_npz(t.out_path)
            count[h["bin"]] += h["count"]  # each bin once per file
            toks[h["bin"]] += h["tokens"]
            nan += int(h["nan"])
        return count, toks, nan

    def _fetch(self, prefix) -> dict:
        tasks = self._tasks("fetch", prefix, _LEVELS)
        self._map(tasks)
        parts = [(t.index, workdir.read_npz(t.out_path)) for t in tasks]
        got = {k: np.concatenate([p[k] for _, p in parts]) for k in ("k1", "tie", "pos", "tokens", "score")}
        got["shard"] = np.concatenate([np.full(len(p["pos"]), j, np.int64) for j, p in parts])
        order = np.lexsort((got["pos"], got["shard"], got["tie"], got["k1"]))
        return {k: v[order] for k, v in got.items()}

    def _cut(self) -> tuple | None:
        """The last document kept (inclusive) or the first dropped (exclusive), or None: keep none."""
        b = self.sel.budget()
        if b.threshold is not None:
            if np.isnan(b.threshold):
                return None
            return int(rank_keys(np.array([b.threshold]))[0]), _ONES, 1 << 62, 1 << 62, True
        prefix, level = _ALL, 0
        count, toks, nan = self._hist(prefix, level)
        total = int(count.sum())
        if not total:
            return None
        if b.tokens is not None:
            left = int(b.tokens)
            if int(toks.sum()) <= left:
                return _ONES, _ONES, 1 << 62, 1 << 62, True
        else:
            n = min(int(b.n), total) if (b.n is not None and b.clip_n) else None
            left = n if n is not None else count_to_keep(total, b.keep, b.n, self.sel.display_name())
            if not b.nan_kept and left > total - nan:
                raise ConfigError(b.short.format(k=left, available=total - nan, total=total))
            if left <= 0:
                return None
        while True:
            if b.tokens is not None:  # the first bin whose cumulative tokens pass what is left
                cum = np.cumsum(toks)
                k = int(np.searchsorted(cum, left, side="right"))
            else:  # the bin holding the left-th document
                cum = np.cumsum(count)
                k = int(np.searchsorted(cum, left, side="left"))
            left -= int(cum[k - 1]) if k else 0
            prefix, level, in_bin = _extend(prefix, level, k), level + 1, int(count[k])
            del count, toks, cum  # one level's histogram in memory at a time
            if in_bin <= FETCH_MAX or level == _LEVELS:
                break
            count, toks, _ = self._hist(prefix, level)
        got = self._fetch(prefix)
        if b.tokens is not None:
            i = int(np.searchsorted(np.cumsum(got["tokens"]), left, side="right"))  # < len: the bin overflows
            inclusive = False
        else:
            i, inclusive = left - 1, True
        return int(got["k1"][i]), int(got["tie"][i]), int(got["shard"][i]), int(got["pos"][i]), inclusive

    def run(self) -> dict:
        if self.pct_stages:  # the percentile ranks the rank reads, before any pass
            self._map(self._tasks("pct"))
        cut = self._cut()
        parts = self._map(self._tasks("write", cut=cut))
        kept = [p for p in parts if p["kept"]]
        last = max((p["last"] for p in kept), key=lambda x: x[:4], default=None)
        mins = [p["score_min_kept"] for p in kept]
        summary = {"docs": sum(p["docs"] for p in parts), "kept": sum(p["kept"] for p in parts),
                   "kept_tokens": sum(p["kept_tokens"] for p in parts),
                   "cut": last[4] if last else float("inf"),
                   "score_sum": float(sum(p["score_sum"] for p in parts)),
                   "score_sum_kept": float(sum(p["score_sum_kept"] for p in kept)),
                   "score_min_kept": float(np.min(mins)) if mins else None,
                   "sums": _add([p["sums"] for p in parts])}
        return self.sel.budget_metrics(summary)


def _add(parts: list[dict]) -> dict:
    """Each key's values summed over the shards (numbers or arrays)."""
    out: dict = {}
    for part in parts:
        for k, v in part.items():
            out[k] = out[k] + v if k in out else v
    return out
