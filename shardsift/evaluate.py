"""`shardsift eval`: a proxy language-model check of finished selections, in seconds.

Each selection trains an interpolated Kneser-Ney bigram word model on its first N whitespace words
(output order) and is scored by its perplexity on held-out target documents. Every selection uses
the same vocabulary (the most frequent words of the input pool) and the same held-out documents,
so the perplexities compare: lower means the selection's word statistics are closer to the target's.

Words are lowercased ASCII-whitespace tokens (the manifest's word count); words outside the
vocabulary become <unk>; each document is one sentence, <s> w1 ... wn </s>. Tokenising, counting
and scoring are Arrow and NumPy over whole batches: no Python step per word or bigram.

The model (Chen & Goodman's interpolated Kneser-Ney, one fixed absolute discount D = 0.75 at both
orders, since the count-of-counts estimate n1 / (n1 + 2 n2) breaks down on small selections):

    P(w | v)  = max(c(v w) - D, 0) / c(v) + D N1+(v .) / c(v) P_cont(w)    (P_cont(w) when c(v) = 0)
    P_cont(w) = (max(N1+(. w) - D, 0) + D N1+(. x>0) / |V|) / N1+(. .)

where N1+(. w) counts the distinct words seen before w, N1+(. x>0) the words with N1+(. x) > 0 and
|V| the predictable words (vocabulary, <unk> and </s>): the last term interpolates with the uniform
distribution, so every word has a probability and each P(. | v) sums to one.
"""
from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .columns import hash_strings, mix64
from .engine.contexts import read_corpus
from .errors import DataError, UsageError
from .io import storage
from .io.layout import EVAL
from .output import data_files, input_columns, load_manifest, manifest_path

DISCOUNT = 0.75
READ_BATCH = 8192
_MERGE_ROWS = 2_000_000  # distinct (word, count) rows kept before merging the vocabulary's partial counts


# -- words -----------------------------------------------------------------------------------------

