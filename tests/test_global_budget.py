"""Budget selection in shard tasks (engine/global_budget.py) equals budget.select in the driver,
byte for byte; the driver holds no per-document array; a run killed between its tasks resumes to
the same bytes."""
import glob
import os
import sys
import tracemalloc

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from conftest import ROOT, file_digests, run_cli

from shardsift.api import Scores
from shardsift.engine import global_budget, workdir
from shardsift.engine.config import parse_config
from shardsift.engine.runner import Runner, run_pipeline
from shardsift.selectors.budget import rank, select

TESTS = os.path.dirname(os.path.abspath(__file__))
PLUGIN = "budget_plugins:BudgetValue"
OUTPUTS = ("data", ".shardsift/decisions", ".shardsift/scores")
if TESTS not in sys.path:
    sys.path.insert(0, TESTS)


def corpus(folder, n_docs, n_shards, seed=0, n_values=7, nan_share=0.05, text=True):
    """Shards of documents whose value ``v`` takes a few distinct values (many ties), some NaN or
    null, and whose texts have 1-40 words."""
    rng = np.random.default_rng(seed)
    os.makedirs(folder, exist_ok=True)
    v = rng.integers(0, n_values, n_docs) / max(1, n_values - 1)
    v[rng.random(n_docs) < nan_share] = np.nan
    null = rng.random(n_docs) < nan_share / 2
    words = rng.integers(1, 41, n_docs)
    w = np.where(rng.random(n_docs) < nan_share, np.nan, rng.integers(0, 5, n_docs) / 4)
    vocab = np.array(["alpha", "beta", "gamma", "delta"])
    bounds = np.linspace(0, n_docs, n_shards + 1).astype(int)
    for j, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
        texts = [" ".join(vocab[np.arange(w) % 4]) for w in words[a:b]] if text else ["x"] * (b - a)
        tbl = pa.table({"id": [f"doc-{i}" for i in range(a, b)], "text": texts,
                        "v": pa.array(v[a:b], mask=null[a:b]), "w": w[a:b]})
        pq.write_table(tbl, os.path.join(folder, f"part-{j:05d}.parquet"))
    return int(words.sum())


def cfg(inp, out, stage, workers=1, drop=True):
    params = {**stage, **({} if drop else {"drop": False})}
    return {"input": {"path": str(inp)}, "output": {"path": str(out), "scores": True}, "workers": workers,
            "seed": 5, "stages": [{PLUGIN: params}]}


def both(tmp_path, inp, stage, workers, drop=True):
    """Run the stage in the driver and in tasks; return their manifests."""
    mans = []
    for in_tasks in (False, True):
        out = tmp_path / f"out-{in_tasks}-{workers}-{drop}"
        mans.append(run_pipeline(cfg(inp, out, {**stage, "in_tasks": in_tasks}, workers, drop), progress=False))
    driver, tasks = (tmp_path / f"out-{x}-{workers}-{drop}" for x in (False, True))
    for k in OUTPUTS:
        a, b = file_digests(driver / k), file_digests(tasks / k)
        assert a and a == b, f"{stage}: {k} differs between the driver's decide and the tasks'"
    return mans


BUDGETS = [{"keep": 0.37}, {"n": 123}, {"n": 10 ** 9}, {"n": 0}, {"tokens": 9_000}, {"tokens": 10 ** 12},
           {"threshold": 0.5}, {"keep": 0.3, "mode": "sample"}, {"tokens": 7_000, "mode": "sample", "temperature": 0.3}]


@pytest.mark.parametrize("stage", BUDGETS, ids=lambda s: "-".join(f"{k}={v}" for k, v in s.items()))
@pytest.mark.parametrize("n_shards,workers", [(1, 1), (6, 1), (6, 2)])
def test_tasks_equal_budget_select(tmp_path, stage, n_shards, workers):
    inp = tmp_path / "in"
    corpus(inp, 1500, n_shards)
    driver, tasks = both(tmp_path, inp, stage, workers)
    a, b = driver["stages"][-1], tasks["stages"][-1]
    assert (a["kept"], a["dropped"], a["tokens_kept"]) == (b["kept"], b["dropped"], b["tokens_kept"])
    assert b["metrics"]["kept"] == b["kept"] and b["metrics"]["kept_tokens"] == b["tokens_kept"]
    if "keep" in stage:
        assert b["kept"] == round(stage["keep"] * 1500)
    if stage.get("mode") != "sample" and b["kept"] and "threshold" not in stage:
        assert b["metrics"]["cut"] == a["metrics"]["cut"] or np.isnan(a["metrics"]["cut"])


