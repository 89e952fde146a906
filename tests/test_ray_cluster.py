"""The ray executor on a real two-node Ray cluster started by the test (two raylets on this machine,
each with its own temp dir, CPU and resource label; token authentication on), with input, work dir
and output on a local S3 server and nothing shared on disk: same bytes as the local executor, tasks
on both nodes, and a driver SIGKILLed mid-run resumes to the same bytes."""
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest
import yaml
from conftest import ROOT, file_digests, run_cli

from shardsift.engine.runner import run_pipeline

pytest.importorskip("ray", reason="the ray executor needs the ray extra: pip install -e '.[ray]'")
pytest.importorskip("s3fs", reason="object-store tests need s3fs (the ray and dev extras)")
pytest.importorskip("moto.server", reason="object-store tests need moto[server] (the dev extra)")

from s3_server import free_port, moto_s3, s3_digests, upload_dir  # noqa: E402

pytestmark = pytest.mark.slow

TESTS = os.path.dirname(os.path.abspath(__file__))
RAY = os.path.join(os.path.dirname(sys.executable), "ray")
BUCKET = "cluster"


def _wait_for(path: str, text: str, proc: subprocess.Popen, timeout: float) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        with open(path, encoding="utf-8", errors="replace") as fh:
            if text in fh.read():
                return
        if proc.poll() is not None:
            break
        time.sleep(0.5)
    with open(path, encoding="utf-8", errors="replace") as fh:
        raise AssertionError(f"ray start did not come up (exit {proc.poll()}):\n{fh.read()[-3000:]}")


def _stop(procs: list, root: str) -> None:
    """SIGTERM each `ray start --block` process group (it stops its node's processes), then SIGKILL
    what is left: the groups, and any process whose command line names this cluster's temp dirs.
    Not `ray stop`, which stops every Ray process on the machine, other users' included."""
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
    for p in procs:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    me = os.getpid()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                cmd = fh.read()
        except OSError:
            continue
        if int(pid) != me and root.encode() in cmd:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.fixture(scope="module")
