"""The replies of a graph fused into one kernel, split by where they go (docs/graphs.md, "Several
exits, several states"): ``ExitDemux``. The fused kernel has one output queue; each of its rows
is tagged with its outlet (an exit, or a topic the host subscribes to: ``FusedParts.outlets``),
and the host splits them into one spill per exit and the subscriptions' queues.
"""

from __future__ import annotations

import collections
import threading
from typing import Any, Mapping, Optional

import numpy as np

from ..graph_fusion import EXIT_PAYLOAD, EXIT_TAG, FusedParts
from ..graphs import Graph
from .graph_device_topics import HostTopics, checked_codec

__all__ = ["ExitDemux"]


class ExitDemux:
    """The replies of a fused graph with several exits, split by exit: each reply the kernel's
    one output queue gives is tagged with its exit (``EXIT_TAG``, its index in ``graph.exits``)
    and carries the exit's message in its payload (``EXIT_PAYLOAD``); ``split`` appends each
    exit's rows, as an array of the exit message's dtype, to that exit's spill, in the order the
    queue gave them, so every exit is FIFO as the queue is. Thread-safe (``lock``).

    ``received[exit]`` counts the replies handed to the user, ``spilled[exit]`` those split off
    while another exit was received from (they wait for a later receive of their own exit: the
    spill rule per exit), ``pending(exit)`` those waiting in the exit's spill now. Each exit's
    rows have its message codec's dtype (``codecs``), as a kernel's ``receive_batch`` gives them.

    Rows tagged for a topic the host subscribes to (``FusedParts.outlets`` after the exits) go to
    ``topics`` (``HostTopics.put``), the subscription's queue.

    Raises:
        ValueError: a codec's dtype is not the size of its message's layout (a stale package).
    """

    def __init__(
        self,
        graph: Graph,
        parts: FusedParts,
        codecs: Mapping[str, Any],
        lock: Optional["threading.RLock"] = None,
        topics: Optional[HostTopics] = None,
    ) -> None:
        self.graph = graph
        self.outlets = parts.outlets
        self.topics = topics
        self.exits = graph.exits
        self.dtypes: dict[str, Optional[np.dtype]] = {}
        for x in self.exits:
            spec = graph.spec(x)
            cls = spec.outbox or spec.output
            # the dtype a kernel's receive_batch gives (its codec's), laid out as the device's
            self.dtypes[x] = (
                checked_codec(graph, codecs, cls, f"exit {x}").dtype if cls is not None else None
            )
        self.words = parts.payload_words
        self.lock = lock or threading.RLock()
        self.spills: dict[str, collections.deque] = {x: collections.deque() for x in self.exits}
        self.received = dict.fromkeys(self.exits, 0)
        self.spilled = dict.fromkeys(self.exits, 0)
        self._pending = dict.fromkeys(self.exits, 0)

    def split(self, rows: np.ndarray, asked: str) -> None:
        """Append each exit's replies among ``rows`` (tagged replies, in queue order) to its
        spill; those of exits other than ``asked`` (the one being received from) count in their
        ``spilled``. Call with ``lock`` held."""
        if not len(rows):
            return
        tags = rows[EXIT_TAG]
        data = np.ascontiguousarray(rows[EXIT_PAYLOAD]).view(np.uint8)
        data = data.reshape(len(rows), 8 * self.words)
        for i, x in enumerate(self.exits):
            dtype = self.dtypes[x]
            if dtype is None:
                continue
            mine = data[tags == i, : dtype.itemsize]
            if len(mine):
                self.spills[x].append(np.ascontiguousarray(mine).view(dtype).reshape(-1))
                self._pending[x] += len(mine)
                if x != asked:
                    self.spilled[x] += len(mine)
        for i in range(len(self.exits), len(self.outlets)):
            dtype = self.topics.dtype(self.outlets[i])
            mine = data[tags == i, : dtype.itemsize]
            if len(mine):
                self.topics.put(self.outlets[i], np.ascontiguousarray(mine).view(dtype).reshape(-1))

    def take(self, exit: str, n: int) -> Optional[np.ndarray]:
        """Up to ``n`` of ``exit``'s spilled replies, oldest first, or None. Call with ``lock``
        held."""
        spill = self.spills[exit]
        if not spill:
            return None
        chunk = spill[0]
        if len(chunk) <= n:
            spill.popleft()
        else:
            spill[0] = chunk[n:]
            chunk = chunk[:n]
        self._pending[exit] -= len(chunk)
        self.received[exit] += len(chunk)
        return chunk

    def pending(self, exit: str) -> int:
        """Replies of ``exit`` split off and not taken yet."""
        return self._pending[exit]
