"""kmeans_diversity's balanced decide as tasks (per-cluster counts in the driver, member choice in
tasks partitioned by cluster): the same keep files as the decide over every document in the
driver, for any worker count; the same member-choice and held-out coverage metrics."""
import functools

import pytest
from test_kmeans import _write_corpus, topic_corpus
from test_sharded_dedup import resumes_after_kills, tasks_and_driver

from shardsift.engine.runner import run_pipeline


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    d = tmp_path_factory.mktemp("kmeans-tasks")
    texts, _, _ = topic_corpus(900, 6, seed=4)
    _write_corpus(d / "in", texts, shards=4)
    return d


def _cfg(pool, name, params, workers) -> dict:
    return {"input": {"path": str(pool / "in")}, "output": {"scores": True}, "workers": workers, "seed": 5,
            "stages": [{name: {"k": 6, "dim": 32, "heldout_sample": 300, "coverage_sample": 200, **params}}]}


def _run(pool, out, name, params, workers):
    cfg = _cfg(pool, name, params, workers)
    return run_pipeline({**cfg, "output": {**cfg["output"], "path": str(out)}})


CASES = [{"keep": 0.5}, {"keep": 0.2, "member": "farthest"}, {"n": 301, "quota_exponent": 0.0},
         {"keep": 1.0}]


@pytest.mark.parametrize("params", CASES, ids=lambda p: ",".join(f"{k}={v}" for k, v in p.items()))
def test_tasks_equal_the_driver_decide(pool, tmp_path, params):
    run = functools.partial(_run, pool)
    rm, runs = tasks_and_driver(run, tmp_path, "driver_decides:KMeansInDriver", "kmeans_diversity", params, 0)
    for m in runs:
        assert m["decided_in"] == "tasks" and "decided_in" not in rm
        for k in ("selection", "kept_tokens", "cluster_sizes_before", "cluster_sizes_after", "cluster_size_after",
                  "coverage_heldout"):
            assert m[k] == rm[k], k
        cov, rcov = m["coverage"], rm["coverage"]
        for k in ("selected", "pool_docs_measured", "cluster_entropy"):
            assert cov[k] == rcov[k], k
        for k in ("mean_distance", "p95_distance"):
            assert cov[k] == pytest.approx(rcov[k], abs=1e-5), k
        if params.get("keep") != 1.0:
            assert abs(cov["random_mean_distance"] - rcov["random_mean_distance"]) < 0.05


def test_other_strategies_still_decide_in_one_process(pool, tmp_path):
    man = _run(pool, tmp_path / "proto", "kmeans_diversity", {"keep": 0.5, "strategy": "prototypes"}, 2)
    assert "decided_in" not in man["stages"][1]["metrics"] and man["stages"][1]["kept"] == 450


def test_killed_at_each_step_resumes_to_the_same_bytes(pool, tmp_path):
    """SIGKILL at a task of each step of the decide (sizes, route, select, queries, a keep file),
    then the same command: the same output bytes."""
    resumes_after_kills(_cfg(pool, "kmeans_diversity", {"keep": 0.5}, 2), tmp_path,
                        ("decide:00:sizes:1", "decide:00:route:*", "decide:00:select:*", "decide:00:queries:2",
                         "decide:00:3"))
