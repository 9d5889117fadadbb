"""Topics, stamps and causal merges of a graph on the host strategy (``Flow``; docs/graphs.md).

``GraphHandle`` (graph_host.py) forwards each producer's replies into its outlets; ``Flow`` decides
what those outlets are and does the topic- and clock-specific work:

- **Topics as per-subscriber queues.** A topic is lowered to one bounded queue per subscriber (a
  kernel or the host), each fed by every publisher: this is the lowering a device strategy makes
  too (one edge ring per subscriber, the publisher writing each message into each ring). Under
  ``Block`` a full queue has no room, so the forwarder leaves the publisher's replies in its output
  queue (back-pressure); under ``DropOldest``/``DropNewest`` a queue always has room and drops
  (counted per subscriber) when it holds its ``capacity``. Every subscriber of a ``Block`` topic
  sees the same sequence (the order the forwarder took the publishers' batches in).
- **Stamps.** For a message class with an ``rg.HLC`` field, each node (a stage, or the host) has a
  ``HybridClock``: the host stamps what it sends or publishes (send rule), each stage's replies are
  stamped with its clock when the forwarder takes them (send rule), and each consumer's clock
  applies the receive rule for every stamp forwarded to it (at the same moment, which only makes
  its later stamps larger). So a reply's stamp exceeds the stamp of the message that caused it.
- **Causal merges.** A consumer declared ``order="causal"`` gets its inputs through a
  ``CausalMerge`` (ringgen/runtime/causal.py) over one stream per producer.

Threads: the forwarder and the host's calls (publish, subscriptions, send) meet under one lock.
"""

from __future__ import annotations

import collections
import threading
from typing import Any, Callable, Iterator, Mapping, Optional

import attrs
import numpy as np

from ..causal import HybridClock, hlc_field, read_stamps, write_stamps
from ..errors import KernelTimeoutError, QueueClosedError, QueueFullError
from ..graphs import Graph
from ..topics import Block, DropNewest, TopicSpec
from .base import KernelHandle
from .causal import CausalMerge, Stream
from .graph_edges import push_chunks
from .waiting import Backoff, check_timeout, deadline_after, expired

__all__ = [
    "Flow",
    "SubscriberQueue",
    "SubscriberStats",
    "Subscription",
    "TopicStats",
    "as_chunk",
    "host_topic",
]

#: The name the host has as a publisher or subscriber of a topic.
HOST = "host"


@attrs.frozen
class SubscriberStats:
    """One subscriber of a topic: ``delivered`` (into its input queue, or taken by the host),
    ``dropped`` (by the drop policy), ``depth`` (held now) and ``capacity`` (its queue bound)."""

    delivered: int
    dropped: int
    depth: int
    capacity: int


@attrs.frozen
class TopicStats:
    """One topic of a running graph: ``published`` (messages accepted from every publisher) and
    ``subscribers`` (subscriber name, ``"host"`` for the host -> ``SubscriberStats``)."""

    name: str
    message: str
    policy: str
    published: int
    subscribers: Mapping[str, SubscriberStats]


