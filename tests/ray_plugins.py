"""Selectors used by tests/test_ray.py; importable by Ray workers (the tests put this folder on PYTHONPATH)."""
import os
import signal

import numpy as np

from shardsift import Decision, Param, Selector


def _log(path: str, shard: str) -> None:
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(f"{shard} {os.getpid()}\n")


class KillOnce(Selector):
    """Keeps even word counts; the first task to score SIGKILLs its own worker process mid-task."""

    name = "kill_once"
    marker = Param(str, doc="file created by the task that kills itself")
    log = Param(str, doc="file each scoring attempt appends 'shard pid' to")

    def score(self, docs):
        _log(self.log, docs.shard)
        try:
            fd = os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return docs.n_words.astype(np.float64)
        os.close(fd)
        os.kill(os.getpid(), signal.SIGKILL)  # mid-task: nothing of this task is written yet

    def decide(self, scores, ctx=None):
        return Decision(keep=scores["score"] % 2 == 0, reason="odd")


class KillAlways(Selector):
    """The task of one shard SIGKILLs its worker every time it runs."""

    name = "kill_always"
    shard = Param(str, doc="shard name whose task kills its worker")

    def score(self, docs):
        if docs.shard == self.shard:
            os.kill(os.getpid(), signal.SIGKILL)
        return docs.n_words.astype(np.float64)

    def decide(self, scores, ctx=None):
        return scores["score"] > 0


class FailSome(Selector):
    """Raises in the task of one shard the first ``fails`` times it runs (counted in ``log``)."""

    name = "fail_some"
    shard = Param(str, doc="shard name whose task raises")
    fails = Param(int, 1, "how many attempts raise")
    log = Param(str, doc="attempt log")

    def score(self, docs):
        if docs.shard == self.shard:
            _log(self.log, docs.shard)
            with open(self.log, encoding="utf-8") as fh:
                attempts = sum(1 for line in fh if line.startswith(self.shard + " "))
            if attempts <= self.fails:
                raise RuntimeError(f"boom {attempts}")
        return docs.n_words.astype(np.float64)

    def decide(self, scores, ctx=None):
        return scores["score"] > 30


def _count_docs(batches):
    return sum(len(d) for d in batches)


def _double(x):
    return 2 * x


class FitAndMap(Selector):
    """A global selector with a fit map over shards and a decide-time map: exercises every task kind."""

    name = "fit_and_map"
    scope = "global"
    needs_fit = True
    keep = Param(float, 0.5, "fraction kept (the longest documents)", gt=0, le=1)

    def fit(self, ctx):
        counts = ctx.map_shards(_count_docs, need_text=False)
        self.n_fit_ = sum(counts)
        return {"fit_docs": self.n_fit_}

    def score(self, docs):
        return docs.n_words.astype(np.float64)

    def decide(self, scores, ctx):
        assert ctx.map(_double, [1, 2, 3]) == [2, 4, 6]
        s = scores["score"]
        k = round(self.keep * len(s))
        order = np.lexsort((np.arange(len(s)), -s))
        keep = np.zeros(len(s), bool)
        keep[order[:k]] = True
        return Decision(keep=keep, reason="short", metrics={"fit_docs": self.n_fit_})


class ReadBack(Selector):
    """Keeps everything; its decide reads every third surviving document back with
    ``ctx.read_texts``, ``ctx.read_batches`` and (in reverse order) ``ctx.read_docs`` and reports
    whether they agree."""

    name = "read_back"
    scope = "global"

    def score(self, docs):
        return np.zeros(len(docs))

    def decide(self, scores, ctx):
        offs, rows = scores.shard_offsets, scores["row"]
        read = same = whole = docs_same = 0
        for s in range(len(offs) - 1):
            want = rows[offs[s]:offs[s + 1]][::3]
            by_batch = [t for d in ctx.read_batches(s, want) for t in d.text.to_pylist()]
            by_text, batch_rows = [], 0
            for text, pos in ctx.read_texts(s, want):
                by_text += text.take(pos).to_pylist()
                batch_rows += len(text)
            read += len(by_text)
            same += by_text == by_batch and len(by_text) == len(want)
            # read_docs gives rows in the order asked: descending here, put back by a take
            docs_same += ctx.read_docs(s, want[::-1]).text.to_pylist() == by_batch[::-1]
            whole += batch_rows > len(by_text)  # batches came whole, unselected rows in them
        return Decision(keep=np.ones(len(rows), bool), metrics={"read": read, "shards_same": same,
                                                                "shards_whole": whole, "shards_docs_same": docs_same})


class NodeLog(Selector):
    """Keeps documents of at least 20 words; every scoring task appends 'shard node_id node_label'
    to ``log`` (the label is the ``SHARDSIFT_TEST_NODE`` variable its raylet was started with)."""

    name = "node_log"
    log = Param(str, doc="file each scoring task appends its shard and node to")

    def score(self, docs):
        import ray

        # outside a Ray worker (a local run) asking for the runtime context would start Ray
        node = ray.get_runtime_context().get_node_id() if ray.is_initialized() else "-"
        with open(self.log, "a", encoding="utf-8") as fh:
            fh.write(f"{docs.shard} {node} {os.environ.get('SHARDSIFT_TEST_NODE', '-')}\n")
        return docs.n_words.astype(np.float64)

    def decide(self, scores, ctx=None):
        return Decision(keep=scores["score"] >= 20, reason="short")


class ReadsMissing(Selector):
    """Its scoring task opens a file that does not exist (appending each attempt to ``log``)."""

    name = "reads_missing"
    path = Param(str, doc="a file that is not there")
    log = Param(str, doc="attempt log")

    def score(self, docs):
        _log(self.log, docs.shard)
        with open(self.path, "rb") as fh:
            fh.read()
        return docs.n_words.astype(np.float64)

    def decide(self, scores, ctx=None):
        return scores["score"] > 0
