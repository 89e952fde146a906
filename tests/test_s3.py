"""Input, output and work dir on a real local S3-compatible server (moto server mode)."""
import json
import shutil

import pytest
import yaml
from conftest import file_digests, run_cli
from s3_server import moto_s3, s3_digests, upload_dir

from shardsift.engine.runner import run_pipeline
from shardsift.errors import UsageError

pytest.importorskip("s3fs", reason="object-store tests need s3fs (the ray and dev extras)")
pytest.importorskip("moto.server", reason="object-store tests need moto[server] (the dev extra)")

BUCKET = "shardsift-test"
STAGES = [{"length": {"min_words": 20}}, {"random": {"keep": 0.5}}]


@pytest.fixture(scope="module")
def s3(sample_dir):
    with moto_s3(BUCKET) as (opts, fs):
        upload_dir(fs, str(sample_dir / "pool"), f"{BUCKET}/pool")
        yield opts, fs


def cfg(opts, out, **extra):
    c = {"input": {"path": f"s3://{BUCKET}/pool", "storage_options": opts},
         "output": {"path": out, "storage_options": opts, "scores": True},
         "workers": 2, "seed": 3, "stages": STAGES}
    c.update(extra)
    return c


@pytest.fixture(scope="module")
def reference(sample_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("s3ref") / "out"
    run_pipeline({"input": str(sample_dir / "pool"), "output": {"path": str(out), "scores": True},
                  "workers": 1, "seed": 3, "stages": STAGES})
    return out


def test_input_output_and_work_dir_on_s3(s3, reference):
    opts, fs = s3
    out = f"s3://{BUCKET}/run1"
    m = run_pipeline(cfg(opts, out))  # two local worker processes read and write S3 themselves
    assert s3_digests(fs, f"{BUCKET}/run1/data") == file_digests(reference / "data")
    assert s3_digests(fs, f"{BUCKET}/run1/.shardsift/scores") == file_digests(reference / ".shardsift" / "scores")
    names = {k.rsplit("/", 1)[-1] for k in fs.ls(f"{BUCKET}/run1", detail=False)}
    assert {"data", ".shardsift", ".work"} <= names and ".data.tmp" not in names
    man = json.loads(fs.cat_file(f"{BUCKET}/run1/.shardsift/manifest.json"))
    assert man["docs_kept"] == m["docs_kept"] and man["inputs"][0]["path"].startswith("s3://")
    assert [f["path"] for f in man["output"]["files"]] == [f"data/part-{j:05d}-00000.parquet" for j in range(3)]
    assert fs.exists(f"{BUCKET}/run1/.work/scan/shard-00000.npz")
    with pytest.raises(UsageError, match="output exists"):
        run_pipeline(cfg(opts, out))
    run_pipeline(cfg(opts, out, seed=4, workers=1), overwrite=True)
    assert json.loads(fs.cat_file(f"{BUCKET}/run1/.shardsift/manifest.json"))["config"]["seed"] == 4


@pytest.mark.slow
@pytest.mark.parametrize("kill_at", ["score:01:1", "write:renamed"])
def test_sigkill_on_s3_then_resume(s3, reference, tmp_path, kill_at):
    opts, fs = s3
    out = f"s3://{BUCKET}/kill-{kill_at.replace(':', '-')}"
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg(opts, out, workers=1)))
    proc = run_cli("select", path, "--quiet", env={"SHARDSIFT_KILL_AT": kill_at}, check=False)
    assert proc.returncode != 0, proc.stderr
    key = out[len("s3://"):]
    assert not fs.exists(f"{key}/.shardsift/manifest.json")  # never before every data part is in place
    if kill_at == "write:renamed":
        assert s3_digests(fs, f"{key}/data") == file_digests(reference / "data")
    points = tmp_path / "points.log"
    run_cli("select", path, "--quiet", env={"SHARDSIFT_LIST_POINTS": str(points)})
    reached = points.read_text().split()
    if kill_at.startswith("score:"):  # killed inside shard 1's scan task, before its summary
        assert not {"scan:0", "score:00:0", "score:01:0"} & set(reached), reached
        assert {"scan:1", "score:01:1", "scan:2"} <= set(reached), reached
    else:
        assert not any(p.startswith("scan:") for p in reached), reached
    assert s3_digests(fs, f"{key}/data") == file_digests(reference / "data")
    assert s3_digests(fs, f"{key}/.shardsift/scores") == file_digests(reference / ".shardsift" / "scores")
    assert fs.exists(f"{key}/.shardsift/manifest.json")


@pytest.mark.slow
def test_trained_model_reaches_a_machine_without_the_drivers_disk(s3, sample_dir, tmp_path):
    """quality_classifier trains its model on the driver's disk. Killed after the fit, the run resumes
    where that disk is empty (another machine, as a node of a cluster is): its score tasks fetch the
    model from the work dir on S3, and the output is the one of a local run."""
    pytest.importorskip("fasttext", reason="quality_classifier needs fasttext (the dev extra)")
    opts, fs = s3
    stages = [{"quality_classifier": {"positives": {"path": str(sample_dir / "target")}, "keep": 0.5}}]
    ref = tmp_path / "ref"
    run_pipeline({"input": str(sample_dir / "pool"), "output": {"path": str(ref), "scores": True},
                  "workers": 1, "seed": 3, "stages": stages})
    out = f"s3://{BUCKET}/model-fetch"
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg(opts, out, stages=stages)))
    scratch = tmp_path / "scratch"
    env = {"SHARDSIFT_SCRATCH": str(scratch)}
    proc = run_cli("select", path, "--quiet", env={**env, "SHARDSIFT_KILL_AT": "fit:00"}, check=False)
    assert proc.returncode != 0, proc.stderr
    key = out[len("s3://"):]
    assert len(fs.glob(f"{key}/.work/stages/*/fitted/quality_classifier.bin")) == 1
    assert [p.name for p in scratch.rglob("quality_classifier.bin")] == ["quality_classifier.bin"]
    shutil.rmtree(scratch)
    run_cli("select", path, "--quiet", env=env)
    assert s3_digests(fs, f"{key}/data") == file_digests(ref / "data")
    assert s3_digests(fs, f"{key}/.shardsift/scores") == file_digests(ref / ".shardsift" / "scores")
