"""The HTML report, `shardsift report`, `shardsift compare` and `select --report` on real pipeline runs of
the generated sample corpus. Stages that stand in for the built-in selectors (tests/report_fakes.py) emit
the same sidecar columns and metrics, so every section is drawn."""
from __future__ import annotations

import base64
import json
import os
import re
import shutil
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest


def cli(capsys, *args):
    """`shardsift ...` in-process (the subprocess path is covered by the pipeline tests): (code, out, err)."""
    from shardsift.cli import main

    capsys.readouterr()
    code = main([str(a) for a in args])
    cap = capsys.readouterr()
    return code, cap.out, cap.err

HERE = os.path.dirname(os.path.abspath(__file__))
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

STAGES = [{"length": {"min_words": 20}}, {"report_fakes:FakeDedup": {}},
          {"report_fakes:FakeImportance": {"keep": 0.8}}, {"report_fakes:FakeKMeans": {}},
          {"random": {"keep": 0.9}}, {"report_fakes:FakePerplexity": {}}]


def _run(pool, out, seed=0, stages=STAGES, scores=True):
    from shardsift.engine.runner import run_pipeline

    if HERE not in sys.path:
        sys.path.insert(0, HERE)
    return run_pipeline({"input": {"path": str(pool)}, "output": {"path": str(out), "scores": scores},
                         "workers": 1, "seed": seed, "stages": stages}, overwrite=True)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    from shardsift.sample import write_sample

    d = tmp_path_factory.mktemp("report")
    write_sample(str(d / "sample"), n_docs=600, n_shards=3, seed=0)
    outs = {}
    for seed in (0, 1):
        _run(d / "sample" / "pool", d / f"out{seed}", seed=seed)
        outs[seed] = str(d / f"out{seed}")
    return d, outs


@pytest.fixture(scope="module")
def page(runs):
    from shardsift.report import write_report

    path = write_report(runs[1][0], label_column="domain")
    with open(path, encoding="utf-8") as fh:
        return path, fh.read()


def _read(path) -> str:
    with open(path, encoding="utf-8") as fh:
        return fh.read()


def _images(html: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r'<img[^>]*src="data:image/png;base64,([^"]+)"', html)]


def test_report_is_self_contained(page):
    path, html = page
    assert os.path.basename(path) == "report.html"
    assert html.startswith("<!DOCTYPE html>")
    # nothing is fetched: no external src/href, no scripts, no stylesheets, no url() in the CSS
    assert not re.search(r'(src|href)\s*=\s*["\']?\s*(https?:)?//', html, re.IGNORECASE)
    assert "<script" not in html.lower() and "<link" not in html.lower() and "url(" not in html
    srcs = re.findall(r'src="([^"]*)"', html)
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)
    imgs = _images(html)
    assert len(imgs) == len(srcs) >= 15
    import io

    from PIL import Image

    for data in imgs:
        assert data.startswith(PNG_MAGIC)
        im = Image.open(io.BytesIO(data))
        im.verify()
        assert im.size[0] > 100 and im.size[1] > 100


def test_report_has_funnel_and_every_stage(page, runs):
    _, html = page
    with open(os.path.join(runs[1][0], ".shardsift", "manifest.json")) as fh:
        m = json.load(fh)
    assert '<section id="funnel">' in html and '<section id="summary">' in html
    for i, st in enumerate(m["stages"][1:], start=1):
        sec = re.search(rf'<section id="stage-{i}">(.*?)</section>', html, re.DOTALL)
        assert sec, f"no section for stage {i}"
        body = sec.group(1)
        assert f"{st['kept']:,} kept" in body
        assert "sample kept documents" in body and "sample dropped documents" in body
        assert "score distribution" not in body or "<img" in body
    funnel = re.search(r'<section id="funnel">(.*?)</section>', html, re.DOTALL).group(1)
    # documents and tokens after every stage, as in the manifest
    for st in m["stages"][1:]:
        assert f"<td>after {st['name']}</td><td>{st['kept']:,}</td>" in funnel
    assert f"<td>{m['tokens_kept']:,}</td>" in funnel and "<img" in funnel
    # the per-stage error note never appears: every section drew
    assert "could not be drawn" not in html and "plot not drawn" not in html


