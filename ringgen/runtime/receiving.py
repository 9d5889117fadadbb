"""What one ``receive_batch`` call takes: its arguments checked, and the replies it gathers.

``receive_batch(max_n, timeout, min_n=..., out=...)`` may take several batches from the transport
(the spill first, then the output queue) before it has the ``min_n`` replies it was asked for.
``Gathered`` keeps them in order and turns them into one result at the end: copied straight into the
caller's ``out`` array when there is one, else converted once (one concatenation of the batches,
then the format's conversion), so a whole batch costs one call and no per-reply Python work for a
direct message. Rows are copied as bytes (``copy_rows``): numpy's own copy of a structured array
goes field by field and runs far below memory speed.
"""

from __future__ import annotations

import numbers
from typing import Any, Optional, Union

import numpy as np

from .batches import Batch, BatchFormat

__all__ = ["Gathered", "check_counts", "check_out", "copy_rows"]


def check_counts(
    kernel: str, capacity: int, max_n: Any, min_n: Any, out: Optional[np.ndarray]
) -> tuple[int, int]:
    """``(max_n, min_n)`` of a ``receive_batch`` call as ints, defaults filled in.

    ``max_n`` defaults to ``len(out)`` with ``out`` (already checked by ``check_out``), else to
    ``capacity`` (one queue's worth); ``min_n`` defaults to 1 (return as soon as anything is there).

    Raises:
        ValueError: ``max_n`` or ``min_n`` is not an int >= 1, ``min_n`` is over ``max_n``, or
            ``out`` is shorter than ``max_n``; the message names the argument.
    """
    call = f"kernel {kernel}.receive_batch"
    if max_n is None:
        n = capacity if out is None else len(out)
    else:
        n = _count(call, "max_n", max_n)
    want = 1 if min_n is None else _count(call, "min_n", min_n)
    if want > n:
        raise ValueError(
            f"{call}: min_n={want} is over max_n={n}; a call returns at most max_n replies"
            + (" (max_n defaults to len(out))" if max_n is None and out is not None else "")
        )
    if out is not None and len(out) < n:
        raise ValueError(
            f"{call}: out= has room for {len(out)} replies, fewer than max_n={n}; "
            "give a longer array or a smaller max_n"
        )
    return n, want


def _count(call: str, argument: str, value: Any) -> int:
    if type(value) is int and value >= 1:  # the usual case, without the ABC checks below
        return value
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{call}: {argument}={value!r} is not an int >= 1")
    return int(value)


def check_out(kernel: str, out_codec: Any, out: Any) -> np.ndarray:
    """Check the caller's ``out`` array of ``receive_batch`` (its length: ``check_counts``).

    Args:
        kernel: the kernel's name, for the messages.
        out_codec: the codec of the kernel's output message.
        out: what the caller gave.

    Returns:
        ``out`` itself.

    For a bridged output message (one with a ``Str`` or ``List``), ``out`` holds its view rows
    (``Str`` as ``{len, data}``, ``List`` as ``{len, items}``): the replies are decoded into it by
    the columnar decoder, with no object per reply.

    Raises:
        TypeError: ``out`` is not a numpy array of the output message's (view) dtype.
        ValueError: ``out`` is not 1-d, has no room at all, or is read-only.
    """
    call = f"kernel {kernel}.receive_batch"
    cls = out_codec.cls.__qualname__
    if not isinstance(out, np.ndarray):
        raise TypeError(
            f"{call}: out= must be a numpy structured array of {cls}'s dtype, got "
            f"{type(out).__qualname__}; make one with np.empty(n, dtype=rg.dtype_of({cls}))"
        )
    if out.dtype != out_codec.dtype:
        raise TypeError(
            f"{call}: out= has dtype {out.dtype}, but the replies are {cls} rows of dtype "
            f"{out_codec.dtype}; make it with np.empty(n, dtype=rg.dtype_of({cls}))"
        )
    if out.ndim != 1:
        raise ValueError(f"{call}: out= must be 1-d, got shape {out.shape}")
    if len(out) == 0:
        raise ValueError(f"{call}: out= has room for no reply (shape {out.shape})")
    if not out.flags.writeable:
        raise ValueError(f"{call}: out= is read-only; give a writable array")
    return out