def split_words(text: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """The lowercased whitespace words of each string, flat, and the document index of each word."""
    text = pc.drop_null(text) if text.null_count else text
    lists = pc.ascii_split_whitespace(pc.utf8_lower(text))
    if isinstance(lists, pa.ChunkedArray):
        lists = lists.combine_chunks()
    words = lists.flatten()
    doc = np.asarray(pc.list_parent_indices(lists), dtype=np.int64)
    nonempty = pc.greater(pc.binary_length(words), 0)  # leading and trailing spaces give empty strings
    return words.filter(nonempty), doc[np.asarray(nonempty, dtype=bool)]


class Vocabulary:
    """Word ids: 0..n-1 the vocabulary's words, then <unk>, </s> and <s>."""

    def __init__(self, words: pa.Array):
        self.words = words
        self.unk = len(words)
        self.eos = self.unk + 1
        self.bos = self.unk + 2
        self.size = self.unk + 3

    def ids(self, words: pa.Array) -> np.ndarray:
        found = pc.index_in(words, value_set=self.words)
        return np.asarray(pc.fill_null(found, self.unk), dtype=np.int64)


def count_vocabulary(texts: Iterable[pa.Array], size: int) -> Vocabulary:
    """The ``size`` most frequent words of ``texts`` (ties by the word), as a Vocabulary."""
    parts: list[pa.Table] = []
    rows = 0
    for text in texts:
        words, _ = split_words(text)
        if not len(words):
            continue
        vc = pc.value_counts(words)
        parts.append(pa.table({"w": vc.field("values"), "n": vc.field("counts")}))
        rows += len(vc)
        if rows > _MERGE_ROWS:
            parts = [_merge(parts)]
            rows = parts[0].num_rows
    if not parts:
        raise DataError("the vocabulary source has no words")
    counts = _merge(parts)
    order = pc.sort_indices(counts, sort_keys=[("n", "descending"), ("w", "ascending")])
    return Vocabulary(counts.column("w").take(order[:size]).combine_chunks())


def _merge(parts: list[pa.Table]) -> pa.Table:
    t = pa.concat_tables(parts).group_by("w").aggregate([("n", "sum")])
    return t.select(["w", "n_sum"]).rename_columns(["w", "n"])


def bigrams(ids: np.ndarray, doc: np.ndarray, n_docs: int, vocab: Vocabulary) -> tuple[np.ndarray, np.ndarray]:
    """(previous, next) word ids of every bigram of the documents <s> w1 ... wn </s>.

    ``ids`` are the words in document order and ``doc`` each word's document (0..n_docs-1,
    non-decreasing): document d's sequence starts at its first word's index + 2 d."""
    counts = np.bincount(doc, minlength=n_docs)
    first = np.zeros(n_docs + 1, np.int64)
    np.cumsum(counts, out=first[1:])
    seq = np.empty(len(ids) + 2 * n_docs, np.int64)
    two_d = 2 * np.arange(n_docs, dtype=np.int64)
    seq[first[:-1] + two_d] = vocab.bos
    seq[first[1:] + two_d + 1] = vocab.eos
    seq[np.arange(len(ids), dtype=np.int64) + 2 * doc + 1] = ids
    prev, nxt = seq[:-1], seq[1:]
    within = prev != vocab.eos  # </s> <s> crosses a document boundary
    return prev[within], nxt[within]


# -- the model -------------------------------------------------------------------------------------

class BigramKN:
    """Interpolated Kneser-Ney bigram model over a Vocabulary's ids (formula in the module docstring)."""

    def __init__(self, vocab_size: int, discount: float = DISCOUNT):
        self.size = vocab_size
        self.discount = discount

    def fit(self, prev: np.ndarray, nxt: np.ndarray) -> BigramKN:
        if not len(prev):
            raise DataError("no words to train on")
        s, d = self.size, self.discount
        self.keys_, counts = np.unique(prev * s + nxt, return_counts=True)
        self.counts_ = counts.astype(np.float64)
        ctx, follow = self.keys_ // s, self.keys_ % s
        self.context_count_ = np.bincount(ctx, weights=self.counts_, minlength=s)
        self.context_types_ = np.bincount(ctx, minlength=s).astype(np.float64)
        cont = np.bincount(follow, minlength=s).astype(np.float64)
        predictable = s - 1  # every id but <s>
        self.p_cont_ = (np.maximum(cont - d, 0.0) + d * np.count_nonzero(cont) / predictable) / len(self.keys_)
        self.p_cont_[s - 1] = 0.0  # <s> (the last id) is never predicted
        return self

    def log_prob(self, prev: np.ndarray, nxt: np.ndarray) -> np.ndarray:
        """Natural log of P(next | prev) for each pair."""
        d = self.discount
        keys = prev * self.size + nxt
        at = np.minimum(np.searchsorted(self.keys_, keys), len(self.keys_) - 1)
        c_vw = np.where(self.keys_[at] == keys, self.counts_[at], 0.0)
        c_v = self.context_count_[prev]
        p_cont = self.p_cont_[nxt]
        seen = c_v > 0
        p = p_cont.copy()
        p[seen] = (np.maximum(c_vw[seen] - d, 0.0) + d * self.context_types_[prev[seen]] * p_cont[seen]) / c_v[seen]
        return np.log(p)

    def perplexity(self, prev: np.ndarray, nxt: np.ndarray) -> float:
        return float(np.exp(-self.log_prob(prev, nxt).mean()))


# -- reading ---------------------------------------------------------------------------------------

def output_texts(out: str, manifest: dict) -> Iterator[pa.Array]:
    """The kept documents' texts, batch by batch, in output order."""
    text_col, _ = input_columns(manifest)
    for path in data_files(out):
        fs, where = storage.arrow_fs(path)
        pf = pq.ParquetFile(fs.open_input_file(where) if fs is not None else where)
        if text_col not in pf.schema_arrow.names:
            raise DataError(f"{path}: no text column {text_col!r}")
        for batch in pf.iter_batches(batch_size=READ_BATCH, columns=[text_col]):
            yield batch.column(0)


def first_words(texts: Iterable[pa.Array], n_words: int, vocab: Vocabulary):
    """(ids, doc of each word, documents) of the first ``n_words`` words; the last document is cut."""
    ids, docs, n_docs, total = [], [], 0, 0
    for text in texts:
        if total >= n_words:
            break
        text = pc.drop_null(text) if text.null_count else text
        words, doc = split_words(text)
        take_docs = len(text)
        if total + len(words) >= n_words:
            words, doc = words.slice(0, n_words - total), doc[:n_words - total]
            take_docs = int(doc[-1]) + 1 if len(doc) else 0
        ids.append(vocab.ids(words))
        docs.append(doc + n_docs)
        n_docs += take_docs
        total += len(words)
    if not ids:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), 0
    return np.concatenate(ids), np.concatenate(docs), n_docs


def heldout_texts(target: str, text_column: str, n_docs: int, seed: int) -> pa.Array:
    """A seeded sample of ``n_docs`` target documents: those with the smallest seeded hashes of
    their ids, so the sample does not depend on batch sizes or file order."""
    salt = mix64(np.array([seed], np.uint64) + np.uint64(0x9E3779B97F4A7C15))
    best_h, best_t, seen = np.zeros(0, np.uint64), [], 0
    for docs in read_corpus({"path": target, "text_column": text_column}, what="target"):
        seen += len(docs)
        ids = docs.ids
        if not (pa.types.is_string(ids.type) or pa.types.is_large_string(ids.type)):
            ids = ids.cast(pa.string())
        h = np.concatenate([best_h, mix64(hash_strings(ids) ^ salt)])
        texts = pa.chunked_array([*best_t, docs.text.cast(pa.large_string())])
        keep = np.argsort(h, kind="stable")[:n_docs]
        best_h = h[keep]
        best_t = [texts.take(pa.array(keep)).combine_chunks()]
    if not seen:
        raise DataError(f"{target}: the target has no documents")
    return best_t[0]


