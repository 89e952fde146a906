"""Every starter recipe and the README's quickstart, run as a user would: on generated data of
their own, with nothing but --input, --output and --set."""
import os
import re
import shlex
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from conftest import ROOT

CONFIGS = sorted(f for f in os.listdir(os.path.join(ROOT, "configs")) if f.endswith(".yaml"))

# the keys of a stage that name a file of the user's; any other file key makes a config fail here
FILE_KEYS = {"dsir": {"target.path": "target"}, "quality_classifier": {"positives.path": "target"},
             "perplexity_correlation": {"losses": "perplexity/losses.csv", "errors": "perplexity/errors.csv"}}


def shardsift(*args, cwd, check=True):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-m", "shardsift", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True)
    if check and proc.returncode:
        raise AssertionError(f"shardsift {' '.join(map(str, args))}: {proc.stderr[-2000:]}")
    return proc


@pytest.fixture(scope="module")
def own_data(tmp_path_factory):
    """A generated corpus with a target and example loss files (shardsift sample), at a path of
    the user's choosing."""
    d = tmp_path_factory.mktemp("own")
    shardsift("sample", d / "corpus", "--docs", 1500, "--shards", 3, cwd=d)
    return d / "corpus"


def sets_for(config: str, data) -> list[str]:
    with open(os.path.join(ROOT, "configs", config), encoding="utf-8") as fh:
        raw = yaml.safe_load(fh)
    out = []
    for i, stage in enumerate(raw.get("stages") or []):
        name = stage if isinstance(stage, str) else next(iter(stage))
        for key, rel in FILE_KEYS.get(name, {}).items():
            out += ["--set", f"stages.{i}.{name}.{key}={data / rel}"]
    return out


def input_args(config: str, data) -> list:
    """--input, or for a mixture (a list of sources) each source's path: one pool shard each."""
    with open(os.path.join(ROOT, "configs", config), encoding="utf-8") as fh:
        raw = yaml.safe_load(fh)
    if not isinstance(raw.get("input"), list):
        return ["--input", data / "pool"]
    paths = [f"input.{k}.path={data / 'pool' / f'part-{k:05d}.parquet'}" for k in range(len(raw["input"]))]
    return [a for p in paths for a in ("--set", p)] + ["--set", "mix.tokens=60000"]


@pytest.mark.parametrize("config", CONFIGS)
def test_every_config_runs_on_own_data_with_input_output_and_set(config, own_data, tmp_path):
    out = tmp_path / "out"
    shardsift("check", f"configs/{config}", *input_args(config, own_data), "--output", out,
              *sets_for(config, own_data), cwd=ROOT)
    shardsift("select", f"configs/{config}", *input_args(config, own_data), "--output", out, "--quiet",
              "--workers", 2, *sets_for(config, own_data), cwd=ROOT)
    table = pq.read_table(out / "data")
    assert 0 < table.num_rows < 1500
    shardsift("verify", out, cwd=ROOT)


def test_the_readme_quickstart_literally(tmp_path):
    """The README's quickstart commands, in order, on a generated folder of raw shards."""
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as fh:
        readme = fh.read()
    section = readme.split("## Quickstart on your own data", 1)[1]
    block = re.search(r"```sh\n(.*?)```", section, re.DOTALL).group(1)
    lines, cont = [], ""
    for line in block.splitlines():
        line = line.split("#", 1)[0].rstrip() if not line.lstrip().startswith("#") else ""
        if line.endswith("\\"):
            cont += line[:-1] + " "
            continue
        if (cont + line).strip():
            lines.append(cont + line)
        cont = ""
    commands = [shlex.split(c) for c in lines if c.split()[0] == "shardsift"]
    assert [c[1] for c in commands] == ["check", "select", "report", "explain"]

    os.makedirs(tmp_path / "raw")
    os.symlink(os.path.join(ROOT, "configs"), tmp_path / "configs")
    rng = np.random.default_rng(0)
    words = np.array([f"w{i}" for i in range(3000)])
    for s in range(3):
        texts = [" ".join(rng.choice(words, 60)) for _ in range(300)]
        texts[:40] = texts[40:80]  # exact duplicates within the shard
        pq.write_table(pa.table({"text": texts, "url": [f"http://x/{s}/{i}" for i in range(300)]}),
                       tmp_path / "raw" / f"crawl-{s}.parquet")
    kept_id = None
    for cmd in commands:
        if cmd[1] == "explain":
            kept_id = pq.read_table(tmp_path / "out" / "curated" / "data").column("id")[0].as_py()
            cmd = [kept_id if a == "DOC_ID" else a for a in cmd]
        shardsift(*cmd[1:], cwd=tmp_path)
    import datasets

    ds = datasets.load_dataset("parquet", data_dir=str(tmp_path / "out" / "curated"), split="train")
    assert 700 <= len(ds) <= 780 and set(ds.column_names) == {"text", "url", "id"}
    assert (tmp_path / "out" / "curated" / ".shardsift" / "report.html").exists() and kept_id
