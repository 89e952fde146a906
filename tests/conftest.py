import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPORA = os.path.join(os.path.dirname(ROOT), "shared", "corpora")


def as_docs(texts):
    """A batch of the given texts (a list or an Arrow array) as a selector's ``score`` receives it:
    ids "0", "1", ...; word and byte counts zero (the filters measure the text themselves)."""
    import numpy as np
    import pyarrow as pa

    from shardsift.api import Docs

    arr = texts if isinstance(texts, pa.Array) else pa.array(texts, pa.string())
    ids = pa.array([str(i) for i in range(len(arr))])
    return Docs(pa.table({"text": arr, "id": ids}), text_column="text", id_column="id",
                row=np.arange(len(arr)), n_words=np.zeros(len(arr), np.int64),
                n_bytes=np.zeros(len(arr), np.int64), shard="s", shard_index=0)


def corpora_path(*parts) -> str:
    """A path in ../shared/corpora, or skip the test saying where it looked."""
    path = os.path.join(CORPORA, *parts)
    if not os.path.exists(path):
        pytest.skip(f"real corpora not found at {path} (../shared/corpora beside the checkout)")
    return path


def run_cli(*args, env=None, check=True, **kw):
    """Run `python -m shardsift ...` in a subprocess (its own session, so kill tests can SIGKILL it)."""
    e = dict(os.environ)
    e.pop("SHARDSIFT_KILL_AT", None)
    e["PYTHONPATH"] = ROOT + os.pathsep + e.get("PYTHONPATH", "")
    e.update(env or {})
    proc = subprocess.run([sys.executable, "-m", "shardsift", *map(str, args)], capture_output=True, text=True,
                          env=e, start_new_session=True, **kw)
    if check and proc.returncode != 0:
        raise AssertionError(f"shardsift {' '.join(map(str, args))} exited {proc.returncode}:\n{proc.stderr}")
    return proc


def file_digests(folder) -> dict:
    from shardsift.engine.accounting import folder_digests

    return folder_digests(str(folder))


@pytest.fixture(scope="session")
def sample_dir(tmp_path_factory):
    from shardsift.sample import write_sample

    d = tmp_path_factory.mktemp("sample")
    write_sample(str(d), n_docs=1200, n_shards=3, seed=0)
    return d
