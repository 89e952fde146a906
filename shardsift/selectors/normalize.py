"""Text preparation the two dedup selectors share: spans over UTF-8 bytes for their numba kernels
(``minhash_dedup``'s tokenizer, ``exact_dedup``'s normalized hash), where only the documents with a
non-ASCII byte are touched: NFKC (optional) and Unicode lowercasing by Arrow, and every Unicode
whitespace code point overwritten with ASCII spaces. ASCII documents are passed as they are: the
kernels' byte tables lowercase ASCII letters and treat the ASCII whitespace bytes (tab to carriage
return, the separators 0x1C-0x1F and space) as whitespace. Together that is Python's
``str.isspace()`` set, the one ``str.split()`` splits on."""
from __future__ import annotations

import numba as nb
import numpy as np
import pyarrow as pa

from ..columns import arrow_array, arrow_take, spans
from ..text import lower

# Python's str.isspace() set: what str.split() splits on and Arrow's utf8_trim_whitespace trims;
# all below U+3001 (tests check both over every code point)
SPACE_CODE_POINTS = np.array([c for c in range(0x3001) if chr(c).isspace()], dtype=np.int64)
ASCII_SPACES = bytes(c for c in SPACE_CODE_POINTS.tolist() if c < 0x80)
_IS_SPACE = np.zeros(0x3001, dtype=np.bool_)
_IS_SPACE[SPACE_CODE_POINTS] = True


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


@nb.njit(cache=True, nogil=True)
def _spaces_to_ascii(data, lo, hi, is_space):
    """Overwrite the bytes of every non-ASCII whitespace code point (``is_space``, indexed by code
    point) in valid UTF-8 data[lo:hi] with ASCII spaces, one per byte: a run of whitespace stays a
    run, so tokens and collapsed runs are those of one space. Each of them is U+0085 or U+00A0
    (lead byte 0xC2) or within U+1680-U+3000 (lead bytes 0xE1-0xE3): blocks of 64 bytes without
    such a byte (a vectorised test; Latin, Cyrillic, CJK text has few) are skipped."""
    n = is_space.shape[0]
    for a in range(lo, hi, 64):
        z = min(a + 64, hi)
        acc = np.uint8(0)
        for i in range(a, z):
            b = data[i]
            acc |= np.uint8(b == 0xC2) | np.uint8(np.uint8(b - 0xE1) <= 2)
        if acc == 0:
            continue
        for i in range(a, z):
            b = data[i]
            if b == 0xC2 and i + 1 < hi:
                cp = ((np.int64(b) & 0x1F) << 6) | (np.int64(data[i + 1]) & 0x3F)
                if is_space[cp]:
                    data[i] = 32
                    data[i + 1] = 32
            elif 0xE1 <= b <= 0xE3 and i + 2 < hi:
                cp = (((np.int64(b) & 0x0F) << 12) | ((np.int64(data[i + 1]) & 0x3F) << 6)
                      | (np.int64(data[i + 2]) & 0x3F))
                if cp < n and is_space[cp]:
                    data[i] = 32
                    data[i + 1] = 32
                    data[i + 2] = 32


def prepared_spans(texts, rows=None, *, lower_case: bool = True, spaces: bool = True,
                   nfkc: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(starts, ends, data): the spans of the texts (of ``texts[rows]`` when rows are given: their
    spans in the whole array's bytes, nothing copied) as the kernels need them, with every document
    that has a non-ASCII byte prepared: NFKC first (``nfkc``, Arrow's ``utf8_normalize``), Unicode
    lowercase (``lower_case``, Arrow's ``utf8_lower``, ~0.4-0.9 ns/byte), its Unicode whitespace
    overwritten with ASCII spaces (``spaces``). ASCII documents need none of it (NFKC and Unicode
    lowercasing leave ASCII as the kernels' tables make it), so an all-ASCII batch is returned as
    it is, and otherwise only the other documents are taken, prepared and appended to a copy of
    the batch's bytes (a copy is ~0.1 ns/byte), their spans pointed there. When they hold over half
    the bytes, all the (selected) texts are prepared."""
    if not isinstance(texts, (pa.Array, pa.ChunkedArray)):
        texts = pa.array(texts, pa.large_string())
    starts, ends, data = spans(texts)
    if rows is not None:
        starts, ends = starts[rows], ends[rows]
    if len(starts) == 0 or not (lower_case or spaces or nfkc):
        return starts, ends, data
    asc = _ascii_docs(starts, ends, data)
    if asc.all():
        return starts, ends, data
    sizes = ends - starts
    other = np.flatnonzero(~asc)
    if 2 * int(sizes[other].sum()) > int(sizes.sum()):
        sel = texts if rows is None else arrow_take(texts, arrow_array(rows))
        starts, ends, data = spans(_prepare(sel, lower_case, nfkc))
        if spaces:
            data = data.copy()  # Arrow's buffer is not ours to write
            _spaces_to_ascii(data, starts.min(), ends.max(), _IS_SPACE)
        return starts, ends, data
    ls, le, ld = spans(_prepare(arrow_take(texts, arrow_array(other if rows is None else rows[other])),
                                lower_case, nfkc))
    base, top = int(starts.min()), int(ends.max())
    buf = np.empty(top - base + int(le[-1] - ls[0]), dtype=np.uint8)
    buf[:top - base] = data[base:top]
    buf[top - base:] = ld[ls[0]:le[-1]]
    if spaces:
        _spaces_to_ascii(buf, top - base, len(buf), _IS_SPACE)
    starts = starts - base
    ends = ends - base
    starts[other] = ls - ls[0] + (top - base)
    ends[other] = le - ls[0] + (top - base)
    return starts, ends, buf


def _prepare(texts, lower_case: bool, nfkc: bool):
    """NFKC (when asked), then Unicode lowercase (when asked), in Arrow."""
    if nfkc:
        import pyarrow.compute as pc  # ~0.045 CPU-s to import: only where NFKC is asked for

        texts = pc.utf8_normalize(texts, form="NFKC")
    return lower(texts) if lower_case else texts
