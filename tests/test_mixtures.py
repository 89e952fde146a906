"""Mixtures: several named sources, per-source stages, the token-exact mix step (docs/mixtures.md)."""
import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from conftest import file_digests, run_cli

from shardsift.engine.mix import plan_copies
from shardsift.engine.runner import run_pipeline
from shardsift.errors import DataError
from shardsift.output import verify_output

WORDS = np.array(["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa", "lambda", "mu", "nu", "xi", "omicron"])
WEIGHTS = {"web": 0.6, "code": 0.25, "books": 0.15}


def write_source(folder, name, n_docs, n_shards, mean_words, seed, extra=None):
    """``n_docs`` generated documents of about ``mean_words`` words in ``n_shards`` Parquet files."""
    rng = np.random.default_rng(seed)
    os.makedirs(folder, exist_ok=True)
    lens = rng.integers(max(1, mean_words // 2), mean_words * 3 // 2, n_docs)
    texts = [" ".join(rng.choice(WORDS, n)) for n in lens]
    ids = [f"{name}-{i:06d}" for i in range(n_docs)]
    for s, part in enumerate(np.array_split(np.arange(n_docs), n_shards)):
        cols = {"id": [ids[i] for i in part], "text": [texts[i] for i in part]}
        cols.update({k: v[: len(part)] for k, v in (extra or {}).items()})
        pq.write_table(pa.table(cols), os.path.join(folder, f"part-{s:03d}.parquet"))
    return folder


@pytest.fixture(scope="module")
def pools(tmp_path_factory):
    """web: large, with short documents a web-only length filter removes; code: medium, short
    documents; books: small, too small for 15% of the budget without repetition."""
    d = tmp_path_factory.mktemp("pools")
    return {"web": write_source(str(d / "web"), "web", 3000, 3, 80, 1),
            "code": write_source(str(d / "code"), "code", 1500, 2, 40, 2),
            "books": write_source(str(d / "books"), "books", 100, 1, 200, 3)}


def mixture(pools, out, *, workers=1, tokens="200k", max_epochs=4, weights=WEIGHTS, **more):
    return {
        "input": [{"name": "web", "path": pools["web"], "weight": weights["web"],
                   "stages": [{"length": {"min_words": 60}}]},
                  {"name": "code", "path": pools["code"], "weight": weights["code"]},
                  {"name": "books", "path": pools["books"], "weight": weights["books"]}],
        "mix": {"tokens": tokens, "max_epochs": max_epochs},
        "stages": ["exact_dedup"], "output": str(out), "workers": workers, **more}


def output_tokens_by_source(out) -> dict:
    """Whitespace-word tokens of every output row, by its source column (repetitions counted)."""
    t = pq.read_table(os.path.join(out, "data"))
    words = np.array([len(x.split()) for x in t.column("text").to_pylist()])
    src = np.array(t.column("source").to_pylist())
    return {name: int(words[src == name].sum()) for name in WEIGHTS}


def test_three_sources_shares_upsampling_and_workers(pools, tmp_path):
    m1 = run_pipeline(mixture(pools, tmp_path / "w1", workers=1))
    m2 = run_pipeline(mixture(pools, tmp_path / "w2", workers=2))
    assert file_digests(tmp_path / "w1" / "data") == file_digests(tmp_path / "w2" / "data")
    assert file_digests(tmp_path / "w1" / ".shardsift" / "decisions") == \
        file_digests(tmp_path / "w2" / ".shardsift" / "decisions")

    toks = output_tokens_by_source(str(tmp_path / "w1"))
    total = sum(toks.values())
    assert abs(total - 200_000) / 200_000 < 0.005
    for name, w in WEIGHTS.items():
        assert abs(toks[name] / total - w) < 0.005, (name, toks[name] / total)

    src = {s["name"]: s for s in m1["sources"]}
    assert {k: src[k]["tokens_out"] for k in WEIGHTS} == toks  # the manifest counts what was written
    books = src["books"]
    assert books["epochs"] > 1 and books["rows_out"] > books["docs_out"] == 100 and not books["short"]
    assert src["web"]["epochs"] < 1 and src["web"]["rows_out"] == src["web"]["docs_out"]
    assert m1["rows_written"] == sum(s["rows_out"] for s in m1["sources"]) > m1["docs_kept"]
    assert m1["warnings"] == [] and m2["sources"] == m1["sources"]

    t = pq.read_table(str(tmp_path / "w1" / "data"), columns=["id", "source", "epoch"])
    again = t.filter(pc.greater(t.column("epoch"), 0))
    assert set(again.column("source").to_pylist()) == {"books"}
    assert again.num_rows == books["rows_out"] - books["docs_out"]
    checked = verify_output(str(tmp_path / "w1"))
    assert checked["docs_kept"] == m1["docs_kept"] and checked["rows"] == m1["rows_written"]
    # a repetition written as a first copy is caught
    part = next(p for p in sorted((tmp_path / "w2" / "data").glob("*.parquet"))
                if pc.max(pq.read_table(p, columns=["epoch"]).column("epoch")).as_py())
    tbl = pq.read_table(part)
    pq.write_table(tbl.set_column(tbl.schema.get_field_index("epoch"), "epoch",
                                  pa.array(np.zeros(tbl.num_rows, np.int32))), part)
    with pytest.raises(DataError):
        verify_output(str(tmp_path / "w2"))

    # the web-only length stage never touched the other sources
    dec = pq.read_table(str(tmp_path / "w1" / ".shardsift" / "decisions"))
    short = dec.filter(pc.equal(dec.column("reason").cast(pa.string()), "too_short")).column("id").to_pylist()
    assert short and all(i.startswith("web-") for i in short)
    scored = pq.read_table(str(tmp_path / "w1" / ".shardsift" / "scores" / "stage-01-web_length.parquet"))
    assert scored.num_rows == 3000 and all(i.startswith("web-") for i in scored.column("id").to_pylist())


def test_too_small_source_is_reported(pools, tmp_path):
    cfg = tmp_path / "mix.yaml"
    cfg.write_text(json.dumps(mixture(pools, tmp_path / "out", max_epochs=1)))
    proc = run_cli("select", str(cfg))
    warn = [ln for ln in proc.stderr.splitlines() if "too small" in ln]
    assert len(warn) == 1 and "'books'" in warn[0], proc.stderr
    m = json.loads((tmp_path / "out" / ".shardsift" / "manifest.json").read_text())
    src = {s["name"]: s for s in m["sources"]}
    assert src["books"]["short"] and src["books"]["rows_out"] == src["books"]["docs_out"] == 100
    assert src["books"]["tokens_out"] == src["books"]["tokens_selected"] < src["books"]["target_tokens"]
    for name in ("web", "code"):  # the others still get their own targets
        assert abs(src[name]["tokens_out"] - src[name]["target_tokens"]) <= 120
    assert pc.max(pq.read_table(str(tmp_path / "out" / "data"), columns=["epoch"]).column("epoch")).as_py() == 0
    inspect = run_cli("inspect", str(tmp_path / "out")).stdout
    assert "sources:" in inspect and "(short)" in inspect
    run_cli("report", str(tmp_path / "out"))
    html = (tmp_path / "out" / ".shardsift" / "report.html").read_text()
    section = html.split('<section id="sources">', 1)[1].split("</section>", 1)[0]
    assert "<td>books</td>" in section and "too small for their share" in section


@pytest.mark.parametrize("change, message", [
    (lambda c: c["input"][1].update(name="web"), "input[1].name: source name 'web' is used twice"),
    (lambda c: c["input"][2].update(weight=0.1), "input: source weights sum to 0.95"),
    (lambda c: c["input"][2].update(tokens="1M"), "input[2] (books): give one of weight, tokens or fraction"),
    (lambda c: c["input"][2].pop("weight"), "input[2] (books): give a weight like the other sources"),
    (lambda c: c.update(output={"path": c["output"], "tokens": "100k"}), "output.tokens: a mixture's output size"),
    (lambda c: c["mix"].update(tokens="lots"), "config.mix.tokens"),
])
def test_bad_mixture_is_one_line_and_writes_nothing(pools, tmp_path, change, message):
    raw = mixture(pools, tmp_path / "out")
    change(raw)
    cfg = tmp_path / "mix.yaml"
    cfg.write_text(json.dumps(raw))
    proc = run_cli("select", str(cfg), check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and message in proc.stderr, proc.stderr
    assert not (tmp_path / "out").exists()


def test_sources_without_shares_fused_and_not(pools, tmp_path):
    """Sources with no share: every document once, with its source; a source's document stage
    runs fused in the scan or in its own tasks to the same bytes."""
    raw = {"input": [{"name": "web", "path": pools["web"], "stages": [{"length": {"min_words": 60}}]},
                     {"name": "code", "path": pools["code"]}], "workers": 1}
    fused = run_pipeline({**raw, "output": str(tmp_path / "a")})
    apart = run_pipeline({**raw, "output": str(tmp_path / "b"), "on_duplicate_id": "keep_first"})
    assert file_digests(tmp_path / "a" / "data") == file_digests(tmp_path / "b" / "data")
    t = pq.read_table(str(tmp_path / "a" / "data"))
    assert "epoch" not in t.column_names and [s["name"] for s in fused["sources"]] == ["web", "code"]
    code = fused["sources"][1]
    assert code["docs_out"] == code["docs_in"] == 1500 and code["epochs"] == 1.0
    assert t.num_rows == fused["docs_kept"] == apart["docs_kept"]
    assert pc.sum(pc.equal(t.column("source"), "code")).as_py() == 1500


def test_downsampling_is_the_same_for_any_sharding(tmp_path):
    one = write_source(str(tmp_path / "one"), "web", 2000, 1, 50, 7)
    many = write_source(str(tmp_path / "many"), "web", 2000, 5, 50, 7)
    small = write_source(str(tmp_path / "small"), "code", 300, 1, 50, 8)
    kept = []
    for k, path in enumerate((one, many)):
        raw = {"input": [{"name": "web", "path": path, "weight": 0.5}, {"name": "code", "path": small, "weight": 0.5}],
               "mix": {"tokens": 20_000, "max_epochs": 2, "seed": 3}, "output": str(tmp_path / f"o{k}")}
        run_pipeline(raw)
        t = pq.read_table(str(tmp_path / f"o{k}" / "data"), columns=["id", "epoch"])
        kept.append(sorted(zip(t.column("id").to_pylist(), t.column("epoch").to_pylist())))
    assert kept[0] == kept[1] and len(kept[0]) > 0


def test_input_column_named_source_is_refused(tmp_path):
    a = write_source(str(tmp_path / "a"), "a", 50, 1, 20, 1, extra={"source": ["crawl"] * 50})
    b = write_source(str(tmp_path / "b"), "b", 50, 1, 20, 2)
    cfg = tmp_path / "mix.yaml"
    cfg.write_text(json.dumps({"input": [{"name": "a", "path": a}, {"name": "b", "path": b}],
                               "output": str(tmp_path / "out")}))
    proc = run_cli("select", str(cfg), check=False)
    assert proc.returncode == 1 and "has a column 'source'" in proc.stderr and "part-000.parquet" in proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and not (tmp_path / "out").exists()


def test_plan_copies_is_token_exact_and_capped():
    tok = np.full(100, 10, np.int64)
    assert plan_copies(tok, 455, 4).sum() == 46  # nearest prefix: 460 is 5 away, 450 is 5 away: the longer
    assert plan_copies(tok, 2504, 4).tolist() == [3] * 50 + [2] * 50  # two epochs, then half of the order
    capped = plan_copies(tok, 10_000, 2.5)
    assert capped.sum() == 250 and capped.max() == 3  # at most 2.5 epochs
    assert plan_copies(tok, 0, 4).sum() == 0 and plan_copies(tok[:0], 100, 4).sum() == 0


def test_a_sources_global_stage_sees_its_own_documents_only(tmp_path):
    """exact_dedup as web's own stage removes web's duplicates, never code's copies of web texts;
    as a shared stage it removes duplicates across sources."""
    for half in ("a", "b"):
        write_source(str(tmp_path / "web" / half), f"web{half}", 100, 1, 20, 5)
    code = write_source(str(tmp_path / "code"), "code", 100, 1, 20, 5)  # the same texts again
    own = {"input": [{"name": "web", "path": str(tmp_path / "web"), "stages": ["exact_dedup"]},
                     {"name": "code", "path": code}], "output": str(tmp_path / "own")}
    m = run_pipeline(own)
    assert {s["name"]: s["docs_out"] for s in m["sources"]} == {"web": 100, "code": 100}
    assert m["stages"][1]["name"] == "web/exact_dedup" and m["stages"][1]["dropped"] == {"exact_duplicate": 100}
    shared = run_pipeline({**own, "input": [{"name": "web", "path": str(tmp_path / "web")},
                                            {"name": "code", "path": code}],
                           "stages": ["exact_dedup"], "output": str(tmp_path / "shared")})
    assert sum(s["docs_out"] for s in shared["sources"]) == 100
    assert verify_output(str(tmp_path / "own"))["docs_kept"] == 200


@pytest.mark.parametrize("point", ["scan:4", "decide:02:1", "write:5"])
def test_a_killed_mixture_resumes_to_the_same_bytes(pools, tmp_path, point):
    """Killed in a code shard's scan (a web-only stage fused in it), in the mix step's decide, or
    writing the books shard: the rerun finishes to the bytes of an uninterrupted run."""
    ref = tmp_path / "ref"
    run_pipeline(mixture(pools, ref))
    cfg = tmp_path / "mix.yaml"
    cfg.write_text(json.dumps(mixture(pools, tmp_path / "out")))
    killed = run_cli("select", str(cfg), "--quiet", env={"SHARDSIFT_KILL_AT": point}, check=False)
    assert killed.returncode != 0 and not (tmp_path / "out" / ".shardsift" / "manifest.json").exists()
    run_cli("select", str(cfg), "--quiet")
    for sub in ("data", ".shardsift/decisions", ".shardsift/scores"):
        assert file_digests(tmp_path / "out" / sub) == file_digests(ref / sub), sub


def test_python_api_takes_a_list_of_sources(pools, tmp_path):
    import shardsift

    pipe = shardsift.Pipeline([{"length": {"min_words": 30}}], workers=1)
    res = pipe.run([{"name": "code", "path": pools["code"], "fraction": 0.5},
                    {"name": "books", "path": pools["books"], "tokens": 30_000}], str(tmp_path / "out"),
                   mix={"max_epochs": 2})
    src = {s["name"]: s for s in res.manifest["sources"]}
    assert abs(src["code"]["tokens_out"] - 0.5 * src["code"]["tokens_selected"]) <= 60
    assert abs(src["books"]["tokens_out"] - 30_000) <= 300 and src["books"]["epochs"] > 1
    assert set(res.to_table().column("source").to_pylist()) == {"code", "books"}


def test_a_sources_missing_stage_file_is_one_line_before_the_scan(tmp_path):
    """select's pre-scan file check covers a source's own stages too: one line naming the source's
    stage, key and path, and no output folder."""
    for name in ("a", "b"):
        os.makedirs(tmp_path / name)
        pq.write_table(pa.table({"id": [f"{name}1", f"{name}2"], "text": ["one two three", "four five six"]}),
                       tmp_path / name / "p.parquet")
    cfg = {"input": [{"name": "a", "path": str(tmp_path / "a"), "weight": 0.5,
                      "stages": [{"dsir": {"target": str(tmp_path / "nope"), "keep": 0.5}}]},
                     {"name": "b", "path": str(tmp_path / "b"), "weight": 0.5}],
           "output": str(tmp_path / "out"), "stages": []}
    with pytest.raises(DataError, match=r"input\[0\]\.stages\[0\]\.dsir\.target: .*nope not found") as err:
        run_pipeline(cfg, progress=False)
    assert "\n" not in str(err.value) and not (tmp_path / "out").exists()
