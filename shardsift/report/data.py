"""What the report draws from, all read through `shardsift.output`: the manifest, the scores sidecar
per stage, the kept documents (their ids, texts, lengths and label column) and the fitted models.
Also what each stage's score means in words, so axes are labelled by what they measure."""
from __future__ import annotations

import json
import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .. import output
from ..errors import DataError
from ..io import storage
from ..io.layout import EVAL

# (pattern on "selector stage-name", what the score is in words, whether it is a positive quantity
# that may span orders of magnitude); the first match wins, so specific patterns come first
SCORE_NAMES = (
    (r"LengthSelector|\blength\b", "words per document", True),
    (r"dsir", "DSIR log importance weight", False),
    (r"importance", "log importance weight", False),
    (r"exact_?dedup", "exact duplicate group size", True),
    (r"semdedup|kmeans", "distance to the cluster centroid", False),
    (r"minhash", "MinHash Jaccard similarity to nearest duplicate", False),
    (r"dedup", "similarity to nearest duplicate", False),
    (r"perplexity", "fastText include probability", False),
    (r"RandomSelector|\brandom\b", "random draw (uniform in 0..1)", False),
)
CUT_METRICS = ("include_prob_threshold", "threshold", "score_threshold", "cut")
LENGTH_SELECTOR = re.compile(r"LengthSelector$")
TEXT_BYTES_MAX = 2_000_000_000  # count words in the kept texts only up to this much text


def score_meaning(stage: dict) -> tuple[str, bool]:
    """(what the stage's score is, in words; whether it is a positive quantity for a log axis)."""
    key = f"{stage.get('selector', '')} {stage.get('name', '')}"
    for pattern, name, positive in SCORE_NAMES:
        if re.search(pattern, key, re.IGNORECASE):
            return name, positive
    return f"score of {stage.get('name', 'the stage')}", False


def scalar_metrics(metrics: dict, prefix: str = "") -> dict[str, int | float]:
    """Numeric scalars of a (nested) metrics dict, keys joined with dots."""
    out = {}
    for k, v in (metrics or {}).items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(scalar_metrics(v, key + "."))
        elif isinstance(v, (bool, np.bool_)):
            continue
        elif isinstance(v, (int, np.integer)):
            out[key] = int(v)
        elif isinstance(v, (float, np.floating)) and np.isfinite(float(v)):
            out[key] = float(v)
    return out


def value_counts(values) -> dict[str, int]:
    """{label: count} of an Arrow array (nulls as "(null)")."""
    arr = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    vc = pc.value_counts(arr.cast(pa.string()).fill_null("(null)"))
    return {str(k): int(c) for k, c in zip(vc.field("values").to_pylist(), vc.field("counts").to_pylist())}


def column(t: pa.Table, name: str, dtype=None) -> np.ndarray:
    arr = np.asarray(t.column(name).to_numpy(zero_copy_only=False))
    return arr.astype(dtype) if dtype is not None else arr


def cut_of(score: np.ndarray, kept: np.ndarray, metrics: dict) -> tuple[float | None, str]:
    """Where the stage cut its scores: a threshold metric, or the boundary when kept and dropped
    scores do not overlap. None for a sampled selection (kept and dropped scores interleave)."""
    for key in CUT_METRICS:
        v = metrics.get(key)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v):
            return float(v), f"{key} = {v:.4g}"
    if kept.all() or not kept.any():
        return None, ""
    ks, ds = score[kept], score[~kept]
    if ks.min() >= ds.max():
        return (float(ks.min()) + float(ds.max())) / 2, f"kept >= {ks.min():.4g} > dropped"
    if ks.max() <= ds.min():
        return (float(ks.max()) + float(ds.min())) / 2, f"kept <= {ks.max():.4g} < dropped"
    return None, ""


def is_duplicate_stage(t: pa.Table, stage: dict) -> bool:
    """A stage that groups duplicates (a cluster column and cluster sizes, or duplicate reasons)."""
    if "cluster" not in t.column_names:
        return False
    return "cluster_size" in t.column_names or any("dup" in r for r in (stage.get("dropped") or {}))


