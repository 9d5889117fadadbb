"""Graphs of ring kernels: ``rg.pipeline(a, b, c)``, ``a >> b`` and ``rg.graph(...)``.

A graph is a set of stages (ring kernels) and edges: an edge carries every output message of its
producer into its consumer's input queue, in order. One producer may feed several consumers (fan-out:
each gets every message) and several producers may feed one consumer (fan-in: FIFO per producer).
The graph has one *entry* (the only stage no edge feeds: the host sends into it) and one or more
*exits* (the stages that feed no other: the host receives from them).

Everything is checked when the graph is declared, each a ``BuildError`` naming what is at fault: an
edge whose producer's output type (its return type, the type in its ``Optional``, or its Outbox's
type) is not the consumer's input type; a producer with no output; a cycle; no single entry; two
different kernels of one name. docs/graphs.md describes the API and where graphs run.
"""

from __future__ import annotations

import sys
import threading
import weakref
from typing import Any, Iterable, Optional, Union

import attrs

from .causal import hlc_field
from .errors import BuildError
from .kernel import KernelSpec, RingKernel
from .layout import layout_of
from .protocol import N_REASONS
from .schema import message, spec_of
from .schema import state as state_class
from .types import ArrayType, MessageType, u8, u32, u64
from .naming import check_identifier_shape
from .topics import TopicLinks, TopicSpec, collect_topics

__all__ = [
    "COUNTER_NAMES",
    "EDGE_COUNTERS",
    "EXIT_PAYLOAD",
    "EXIT_TAG",
    "INPUT_TAG",
    "Edge",
    "FusedParts",
    "Graph",
    "GraphCounters",
    "check_device_keeps",
    "counter_layout",
    "fused_name",
    "fused_parts",
    "fused_spec",
    "graph",
    "host_copy_bounds",
    "is_stamped",
    "made_by_fusing",
    "named",
    "pipeline",
    "stage_bounds",
    "stamp_fields",
    "then",
    "topic_outlet",
]


@attrs.frozen
class Edge:
    """One edge of a graph: every output message of ``producer`` goes into ``consumer``'s input."""

    producer: str
    consumer: str
    message: type


@attrs.frozen(eq=False)
class Graph:
    """A declared graph of ring kernels (``rg.graph``, ``rg.pipeline`` or ``a >> b``).

    ``kernels`` are the stages in a topological order (every producer before its consumers, ties in
    the order they were given); ``edges`` in the order of their producers, then consumers;
    ``entry`` is the stage the host sends into and ``exits`` those it receives from. ``name`` is the
    name given to ``rg.graph`` (None: ``ringgen build`` names it after its module variable);
    ``module``, ``file`` and ``line`` say where it was declared.
    """

    kernels: tuple[RingKernel, ...]
    edges: tuple[Edge, ...]
    entry: str
    exits: tuple[str, ...]
    name: Optional[str]
    module: str
    file: Optional[str]
    line: Optional[int]
    topics: tuple[TopicSpec, ...] = ()

    @property
    def stages(self) -> tuple[str, ...]:
        """The stage names, producers before consumers."""
        return tuple(k.spec.name for k in self.kernels)

    @property
    def all_edges(self) -> tuple[Edge, ...]:
        """The edges, then each topic's ``(publisher, subscriber)`` pairs that are not an edge
        already, as edges of the topic's class: what a device strategy carries (a topic is its
        fan-out edges there; docs/graphs.md, "Topics under each strategy")."""
        direct = {(e.producer, e.consumer) for e in self.edges}
        via = {
            (p, c): Edge(p, c, t.message)
            for t in self.topics
            for p in t.publishers
            for c in t.subscribers
            if (p, c) not in direct
        }
        return self.edges + tuple(via.values())

    @property
    def label(self) -> str:
        """The name, or for an unnamed graph its stages (``a >> b >> c`` when linear)."""
        if self.name:
            return self.name
        if len(self.edges) == len(self.kernels) - 1 and len(self.exits) == 1:
            if all(len(self.consumers(s)) <= 1 for s in self.stages):
                return " >> ".join(self.stages)
        return f"graph({', '.join(self.stages)})"

    def spec(self, stage: str) -> KernelSpec:
        """The ``KernelSpec`` of the stage named ``stage``.

        Raises:
            KeyError: the graph has no such stage.
        """
        for k in self.kernels:
            if k.spec.name == stage:
                return k.spec
        raise KeyError(f"graph {self.label} has no stage {stage!r} (stages: {self.stages})")

    def producers(self, stage: str) -> tuple[str, ...]:
        """The stages with an edge into ``stage``, then those publishing to a topic it subscribes to."""
        direct = tuple(e.producer for e in self.edges if e.consumer == stage)
        via = [p for t in self.topics if stage in t.subscribers for p in t.publishers]
        return direct + tuple(p for p in dict.fromkeys(via) if p not in direct)

    def consumers(self, stage: str) -> tuple[str, ...]:
        """The stages ``stage`` has an edge into, then those subscribed to a topic it publishes to."""
        direct = tuple(e.consumer for e in self.edges if e.producer == stage)
        via = [c for t in self.topics if stage in t.publishers for c in t.subscribers]
        return direct + tuple(c for c in dict.fromkeys(via) if c not in direct)

    def __rshift__(self, other: Any) -> "Graph":
        return then(self, other)

    def __rrshift__(self, other: Any) -> "Graph":
        return then(other, self)

    def __repr__(self) -> str:
        edges = ", ".join(f"{e.producer} >> {e.consumer}" for e in self.edges)
        return f"<graph {self.label}: entry {self.entry}, exits {', '.join(self.exits)}; {edges}>"


