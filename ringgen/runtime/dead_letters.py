"""Raw slots and dead letters: what a ``KernelHandle`` needs beyond encoded messages.

*Raw slots* are queue slots another program (or ``rg.encode``) already encoded; ``send_raw`` puts them
in the input queue as they are, and the kernel validates them exactly as it validates anything else.

*Dead letters* are the bridged input messages that failed validation on the kernel (bad magic, size,
type id, CRC, payload or UTF-8), returned to the host through a bounded queue of their own when the
kernel is launched with ``dead_letters=True`` (docs/runtime.md). A dead letter is the input slot as it
arrived, with the header's ``flags`` bit 0 (``HeaderFlag.DEAD_LETTER``) set and the ``Reason`` at
offset 48 — what the device codec's ``rg_wire_mark_dead_letter`` writes. A full dead-letter queue
never blocks the kernel: further dead letters are counted (``stats().dead_letters_dropped``) and
not returned; the messages themselves are still counted in ``stats().rejected`` by reason.

``RawSlotsAndDeadLetters`` is that part of ``KernelHandle``'s API (``send_raw``, ``send_raw_batch``,
``receive_dead_letters``), written once for every backend; a backend supplies two hooks.
"""

from __future__ import annotations

from typing import Any, Optional, Union

import attrs
import numpy as np

from ..errors import BuildError, EncodeError, QueueClosedError
from ..protocol import CACHE_LINE, Reason
from ..wire.header import HEADER_FIELDS, HEADER_SIZE, MAGIC, HeaderFlag
from .waiting import check_timeout

__all__ = [
    "DEAD_LETTER_CTL_DTYPE",
    "DeadLetter",
    "RawSlotsAndDeadLetters",
    "dead_letter_capacity",
    "dead_letters_from_slots",
    "mark_dead_letters",
    "raw_slots",
]

#: Where each header field sits (docs/wire-format.md), from the wire format's one definition.
_OFFSET = {name: offset for name, _code, offset, _meaning in HEADER_FIELDS}

#: The control words of a dead-letter queue in shared memory: the queue's ``tail`` (device) and
#: ``head`` (host), each on its own line as in every ringgen queue, then the device's count of dead
#: letters it could not return because the queue was full. The first two lines are an
#: ``rg_queue_ctl``, so the device drives the queue with the ordinary ring protocol.
DEAD_LETTER_CTL_DTYPE = np.dtype(
    {
        "names": ["tail", "head", "dropped"],
        "formats": ["<u8", "<u8", "<u8"],
        "offsets": [0, CACHE_LINE, 2 * CACHE_LINE],
        "itemsize": 3 * CACHE_LINE,
    }
)


def _column(rows: np.ndarray, name: str, dtype: str) -> np.ndarray:
    """Header field ``name`` of every slot in ``rows`` (``(n, slot_size)`` uint8), read at once."""
    at, width = _OFFSET[name], np.dtype(dtype).itemsize
    return np.ascontiguousarray(rows[:, at : at + width]).view(dtype).reshape(-1)


def _set_column(rows: np.ndarray, name: str, values: Any, dtype: str) -> None:
    """Write header field ``name`` of every slot in ``rows`` (``values``: one or one per row)."""
    at, width = _OFFSET[name], np.dtype(dtype).itemsize
    column = np.broadcast_to(np.asarray(values, dtype=dtype), (len(rows),))
    rows[:, at : at + width] = np.ascontiguousarray(column).view(np.uint8).reshape(-1, width)


@attrs.frozen
class DeadLetter:
    """A bridged input message the kernel rejected during validation, returned to the host.

    Attributes:
        reason: why it was rejected (``Reason.BAD_MAGIC`` ... ``Reason.BAD_UTF8``).
        data: the whole input slot as the kernel saw it (zero-padded to the slot size), with the
            header's flags bit 0 set and ``reason`` written at offset 48; the payload and its CRC
            are untouched.
        sequence: the header's sequence number (u64 at offset 32), or None when the slot does not
            start with the wire magic (random bytes have no header to read one from).
    """

    reason: Reason
    data: bytes = attrs.field(repr=lambda d: f"<{len(d)} bytes>")
    sequence: Optional[int] = None


def dead_letter_capacity(kernel: str, bridged: bool, value: Union[bool, int], capacity: int) -> int:
    """The dead-letter queue's slots for launch option ``dead_letters=value`` (0: no queue).

    ``True`` gives the kernel's queue capacity; an int is a capacity of its own (a power of two).

    Raises:
        BuildError: a kernel whose input is not bridged (it has nothing to validate, so nothing is
            ever a dead letter), or a capacity that is not a power of two >= 2.
    """
    if value is False or value is None or value == 0:
        return 0
    if not bridged:
        raise BuildError(
            f"kernel {kernel}: launch option dead_letters applies to kernels with a bridged input "
            "(a Str or List field); a direct input is never rejected by validation",
            hint="launch without dead_letters",
        )
    cap = capacity if value is True else value
    if not isinstance(cap, int) or isinstance(cap, bool) or cap < 2 or cap & (cap - 1):
        raise BuildError(
            f"kernel {kernel}: launch option dead_letters={value!r} is neither a bool nor a power "
            "of two >= 2",
            hint="dead_letters=True (the queue capacity) or e.g. dead_letters=4096",
        )
    return cap


