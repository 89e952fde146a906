"""Text preparation the two dedup selectors share: Unicode lowercasing of only the documents that
need it, as spans over UTF-8 bytes for the numba kernels (``minhash_dedup``'s tokenizer,
``exact_dedup``'s normalized hash)."""
from __future__ import annotations

import numba as nb
import numpy as np
import pyarrow as pa

from ..columns import arrow_array, arrow_take, spans
from ..text import lower


@nb.njit(cache=True, nogil=True)
def _ascii_docs(starts, ends, data):
    """Per document: no byte >= 128. Blocks of 256 bytes, OR-reduced (vectorised), stop at the
    first block with a high bit."""
    out = np.empty(starts.shape[0], dtype=np.bool_)
    for d in range(starts.shape[0]):
        ok = True
        for a in range(starts[d], ends[d], 256):
            blk = data[a:min(a + 256, ends[d])]
            acc = np.uint8(0)
            for i in range(blk.shape[0]):
                acc = acc | blk[i]
            if acc >= np.uint8(128):
                ok = False
                break
        out[d] = ok
    return out


def lower_spans(texts, rows=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """spans() of the Unicode-lowercased texts (of ``texts[rows]`` when rows are given: their
    spans in the whole array's bytes, nothing copied), as the word kernels need them. The byte
    tables already lowercase ASCII, so only documents with a non-ASCII byte go through Arrow's
    utf8_lower (~0.4-0.9 ns/byte): they are taken, lowered and appended to a copy of the batch's
    bytes (a copy is ~0.1 ns/byte), their spans pointed there. When they hold over half the
    bytes, all the (selected) texts are lowered as before."""
    if not isinstance(texts, (pa.Array, pa.ChunkedArray)):
        texts = pa.array(texts, pa.large_string())
    starts, ends, data = spans(texts)
    if rows is not None:
        starts, ends = starts[rows], ends[rows]
    if len(starts) == 0:
        return starts, ends, data
    asc = _ascii_docs(starts, ends, data)
    if asc.all():
        return starts, ends, data
    sizes = ends - starts
    other = np.flatnonzero(~asc)
    if 2 * int(sizes[other].sum()) > int(sizes.sum()):
        return spans(lower(texts if rows is None else arrow_take(texts, arrow_array(rows))))
    ls, le, ld = spans(lower(arrow_take(texts, arrow_array(other if rows is None else rows[other]))))
    base, top = int(starts.min()), int(ends.max())
    buf = np.empty(top - base + int(le[-1] - ls[0]), dtype=np.uint8)
    buf[:top - base] = data[base:top]
    buf[top - base:] = ld[ls[0]:le[-1]]
    starts = starts - base
    ends = ends - base
    starts[other] = ls - ls[0] + (top - base)
    ends[other] = le - ls[0] + (top - base)
    return starts, ends, buf
