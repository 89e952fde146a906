"""DSIR with one target decided by the engine's budget passes in shard tasks (the driver holding no
per-document array): the same keep files, reasons and scores as its decide over every document in
the driver, for every budget and mode; the same error when the budget exceeds the eligible
documents."""
import functools

import numpy as np
import pytest
from test_dsir import _write_parquet, corpus, table
from test_sharded_dedup import tasks_and_driver

from shardsift.engine.runner import run_pipeline
from shardsift.errors import ConfigError


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    d = tmp_path_factory.mktemp("dsir-tasks")
    _write_parquet(d / "pool", table(corpus(500, seed=21) + corpus(100, seed=22, topic_bias=[0, 1, 2])), 4)
    _write_parquet(d / "target", table(corpus(80, seed=23, topic_bias=[0, 1, 2]), "t"), 1)
    return d


def _run(pool, out, name, params, workers):
    cfg = {"input": {"path": str(pool / "pool")}, "output": {"path": str(out), "scores": True},
           "workers": workers, "seed": 3,
           "stages": [{name: {"target": {"path": str(pool / "target")}, "buckets": 256, **params}}]}
    return run_pipeline(cfg, progress=False)


CASES = [{"keep": 0.25}, {"n": 77, "mode": "topk"}, {"keep": 0.4, "min_tokens": 30},
         {"tokens": 3000}, {"tokens": 10 ** 9, "min_tokens": 25}, {"mode": "threshold", "threshold": 0.0}]


@pytest.mark.parametrize("params", CASES, ids=lambda p: ",".join(f"{k}={v}" for k, v in p.items()))
def test_tasks_equal_the_driver_decide(pool, tmp_path, params):
    run = functools.partial(_run, pool)
    rm, runs = tasks_and_driver(run, tmp_path, "driver_decides:DSIRInDriver", "dsir", params, 0)
    for m in runs:
        assert "random_baseline" in m and "random_baseline" not in rm  # the budget path ran
        assert m["mode"] == rm["mode"]
        for k in ("selected", "eligible", "selected_tokens", "too_short", "kl_target_raw", "kl_target_selected",
                  "kl_reduction"):
            assert m[k] == pytest.approx(rm[k], rel=1e-12), k
        for k in ("mean_log_weight_all", "mean_log_weight_selected"):
            assert m[k] == pytest.approx(rm[k], rel=1e-9), k
        assert np.isfinite(m["kl_reduction_random"])
    assert 0 < rm["selected"] < 600


def test_budget_above_the_eligible_documents_is_the_same_error(pool, tmp_path):
    msgs = []
    for name in ("driver_decides:DSIRInDriver", "dsir"):
        with pytest.raises(ConfigError) as info:
            _run(pool, tmp_path / name.replace(":", "-"), name, {"n": 500, "min_tokens": 40}, 2)
        msgs.append(str(info.value))
    assert msgs[0] == msgs[1] and "min_tokens=40" in msgs[0], msgs
