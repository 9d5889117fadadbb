"""The columnar batch decoder: the slots of a whole batch of bridged messages into view rows.

The inverse of ``encode_batch``: ``codec_for(cls).unpack_array(slots)`` (``decode_batch``) returns the view rows of ``n`` slots
(``Str`` as ``{len, data}``, ``List`` as ``{len, items}``, zeros past each one's length), validated
as the per-message decoder validates one slot. One native call decodes the batch
(``rg_decode_rows`` in ``_native.c``) for every shape with a columnar program; other shapes, and
hosts without the native helpers, decode each slot with the per-message decoder and build the rows
from the objects.
"""

from __future__ import annotations

import concurrent.futures
import os
import threading
from typing import Any, Callable, Optional

import numpy as np

from ..errors import WireFormatError
from ..layout import layout_of
from . import native
from .columnar import objects_to_view

__all__ = ["DECODE_THREADS", "PARALLEL_DECODE_ROWS", "decode_batch"]

#: Threads that decode one large batch natively (each its own range of rows: ctypes releases the
#: GIL for the call), and the rows per thread below which the calling thread decodes it alone.
DECODE_THREADS = min(8, os.cpu_count() or 1)
PARALLEL_DECODE_ROWS = 8192

_pool: Optional[concurrent.futures.ThreadPoolExecutor] = None
_pool_lock = threading.Lock()


def _decoder_pool() -> concurrent.futures.ThreadPoolExecutor:
    """The process's decoder threads (created on first use)."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = concurrent.futures.ThreadPoolExecutor(
                max_workers=DECODE_THREADS, thread_name_prefix="ringgen-decode"
            )
        return _pool


def decode_batch(
    cls: type, slots: Any, out: Optional[np.ndarray] = None, *, decode: Callable[[bytes], Any]
) -> np.ndarray:
    """The view rows of a batch of bridged ``cls`` slots (``BridgedCodec.unpack_array`` calls it).

    Args:
        cls: a bridged message class.
        slots: the slots, an ``(n, k)`` uint8 array with ``k >= slot_size`` (a ring's rows, whose
            bytes past the slot are never read), an array of ``n`` slot records
            (``np.dtype((np.void, k))``), or bytes holding ``n`` whole slots back to back.
        out: ``n`` view rows (``layout_of(cls).dtype``, contiguous) to fill instead of allocating.
        decode: the per-message decoder of ``cls`` (bytes -> object, raising ``WireFormatError``),
            for the shapes the native decoder does not take and for the error of a bad slot.

    Returns:
        ``out``, or a new array of ``n`` view rows.

    Raises:
        WireFormatError: a slot is not a well-formed ``cls`` message (the per-message decoder's error,
            naming field and offset, with a note naming the slot).
        ValueError: ``slots`` has rows shorter than a slot, or ``out`` the wrong dtype or length.
    """
    lay = layout_of(cls)
    rows = _slot_rows(lay, slots)
    n = len(rows)
    if out is None:
        out = np.empty(n, dtype=lay.dtype)
    elif out.dtype != lay.dtype or out.shape != (n,) or not out.flags.c_contiguous:
        raise ValueError(
            f"{lay.name}: out must be {n} contiguous view rows of dtype {lay.dtype}, got "
            f"{out.dtype} {out.shape}"
        )
    bad = _decode_native(cls, lay, rows, out)
    if bad is None:
        return out
    if bad < 0:  # no native program: one object per slot, then the rows
        objs = [_decode_one(decode, rows, i, lay.slot_size) for i in range(n)]
        rows_of = np.dtype((np.void, lay.size))  # whole rows, padding included (zeros)
        np.copyto(out.view(rows_of), objects_to_view(cls, objs).view(rows_of))
        return out
    _decode_one(decode, rows, bad, lay.slot_size)  # raises the error, naming the field
    raise WireFormatError(
        f"{lay.name}: slot {bad} of the batch was refused by the native decoder, which the "
        "per-message decoder accepts",
        hint="report this as a ringgen bug, with the slot's bytes",
    )


def _decode_native(cls: type, lay: Any, rows: np.ndarray, out: np.ndarray) -> Optional[int]:
    """``native.decode_slots`` over the batch, split into ranges decoded by several threads when
    large; the first bad row in row order, None, or -1 (no native decoder)."""
    n = len(out)
    parts = min(DECODE_THREADS, n // PARALLEL_DECODE_ROWS)
    if parts < 2:
        return native.decode_slots(cls, lay, rows, out)
    cuts = [n * i // parts for i in range(parts + 1)]
    futures = [
        _decoder_pool().submit(native.decode_slots, cls, lay, rows[a:b], out[a:b])
        for a, b in zip(cuts, cuts[1:])
    ]
    results = [f.result() for f in futures]  # all waited for: no thread writes into out after
    for a, bad in zip(cuts, results):
        if bad == -1:
            return -1
        if bad is not None:
            return a + bad
    return None


def _decode_one(decode: Any, rows: np.ndarray, i: int, size: int) -> Any:
    try:
        return decode(rows[i, :size].tobytes())
    except WireFormatError as exc:
        exc.add_note(f"in slot {i} of the batch")
        raise


def _slot_rows(lay: Any, slots: Any) -> np.ndarray:
    """``slots`` as an ``(n, k)`` uint8 array with unit column stride, ``k >= slot_size``."""
    if isinstance(slots, np.ndarray) and slots.dtype.kind == "V" and slots.dtype.names is None:
        slots = slots.reshape(-1).view(np.uint8).reshape(len(slots), -1)
    elif not isinstance(slots, np.ndarray):
        flat = np.frombuffer(memoryview(slots).cast("B"), np.uint8)
        if len(flat) % lay.slot_size:
            raise ValueError(
                f"{lay.name}: {len(flat)} bytes are not whole slots of {lay.slot_size} bytes"
            )
        slots = flat.reshape(-1, lay.slot_size)
    if slots.dtype != np.uint8 or slots.ndim != 2 or slots.shape[1] < lay.slot_size:
        raise ValueError(
            f"{lay.name}: slots must be an (n, >= {lay.slot_size}) uint8 array, got "
            f"{slots.dtype} {slots.shape}"
        )
    if slots.strides[1] != 1:
        slots = np.ascontiguousarray(slots)
    return slots
