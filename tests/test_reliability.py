"""Reliability: accounting, explain, the output lock, disk full and read-only outputs, fuzzed input."""
import json
import os
import subprocess
import sys
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from conftest import ROOT, file_digests, run_cli
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from shardsift.engine.config import parse_config
from shardsift.engine.runner import run_pipeline
from shardsift.errors import ConfigError, ShardsiftError, UsageError
from shardsift.output import verify_output

TORTURE = bool(os.environ.get("SHARDSIFT_TORTURE"))


def cfg_for(sample_dir, out, **kw):
    c = {"input": str(sample_dir / "pool"), "output": {"path": str(out), "scores": True}, "workers": 1, "seed": 1,
         "stages": [{"length": {"min_words": 20}}, {"random": {"keep": 0.7}}]}
    c.update(kw)
    return c


def test_explain_every_fate(sample_dir, tmp_path):
    out = tmp_path / "out"
    run_pipeline(cfg_for(sample_dir, out))
    verify_output(str(out))
    dec = pq.read_table(out / ".shardsift" / "decisions")
    kept = dec.filter(dec.column("kept")).column("id")[0].as_py()
    short = dec.filter(pa.compute.equal(dec.column("stage"), 1)).column("id")[0].as_py()
    rnd = dec.filter(pa.compute.equal(dec.column("stage"), 2)).column("id")[0].as_py()
    assert "kept" in run_cli("explain", out, kept).stdout
    assert "dropped by stage 1 'length' (reason: too_short)" in run_cli("explain", out, short).stdout
    text = run_cli("explain", out, rnd).stdout
    assert "dropped by stage 2 'random' (reason: random)" in text and "length: score" in text
    bad = run_cli("explain", out, "no-such-id", check=False)
    assert bad.returncode == 1 and "no input document has id 'no-such-id'" in bad.stderr
    assert "ok" in run_cli("verify", out).stdout


def test_verify_catches_tampering(sample_dir, tmp_path):
    out = tmp_path / "out"
    run_pipeline(cfg_for(sample_dir, out))
    part = out / "data" / "part-00000-00000.parquet"
    t = pq.read_table(part)
    pq.write_table(t.slice(1), part)  # one kept document lost
    proc = run_cli("verify", out, check=False)
    assert proc.returncode == 1 and "differs from the manifest" in proc.stderr


def test_verify_catches_a_dropped_id_in_place_of_a_kept_one(sample_dir, tmp_path):
    out = tmp_path / "out"
    run_pipeline(cfg_for(sample_dir, out))
    dec = pq.read_table(out / ".shardsift" / "decisions")
    dropped = dec.filter(pa.compute.invert(dec.column("kept"))).column("id")[0].as_py()
    part = out / "data" / "part-00000-00000.parquet"
    t = pq.read_table(part)
    ids = t.column("id").to_pylist()
    ids[0] = dropped
    pq.write_table(t.set_column(t.column_names.index("id"), "id", pa.array(ids)), part)
    with pytest.raises(ShardsiftError, match="not exactly the kept ids"):
        verify_output(str(out))


# -- the output lock ---------------------------------------------------------------------------------

def test_lock_held_by_live_run_refuses_and_stale_lock_is_taken(sample_dir, tmp_path):
    import socket

    out = tmp_path / "out"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (out / ".lock").write_text(json.dumps({"pid": holder.pid, "host": socket.gethostname(), "started": "x"}))
        with pytest.raises(UsageError, match=f"another shardsift run is writing here \\(pid {holder.pid}"):
            run_pipeline(cfg_for(sample_dir, out))
    finally:
        holder.kill()
        holder.wait()
    # the holder is dead now: its lock is stale and is taken over
    run_pipeline(cfg_for(sample_dir, out))
    assert not (out / ".lock").exists() and (out / ".shardsift" / "manifest.json").exists()


