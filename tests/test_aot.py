"""Kernels compiled ahead of time (shardsift._aot) against numba's JIT: same results, no numba import.

The build is made once for this module in a temporary folder (SHARDSIFT_AOT_DIR) by a child process,
and every check that loads it runs in a child process too, so this process keeps whichever kernels
it has.
"""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import ROOT, file_digests

pytest.importorskip("numba.pycc", reason="numba.pycc (ahead-of-time compiler) is not in this numba")


def _child(code: str, env: dict) -> str:
    e = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), **env)
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=e)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


@pytest.fixture(scope="module")
def aot_dir(tmp_path_factory):
    import shutil

    if not (shutil.which("cc") or shutil.which("gcc")):
        pytest.skip("no C compiler (cc or gcc): numba.pycc cannot build the kernels here")
    d = str(tmp_path_factory.mktemp("aot"))
    out = _child("from shardsift import _aot\nprint(_aot.build(quiet=True))", {"SHARDSIFT_AOT_DIR": d})
    assert os.path.isfile(out.strip().splitlines()[-1])
    return d


def test_every_exported_kernel_matches_the_jit(aot_dir):
    """Each kernel's build, on real inputs (ASCII, non-ASCII, empty and long documents, band keys with
    collisions, int32 and int64 indexes), returns exactly what the numba dispatcher returns."""
    out = _child("""
        import numpy as np, pyarrow as pa
        from shardsift import _aot
        from shardsift import _numba
        from shardsift.selectors import dedup
        # the kernels, taken before numba is loaded (then the module's names point at dispatchers)
        import importlib
        class D:
            pass
        for q in _aot.EXPORTS:
            mod, name = q.split(":")
            setattr(D, name, getattr(importlib.import_module(mod), name))
        D._word_args, D.permutations, D._fp_room = dedup._word_args, dedup.permutations, dedup._fp_room
        assert all(isinstance(getattr(D, q.split(":")[1]), _numba.Kernel) for q in _aot.EXPORTS)
        rng = np.random.default_rng(3)
        words = ["alpha", "beta", "Gamma", "délta", "ε", "zeta,", "eta.", "x" * 70]
        texts = [" ".join(rng.choice(words, size=int(rng.integers(0, 400)))) for _ in range(300)]
        texts += ["", " ", "a", "word " * 5, "y" * 3000, " \\u3000A  b\\t\\n c\\x0b\\u2003 ", "\\x85\\xa0"]
        arr = pa.array(texts, pa.large_string())
        args = D._word_args(arr, 5, True)
        from shardsift.text import TRIM_CODE_POINTS as TRIM
        a, b = D.permutations(126, 1)
        sig, cnt = D._word_signatures.dispatcher(*args, a, b)
        bands = D._band_keys.dispatcher(sig, 21, 6)
        calls = {
            "_ascii_docs": [args[:3]],
            "_word_signatures": [(*args, a, b)],
            "_band_keys": [(sig, 21, 6)],
            "_word_band_keys": [(*args, a, b, 21, 6, np.zeros(0, np.uint32))],
            "_row_hash": [(bands, np.arange(len(texts), dtype=np.int32)),
                          (bands, np.arange(0, len(texts), 2, dtype=np.int64))],
            "_roots": [(np.array([0, 0, 1, 2, 4, 4, 5], np.int32),)],
            "_normalized_hashes": [(*args[:3], lo, co, TRIM) for lo in (False, True) for co in (False, True)],
        }
        keys = np.ascontiguousarray(bands[:, 0])
        keys[::7] = keys[0]
        n = len(keys)
        calls["_runs"] = [(keys, np.arange(n, dtype=np.int32))]
        def fresh(call):  # kernels that write into their arguments get a copy each
            return tuple(x.copy() if isinstance(x, np.ndarray) else x for x in call)
        checked = []
        for name, cases in calls.items():
            k = getattr(D, name)
            for call in cases:
                vs = [(f, ok) for f, ok in _aot.variants(k) if ok(call)]
                assert vs, name
                got, want = vs[0][0](*fresh(call)), k.dispatcher(*fresh(call))
                got = got if isinstance(got, tuple) else (got,)
                want = want if isinstance(want, tuple) else (want,)
                assert all(np.array_equal(g, w) and g.dtype == w.dtype for g, w in zip(got, want)), name
                checked.append(name)
        # in-place kernels: the verification sets, then clusters over them
        total = int(cnt.sum())
        outs = []
        for f in (_aot.variants(D._word_sets_into)[0][0], D._word_sets_into.dispatcher):
            data, off = np.zeros(total, np.uint32), np.zeros(len(texts) + 1, np.int64)
            f(*args, data, off, 0)
            outs.append((data, off))
        assert all(np.array_equal(x, y) for x, y in zip(*outs))
        data, off = outs[0]
        # the score's kept fingerprints, and the same verification sets made from them
        kept = []
        for f in (_aot.variants(D._word_band_keys)[0][0], D._word_band_keys.dispatcher):
            fp = np.zeros(D._fp_room(args[0], args[1]), np.uint32)
            f(*args, a, b, 21, 6, fp)
            kept.append(fp)
        assert np.array_equal(*kept) and kept[0][:total].any() and not kept[0][total:].any()
        fo = np.concatenate([[0], np.cumsum(cnt)]).astype(np.int64)
        for f in (_aot.variants(D._sets_from_kept)[0][0], D._sets_from_kept.dispatcher):
            d2, o2 = np.zeros(total, np.uint32), np.zeros(len(texts) + 1, np.int64)
            f(kept[0], fo, np.arange(len(texts), dtype=np.int64), d2, o2, 0)
            assert np.array_equal(o2, off) and np.array_equal(d2[:off[-1]], data[:off[-1]])
        members, starts = D._runs(keys, np.arange(n, dtype=np.int32))
        res = []
        for f in (_aot.variants(D._cluster_band)[0][0], D._cluster_band.dispatcher):
            parent, best, counts = np.arange(n, dtype=np.int32), np.zeros(n, np.float32), np.zeros(5, np.int64)
            refused = np.zeros(1024, np.uint64)
            for _ in range(2):  # the second time, the refused pairs are remembered
                f(members, starts, parent, data, off, 0.8, True, 4, best, counts, refused)
            res.append((parent, best, counts, refused))
        assert all(np.array_equal(x, y) for x, y in zip(*res)) and res[0][2][0] > 0
        print(sorted(set(checked)) + ["_word_sets_into", "_sets_from_kept", "_cluster_band"])
    """, {"SHARDSIFT_AOT_DIR": aot_dir})
    from shardsift import _aot

    done = eval(out.strip().splitlines()[-1])
    assert sorted(done) == sorted(q.split(":")[1] for q in _aot.EXPORTS)