def test_report_selector_sections(page, runs):
    _, html = page
    sec = {int(k): v for k, v in re.findall(r'<section id="stage-(\d+)">(.*?)</section>', html, re.DOTALL)}
    # every stage's score is named in words (the length filter's score is the length)
    assert "distribution of words per document" not in sec[1] or "log scale" in sec[1]
    assert "Score: words per document." in sec[1]
    assert "Score: similarity to nearest duplicate." in sec[2]
    assert "Score: log importance weight." in sec[3] and "Score: distance to the cluster centroid." in sec[4]
    assert "Score: random draw (uniform in 0..1)." in sec[5] and "Score: fastText include probability." in sec[6]
    # duplicates: cluster-size histogram, only clustered documents in the score histogram, and pairs
    # whose survivor's text comes from the output beside the stage's similarity
    assert "duplicate clusters" in sec[2] and "documents without a duplicate (all kept) are not shown" in sec[2]
    assert "sample duplicate pairs" in sec[2]
    pairs = re.search(r"<h3>sample duplicate pairs</h3>(.*?)</table>", sec[2], re.DOTALL).group(1)
    sims = [float(x) for x in re.findall(r'<td class="num">([01](?:\.\d+)?)</td>', pairs)]
    assert sims and all(0.5 <= j <= 1.0 for j in sims)
    assert pairs.count("(text not in the output") < pairs.count("<tr>") - 1
    # the importance stage: score against length, lengths taken from the length stage's scores
    assert "against length" not in sec[1] and "lengths from the scores of stage 1 (length)" in sec[3]
    # k-means: score histogram, score against length, sizes before/after, and a projection of the
    # embeddings the sidecar holds
    assert sec[4].count("<img") >= 4 and "no projection" not in sec[4]
    # perplexity: top keys table and classifier quality, the threshold marks the cut
    assert "domain0" in sec[6] and "holdout_precision" in sec[6]
    assert sec[6].count("<img") >= 4
    # composition of the output by the label column, in documents and words
    comp = re.search(r'<section id="composition">(.*?)</section>', html, re.DOTALL).group(1)
    assert "<img" in comp and "astronomy" in comp and "<th>output</th>" in comp and "<th>words</th>" in comp
    # dropped documents are named, their texts are said to be missing
    assert "dropped documents&#x27; texts are not stored in the output" in sec[3]


def test_report_projection_of_sidecar_embeddings(runs, tmp_path):
    """The k-means stand-in stores its embeddings in the sidecar: the page projects them; without
    that column the section says there is no projection."""
    from shardsift.output import read_scores
    from shardsift.report import write_report

    _, outs = runs
    t = read_scores(outs[0])[4]
    assert "embedding" in t.column_names and len(t.column("embedding")[0].as_py()) == 32
    html = _read(write_report(outs[0], path=str(tmp_path / "r.html")))
    sec4 = re.search(r'<section id="stage-4">(.*?)</section>', html, re.DOTALL).group(1)
    assert "no projection" not in sec4 and sec4.count("<img") >= 4
    side = os.path.join(outs[0], ".shardsift", "scores", "stage-04-report_fakes_FakeKMeans.parquet")
    copy = tmp_path / "out"
    shutil.copytree(outs[0], copy)
    pq.write_table(t.drop_columns(["embedding"]), copy / ".shardsift" / "scores" / os.path.basename(side))
    sec4 = re.search(r'<section id="stage-4">(.*?)</section>', _read(write_report(str(copy))), re.DOTALL).group(1)
    assert "the scores sidecar of this stage has no &#x27;embedding&#x27; column" in sec4


