"""The dedup selectors decided as tasks (``decide_sharded``: partitions, buckets, verification and
the keep files in tasks, the driver holding no per-document array) give the driver decide's keep
files byte for byte, for any worker count and partition count, and resume exactly after a kill."""
import glob
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from conftest import run_cli
from dedup_fakes import edit, random_doc

from shardsift.engine import workdir
from shardsift.engine.runner import run_pipeline

TESTS = os.path.dirname(os.path.abspath(__file__))


def _corpus(folder, seed=0):
    """Five shards: originals, near duplicates and exact copies across shards (some with a numeric
    ``q`` column that a keep policy can read), short documents, a shard an earlier stage empties."""
    rng = np.random.default_rng(seed)
    origs = [" ".join(random_doc(rng, int(rng.integers(40, 200)))) for _ in range(120)]
    shards = [list(origs[:60]), list(origs[60:]), [], [], ["tiny"] * 4]
    for k, o in enumerate(origs):
        w = o.split()
        kind = k % 5
        d = (" ".join(edit(rng, w, 0.01)) if kind == 0 else o if kind == 1 else o.upper() if kind == 2
             else " ".join(edit(rng, w, 0.15)) if kind == 3 else " ".join(edit(rng, w, 0.04)))
        shards[2 + k % 2].append(d)
    shards[3] += ["", "two words", "three short words", origs[5], origs[5], origs[7]]
    os.makedirs(folder, exist_ok=True)
    for i, texts in enumerate(shards):
        q = rng.integers(0, 5, len(texts)).astype(np.float64)
        q[::7] = np.nan
        pq.write_table(pa.table({"id": [f"d{i}-{k}" for k in range(len(texts))], "text": texts,
                                 "q": pa.array(q, pa.float64()).fill_null(0.0)}),
                       os.path.join(folder, f"part-{i:05d}.parquet"))


def keep_files(out, stage: int = 1) -> dict:
    """Every array of a stage's keep files (by its 0-based position; here the stage after ``length``)."""
    files = sorted(glob.glob(os.path.join(out, ".work", "stages", f"{stage:02d}-*", "keep-*.npz")))
    assert files, f"no keep files under {out}"
    return {os.path.basename(f): workdir.read_npz(f) for f in files}


def same_arrays(a: dict, b: dict):
    assert a.keys() == b.keys()
    for name in a:
        assert list(a[name]) == list(b[name]), name
        for k in a[name]:
            x, y = a[name][k], b[name][k]
            assert x.dtype == y.dtype and x.shape == y.shape, (name, k, x.dtype, y.dtype)
            assert np.array_equal(x, y, equal_nan=x.dtype.kind == "f"), (name, k)


def tasks_and_driver(run, tmp_path, driver: str, name: str, params: dict, stage: int) -> tuple[dict, list[dict]]:
    """The reference (``driver``: the selector with its single-process decide, one worker), then the
    task path with 1 and 2 workers, each asserted to write the reference's keep files byte for byte.
    ``run(out, name, params, workers)`` returns the manifest; ``stage`` is the stage's 0-based
    position. Returns (the reference's metrics, the task runs' metrics)."""
    ref = run(tmp_path / "driver", driver, params, 1)
    want = keep_files(tmp_path / "driver", stage)
    got = []
    for w in (1, 2):
        man = run(tmp_path / f"tasks{w}", name, params, w)
        same_arrays(want, keep_files(tmp_path / f"tasks{w}", stage))
        got.append(man["stages"][stage + 1]["metrics"])
    return ref["stages"][stage + 1]["metrics"], got