def test_a_dedup_run_with_the_build_imports_no_numba_and_writes_the_same_bytes(aot_dir, tmp_path):
    """exact_dedup then minhash_dedup, with the build and under the JIT: same data, decisions and scores."""
    rng = np.random.default_rng(5)
    vocab = np.array([f"w{i}" for i in range(3000)])
    docs = [" ".join(vocab[rng.integers(0, 3000, 200)]) for _ in range(300)]
    docs += [d.replace(d.split()[3], "changed", 1) for d in docs[:100]]  # near duplicates
    docs += [d.upper() for d in docs[100:120]]  # exact duplicates once lowercased
    os.makedirs(tmp_path / "in")
    for s in range(3):
        part = docs[s::3]
        pq.write_table(pa.table({"id": [f"s{s}-{i}" for i in range(len(part))], "text": part}),
                       tmp_path / "in" / f"part-{s}.parquet")
    results = {}
    for mode, env in (("aot", {"SHARDSIFT_AOT_DIR": aot_dir}), ("jit", {"SHARDSIFT_AOT": "0"})):
        cfg = {"input": str(tmp_path / "in"), "output": {"path": str(tmp_path / mode), "scores": True},
               "workers": 1, "stages": [{"exact_dedup": {}}, {"minhash_dedup": {}}]}
        out = _child("import json, sys\nfrom shardsift.pipeline.runner import run_pipeline\n"
                     f"m = run_pipeline(json.loads({json.dumps(json.dumps(cfg))}))\n"
                     "print(m['stages'][1]['dropped'], m['stages'][2]['dropped'], 'numba' in sys.modules)\n", env)
        results[mode] = out.strip().splitlines()[-1]
    assert results["aot"] == "{'exact_duplicate': 20} {'near_duplicate': 100} False"
    assert results["jit"] == "{'exact_duplicate': 20} {'near_duplicate': 100} True"
    a, j = file_digests(tmp_path / "aot"), file_digests(tmp_path / "jit")
    output = lambda d: {k: v for k, v in d.items() if k.split("/")[0] in ("data", "decisions", "scores")}
    assert output(a) == output(j) and any(k.startswith("scores/") for k in output(a))


