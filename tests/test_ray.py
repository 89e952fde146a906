"""The ray executor on a real local Ray runtime (2 CPUs), one per module: same bytes as the local executor,
retries of killed and failing tasks, resume after the driver is killed."""
import json
import os

import pytest
import yaml
from conftest import ROOT, file_digests, run_cli

from shardsift.engine.runner import run_pipeline
from shardsift.errors import DataError, TaskError

ray = pytest.importorskip("ray", reason="the ray executor needs the ray extra: pip install -e '.[ray]'")

TESTS = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture(scope="module")
def ray_address():
    """One local Ray runtime for the module; its workers can import tests/ray_plugins.py."""
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (TESTS, ROOT, old) if p)
    ray.init(num_cpus=2, include_dashboard=False, configure_logging=False, log_to_driver=False)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old


def default_cfg(sample_dir, out, **extra):
    with open(os.path.join(ROOT, "configs", "default.yaml"), encoding="utf-8") as fh:
        cfg = yaml.safe_load(fh)
    cfg["input"]["path"] = str(sample_dir / "pool")
    cfg["output"]["path"] = str(out)
    cfg["workers"] = 2
    # stage inputs of the default config (e.g. the sample's loss matrix) come from this sample
    cfg["stages"] = yaml.safe_load(yaml.safe_dump(cfg["stages"]).replace("../data/sample", str(sample_dir)))
    cfg.update(extra)
    return cfg


def same_output(a, b):
    da, db = file_digests(os.path.join(a, "data")), file_digests(os.path.join(b, "data"))
    assert da and da == db
    assert file_digests(os.path.join(a, ".shardsift", "scores")) == file_digests(os.path.join(b, ".shardsift", "scores"))


def test_default_pipeline_same_bytes_as_local(sample_dir, tmp_path, ray_address):
    stages = default_cfg(sample_dir, tmp_path)["stages"] + [{"ray_plugins:FitAndMap": {"keep": 0.6}}, {"random": {"keep": 0.5}}]
    ml = run_pipeline(default_cfg(sample_dir, tmp_path / "local", stages=stages))
    mr = run_pipeline(default_cfg(sample_dir, tmp_path / "ray", stages=stages, executor="ray"))
    same_output(tmp_path / "local", tmp_path / "ray")
    for a, b in zip(ml["stages"], mr["stages"]):
        assert (a["name"], a["docs_in"], a["kept"], a["dropped"]) == (b["name"], b["docs_in"], b["kept"], b["dropped"])
    fit = next(i for i, st in enumerate(mr["stages"]) if st["name"] == "ray_plugins:FitAndMap")
    assert mr["stages"][fit]["metrics"]["fit_docs"] == ml["stages"][fit - 1]["kept"]
    assert mr["config"]["executor"] == "ray" and mr["docs_kept"] == ml["docs_kept"] > 0
    # task CPU time measured in the Ray workers is accounted for
    assert mr["cpu_s"] > 0


def test_quality_classifier_same_model_and_bytes_as_local(sample_dir, tmp_path, ray_address):
    """The classifier trained and applied through Ray (2 workers) gives the model bytes, the output
    and the scores of the local executor with 1 worker."""
    pytest.importorskip("fasttext", reason="quality_classifier needs fasttext (the dev extra)")
    stages = [{"quality_classifier": {"positives": {"path": str(sample_dir / "target")}, "keep": 0.3}}]
    base = {"input": {"path": str(sample_dir / "pool")}, "seed": 3, "stages": stages}
    ml = run_pipeline({**base, "output": {"path": str(tmp_path / "local"), "scores": True}, "workers": 1})
    mr = run_pipeline({**base, "output": {"path": str(tmp_path / "ray"), "scores": True}, "workers": 2,
                       "executor": "ray"})
    same_output(tmp_path / "local", tmp_path / "ray")
    models = [file_digests(os.path.join(tmp_path / d, ".shardsift", "models")) for d in ("local", "ray")]
    assert models[0] and models[0] == models[1]
    assert ml["stages"][-1]["kept"] == mr["stages"][-1]["kept"] > 0


