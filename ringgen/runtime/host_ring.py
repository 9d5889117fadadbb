"""The host end of a single-producer, single-consumer ring that the host shares with a kernel.

One protocol for every backend (``ringgen.protocol``, docs/design.md §5): a ring of ``cap`` slots (a
power of two) and two 8-byte counters that only grow, ``tail`` (written only by the producer) and
``head`` (written only by the consumer), each on its own cache line of the queue's control words
(``QUEUE_CTL_DTYPE``). Sequence number ``i`` lives in slot ``i & (cap - 1)``; the ring is full when
``tail - head == cap``; nothing is overwritten or dropped: a producer publishes only what fits.

Publish = copy the slots, then store ``tail``; consume = load ``tail``, copy the slots out, then
store ``head``. The host touches a counter through a memoryview of the control words cast to "Q":
one aligned 8-byte load or store per access, never torn, and x86-64 keeps stores in program order
and never moves a store before an earlier load, which is the release/acquire pairing the kernel gets
from its atomics (``ringgen.runtime.opencl`` spells the argument out). Each access is one Python
call, so nothing reorders them either.

What a backend adds is only its memory and its dialect: the CUDA loader gives mapped pinned memory
and its latency paths (``ringgen.runtime.cuda.queues``), the OpenCL persistent transport fine-grained
SVM, the c backend cache-line-aligned host memory. ``HostQueue`` (``host_queue.py``) is the same
ring between two host threads, whose counters are plain attributes.
"""

from __future__ import annotations

from typing import Callable, Optional

import numpy as np

from ..protocol import QUEUE_CTL_DTYPE

__all__ = ["HostRing", "RingConsumer", "RingProducer", "check_capacity", "segments"]

#: Word offsets of the counters inside one ``rg_queue_ctl`` (``QUEUE_CTL_DTYPE``).
TAIL_WORD = QUEUE_CTL_DTYPE.fields["tail"][1] // 8
HEAD_WORD = QUEUE_CTL_DTYPE.fields["head"][1] // 8


def check_capacity(capacity: object, what: str = "queue capacity") -> int:
    """``capacity`` when it is a power of two >= 2 (what every ring needs: slot = seq & (cap - 1)).

    Raises:
        ValueError: it is not an int, or not a power of two >= 2; the message names ``what``.
    """
    if not isinstance(capacity, int) or capacity < 2 or capacity & (capacity - 1):
        raise ValueError(f"{what} must be a power of two >= 2, got {capacity!r}")
    return capacity


def segments(start: int, n: int, cap: int) -> list[tuple[int, int]]:
    """(ring position, count) pieces of ``n`` slots from sequence ``start`` (at most two: the
    second begins at slot 0 when the run wraps)."""
    pos = start & (cap - 1)
    first = min(n, cap - pos)
    return [(pos, first)] + ([(0, n - first)] if n > first else [])


class HostRing:
    """What both ends of a shared ring know: the slot geometry and where the counters live.

    Args:
        buf: the ring's memory, a uint8 array of at least ``cap * stride`` bytes.
        dtype: the slot dtype.
        cap: number of slots (a power of two; 0 for a ring that is never used).
        words: the control words as a memoryview of format "Q".
        ctl_word: the word index of this queue's ``rg_queue_ctl`` in ``words``.
        stride: bytes between slots (default: the slot's itemsize; larger when the kernel moves
            slots in whole 16-byte words, as the CUDA kernels do with bridged messages).
    """

    def __init__(
        self,
        buf: np.ndarray,
        dtype: np.dtype,
        cap: int,
        words: memoryview,
        ctl_word: int,
        stride: Optional[int] = None,
    ) -> None:
        self.cap = cap
        self.dtype = np.dtype(dtype)
        self.size = self.dtype.itemsize
        self.stride = self.size if stride is None else stride
        # Only a ring without gaps between slots is also an array of its dtype (views hand it out).
        self.slots = buf[: cap * self.size].view(self.dtype) if self.stride == self.size else None
        self._u8 = buf[: cap * self.stride]
        #: The ring as a ``(cap, slot size)`` uint8 view over its ``(cap, stride)`` bytes.
        self.rows = self._u8.reshape(cap, self.stride)[:, : self.size]
        self._bytes = memoryview(self._u8)
        self._words = words
        self._tail_at = ctl_word + TAIL_WORD
        self._head_at = ctl_word + HEAD_WORD

    def close(self) -> None:
        """Release this ring's memoryview of its slots (before their memory is freed)."""
        self._bytes.release()