def test_a_minhash_run_with_the_build_imports_no_numba_pandas_or_arrow_compute(aot_dir, tmp_path):
    """Per process, numba's import costs ~0.7 CPU-s, pandas' ~0.3 and pyarrow.compute's ~0.045: a
    minhash_dedup run (scan, fused score, decide with read-back, write, decisions) needs none of
    them. Nulls and a non-ASCII document take the paths that filter, take and lowercase in Arrow."""
    docs = [f"shared words of a document number {i} " * 6 for i in range(40)]
    docs += [d + "tail" for d in docs[:10]] + ["Ünïcode Ünïcode " * 10, None, ""]
    os.makedirs(tmp_path / "in")
    pq.write_table(pa.table({"id": [f"d{i}" for i in range(len(docs))], "text": docs}), tmp_path / "in" / "p.parquet")
    cfg = {"input": str(tmp_path / "in"), "output": {"path": str(tmp_path / "out"), "scores": True},
           "workers": 1, "stages": [{"minhash_dedup": {"ngram": 3}}]}
    out = _child("import json, sys\nfrom shardsift.pipeline.runner import run_pipeline\n"
                 f"m = run_pipeline(json.loads({json.dumps(json.dumps(cfg))}))\n"
                 "print(m['stages'][1]['dropped'].get('near_duplicate', 0) > 0,"
                 " [k for k in ('numba', 'pandas', 'pyarrow.compute') if k in sys.modules])\n",
                 {"SHARDSIFT_AOT_DIR": aot_dir})
    assert out.strip().splitlines()[-1] == "True []"


def test_the_key_reads_the_versions_importlib_metadata_reads(tmp_path, monkeypatch):
    """The build's key takes its dependencies' versions from their .dist-info folders on sys.path
    (importlib.metadata's own answer, without its import); the first entry that has one wins."""
    import importlib.metadata

    from shardsift import _aot

    for dist in ("numba", "llvmlite", "numpy", "pyarrow", "fasttext-numpy2-wheel"):
        assert _aot._dist_version(dist) == importlib.metadata.version(dist), dist
    assert _aot._dist_version("no-such-distribution-here") == "none"
    (tmp_path / "numba-99.1.dist-info").mkdir()
    monkeypatch.syspath_prepend(str(tmp_path))
    assert _aot._dist_version("numba") == "99.1"


def test_arguments_the_build_does_not_take_run_under_the_jit(aot_dir):
    """An int64 index where the build takes int32, a strided array: the JIT runs them, same results."""
    out = _child("""
        import sys, numpy as np
        from shardsift.selectors import dedup as D
        keys = np.array([5, 3, 5, 9, 3, 5], np.uint64)
        m32, s32 = D._runs(keys, np.arange(6, dtype=np.int32))
        print('numba' in sys.modules)
        m64, s64 = D._runs(keys, np.arange(6, dtype=np.int64))   # i8 tables: not in the build
        print('numba' in sys.modules, m64.dtype, np.array_equal(m32, m64), np.array_equal(s32, s64))
        wide = np.arange(24, dtype=np.uint64).reshape(4, 6)
        print(np.array_equal(D._band_keys(wide[:, ::2], 1, 3), D._band_keys(np.ascontiguousarray(wide[:, ::2]), 1, 3)))
    """, {"SHARDSIFT_AOT_DIR": aot_dir})
    assert out.split() == ["False", "True", "int64", "True", "True", "True"]


def test_a_build_of_other_sources_is_not_loaded(aot_dir, tmp_path):
    """The module's name is the hash of the sources it was built from: a build left from other
    sources (renamed here as if it were) is ignored and the JIT runs."""
    other = tmp_path / "other"
    other.mkdir()
    prefix = "_shardsift_kernels_"
    for f in os.listdir(aot_dir):
        if f.startswith(prefix):  # same file, another key in its name
            os.link(os.path.join(aot_dir, f), other / (prefix + "0" * 16 + f[len(prefix) + 16:]))
    out = _child("""
        from shardsift import _aot
        print(_aot.load() is None, _aot.variants(__import__('shardsift.selectors.dedup', fromlist=['x'])._band_keys))
    """, {"SHARDSIFT_AOT_DIR": str(other)})
    assert out.split() == ["True", "()"]
    from shardsift import _aot

    assert len(_aot.key()) == 16
