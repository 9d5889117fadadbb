"""Topics: named publish/subscribe channels inside a graph (``rg.topic``; docs/graphs.md, "Topics").

A topic carries one message class. Kernels whose output is that class publish to it (``parse >>
scores``: each of ``parse``'s replies, its return, its ``Optional``'s or its Outbox's emits) and
kernels whose input is that class subscribe to it (``scores >> [rank, audit]``): every subscriber gets
every message published. The host may publish (``rg.HOST >> scores``, then
``handle.publish("scores", msg)``) and subscribe (``scores >> rg.HOST``, then
``handle.subscribe("scores")``). The fan-out is static: it is what the graph declares, checked when it
is declared (a ``BuildError`` naming the topic, the kernel and both types, at the line that wrote
the link).

Each subscriber has its own bounded queue; the topic's ``policy`` says what happens when one is
full: ``Block()`` (the default: the publishers wait, so nothing is ever dropped), ``DropOldest(n)``
or ``DropNewest(n)`` (that subscriber's queue holds ``n`` messages and drops, counting each drop in
its ``dropped``; the publishers never wait for it).

This module is declarations only; ``ringgen.graphs`` assembles them into a ``Graph`` and
``ringgen.runtime.topic_host`` runs them.
"""

from __future__ import annotations

import sys
from typing import Any, Iterable, Optional, Union

import attrs

from .errors import BuildError
from .kernel import KernelSpec, RingKernel
from .naming import check_identifier_shape

__all__ = [
    "Block",
    "DropNewest",
    "DropOldest",
    "HOST",
    "Policy",
    "Topic",
    "TopicLinks",
    "TopicSpec",
    "topic",
]


@attrs.frozen
class Block:
    """Never drop: a subscriber whose queue is full makes every publisher of the topic wait."""

    @property
    def name(self) -> str:
        return "block"

    @property
    def capacity(self) -> Optional[int]:
        return None


