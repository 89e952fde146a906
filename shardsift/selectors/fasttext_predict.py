"""fastText supervised prediction over a batch of lines in one numba call.

fastText's own ``predict`` goes through a Python string per document and a C++ stream per line;
most of its time is that, not the model. For the models most classifiers are (softmax loss, word
n-grams, no character n-grams, not quantized) this computes the same thing from the model's own
matrices and vocabulary, straight from the Arrow buffer: words split on fastText's separators and
an end-of-line token appended, tokens with the label prefix skipped, each word looked up by fastText's hash (FNV-1a over signed bytes)
and its bytes, word n-grams hashed into the buckets as fastText hashes them, the hidden vector the
mean of the input rows, softmax over the output rows, and the probability as fastText's Python
binding returns it (``exp(log(p + 1e-5))``). Other models keep fastText's ``predict``. Used by
``quality_classifier`` and ``perplexity_correlation``'s filter; tests compare the two on trained
models.
"""
from __future__ import annotations

import math

import numba as nb
import numpy as np
import pyarrow as pa

from ..columns import spans

EOS = "</s>"
_NGRAM_MUL = np.uint64(116049371)


@nb.njit(cache=True, nogil=True, inline="always")
def _is_sep(b):
    return b == 32 or b == 10 or b == 13 or b == 9 or b == 11 or b == 12 or b == 0


@nb.njit(cache=True, nogil=True, inline="always")
def _fnv(data, lo, hi):
    """fastText's word hash: 32-bit FNV-1a over the bytes as signed chars."""
    h = np.uint64(2166136261)
    for i in range(lo, hi):
        b = np.uint64(data[i])
        if b >= 128:
            b |= np.uint64(0xFFFFFF00)
        h = ((h ^ b) * np.uint64(16777619)) & np.uint64(0xFFFFFFFF)
    return h


@nb.njit(cache=True, nogil=True, inline="always")
def _widen(h):
    """fastText keeps word hashes as int32 and widens them to uint64 for n-grams: sign extension."""
    return h | np.uint64(0xFFFFFFFF00000000) if h >= np.uint64(0x80000000) else h


@nb.njit(cache=True, nogil=True, inline="always")
def _starts_with(data, lo, hi, prefix):
    if hi - lo < prefix.shape[0]:
        return False
    for i in range(prefix.shape[0]):  # noqa: SIM110 (numba: no generator in all())
        if data[lo + i] != prefix[i]:
            return False
    return True


@nb.njit(cache=True, nogil=True)
def _word_hashes(buf, off):
    n = off.shape[0] - 1
    out = np.empty(n, dtype=np.uint64)
    for w in range(n):
        out[w] = _fnv(buf, off[w], off[w + 1])
    return out


@nb.njit(cache=True, nogil=True)
def _build_table(hashes, size):
    """Open addressing by hash: each slot (hash << 32 | word id), so a probe reads one array."""
    table = np.full(size, -1, dtype=np.int64)
    mask = np.uint64(size - 1)
    for w in range(hashes.shape[0]):
        s = hashes[w] & mask
        while table[s] != -1:
            s = (s + np.uint64(1)) & mask
        table[s] = np.int64((hashes[w] << np.uint64(32)) | np.uint64(w))
    return table


@nb.njit(cache=True, nogil=True, inline="always")
def _lookup(data, lo, hi, h, table, buf, off):
    """The word id of data[lo:hi] (hash ``h``), or -1: same hash, then same bytes."""
    mask = np.uint64(table.shape[0] - 1)
    s = h & mask
    while table[s] != -1:
        e = np.uint64(table[s])
        if (e >> np.uint64(32)) == h:
            w = np.int64(e & np.uint64(0xFFFFFFFF))
            if off[w + 1] - off[w] == hi - lo:
                same = True
                base = off[w]
                for i in range(hi - lo):
                    if buf[base + i] != data[lo + i]:
                        same = False
                        break
                if same:
                    return w
        s = (s + np.uint64(1)) & mask
    return -1