Part = Union[RingKernel, Graph]


def _declared_at() -> tuple[str, Optional[str], Optional[int]]:
    """The module, file and line of the first caller outside ringgen (where the graph is written)."""
    frame = sys._getframe(1)
    while frame is not None:
        mod = frame.f_globals.get("__name__", "")
        if mod != "ringgen" and not mod.startswith("ringgen."):
            return mod, frame.f_code.co_filename, frame.f_lineno
        frame = frame.f_back
    return "__main__", None, None


def _where(spec: KernelSpec) -> str:
    if spec.pos.file:
        return f"{spec.pos.file}:{spec.pos.line}"
    return f"module {spec.module}"


def _type_name(cls: Optional[type]) -> str:
    return "None" if cls is None else f"{cls.__module__}.{cls.__qualname__}"


def _parts(parts: Iterable[Any], call: str) -> tuple[list[RingKernel], list[tuple[str, str]]]:
    """The kernels (first appearance order) and edges (as name pairs) of ``parts``."""
    kernels: list[RingKernel] = []
    edges: list[tuple[str, str]] = []
    for part in parts:
        if isinstance(part, Graph) and part.topics:
            raise BuildError(
                f"{call}: graph {part.label} has topics ({', '.join(t.name for t in part.topics)}) "
                "and cannot be a part of another graph",
                file=part.file,
                line=part.line,
                hint="write every link of the graph in one rg.graph(...)",
            )
        if isinstance(part, Graph):
            kernels += part.kernels
            edges += [(e.producer, e.consumer) for e in part.edges]
        elif isinstance(part, RingKernel):
            kernels.append(part)
        else:
            raise TypeError(
                f"{call}: {part!r} is not a @rg.ring_kernel or a graph; compose kernels with "
                "rg.pipeline(a, b), a >> b or rg.graph(a >> b, a >> c)"
            )
    return kernels, edges


def _unique_kernels(kernels: list[RingKernel], file: Optional[str], line: Optional[int]):
    out: dict[str, RingKernel] = {}
    for k in kernels:
        other = out.get(k.spec.name)
        if other is None:
            out[k.spec.name] = k
        elif other.spec is not k.spec:
            raise BuildError(
                f"two different kernels named {k.spec.name!r} in one graph: declared at "
                f"{_where(other.spec)} and at {_where(k.spec)}",
                file=file,
                line=line,
                hint="pass name=... to @rg.ring_kernel to tell them apart",
            )
    return out


def _check_edge(prod: KernelSpec, cons: KernelSpec, file: Optional[str], line: Optional[int]):
    if prod.output is None:
        raise BuildError(
            f"kernel {prod.name} ({_where(prod)}) has no output (its handler returns None and "
            f"takes no Outbox), so it cannot feed kernel {cons.name} ({_where(cons)})",
            file=file,
            line=line,
            hint=f"return {cons.input.__name__} messages from {prod.name} (or emit them "
            "through an rg.Outbox), or make it the last stage",
        )
    if prod.output is not cons.input:
        raise BuildError(
            f"kernel {prod.name} ({_where(prod)}) outputs {_type_name(prod.output)}, but kernel "
            f"{cons.name} ({_where(cons)}) takes {_type_name(cons.input)}",
            file=file,
            line=line,
            hint="an edge's producer output type must be its consumer's input type",
        )


def _topological(
    names: list[str], pairs: list[tuple[str, str]], file: Optional[str], line: Optional[int]
) -> list[str]:
    """``names`` with every producer before its consumers (ties in given order).

    Raises:
        BuildError: the edges have a cycle (the message names it).
    """
    succ: dict[str, list[str]] = {n: [] for n in names}
    for p, c in pairs:
        succ[p].append(c)
    colour = dict.fromkeys(names, 0)  # 0 new, 1 on the current path, 2 done
    path: list[str] = []

    def visit(n: str) -> Optional[list[str]]:
        # recursion depth is the longest path: a few dozen stages at most
        colour[n] = 1
        path.append(n)
        for m in succ[n]:
            if colour[m] == 1:
                return path[path.index(m) :] + [m]
            if colour[m] == 0:
                cycle = visit(m)
                if cycle:
                    return cycle
        path.pop()
        colour[n] = 2
        return None

    for n in names:
        if colour[n] == 0:
            cycle = visit(n)
            if cycle:
                raise BuildError(
                    "a graph cannot have cycles: " + " >> ".join(cycle),
                    file=file,
                    line=line,
                    hint="a graph is acyclic and each kernel is one stage: to run a handler "
                    "twice, declare a second kernel with name=...",
                )
    # acyclic: place each stage once its producers are placed, in the given order where possible
    rank = {n: i for i, n in enumerate(names)}
    preds = {n: [p for p, c in pairs if c == n] for n in names}
    placed: list[str] = []
    left = sorted(names, key=rank.__getitem__)
    while left:
        ready = next(n for n in left if all(p in placed for p in preds[n]))
        placed.append(ready)
        left.remove(ready)
    return placed