class RingProducer(HostRing):
    """The host writes slots and the tail; the kernel writes the head.

    ``publish_chunk`` (slots) makes ``put`` publish a large batch in pieces, so the kernel starts on
    the first piece while the host still copies the rest; None publishes each batch once.
    Every method that takes ``admit_head`` reuses no slot at or above ``admit_head + cap``: the
    caller passes the lowest sequence whose slot may still be in use (usually ``device_head()``).
    """

    def __init__(
        self,
        buf: np.ndarray,
        dtype: np.dtype,
        cap: int,
        words: memoryview,
        ctl_word: int,
        stride: Optional[int] = None,
        publish_chunk: Optional[int] = None,
    ) -> None:
        super().__init__(buf, dtype, cap, words, ctl_word, stride)
        self.tail = 0  # the host's copy of the counter it owns
        self.publish_chunk = publish_chunk
        self._reserved = 0

    def device_head(self) -> int:
        """Messages the kernel has finished with (their slots may be reused)."""
        return self._words[self._head_at]

    def free(self, admit_head: int) -> int:
        """Slots the producer may fill now."""
        return self.cap - (self.tail - admit_head)

    def _publish(self, tail: int) -> None:
        self.tail = tail
        self._words[self._tail_at] = tail  # release: the slot stores before it are seen first

    def put(self, batch: np.ndarray, admit_head: int) -> int:
        """Copy the prefix of ``batch`` (slots of this ring's dtype, or their bytes as a
        ``(n, size)`` uint8 array) that fits, publish it; returns its length."""
        # Written out inline: this is every backend's path for one message too, and each method
        # call or attribute lookup costs 20-150 ns (docs/design.md §5).
        cap, tail = self.cap, self.tail
        n = cap - (tail - admit_head)
        if n <= 0:
            return 0
        if n > len(batch):
            n = len(batch)
        # Raw byte copies: numpy copies structured arrays field by field, several times slower.
        src = batch[:n]
        if src.ndim != 1 or not src.flags.c_contiguous:
            src = np.ascontiguousarray(src).reshape(-1)
        src = src.view(np.uint8)
        size, chunk, words, tail_at = self.size, self.publish_chunk, self._words, self._tail_at
        if self.stride == size:
            ring, step = self._u8, size
        else:  # gaps between slots: copy (k, size) rows into the first bytes of each stride
            ring, step, src = self.rows, 1, src.reshape(n, size)
        done = 0
        while done < n:
            at = (tail + done) & (cap - 1)
            k = n - done if n - done < cap - at else cap - at
            if chunk is not None and k > chunk:
                k = chunk
            ring[at * step : (at + k) * step] = src[done * step : (done + k) * step]
            done += k
            if chunk is not None:
                words[tail_at] = tail + done  # release: the slot stores above are seen first
        self.tail = tail + n
        if chunk is None:
            words[tail_at] = tail + n
        return n

    def put_rows(self, rows: np.ndarray, admit_head: int, encode: Callable) -> int:
        """Encode the prefix of ``rows`` that fits straight into the ring's slots and publish it;
        returns its length. ``encode(rows, out, sequence)`` fills ``out``, a strided ``(k, size)``
        uint8 view of k slots: no batch of slots is built and copied.

        With ``publish_chunk``, every ``publish_chunk`` rows are published as soon as they are
        encoded, so the kernel decodes them while the host encodes the next. A row that cannot be
        encoded raises before anything is published when it lies in the first piece; in a later
        one, the pieces before it stay published and their count is returned (as when the ring is
        full): the next call, which starts at the bad row, raises its error.
        """
        n = min(len(rows), self.free(admit_head))
        if n <= 0:
            return 0
        chunk = self.publish_chunk or n
        done = 0
        while done < n:
            k = min(chunk, n - done)
            tail, part = self.tail, 0
            try:
                for pos, m in segments(tail, k, self.cap):
                    encode(
                        rows[done + part : done + part + m], self.rows[pos : pos + m], tail + part
                    )
                    part += m
            except Exception:
                if done:
                    return done
                raise
            done += k
            self._publish(tail + k)
        return n

    def try_put_bytes(self, data: bytes, admit_head: int) -> bool:
        """Copy one encoded message (at most a slot) into its slot and publish it; False when full."""
        tail = self.tail
        if tail - admit_head >= self.cap:
            return False
        off = (tail & (self.cap - 1)) * self.stride
        self._bytes[off : off + len(data)] = data
        self._publish(tail + 1)
        return True

    def reserve(self, n: int, admit_head: int) -> np.ndarray:
        """A view of up to ``n`` free, contiguous slots from the tail (not yet published); a ring
        without gaps between slots only."""
        if self.slots is None:
            raise TypeError("reserve() needs a ring of whole slots (a direct message)")
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
            self._publish(self.tail + n)


