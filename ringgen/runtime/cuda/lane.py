"""The host end of a CUDA kernel's latency lane (docs/design.md §5).

A lone message does not need the rings' machinery (a ticket, a block barrier, the publisher's hop to
the tail): ``send`` puts it, while nothing else is outstanding, into one stamped request slot that a
dedicated warp reads in one instruction, and the warp answers in one stamped reply slot. On the host
a message costs one ``pack_into`` into pinned memory and a reply a one-word poll, one ``unpack_from``.
Batches and anything sent while earlier messages are outstanding use the rings (``queues``).

A bridged kernel's lane carries its messages as its rings do: the request is the input ring's slot
(header + payload, encoded by the codec's native ``pack_into`` straight into it), then the stamp in a
16-byte word of its own; bridged replies are encoded slots at the output ring's stride, each decoded
once on the host, in place (the codec's ``slot_decoder()``).
"""

from __future__ import annotations

import struct
from typing import Any, Callable, Optional

import numpy as np

from .bridged_fast import RETRY
from .queues import PositionalOutput

__all__ = ["LatencyLane", "idle_check"]


class LatencyLane:
    """The host end of a kernel's latency lane (docs/design.md §5; the device end is the lane warp of
    ``templates/cuda/kernel.cu.j2``, the geometry ``abi.cuda.lane``).

    One request slot: the input struct, then the u64 stamp ``n`` of the n-th lane message (n = 1, 2,
    ...), written with one ``pack_into`` in offset order, so the stamp is stored last (x86 keeps
    stores in order; the device reads message and stamp in one read). One reply slot on its own
    cache line: up to ``out_items`` replies, then the word ``n << 8 | count`` that the device stores
    last with a system-scope release; count 0 is a message without a reply (filtered or faulted).

    The lane holds one message at a time, and the handle uses it only while nothing else is
    outstanding (``idle``: every earlier message handled and its replies taken), so the order of
    replies across the lane and the rings needs no bookkeeping: replies are taken from the lane
    first (``take``) while it holds any. A message sent while the lane's is unanswered goes into
    the ring (``overtake``): the kernel may handle it first, as its worker blocks handle the ring's
    messages in any order, but its reply is taken after the lane's. An ordered kernel's messages
    must be handled one at a time in order, so there (``overtake`` False) it waits for the lane's
    answer (``answered``), as for a full queue.

    ``sent`` (the sender's) and ``taken`` (the receiver's) count lane messages; ``item`` is how many
    replies of the current answer were taken already.

    A bridged input's request is its slot (``slot_size`` bytes at most, written by the codec's
    ``pack_into``), then the stamp, stored by itself after it; a bridged output's replies are whole
    slots ``out_item_stride`` bytes apart, decoded as the output ring's are.
    """

    def __init__(
        self,
        buf: np.ndarray,
        geometry: dict,
        in_codec: Any,
        out_codec: Any,
        out_slot: np.dtype,
        overtake: bool = True,
    ) -> None:
        g = geometry
        self.overtake = overtake
        self.in_bridged = bool(getattr(in_codec, "bridged", False))
        self.out_bridged = bool(getattr(out_codec, "bridged", False))
        if self.in_bridged:
            self._request = None
            self._in_size = in_codec.slot_size
            self._in_codec = in_codec
            if g["in_stamp_at"] < self._in_size or g["in_stamp_at"] % 8:
                raise ValueError(
                    f"lane request puts its stamp at {g['in_stamp_at']}, inside the "
                    f"{self._in_size}-byte {in_codec.cls.__name__} slot"
                )
        else:
            packer = in_codec.packer
            pad = g["in_stamp_at"] - packer.size
            if pad < 0 or g["in_stamp_at"] + 8 > g["in_bytes"]:
                raise ValueError(
                    f"lane request of {g['in_bytes']} bytes puts its stamp at {g['in_stamp_at']}, "
                    f"inside the {packer.size}-byte {in_codec.cls.__name__}"
                )
            fmt = packer.format if isinstance(packer.format, str) else packer.format.decode()
            if not fmt.startswith("<"):
                raise ValueError(
                    f"{in_codec.cls.__name__}: the lane packs little-endian without alignment "
                    f"('<'), the codec's format is {fmt!r}"
                )
            self._request = struct.Struct(fmt + (f"{pad}x" if pad else "") + "Q")
            self._in_size = packer.size
            self._flat = in_codec.flat
        if g["in_stamp_at"] + 8 > g["in_bytes"]:
            raise ValueError(
                f"lane request of {g['in_bytes']} bytes has no room for its stamp at "
                f"{g['in_stamp_at']}"
            )
        self._stamp_at = g["in_stamp_at"]
        self.buf = memoryview(buf)
        self.words = memoryview(buf).cast("Q")
        self.word_at = (g["out_at"] + g["out_word_at"]) // 8
        self.out_at = g["out_at"]
        self.stride = g["out_item_stride"]
        self._out_slot = np.dtype(out_slot)
        if self.out_bridged:
            self._out_size = out_codec.slot_size
            if self.stride < self._out_size:
                raise ValueError(
                    f"lane replies {self.stride} bytes apart cannot hold {out_codec.cls.__name__} "
                    f"slots of {self._out_size} bytes"
                )
            self._decode = out_codec.slot_decoder()  # in place where native (wire.native_ext)
            # (items, slot) uint8 rows over the reply slot's stride: whole slots, copied by take
            self.items = buf[self.out_at : self.out_at + g["out_items"] * self.stride].reshape(
                g["out_items"], self.stride
            )[:, : self._out_size]
        else:
            self._unpack_from = out_codec.packer.unpack_from
            self._from_flat = out_codec.from_flat
            self.items = buf[self.out_at : self.out_at + g["out_items"] * self.stride].view(
                out_slot
            )
        self.sent = 0
        self.taken = 0
        self.item = 0

    def busy(self) -> bool:
        """True while the lane holds a message whose replies are not all taken."""
        return self.sent != self.taken

    def answered(self) -> bool:
        """True unless the lane's message waits for the kernel."""
        return self.sent == self.taken or self.words[self.word_at] >> 8 == self.sent

    def passable(self) -> bool:
        """True when a message may go into the ring now: the lane's is answered, or the kernel
        is not ordered (``overtake``)."""
        return self.overtake or self.answered()

    def put(self, message: Any) -> Any:
        """Write ``message`` into the request slot (the caller checked ``busy`` and idleness):
        True, or ``RETRY`` when its values do not fit the struct (nothing written then)."""
        stamp = self.sent + 1
        if self.in_bridged:
            try:
                self._in_codec.pack_into(self.buf, 0, message)
            except Exception:
                return RETRY  # the generic path encodes it again and raises the precise error
            self.words[self._stamp_at // 8] = stamp
            self.sent = stamp
            return True
        try:
            self._request.pack_into(self.buf, 0, *self._flat(message), stamp)
        except (struct.error, OverflowError):
            return RETRY
        self.sent = stamp
        return True

    def put_slot(self, slot: np.ndarray) -> None:
        """Write one already converted input slot (the generic path's batch of one): its bytes,
        then the stamp word."""
        self.buf[: self._in_size] = memoryview(np.ascontiguousarray(slot).view(np.uint8)).cast("B")
        stamp = self.sent + 1
        self.words[self._stamp_at // 8] = stamp
        self.sent = stamp

    def take(self, max_n: int) -> Optional[np.ndarray]:
        """Copies of up to ``max_n`` replies of the lane's answer (possibly none: a message without
        a reply), or None while the kernel has not answered."""
        word = self.words[self.word_at]
        if word >> 8 != self.sent:
            return None
        count, first = word & 0xFF, self.item
        last = min(count, first + max(0, max_n))
        if self.out_bridged:  # whole slots, as the output ring's batches hold them
            out = np.ascontiguousarray(self.items[first:last]).view(self._out_slot).reshape(-1)
        else:
            out = self.items[first:last].copy()
        self._consumed(last, count)
        return out

    def _consumed(self, upto: int, count: int) -> None:
        if upto >= count:
            self.taken, self.item = self.sent, 0
        else:
            self.item = upto

    def view(self) -> Optional[np.ndarray]:
        """A read-only view of the answer's replies not yet taken (``take``'s in place), or None
        while the kernel has not answered; ``release`` hands them back. Direct replies only
        (``receive_view`` refuses a bridged output before it gets here)."""
        if self.out_bridged:
            raise TypeError("a view of the lane's replies needs a direct output message")
        word = self.words[self.word_at]
        if word >> 8 != self.sent:
            return None
        view = self.items[self.item : word & 0xFF]
        view.flags.writeable = False
        if not len(view):
            self._consumed(0, 0)
        return view

    def release(self, n: int) -> None:
        """Mark ``n`` replies of the answer as taken (after ``view``)."""
        self._consumed(self.item + n, self.words[self.word_at] & 0xFF)

    def waiting(self) -> Callable[[], bool]:
        """A closure: True while the lane holds a message the kernel has not answered (one word
        read and two attribute reads; what ``receive`` spins on before it takes the lock)."""
        words, word_at, lane = self.words, self.word_at, self

        def waiting() -> bool:
            sent = lane.sent
            return sent != lane.taken and words[word_at] >> 8 != sent

        return waiting

    def fast_take_one(
        self, dense: Callable[[], Any], cls: Optional[type] = None
    ) -> Callable[[], Any]:
        """The receive closure of a kernel with a lane: the lane's next reply while it holds one,
        else ``dense()`` (the output ring's closure). A reply costs one word read, one
        ``unpack_from`` and a few attribute stores; ``cls`` as ``PositionalOutput.fast_take_one``.
        A bridged reply is decoded once from its slot (the codec's ``slot_decoder()``, in place):
        a corrupt one is taken and raises the generic path's ``WireFormatError``.
        """
        if self.out_bridged:
            return self._fast_take_bridged(dense)
        words, word_at, buf, out_at, stride = (
            self.words,
            self.word_at,
            self.buf,
            self.out_at,
            self.stride,
        )
        unpack_from, from_flat, lane = self._unpack_from, self._from_flat, self

        def take_one() -> Any:
            sent = lane.sent
            if sent != lane.taken:
                word = words[word_at]
                if word >> 8 != sent:
                    return None
                i, count = lane.item, word & 0xFF
                if i < count:
                    values = unpack_from(buf, out_at + i * stride)
                    if i + 1 == count:
                        lane.taken, lane.item = sent, 0
                    else:
                        lane.item = i + 1
                    return cls(*values) if cls is not None else from_flat(values, 0)
                lane.taken, lane.item = sent, 0  # no reply: the next one is the ring's
            return dense()

        return take_one

    def _fast_take_bridged(self, dense: Callable[[], Any]) -> Callable[[], Any]:
        """``fast_take_one`` of bridged replies (see there)."""
        words, word_at, buf, out_at, stride, size = (
            self.words,
            self.word_at,
            self.buf,
            self.out_at,
            self.stride,
            self._out_size,
        )
        decode, lane = self._decode, self

        def take_one() -> Any:
            sent = lane.sent
            if sent != lane.taken:
                word = words[word_at]
                if word >> 8 != sent:
                    return None
                i, count = lane.item, word & 0xFF
                if i < count:
                    try:  # read in place before the lane is released, even a reply that raises
                        return decode(buf, out_at + i * stride, size)
                    finally:
                        if i + 1 == count:
                            lane.taken, lane.item = sent, 0
                        else:
                            lane.item = i + 1
                lane.taken, lane.item = sent, 0  # no reply: the next one is the ring's
            return dense()

        return take_one

    def fast_put_one(
        self, idle: Callable[[], bool], dense: Callable[[Any], Any], gate: Any
    ) -> Callable[[Any], Any]:
        """The send closure of a kernel with a lane: into the lane when it is free and ``idle()``
        (nothing else outstanding), else ``dense(message)`` (the input ring's closure); for an
        ordered kernel only once the lane's message is answered, False (the caller waits, as for a
        full queue) before that.

        ``gate`` is the handle's receive lock, taken without waiting around the idle check and the
        write: a receiver holds it while it decides between the lane and the ring, so it never
        finds the lane empty, then a reply in the ring that was sent after a lane message written
        meanwhile. When a receiver holds it, the message takes the ring. A bridged message is
        encoded by the codec's ``pack_into`` straight into the request, its stamp stored after it.
        """
        if self.in_bridged:
            return self._fast_put_bridged(idle, dense, gate)
        pack_into, flat, buf, words, word_at = (
            self._request.pack_into,
            self._flat,
            self.buf,
            self.words,
            self.word_at,
        )
        lane, error, overtake = self, (struct.error, OverflowError), self.overtake
        enter, leave = gate.acquire, gate.release

        def put_one(message: Any) -> Any:
            sent = lane.sent
            if sent == lane.taken:
                if enter(False):
                    try:
                        if idle():
                            try:
                                pack_into(buf, 0, *flat(message), sent + 1)
                            except error:
                                return RETRY
                            lane.sent = sent + 1
                            return True
                    finally:
                        leave()
            elif not overtake and words[word_at] >> 8 != sent:
                return False
            return dense(message)

        return put_one

    def _fast_put_bridged(
        self, idle: Callable[[], bool], dense: Callable[[Any], Any], gate: Any
    ) -> Callable[[Any], Any]:
        """``fast_put_one`` of a bridged input (see there)."""
        codec, buf, words, word_at, stamp_word = (
            self._in_codec,
            self.buf,
            self.words,
            self.word_at,
            self._stamp_at // 8,
        )
        lane, overtake = self, self.overtake
        enter, leave = gate.acquire, gate.release

        def put_one(message: Any) -> Any:
            sent = lane.sent
            if sent == lane.taken:
                if enter(False):
                    try:
                        if idle():
                            try:
                                # looked up per call: the codec swaps in its native encoder
                                codec.pack_into(buf, 0, message)
                            except Exception:
                                return RETRY
                            words[stamp_word] = sent + 1  # after the slot (x86 keeps the order)
                            lane.sent = sent + 1
                            return True
                    finally:
                        leave()
            elif not overtake and words[word_at] >> 8 != sent:
                return False
            return dense(message)

        return put_one


def idle_check(inq: Any, outq: Any) -> Callable[[], bool]:
    """A closure: True when nothing sent is outstanding, so the lane may take the next message
    without overtaking one (every message handled and every reply taken). ``inq`` is the handle's
    ``InputRing``, ``outq`` its ``PositionalOutput`` or ``OutboxOutput``."""
    if isinstance(outq, PositionalOutput):
        return lambda: outq.head == inq.tail  # the head passes replies and holes alike
    words, head_at = inq._words, inq._head_at
    stamps, mask = outq.slots["stamp"], outq.cap - 1

    def idle() -> bool:
        return words[head_at] == inq.tail and int(stamps[outq.head & mask]) != outq.head + 1

    return idle