def raw_slots(kernel: str, slot_size: int, data: Any, n: Optional[int]) -> np.ndarray:
    """``data`` as an ``(n, slot_size)`` uint8 array of input slots, shorter messages zero-padded.

    ``data`` is ``bytes``/``bytearray``/``memoryview`` or a numpy array: with ``n=None`` a single
    message (at most one slot, zero-padded); with ``n`` given, ``n`` consecutive slots of exactly
    ``slot_size`` bytes (a flat buffer, a 2-d uint8 array, or an array of slot-sized records).

    Raises:
        EncodeError: a single message longer than the slot, or a batch whose size is not
            ``n * slot_size`` bytes; the message names the kernel and the slot size.
    """
    if isinstance(data, np.ndarray):
        flat = np.ascontiguousarray(data).reshape(-1).view(np.uint8)
    else:
        flat = np.frombuffer(memoryview(data).cast("B"), dtype=np.uint8)
    if n is None:
        if flat.size > slot_size:
            raise EncodeError(
                f"kernel {kernel}: a raw message of {flat.size} bytes does not fit the input slot "
                f"of {slot_size} bytes",
                hint="a bridged message is at most 256 header bytes plus the class's max_payload",
            )
        out = np.zeros((1, slot_size), dtype=np.uint8)
        out[0, : flat.size] = flat
        return out
    if not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"kernel {kernel}: n must be an int >= 0, got {n!r}")
    if flat.size != n * slot_size:
        raise EncodeError(
            f"kernel {kernel}: send_raw_batch of n={n} slots needs {n} x {slot_size} = "
            f"{n * slot_size} bytes (the input slot is {slot_size} bytes), got {flat.size}",
            hint="pad every message to the slot size (ringgen.wire.encode_batch returns such rows)",
        )
    return flat.reshape(int(n), slot_size)


def mark_dead_letters(rows: np.ndarray, reasons: np.ndarray) -> np.ndarray:
    """Mark slots as dead letters in place, as the device's ``rg_wire_mark_dead_letter`` does.

    ``rows`` is a writable ``(n, slot_size)`` uint8 array (slot size >= 52), ``reasons`` ``n``
    Reason codes; flags becomes ``DEAD_LETTER`` and reason the code, both little-endian u32.
    """
    _set_column(rows, "flags", int(HeaderFlag.DEAD_LETTER), "<u4")
    _set_column(rows, "reason", reasons, "<u4")
    return rows


def dead_letters_from_slots(rows: np.ndarray) -> list[DeadLetter]:
    """``DeadLetter`` objects from marked dead-letter slots (an ``(n, slot_size)`` uint8 array)."""
    codes = _column(rows, "reason", "<u4").tolist()
    if rows.shape[1] >= HEADER_SIZE:
        has_header = (_column(rows, "magic", "<u4") == MAGIC).tolist()
        sequences = _column(rows, "sequence", "<u8").tolist()
    else:  # too short to hold a header: no sequence to read
        has_header = sequences = [False] * len(rows)
    known = {int(r) for r in Reason}
    return [
        DeadLetter(
            # the device writes only Reasons; keep the evidence of anything else as NONE
            reason=Reason(code) if code in known else Reason.NONE,
            data=row.tobytes(),
            sequence=seq if header else None,
        )
        for row, code, header, seq in zip(rows, codes, has_header, sequences)
    ]


