"""A bounded single-producer, single-consumer ring in host memory, with the device queues' protocol.

Same rules as ``ringgen.protocol`` and ``ringgen.runtime.host_ring`` (whose capacity check and slot
arithmetic it uses): a power-of-two number of slots and two counters that only grow, ``tail``
(written only by the producer) and ``head`` (written only by the consumer); the queue is full when
``tail - head == capacity``; a slot is ``counter & (capacity - 1)``. Nothing is ever overwritten or
dropped: ``push`` takes only what fits and says how many. Unlike ``host_ring``, no kernel shares
it: the counters are plain attributes and the slots may hold Python objects.

Publication order: the producer writes the slots, then stores ``tail``; the consumer reads ``tail``,
copies the slots out, then stores ``head``. In CPython each of those stores is a single attribute
assignment, atomic under the interpreter lock and seen by the other thread in program order, which is
the release/acquire pairing the device queues get from their atomics.

The slots hold Python objects (a list of slots) or, given a numpy dtype, records of that dtype (one
structured array). An optional stamp per slot (a ``time.perf_counter_ns`` value written at push)
lets the consumer measure how long each message waited.
"""

from __future__ import annotations

from typing import Optional, Sequence, Union

import numpy as np

from .host_ring import check_capacity, segments

__all__ = ["HostQueue"]

Items = Union[list, np.ndarray]


class HostQueue:
    """A bounded SPSC ring of ``capacity`` slots (a power of two).

    Args:
        capacity: number of slots, a power of two >= 2.
        dtype: numpy dtype of a slot; None for Python objects.
        stamps: keep one int64 stamp per slot (``push(..., stamp=t)``, ``pop_stamped``).
    """

    __slots__ = ("capacity", "mask", "dtype", "tail", "head", "_slots", "_stamps")

    def __init__(
        self, capacity: int, dtype: Optional[np.dtype] = None, stamps: bool = False
    ) -> None:
        self.capacity = check_capacity(capacity)
        self.mask = capacity - 1
        self.dtype = None if dtype is None else np.dtype(dtype)
        self.tail = 0  # producer's counter
        self.head = 0  # consumer's counter
        self._slots: Items = [None] * capacity if dtype is None else np.zeros(capacity, dtype=dtype)
        self._stamps = np.zeros(capacity, dtype=np.int64) if stamps else None

    def __len__(self) -> int:
        """Items waiting (a snapshot: the other side may move it at any moment)."""
        return self.tail - self.head

    @property
    def free(self) -> int:
        """Free slots (a snapshot, exact for the producer: only the consumer can add room)."""
        return self.capacity - (self.tail - self.head)

    def push(self, items: Sequence, stamp: Optional[int] = None) -> int:
        """Producer: copy the longest prefix of ``items`` that fits, publish it; return its length."""
        tail = self.tail
        n = min(len(items), self.capacity - (tail - self.head))
        if n <= 0:
            return 0
        slots, stamps, done = self._slots, self._stamps, 0
        for pos, k in segments(tail, n, self.capacity):
            slots[pos : pos + k] = items[done : done + k]
            if stamps is not None and stamp is not None:
                stamps[pos : pos + k] = stamp
            done += k
        self.tail = tail + n  # publish: after the slots are written
        return n

    def pop(self, max_n: int) -> Items:
        """Consumer: take up to ``max_n`` items (oldest first); an empty list/array when none."""
        return self._take(max_n)[0]

    def pop_stamped(self, max_n: int) -> tuple[Items, Optional[np.ndarray]]:
        """Consumer: like ``pop``, also returning the items' stamps (None without stamps)."""
        return self._take(max_n)

    def _take(self, max_n: int) -> tuple[Items, Optional[np.ndarray]]:
        head = self.head
        n = min(max_n, self.tail - head)  # read tail once: what it covers is fully written
        if n <= 0:
            empty = [] if self.dtype is None else np.zeros(0, dtype=self.dtype)
            return empty, (None if self._stamps is None else np.zeros(0, dtype=np.int64))
        parts = segments(head, n, self.capacity)
        slots = self._slots
        if self.dtype is None:
            out: Items = []
            for pos, k in parts:
                out += slots[pos : pos + k]
                # Drop references so a consumed object is not kept alive by its slot.
                slots[pos : pos + k] = [None] * k
        else:
            out = _joined([slots[pos : pos + k] for pos, k in parts])
        stamps = None
        if self._stamps is not None:
            stamps = _joined([self._stamps[pos : pos + k] for pos, k in parts])
        self.head = head + n  # release the slots: after they were copied out
        return out, stamps


def _joined(pieces: list) -> np.ndarray:
    """A copy of one or two array pieces, end to end."""
    return pieces[0].copy() if len(pieces) == 1 else np.concatenate(pieces)