def test_report_text_is_escaped_and_truncated(tmp_path):
    from shardsift.report import write_report

    pool = tmp_path / "pool"
    pool.mkdir()
    texts = ["<script>alert('x')</script> & " + "word " * 100, "plain " * 30 + "<b>bold</b>", "tiny"]
    pq.write_table(pa.table({"id": ["a", "b", "c"], "text": texts}), pool / "p.parquet")
    _run(pool, tmp_path / "out", stages=[{"length": {"min_words": 5}}])
    html = _read(write_report(str(tmp_path / "out"), samples=10))
    assert "<script>" not in html and "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp;" in html
    assert "<b>bold</b>" not in html
    # the first 300 characters only
    shown = re.search(r"&lt;script&gt;alert.*?</td>", html, re.DOTALL).group(0)
    assert "..." in shown and shown.count("word") < 300 // 5 + 1


def _without_timestamp(html: str) -> str:
    return re.sub(r" &middot; report \S+</p>", "</p>", html)


def test_report_reads_only_the_output(tmp_path, runs):
    """No sidecar: the manifest still gives the funnel with words after every stage and the output
    its composition; the page is the same once the input and the work dir are gone."""
    from shardsift.report import write_report

    d, _ = runs
    pool = tmp_path / "pool"
    shutil.copytree(d / "sample" / "pool", pool)
    m = _run(pool, tmp_path / "out", stages=STAGES[:2], scores=False)
    before = _read(write_report(str(tmp_path / "out"), label_column="domain"))
    comp = re.search(r'<section id="composition">(.*?)</section>', before, re.DOTALL).group(1)
    assert "<th>output</th>" in comp and "stores the label of kept documents only" in comp
    funnel = re.search(r'<section id="funnel">(.*?)</section>', before, re.DOTALL).group(1)
    assert f"<td>{m['docs_kept']:,}</td><td>{100 * m['docs_kept'] / m['docs_in']:.1f}%</td>" \
        f"<td>{m['tokens_kept']:,}</td>" in funnel
    for st in m["stages"][1:]:
        assert f"<td>after {st['name']}</td><td>{st['kept']:,}</td>" in funnel
    assert "No scores/ sidecar" in before and "could not be drawn" not in before
    shutil.rmtree(pool)
    shutil.rmtree(tmp_path / "out" / ".work", ignore_errors=True)
    after = _read(write_report(str(tmp_path / "out"), label_column="domain"))
    assert _without_timestamp(after) == _without_timestamp(before)


def test_axes_for_scores_that_span_orders_of_magnitude():
    """Lengths of 20 to 100,000 words get a log axis; DSIR log weights with a few documents down at
    -300,000 get the central 99% and a caption naming the outliers; a plain range stays linear."""
    import numpy as np

    from shardsift.report.plots import axis_for, score_hist

    rng = np.random.default_rng(0)
    words = np.exp(rng.uniform(np.log(20), np.log(100_000), 5000))
    ax = axis_for(words, positive=True)
    assert ax.log and ax.lo == words.min() and ax.hi == words.max() and not ax.below and not ax.above
    weights = np.r_[rng.normal(-500, 300, 5000), [-300_000.0, -250_000.0, -120_000.0]]
    ax = axis_for(weights, positive=False)
    assert not ax.log and -2500 < ax.lo < -1000 and ax.below == int((weights < ax.lo).sum()) >= 3
    assert "outliers of x not shown" in ax.outliers("x") and "-3e+05" in ax.outliers("x")
    flat = rng.uniform(0, 1, 1000)
    ax = axis_for(flat, positive=False)
    assert not ax.log and ax.lo == flat.min() and ax.hi == flat.max() and not ax.outliers("x")
    kept = weights > -400
    html = score_hist(weights, kept, "DSIR log importance weight", False)
    assert html.count("<img") == 1 and "outliers of DSIR log importance weight not shown" in html
    assert "lowest -3e+05" in html