def _make(
    kernels: list[RingKernel],
    pairs: list[tuple[str, str]],
    *,
    name: Optional[str],
    where: tuple[str, Optional[str], Optional[int]],
    topics: tuple[TopicSpec, ...] = (),
) -> Graph:
    module, file, line = where
    if name is not None:
        problem = check_identifier_shape(name) if isinstance(name, str) else "not a string"
        if problem:
            raise BuildError(f"graph name {name!r}: {problem}", file=file, line=line)
    by_name = _unique_kernels(kernels, file, line)
    if not by_name:
        raise BuildError("a graph needs at least one stage", file=file, line=line)
    unique_pairs = list(dict.fromkeys(pairs))
    for p, c in unique_pairs:
        _check_edge(by_name[p].spec, by_name[c].spec, file, line)
    via_topics = [(p, c) for t in topics for p in t.publishers for c in t.subscribers]
    order = _topological(list(by_name), unique_pairs + via_topics, file, line)
    fed = {c for _, c in unique_pairs} | {c for t in topics for c in t.subscribers}
    sources = [n for n in order if n not in fed]
    if not sources:
        raise BuildError(
            "a graph has one entry (the stage the host sends into), but every stage is fed by an "
            "edge or a topic",
            file=file,
            line=line,
            hint="add a first stage the host sends into (it may publish to the topic)",
        )
    if len(sources) != 1:
        raise BuildError(
            f"a graph has one entry (the stage the host sends into), but {', '.join(sources)} "
            "are fed by no other stage",
            file=file,
            line=line,
            hint="connect them, or launch them as separate graphs",
        )
    rank = {n: i for i, n in enumerate(order)}
    unique_pairs.sort(key=lambda pc: (rank[pc[0]], rank[pc[1]]))
    edges = tuple(Edge(p, c, by_name[p].spec.output) for p, c in unique_pairs)
    feeding = {p for p, _ in unique_pairs} | {p for t in topics for p in t.publishers}
    exits = tuple(n for n in order if n not in feeding)
    return Graph(
        kernels=tuple(by_name[n] for n in order),
        edges=edges,
        entry=sources[0],
        exits=exits,
        name=name,
        module=module,
        file=file,
        line=line,
        topics=tuple(topics),
    )


def pipeline(*stages: Part, name: Optional[str] = None) -> Graph:
    """A linear graph: each stage feeds the next (``rg.pipeline(a, b, c)`` is ``a >> b >> c``).

    Args:
        stages: ring kernels (or graphs: their exits feed the next part's entry), first to last.
        name: the graph's name (default: ``ringgen build`` uses the module variable's name).

    Raises:
        BuildError: a producer's output type is not its consumer's input type (naming both kernels,
            both types and where each is declared), a stage has no output but feeds another, or
            two kernels share a name.
        TypeError: a stage is not a ring kernel or a graph.
    """
    where = _declared_at()
    if not stages:
        raise BuildError("rg.pipeline needs at least one stage", file=where[1], line=where[2])
    kernels, pairs = _parts(stages, "rg.pipeline")
    for left, right in zip(stages, stages[1:]):
        pairs += [(p, _entry_of(right)) for p in _exits_of(left)]
    return _make(kernels, pairs, name=name, where=where)


def graph(*parts: Part, name: Optional[str] = None) -> Graph:
    """A graph from its parts: the union of their stages and edges.

    Parts are ring kernels and graphs (``a >> b``, ``rg.pipeline(...)``); a stage that appears in
    several parts is one stage, so fan-out and fan-in are written as the edges they have::

        g = rg.graph(parse >> score, parse >> audit, score >> merge, audit >> merge)

    A part may also be a topic's links (``parse >> scores``, ``scores >> [rank, audit]``,
    ``rg.HOST >> scores``, ``scores >> rg.HOST``; ``ringgen.topics``): a publisher feeds every
    subscriber of its topic.

    Args:
        parts: the kernels and edges of the graph.
        name: the graph's name (default: ``ringgen build`` uses the module variable's name).

    Returns:
        The checked ``Graph``: one entry (the only stage no edge feeds), exits (the stages that
        feed none), stages in a topological order.

    Raises:
        BuildError: an edge's types do not match (naming both kernels, both types and where each
            is declared), a stage without output feeds another, the edges have a cycle (naming
            it), more than one stage is fed by none, or two kernels share a name.
        TypeError: a part is not a ring kernel or a graph.
    """
    where = _declared_at()
    if not parts:
        raise BuildError("rg.graph needs at least one stage", file=where[1], line=where[2])
    links = [p for p in parts if isinstance(p, TopicLinks)]
    kernels, pairs = _parts([p for p in parts if not isinstance(p, TopicLinks)], "rg.graph")
    via, topics = collect_topics(links, where[1], where[2])
    return _make(kernels + via, pairs, name=name, where=where, topics=tuple(topics))


def _entry_of(part: Part) -> str:
    return part.entry if isinstance(part, Graph) else part.spec.name


def _exits_of(part: Part) -> tuple[str, ...]:
    return part.exits if isinstance(part, Graph) else (part.spec.name,)


def then(left: Any, right: Any) -> Any:
    """``left >> right``: every exit of ``left`` feeds the entry of ``right`` (kernels or graphs);
    ``NotImplemented`` for anything else, so Python raises its usual ``TypeError``."""
    if not isinstance(left, (RingKernel, Graph)) or not isinstance(right, (RingKernel, Graph)):
        return NotImplemented
    kernels, pairs = _parts((left, right), ">>")
    pairs += [(p, _entry_of(right)) for p in _exits_of(left)]
    return _make(kernels, pairs, name=None, where=_declared_at())