def _positive(instance: Any, attribute: Any, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(
            f"{type(instance).__name__}: {attribute.name} must be an integer >= 1, got {value!r}"
        )


@attrs.frozen
class DropOldest:
    """Each subscriber keeps its newest ``capacity`` messages: a full queue drops its oldest."""

    capacity: int = attrs.field(validator=_positive)

    @property
    def name(self) -> str:
        return "drop_oldest"


@attrs.frozen
class DropNewest:
    """Each subscriber keeps its oldest ``capacity`` messages: a full queue drops what arrives."""

    capacity: int = attrs.field(validator=_positive)

    @property
    def name(self) -> str:
        return "drop_newest"


Policy = Union[Block, DropOldest, DropNewest]


class _Host:
    """``rg.HOST``: the host as a topic's publisher (``rg.HOST >> t``) or subscriber (``t >> rg.HOST``)."""

    def __rshift__(self, other: Any) -> "TopicLinks":
        if not isinstance(other, Topic):
            return NotImplemented
        return TopicLinks(other, host_publishes=True, where=_declared_at())

    def __repr__(self) -> str:
        return "rg.HOST"


HOST = _Host()


def _declared_at() -> tuple[Optional[str], Optional[int]]:
    """The file and line of the first caller outside ringgen (where the link is written)."""
    frame = sys._getframe(1)
    while frame is not None:
        mod = frame.f_globals.get("__name__", "")
        if mod != "ringgen" and not mod.startswith("ringgen."):
            return frame.f_code.co_filename, frame.f_lineno
        frame = frame.f_back
    return None, None


def _where(spec: KernelSpec) -> str:
    return f"{spec.pos.file}:{spec.pos.line}" if spec.pos.file else f"module {spec.module}"


def _type_name(cls: Optional[type]) -> str:
    return "None" if cls is None else f"{cls.__module__}.{cls.__qualname__}"


@attrs.frozen(eq=False)
class Topic:
    """A declared topic (``rg.topic``): its name, message class and subscriber policy.

    Link it into a graph with ``>>``: ``kernel >> topic`` publishes, ``topic >> kernel`` (or a
    list of kernels) subscribes, ``rg.HOST`` on either side makes the host a publisher or subscriber.
    """

    name: str
    message: type
    policy: Policy
    file: Optional[str]
    line: Optional[int]

    def __rshift__(self, other: Any) -> "TopicLinks":
        subs = list(other) if isinstance(other, (list, tuple)) else [other]
        links = TopicLinks(self, where=_declared_at())
        for s in subs:
            links = links._subscribe(s)
        return links

    def __rrshift__(self, other: Any) -> "TopicLinks":
        where = _declared_at()
        pubs = list(other) if isinstance(other, (list, tuple)) else [other]
        links = TopicLinks(self, where=where)
        for p in pubs:
            links = links._publish(p)
        return links

    def __repr__(self) -> str:
        return f"<topic {self.name}: {self.message.__name__}, {self.policy!r}>"


class TopicLinks:
    """The links of one topic written with ``>>``: publishers, subscribers and the host's part.

    ``rg.graph`` takes it as a part; ``links >> more`` adds subscribers (when it ends at the topic)
    so ``parse >> scores >> [rank, audit]`` is one part.
    """

    def __init__(
        self,
        topic: Topic,
        *,
        publishers: tuple[RingKernel, ...] = (),
        subscribers: tuple[RingKernel, ...] = (),
        host_publishes: bool = False,
        host_subscribes: bool = False,
        where: tuple[Optional[str], Optional[int]] = (None, None),
    ) -> None:
        self.topic = topic
        self.publishers = publishers
        self.subscribers = subscribers
        self.host_publishes = host_publishes
        self.host_subscribes = host_subscribes
        self.file, self.line = where

    def _evolve(self, **changes: Any) -> "TopicLinks":
        fields = dict(
            publishers=self.publishers,
            subscribers=self.subscribers,
            host_publishes=self.host_publishes,
            host_subscribes=self.host_subscribes,
            where=(self.file, self.line),
        )
        fields.update(changes)
        return TopicLinks(self.topic, **fields)

    def _publish(self, part: Any) -> "TopicLinks":
        if part is HOST:
            return self._evolve(host_publishes=True)
        if not isinstance(part, RingKernel):
            raise TypeError(
                f"topic {self.topic.name}: {part!r} cannot publish to it; a publisher is a "
                "@rg.ring_kernel or rg.HOST"
            )
        _check_publisher(self.topic, part.spec, self.file, self.line)
        return self._evolve(publishers=self.publishers + (part,))

    def _subscribe(self, part: Any) -> "TopicLinks":
        if part is HOST:
            return self._evolve(host_subscribes=True)
        if not isinstance(part, RingKernel):
            raise TypeError(
                f"topic {self.topic.name}: {part!r} cannot subscribe to it; a subscriber is a "
                "@rg.ring_kernel or rg.HOST"
            )
        _check_subscriber(self.topic, part.spec, self.file, self.line)
        return self._evolve(subscribers=self.subscribers + (part,))

    def __rshift__(self, other: Any) -> "TopicLinks":
        where = _declared_at()
        subs = list(other) if isinstance(other, (list, tuple)) else [other]
        links = self._evolve(where=where)
        for s in subs:
            links = links._subscribe(s)
        return links

    def __repr__(self) -> str:
        pubs = [k.spec.name for k in self.publishers] + (["HOST"] if self.host_publishes else [])
        subs = [k.spec.name for k in self.subscribers] + (["HOST"] if self.host_subscribes else [])
        return f"<{', '.join(pubs) or '-'} >> topic {self.topic.name} >> {', '.join(subs) or '-'}>"


@attrs.frozen
class TopicSpec:
    """A topic as a graph holds it: who publishes and who subscribes (stage names, producers first).

    ``host_publishes`` / ``host_subscribes``: the host publishes to it / receives every message of it.
    ``file`` and ``line``: where the topic was declared (``rg.topic``).
    """

    name: str
    message: type
    policy: Policy
    publishers: tuple[str, ...]
    subscribers: tuple[str, ...]
    host_publishes: bool
    host_subscribes: bool
    file: Optional[str] = attrs.field(eq=False, default=None)
    line: Optional[int] = attrs.field(eq=False, default=None)

    @property
    def capacity(self) -> Optional[int]:
        """The queue bound of each subscriber under a drop policy (None under ``Block``)."""
        return self.policy.capacity


def _check_publisher(t: Topic, spec: KernelSpec, file: Optional[str], line: Optional[int]) -> None:
    if spec.output is None:
        raise BuildError(
            f"kernel {spec.name} ({_where(spec)}) has no output (its handler returns None and takes "
            f"no Outbox), so it cannot publish to topic {t.name} ({_type_name(t.message)})",
            file=file,
            line=line,
            hint=f"return {t.message.__name__} messages from {spec.name}",
        )
    if spec.output is not t.message:
        raise BuildError(
            f"kernel {spec.name} ({_where(spec)}) outputs {_type_name(spec.output)}, but topic "
            f"{t.name} ({t.file}:{t.line}) carries {_type_name(t.message)}",
            file=file,
            line=line,
            hint="a publisher's output type must be its topic's message type",
        )


def _check_subscriber(t: Topic, spec: KernelSpec, file: Optional[str], line: Optional[int]) -> None:
    if spec.input is not t.message:
        raise BuildError(
            f"topic {t.name} ({t.file}:{t.line}) carries {_type_name(t.message)}, but its "
            f"subscriber kernel {spec.name} ({_where(spec)}) takes {_type_name(spec.input)}",
            file=file,
            line=line,
            hint="a subscriber's input type must be its topic's message type",
        )


def topic(name: str, message: type, *, policy: Optional[Policy] = None) -> Topic:
    """Declare a topic: a named channel of ``message`` that publishers write and subscribers read.

    Args:
        name: the topic's name (an identifier; unique within a graph).
        message: the ``@rg.message`` class it carries.
        policy: what a full subscriber queue does: ``rg.Block()`` (the default: the publishers
            wait, nothing is dropped), ``rg.DropOldest(n)`` or ``rg.DropNewest(n)``.

    Returns:
        The ``Topic``; link it into a graph with ``>>`` (``parse >> t``, ``t >> [a, b]``).

    Raises:
        BuildError: ``name`` is not an identifier, or ``message`` is not a message class.
        TypeError: ``policy`` is not one of the three policies.
    """
    file, line = _declared_at()
    problem = check_identifier_shape(name) if isinstance(name, str) else "not a string"
    if problem:
        raise BuildError(f"topic name {name!r}: {problem}", file=file, line=line)
    if not isinstance(message, type) or not hasattr(message, "__attrs_attrs__"):
        raise BuildError(
            f"topic {name}: {message!r} is not a @rg.message class", file=file, line=line
        )
    policy = Block() if policy is None else policy
    if not isinstance(policy, (Block, DropOldest, DropNewest)):
        raise TypeError(
            f"topic {name}: policy must be rg.Block(), rg.DropOldest(n) or rg.DropNewest(n), "
            f"got {policy!r}"
        )
    return Topic(name=name, message=message, policy=policy, file=file, line=line)


def collect_topics(
    links: Iterable[TopicLinks], file: Optional[str], line: Optional[int]
) -> tuple[list[RingKernel], list[TopicSpec]]:
    """The kernels the topic links name (first appearance order) and one ``TopicSpec`` per topic.

    Links of one topic are merged; two different topics of one name are a ``BuildError``.
    """
    kernels: list[RingKernel] = []
    merged: dict[str, dict[str, Any]] = {}
    for link in links:
        t = link.topic
        entry = merged.get(t.name)
        if entry is None:
            entry = merged[t.name] = dict(topic=t, pubs=[], subs=[], host_pub=False, host_sub=False)
        elif entry["topic"] is not t:
            other = entry["topic"]
            raise BuildError(
                f"two different topics named {t.name!r} in one graph: declared at "
                f"{other.file}:{other.line} and at {t.file}:{t.line}",
                file=file,
                line=line,
                hint="declare a topic once and link it as often as needed",
            )
        for k in link.publishers:
            if k.spec.name not in entry["pubs"]:
                entry["pubs"].append(k.spec.name)
        for k in link.subscribers:
            if k.spec.name not in entry["subs"]:
                entry["subs"].append(k.spec.name)
        entry["host_pub"] |= link.host_publishes
        entry["host_sub"] |= link.host_subscribes
        kernels += list(link.publishers) + list(link.subscribers)
    specs = [
        TopicSpec(
            name=name,
            message=e["topic"].message,
            policy=e["topic"].policy,
            publishers=tuple(e["pubs"]),
            subscribers=tuple(e["subs"]),
            host_publishes=e["host_pub"],
            host_subscribes=e["host_sub"],
            file=e["topic"].file,
            line=e["topic"].line,
        )
        for name, e in merged.items()
    ]
    by_name = {k.spec.name: k.spec for k in kernels}
    for s in specs:
        for sub in s.subscribers:
            if by_name[sub].order == "causal" and not isinstance(s.policy, Block):
                raise BuildError(
                    f"kernel {sub} ({_where(by_name[sub])}) merges its input in causal order, so "
                    f"topic {s.name} must not drop (its policy is {s.policy!r})",
                    file=file,
                    line=line,
                    hint="use rg.Block() for a topic with a causal subscriber",
                )
        if not s.publishers and not s.host_publishes:
            raise BuildError(
                f"topic {s.name} has no publisher in this graph",
                file=file,
                line=line,
                hint=f"link a kernel (kernel >> {s.name}) or the host (rg.HOST >> {s.name})",
            )
        if not s.subscribers and not s.host_subscribes:
            raise BuildError(
                f"topic {s.name} has no subscriber in this graph",
                file=file,
                line=line,
                hint=f"link a kernel ({s.name} >> kernel) or the host ({s.name} >> rg.HOST)",
            )
    return kernels, specs