def resumes_after_kills(cfg: dict, tmp_path, points) -> list[str]:
    """``cfg`` through the CLI once whole (the reference), then for each kill point into a fresh
    output: SIGKILL there, the same command again, the reference's bytes. Returns the points the
    reference run reached."""
    from conftest import file_digests

    cfg = {**cfg, "output": {**cfg["output"], "path": str(tmp_path / "ref")}}
    c = tmp_path / "c.yaml"
    c.write_text(yaml.safe_dump(cfg))
    log = tmp_path / "points.log"
    run_cli("select", c, "--quiet", env={"SHARDSIFT_LIST_POINTS": str(log)})
    ref = {k: file_digests(tmp_path / "ref" / k) for k in ("data", ".shardsift/decisions", ".shardsift/scores")}
    for point in points:
        out = tmp_path / ("out-" + point.replace(":", "-").replace("*", "x"))
        c.write_text(yaml.safe_dump({**cfg, "output": {**cfg["output"], "path": str(out)}}))
        killed = run_cli("select", c, "--quiet", env={"SHARDSIFT_KILL_AT": point}, check=False)
        assert killed.returncode != 0, f"{point} not reached"
        run_cli("select", c, "--quiet")
        for k, dig in ref.items():
            assert file_digests(out / k) == dig, (point, k)
    return log.read_text().split()


def _run(tmp_path):
    """run(out, name, params, workers) for tasks_and_driver: ``length``, then the dedup stage."""
    def run(out, name, params, workers):
        return run_pipeline({"input": {"path": str(tmp_path / "in")}, "output": {"path": str(out), "scores": True},
                             "workers": workers, "seed": 0, "stages": [{"length": {"min_words": 3}}, {name: params}]})
    return run


MINHASH = [
    {"threshold": 0.8},
    {"threshold": 0.8, "keep": "longest", "memory_budget": "16KiB"},  # many partitions
    {"threshold": 0.7, "verify": False},
    {"threshold": 0.5, "num_perm": 16, "keep": "q"},  # no identical-signature shortcut
    {"threshold": 0.8, "shingle": "char", "ngram": 7, "keep": "q"},
]


@pytest.mark.parametrize("params", MINHASH, ids=lambda p: ",".join(f"{k}={v}" for k, v in p.items()))
def test_minhash_tasks_equal_the_driver_decide(tmp_path, params):
    _corpus(tmp_path / "in")
    rm, runs = tasks_and_driver(_run(tmp_path), tmp_path, "driver_decides:MinHashInDriver", "minhash_dedup",
                                params, 1)
    for m in runs:
        assert m["decided_in"] == "tasks" and "decided_in" not in rm
        for k in ("clusters", "docs_in_clusters", "docs_removed", "largest_cluster", "cluster_sizes",
                  "docs_without_shingles", "identical_signature_docs", "candidate_docs", "bucket_entries",
                  "pairs_checked", "pairs_joined", "pairs_rejected", "pairs_rejected_before"):
            assert m[k] == rm[k], k
    assert rm["docs_removed"] > 20
    if params.get("memory_budget"):
        assert m["partitions"] >= 16


def test_minhash_tasks_resume_after_a_kill_at_each_step(tmp_path):
    """SIGKILL at a task of each step of the decide, then a rerun: the same output bytes."""
    _corpus(tmp_path / "in")
    cfg = {"input": {"path": str(tmp_path / "in")}, "output": {"scores": True},
           "workers": 2, "seed": 0, "stages": [{"length": {"min_words": 3}}, {"minhash_dedup": {}}]}
    steps = ("keys", "group", "candidates", "sets", "cluster")
    points = resumes_after_kills(cfg, tmp_path, [f"decide:01:{s}:*" for s in steps] + ["decide:01:3"])
    for s in steps:
        assert any(p.startswith("decide:01:" + s) for p in points), (s, points)


EXACT = [{}, {"keep": "longest"}, {"keep": "q", "collapse_whitespace": False}]


@pytest.mark.parametrize("params", EXACT, ids=lambda p: ",".join(f"{k}={v}" for k, v in p.items()) or "default")
def test_exact_tasks_equal_the_driver_decide(tmp_path, params):
    _corpus(tmp_path / "in")
    rm, runs = tasks_and_driver(_run(tmp_path), tmp_path, "driver_decides:ExactInDriver", "exact_dedup", params, 1)
    for w, m in zip((1, 2), runs):
        assert m["decided_in"] == "tasks" and m["partitions"] == 2 * w
        for k in ("groups", "docs_in_groups", "docs_removed", "largest_group", "group_sizes"):
            assert m[k] == rm[k], k
    assert rm["docs_removed"] >= 25 and rm["largest_group"] >= 3