class SubscriberQueue:
    """One subscriber's queue of one topic: FIFO, or one ``Stream`` per publisher when the
    subscriber merges causally. Changed only under the flow's lock."""

    def __init__(self, topic: TopicSpec, subscriber: str, capacity: int, causal: bool) -> None:
        self.topic = topic
        self.subscriber = subscriber
        self.capacity = capacity
        self.policy = topic.policy
        self.fifo: collections.deque = collections.deque()
        self.streams: Optional[dict[str, Stream]] = None
        if causal:
            pubs = list(topic.publishers) + ([HOST] if topic.host_publishes else [])
            self.streams = {p: Stream(p) for p in pubs}
        self.depth = 0
        self.delivered = 0
        self.dropped = 0
        #: a host subscription under Block spills (takes everything) while the host is blocked in
        #: a send or terminating, as an exit does (docs/graphs.md): the host cannot read it then
        self.spilling = False

    def room(self) -> int:
        if isinstance(self.policy, Block) and not self.spilling:
            return self.capacity - self.depth
        return self.capacity  # a drop policy always takes a batch (and drops)

    def put(self, chunk: Any, publisher: str) -> None:
        n = len(chunk)
        if not isinstance(self.policy, Block):
            if isinstance(self.policy, DropNewest):
                keep = max(0, min(n, self.capacity - self.depth))
                self.dropped += n - keep
                chunk = chunk[:keep]
            else:  # DropOldest: keep the newest `capacity`
                if n > self.capacity:
                    self.dropped += n - self.capacity
                    chunk = chunk[n - self.capacity :]
                self._drop_front(self.depth + len(chunk) - self.capacity)
        if not len(chunk):
            return
        if self.streams is not None:
            self.streams[publisher].put(chunk)
        else:
            self.fifo.append(chunk)
        self.depth += len(chunk)

    def _drop_front(self, n: int) -> None:
        while n > 0 and self.fifo:
            head = self.fifo[0]
            if len(head) <= n:
                self.fifo.popleft()
                k = len(head)
            else:
                self.fifo[0] = head[n:]
                k = n
            self.depth -= k
            self.dropped += k
            n -= k

    def take(self, max_n: int) -> Optional[Any]:
        """Up to ``max_n`` of the oldest messages (FIFO queues only), or None."""
        if not self.fifo:
            return None
        head = self.fifo[0]
        if len(head) <= max_n:
            part = self.fifo.popleft()
        else:
            part = head[:max_n]
            self.fifo[0] = head[max_n:]
        self.depth -= len(part)
        self.delivered += len(part)
        self.spilling = False
        return part

    def push_fifo(self, consumer: KernelHandle) -> int:
        return push_chunks(self.fifo, consumer, self._delivered)

    def _delivered(self, n: int) -> None:
        self.depth -= n
        self.delivered += n

    def stats(self) -> SubscriberStats:
        return SubscriberStats(self.delivered, self.dropped, self.depth, self.capacity)


class _Outlet:
    """What a publisher's forwarding sees of a subscriber queue: ``room()`` and ``put(chunk)``,
    plus the counters ``GraphHandle._drain`` reads."""

    def __init__(self, flow: "Flow", queue: SubscriberQueue, publisher: str) -> None:
        self.flow = flow
        self.queue = queue
        self.publisher = publisher

    def room(self) -> int:
        with self.flow.lock:
            return self.queue.room()

    def put(self, chunk: Any) -> None:
        with self.flow.lock:
            self.queue.put(chunk, self.publisher)
            self.flow.published[self.queue.topic.name] += len(chunk) if self._first() else 0

    def _first(self) -> bool:
        # a publisher's batch counts once per topic, not once per subscriber
        return self.flow.first_outlet[(self.queue.topic.name, self.publisher)] is self

    @property
    def depth(self) -> int:
        return self.queue.depth


class _MergedEdge:
    """An edge into a causal consumer: the same counters as a plain edge (``EdgeStats``), carried
    as a ``Stream`` of its ``CausalMerge``; its ``push_into`` is the flow's (``Flow.push``)."""

    def __init__(self, flow: "Flow", edge: Any) -> None:
        self.flow = flow
        self.producer = edge.producer
        self.consumer = edge.consumer
        self.message = edge.message
        self.capacity = edge.capacity
        self.stream = Stream(edge.producer)

    @property
    def depth(self) -> int:
        return self.stream.depth

    @property
    def forwarded(self) -> int:
        return self.stream.forwarded

    def room(self) -> int:
        return self.capacity - self.stream.depth

    def put(self, chunk: Any) -> None:
        with self.flow.lock:
            self.stream.put(chunk)

    def push_into(self, consumer: KernelHandle) -> int:
        return 0  # Flow.push merges every stream of the consumer at once