@nb.njit(cache=True, nogil=True)
def _predict(starts, ends, data, table, buf, off, wi, wo, nwords, bucket, ngrams, eos_h, eos_id, label_prefix,
             multiline):
    n = starts.shape[0]
    dim, n_out = wi.shape[1], wo.shape[0]
    longest = 0
    for d in range(n):
        longest = max(longest, ends[d] - starts[d])
    cap = longest // 2 + 2
    word_h = np.empty(cap, dtype=np.uint64)
    ids = np.empty(cap * ngrams, dtype=np.int64)
    hidden = np.empty(dim, dtype=np.float32)
    out = np.empty(n_out, dtype=np.float32)
    prob = np.zeros((n, n_out), dtype=np.float64)   # a line without any word: no prediction, zeros
    bk = np.uint64(bucket)
    for d in range(n):
        nh, ni = 0, 0
        i, hi = starts[d], ends[d]
        while i < hi:
            if data[i] == 10 and not multiline:
                break   # fastText reads a line up to its first newline
            if _is_sep(data[i]):
                i += 1
                continue
            lo = i
            while i < hi and not _is_sep(data[i]):
                i += 1
            if _starts_with(data, lo, i, label_prefix):
                continue   # a label, not a word: neither a row nor part of an n-gram
            h = _fnv(data, lo, i)
            w = _lookup(data, lo, i, h, table, buf, off)
            word_h[nh] = _widen(h)
            nh += 1
            if w >= 0:
                ids[ni] = w
                ni += 1
        word_h[nh] = _widen(eos_h)
        nh += 1
        if eos_id >= 0:
            ids[ni] = eos_id
            ni += 1
        for a in range(nh):
            h = word_h[a]
            for b in range(a + 1, min(nh, a + ngrams)):
                h = h * _NGRAM_MUL + word_h[b]
                ids[ni] = nwords + np.int64(h % bk)
                ni += 1
        if ni == 0:
            continue   # fastText makes no prediction: probability 0
        hidden[:] = 0.0
        for t in range(ni):
            row = wi[ids[t]]
            for j in range(dim):
                hidden[j] += row[j]
        inv = np.float32(1.0 / ni)
        for j in range(dim):
            hidden[j] *= inv
        for c in range(n_out):
            s = np.float32(0.0)
            for j in range(dim):
                s += wo[c, j] * hidden[j]
            out[c] = s
        top = out[0]
        for c in range(n_out):
            top = max(top, out[c])
        z = np.float32(0.0)
        for c in range(n_out):
            out[c] = np.float32(math.exp(out[c] - top))
            z += out[c]
        for c in range(n_out):
            prob[d, c] = np.float32(math.exp(np.float32(math.log(np.float64(out[c] / z) + 1e-5))))
    return prob


def _view(matrix) -> np.ndarray:
    """A fastText matrix as float32 rows without copying it (its buffer), or a copy where the
    buffer is not C-ordered float32: the model's own input matrix is hundreds of MB in a published
    classifier, held once per process, not twice."""
    return np.ascontiguousarray(np.asarray(matrix), dtype=np.float32)


class FastPredictor:
    """A supervised softmax fastText model's vocabulary and matrices, ready for :func:`_predict`."""

    def __init__(self, model, words: list[str]):
        args = model.f.getArgs()
        raw = [w.encode("utf-8") for w in words]
        self.buf = np.frombuffer(b"".join(raw), dtype=np.uint8)
        self.off = np.zeros(len(raw) + 1, dtype=np.int64)
        np.cumsum([len(w) for w in raw], out=self.off[1:])
        self.table = _build_table(_word_hashes(self.buf, self.off), 1 << max(4, (2 * len(raw)).bit_length()))
        self.model = model  # wi and wo are views of its matrices: it must live as long as they do
        self.wi, self.wo = _view(model.f.getInputMatrix()), _view(model.f.getOutputMatrix())
        self.nwords, self.bucket, self.ngrams = len(raw), int(args.bucket), max(1, int(args.wordNgrams))
        eos = np.frombuffer(EOS.encode(), dtype=np.uint8)
        self.eos_h = _fnv(eos, 0, len(eos))
        self.eos_id = words.index(EOS) if EOS in words else -1
        self.label_prefix = np.frombuffer(str(args.label).encode(), dtype=np.uint8)
        self.labels = list(model.get_labels())

    def probabilities(self, lines: pa.Array, multiline: bool = False) -> np.ndarray:
        """Every label's probability per line (columns in ``self.labels`` order), as fastText's
        ``predict(k=-1)`` gives them; a row of zeros where fastText makes no prediction. With
        ``multiline`` a newline separates words instead of ending the line: each string is read as
        fastText reads it with its separators made spaces, without a pass that replaces them."""
        if len(lines) == 0:
            return np.zeros((0, len(self.labels)), dtype=np.float64)
        starts, ends, data = spans(lines)
        return _predict(starts, ends, data, self.table, self.buf, self.off, self.wi, self.wo, self.nwords, self.bucket,
                        self.ngrams, self.eos_h, self.eos_id, self.label_prefix, multiline)

    def __call__(self, lines: pa.Array, label: str, multiline: bool = False) -> np.ndarray:
        """P(label) per line, float64, in [0, 1]."""
        return np.clip(self.probabilities(lines, multiline)[:, self.labels.index(label)], 0.0, 1.0)


def fast_predictor(model) -> FastPredictor | None:
    """The numba predictor for ``model``, or None where fastText's own predict must run (another
    loss, character n-grams, a quantized model, a vocabulary that is not valid UTF-8, an input matrix
    that is not the words' rows then the buckets')."""
    args = model.f.getArgs()
    if (str(args.loss) != "loss_name.softmax" or str(args.model) != "model_name.supervised" or args.maxn > 0
            or model.is_quantized() or (args.wordNgrams > 1 and args.bucket <= 0)):
        return None
    try:
        words = list(model.get_words())
    except UnicodeDecodeError:
        return None
    fast = FastPredictor(model, words)
    return fast if fast.wi.shape[0] == fast.nwords + fast.bucket else None  # rows: words, then buckets
