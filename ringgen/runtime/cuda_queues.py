"""Host ends of the CUDA backend's queues: plain loads and stores to mapped pinned memory.

The kernel reads and writes the same bytes over PCIe; ordering on the host side comes from x86's
store order (slots are written before the tail that publishes them) and from reading a counter before
the slots it covers. Counters are 8-byte words read and written through a ``memoryview`` cast to "Q",
one Python-level access each: on the latency path every extra touch of pinned memory costs 100-200 ns
(DESIGN.md §5). Sequence numbers only grow; slot ``i`` of a ring of capacity C is ``i % C``.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

__all__ = ["InputRing", "OutboxOutput", "PositionalOutput"]

# Word offsets inside one rg_queue_ctl (protocol.QUEUE_CTL_DTYPE): tail on line 0, head on line 1.
_TAIL = 0
_HEAD = 16


def _segments(start: int, n: int, cap: int) -> list[tuple[int, int]]:
    """(ring position, count) pieces of ``n`` slots from sequence ``start`` (at most two)."""
    pos = start & (cap - 1)
    first = min(n, cap - pos)
    return [(pos, first)] + ([(0, n - first)] if n > first else [])


class InputRing:
    """The producer end of the input queue: the host writes slots and the tail."""

    def __init__(self, slots: np.ndarray, words: memoryview, ctl_word: int, codec: Any) -> None:
        self.slots = slots
        self.cap = len(slots)
        self.size = slots.dtype.itemsize
        self._u8 = slots.view(np.uint8)
        self._bytes = memoryview(self._u8)
        self._words = words
        self._tail_at = ctl_word + _TAIL
        self._head_at = ctl_word + _HEAD
        self.tail = 0
        self._reserved = 0
        self._pack_into = getattr(codec, "packer", None) and codec.packer.pack_into
        self._flat = getattr(codec, "flat", None)

    def device_head(self) -> int:
        """Messages the kernel has finished with (their slots may be reused)."""
        return self._words[self._head_at]

    def free(self, admit_head: int) -> int:
        return self.cap - (self.tail - admit_head)

    def try_put_one(self, message: Any, admit_head: int) -> bool:
        """Pack one direct message straight into its slot and publish it; False when full.

        The latency path: one ``struct.pack_into`` into pinned memory and one 8-byte store."""
        tail = self.tail
        if tail - admit_head >= self.cap:
            return False
        self._pack_into(self._bytes, (tail & (self.cap - 1)) * self.size, *self._flat(message))
        self.tail = tail + 1
        self._words[self._tail_at] = tail + 1
        return True

    def put(self, batch: np.ndarray, admit_head: int) -> int:
        """Copy a prefix of ``batch`` that fits into the ring and publish it; returns its length."""
        n = min(len(batch), self.free(admit_head))
        if n <= 0:
            return 0
        # Raw byte copies: numpy copies structured arrays field by field, several times slower.
        src = np.ascontiguousarray(batch[:n]).view(np.uint8)
        size, done = self.size, 0
        for pos, k in _segments(self.tail, n, self.cap):
            self._u8[pos * size : (pos + k) * size] = src[done * size : (done + k) * size]
            done += k
        self.tail += n
        self._words[self._tail_at] = self.tail
        return n

    def reserve(self, n: int, admit_head: int) -> np.ndarray:
        """A view of up to ``n`` free, contiguous slots from the tail (not yet published)."""
        pos = self.tail & (self.cap - 1)
        k = max(0, min(int(n), self.free(admit_head), self.cap - pos))
        self._reserved = k
        return self.slots[pos : pos + k]

    def commit(self, n: int) -> None:
        """Publish ``n`` slots of the last reservation."""
        if not 0 <= n <= self._reserved:
            raise ValueError(f"commit({n}): only {self._reserved} slot(s) are reserved")
        self._reserved = 0
        if n:
            self.tail += n
            self._words[self._tail_at] = self.tail


class PositionalOutput:
    """The consumer end of a one-reply-per-request output queue.

    Reply ``i`` is in slot ``i``; the kernel publishes the tail and counts holes (requests without a
    reply) in a side word, marking slot ``i``'s hole mark with ``i + 1``. Holes below the tail are
    counted before the tail is published, so when the count equals the holes we have skipped, no
    hole is pending and the marks need not be read at all.
    """

    def __init__(
        self,
        slots: np.ndarray,
        words: memoryview,
        ctl_word: int,
        side_word: int,
        marks: np.ndarray,
        codec: Any,
    ) -> None:
        self.slots = slots
        self.cap = len(slots)
        self.size = slots.dtype.itemsize
        self._u8 = slots.view(np.uint8)
        self._bytes = memoryview(self._u8)
        self._words = words
        self._tail_at = ctl_word + _TAIL
        self._head_at = ctl_word + _HEAD
        self._holes_at = side_word
        self.marks = marks
        self.head = 0
        self.holes_taken = 0
        self._unpack_from = codec.packer.unpack_from if hasattr(codec, "packer") else None
        self._from_flat = getattr(codec, "from_flat", None)
        self._codec = codec

    def depth(self) -> int:
        return self._words[self._tail_at] - self.head

    def has_holes(self) -> bool:
        return self._words[self._holes_at] > self.holes_taken

    def _is_hole(self, seq: int) -> bool:
        return int(self.marks[seq & (self.cap - 1)]) == (seq + 1) & 0xFFFFFFFF

    def _publish_head(self) -> None:
        self._words[self._head_at] = self.head

    def take_one(self) -> Optional[Any]:
        """The next reply as an object, or None when none is ready."""
        words = self._words
        while True:
            head = self.head
            if words[self._tail_at] == head:
                return None
            if words[self._holes_at] > self.holes_taken and self._is_hole(head):
                self.holes_taken += 1
                self.head = head + 1
                self._publish_head()
                continue
            off = (head & (self.cap - 1)) * self.size
            if self._unpack_from is not None:
                reply = self._from_flat(self._unpack_from(self._bytes, off), 0)
            else:
                reply = self._codec.unpack(bytes(self._bytes[off : off + self.size]))
            self.head = head + 1
            words[self._head_at] = head + 1
            return reply

    def take(self, max_n: int) -> np.ndarray:
        """Copy up to ``max_n`` ready replies out (holes dropped) and free their slots."""
        n = min(self._words[self._tail_at] - self.head, max_n)
        if n <= 0:
            return self.slots[:0].copy()
        out = np.empty(n, dtype=self.slots.dtype)
        dst, size, done = out.view(np.uint8), self.size, 0
        for pos, k in _segments(self.head, n, self.cap):
            dst[done * size : (done + k) * size] = self._u8[pos * size : (pos + k) * size]
            done += k
        if self._words[self._holes_at] > self.holes_taken:
            seq = np.arange(self.head, self.head + n, dtype=np.uint64)
            hole = self.marks[(seq & np.uint64(self.cap - 1)).astype(np.intp)] == (
                (seq + np.uint64(1)) & np.uint64(0xFFFFFFFF)
            ).astype(np.uint32)
            self.holes_taken += int(hole.sum())
            out = out[~hole]
        self.head += n
        self._publish_head()
        return out

    def view(self, max_n: int) -> np.ndarray:
        """A read-only view of up to ``max_n`` ready, contiguous replies from the head (holes are
        skipped first; the view stops before the next one)."""
        while True:
            tail = self._words[self._tail_at]
            pos = self.head & (self.cap - 1)
            n = min(tail - self.head, max_n, self.cap - pos)
            if n > 0 and self._words[self._holes_at] > self.holes_taken:
                seq = np.arange(self.head, self.head + n, dtype=np.uint64)
                hole = self.marks[pos : pos + n] == (
                    (seq + np.uint64(1)) & np.uint64(0xFFFFFFFF)
                ).astype(np.uint32)
                if hole.any():
                    first = int(np.argmax(hole))
                    if first == 0:
                        run = int(np.argmin(hole)) if not hole.all() else n
                        self.holes_taken += run
                        self.head += run
                        self._publish_head()
                        continue
                    n = first
            view = self.slots[pos : pos + max(n, 0)]
            view.flags.writeable = False
            return view

    def release(self, n: int) -> None:
        if n < 0 or n > self._words[self._tail_at] - self.head:
            raise ValueError(f"release({n}): only {self.depth()} reply(ies) are ready")
        self.head += n
        self._publish_head()


class OutboxOutput:
    """The consumer end of an Outbox kernel's output queue: stamped slots, reserved in any order."""

    def __init__(self, slots: np.ndarray, words: memoryview, ctl_word: int) -> None:
        self.slots = slots
        self.cap = len(slots)
        self._words = words
        self._head_at = ctl_word + _HEAD
        self.head = 0

    def _ready(self, max_n: int) -> int:
        n = min(max_n, self.cap)
        if n <= 0 or int(self.slots["stamp"][self.head & (self.cap - 1)]) != self.head + 1:
            return 0
        seq = np.arange(self.head, self.head + n, dtype=np.uint64)
        ok = self.slots["stamp"][
            (seq & np.uint64(self.cap - 1)).astype(np.intp)
        ] == seq + np.uint64(1)
        return n if ok.all() else int(np.argmin(ok))

    def depth(self) -> int:
        return self._ready(self.cap)

    def take(self, max_n: int) -> np.ndarray:
        """Copy out the longest ready prefix (at most ``max_n``) and publish the new head."""
        n = self._ready(max_n)
        parts = (
            [self.slots["m"][pos : pos + k] for pos, k in _segments(self.head, n, self.cap)]
            if n
            else []
        )
        if not parts:
            return self.slots["m"][:0].copy()
        out = parts[0].copy() if len(parts) == 1 else np.concatenate(parts)
        self.head += n
        self._words[self._head_at] = self.head
        return out