class Flow:
    """The topics, clocks and causal merges of one graph (see the module docstring).

    Args:
        graph: the declared graph.
        handles: the running stage handles.
        edges: the graph's plain edges (``graph_edges._Edge``), one per ``graph.edges``.
        edge_capacity: the queue bound of each edge and subscriber (None: the consumer's capacity;
            for the host as a subscriber, the entry's).
    """

    def __init__(
        self,
        graph: Graph,
        handles: Mapping[str, KernelHandle],
        edges: list,
        edge_capacity: Optional[int],
    ) -> None:
        self.graph = graph
        self.handles = handles
        self.lock = threading.RLock()
        self.closed = False
        #: a ``ringgen.testing.history.History`` to record every stamped hop into, or None
        self.history: Any = None
        self.finished: Callable[[str], bool] = lambda stage: False
        self.published: dict[str, int] = {t.name: 0 for t in graph.topics}
        self.first_outlet: dict[tuple[str, str], _Outlet] = {}
        causal = {s for s in graph.stages if graph.spec(s).order == "causal"}
        self.edges: list = [_MergedEdge(self, e) if e.consumer in causal else e for e in edges]
        self.queues: list[SubscriberQueue] = []
        self.out_edges: dict[str, list] = {
            s: [e for e in self.edges if e.producer == s] for s in graph.stages
        }
        self.in_edges: dict[str, list] = {
            s: [e for e in self.edges if e.consumer == s] for s in graph.stages
        }
        self.host_outlets: dict[str, list[_Outlet]] = {}
        self.host_queues: dict[str, SubscriberQueue] = {}
        self.codecs: dict[str, Any] = {}
        for t in graph.topics:
            self._lower(t, handles, edge_capacity, causal)
        # clocks: one per node, for message classes that carry an rg.HLC field
        self.clocks = {s: HybridClock(s) for s in graph.stages}
        self.clocks[HOST] = HybridClock(HOST)
        self.out_field = {s: hlc_field(graph.spec(s).output) for s in graph.stages}
        self.entry_field = hlc_field(graph.spec(graph.entry).input)
        self.merges = {
            c: CausalMerge(
                c,
                hlc_field(graph.spec(c).input),
                [e.stream for e in self.in_edges[c] if isinstance(e, _MergedEdge)]
                + [s for q in self.queues if q.subscriber == c for s in q.streams.values()],
                self._lower_bound,
            )
            for c in sorted(causal)
        }

    def _lower(self, t: TopicSpec, handles, edge_capacity, causal: set) -> None:
        codec = None
        for s in t.publishers:
            codec = handles[s].out_codec
        for s in t.subscribers:
            codec = codec or handles[s].in_codec
        self.codecs[t.name] = codec
        subs = list(t.subscribers) + ([HOST] if t.host_subscribes else [])
        for sub in subs:
            if t.policy.capacity is not None:
                cap = t.policy.capacity
            elif sub == HOST:
                cap = edge_capacity or handles[self.graph.entry].capacity
            else:
                cap = edge_capacity or handles[sub].capacity
            q = SubscriberQueue(t, sub, cap, causal=sub in causal)
            self.queues.append(q)
            if sub == HOST:
                self.host_queues[t.name] = q
            else:
                self.in_edges[sub].append(q)
            for pub in t.publishers:
                outlet = _Outlet(self, q, pub)
                self.first_outlet.setdefault((t.name, pub), outlet)
                self.out_edges[pub].append(outlet)
            if t.host_publishes:
                outlet = _Outlet(self, q, HOST)
                self.first_outlet.setdefault((t.name, HOST), outlet)
                self.host_outlets.setdefault(t.name, []).append(outlet)

    @property
    def needs_forwarder(self) -> bool:
        """True when something moves between stages (an edge or a topic)."""
        return bool(self.edges or self.queues)

    # ------------------------------------------------------------------------------- clocks

    def _lower_bound(self, producer: str) -> Optional[int]:
        if producer == HOST:
            return None if self.closed else self.clocks[HOST].next_lower_bound()
        if self.finished(producer):
            return None
        return self.clocks[producer].next_lower_bound()

    def _stamp(self, node: str, chunk: Any, field: Optional[str], to: tuple[str, ...]) -> Any:
        if field is None or not len(chunk):
            return chunk
        with self.lock:
            first = self.clocks[node].send(len(chunk))
            chunk = write_stamps(chunk, field, first)
            last = first + len(chunk) - 1
            for c in to:
                self.clocks[c].receive(last)
            if self.history is not None:
                for t in range(first, last + 1):
                    self.history.send(node, t)
                    for c in to:
                        self.history.recv(c, node, t)
        return chunk

    def host_took(self, topic: TopicSpec, part: Any) -> None:
        """The host took ``part`` from its subscription to ``topic``: its clock receives it."""
        field = hlc_field(topic.message)
        if field is None or not len(part):
            return
        with self.lock:
            self.clocks[HOST].receive(int(read_stamps(part, field).max()))

    def stamp(self, stage: str, chunk: Any) -> Any:
        """Stamp the replies the forwarder took from ``stage`` (send rule), and let every stage
        they go to receive them (receive rule); returns the chunk to forward."""
        return self._stamp(stage, chunk, self.out_field[stage], self.graph.consumers(stage))

    def stamp_sent(self, messages: Any) -> Any:
        """Stamp what the host sends into the entry (a copy for an array; objects in place)."""
        if self.entry_field is None:
            return messages
        if isinstance(messages, np.ndarray):
            messages = messages.copy()
        return self._stamp(HOST, messages, self.entry_field, (self.graph.entry,))

    def received(self, stage: str, part: Any) -> Any:
        """The host takes ``part`` from exit ``stage``: stamped by the stage's clock (send rule),
        then received by the host's (receive rule); returns it."""
        if part is None:
            return part
        return self._stamp(stage, part, self.out_field[stage], (HOST,))

    # ----------------------------------------------------------------------------- forwarding

    def push(self, terminating: bool = False) -> int:
        """Move what the topic queues and causal merges can deliver into their consumers.

        Raises:
            QueueClosedError: a consumer closed while the graph is not terminating.
        """
        moved = 0
        with self.lock:
            if terminating:
                self.relieve_host()
            for q in self.queues:
                if q.subscriber != HOST and q.streams is None and q.depth:
                    try:
                        moved += q.push_fifo(self.handles[q.subscriber])
                    except QueueClosedError:
                        if not terminating:
                            raise
            for consumer, merge in self.merges.items():
                merge.observer = self._observer(consumer)
                try:
                    moved += merge.push_into(self._sender(consumer))
                except QueueClosedError:
                    if not terminating:
                        raise
            for q in self.queues:
                if q.streams is not None:
                    q.depth = sum(s.depth for s in q.streams.values())
                    q.delivered = sum(s.forwarded for s in q.streams.values())
        return moved

    def relieve_host(self) -> int:
        """The host is blocked (in a send, or terminating): its subscriptions spill until it reads
        them, so that it cannot deadlock against its own unread messages; returns 0 (nothing
        moves now, the forwarder moves it)."""
        with self.lock:
            for q in self.host_queues.values():
                q.spilling = True
        return 0

    def _observer(self, consumer: str) -> Optional[Callable[[str, Any], None]]:
        history = self.history
        if history is None:
            return None
        field = self.merges[consumer].field

        def observe(producer: str, part: Any) -> None:
            for t in read_stamps(part, field):
                history.deliver(consumer, producer, int(t))

        return observe

    def _sender(self, consumer: str) -> Callable[[Any], int]:
        handle = self.handles[consumer]
        return lambda part: handle.send_batch(part, block=False)

    def close(self) -> None:
        """The graph is terminated: publishing stops; subscriptions end once read."""
        with self.lock:
            self.closed = True

    # ------------------------------------------------------------------------------ the host

    def publish_batch(
        self,
        topic: str,
        messages: Any,
        *,
        block: bool = True,
        timeout: Optional[float] = None,
        check: Callable[[], None] = lambda: None,
    ) -> int:
        """The host publishes ``messages`` to ``topic``; returns how many were accepted.

        Raises:
            ValueError: no such topic, or the graph does not declare ``rg.HOST >> topic``.
            QueueFullError: a ``Block`` subscriber stayed full (``block=False`` or ``timeout``).
            QueueClosedError: the graph is terminating or terminated.
            TypeError: a message is not the topic's class.
        """
        t = host_topic(self.graph, topic, publishes=True)
        timeout = check_timeout(timeout, f"topic {topic}.publish_batch")
        chunk = as_chunk(t, messages, self.codecs[t.name])
        outlets = self.host_outlets[topic]
        field = hlc_field(t.message)
        deadline = deadline_after(timeout)
        backoff = Backoff()
        done = 0
        while done < len(chunk):
            check()
            with self.lock:
                if self.closed:
                    raise QueueClosedError(f"topic {topic}: graph {self.graph.label} is closed")
                room = min(o.queue.room() for o in outlets)
                if room > 0:
                    part = chunk[done : done + room]
                    if field is not None:
                        part = self._stamp(HOST, part, field, t.subscribers)
                    for o in outlets:
                        o.put(part)
                    done += len(part)
                    backoff.reset()
                    continue
            if not block or expired(deadline):
                if block:
                    err = QueueFullError(
                        f"topic {topic}: {done} of {len(chunk)} messages published within "
                        f"{timeout:g} s (a subscriber stayed full)",
                        hint="receive from the subscribers, or use a drop policy",
                    )
                    err.accepted = done  # type: ignore[attr-defined]
                    raise err
                return done
            backoff.wait(deadline)
        return done

    def subscription(self, topic: str, check: Callable[[], None]) -> "Subscription":
        """The host's subscription to ``topic`` (declared ``topic >> rg.HOST``).

        Raises:
            ValueError: no such topic, or the graph does not declare the host as a subscriber.
        """
        host_topic(self.graph, topic, publishes=False)
        return Subscription(self, self.host_queues[topic], self.codecs[topic], check)

    def stats(self) -> dict[str, TopicStats]:
        """Per topic: what was published and, per subscriber, delivered, dropped and held."""
        with self.lock:
            return {
                t.name: TopicStats(
                    name=t.name,
                    message=t.message.__name__,
                    policy=t.policy.name,
                    published=self.published[t.name],
                    subscribers={
                        q.subscriber: q.stats() for q in self.queues if q.topic.name == t.name
                    },
                )
                for t in self.graph.topics
            }


