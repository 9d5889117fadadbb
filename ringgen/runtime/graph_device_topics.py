"""The host as a topic's subscriber and publisher on a graph fused into one kernel (``shared_memory``;
docs/graphs.md, "Topics under each strategy").

- **The host subscribes** (``topic >> rg.HOST``): the fused kernel writes a copy of every message
  published to the topic as one more tagged output (``ringgen.graph_fusion.FusedParts.outlets``), and
  ``ExitDemux`` (graph_device.py) puts those rows into the subscription's ``SubscriberQueue``, the
  host strategy's own queue with its policies (topic_host.py). ``Subscription`` (also the host
  strategy's) reads it. Under ``Block`` a full queue back-pressures the graph: ``room`` says how
  many of the kernel's output rows the split may take, 0 when a ``Block`` subscription is full,
  so the kernel's output queue fills and the kernel stops. The spill rule still holds: a host
  blocked in ``send`` moves the kernel's output into the kernel's own spill (runtime/base.py), and
  once the graph is terminating a subscription takes everything (``relieve``), so the host never
  deadlocks on its own unread copies. Under a drop policy the split always takes the output, and
  the queue keeps at most its ``capacity`` and counts what it drops.
- **The host publishes** (``rg.HOST >> topic``): the kernel's input is ``FusedParts.input_class``,
  a tag (0: a message for the entry; ``i + 1``: one for ``host_published[i]``) and the message's
  bytes; ``tagged`` makes those rows, so the host's publishes and sends share one FIFO queue.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Mapping, Optional

import numpy as np

from ..errors import QueueClosedError, QueueFullError
from ..graphs import Graph
from ..graph_fusion import (
    EXIT_PAYLOAD,
    INPUT_TAG,
    FusedParts,
    GraphCounters,
    fused_parts,
    stage_bounds,
    topic_outlet,
)
from ..layout import layout_of
from .topic_host import (
    HOST,
    SubscriberQueue,
    SubscriberStats,
    Subscription,
    TopicStats,
    as_chunk,
    host_topic,
)

__all__ = ["HostTopicCalls", "HostTopics", "checked_codec", "fused_topic_stats"]


class HostTopics:
    """The host's subscriptions and publishing of one fused graph (see the module docstring).

    Args:
        graph: the graph.
        parts: its ``fused_parts``.
        codecs: the fused kernel's codecs (message class name -> codec).
        capacity: a ``Block`` subscription's bound (the entry's capacity, as on the host strategy).
        lock: the lock of the graph's ``ExitDemux``, held while a queue changes.

    Raises:
        ValueError: a codec's dtype is not the size of its message's layout (a stale package).
    """

    def __init__(
        self,
        graph: Graph,
        parts: FusedParts,
        codecs: Mapping[str, Any],
        capacity: int,
        lock: "threading.RLock",
    ) -> None:
        self.graph = graph
        self.parts = parts
        self.lock = lock
        self.closed = False
        self.terminating = False
        self.codecs: dict[str, Any] = {}
        for t in graph.topics:
            if t.host_publishes or t.host_subscribes:
                self.codecs[t.name] = checked_codec(graph, codecs, t.message, f"topic {t.name}")
        self.queues: dict[str, SubscriberQueue] = {}
        for name in parts.host_subscribed:
            t = host_topic(graph, name, publishes=False)
            cap = t.policy.capacity if t.policy.capacity is not None else capacity
            self.queues[topic_outlet(name)] = SubscriberQueue(t, HOST, cap, causal=False)
        self.input_dtype: Optional[np.dtype] = None
        self.entry_codec: Any = None
        if parts.input_class is not None:
            self.input_dtype = codecs[parts.input_class.__name__].dtype
            entry = graph.spec(graph.entry).input
            self.entry_codec = checked_codec(graph, codecs, entry, f"entry {graph.entry}")

    # ---- the host subscribes

    def dtype(self, outlet: str) -> np.dtype:
        """The rows of ``outlet`` (a topic outlet of ``FusedParts.outlets``) as its codec has them."""
        return self.codecs[self.queues[outlet].topic.name].dtype

    def put(self, outlet: str, rows: np.ndarray) -> None:
        """The host's copies of a topic split off the kernel's output, in queue order (with
        ``lock`` held): into its subscription, which drops under a drop policy."""
        self.queues[outlet].put(rows, HOST)

    def room(self) -> Optional[int]:
        """How many of the kernel's output rows the split may take now: the least room of the
        ``Block`` subscriptions (0: one is full, the graph is back-pressured), None when there is
        no ``Block`` subscription or the graph is terminating (every row may be taken)."""
        blocking = [q for q in self.queues.values() if q.policy.capacity is None]
        if not blocking or self.terminating:
            return None
        return max(0, min(q.capacity - q.depth for q in blocking))

    def relieve(self) -> None:
        """The graph is terminating: its subscriptions take every copy from now on (the spill
        rule; for good, unlike the host strategy's, which a read resets: nothing on the host
        moves the copies here but the host's own reads), so that the kernel drains and every
        exit can be read to its end however little the host reads of the subscriptions."""
        with self.lock:
            self.terminating = True

    def host_took(self, topic: Any, part: Any) -> None:
        """``Subscription`` tells its flow what the host took; a fused graph keeps no host clock
        for topics (``check_device_keeps`` refuses stamps with ``rg.HOST`` there)."""

    def subscription(self, topic: str, check: Callable[[], None]) -> Subscription:
        """The host's subscription to ``topic``; ``check`` moves the kernel's ready output into
        the queues (and raises the kernel's fault).

        Raises:
            ValueError: no such topic, or the graph does not declare ``topic >> rg.HOST``.
        """
        host_topic(self.graph, topic, publishes=False)
        queue = self.queues[topic_outlet(topic)]
        return Subscription(self, queue, self.codecs[topic], check)

    # ---- the host publishes

    def tagged(self, topic: Optional[str], messages: Any) -> np.ndarray:
        """``messages`` (an array of the message's dtype, or message objects) as rows of the
        kernel's tagged input: for the entry (``topic`` None, tag 0) or published to ``topic``.

        Raises:
            ValueError: ``topic`` is no topic the host publishes to.
            TypeError: a message is not the entry's (or the topic's) class, or an array has
                another dtype.
        """
        if topic is None:
            tag, codec, what = 0, self.entry_codec, f"entry {self.graph.entry}"
            cls = self.graph.spec(self.graph.entry).input
            if not isinstance(messages, np.ndarray):
                messages = list(messages)
                bad = [m for m in messages if not isinstance(m, cls)]
                if bad:
                    raise TypeError(
                        f"graph {self.graph.label}: the entry {self.graph.entry} takes "
                        f"{cls.__qualname__}, not {type(bad[0]).__qualname__}"
                    )
                messages = codec.to_array(messages)
        else:
            t = host_topic(self.graph, topic, publishes=True)
            tag = self.parts.host_published.index(topic) + 1
            codec, what = self.codecs[topic], f"topic {topic}"
            messages = as_chunk(t, messages, codec)
        if messages.dtype.itemsize != codec.dtype.itemsize or messages.dtype.names is None:
            raise TypeError(
                f"graph {self.graph.label}: {what} takes rows of {codec.dtype}, not {messages.dtype}"
            )
        n = len(messages)
        rows = np.zeros(n, self.input_dtype)
        rows[INPUT_TAG] = tag
        data = np.zeros((n, 8 * self.parts.input_words), np.uint8)
        data[:, : codec.dtype.itemsize] = (
            np.ascontiguousarray(messages).view(np.uint8).reshape(n, codec.dtype.itemsize)
        )
        rows[EXIT_PAYLOAD] = data.view(np.uint64).reshape(n, self.parts.input_words)
        return rows


class HostTopicCalls:
    """The host's topic calls of ``FusedGraphHandle`` (a mixin): ``publish``, ``publish_batch``,
    ``subscribe``. It reads the handle's ``graph``, ``name``, ``kernel``, ``_topics`` (a
    ``HostTopics``, or None when the host is in no topic), ``_tagged_input``,
    ``_host_published`` (rows published so far), ``_demux`` and ``_pump`` (which splits the
    kernel's output)."""

    def publish(
        self, topic: str, message: Any, *, block: bool = True, timeout: Optional[float] = None
    ) -> None:
        """The host publishes one message to ``topic`` (``rg.HOST >> topic``); as
        ``publish_batch``.

        Raises:
            QueueFullError: ``block=False`` and the input queue is full, or ``timeout`` expired.
        """
        if self.publish_batch(topic, [message], block=block, timeout=timeout) < 1:
            err = QueueFullError(
                f"graph {self.name}: topic {topic}: the fused kernel's input queue is full "
                f"(capacity {self.kernel.capacity}); 0 of 1 message(s) published without waiting",
                hint="publish with block=True (the default) to wait for room",
            )
            err.accepted = 0  # type: ignore[attr-defined]
            raise err

    def publish_batch(
        self,
        topic: str,
        messages: Any,
        *,
        block: bool = True,
        timeout: Optional[float] = None,
    ) -> int:
        """The host publishes ``messages`` to ``topic``: they enter the fused kernel's input queue
        tagged with the topic, in order with the host's sends, and the kernel hands each to the
        topic's subscribers as it hands a publisher's reply; returns how many were accepted.

        Raises:
            ValueError: no such topic, or the graph does not declare ``rg.HOST >> topic``.
            TypeError: a message is not the topic's class.
            QueueFullError: the input queue stayed full (``timeout``); ``accepted`` says how many
                (a prefix) were published.
            QueueClosedError: the graph is terminating or terminated.
        """
        if self._topics is None:
            host_topic(self.graph, topic, publishes=True)
        rows = self._topics.tagged(topic, messages)
        try:
            n = self.kernel.send_batch(rows, block=block, timeout=timeout)
            self._host_published += n
            return n
        except QueueFullError as exc:
            accepted = getattr(exc, "accepted", 0)
            self._host_published += accepted
            err = QueueFullError(
                f"graph {self.name}: topic {topic}: {accepted} of {len(rows)} messages published "
                f"within {timeout:g} s (the fused kernel's input queue stayed full)",
                hint="receive from the exits and subscriptions, or give a longer timeout",
            )
            err.accepted = accepted  # type: ignore[attr-defined]
            raise err from None
        except QueueClosedError:
            raise QueueClosedError(
                f"graph {self.name}: topic {topic}: the graph is closed; it publishes no more",
                hint="launch the graph again to publish more",
            ) from None

    def subscribe(self, topic: str) -> Subscription:
        """The host's subscription to ``topic`` (``topic >> rg.HOST``): the host strategy's
        ``Subscription`` (``receive``, ``receive_batch``, iteration, ``stats``) over the copies
        the kernel tags for it.

        Raises:
            ValueError: no such topic, or the graph does not declare ``topic >> rg.HOST``.
        """
        if self._topics is None:
            host_topic(self.graph, topic, publishes=False)
        return self._topics.subscription(topic, self._pump_topics)

    def _pump_topics(self) -> None:
        """A subscription found its queue empty: move the kernel's ready output in."""
        with self._demux.lock:
            try:
                self._pump(None)
            except QueueClosedError:
                pass  # _pump marked the subscriptions closed: they end once read

    def _untagged_input(self, call: str) -> None:
        """Raise ``TypeError`` when the input slots are tagged (the host publishes to a topic),
        naming the graph and why ``call`` cannot hand them out."""
        if self._tagged_input:
            topics = ", ".join(fused_parts(self.graph).host_published)
            raise TypeError(
                f"graph {self.name}: {call}() writes the entry's messages into the input ring in "
                f"place, and this graph's input slots are tagged rows that also carry what the "
                f"host publishes to topic(s) {topics}; use send_batch(), which tags them"
            )


def fused_topic_stats(
    graph: Graph,
    raw: np.ndarray,
    counters: GraphCounters,
    edges: Mapping[tuple[str, str], Any],
    topics: Optional[HostTopics],
) -> dict[str, TopicStats]:
    """Per topic of a graph running as one kernel, from its counters ``raw`` and its ``edges``
    (``(publisher, subscriber) -> EdgeStats``): ``published`` is what the topic's kernel publishers
    emitted plus the host's messages the kernel handed on; a kernel subscriber's ``delivered`` is
    what its edges from the publishers forwarded plus those host messages, its ``depth`` what the
    edges hold (under ``shared_memory`` it runs on each message in its publisher's thread, so it
    holds none and never drops); the host's subscription (``topics``) has its queue's
    ``delivered`` and ``dropped``, and as ``depth`` the rest of what was published (in its queue,
    or on the way through the kernel's output queue or spill)."""
    bounds = stage_bounds(graph)
    out: dict[str, TopicStats] = {}
    lock = topics.lock if topics is not None else threading.RLock()
    with lock:
        for t in graph.topics:
            hosted = int(raw[counters.topic_at(t.name)]) if t.host_publishes else 0
            published = hosted + sum(int(raw[counters.stage_at(p) + 1]) for p in t.publishers)
            subs: dict[str, SubscriberStats] = {}
            for s in t.subscribers:
                mine = [edges[(p, s)] for p in t.publishers if (p, s) in edges]
                cap = t.policy.capacity if t.policy.capacity is not None else bounds[s][0]
                subs[s] = SubscriberStats(
                    hosted + sum(e.forwarded for e in mine), 0, sum(e.depth for e in mine), cap
                )
            q = topics.queues.get(topic_outlet(t.name)) if topics is not None else None
            if q is not None:
                depth = max(0, published - q.delivered - q.dropped)
                subs[HOST] = SubscriberStats(q.delivered, q.dropped, depth, q.capacity)
            out[t.name] = TopicStats(
                name=t.name,
                message=t.message.__name__,
                policy=t.policy.name,
                published=published,
                subscribers=subs,
            )
    return out


def checked_codec(graph: Graph, codecs: Mapping[str, Any], cls: type, what: str) -> Any:
    """The codec of ``cls`` (``what`` names its role: an exit, a topic, the entry), whose dtype
    must be laid out as the device's.

    Raises:
        ValueError: the codec's dtype is not the size of the class's layout (a stale package).
    """
    codec = codecs[cls.__name__]
    if codec.dtype.itemsize != layout_of(cls).size:
        raise ValueError(
            f"graph {graph.label}: {what}'s codec of {cls.__name__} holds "
            f"{codec.dtype.itemsize} bytes, its layout {layout_of(cls).size}: rebuild the package"
        )
    return codec
