"""Delivering a fan-in in causal order: merging several producers' streams by stamp.

A consumer declared ``@rg.ring_kernel(order="causal")`` takes its input from several producers
(edges, or the publishers of a topic it subscribes to), each stream FIFO and stamped by its
producer's hybrid logical clock (``ringgen.causal``), so each stream's stamps increase. The merge
delivers a message with stamp ``h`` (the least head of all streams) once no other live producer
can still deliver something stamped below it: each other stream either holds a message (its head
is at least ``h``) or its producer's clock can stamp nothing below ``h`` any more (the least stamp
its next send can have is past ``h``; a drained or terminated producer sends nothing). So a causal
consumer sees its input in stamp order, which extends happens-before: if one message was sent
because of another (through any chain of stages), the cause comes first.

Cost: a message waits for the slowest silent producer's clock to pass its stamp. A producer's
clock follows the physical clock, so the wait is at most the time for the physical clock to pass
the stamp (about a microsecond on one host) plus the forwarder's pass; the merge itself is one
``searchsorted`` per delivered batch, never per message.
"""

from __future__ import annotations

import collections
from typing import Any, Callable, Optional

import numpy as np

from ..causal import read_stamps

__all__ = ["CausalMerge", "Stream"]


class Stream:
    """A FIFO of stamped chunks from one producer into one consumer (stamps increasing)."""

    __slots__ = ("producer", "chunks", "depth", "forwarded")

    def __init__(self, producer: str) -> None:
        self.producer = producer
        self.chunks: collections.deque = collections.deque()
        self.depth = 0
        self.forwarded = 0

    def put(self, chunk: Any) -> None:
        self.chunks.append(chunk)
        self.depth += len(chunk)


class CausalMerge:
    """Merges ``streams`` into one consumer in stamp order (see the module docstring).

    ``lower_bound(producer)`` is the least stamp that producer can still send (None when it sends
    nothing more); ``field`` is the stamp field of the message class.
    """

    def __init__(
        self,
        consumer: str,
        field: str,
        streams: list[Stream],
        lower_bound: Callable[[str], Optional[int]],
    ) -> None:
        self.consumer = consumer
        self.field = field
        self.streams = streams
        self.lower_bound = lower_bound
        #: called with (producer, delivered part) after each delivery (a history recorder)
        self.observer: Optional[Callable[[str, Any], None]] = None

    def ready(self) -> Optional[tuple[Stream, int]]:
        """The stream whose head goes next and how many of its first chunk may go now, or None."""
        live = [s for s in self.streams if s.chunks]
        if not live:
            return None
        heads = [int(read_stamps(s.chunks[0][:1], self.field)[0]) for s in live]
        i = int(np.argmin(heads))
        first = live[i]
        bound: Optional[int] = None
        for s, h in zip(live, heads):
            if s is not first:
                bound = h if bound is None else min(bound, h)
        for s in self.streams:
            if not s.chunks:
                lb = self.lower_bound(s.producer)
                if lb is not None:
                    bound = lb if bound is None else min(bound, lb)
        chunk = first.chunks[0]
        if bound is None:
            return first, len(chunk)
        stamps = read_stamps(chunk, self.field)
        # equal stamps are concurrent (no happens-before either way): either may go first
        return first, int(np.searchsorted(stamps, np.uint64(bound), side="right"))

    def push_into(self, send: Callable[[Any], int]) -> int:
        """Deliver what may go now through ``send`` (non-blocking; returns how many it took);
        returns how many messages were delivered."""
        moved = 0
        while True:
            pick = self.ready()
            if pick is None or pick[1] == 0:
                return moved
            stream, n = pick
            chunk = stream.chunks[0]
            part = chunk[:n] if n < len(chunk) else chunk
            took = send(part)
            if took:
                if self.observer is not None:
                    self.observer(stream.producer, part[:took])
                if took < len(chunk):
                    stream.chunks[0] = chunk[took:]
                else:
                    stream.chunks.popleft()
                stream.depth -= took
                stream.forwarded += took
                moved += took
            if took < len(part):
                return moved