def test_parallel_write_many_parts_same_bytes_as_local(sample_dir, tmp_path, ray_address):
    extra = {"input": {"path": str(sample_dir / "pool"), "batch_size": 97},
             "stages": [{"length": {"min_words": 20}}]}
    out = lambda p: {"path": str(p), "max_shard_bytes": "50KB", "scores": True}
    ml = run_pipeline(default_cfg(sample_dir, tmp_path / "local", **extra, output=out(tmp_path / "local")))
    mr = run_pipeline(default_cfg(sample_dir, tmp_path / "ray", **extra, output=out(tmp_path / "ray"),
                                  executor="ray"))
    assert len(mr["output"]["files"]) > 5 and mr["output"]["files"] == ml["output"]["files"]
    same_output(tmp_path / "local", tmp_path / "ray")


def test_worker_killed_mid_task_is_retried_and_output_exact(sample_dir, tmp_path, ray_address):
    log = tmp_path / "attempts.log"
    ref_marker = tmp_path / "ref-marker"
    ref_marker.touch()  # the reference run never kills
    stage = lambda marker: [{"ray_plugins:KillOnce": {"marker": str(marker), "log": str(log)}}]
    run_pipeline(default_cfg(sample_dir, tmp_path / "ref", stages=stage(ref_marker)))
    log.unlink()
    marker = tmp_path / "marker"
    m = run_pipeline(default_cfg(sample_dir, tmp_path / "ray", stages=stage(marker), executor="ray"))
    assert marker.exists(), "no task killed its worker"
    attempts = [line.split() for line in log.read_text().splitlines()]
    shards = [s for s, _ in attempts]
    killed = [s for s in set(shards) if len({p for s2, p in attempts if s2 == s}) > 1]
    assert len(killed) == 1, attempts  # one shard ran twice, in two different worker processes
    assert sorted(set(shards)) == sorted(i["path"].rsplit("/", 1)[-1] for i in m["inputs"])
    same_output(tmp_path / "ref", tmp_path / "ray")
    assert m["docs_in"] == m["docs_kept"] + sum(sum(s["dropped"].values()) for s in m["stages"])


def test_worker_lost_every_time_fails_the_run_in_one_line(sample_dir, tmp_path, ray_address):
    with pytest.raises(TaskError) as exc:
        run_pipeline(default_cfg(sample_dir, tmp_path / "o", executor="ray", ray={"max_retries": 1},
                                 stages=[{"ray_plugins:KillAlways": {"shard": "part-00002.parquet"}}]))
    msg = str(exc.value)
    assert "part-00002.parquet" in msg and "worker lost 2 times" in msg and "\n" not in msg, msg
    assert not (tmp_path / "o" / ".shardsift" / "manifest.json").exists()


def test_failing_task_retried_then_reported_in_one_line(sample_dir, tmp_path, ray_address):
    log = tmp_path / "attempts.log"
    cfg = lambda out, fails: default_cfg(
        sample_dir, out, executor="ray", ray={"max_retries": 2},
        stages=[{"ray_plugins:FailSome": {"shard": "part-00001.parquet", "fails": fails, "log": str(log)}}])
    # fails twice, succeeds on the last retry
    run_pipeline(cfg(tmp_path / "ok", 2))
    assert log.read_text().count("part-00001.parquet ") == 3
    log.unlink()
    with pytest.raises(TaskError) as exc:
        run_pipeline(cfg(tmp_path / "bad", 99))
    msg = str(exc.value)
    assert "part-00001.parquet" in msg and "RuntimeError: boom 3" in msg and "failed 3 times" in msg, msg
    assert "\n" not in msg
    assert log.read_text().count("part-00001.parquet ") == 3
    assert not (tmp_path / "bad" / ".shardsift" / "manifest.json").exists()


def test_data_error_is_not_retried(tmp_path, ray_address):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"body": ["x"]}), tmp_path / "a.parquet")
    with pytest.raises(DataError, match="a.parquet: no text column 'text'"):
        run_pipeline({"input": str(tmp_path / "a.parquet"), "output": str(tmp_path / "o"), "executor": "ray",
                      "workers": 2, "stages": []})