class RawSlotsAndDeadLetters:
    """The raw-send and dead-letter half of ``KernelHandle``'s public API (a mixin of it).

    It relies on what ``KernelHandle`` defines: ``name``, ``backend``, ``in_codec``, ``format``,
    ``dead_letter_capacity``, ``_dl_lock``, ``_dl_spill``, ``_released``, ``_push_all`` and
    ``_full_error``. Backends with a dead-letter queue override the last two hooks below.
    """

    def send_raw(self, data: Any, *, block: bool = True, timeout: Optional[float] = None) -> None:
        """Publish one already-encoded message (``rg.encode`` output, or another program's bytes).

        The bytes go into the input queue as they are, zero-padded to the slot size; the kernel
        validates them as it validates every message (a bad one is counted under its ``Reason`` in
        ``stats().rejected`` and, with ``dead_letters``, returned by ``receive_dead_letters``).

        Args:
            data: ``bytes``, ``bytearray``, ``memoryview`` or a uint8 array of at most one slot.
            block, timeout: as ``send``.

        Raises:
            EncodeError: ``data`` is longer than the input slot (the message names the kernel and
                the slot size).
            QueueFullError, QueueClosedError, KernelFaultError: as ``send``.
        """
        timeout = check_timeout(timeout, f"kernel {self.name}.send_raw")  # type: ignore[attr-defined]
        rows = raw_slots(self.name, self.in_codec.slot_size, data, None)
        accepted = self._push_all(self.format.from_slots(rows), block=block, timeout=timeout)
        if accepted < 1:
            raise self._full_error(0, 1, timeout if block else None)

    def send_raw_batch(
        self,
        slots: Any,
        n: Optional[int] = None,
        *,
        block: bool = True,
        timeout: Optional[float] = None,
    ) -> int:
        """Publish ``n`` already-encoded slots; returns how many were accepted (as ``send_batch``).

        Args:
            slots: ``n`` consecutive slots of exactly the input slot size each (``bytes``, a flat
                or ``(n, slot_size)`` uint8 array, or an array of slot-sized records such as
                ``ringgen.wire.encode_batch`` returns).
            n: the number of slots (default: ``len(slots) // slot_size`` for a flat buffer, the
                number of rows for an array with more than one dimension or a record dtype).
            block, timeout: as ``send_batch``.

        Raises:
            EncodeError: ``slots`` does not hold exactly ``n`` slots of the input slot size.
            QueueFullError, QueueClosedError, KernelFaultError: as ``send_batch``.
        """
        timeout = check_timeout(timeout, f"kernel {self.name}.send_raw_batch")  # type: ignore[attr-defined]
        size = self.in_codec.slot_size
        if n is None:
            n = _count_slots(self.name, slots, size)
        rows = raw_slots(self.name, size, slots, n)
        batch = self.format.from_slots(rows)
        done = self._push_all(batch, block=block, timeout=timeout)
        if block and done < len(batch):
            raise self._full_error(done, len(batch), timeout)
        return done

    def receive_dead_letters(self, max_n: Optional[int] = None) -> list[DeadLetter]:
        """Take up to ``max_n`` dead letters that are ready now (default: all of them); never waits.

        A dead letter is a bridged input message that failed validation on the kernel, with its
        ``Reason`` (``ringgen.runtime.dead_letters.DeadLetter``). Dead letters come in the order the
        kernel rejected the messages. After termination, the ones returned before the kernel
        acknowledged stay readable.

        Raises:
            QueueClosedError: the kernel was launched without ``dead_letters``.
        """
        if not self.dead_letter_capacity:
            raise QueueClosedError(
                f"kernel {self.name} ({self.backend}) was launched without a dead-letter queue",
                hint="launch it with dead_letters=True; rejected messages are still counted in "
                "stats().rejected",
            )
        n = 1 << 62 if max_n is None else int(max_n)
        if n < 1:
            raise ValueError(
                f"kernel {self.name}: receive_dead_letters max_n must be >= 1, got {max_n!r}"
            )
        parts: list = []
        got = 0
        with self._dl_lock:
            while got < n:
                part = self._dl_spill.take(n - got)
                if part is None:
                    break
                parts.append(part)
                got += len(part)
            while got < n and not self._released:
                part = self._pop_dead_letters(min(n - got, self.dead_letter_capacity))
                if not len(part):
                    break
                parts.append(part)
                got += len(part)
        return [d for p in parts for d in dead_letters_from_slots(p)]

    def _drain_dead_letters(self) -> None:
        if not self.dead_letter_capacity:
            return
        with self._dl_lock:
            while True:
                part = self._pop_dead_letters(self.dead_letter_capacity)
                if not len(part):
                    return
                self._dl_spill.put(part)

    # Dead letters: optional hooks, since a backend without a dead-letter queue never has one
    # (``open`` rejects dead_letters for a backend whose __init__ does not take it).

    def _pop_dead_letters(self, max_n: int) -> np.ndarray:
        """Take up to ``max_n`` dead letters from the dead-letter queue without blocking: an
        ``(k, slot_size)`` uint8 array of marked slots (k may be 0). Called under the dead-letter
        lock, only when ``dead_letter_capacity`` is nonzero."""
        return np.zeros((0, self.in_codec.slot_size), dtype=np.uint8)

    def _dead_letters_dropped(self) -> int:
        """Dead letters the kernel counted but could not return because their queue was full."""
        return 0


def _count_slots(kernel: str, slots: Any, slot_size: int) -> int:
    """How many slots ``slots`` holds when ``send_raw_batch`` is not told.

    Raises:
        EncodeError: a flat buffer whose size is not a multiple of the slot size.
    """
    if isinstance(slots, np.ndarray) and (slots.ndim > 1 or slots.dtype.itemsize == slot_size):
        return len(slots) if slots.ndim else 1
    size = slots.nbytes if isinstance(slots, np.ndarray) else memoryview(slots).nbytes
    if size % slot_size:
        raise EncodeError(
            f"kernel {kernel}: send_raw_batch got {size} bytes, not a whole number of "
            f"{slot_size}-byte input slots",
            hint="pad every message to the slot size, or pass n",
        )
    return size // slot_size