class RingConsumer(HostRing):
    """The kernel writes slots and the tail; the host reads them and writes the head."""

    def __init__(
        self,
        buf: np.ndarray,
        dtype: np.dtype,
        cap: int,
        words: memoryview,
        ctl_word: int,
        stride: Optional[int] = None,
    ) -> None:
        super().__init__(buf, dtype, cap, words, ctl_word, stride)
        self.head = 0  # the host's copy of the counter it owns
        self._empty = np.empty(0, dtype=self.dtype)

    #: True in a subclass whose kernel may leave holes (``_kept`` drops them).
    _holes = False

    def device_tail(self) -> int:
        """Messages the kernel has published."""
        return self._words[self._tail_at]

    def depth(self) -> int:
        """Messages published and not yet taken."""
        return self._words[self._tail_at] - self.head

    def _publish_head(self) -> None:
        self._words[self._head_at] = self.head  # release: the copies out are complete

    def take(self, max_n: int) -> np.ndarray:
        """Copy up to ``max_n`` published slots out and free them (an empty array when none)."""
        n = self._words[self._tail_at] - self.head
        if n > max_n:
            n = max_n
        if n <= 0:
            return self._empty
        out = np.empty(n, dtype=self.dtype)
        return out[: self._copy_out(out, n)]

    def take_into(self, dst: np.ndarray) -> Optional[int]:
        """Copy up to ``len(dst)`` published slots straight into ``dst`` and free them; returns how
        many of ``dst``'s leading rows now hold replies (0 when none was ready), or None when
        ``dst`` does not hold this ring's slots (the caller then takes them with ``take``).

        ``dst`` is a 1-d array of this ring's slot dtype (a caller's ``out=``, or the one array a
        whole batch is gathered in): the slots are copied once, ring to ``dst``, in at most two
        slice copies (the second where the run wraps), with no array in between. A ``dst`` that is
        not contiguous takes the copy through ``take``.
        """
        if dst.dtype != self.dtype or dst.ndim != 1:
            return None
        n = self._words[self._tail_at] - self.head
        if n > len(dst):
            n = len(dst)
        if n <= 0:
            return 0
        if not dst.flags.c_contiguous:
            got = self.take(n)
            rows = np.dtype((np.void, self.size))
            np.copyto(dst[: len(got)].view(rows), got.view(rows))
            return len(got)
        return self._copy_out(dst, n)

    def decode_into(self, dst: np.ndarray, decode: Callable) -> Optional[int]:
        """Decode up to ``len(dst)`` published slots straight from the ring into ``dst`` and free
        them; returns how many (0 when none was ready), or None where holes may sit among them
        (the caller then takes them with ``take``).

        ``decode(slots, rows)`` decodes an ``(k, >= slot size)`` uint8 view of k ring slots into k
        rows of ``dst``; it is called at most twice (the second where the run wraps), so a bridged
        reply is read once, from the ring, with no copy of its slot in between. The slots are freed
        even when ``decode`` raises (as ``take`` frees them before its caller decodes).
        """
        n = self._words[self._tail_at] - self.head
        if n > len(dst):
            n = len(dst)
        if n <= 0:
            return 0
        if self._holes and self._holes_pending():
            return None
        head, done = self.head, 0
        try:
            for pos, k in segments(head, n, self.cap):
                decode(self.rows[pos : pos + k], dst[done : done + k])
                done += k
        finally:
            self.head = head + n
            self._words[self._head_at] = head + n  # release: the reads above are complete
        return n

    def _holes_pending(self) -> bool:
        """Whether a hole may sit among the published slots (``_holes`` rings override it)."""
        return False

    def _copy_out(self, out: np.ndarray, n: int) -> int:
        """Copy the ``n`` slots from the head into ``out[:n]`` (contiguous, this ring's dtype), drop
        the holes among them (``_kept``), publish the new head; returns the rows kept."""
        head, cap, size = self.head, self.cap, self.size
        # Raw byte copies: numpy copies structured arrays field by field, several times slower.
        if self.stride == size:
            dst, ring, step = out[:n].view(np.uint8), self._u8, size
        else:
            dst, ring, step = out[:n].view(np.uint8).reshape(n, size), self.rows, 1
        at = head & (cap - 1)
        first = cap - at if n > cap - at else n
        dst[: first * step] = ring[at * step : (at + first) * step]
        if first < n:
            dst[first * step :] = ring[: (n - first) * step]
        kept = n
        if self._holes:
            rows = self._kept(out[:n], n)
            kept = len(rows)
            if kept < n:  # a compacted copy (boolean indexing): back to the front of out
                void = np.dtype((np.void, size))
                np.copyto(out[:kept].view(void), rows.view(void))
        self.head = head + n
        self._words[self._head_at] = head + n  # release: the copies above are complete
        return kept

    def _kept(self, out: np.ndarray, n: int) -> np.ndarray:
        """Which of the ``n`` slots copied from the head ``take`` returns, in a ring with holes
        (``_holes``); the head has not moved yet."""
        return out

    def release(self, n: int) -> None:
        """Free ``n`` published slots from the head without copying them (after a view of them)."""
        if n < 0 or n > self._words[self._tail_at] - self.head:
            raise ValueError(f"release({n}): only {self.depth()} slot(s) are ready")
        self.head += n
        self._publish_head()