@pytest.mark.slow
@pytest.mark.parametrize("kill_at", ["stage:00", "decide:01:1"])
def test_driver_killed_then_resume_skips_finished_tasks(sample_dir, tmp_path, ray_address, kill_at):
    stages = [{"length": {"min_words": 20}}, {"random": {"keep": 0.5}}]
    run_pipeline(default_cfg(sample_dir, tmp_path / "ref", stages=stages))
    out = tmp_path / "out"
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(default_cfg(sample_dir, out, stages=stages, executor="ray",
                                              ray={"address": ray_address})))
    proc = run_cli("select", cfg, "--quiet", env={"SHARDSIFT_KILL_AT": kill_at}, check=False)
    assert proc.returncode != 0, "the kill point was never reached"
    assert not (out / ".shardsift" / "manifest.json").exists()
    work = out / ".work" / "stages"
    before = {str(p): p.stat().st_mtime_ns for p in work.rglob("*") if p.is_file()}
    points = tmp_path / "points.log"
    run_cli("select", cfg, "--quiet", env={"SHARDSIFT_LIST_POINTS": str(points)})
    reached = points.read_text().split()
    # the scan ran both stages' scores (length fused, random's score fused before its decide):
    # none of it again; the write tasks did run, on Ray
    assert not any(p.startswith(("scan:", "score:00", "score:01")) for p in reached), reached
    assert any(p.startswith("write:") for p in reached), reached
    finished = [p for p in before if os.path.basename(p).startswith(("task-", "scores-"))]
    assert finished and all(os.stat(p).st_mtime_ns == before[p] for p in finished)
    same_output(tmp_path / "ref", out)
    assert json.loads((out / ".shardsift" / "manifest.json").read_text())["config"]["executor"] == "ray"


def test_ray_tasks_read_and_write_s3(sample_dir, tmp_path, ray_address):
    pytest.importorskip("s3fs", reason="object-store tests need s3fs (the ray and dev extras)")
    pytest.importorskip("moto.server", reason="object-store tests need moto[server] (the dev extra)")
    from s3_server import moto_s3, s3_digests, upload_dir

    stages = [{"length": {"min_words": 20}}, {"ray_plugins:FitAndMap": {"keep": 0.6}}]
    run_pipeline(default_cfg(sample_dir, tmp_path / "ref", stages=stages))
    with moto_s3("ray-bucket") as (opts, fs):
        upload_dir(fs, str(sample_dir / "pool"), "ray-bucket/pool")
        m = run_pipeline(default_cfg(
            sample_dir, "s3://ray-bucket/out", stages=stages, executor="ray",
            input={"path": "s3://ray-bucket/pool", "storage_options": opts},
            output={"path": "s3://ray-bucket/out", "storage_options": opts, "scores": True}))
        assert s3_digests(fs, "ray-bucket/out/data") == file_digests(tmp_path / "ref" / "data")
        assert s3_digests(fs, "ray-bucket/out/.shardsift/scores") == file_digests(tmp_path / "ref" / ".shardsift" / "scores")
        assert fs.exists("ray-bucket/out/.shardsift/manifest.json") and m["config"]["executor"] == "ray"
        # every score task wrote its result to the S3 work dir from a Ray worker
        assert len(fs.glob("ray-bucket/out/.work/stages/*/task-*.json")) == 2 * len(m["inputs"])


def test_missing_file_in_a_task_is_one_line_not_retried(sample_dir, tmp_path, ray_address):
    log, missing = tmp_path / "attempts.log", tmp_path / "no-such-file.bin"
    stages = [{"ray_plugins:ReadsMissing": {"path": str(missing), "log": str(log)}}]
    with pytest.raises(DataError) as exc:
        run_pipeline(default_cfg(sample_dir, tmp_path / "ray", executor="ray", ray={"max_retries": 2}, stages=stages))
    msg = str(exc.value)
    assert f"{missing}: file not found" in msg and "part-0000" in msg and "\n" not in msg, msg
    assert "rerun" not in msg and "failed" not in msg, msg
    attempts = log.read_text().split()[::2]
    assert len(attempts) == len(set(attempts)), attempts  # no shard's task ran twice
    # the local executor and the command line say the same, without offering a rerun
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(default_cfg(sample_dir, tmp_path / "local", stages=stages)))
    proc = run_cli("select", cfg, "--quiet", check=False)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1 and f"{missing}: file not found" in lines[0], proc.stderr
    assert "rerun" not in proc.stderr and not (tmp_path / "local" / ".shardsift" / "manifest.json").exists()
