"""CRC-32 of payloads: the IEEE polynomial zlib uses, one message at a time or a whole batch at once.

A bridged header carries ``zlib.crc32(payload)``. For a batch, calling zlib per message is a Python
loop, so ``crc32_rows`` computes the CRCs of every row of a 2-D byte array with numpy instead, using
the linearity of CRC over GF(2): for a message ``x`` of ``L`` bytes,

    crc32(x) = crc32(0 * L)  XOR  XOR_j  P[L - 1 - j][x[j]]

where ``P[d][b]`` is the CRC register (zero initial value, no final xor) after byte ``b`` followed by
``d`` zero bytes. No term depends on another, so a batch is one table gather and one xor per byte
column, over all rows at once.

When the native helpers are available (``native.py``) a batch is one call into C (slicing-by-16
tables) instead; the numpy code above stays as the fallback and the reference the tests compare to.
"""

from __future__ import annotations

import functools
import zlib

import numpy as np

from . import native

__all__ = ["CRC_POLY", "crc32", "crc32_rows", "crc_table"]

#: The reflected IEEE 802.3 polynomial (zlib, PNG, Ethernet).
CRC_POLY = 0xEDB88320

crc32 = zlib.crc32

# Rows are processed in blocks of this many so that a block's gathers stay in cache.
_BLOCK_ROWS = 1 << 15


@functools.lru_cache(maxsize=None)
def crc_table() -> np.ndarray:
    """The classic 256-entry byte table: register after one byte ``b`` from a zero register."""
    t = np.arange(256, dtype=np.uint32)
    for _ in range(8):
        t = np.where(t & 1, (t >> 1) ^ np.uint32(CRC_POLY), t >> 1).astype(np.uint32)
    return t


@functools.lru_cache(maxsize=64)
def _distance_tables(width: int) -> np.ndarray:
    """``P[d][b]`` for d < width, flattened to ``d * 256 + b``."""
    t = crc_table()
    p = np.empty((width, 256), dtype=np.uint32)
    p[0] = t
    for d in range(1, width):
        prev = p[d - 1]
        p[d] = (prev >> 8) ^ t[prev & 0xFF]
    return p.reshape(-1)


@functools.lru_cache(maxsize=8)
def _pair_tables(width: int) -> np.ndarray:
    """Tables for little-endian u16 words of an even-width row: ``Q[k][w]`` covers bytes 2k and 2k+1.

    Half the gathers of the byte tables, at 256 KiB per word position (so only for short rows).
    """
    p = _distance_tables(width).reshape(width, 256)
    w = np.arange(65536)
    lo, hi = w & 0xFF, w >> 8
    return np.stack(
        [p[width - 1 - 2 * k][lo] ^ p[width - 2 - 2 * k][hi] for k in range(width // 2)]
    )


@functools.lru_cache(maxsize=64)
def _zero_crcs(width: int) -> np.ndarray:
    """``crc32(bytes(L))`` for every L <= width."""
    out = np.empty(width + 1, dtype=np.uint32)
    crc = 0
    out[0] = 0
    for n in range(1, width + 1):
        crc = zlib.crc32(b"\0", crc)
        out[n] = crc
    return out


#: Rows up to this width use the u16 pair tables (width/2 * 256 KiB of tables).
_PAIR_MAX_WIDTH = 128


def crc32_rows(rows: np.ndarray, lengths=None) -> np.ndarray:
    """The CRC-32 of every row of ``rows`` (a 2-D uint8 array), as a uint32 array.

    Args:
        rows: shape (n, width); row i's message is ``rows[i, :lengths[i]]``.
        lengths: per-row byte counts (default: every row is ``width`` long). Bytes past a row's length
            must be zero, as they are in a zero-filled slot.
    Returns:
        ``np.uint32`` array of n CRCs, equal to ``zlib.crc32(rows[i, :lengths[i]])``.
    """
    rows = np.asarray(rows)
    if rows.ndim != 2 or rows.dtype != np.uint8:
        raise ValueError(
            f"crc32_rows needs a 2-D uint8 array, got {rows.dtype} with shape {rows.shape}"
        )
    n, width = rows.shape
    if lengths is not None:
        lengths = np.asarray(lengths, dtype=np.int64)
        if lengths.shape != (n,) or (n and (lengths.min() < 0 or lengths.max() > width)):
            raise ValueError(
                "crc32_rows: lengths must be one count per row, each within the row width"
            )
        if n and (lengths == lengths[0]).all():
            rows, lengths = rows[:, : int(lengths[0])], None
            width = rows.shape[1]
    fast = native.crc32_rows(rows, lengths)
    if fast is not None:
        return fast
    out = np.empty(n, dtype=np.uint32)
    if n == 0 or width == 0:
        out[:] = 0
        return out
    for start in range(0, n, _BLOCK_ROWS):
        block = rows[start : start + _BLOCK_ROWS]
        if lengths is None:
            out[start : start + len(block)] = _crc_uniform(block) ^ _zero_crcs(width)[width]
        else:
            ln = lengths[start : start + len(block)]
            out[start : start + len(block)] = _crc_ragged(block, ln) ^ _zero_crcs(width)[ln]
    return out


def _crc_uniform(block: np.ndarray) -> np.ndarray:
    """The linear part of the CRC of equal-length rows (gathers run down contiguous columns)."""
    m, width = block.shape
    acc = np.zeros(m, dtype=np.uint32)
    tmp = np.empty(m, dtype=np.uint32)
    if width % 2 == 0 and width <= _PAIR_MAX_WIDTH:
        try:  # a row-contiguous block views as u16 words in place, saving one copy
            words = block.view("<u2")
        except ValueError:
            words = np.ascontiguousarray(block).view("<u2")
        cols = np.ascontiguousarray(words.T)
        for k, table in enumerate(_pair_tables(width)):
            np.take(table, cols[k], out=tmp)
            acc ^= tmp
        return acc
    tables = _distance_tables(width).reshape(width, 256)
    cols = np.ascontiguousarray(block.T)
    for j in range(width):
        np.take(tables[width - 1 - j], cols[j], out=tmp)
        acc ^= tmp
    return acc


def _crc_ragged(block: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The linear part of the CRC of rows of different lengths (distance from the end varies)."""
    m, width = block.shape
    tables = _distance_tables(width)
    cols = np.ascontiguousarray(block.T)
    acc = np.zeros(m, dtype=np.uint32)
    dist = (lengths - 1) * 256
    for j in range(width):
        # bytes past a row's end are zero and P[d][0] == 0, so clamping d to 0 adds nothing
        acc ^= tables[np.maximum(dist, 0) + cols[j]]
        dist -= 256
    return acc
