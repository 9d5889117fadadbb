"""Graphs of ring kernels: ``rg.pipeline(a, b, c)``, ``a >> b`` and ``rg.graph(...)``.

A graph is a set of stages (ring kernels) and edges: an edge carries every output message of its
producer into its consumer's input queue, in order. One producer may feed several consumers (fan-out:
each gets every message) and several producers may feed one consumer (fan-in: FIFO per producer).
The graph has one *entry* (the only stage no edge feeds: the host sends into it) and one or more
*exits* (the stages that feed no other: the host receives from them).

Everything is checked when the graph is declared, each a ``BuildError`` naming what is at fault: an
edge whose producer's output type (its return type, the type in its ``Optional``, or its Outbox's
type) is not the consumer's input type; a producer with no output; a cycle; no single entry; two
different kernels of one name. docs/graphs.md describes the API and where graphs run;
``ringgen.graph_fusion`` makes one kernel of a graph for the device strategies.
"""

from __future__ import annotations

import sys
from typing import Any, Iterable, Optional, Union

import attrs

from .errors import BuildError
from .kernel import KernelSpec, RingKernel
from .naming import check_identifier_shape
from .schema import message
from .topics import TopicLinks, TopicSpec, collect_topics

__all__ = [
    "Edge",
    "Graph",
    "graph",
    "named",
    "pipeline",
    "then",
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