def named(g: Graph, name: str) -> Graph:
    """``g`` with the name ``name`` (how ``ringgen build`` names a graph after its variable)."""
    return attrs.evolve(g, name=name)


# ---- fusing a graph into one kernel (the device strategies: docs/graphs.md, "Strategies") ----


def fused_name(g: Graph) -> str:
    """The name of the one ring kernel a device strategy makes of ``g``: ``graph_<name>`` (an
    unnamed graph: ``graph_<stage>_<stage>...``), its entry point ``rg_graph_<name>_ring``."""
    return "graph_" + (g.name or "_".join(g.stages))


def stage_bounds(g: Graph) -> dict[str, tuple[int, int]]:
    """Per stage, ``(inputs, outputs)``: the most messages it takes and gives for one message sent
    into the entry (the entry takes 1; a stage takes what its producers give, summed over them; it
    gives its inputs times its Outbox bound, or times 1 with a return value, 0 without output)."""
    bounds: dict[str, tuple[int, int]] = {}
    # a message the host published (rg.HOST >> topic) is one call of its own, handed to each of
    # the topic's subscribers: counted on top of the entry's path (a bound, not the exact most)
    hosted = {
        c: sum(1 for t in g.topics if t.host_publishes and c in t.subscribers) for c in g.stages
    }
    for k in g.kernels:
        s = k.spec
        n_in = 1 if s.name == g.entry else sum(bounds[p][1] for p in g.producers(s.name))
        n_in += hosted[s.name]
        per = s.outbox_limit if s.uses_outbox else (1 if s.output is not None else 0)
        bounds[s.name] = (n_in, n_in * per)
    return bounds


def host_copy_bounds(g: Graph) -> dict[str, int]:
    """Per topic the host subscribes to (``topic >> rg.HOST``), the most copies one call of the
    fused kernel hands the host: its publishers' outputs (``stage_bounds``), plus one when the
    host publishes to it too."""
    bounds = stage_bounds(g)
    return {
        t.name: sum(bounds[p][1] for p in t.publishers) + (1 if t.host_publishes else 0)
        for t in g.topics
        if t.host_subscribes
    }


def stamp_fields(g: Graph) -> dict[str, tuple[Optional[str], Optional[str]]]:
    """Per stage, the ``rg.HLC`` field of its input class and of its output class (or None): where
    a device strategy reads and writes the stamps of ``g``'s messages (``ringgen.causal``)."""
    return {
        k.spec.name: (hlc_field(k.spec.input), hlc_field(k.spec.outbox or k.spec.output))
        for k in g.kernels
    }