def vocabulary_source(outputs: list[str], manifests: list[dict], vocab_from: str | None):
    """(what, corpus spec) of the vocabulary: a corpus, or a finished output's input pool."""
    text_col = input_columns(manifests[0])[0]
    if vocab_from is not None and not storage.exists(manifest_path(vocab_from)):
        return vocab_from, {"path": vocab_from, "text_column": text_col}
    out, manifest = (vocab_from, load_manifest(vocab_from)) if vocab_from is not None else (outputs[0], manifests[0])
    paths = [i["path"] for i in manifest.get("inputs") or []]
    if not paths or not all(storage.exists(p) for p in paths):
        raise DataError(f"{out}: its input pool is not readable here ({', '.join(paths) or 'none recorded'}); "
                        "name a corpus with --vocab-from")
    inp = dict((manifest.get("config") or {}).get("input") or {})
    inp["path"] = paths
    return f"the input pool of {out}", inp


# -- the check -------------------------------------------------------------------------------------

def evaluate(outputs: list[str], target: str, *, target_text_column: str = "text", words: int = 1_000_000,
             vocab: int = 50_000, vocab_from: str | None = None, heldout: int = 500, seed: int = 0) -> dict:
    """Perplexity of each output's bigram model on the same held-out target documents."""
    for name, value in (("--words", words), ("--vocab", vocab), ("--heldout", heldout)):
        if value < 1:
            raise UsageError(f"{name}: expected a positive number, got {value}")
    manifests = [load_manifest(out) for out in outputs]
    t0 = time.perf_counter()
    held = heldout_texts(target, target_text_column, heldout, seed)
    target_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    what, spec = vocabulary_source(outputs, manifests, vocab_from)
    voc = count_vocabulary((d.text for d in read_corpus(spec, what="vocabulary")), vocab)
    vocab_s = time.perf_counter() - t0

    h_words, h_doc = split_words(held)
    h_ids = voc.ids(h_words)
    h_prev, h_next = bigrams(h_ids, h_doc, len(held), voc)
    oov = float(np.mean(h_ids == voc.unk)) if len(h_ids) else 0.0
    rows = []
    for out, manifest in zip(outputs, manifests):
        t0 = time.perf_counter()
        ids, doc, n_docs = first_words(output_texts(out, manifest), words, voc)
        if not len(ids):
            raise DataError(f"{out}: no kept words to train on")
        model = BigramKN(voc.size).fit(*bigrams(ids, doc, n_docs, voc))
        ppl = model.perplexity(h_prev, h_next)
        rows.append({"output": out, "words": int(len(ids)), "docs": int(n_docs), "perplexity": ppl,
                     "train_oov_rate": float(np.mean(ids == voc.unk)), "seconds": time.perf_counter() - t0})
    return {"target": target, "heldout_docs": len(held), "heldout_words": int(len(h_ids)),
            "heldout_tokens": int(len(h_next)), "oov_rate": oov, "target_seconds": target_s,
            "vocabulary": what, "vocab_size": len(voc.words), "vocab_seconds": vocab_s,
            "words": words, "discount": DISCOUNT, "seed": seed, "outputs": rows}


def save_results(res: dict) -> list[str]:
    """Write the whole table into each evaluated output's .shardsift/eval.json (replacing an earlier
    one), with ``this_output`` the row of that output, where the report shows it; the paths written."""
    paths = []
    for i, row in enumerate(res["outputs"]):
        data = json.dumps({**res, "this_output": i}, indent=1).encode("utf-8")
        path = storage.join(row["output"], EVAL)
        storage.write_atomic(path, data)
        paths.append(path)
    return paths


def format_eval(res: dict) -> str:
    """The perplexity table, one row per output."""
    lines = [f"target: {res['target']} ({res['heldout_docs']:,} held-out documents, {res['heldout_words']:,} words, "
             f"OOV rate {res['oov_rate']:.2%})",
             f"vocabulary: {res['vocab_size']:,} words of {res['vocabulary']} ({res['vocab_seconds']:.1f} s)",
             f"model: interpolated Kneser-Ney bigram, D = {res['discount']}, first {res['words']:,} words of each output",
             ""]
    width = max(len("output"), *(len(r["output"]) for r in res["outputs"]))
    lines.append(f"{'output':<{width}}  {'words':>11}  {'docs':>9}  {'perplexity':>10}  {'train OOV':>9}  {'seconds':>7}")
    for r in res["outputs"]:
        lines.append(f"{r['output']:<{width}}  {r['words']:>11,}  {r['docs']:>9,}  {r['perplexity']:>10.2f}  "
                     f"{r['train_oov_rate']:>9.2%}  {r['seconds']:>7.2f}")
    return "\n".join(lines)