def test_two_concurrent_runs_on_one_output(sample_dir, tmp_path):
    out = tmp_path / "out"
    c = tmp_path / "c.yaml"
    c.write_text(yaml.safe_dump(cfg_for(sample_dir, out)))
    env = dict(os.environ, PYTHONPATH=ROOT, SHARDSIFT_SLEEP_AT="stage:00=8")
    first = subprocess.Popen([sys.executable, "-m", "shardsift", "select", str(c), "--quiet"], env=env,
                             stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(200):
            if (out / ".lock").exists():
                break
            time.sleep(0.05)
        second = run_cli("select", c, "--quiet", check=False)
        assert second.returncode == 2 and "another shardsift run is writing here" in second.stderr
        assert first.wait(timeout=120) == 0, first.stderr.read()
    finally:
        if first.poll() is None:
            first.kill()
    verify_output(str(out))


# -- disk full and read-only output, on real small filesystems -------------------------------------

def _mount_tmpfs(path, opts):
    path.mkdir(exist_ok=True)
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs to make a small filesystem here ({proc.stderr.strip() or 'not root'})")


def test_disk_full_then_resume_after_freeing_space(sample_dir, tmp_path):
    ref = tmp_path / "ref"
    run_pipeline(cfg_for(sample_dir, ref))
    mnt = tmp_path / "small"
    _mount_tmpfs(mnt, "size=400k")  # fits the work dir (~290 KB), not the output too
    try:
        out = mnt / "out"
        c = tmp_path / "c.yaml"
        c.write_text(yaml.safe_dump(cfg_for(sample_dir, out)))
        proc = run_cli("select", c, "--quiet", check=False)
        assert proc.returncode == 1, proc.stderr
        err = proc.stderr.strip()
        assert "No space left on device" in err and "\n" not in err and "Traceback" not in err
        assert not (out / ".shardsift" / "manifest.json").exists() and not (out / "data").exists()
        subprocess.run(["mount", "-o", "remount,size=64m", str(mnt)], check=True)
        log = tmp_path / "points.log"
        run_cli("select", c, "--quiet", env={"SHARDSIFT_LIST_POINTS": str(log)})
        points = log.read_text().split()
        assert not any(p.startswith("scan:") for p in points)  # finished work was kept and reused
        assert file_digests(out / "data") == file_digests(ref / "data")
        verify_output(str(out))
    finally:
        subprocess.run(["umount", "-l", str(mnt)])


def test_read_only_output(sample_dir, tmp_path):
    mnt = tmp_path / "ro"
    _mount_tmpfs(mnt, "size=1m,ro")
    try:
        c = tmp_path / "c.yaml"
        c.write_text(yaml.safe_dump(cfg_for(sample_dir, mnt / "out")))
        proc = run_cli("select", c, "--quiet", check=False)
        err = proc.stderr.strip()
        assert proc.returncode == 1 and "Read-only file system" in err and "\n" not in err, err
    finally:
        subprocess.run(["umount", "-l", str(mnt)])


# -- fuzzing: every case ends in success or one ShardsiftError, never a traceback or partial output ---

KEYS = ["input", "output", "workers", "seed", "stages", "executor", "ray", "on_duplicate_id", "wrokers", "stage"]
VALUES = st.recursive(st.none() | st.booleans() | st.integers(-5, 5) | st.floats(-2, 2) | st.text(max_size=6),
                      lambda ch: st.lists(ch, max_size=3) | st.dictionaries(st.sampled_from(KEYS + ["keep", "n",
                      "min_words", "length", "random", "path"]), ch, max_size=3), max_leaves=8)


@settings(max_examples=400 if TORTURE else 60, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.dictionaries(st.sampled_from(KEYS), VALUES, max_size=6))
@example({"workers": None})  # found by hypothesis: a key written with no value means its default
def test_fuzz_configs(raw):
    try:
        parse_config(raw)
    except ConfigError as err:
        assert "\n" not in str(err) and str(err)


@settings(max_examples=200 if TORTURE else 40, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(st.sampled_from(["len_min", "len_max", "random_keep", "random_n"]), max_size=3),
       st.integers(-3, 200), st.floats(-0.5, 1.5) | st.just(float("nan")))
def test_fuzz_stage_params(kinds, num, frac):
    stages = []
    for k in kinds:
        stages.append({"len_min": {"length": {"min_words": num}}, "len_max": {"length": {"max_bytes": num}},
                       "random_keep": {"random": {"keep": frac}}, "random_n": {"random": {"n": num}}}[k])
    try:
        parse_config({"input": "x", "output": "y", "stages": stages})
    except ConfigError as err:
        assert "\n" not in str(err)


def _column(kind, n, rng):
    if kind == "str":
        return pa.array([" ".join(["w"] * int(rng.integers(0, 30))) for _ in range(n)])
    if kind == "null":
        return pa.array([None if rng.random() < 0.5 else "some words here" for _ in range(n)], pa.string())
    if kind == "int":
        return pa.array(rng.integers(0, 9, n))
    if kind == "big":
        return pa.array(["x " * 300_000 if i == 0 else "y" for i in range(n)])
    return pa.array(["\u00e9\u4e2d " * int(rng.integers(1, 9)) for _ in range(n)])


@settings(max_examples=60 if TORTURE else 12, deadline=None,
          suppress_health_check=list(HealthCheck))
@given(st.lists(st.tuples(st.sampled_from(["str", "null", "int", "big", "uni"]), st.integers(0, 40),
                          st.sampled_from(["parquet", "truncated", "jsonl", "badutf8", "noid", "dupid", "notext"])),
                min_size=1, max_size=3),
       st.integers(0, 2**16))
# found by hypothesis: shards whose decisions use different drop reasons (different dictionaries)
@example(files=[("null", 6, "parquet"), ("str", 8, "noid")], seed=1)
def test_fuzz_input_files(tmp_path_factory, files, seed):
    rng = np.random.default_rng(seed)
    d = tmp_path_factory.mktemp("fz")
    for k, (kind, n, fmt) in enumerate(files):
        cols = {"text": _column(kind, n, rng)}
        if fmt != "noid":
            cols["id"] = pa.array([f"d{k}-{i}" if fmt != "dupid" else f"d{i % 3}" for i in range(n)])
        if fmt == "notext":
            cols["body"] = cols.pop("text")
        tbl = pa.table(cols)
        if fmt in ("jsonl", "badutf8"):
            lines = [json.dumps(r) for r in tbl.to_pylist()]
            data = ("\n".join(lines) + ("\n" if lines else "")).encode()
            if fmt == "badutf8" and data:
                data = data.replace(b'"', b'"\xff', 2)[: len(data) + 2]
            (d / f"f{k}.jsonl").write_bytes(data)
        else:
            pq.write_table(tbl, d / f"f{k}.parquet")
            if fmt == "truncated":
                raw = (d / f"f{k}.parquet").read_bytes()
                (d / f"f{k}.parquet").write_bytes(raw[: len(raw) // 2])
    out = d / "out"
    try:
        run_pipeline({"input": str(d), "output": str(out), "workers": 1,
                      "stages": [{"length": {"min_words": 2}}, {"random": {"keep": 0.5}}]})
    except ShardsiftError as err:
        assert "\n" not in str(err) and str(err)
        assert not (out / ".shardsift" / "manifest.json").exists() and not (out / "data").exists()
        return
    verify_output(str(out))


# -- crash safety: SIGKILL at many points of the full pipeline, rerun, byte-identical --------------

def _full_cfg(sample_dir, out):
    # every built-in selector that exists, in the default config's order
    with open(os.path.join(ROOT, "configs", "default.yaml")) as fh:
        c = yaml.safe_load(fh)
    c["input"]["path"] = str(sample_dir / "pool")
    c["output"]["path"] = str(out)
    c["output"]["scores"] = True
    c["workers"] = 2

    def fix(v):
        if isinstance(v, str):
            return v.replace("../data/sample", str(sample_dir))
        if isinstance(v, dict):
            return {k: fix(x) for k, x in v.items()}
        if isinstance(v, list):
            return [fix(x) for x in v]
        return v

    c["stages"] = fix(c["stages"])
    return c


def test_sigkill_at_many_points_rerun_is_byte_identical(sample_dir, tmp_path):
    ref = tmp_path / "ref"
    c_ref = tmp_path / "ref.yaml"
    c_ref.write_text(yaml.safe_dump(_full_cfg(sample_dir, ref)))
    log = tmp_path / "all-points.log"
    run_cli("select", c_ref, "--quiet", env={"SHARDSIFT_LIST_POINTS": str(log)})
    points = list(dict.fromkeys(log.read_text().split()))
    want = len(points) if TORTURE else 6
    idx = np.unique(np.linspace(0, len(points) - 1, want).round().astype(int))
    chosen = [points[i] for i in idx]
    if TORTURE:
        assert len(chosen) >= 20, f"only {len(chosen)} kill points: {points}"
    ref_digests = {k: file_digests(ref / k) for k in ("data", ".shardsift/decisions", ".shardsift/scores")}
    for n, point in enumerate(chosen):
        out = tmp_path / f"out{n}"
        c = tmp_path / f"c{n}.yaml"
        c.write_text(yaml.safe_dump(_full_cfg(sample_dir, out)))
        killed = run_cli("select", c, "--quiet", env={"SHARDSIFT_KILL_AT": point}, check=False)
        assert killed.returncode != 0, f"kill point {point} not reached"
        assert not (out / ".shardsift" / "manifest.json").exists(), f"{point}: a killed run left a finished-looking output"
        run_cli("select", c, "--quiet")
        for k, dig in ref_digests.items():
            assert file_digests(out / k) == dig, f"{k} differs after a kill at {point}"
        verify_output(str(out))
