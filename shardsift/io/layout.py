"""The layout of a finished output, named in one place for the writer and every reader.

    OUTPUT/data/                  the kept documents: what `load_dataset("parquet", data_dir=OUTPUT)` loads
    OUTPUT/.shardsift/manifest.json  written last: no manifest, no finished output
    OUTPUT/.shardsift/report.html    `shardsift report`
    OUTPUT/.shardsift/eval.json      `shardsift eval --save`: the proxy LM table, shown by the report
    OUTPUT/.shardsift/decisions/  one row per input document: kept, or the stage and reason that dropped it
    OUTPUT/.shardsift/scores/     every stage's score per document that reached it
    OUTPUT/.shardsift/models/     what stages fitted
    OUTPUT/.work/                 per-task results for resume (shardsift clean removes it)

Everything but the kept documents lives in a hidden folder because data loaders skip hidden
paths (datasets' `load_dataset("parquet", data_dir=...)` takes every other file under the folder,
a manifest.json included): a training job pointed at OUTPUT reads the kept documents only.
"""
from __future__ import annotations

DATA = "data"
AUDIT = ".shardsift"
MANIFEST = f"{AUDIT}/manifest.json"
REPORT = f"{AUDIT}/report.html"
EVAL = f"{AUDIT}/eval.json"
DECISIONS = f"{AUDIT}/decisions"
SCORES = f"{AUDIT}/scores"
MODELS = f"{AUDIT}/models"
WORK = ".work"


def is_output(folder: str) -> bool:
    """Whether a local folder holds a finished shardsift output."""
    import os

    return os.path.exists(os.path.join(folder, MANIFEST))


def scores_file_name(index: int, stage_name: str) -> str:
    """The scores sidecar's file of stage ``index`` (1-based)."""
    return f"stage-{index:02d}-{safe_name(stage_name)}.parquet"


def safe_name(name: str) -> str:
    """A stage name as a file-name piece."""
    return "".join(ch if ch.isalnum() or ch in "_-" else "_" for ch in name)[:40]