def check_device_keeps(g: Graph, strategy: str = "shared_memory") -> None:
    """Raise unless device strategy ``strategy`` keeps what ``g``'s topics and orders promise
    (docs/graphs.md, "Topics under each strategy" and "Causal order").

    A device strategy carries a topic as fan-out edges, one from each publisher to each subscriber
    (``Graph.producers``/``consumers`` already list them): every subscriber gets every message,
    FIFO per publisher, with the back-pressure of ``Block``. ``shared_memory`` also keeps a drop
    policy (a kernel subscriber runs in its publisher's thread on every message, so its queue never
    fills and it never drops; the host's subscription drops on the host), the host subscribing
    (one more tagged outlet of the kernel's output queue) and publishing (a tagged slot of its
    input queue), causal order, and ``rg.HLC`` stamps (its kernel is then ordered:
    ``fused_spec``); ``atomic_queue`` keeps none of these. What a strategy cannot keep is refused.

    Raises:
        BuildError: naming the graph and the topic or stage: under ``shared_memory`` the host
            publishing or subscribing in a graph with ``rg.HLC`` stamps (the tagged slots carry
            no host clock), a stamped message behind an unstamped entry (the device has no
            physical clock: its stamps start from the entry's); under any other strategy a drop
            policy (a subscriber reads its publisher's edge ring: no queue of its own to drop
            from), the host publishing or subscribing (``rg.HOST``: the kernel's only host
            queues are the entry's and the exit's), several exits or several ``@rg.state``
            stages (its exit's blocks reply through one kernel's output protocol and state), a
            stage declared ``order="causal"`` or a message with an ``rg.HLC`` stamp (its stages
            run side by side on their own blocks).
    """
    for t in g.topics:
        where = {"file": t.file or g.file, "line": t.line if t.file else g.line}
        hosted = t.host_publishes or t.host_subscribes
        side = "publishes to" if t.host_publishes else "subscribes to"
        if strategy == "shared_memory":
            if hosted and is_stamped(g):
                stamped = next(
                    (k.spec, cls, f) for k in g.kernels for cls, f in _stamped_classes(k.spec)
                )
                raise BuildError(
                    f"graph {g.label}: the host {side} topic {t.name} (rg.HOST), and stage "
                    f"{stamped[0].name}'s message {stamped[1].__name__} has the rg.HLC stamp "
                    f"{stamped[2]}: the shared_memory strategy carries the host's topic messages "
                    "in tagged slots of the kernel's queues, which carry no host clock",
                    hint="launch it with strategy='host', or drop the rg.HLC field",
                    **where,
                )
            continue
        hint = "launch it with strategy='shared_memory' (CUDA, OpenCL) or strategy='host'"
        if t.policy.capacity is not None:
            raise BuildError(
                f"graph {g.label}: topic {t.name} has policy {t.policy.name}({t.policy.capacity}), "
                f"and the {strategy} strategy gives each subscriber its publisher's edge ring, "
                "with no per-subscriber queue to drop from",
                hint=hint + ", or give the topic the Block() policy",
                **where,
            )
        if hosted:
            raise BuildError(
                f"graph {g.label}: the host {side} topic {t.name} (rg.HOST), and the {strategy} "
                "strategy launches one kernel whose only host queues are its entry's input and "
                "its exit's output",
                hint=hint + ", or make a kernel the topic's publisher and subscriber",
                **where,
            )
    hint = "launch it with strategy='host'"
    where = {"file": g.file, "line": g.line}
    fields = stamp_fields(g)
    stamped = [(k.spec, cls, f) for k in g.kernels for cls, f in _stamped_classes(k.spec)]
    if strategy != "shared_memory":
        hint = "launch it with strategy='shared_memory' (CUDA, OpenCL) or strategy='host'"
        if len(g.exits) != 1:
            raise BuildError(
                f"graph {g.label}: the {strategy} strategy sends replies to the host from the "
                f"exit stage's blocks through one output queue, but the graph has {len(g.exits)} "
                f"exits ({', '.join(g.exits)})",
                hint=hint,
                **where,
            )
        stateful = [k.spec.name for k in g.kernels if k.spec.state is not None]
        if len(stateful) > 1:
            raise BuildError(
                f"graph {g.label}: the {strategy} strategy launches one kernel with one state "
                f"buffer, and stages {', '.join(stateful)} each have an @rg.state (their stages "
                "run on blocks of their own, which do not share a fused state)",
                hint=hint,
                **where,
            )
        causal = [s for s in g.stages if g.spec(s).order == "causal"]
        if causal:
            raise BuildError(
                f"graph {g.label}: stage(s) {', '.join(causal)} declare order='causal', and the "
                f"{strategy} strategy runs its stages side by side on their own blocks, so nothing "
                "orders what a stage takes from one producer against what it takes from another "
                "(it keeps FIFO per producer only)",
                hint=hint,
                **where,
            )
        if stamped:
            spec, cls, field = stamped[0]
            raise BuildError(
                f"graph {g.label}: stage {spec.name}'s message {cls.__name__} has the rg.HLC "
                f"stamp {field}, and the {strategy} strategy runs its stages side by side on their "
                "own blocks, so a stage's clock would be written by many threads at once (no "
                "device clock rule is kept there)",
                hint=hint + ", or drop the rg.HLC field",
                **where,
            )
        return
    if stamped and fields[g.entry][0] is None:
        spec, cls, field = stamped[0]
        raise BuildError(
            f"graph {g.label}: stage {spec.name}'s message {cls.__name__} has the rg.HLC stamp "
            f"{field}, but the entry {g.entry}'s input {g.spec(g.entry).input.__name__} has none: "
            "a device strategy has no physical clock, so its stamps start from the stamp the "
            "host writes into the entry's message",
            hint=hint + f", or give {g.spec(g.entry).input.__name__} an rg.HLC field",
            **where,
        )


def _stamped_classes(spec: KernelSpec) -> list[tuple[type, str]]:
    """The message classes of ``spec`` (input, then output) that have an ``rg.HLC`` field."""
    out = []
    for cls in (spec.input, spec.outbox or spec.output):
        field = hlc_field(cls)
        if field is not None:
            out.append((cls, field))
    return out


def is_stamped(g: Graph) -> bool:
    """True when a message of ``g`` carries an ``rg.HLC`` stamp (a device strategy then stamps
    every hop, one message at a time)."""
    return any(_stamped_classes(k.spec) for k in g.kernels)


#: The fields of the tagged reply a fused graph with several exits sends to the host
#: (``FusedParts.exit_class``): the exit's index in ``Graph.exits``, then the exit's message as
#: 64-bit words (every scalar is at most 8 bytes, so the payload is aligned for any message).
EXIT_TAG, EXIT_PAYLOAD = "exit_index", "payload"
#: The tag of the input a fused graph whose host publishes to a topic takes
#: (``FusedParts.input_class``): 0 for a message sent into the entry, ``i + 1`` for one the host
#: published to ``FusedParts.host_published[i]``; its payload (``EXIT_PAYLOAD``) is the message's
#: bytes as 64-bit words.
INPUT_TAG = "topic_index"