def test_report_cli_and_select_flag(tmp_path, runs, capsys):
    d, outs = runs
    code, out, _ = cli(capsys, "report", outs[0], "--label-column", "domain", "--path", tmp_path / "r.html")
    assert code == 0 and out.strip() == str(tmp_path / "r.html") and (tmp_path / "r.html").stat().st_size > 10_000
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"input: {{path: {d / 'sample' / 'pool'}}}\noutput: {{path: {tmp_path / 'o'}, scores: true}}\n"
                   "workers: 1\nstages:\n  - length: {min_words: 20}\n")
    code, out, _ = cli(capsys, "select", cfg, "--quiet", "--report")
    path = str(tmp_path / "o" / ".shardsift" / "report.html")
    assert code == 0 and f"report: {path}" in out and os.path.exists(path)
    code, _, err = cli(capsys, "report", tmp_path / "nothing")
    assert code == 1 and "no .shardsift/manifest.json" in err and err.count("\n") == 1


def test_compare_two_seeds(runs, capsys):
    from shardsift.compare import compare_outputs, format_compare

    _, outs = runs
    res = compare_outputs(outs[0], outs[1])
    k = res["kept"]
    assert k["a"] == k["both"] + k["a_only"] and k["b"] == k["both"] + k["b_only"]
    assert 0 < k["both"] < k["a"] and 0 < k["jaccard"] < 1  # the random stage differs by seed
    assert abs(k["jaccard"] - k["both"] / (k["a"] + k["b"] - k["both"])) < 1e-12
    assert {"key": "seed", "a": "0", "b": "1"} in res["config"]
    assert res["label_column"] == "domain"
    comp = {c["label"]: c for c in res["composition"]}
    assert sum(c["a"] for c in comp.values()) == k["a"] and sum(c["b"] for c in comp.values()) == k["b"]
    same = compare_outputs(outs[0], outs[0])
    assert same["kept"]["jaccard"] == 1.0 and same["kept"]["a_only"] == 0 and not same["config"]
    assert all(not s["metrics"] or all(m["key"] for m in s["metrics"]) for s in same["stages"])
    text = format_compare(res)
    assert f"Jaccard {k['jaccard']:.4f}" in text and "seed: A 0  B 1" in text and "astronomy" in text
    code, out, _ = cli(capsys, "compare", outs[0], outs[1])
    assert code == 0 and f"A only {k['a_only']:,}" in out and "composition by domain" in out
    code, out, _ = cli(capsys, "compare", outs[0], outs[1], "--json")
    assert code == 0 and json.loads(out)["kept"] == k


def test_inspect_prints_timings_and_memory(runs, capsys):
    _, outs = runs
    code, out, _ = cli(capsys, "inspect", outs[0])
    assert code == 0
    assert "wall s" in out and "cpu s" in out and "peak MB" in out and "peak memory" in out


def test_report_when_a_stage_drops_everything(tmp_path, runs, capsys):
    from shardsift.report import write_report

    d, _ = runs
    m = _run(d / "sample" / "pool", tmp_path / "out",
             stages=[{"length": {"min_words": 10}}, {"length": {"min_words": 10**6}}, {"random": {"keep": 0.5}}])
    assert m["docs_kept"] == 0
    from shardsift.output import verify_output

    assert verify_output(str(tmp_path / "out"))["docs_kept"] == 0
    html = _read(write_report(str(tmp_path / "out"), label_column="domain"))
    assert "could not be drawn" not in html and "plot not drawn" not in html
    assert '<section id="stage-3">' in html and "no scores sidecar for this stage" in html
    code, out, _ = cli(capsys, "inspect", tmp_path / "out")
    assert code == 0 and f"report: {tmp_path / 'out' / '.shardsift' / 'report.html'}" in out


