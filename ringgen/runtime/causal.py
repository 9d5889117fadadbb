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

On the ``shared_memory`` device strategy the stages stamp on the device and a causal stage's
inputs come in the thread's program order (docs/graphs.md, "Causal order"); ``HostStamps`` is then
the host's end: it stamps what the host sends and receives what it takes.
"""

from __future__ import annotations

import collections
import threading
from typing import Any, Callable, Optional

import numpy as np

from ..causal import HybridClock, read_stamps, write_stamps

__all__ = ["CausalMerge", "HostStamps", "Stream"]


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


class HostStamps:
    """The host's end of a graph's stamps when the device stamps every hop between its stages
    (``shared_memory``; docs/graphs.md, "Causal order").

    The host's clock stamps what the host sends into the entry (send rule; whatever the caller
    wrote into the stamp is replaced) and takes the stamps of what it receives from the exit
    (receive rule), as ``topic_host.Flow`` does on the host strategy. ``history``, when set
    (``ringgen.testing.history.record``), records what the host sees: its sends, and for each
    reply the exit's send and the host's receive. Thread-safe (one lock).

    Args:
        entry_field: the ``rg.HLC`` field of the entry's input class, or None.
        exit_field: that of the exit's output class, or None.
        exit: the exit stage's name; ``host``: the host's name in a history.
    """

    def __init__(
        self, entry_field: Optional[str], exit_field: Optional[str], exit: str, host: str
    ) -> None:
        self.clock = HybridClock(host)
        self.entry_field = entry_field
        self.exit_field = exit_field
        self.exit = exit
        self.host = host
        self.lock = threading.Lock()
        #: a ``ringgen.testing.history.History`` recording the host's stamped hops, or None
        self.history: Any = None

    def stamp_sent(self, messages: Any, *, in_place: bool = False) -> Any:
        """Stamp a batch the host sends into the entry (a structured array, copied unless
        ``in_place``, or a list of objects, stamped in place); returns it."""
        field = self.entry_field
        if field is None or not len(messages):
            return messages
        if isinstance(messages, np.ndarray) and not in_place:
            messages = messages.copy()
        with self.lock:
            first = self.clock.send(len(messages))
            messages = write_stamps(messages, field, first)
            if self.history is not None:
                for t in range(first, first + len(messages)):
                    self.history.send(self.host, t)
        return messages

    def received(self, part: Any) -> Any:
        """The host took ``part`` (a batch) from the exit: its clock receives the largest stamp;
        returns ``part``."""
        field = self.exit_field
        if field is None or part is None or not len(part):
            return part
        stamps = read_stamps(part, field)
        with self.lock:
            self.clock.receive(int(stamps.max()))
            if self.history is not None:
                for t in stamps:
                    self.history.send(self.exit, int(t))
                    self.history.recv(self.host, self.exit, int(t))
        return part
