"""JSON string escaping over Arrow string buffers, as numba kernels (no Python object per string).

A string becomes a quoted JSON literal: ``"`` and ``\\`` escaped, control characters as their short
escapes (``\\n``, ``\\t``, ...) or ``\\u00XX``, every other byte (UTF-8 included) as it is; a null
becomes ``null``. Two passes: the lengths (for the offsets), then the bytes.
"""
from __future__ import annotations

import numba as nb
import numpy as np


@nb.njit(cache=True, nogil=True)
def escaped_lengths(starts, ends, data, valid, out):
    for i in range(len(starts)):
        if not valid[i]:
            out[i] = 4  # null
            continue
        n = 2
        for j in range(starts[i], ends[i]):
            b = data[j]
            if b == 34 or b == 92 or b == 8 or b == 9 or b == 10 or b == 12 or b == 13:
                n += 2
            elif b < 32:
                n += 6
            else:
                n += 1
        out[i] = n


@nb.njit(cache=True, nogil=True)
def escape(starts, ends, data, valid, offsets, out):
    hexd = np.array([48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 97, 98, 99, 100, 101, 102], dtype=np.uint8)
    for i in range(len(starts)):
        k = offsets[i]
        if not valid[i]:
            out[k], out[k + 1], out[k + 2], out[k + 3] = 110, 117, 108, 108  # null
            continue
        out[k] = 34
        k += 1
        for j in range(starts[i], ends[i]):
            b = data[j]
            if b == 34 or b == 92:
                out[k], out[k + 1] = 92, b
                k += 2
            elif b < 32:
                short = 98 if b == 8 else 116 if b == 9 else 110 if b == 10 else 102 if b == 12 \
                    else 114 if b == 13 else 0
                out[k] = 92
                if short:
                    out[k + 1] = short
                    k += 2
                else:
                    out[k + 1], out[k + 2], out[k + 3], out[k + 4] = 117, 48, 48, hexd[b >> 4]
                    out[k + 5] = hexd[b & 15]
                    k += 6
            else:
                out[k] = b
                k += 1
        out[k] = 34
