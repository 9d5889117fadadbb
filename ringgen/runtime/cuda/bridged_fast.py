"""Bridged messages on the CUDA backend's latency paths (issue 14): the closures ``send`` and
``receive`` run for one bridged message or reply, over the rings of ``queues``.

A bridged message is encoded with its codec's ``pack_into`` (the native encoder of
``ringgen.wire.native_ext`` where it is built: header, payload and CRC written straight into the
mapped slot, nothing written unless the whole message encodes; the generated encoder otherwise) and
published with the one store of the tail a direct message costs. A bridged reply is decoded once by
the codec's ``slot_decoder()`` (the native per-message decoder of ``ringgen.wire.native_ext``, in
place, where it is built; else the generated decoder on a copy of the slot), which gives what the
generic path's decoder gives for the same bytes (``bridged_bytes``); the slot is freed after the
decode, also when it raises, so a corrupt reply is taken and raises the generic path's
``WireFormatError``.
Anything else, a full queue, a message that does not encode, a hole at the head, falls through to
the generic path, which waits, raises or converts as on every backend.
"""

from __future__ import annotations

import struct
from typing import Any, Callable

import numpy as np

# (The rings are queues.InputRing, PositionalOutput, OutboxOutput and DeadMarks; queues imports
# this module, so they are typed Any here: not even a TYPE_CHECKING import, which the import-cycle
# check counts as an edge.)

__all__ = [
    "BRIDGED_TOTAL",
    "RETRY",
    "bridged_bytes",
    "bridged_outbox_take",
    "bridged_positional_take",
    "bridged_put",
]

#: What a fast path returns when the message must take the generic path instead (it does not fit
#: its struct or does not encode: the generic path raises the proper error; or a hole needs the
#: marks read).
RETRY = object()

#: The bridged header's total size (u64 at offset 4; docs/wire-format.md), read by ``bridged_bytes``.
BRIDGED_TOTAL = struct.Struct("<Q")
_HEADER_SIZE = 256


def bridged_bytes(buf: memoryview, off: int, slot_size: int) -> bytes:
    """The bytes of the bridged message in the ``slot_size``-byte slot at ``buf[off:]``, cut at its
    header's total size: what ``CudaBatches.to_objects`` hands the generated decoder for the same
    slot (``wire.codec.message_bytes``), so a reply decodes, or fails, exactly as on the generic
    path. A total outside ``[256, slot_size)`` keeps the whole slot, for the decoder to reject."""
    total = BRIDGED_TOTAL.unpack_from(buf, off + 4)[0]
    return bytes(buf[off : off + (total if _HEADER_SIZE <= total < slot_size else slot_size)])


def bridged_put(ring: Any, admit: Any, dead: Any = None) -> Callable[[Any], Any]:
    """``InputRing.fast_put_one`` for a bridged message (``ring``, an ``InputRing``): one
    ``codec.pack_into`` straight into the slot and one store of the tail.

    The header is the generic path's (``SlotBatches.from_objects``: sequence 0, the time of the
    send). ``admit`` (a ``PositionalOutput`` or None) bounds reuse as in ``fast_put_one``;
    ``dead`` (``DeadMarks``), given when the kernel has dead letters, bounds it as ``_push`` does: no slot beyond the harvested head is overwritten (the
    closure answers False; the generic path harvests, then publishes). Returns True, False (full)
    or ``RETRY`` (the message does not encode: nothing published; the generic path raises its
    ``EncodeError``)."""
    codec, buf, words = ring._codec, ring._bytes, ring._words
    tail_at, head_at, cap, stride = ring._tail_at, ring._head_at, ring.cap, ring.stride
    mask = cap - 1

    def put_one(message: Any) -> Any:
        tail = ring.tail
        head = admit.head if admit is not None else words[head_at]
        if dead is not None and dead.harvested < head:
            head = dead.harvested
        if tail - head >= cap:
            return False
        try:
            # looked up per call: the codec swaps in the native encoder on its first pack
            codec.pack_into(buf, (tail & mask) * stride, message)
        except Exception:
            return RETRY  # the generic path encodes it again and raises the precise error
        ring.tail = tail + 1
        words[tail_at] = tail + 1
        return True

    return put_one


def bridged_positional_take(q: Any) -> Callable[[], Any]:
    """``PositionalOutput.fast_take_one`` for a bridged reply: one read of the tail word, the reply
    decoded once from its slot (in place, then the slot freed), or ``q.take_one`` when a hole may
    sit at the head; None when nothing is ready."""
    decode, buf, words, size = q._codec.slot_decoder(), q._bytes, q._words, q.size
    tail_at, head_at, holes_at = q._tail_at, q._head_at, q._holes_at
    mask, stride, slow = q.cap - 1, q.stride, q.take_one

    def take_one() -> Any:
        head = q.head
        if words[tail_at] == head:
            return None
        if words[holes_at] != q.holes_taken:
            return slow()
        try:  # the slot is freed after the decode, even one that raises: a corrupt reply is taken
            return decode(buf, (head & mask) * stride, size)
        finally:
            q.head = head + 1
            words[head_at] = head + 1

    return take_one


def bridged_outbox_take(q: Any, codec: Any) -> Callable[[], Any]:
    """``OutboxOutput.fast_take_one`` for a bridged reply: the head slot's stamp read first (the
    kernel stores it last, with release semantics), then the reply decoded once from the slot
    (in place, then the slot freed); None while the stamp is not the head's."""
    stamp_at = q.slots.dtype.fields["stamp"][1]
    msg_at = q.slots.dtype.fields["m"][1]
    stamp_from, decode, size = (
        struct.Struct("<Q").unpack_from,
        codec.slot_decoder(),
        codec.slot_size,
    )
    buf = memoryview(q.slots.view(np.uint8).reshape(-1))
    words, head_at, mask, stride = q._words, q._head_at, q.cap - 1, q.slots.dtype.itemsize

    def take_one() -> Any:
        head = q.head
        off = (head & mask) * stride
        if stamp_from(buf, off + stamp_at)[0] != head + 1:
            return None
        try:  # the slot is freed after the decode, even one that raises
            return decode(buf, off + msg_at, size)
        finally:
            q.head = head + 1
            words[head_at] = head + 1

    return take_one