def test_verify_explain_report_compare_read_an_output_on_s3(runs, tmp_path):
    """Every reader goes through the storage layer: an output on an S3 server (moto, over HTTP) is
    verified, explained, reported and compared like the local copy it was uploaded from."""
    from s3_server import moto_s3

    from shardsift.compare import compare_outputs
    from shardsift.io import storage
    from shardsift.output import explain, verify_output
    from shardsift.report import write_report

    _, outs = runs
    local = outs[0]
    with moto_s3("report-test") as (opts, fs):
        for root, _, files in os.walk(local):
            for f in files:
                rel = os.path.relpath(os.path.join(root, f), local)
                if not rel.startswith((".work", ".shardsift/report.html")):
                    fs.put_file(os.path.join(root, f), f"report-test/out/{rel}")
        remote = "s3://report-test/out"
        storage.set_options(remote, opts)
        assert verify_output(remote) == verify_output(local)
        dec = pq.read_table(os.path.join(local, ".shardsift", "decisions"))
        for doc_id in (dec.filter(dec.column("kept")).column("id")[0].as_py(),
                       dec.filter(pa.compute.invert(dec.column("kept"))).column("id")[0].as_py()):
            assert explain(remote, doc_id) == explain(local, doc_id)
        res = compare_outputs(local, remote)
        assert res["kept"]["jaccard"] == 1.0 and res["composition"] and not res["config"]
        page = write_report(remote, label_column="domain")
        assert page == f"{remote}/.shardsift/report.html" and fs.exists("report-test/out/.shardsift/report.html")
        html = fs.cat_file("report-test/out/.shardsift/report.html").decode()
        ref = _read(write_report(local, label_column="domain", path=str(tmp_path / "local.html")))
        assert html[html.index("<section"):] == ref[ref.index("<section"):]


def test_report_lists_the_models_the_output_holds(runs, tmp_path):
    """A stage's fitted models (manifest output.models, files under models/) are listed with their
    size; one the manifest names but the output lacks is not."""
    from shardsift.output import models, models_dir
    from shardsift.report import write_report

    _, outs = runs
    out = tmp_path / "out"
    shutil.copytree(outs[0], out, ignore=shutil.ignore_patterns(".work"))
    os.makedirs(os.path.join(models_dir(str(out)), "stage-06-x"))
    (out / ".shardsift" / "models" / "stage-06-x" / "weights.bin").write_bytes(b"\0" * 1_500_000)
    m = json.loads((out / ".shardsift" / "manifest.json").read_text())
    name = m["stages"][6]["name"]
    m["output"]["models"] = {name: {"weights": ".shardsift/models/stage-06-x/weights.bin",
                                   "gone": ".shardsift/models/stage-06-x/gone.bin"}}
    (out / ".shardsift" / "manifest.json").write_text(json.dumps(m))
    assert list(models(str(out), m)[name]) == ["weights"]
    sec = re.search(r'<section id="stage-6">(.*?)</section>', _read(write_report(str(out))), re.DOTALL).group(1)
    assert "fitted models in the output: weights (<code>.shardsift/models/stage-06-x/weights.bin</code>, 1.5 MB)" in sec
    assert "gone" not in sec


def test_output_layout_names_every_file_of_a_run(runs):
    """The layout functions of shardsift.output name what the engine wrote."""
    from shardsift import output
    from shardsift.errors import DataError

    _, outs = runs
    out = outs[0]
    m = output.load_manifest(out)
    assert [os.path.relpath(p, out) for p in output.data_files(out)] == sorted(f["path"] for f in m["output"]["files"])
    names = [output.scores_file_name(i, st["name"]) for i, st in enumerate(m["stages"]) if i]
    assert sorted(os.listdir(output.scores_dir(out))) == sorted(names)
    assert sorted(output.read_scores(out)) == list(range(1, len(m["stages"])))
    dec = output.read_decisions(out)
    assert dec.num_rows == m["docs_in"] and set(dec.column_names) >= {"id", "kept", "stage", "stage_name", "reason"}
    assert output.manifest_path(out) == os.path.join(out, ".shardsift", "manifest.json")
    assert output.models_dir(out) == os.path.join(out, ".shardsift", "models")
    assert output.decisions_dir(out) == os.path.join(out, ".shardsift", "decisions")
    with pytest.raises(DataError, match="no .shardsift/manifest.json"):
        output.load_manifest(os.path.join(out, "data"))