@attrs.frozen(eq=False)
class FusedParts:
    """What fusing ``g`` into one kernel adds besides its stages (``fused_parts``), shared by the
    fused source (``ringgen.codegen.graph_kernel``) and its host side
    (``ringgen.runtime.graph_device``).

    ``exit_class``: with several exits, the one message class the fused kernel outputs: the exit's
    index in ``g.exits`` (``EXIT_TAG``) and its reply's bytes (``EXIT_PAYLOAD``, ``payload_words``
    64-bit words, the largest exit message's size rounded up); None with one exit (the exit's own
    class goes out, untagged). ``state_class``: with several ``@rg.state`` stages, one state class
    holding each stage's fields in turn (``s<i>_<field>``, padded so that stage ``i``'s fields sit
    at ``state_at[stage]`` exactly as in its own struct: its handler gets a pointer there); None
    with at most one (that stage's class is the kernel's state). ``state_fields[stage]`` pairs
    each field of the stage's state with its field in ``state_class``.

    The host as a topic's subscriber or publisher (docs/graphs.md, "Topics under each strategy"):
    ``outlets`` are what the tag of ``exit_class`` names, ``g.exits`` then, for each topic in
    ``host_subscribed`` (``topic >> rg.HOST``), ``"topic:<name>"`` (the host's copies of every
    message published to it: an output slot tagged for the subscription); with a host
    subscription the output is tagged even with one exit. ``input_class``: when the host
    publishes to a topic (``host_published``, ``rg.HOST >> topic``), the kernel's input: the tag
    ``INPUT_TAG`` (0: the entry's message; ``i + 1``: a message for ``host_published[i]``) and
    ``input_words`` 64-bit words of payload (the largest of the entry's and those topics'
    messages); None otherwise (the entry's class is the input).
    """

    exit_class: Optional[type]
    payload_words: int
    state_class: Optional[type]
    state_at: dict[str, int]
    state_fields: dict[str, tuple[tuple[str, str], ...]]
    outlets: tuple[str, ...] = ()
    host_subscribed: tuple[str, ...] = ()
    input_class: Optional[type] = None
    input_words: int = 0
    host_published: tuple[str, ...] = ()


_PARTS: "weakref.WeakKeyDictionary[Graph, FusedParts]" = weakref.WeakKeyDictionary()
_PARTS_LOCK = threading.Lock()  # one set of classes per graph, also when two threads launch it


def _annotation(t: Any) -> Any:
    """A resolved field type written back as the annotation that declares it."""
    if isinstance(t, MessageType):
        return t.cls
    if isinstance(t, ArrayType):
        return ArrayType(_annotation(t.elem), t.length)
    return t


def _declare_class(name: str, fields: dict[str, tuple[Any, Any]], kind: Any) -> type:
    """A ``@rg.message``/``@rg.state`` class named ``name`` of ``fields`` (name -> (annotation,
    default)), in that order (codecs build objects positionally, so every field has a default)."""
    ns: dict[str, Any] = {"__annotations__": {}, "__module__": __name__, "__qualname__": name}
    for fname, (ann, default) in fields.items():
        ns["__annotations__"][fname] = ann
        ns[fname] = attrs.field(default=default)
    return kind(type(name, (), ns))


def _zero_default(g: Graph, stage: str, field: Any) -> Any:
    """``field``'s default, or the zero a state field without one starts from (as device memory
    does), so that every field of the fused state has a default.

    Raises:
        BuildError: a nested message field without a default (its zero is no scalar).
    """
    if field.default is not attrs.NOTHING:
        return field.default
    t = field.type
    if isinstance(t, ArrayType):
        t = t.elem
    if isinstance(t, MessageType):
        raise BuildError(
            f"graph {g.label}: stage {stage}'s state field {field.name} holds a message "
            f"{t.cls.__name__} without a default, and the fused state of several stateful stages "
            "gives every field of each stage's state its default",
            hint=f"give {field.name} a default, or launch the graph with strategy='host'",
            file=g.file,
            line=g.line,
        )
    return False if t.name == "bool_" else 0


def topic_outlet(topic: str) -> str:
    """The outlet of a fused graph's output that carries the host's copies of ``topic``."""
    return f"topic:{topic}"