def host_topic(graph: Graph, name: str, *, publishes: bool) -> TopicSpec:
    """The topic ``name`` of ``graph``, which the host publishes to (``publishes``) or subscribes
    to; shared by every strategy's ``publish`` and ``subscribe``.

    Raises:
        ValueError: no such topic, or the graph does not declare ``rg.HOST >> topic`` (or
            ``topic >> rg.HOST``).
    """
    t = next((t for t in graph.topics if t.name == name), None)
    if t is None:
        names = ", ".join(t.name for t in graph.topics) or "none"
        raise ValueError(f"graph {graph.label} has no topic {name!r} (topics: {names})")
    if publishes and not t.host_publishes:
        raise ValueError(
            f"graph {graph.label}: the host does not publish to topic {name}; "
            f"declare it in the graph: rg.HOST >> {name}"
        )
    if not publishes and not t.host_subscribes:
        raise ValueError(
            f"graph {graph.label}: the host does not subscribe to topic {name}; "
            f"declare it in the graph: {name} >> rg.HOST"
        )
    return t


def as_chunk(t: TopicSpec, messages: Any, codec: Any) -> Any:
    """What the host publishes to ``t``: a copy of an array, or the message objects (checked to be
    the topic's class) as an array of ``codec`` (a list for a bridged message).

    Raises:
        TypeError: a message is not the topic's class.
    """
    if isinstance(messages, np.ndarray):
        return messages.copy()
    seq = list(messages)
    for m in seq:
        if not isinstance(m, t.message):
            raise TypeError(
                f"topic {t.name} carries {t.message.__qualname__}, not {type(m).__qualname__}"
            )
    if codec is not None and not codec.bridged:
        return codec.to_array(seq)
    return seq


