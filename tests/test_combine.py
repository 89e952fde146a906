"""Annotate-only stages (drop: false) and combine, on a small example checked by hand."""
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import shardsift
from shardsift.engine.runner import run_pipeline
from shardsift.errors import ConfigError
from shardsift.selectors.budget import percentile_ranks, select


class XCount(shardsift.Filter):
    """Annotates each document with how many 'x' it holds (keeps those with at least one)."""

    def keep(self, docs):
        import pyarrow.compute as pc

        x = pc.count_substring(docs.text, "x").to_numpy(zero_copy_only=False).astype(np.float64)
        return shardsift.Decision(keep=x > 0, score=x, reason="no_x")


# id: (words, x's). length's score is the word count, XCount's the number of x's.
DOCS = {"a": (2, 0), "b": (4, 1), "c": (6, 2), "d": (8, 3), "e": (7, 5), "f": (5, 4)}


def write(tmp_path):
    ids = list(DOCS)
    texts = [" ".join(["x"] * x + ["w"] * (n - x)) for n, x in DOCS.values()]
    pq.write_table(pa.table({"id": ids[:3], "text": texts[:3]}), tmp_path / "p0.parquet")
    pq.write_table(pa.table({"id": ids[3:], "text": texts[3:]}), tmp_path / "p1.parquet")
    return str(tmp_path / "*.parquet")


def run(tmp_path, combine, out="out"):
    return run_pipeline({"input": write(tmp_path), "output": {"path": str(tmp_path / out), "scores": True},
                         "workers": 1, "stages": [{"length": {"min_words": 1, "drop": False}},
                                                  {f"{__name__}:XCount": {"drop": False}},
                                                  {"combine": combine}]})


def kept_ids(tmp_path, out="out"):
    return sorted(pq.read_table(tmp_path / out / "data").column("id").to_pylist())


def test_annotate_only_stages_keep_everything_and_record_what_they_would_select(tmp_path):
    m = run(tmp_path, {"weights": {"length": 1}, "n": 6})
    assert [s["kept"] for s in m["stages"][1:]] == [6, 6, 6]
    assert m["stages"][2]["metrics"]["selected"] == 5  # XCount would have dropped "a"
    side = pq.read_table(tmp_path / "out" / ".shardsift" / "scores" / "stage-02-test_combine_XCount.parquet").to_pydict()
    got = dict(zip(side["id"], zip(side["score"], side["selected"], side["kept"])))
    assert got["a"] == (0.0, False, True) and got["e"] == (5.0, True, True)
    assert m["stages"][1]["metrics"]["selected"] == 6


def test_combine_by_hand(tmp_path):
    """Word counts 2,4,6,8,7,5 rank a=1/6 b=2/6 c=4/6 d=6/6 e=5/6 f=3/6; x counts 0,1,2,3,5,4 rank
    a=1/6 b=2/6 c=3/6 d=4/6 e=6/6 f=5/6. With weights 1 and 2 the combined rank is
    (words + 2 x) / 3: a 3/18 b 6/18 c 10/18 d 14/18 e 17/18 f 13/18, so the top three are e, d, f."""
    m = run(tmp_path, {"weights": {"length": 1, 2: 2}, "n": 3})
    assert kept_ids(tmp_path) == ["d", "e", "f"]
    assert m["stages"][3]["dropped"] == {"below_combined_cut": 3}
    side = pq.read_table(tmp_path / "out" / ".shardsift" / "scores" / "stage-03-combine.parquet").to_pydict()
    score = dict(zip(side["id"], side["score"]))
    assert score == pytest.approx({"a": 3 / 18, "b": 6 / 18, "c": 10 / 18, "d": 14 / 18, "e": 17 / 18, "f": 13 / 18})
    # a negative weight prefers low scores: the fewest words first
    run(tmp_path, {"weights": {"length": -1}, "keep": 0.5}, out="short")
    assert kept_ids(tmp_path, "short") == ["a", "b", "f"]
    # a word budget of 15: e (7 words) and d (8) fit, f (5) would go over
    run(tmp_path, {"weights": {"length": 1, 2: 2}, "tokens": 15}, out="words")
    assert kept_ids(tmp_path, "words") == ["d", "e"]


def test_combine_errors_name_the_key(tmp_path):
    with pytest.raises(ConfigError, match="combine: give exactly one of keep, n, tokens or threshold"):
        run(tmp_path, {"weights": {"length": 1}, "keep": 0.5, "n": 3})
    with pytest.raises(ConfigError, match=r"combine.weights: no earlier stage 'dsir'; earlier stages: length"):
        run(tmp_path, {"weights": {"dsir": 1}, "n": 3}, out="o2")


def test_budget_selection():
    values = np.array([0.5, 0.9, 0.9, 0.1, 0.7])
    ids = np.arange(5, dtype=np.uint64)
    mask, info = select(values, ids, np.array([1, 1, 1, 1, 1]), 0, n=2)
    assert mask.tolist() == [False, True, True, False, False] and info["cut"] == 0.9
    m3, _ = select(values, ids, np.ones(5), 0, keep=0.6)
    assert m3.sum() == 3 and m3[4]
    ties = [select(np.ones(100), np.arange(100, dtype=np.uint64), np.ones(100), seed, n=10)[0] for seed in (0, 1)]
    assert ties[0].sum() == ties[1].sum() == 10 and (ties[0] != ties[1]).any()  # seeded ties
    draws = [select(values, ids, np.ones(5), s, n=2, mode="sample", temperature=0.05)[0] for s in range(20)]
    assert all(d[1] or d[2] for d in draws)  # a cold draw takes the top values
    assert percentile_ranks(np.array([3.0, 1.0, 3.0, np.nan])).tolist() == [2.5 / 3, 1 / 3, 2.5 / 3, 0.0]
