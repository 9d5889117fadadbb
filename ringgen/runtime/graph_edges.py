"""The parts of a running graph between its stages (``ringgen.runtime.graph_host``): the counters
``stats()`` reports (``EdgeStats``, ``GraphStats``), a bounded edge and an exit's spill."""

from __future__ import annotations

import collections
import threading
from typing import Callable, Mapping, Optional, Union

import attrs
import numpy as np

from ..protocol import Lifecycle
from .base import KernelHandle
from .stats import KernelStats

__all__ = ["Chunk", "EdgeStats", "GraphStats", "push_chunks"]

#: What an edge or a spill holds: a batch of replies (an array, or objects for bridged messages).
Chunk = Union[np.ndarray, list]


@attrs.frozen
class EdgeStats:
    """One edge of a running graph.

    Attributes:
        producer, consumer: the stages it connects.
        message: the class name of the messages it carries.
        capacity: the most messages it holds between the two queues.
        depth: messages it holds now (taken from the producer, not yet in the consumer's queue).
        forwarded: messages it has put into the consumer's input queue.
        stalls: times its producer waited for room in it (the ``atomic_queue`` strategy counts
            them; 0 elsewhere).
    """

    producer: str
    consumer: str
    message: str
    capacity: int
    depth: int
    forwarded: int
    stalls: int = 0


@attrs.frozen
class GraphStats:
    """A running graph's counters: ``stages`` maps each stage to its ``KernelStats``.

    Attributes:
        graph: the graph's name (or its stages, unnamed).
        backend: the backend its stages run on.
        strategy: how edges are carried ("host").
        lifecycle: FAULTED when a stage faulted, TERMINATED when all are, else the least advanced
            stage's state (TERMINATING while a terminate is under way).
        stages: stage name -> ``KernelStats``, producers first.
        edges: ``EdgeStats`` per edge.
        spilled: replies of the exits moved into the graph's spill (they count until received).
        topics: topic name -> ``topic_host.TopicStats`` (published; per subscriber delivered and
            dropped).
    """

    graph: str
    backend: str
    strategy: str
    lifecycle: Lifecycle
    stages: Mapping[str, KernelStats]
    edges: tuple[EdgeStats, ...]
    spilled: int
    topics: Mapping[str, object] = attrs.field(factory=dict)


def push_chunks(
    chunks: collections.deque, consumer: KernelHandle, took: Callable[[int], None]
) -> int:
    """Send the oldest chunks of ``chunks`` into ``consumer``'s input queue, as many messages as fit
    now (a chunk that fits in part stays with its rest at the front); returns how many, and tells
    ``took`` the same number, also when the consumer closes midway (the counts stay true)."""
    moved = 0
    try:
        while chunks:
            chunk = chunks[0]
            n = consumer.send_batch(chunk, block=False)
            moved += n
            if n < len(chunk):
                if n:
                    chunks[0] = chunk[n:]
                break
            chunks.popleft()
    finally:
        took(moved)
    return moved


class _Edge:
    """A bounded FIFO of reply chunks between two stages; only the forwarder changes it."""

    __slots__ = ("producer", "consumer", "message", "capacity", "chunks", "depth", "forwarded")

    def __init__(self, producer: str, consumer: str, message: str, capacity: int) -> None:
        self.producer = producer
        self.consumer = consumer
        self.message = message
        self.capacity = capacity
        self.chunks: collections.deque = collections.deque()
        self.depth = 0
        self.forwarded = 0

    def room(self) -> int:
        return self.capacity - self.depth

    def put(self, chunk: Chunk) -> None:
        self.chunks.append(chunk)
        self.depth += len(chunk)

    def push_into(self, consumer: KernelHandle) -> int:
        """Move what fits into ``consumer``'s input queue, oldest first; returns how many."""
        return push_chunks(self.chunks, consumer, self._took)

    def _took(self, n: int) -> None:
        self.depth -= n
        self.forwarded += n


class _Spill:
    """Replies taken from one exit before the host asked for them, oldest first."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.chunks: collections.deque = collections.deque()
        self.total = 0

    def take(self, n: int) -> Optional[Chunk]:
        if not self.chunks:
            return None
        chunk = self.chunks[0]
        if len(chunk) <= n:
            return self.chunks.popleft()
        self.chunks[0] = chunk[n:]
        return chunk[:n]