class RunData:
    """One finished output as the report sees it; each part is read once, when first needed."""

    def __init__(self, out: str, label_column: str | None):
        self.out = out
        self.manifest = output.load_manifest(out)
        self.stages: list[dict] = list(self.manifest.get("stages") or [])
        self.scores = output.read_scores(out)
        self.label = label_column
        self._kept_lengths: tuple[pa.Array, np.ndarray] | None = None
        self._texts: dict[str, str] = {}
        self._in_output: pa.Array | None = None
        self._models: dict[str, dict[str, str]] | None = None

    def has_eval(self) -> bool:
        return storage.exists(storage.join(self.out, EVAL))

    def eval_results(self) -> dict:
        """The proxy LM table `shardsift eval --save` left in this output."""
        path = storage.join(self.out, EVAL)
        try:
            res = json.loads(storage.read_bytes(path))
        except (OSError, ValueError) as err:
            raise DataError(f"{path}: not a readable eval table ({err})") from None
        if not isinstance(res, dict) or not isinstance(res.get("outputs"), list):
            raise DataError(f"{path}: not an eval table (no outputs list)")
        return res

    def output_ids(self) -> pa.Array:
        """The ids of the kept documents (the output's data parts)."""
        if self._in_output is None:
            self._in_output = output.read_kept(self.out, self.manifest).column("id").combine_chunks()
        return self._in_output

    def in_output(self, ids: pa.Array) -> np.ndarray:
        return np.asarray(pc.is_in(ids, value_set=self.output_ids()).to_numpy(zero_copy_only=False), bool)

    def kept_labels(self) -> pa.Table:
        """id and the label column of the kept documents."""
        return output.read_kept(self.out, self.manifest, [self.label] if self.label else [])

    def models_of(self, stage_name: str) -> list[tuple[str, str, int]]:
        """(key, path inside the output, bytes) of the models a stage fitted, as the output holds them."""
        if self._models is None:
            self._models = output.models(self.out, self.manifest)
        found = self._models
        rel = ((self.manifest.get("output") or {}).get("models") or {}).get(stage_name) or {}
        return [(k, rel[k], storage.getsize(p)) for k, p in sorted(found.get(stage_name, {}).items())]

    def fetch_texts(self, ids) -> None:
        """Read the texts of those of ``ids`` that are in the output, in one pass over data/."""
        missing = {i for i in ids if i not in self._texts}
        if missing:
            self._texts.update(output.kept_texts(self.out, self.manifest, missing))

    def text(self, doc_id: str) -> str | None:
        return self._texts.get(doc_id)

    # -- document lengths ---------------------------------------------------------------------
    def length_stage(self) -> int | None:
        """The stage whose sidecar score is every document's length in words (the length filter)."""
        for i, st in enumerate(self.stages):
            if i in self.scores and LENGTH_SELECTOR.search(str(st.get("selector", ""))):
                return i
        return None

    def words_of(self, ids: pa.Array) -> tuple[np.ndarray, str]:
        """Words per document of ``ids`` (-1 where the output does not say) and where they came from:
        an ``n_words`` sidecar column or the length stage's scores (every document that reached the
        stage), else the kept documents' texts."""
        ids = ids.combine_chunks() if isinstance(ids, pa.ChunkedArray) else ids
        words = np.full(len(ids), -1, np.int64)
        source = ""
        sources = [(i, "n_words") for i, t in sorted(self.scores.items()) if "n_words" in t.column_names]
        if (ls := self.length_stage()) is not None:
            sources.append((ls, "score"))
        for i, col in sources:
            t = self.scores[i]
            pos = positions(ids, t.column("id").combine_chunks().cast(pa.string()))
            fill = (words < 0) & (pos >= 0)
            words[fill] = column(t, col, np.float64)[pos[fill]].astype(np.int64)
            source = source or f"the scores of stage {i} ({self.stages[i].get('name')})"
        if (words < 0).any() and (kept := self.kept_lengths()) is not None:
            pos = positions(ids, kept[0])
            fill = (words < 0) & (pos >= 0)
            if fill.any():
                words[fill] = kept[1][pos[fill]]
                source = source or "the kept documents' texts (dropped documents are not stored)"
        return words, source

    def kept_lengths(self) -> tuple[pa.Array, np.ndarray] | None:
        """(ids, words) of the kept documents, counted from their texts file by file; None when the
        output holds more than TEXT_BYTES_MAX of text (a length stage's scores give lengths cheaply)."""
        if int(self.manifest.get("bytes_kept") or 0) > TEXT_BYTES_MAX:
            return None
        if self._kept_lengths is None:
            from ..columns import count_words

            text_col, id_col = output.input_columns(self.manifest)
            ids, words = [], []
            for path in output.data_files(self.out):
                t = output.read_table(path, columns=[id_col, text_col])
                ids.append(t.column(id_col).combine_chunks().cast(pa.string()))
                words.append(np.asarray(count_words(t.column(text_col).combine_chunks()), np.int64))
            self._kept_lengths = (pa.concat_arrays(ids) if ids else pa.array([], pa.string()),
                                  np.concatenate(words) if words else np.zeros(0, np.int64))
        return self._kept_lengths


def positions(ids: pa.Array, within: pa.Array) -> np.ndarray:
    """Positions of ``ids`` in ``within`` (-1 where absent)."""
    if not len(within):
        return np.full(len(ids), -1, np.int64)
    return np.asarray(pc.index_in(ids, value_set=within).fill_null(-1).to_numpy(zero_copy_only=False), np.int64)