def test_kept_set_is_budget_select_itself(tmp_path):
    """The kept ids equal budget.select over the whole corpus computed here, not only the driver's run."""
    inp = tmp_path / "in"
    corpus(inp, 2000, 4, seed=3, n_values=3)
    out = tmp_path / "out"
    man = run_pipeline(cfg(inp, out, {"tokens": 8_000}, workers=2), progress=False)
    tbl = pa.concat_tables([pq.read_table(p) for p in sorted(glob.glob(str(inp / "*.parquet")))])
    from shardsift.columns import hash_strings

    v = tbl.column("v").to_numpy(zero_copy_only=False).astype(np.float64)
    words = np.array([len(t.split()) for t in tbl.column("text").to_pylist()])
    seed = _stage_seed(out)
    assert man["stages"][-1]["kept"] == len(got := sorted(pq.read_table(str(out / "data")).column("id").to_pylist()))
    mask, _ = select(v, hash_strings(tbl.column("id").combine_chunks()), words, seed, tokens=8_000)
    want = sorted(np.array(tbl.column("id").to_pylist())[mask])
    assert got == want and 0 < len(got) < 2000


def _stage_seed(out):
    pkl = glob.glob(str(out / ".work" / "stages" / "*" / "selector.pkl"))[0]
    return workdir.read_pickle(pkl).seed_


@pytest.mark.parametrize("stage", [{"n": 400}, {"tokens": 5_000}, {"keep": 0.5, "mode": "sample"}])
def test_narrowing_through_every_level(tmp_path, monkeypatch, stage):
    """With a tiny fetch limit the cut's bin is narrowed level by level (with two values, through
    the rank key's bits into the tie key's); the result is still budget.select's."""
    monkeypatch.setattr(global_budget, "FETCH_MAX", 3)  # the driver's limit: the tasks do not read it
    inp = tmp_path / "in"
    corpus(inp, 1000, 3, seed=1, n_values=2, nan_share=0.2)
    both(tmp_path, inp, stage, workers=1)
    hists = glob.glob(str(tmp_path / "out-True-1-True" / ".work" / "stages" / "*" / "budget" / "hist-*"))
    levels = {os.path.basename(h)[5:7] for h in hists}
    if stage.get("mode") == "sample":  # Gumbel noise makes the ranks distinct: the rank key's bits suffice
        assert len(levels) > 1
    else:  # two values: every rank bit is shared, the narrowing goes on into the tie key
        assert len(levels) > global_budget._PER_WORD


def test_annotate_only_same_bytes(tmp_path):
    inp = tmp_path / "in"
    corpus(inp, 1200, 3)
    driver, tasks = both(tmp_path, inp, {"keep": 0.25}, workers=1, drop=False)
    assert tasks["stages"][-1]["kept"] == 1200 and tasks["stages"][-1]["metrics"]["kept"] == 300


def test_rank_keys_order_is_lexsort():
    rng = np.random.default_rng(0)
    v = rng.choice([np.nan, -np.inf, np.inf, -0.0, 0.0, 1.5, -2.25, 1e-300, -1e-300], 5000)
    tie = rng.integers(0, 50, 5000).astype(np.uint64)
    want = np.lexsort((tie, -v))  # NaN last, -0.0 equal to 0.0, as lexsort has them
    got = np.lexsort((tie, global_budget.rank_keys(v)))
    assert np.array_equal(got, want)


class MeasuredRunner(Runner):
    """Records the peak Python allocation of the global decide (tracemalloc), in this process only."""

    def _global_decide(self, *a):
        tracemalloc.start()
        try:
            out = super()._global_decide(*a)
            self.decide_peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        return out