def _direct_words(g: Graph, cls: type, what: str, queue: str) -> int:
    """The 64-bit words of ``cls`` in a tagged slot of the fused kernel's ``queue``.

    Raises:
        BuildError: ``cls`` is bridged (a tagged slot has a fixed size); ``what`` names its role.
    """
    lay = layout_of(cls)
    if lay.is_bridged:
        raise BuildError(
            f"graph {g.label}: {what} {cls.__name__}, which is bridged (it has Str or List "
            f"fields), and the fused kernel carries it in a fixed-size tagged slot of its {queue}",
            hint="launch it with strategy='host', or give it a direct message",
            file=g.file,
            line=g.line,
        )
    return max(1, -(-lay.size // 8))


def _input_class(g: Graph) -> tuple[Optional[type], int, tuple[str, ...]]:
    hosted = tuple(t.name for t in g.topics if t.host_publishes)
    if not hosted:
        return None, 0, ()
    entry = g.spec(g.entry).input
    words = _direct_words(g, entry, f"the entry {g.entry} takes", "input queue")
    for t in g.topics:
        if t.host_publishes:
            what = f"the host publishes to topic {t.name}, which carries"
            words = max(words, _direct_words(g, t.message, what, "input queue"))
    cls = _declare_class(
        f"{fused_name(g)}_in",
        {INPUT_TAG: (u32, 0), EXIT_PAYLOAD: (ArrayType(u64, words), 0)},
        message,
    )
    return cls, words, hosted


def _exit_class(g: Graph) -> tuple[Optional[type], int]:
    where = {"file": g.file, "line": g.line}
    subscribed = [t for t in g.topics if t.host_subscribes]
    if len(g.exits) == 1 and not subscribed:
        return None, 0
    size = 0
    for t in subscribed:
        what = f"the host subscribes to topic {t.name}, which carries"
        size = max(size, 8 * _direct_words(g, t.message, what, "output queue"))
    for x in g.exits:
        spec = g.spec(x)
        cls = spec.outbox or spec.output
        if cls is None:
            continue
        lay = layout_of(cls)
        if lay.is_bridged:
            raise BuildError(
                f"graph {g.label}: exit {x} replies {cls.__name__}, which is bridged (it has Str "
                "or List fields), and a fused graph with several exits (or a host subscription) "
                "sends every exit's replies through one queue of fixed-size slots tagged with "
                "their exit",
                hint="launch it with strategy='host', or give the exit a direct message",
                **where,
            )
        if hlc_field(cls) is not None:
            raise BuildError(
                f"graph {g.label}: exit {x}'s reply {cls.__name__} carries the rg.HLC stamp "
                f"{hlc_field(cls)}, and the host side of a fused graph stamps the replies of one "
                "exit only",
                hint="launch it with strategy='host', or keep the stamps off the exits' replies",
                **where,
            )
        size = max(size, lay.size)
    words = max(1, -(-size // 8))
    cls = _declare_class(
        f"{fused_name(g)}_exits",
        {EXIT_TAG: (u32, 0), EXIT_PAYLOAD: (ArrayType(u64, words), 0)},
        message,
    )
    return cls, words


def _state_class(g: Graph) -> tuple[Optional[type], dict, dict]:
    stateful = [k.spec for k in g.kernels if k.spec.state is not None]
    if len(stateful) <= 1:
        return None, {s.name: 0 for s in stateful}, {}
    fields: dict[str, tuple[Any, Any]] = {}
    at: dict[str, int] = {}
    pairs: dict[str, tuple[tuple[str, str], ...]] = {}
    offset = 0
    for i, spec in enumerate(stateful):
        lay = layout_of(spec.state)
        pad = -offset % lay.align
        if pad:
            fields[f"s{i}_pad"] = (ArrayType(u8, pad), 0)
        offset += pad
        at[spec.name] = offset
        for f in spec_of(spec.state).fields:
            fields[f"s{i}_{f.name}"] = (_annotation(f.type), _zero_default(g, spec.name, f))
        end = max(fl.offset + fl.size for fl in lay.fields)
        if lay.size > end:  # the struct's tail padding, so the next stage's offset is the C one
            fields[f"s{i}_tail"] = (ArrayType(u8, lay.size - end), 0)
        offset += lay.size
        pairs[spec.name] = tuple((f.name, f"s{i}_{f.name}") for f in spec_of(spec.state).fields)
    cls = _declare_class(f"{fused_name(g)}_state", fields, state_class)
    placed = {f.name: f.offset for f in layout_of(cls).fields}
    for spec in stateful:
        own = {f.name: f.offset for f in layout_of(spec.state).fields}
        moved = [s for s, f in pairs[spec.name] if placed[f] - at[spec.name] != own[s]]
        if moved:
            raise BuildError(
                f"graph {g.label}: stage {spec.name}'s state {spec.state.__name__} does not keep "
                f"its layout inside the fused state (fields {', '.join(moved)})",
                hint="launch it with strategy='host'",
                file=g.file,
                line=g.line,
            )
    return cls, at, pairs


def made_by_fusing(cls: type) -> bool:
    """True when ``cls`` is a class ``fused_parts`` declared (a tagged exit reply or a fused
    state): it is in no generated package, so its codec comes from its layout."""
    return cls.__module__ == __name__


def fused_parts(g: Graph) -> FusedParts:
    """The tagged exit class and the fused state class of ``g`` (``FusedParts``), made once per
    graph object, so that every caller (emitter, loader, host handle) sees the same classes.

    Raises:
        BuildError: with several exits, an exit's reply is bridged or carries an ``rg.HLC`` stamp
            (naming the graph, the exit and why).
    """
    with _PARTS_LOCK:
        parts = _PARTS.get(g)
        if parts is None:
            exit_class, words = _exit_class(g)
            state_cls, at, pairs = _state_class(g)
            in_cls, in_words, published = _input_class(g)
            subscribed = tuple(t.name for t in g.topics if t.host_subscribes)
            parts = FusedParts(
                exit_class,
                words,
                state_cls,
                at,
                pairs,
                outlets=g.exits + tuple(topic_outlet(t) for t in subscribed),
                host_subscribed=subscribed,
                input_class=in_cls,
                input_words=in_words,
                host_published=published,
            )
            _PARTS[g] = parts
        return parts


def fused_spec(g: Graph) -> KernelSpec:
    """``g`` as one ring kernel: the composition of its stages' handlers, what a device strategy
    launches (``shared_memory`` runs a message's whole path in one thread, ``atomic_queue`` each
    stage on its own blocks; docs/graphs.md, "Strategies").

    Its input is the entry's; its output the exit's (with several exits, ``FusedParts.exit_class``:
    each reply tagged with its exit), through an Outbox of the exits' bound per entry message when
    that exceeds 1 (an Outbox or a fan-in on the way, or several exits), else a return value; its
    state the one stateful stage's (with several, ``FusedParts.state_class``: each stage's state
    in turn); ordered (every message goes through the whole graph in order, one at a time) when
    any stage is ordered or declared ``order="causal"``, or a message carries an ``rg.HLC`` stamp
    (each stage's clock is then one word that one thread at a time advances: docs/graphs.md,
    "Causal order"). The handler function and source are the entry's, so errors point at a stage
    the user wrote.

    A topic is its fan-out edges, one from each publisher to each subscriber; what a device
    strategy cannot keep of topics and orders is refused first (``check_device_keeps``).

    Raises:
        BuildError: ``check_device_keeps`` or ``fused_parts`` refuses the graph.
    """
    check_device_keeps(g)
    parts = fused_parts(g)
    entry = g.spec(g.entry)
    bounds = stage_bounds(g)
    if parts.exit_class is not None:
        out_cls: Optional[type] = parts.exit_class
        n_out = sum(bounds[x][1] for x in g.exits) + sum(host_copy_bounds(g).values())
    else:
        exit_spec = g.spec(g.exits[0])
        out_cls = exit_spec.outbox or exit_spec.output
        n_out = bounds[exit_spec.name][1]
    outbox = out_cls if out_cls is not None and n_out > 1 else None
    if parts.state_class is not None:
        state = parts.state_class
    else:
        state = next((k.spec.state for k in g.kernels if k.spec.state is not None), None)
    params = {"input": entry.param_names.get("input", "msg")}
    if state is not None:
        params["state"] = "state"
    if outbox is not None:
        params["outbox"] = "out"
    return KernelSpec(
        name=fused_name(g),
        func=entry.func,
        input=parts.input_class or entry.input,
        output=out_cls,
        may_skip=(out_cls is not None and n_out != 1)
        or any(k.spec.may_skip for k in g.kernels)
        or bool(parts.host_published),
        state=state,
        outbox=outbox,
        param_names=params,
        capacity=entry.capacity,
        ordered=any(k.spec.ordered or k.spec.order == "causal" for k in g.kernels) or is_stamped(g),
        source=entry.source,
        pos=entry.pos,
        outbox_limit=n_out if outbox is not None else 1,
    )


#: A stage's counters in a device strategy's counter array, in order; ``rejected`` is followed by
#: one word per ``Reason`` (``protocol.N_REASONS`` in all, ``rejected[r]`` at ``rejected + r``).
COUNTER_NAMES = ("processed", "emitted", "rejected")
#: An edge's counters, in order: messages its consumer took off it, times its producer waited for
#: room in it. What its producer put on it is the producer's ``emitted`` (every output of a stage
#: goes on each of its edges), so an edge's depth is that minus ``taken``.
EDGE_COUNTERS = ("taken", "stalls")


@attrs.frozen
class GraphCounters:
    """Where a device strategy counts, per stage and per edge, in one array of 64-bit words that the
    host reads while the kernel runs (docs/graphs.md, "Stats"). Shared by the emitters
    (``ringgen.codegen``) and the runtime, which must agree on it.

    Stage ``i`` (``stages[i]``) owns ``STAGE_WORDS`` words from ``i * STAGE_WORDS``: ``processed``
    (handler calls, faulted ones included), ``emitted`` (outputs it handed on), then ``rejected``
    by ``Reason``. Edge ``j`` (``edges[j]``, ``(producer, consumer)``) owns ``EDGE_WORDS`` words
    from ``len(stages) * STAGE_WORDS + j * EDGE_WORDS``: ``EDGE_COUNTERS``. Then one word per stage
    of ``clocks``: that stage's hybrid logical clock (``shared_memory`` with ``rg.HLC`` stamps:
    the stages whose output is stamped), which the fused kernel keeps there because the host
    already allocates, zeroes and keeps this array for the kernel's lifetime on every backend
    (relaunches included). Then one word per topic of ``topics`` (the topics the host publishes
    to, ``shared_memory``): the host's messages to it that the kernel handed to its subscribers.
    """

    stages: tuple[str, ...]
    edges: tuple[tuple[str, str], ...]
    clocks: tuple[str, ...] = ()
    topics: tuple[str, ...] = ()

    STAGE_WORDS = 2 + N_REASONS
    EDGE_WORDS = len(EDGE_COUNTERS)

    def stage_at(self, stage: str) -> int:
        """The first word of ``stage``'s counters."""
        return self.stages.index(stage) * self.STAGE_WORDS

    def edge_at(self, producer: str, consumer: str) -> int:
        """The first word of the edge ``producer -> consumer``'s counters."""
        j = self.edges.index((producer, consumer))
        return len(self.stages) * self.STAGE_WORDS + j * self.EDGE_WORDS

    def clock_at(self, stage: str) -> int:
        """The word of ``stage``'s clock."""
        return (
            len(self.stages) * self.STAGE_WORDS
            + len(self.edges) * self.EDGE_WORDS
            + self.clocks.index(stage)
        )

    def topic_at(self, topic: str) -> int:
        """The word counting the messages the host published to ``topic`` that the kernel
        handed to its subscribers."""
        return (
            len(self.stages) * self.STAGE_WORDS
            + len(self.edges) * self.EDGE_WORDS
            + len(self.clocks)
            + self.topics.index(topic)
        )

    @property
    def total(self) -> int:
        """Words in the array."""
        return (
            len(self.stages) * self.STAGE_WORDS
            + len(self.edges) * self.EDGE_WORDS
            + len(self.clocks)
            + len(self.topics)
        )


def counter_layout(g: Graph) -> GraphCounters:
    """The counter array of ``g`` under a device strategy: its stages producers first, its edges
    in ``g.all_edges`` order (a topic's fan-out edges after the direct ones), then the clocks of
    the stages whose output carries an ``rg.HLC`` stamp."""
    fields = stamp_fields(g)
    return GraphCounters(
        stages=tuple(g.stages),
        edges=tuple((e.producer, e.consumer) for e in g.all_edges),
        clocks=tuple(s for s in g.stages if fields[s][1] is not None),
        topics=tuple(t.name for t in g.topics if t.host_publishes),
    )