def cluster():
    """A head and a worker node, each a `ray start --block` in its own process group, private
    temp dirs (short: Ray's socket paths are limited to ~107 bytes), token auth with a fresh token.
    Yields (address, env for drivers: the token, the test plugins importable, {label: temp root})."""
    root = tempfile.mkdtemp(prefix="ss2n-")
    token = secrets.token_hex(32)
    env = dict(os.environ)
    for k in ("RAY_ADDRESS", "SHARDSIFT_KILL_AT", "SHARDSIFT_SCRATCH"):
        env.pop(k, None)
    # the nodes have shardsift (as an installed package would be), not the test plugins: those
    # travel with the job (ray.runtime_env.py_modules), as a user's own selectors do
    path = [p for p in (ROOT, os.environ.get("PYTHONPATH")) if p]
    env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token, RAY_USAGE_STATS_ENABLED="0",
               PYTHONPATH=os.pathsep.join(path))
    port = free_port()
    address = f"127.0.0.1:{port}"
    procs: list = []
    dirs = {}
    try:
        for label in ("a", "b"):
            d = dirs[label] = os.path.join(root, label)
            os.makedirs(os.path.join(d, "tmp"))
            node_env = dict(env, SHARDSIFT_TEST_NODE=label, TMPDIR=os.path.join(d, "tmp"))
            args = [RAY, "start", "--block", f"--temp-dir={d}/ray", "--num-cpus=1", "--num-gpus=0",
                    f"--resources={json.dumps({f'shardsift_node_{label}': 1})}", "--node-ip-address=127.0.0.1",
                    "--object-store-memory=100000000", "--disable-usage-stats",
                    f"--dashboard-agent-listen-port={free_port()}", f"--metrics-export-port={free_port()}",
                    f"--runtime-env-agent-port={free_port()}"]
            if label == "a":
                args += ["--head", f"--port={port}", "--include-dashboard=false"]
            else:
                args += [f"--address={address}"]
            log = os.path.join(root, f"start-{label}.log")
            with open(log, "w") as fh:
                procs.append(subprocess.Popen(args, stdout=fh, stderr=subprocess.STDOUT, env=node_env,
                                              start_new_session=True, cwd=root))
            _wait_for(log, "Ray runtime started", procs[-1], 120)
        check = (f"import json, ray; ray.init(address={address!r}, log_to_driver=False); "
                 "print(json.dumps(sorted(r for n in ray.nodes() if n['Alive'] for r in n['Resources'] "
                 "if r.startswith('shardsift_node_'))))")
        deadline = time.monotonic() + 60
        while True:
            out = subprocess.run([sys.executable, "-c", check], env=env, capture_output=True, text=True,
                                 cwd=root, timeout=120)
            seen = json.loads(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 else None
            if seen == ["shardsift_node_a", "shardsift_node_b"]:
                break
            assert time.monotonic() < deadline, f"cluster never had both nodes: {seen}\n{out.stderr[-2000:]}"
            time.sleep(1)
        yield address, dict(env, PYTHONPATH=os.pathsep.join([TESTS, *path])), dirs
    finally:
        _stop(procs, root)
        shutil.rmtree(root, ignore_errors=True)


def _files(folder: str) -> list:
    return sorted(os.path.join(r, f) for r, _, fs in os.walk(folder) for f in fs)


def test_two_nodes_s3_same_bytes_and_driver_kill_resumes(sample_dir, tmp_path, cluster):
    address, env, node_dirs = cluster
    log = tmp_path / "nodes.log"
    # the decides as tasks too: partitioned dedup, budget passes, per-cluster member choice
    stages = [{"ray_plugins:NodeLog": {"log": str(log)}}, {"ray_plugins:FitAndMap": {"keep": 0.6}},
              {"random": {"keep": 0.5}}, {"exact_dedup": {}}, {"minhash_dedup": {}},
              {"kmeans_diversity": {"k": 4, "keep": 0.5, "dim": 16, "fit_sample": 500, "heldout_sample": 200}}]
    run_pipeline({"input": str(sample_dir / "pool"), "output": {"path": str(tmp_path / "ref"), "scores": True},
                  "workers": 1, "seed": 5, "stages": stages})
    log.unlink()
    scratch = tmp_path / "driver-scratch"  # the driver's own disk: selectors' private files only
    drv_env = dict(env, SHARDSIFT_SCRATCH=str(scratch), TMPDIR=str(tmp_path))
    with moto_s3(BUCKET) as (opts, fs):
        upload_dir(fs, str(sample_dir / "pool"), f"{BUCKET}/pool")

        def config(name):
            path = tmp_path / f"{name}.yaml"
            path.write_text(yaml.safe_dump({
                "input": {"path": f"s3://{BUCKET}/pool", "storage_options": opts},
                "output": {"path": f"s3://{BUCKET}/{name}", "storage_options": opts, "scores": True},
                "executor": "ray", "workers": 2, "seed": 5, "stages": stages,
                "ray": {"address": address, "runtime_env": {"py_modules": [os.path.join(TESTS, "ray_plugins.py")]}}}))
            return path

        def same_as_ref(name):
            assert s3_digests(fs, f"{BUCKET}/{name}/data") == file_digests(tmp_path / "ref" / "data")
            assert (s3_digests(fs, f"{BUCKET}/{name}/.shardsift/scores")
                    == file_digests(tmp_path / "ref" / ".shardsift" / "scores"))

        run_cli("select", config("one"), "--quiet", env=drv_env)
        same_as_ref("one")
        seen = [line.split() for line in log.read_text().splitlines()]
        assert {label for _, _, label in seen} == {"a", "b"}, seen  # tasks ran on both nodes ...
        assert len({node for _, node, _ in seen}) == 2, seen        # ... which are two Ray nodes
        # every task result is on S3, the fit map's included; no task wrote to a node's or the driver's disk
        n = len(fs.ls(f"{BUCKET}/pool"))
        assert len(fs.glob(f"{BUCKET}/one/.work/stages/*/fit/map0-*.pkl")) == n
        # the driver's disk holds only a fit's private folder (k-means' model files before they are published)
        assert all(os.path.basename(os.path.dirname(f)).endswith("-fit") for f in _files(str(scratch)))
        assert all(_files(os.path.join(d, "tmp")) == [] for d in node_dirs.values())

        # the driver SIGKILLed in the middle of the global decide, then the same command again
        killed = run_cli("select", config("two"), "--quiet", env=dict(drv_env, SHARDSIFT_KILL_AT="decide:01:1"),
                         check=False)
        assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
        assert not fs.exists(f"{BUCKET}/two/.shardsift/manifest.json")
        points = tmp_path / "points.log"
        run_cli("select", config("two"), "--quiet", env=dict(drv_env, SHARDSIFT_LIST_POINTS=str(points)))
        reached = points.read_text().split()
        assert not any(p.startswith(("scan:", "fitmap:", "score:00", "score:01")) for p in reached), reached
        assert any(p.startswith("write:") for p in reached), reached
        same_as_ref("two")
        man = json.loads(fs.cat_file(f"{BUCKET}/two/.shardsift/manifest.json"))
        assert man["config"]["executor"] == "ray" and man["docs_kept"] > 0
        assert [st["metrics"].get("decided_in") for st in man["stages"][4:]] == ["tasks"] * 3