class Subscription:
    """The host's end of a topic (``GraphHandle.subscribe``, ``FusedGraphHandle.subscribe``): every
    message published to it, in the order its strategy handed them to the host; iterating yields
    them until the graph is terminated and every message has been read.

    ``flow`` is what feeds ``queue``: the host strategy's ``Flow``, or a fused graph's
    ``graph_device_topics.HostTopics``; it has ``lock`` (held while the queue changes), ``closed``
    (nothing more will come) and ``host_took(topic, part)``. ``check()`` runs whenever the queue is
    empty: it raises a stage's fault, and on a fused graph moves the kernel's ready output into the
    queues first.
    """

    def __init__(self, flow: Any, queue: SubscriberQueue, codec: Any, check: Callable) -> None:
        self.flow = flow
        self.queue = queue
        self.codec = codec
        self.check = check
        self.topic = queue.topic.name

    def _take(self, max_n: int) -> Optional[Any]:
        with self.flow.lock:
            part = self.queue.take(max_n)
            closed = self.flow.closed
            if part is not None:
                self.flow.host_took(self.queue.topic, part)
        if part is None:
            if closed:
                raise QueueClosedError(f"topic {self.topic}: the graph is terminated")
            self.check()
            return None
        return part

    def _wait(self, max_n: int, timeout: Optional[float]) -> Optional[Any]:
        deadline = deadline_after(timeout)
        backoff = Backoff()
        while True:
            part = self._take(max_n)
            if part is not None:
                return part
            if expired(deadline):
                return None
            backoff.wait(deadline)

    def receive(self, timeout: Optional[float] = None) -> Any:
        """The next message, waiting up to ``timeout`` seconds (None: no limit).

        Raises:
            KernelTimeoutError: nothing within ``timeout``.
            QueueClosedError: the graph is terminated and every message has been read.
            KernelFaultError: a stage stopped on a fault.
        """
        timeout = check_timeout(timeout, f"topic {self.topic}.receive")
        part = self._wait(1, timeout)
        if part is None:
            raise KernelTimeoutError(f"topic {self.topic}: no message within {timeout:g} s")
        if isinstance(part, np.ndarray):
            return self.codec.from_array(part)[0]
        return part[0]

    def receive_batch(self, max_n: Optional[int] = None, timeout: Optional[float] = 0.0) -> Any:
        """Up to ``max_n`` messages ready within ``timeout`` (a structured array for a direct
        message, a list for a bridged one; empty when none came).

        Raises:
            QueueClosedError, KernelFaultError: as ``receive``.
        """
        timeout = check_timeout(timeout, f"topic {self.topic}.receive_batch")
        n = self.queue.capacity if max_n is None else int(max_n)
        if n < 1:
            raise ValueError(f"topic {self.topic}: receive_batch max_n must be >= 1, got {max_n!r}")
        part = self._wait(n, timeout)
        if part is not None:
            return part
        if self.codec is not None and not self.codec.bridged:
            return np.zeros(0, dtype=self.codec.dtype)
        return []

    def __iter__(self) -> Iterator[Any]:
        while True:
            try:
                yield self.receive()
            except QueueClosedError:
                return

    def stats(self) -> SubscriberStats:
        """This subscription's counters (``dropped`` under a drop policy)."""
        with self.flow.lock:
            return self.queue.stats()