class Gathered:
    """The replies one ``receive_batch`` call has taken so far, in order.

    Where the replies are rows (a direct output message), they are gathered in one array: the
    caller's ``out``, or, for a call that waits for more than one reply, one array of ``max_n`` rows
    allocated here. ``room()`` hands the transport the rows still free in it, and a backend with
    ``_pop_into`` copies the ring's slots straight there: one copy from the ring to the caller's
    array, however many steps the replies come in.

    Args:
        fmt: the handle's ``BatchFormat``.
        out: the caller's array (checked by ``check_out``), or None.
        max_n: the most replies the call takes (the length of the array allocated here).
        min_n: the replies the call waits for (an array is allocated here only when over 1).
    """

    __slots__ = ("count", "_format", "_out", "_own", "_owner", "_parts", "_rows")

    def __init__(
        self, fmt: BatchFormat, out: Optional[np.ndarray], max_n: int = 1, min_n: int = 1
    ) -> None:
        self._format = fmt
        self._parts: list = []
        self.count = 0
        # A direct message's slots are its rows (``slot_dtype``), which the transport can write
        # itself; bridged slots need decoding.
        direct = getattr(fmt, "out_slot", None) is not None and not fmt.out_codec.bridged
        self._own = out is None and direct and min_n > 1
        if self._own:
            out = np.empty(max_n, dtype=fmt.out_slot)
        self._out = out
        # The transport may write (direct) or decode (bridged: PositionalOutput.take_into) the
        # replies straight into the caller's rows.
        self._rows = out if out is not None and out.flags.c_contiguous else None
        # What numpy records as the base of every view of the rows: a batch with this base is rows
        # _pop_into wrote in place (found without reading addresses, which costs microseconds).
        self._owner = None if self._rows is None else self._rows[:0].base

    def room(self) -> Optional[np.ndarray]:
        """The free rows of the array the replies are gathered in, for ``_pop_into`` (None when
        they are not gathered in one, or it cannot take slots as they are)."""
        if self._rows is None:
            return None
        return self._rows[self.count :]

    def add(self, batch: Batch) -> None:
        """Keep one batch the transport handed out (copied into ``out`` at once when there is one,
        so the caller's array holds every reply taken even if a later step raises; nothing to copy
        when the transport wrote it there already)."""
        k = len(batch)
        in_place = self._owner is not None and getattr(batch, "base", None) is self._owner
        if self._own and not in_place:
            # The transport has no _pop_into: keep its batches as they are (concatenated once).
            self._parts = [self._out[: self.count]] if self.count else []
            self._own, self._out, self._rows, self._owner = False, None, None, None
        if self._out is not None:
            if not in_place:
                self._fill(self._out[self.count : self.count + k], batch)
        else:
            self._parts.append(batch)
        self.count += k

    def _fill(self, dst: np.ndarray, batch: Batch) -> None:
        """Copy (a direct message) or decode (a bridged one: slots or objects) ``batch`` into
        ``dst``, rows of the output message's view dtype."""
        codec = self._format.out_codec
        if not codec.bridged:
            copy_rows(dst, self._format.to_array(batch))
        elif isinstance(batch, np.ndarray):  # slots: one columnar decode
            if dst.flags.c_contiguous:
                codec.unpack_array(batch, len(batch), out=dst)
            else:
                copy_rows(dst, codec.unpack_array(batch, len(batch)))
        else:  # objects (the reference backend)
            copy_rows(dst, codec.to_array(self._format.to_objects(batch)))

    def result(self) -> Union[np.ndarray, list]:
        """What ``receive_batch`` returns: ``out[:count]``, or the format's array (list) of every
        reply taken; empty when none."""
        if self._own:
            if not self.count:
                return self._format.empty()
            rows = self._out[: self.count]
            # A few replies in a large array: hand out their own copy, not the whole allocation.
            return rows.copy() if 4 * self.count < len(self._out) else rows
        if self._out is not None:
            return self._out[: self.count]
        parts = self._parts
        if not parts:
            return self._format.empty()
        if len(parts) == 1:
            return self._format.to_array(parts[0])
        if isinstance(parts[0], list):
            return self._format.to_array([item for part in parts for item in part])
        merged = np.empty(self.count, dtype=parts[0].dtype)
        at = 0
        for part in parts:
            copy_rows(merged[at : at + len(part)], part)
            at += len(part)
        return self._format.to_array(merged)


def copy_rows(dst: np.ndarray, src: np.ndarray) -> None:
    """``dst[:] = src`` for two 1-d arrays of the same length, at memory speed where it can be.

    numpy copies a structured array field by field, element by element (10 to 20 times slower than
    ``memcpy`` for a 16-byte struct); rows of the same dtype are copied as opaque records of their
    size instead (``np.void``), padding included, contiguous or not.
    """
    if dst.dtype == src.dtype:
        rows = np.dtype((np.void, dst.dtype.itemsize))
        np.copyto(dst.view(rows), src.view(rows))
    else:
        dst[...] = src