def test_driver_holds_no_per_document_array(tmp_path):
    n = 200_000
    inp = tmp_path / "in"
    corpus(inp, n, 20, n_values=1_000_000, nan_share=0.01, text=False)
    peaks = {}
    for in_tasks in (False, True):
        r = MeasuredRunner(parse_config(cfg(inp, tmp_path / f"o{in_tasks}", {"keep": 0.3, "in_tasks": in_tasks}, 2)))
        r.run()
        peaks[in_tasks] = r.decide_peak
    assert peaks[False] > 8 * n  # the driver's decide holds every document's scores
    # in tasks: a few histograms of 2**BITS bins and the cut's bin, whatever the number of documents
    assert peaks[True] < 8 * n / 3 and peaks[True] * 25 < peaks[False], peaks
    assert file_digests(tmp_path / "oFalse" / "data") == file_digests(tmp_path / "oTrue" / "data")


def _combine_cfg(inp, out):
    stages = [{PLUGIN: {"n": 10 ** 9, "drop": False}}, {"budget_plugins:WScore": {}},
              {"combine": {"weights": {PLUGIN: 1, "2": -1}, "keep": 0.3, "mode": "sample"}}]
    return {**cfg(inp, out, {}, workers=2), "stages": stages}


@pytest.mark.parametrize("which", ["tokens", "combine"])
def test_kill_and_resume_at_budget_tasks(tmp_path, which):
    inp = tmp_path / "in"
    corpus(inp, 3000, 4, seed=2)
    make = (lambda out: cfg(inp, out, {"tokens": 20_000}, workers=2)) if which == "tokens" else (
        lambda out: _combine_cfg(inp, out))
    env = {"PYTHONPATH": os.pathsep.join([ROOT, TESTS])}
    ref = tmp_path / "ref"
    (tmp_path / "ref.yaml").write_text(yaml.safe_dump(make(ref)))
    log = tmp_path / "points.log"
    run_cli("select", tmp_path / "ref.yaml", "--quiet", env={**env, "SHARDSIFT_LIST_POINTS": str(log)})
    last = "00" if which == "tokens" else "02"
    points = [p for p in dict.fromkeys(log.read_text().split()) if p.startswith((f"budget:{last}", f"decide:{last}"))]
    kinds = {p.split(":")[2] if p.startswith("budget") else "write" for p in points}
    assert kinds == ({"hist", "fetch", "write"} | ({"pct"} if which == "combine" else set())), points
    want = {k: file_digests(ref / k) for k in OUTPUTS}
    for n, point in enumerate(points[:: max(1, len(points) // 6)]):
        out = tmp_path / f"out{n}"
        c = tmp_path / f"c{n}.yaml"
        c.write_text(yaml.safe_dump(make(out)))
        killed = run_cli("select", c, "--quiet", env={**env, "SHARDSIFT_KILL_AT": point}, check=False)
        assert killed.returncode != 0, f"kill point {point} not reached"
        run_cli("select", c, "--quiet", env=env)
        for k, dig in want.items():
            assert file_digests(out / k) == dig, f"{k} differs after a kill at {point}"


def test_quality_classifier_in_tasks_equals_its_decide(tmp_path):
    """quality_classifier opts in: its kept set in tasks is its own in-driver decide over the
    stage's scores (read back from the work dir)."""
    from test_quality_classifier import POOL, POSITIVES, SMALL, _write

    _write(tmp_path / "pool", POOL, 4)
    _write(tmp_path / "pos", POSITIVES, 1)
    for i, budget in enumerate(({"keep": 0.2}, {"tokens": 3000}, {"n": 50, "mode": "sample"}, {"threshold": 0.4})):
        out = tmp_path / f"out{i}"
        stage = {"positives": {"path": str(tmp_path / "pos")}, **budget, **SMALL}
        man = run_pipeline({"input": {"path": str(tmp_path / "pool")}, "output": {"path": str(out)},
                            "workers": 2, "seed": 3, "stages": [{"quality_classifier": stage}]}, progress=False)
        d = glob.glob(str(out / ".work" / "stages" / "*"))[0]
        sel = workdir.read_pickle(os.path.join(d, "selector.pkl"))
        parts = [workdir.read_npz(p) for p in sorted(glob.glob(os.path.join(d, "scores-*.npz")))]
        cols = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        offs = np.concatenate([[0], np.cumsum([len(p["row"]) for p in parts])])
        want = sel.decide(Scores(cols, offs, [str(j) for j in range(len(parts))]))
        got = np.concatenate([workdir.read_npz(p)["keep"] for p in sorted(glob.glob(os.path.join(d, "keep-*.npz")))])
        assert np.array_equal(got, want.keep) and 0 < got.sum() < len(got), budget
        m = man["stages"][-1]["metrics"]
        assert m["selected"] == want.metrics["selected"] and m["min_score_selected"] == want.metrics["min_score_selected"]
        assert m["mean_score_all"] == pytest.approx(want.metrics["mean_score_all"], rel=1e-12)


def test_rank_is_what_select_sorts():
    """budget.rank is the order budget.select applies (the hook's contract for combine-like selectors)."""
    rng = np.random.default_rng(4)
    v = rng.integers(0, 4, 3000).astype(float)
    v[::17] = np.nan
    ids = rng.integers(0, 2 ** 63, 3000).astype(np.uint64)
    for mode in ("topk", "sample"):
        r, tie = rank(v, ids, 9, mode=mode, temperature=0.5)
        order = np.lexsort((tie, global_budget.rank_keys(r)))
        mask, _ = select(v, ids, np.ones(3000), 9, n=700, mode=mode, temperature=0.5)
        assert np.array_equal(np.sort(order[:700]), np.flatnonzero(mask))


COMBINE = [{"keep": 0.4}, {"n": 300}, {"tokens": 6_000}, {"threshold": 0.55}, {"keep": 0.3, "mode": "sample"}]


@pytest.mark.parametrize("budget", COMBINE, ids=lambda s: "-".join(f"{k}={v}" for k, v in s.items()))
@pytest.mark.parametrize("n_shards,workers", [(1, 1), (4, 2)])
def test_combine_in_tasks_equals_its_decide(tmp_path, budget, n_shards, workers):
    """combine opts in: its percentile ranks and cut computed in tasks keep the same documents, with
    the same combined scores, as its decide over every document (budget_plugins.CombineInDriver)."""
    inp = tmp_path / "in"
    corpus(inp, 1200, n_shards, seed=7, n_values=4, nan_share=0.1)
    firsts = [{PLUGIN: {"n": 10 ** 9, "drop": False}}, {"budget_plugins:WScore": {}}]
    weights = {PLUGIN: 1, "2": -2}
    mans = {}
    for name in ("combine", "budget_plugins:CombineInDriver"):
        out = tmp_path / name.replace(":", "_")
        mans[name] = run_pipeline({"input": {"path": str(inp)}, "output": {"path": str(out), "scores": True},
                                   "workers": workers, "seed": 2,
                                   "stages": firsts + [{name: {"weights": weights, **budget}}]}, progress=False)
    a, b = (tmp_path / n.replace(":", "_") for n in mans)
    assert file_digests(a / "data") == file_digests(b / "data")
    sa, sb = (mans[n]["stages"][-1] for n in mans)
    assert (sa["kept"], sa["dropped"]) == (sb["kept"], sb["dropped"]) and 0 < sa["kept"] < 1200
    assert sa["metrics"] == sb["metrics"]
    side = [pq.read_table(glob.glob(str(d / ".shardsift" / "scores" / "stage-03-*.parquet"))[0]).drop(["stage"])
            for d in (a, b)]  # the stage column names the stage: combine vs the reference's class
    assert side[0].equals(side[1]) and side[0].num_rows == 1200


def test_combine_unknown_stage_is_one_config_error(tmp_path):
    from shardsift.errors import ConfigError

    inp = tmp_path / "in"
    corpus(inp, 100, 1)
    with pytest.raises(ConfigError, match=r"combine.weights: no earlier stage 'dsir'; earlier stages: budget_plugins"):
        run_pipeline({"input": {"path": str(inp)}, "output": {"path": str(tmp_path / "o")},
                      "stages": [{PLUGIN: {"n": 10, "drop": False}}, {"combine": {"weights": {"dsir": 1}, "keep": 0.5}}]},
                     progress=False)
