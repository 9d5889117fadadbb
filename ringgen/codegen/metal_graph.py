"""Graphs on Metal: a host driver dispatching the stages' event-driven skeletons in turn.

Metal has no resident kernels (``codegen/metal.py``), so a graph of ring kernels runs as successive
dispatches: the host dispatches the entry over its queued messages, moves its output slots into the
input queues of the stages it feeds, dispatches those, and so on, producers first, until nothing is
queued (``templates/metal/graph_driver.cpp.j2``). ``emit_graph_driver`` renders that driver for the
shim (``ringgen.metal_shim.graph_executor`` compiles and runs it on CPU threads); the same sequence of
command buffers is what a Metal host issues. ``skipped_graphs`` names the graphs it leaves out, and
why: a stage Metal skips (f64, ``codegen/metal.skipped_kernels``), one with a bridged edge (the
driver moves fixed-size view slots between stages), one waiting on a barrier, or a stage reaching
one consumer by two routes.

A ``Block`` topic between kernels is its fan-out edges (``Graph.consumers`` lists them), which the
driver forwards as it forwards any fan-out: every subscriber gets every message, FIFO per
publisher, a full subscriber back-pressuring the publisher. Under ``DropOldest(n)`` or
``DropNewest(n)`` a kernel subscriber has its own queue of ``n`` in front of its input queue and
never holds the publisher back; what it drops is counted. The host subscribes through a buffer of
the driver's (every copy under ``Block``: the host waits in the driver's call, so its subscription
takes everything, the other strategies' spill rule; ``n`` under a drop policy) and publishes from a
buffer per topic, handed on as a publisher's replies are; ``topic_context`` lays out the topics'
counts (``published``; ``delivered``, ``dropped``, ``depth`` per subscriber).

A graph with an ``order="causal"`` stage or an ``rg.HLC`` stamp runs *ordered*: the driver feeds
one host message at a time (the entry's, then those it publishes), stamped by its host clock,
dispatches each stage one message per command buffer, and keeps each stage's
clock on the host (receive ``t = max(t, m) + 1``, send ``t = t + 1``), as the fused kernel of the
``shared_memory`` strategy does on the device.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

from .._version import __version__
from ..causal import hlc_field
from ..graphs import Graph
from ..graph_fusion import is_stamped, stamp_fields
from ..layout import layout_of
from .env import render
from .metal import kernel_context, skipped_kernels, waiting_kernels

if TYPE_CHECKING:
    from ..build import BuildUnit

__all__ = ["emit_graph_driver", "graph_context", "skipped_graphs", "topic_context"]


def skipped_graphs(unit: "BuildUnit", graphs: Optional[tuple[Graph, ...]] = None) -> dict:
    """Graph name -> why the Metal graph driver leaves it out (only graphs it cannot run).

    Args:
        unit: the build the graphs' stages belong to.
        graphs: the graphs (default: ``unit.graphs``); each must be named.
    """
    skipped_stages = skipped_kernels(unit)
    waiting = waiting_kernels(unit)
    out = {}
    for g in unit.graphs if graphs is None else graphs:
        for stage in g.stages:
            spec = g.spec(stage)
            if stage in skipped_stages:
                out[g.name] = f"stage {stage} is not emitted for Metal: {skipped_stages[stage]}"
                break
            if stage in waiting:
                out[g.name] = (
                    f"stage {stage} waits on a barrier: the Metal graph driver runs one process "
                    "dispatch per stage, not a step's phases (docs/barriers.md)"
                )
                break
            bridged = [c for c in (spec.input, spec.output) if c and layout_of(c).is_bridged]
            if bridged:
                out[g.name] = (
                    f"stage {stage} takes or emits the bridged message {bridged[0].__name__}: the "
                    "Metal graph driver moves fixed-size view slots between stages"
                )
                break
        else:
            why = _refused_topic(g)
            if why is not None:
                out[g.name] = why
    return out


def _refused_topic(g: Graph) -> Optional[str]:
    """Why the driver cannot keep a topic of ``g`` (None: it keeps them all): a stage that would
    reach one consumer twice (an edge and a topic, or two topics: the driver keeps one queue per
    consumer, so the counts of one route would be the other's). A topic's message is a stage's
    input or output, so a bridged one is already left out with its stage."""
    for stage in g.stages:
        routes = [e.consumer for e in g.edges if e.producer == stage]
        routes += [c for t in g.topics if stage in t.publishers for c in t.subscribers]
        twice = sorted({c for c in routes if routes.count(c) > 1})
        if twice:
            return (
                f"stage {stage} reaches {twice[0]} by two routes (an edge and a topic, or two "
                "topics): the Metal graph driver keeps one queue and one count per route"
            )
    return None


_POLICY = {"block": 0, "drop_oldest": 1, "drop_newest": 2}


def topic_context(g: Graph) -> dict:
    """How the driver lays out ``g``'s topics: per topic its name, policy, the index of its words
    in the driver's ``topic_counts`` (``published``, then ``delivered``, ``dropped``, ``depth`` per
    subscriber: the kernel subscribers in declared order, then ``"host"`` when the host
    subscribes), the host's publish buffer index and subscription index (-1: none), and the
    targets a publisher of it hands each message to; the kernel subscribers' own queues under a
    drop policy (``drop_queues``); the host's subscriptions and publish buffers; ``n_counts``.

    A target is ``{"kind", "stage", "queue", "sub", "counts"}``: kind ``block`` (the subscriber's
    input queue), ``drop`` (its own queue ``queue`` of the policy's capacity, in front of its input
    queue) or ``host`` (the host's subscription ``sub``); ``counts`` is the index of its
    ``delivered`` word."""
    index = {s: i for i, s in enumerate(g.stages)}
    topics, drop_queues, host_subs, host_pubs = [], [], [], []
    at = 0
    for t in g.topics:
        published = at
        at += 1
        policy = _POLICY[t.policy.name]
        stamp = _stamp_offset(t.message, hlc_field(t.message))
        size = layout_of(t.message).size
        subscribers, targets = [], []
        for c in t.subscribers:
            target = {"kind": "block", "stage": index[c], "queue": -1, "sub": -1, "counts": at}
            if policy:
                target.update(kind="drop", queue=len(drop_queues))
                drop_queues.append(
                    {"stage": index[c], "cap": t.capacity, "policy": policy, "counts": at}
                )
            subscribers.append({"name": c, "counts": at})
            targets.append(target)
            at += 3
        sub = -1
        if t.host_subscribes:
            sub = len(host_subs)
            host_subs.append(
                {"topic": t.name, "policy": policy, "counts": at, "stamp": stamp, "size": size}
            )
            subscribers.append({"name": "host", "counts": at})
            targets.append({"kind": "host", "stage": -1, "queue": -1, "sub": sub, "counts": at})
            at += 3
        pub = -1
        if t.host_publishes:
            pub = len(host_pubs)
            host_pubs.append(
                {
                    "topic": t.name,
                    "published": published,
                    "targets": targets,
                    "stamp": stamp,
                    "size": size,
                }
            )
        topics.append(
            {
                "name": t.name,
                "message": t.message.__name__,
                "policy": t.policy.name,
                "capacity": t.capacity,
                "published": published,
                "subscribers": subscribers,
                "targets": targets,
                "host_sub": sub,
                "host_pub": pub,
                "size": size,
            }
        )
    return {
        "topics": topics,
        "drop_queues": drop_queues,
        "host_subs": host_subs,
        "host_pubs": host_pubs,
        "n_counts": at,
    }


def _stamp_offset(cls: Optional[type], field: Optional[str]) -> int:
    """The byte offset of ``cls``'s ``rg.HLC`` field ``field`` in its queue slot (-1: none)."""
    if cls is None or field is None:
        return -1
    return int(layout_of(cls).dtype.fields[field][1])


def graph_context(g: Graph) -> dict:
    """What ``graph_driver.cpp.j2`` needs of graph ``g``: its name and label, its entry's index
    (not always the first stage: a topic's subscribers fed only by the host come first), whether it runs
    ordered (a causal stage or an ``rg.HLC`` stamp: one host message at a time, one message per
    dispatch, clocks kept by the driver), its topics (``topic_context``), and per stage (producers
    first) the kernel's Metal context, the indices of the stages it feeds (topic subscribers
    included), the targets it hands its replies to (its edges' consumers as kind ``edge``, then
    each topic's targets), the ``published`` word of each topic it publishes to, the drop queues in
    front of it (``drains``), its exit index (-1 when it is not an exit) and the byte offsets of
    the stamps in its input and output slots (-1: unstamped)."""
    index = {s: i for i, s in enumerate(g.stages)}
    fields = stamp_fields(g)
    topics = topic_context(g)
    stages = []
    for stage in g.stages:
        spec = g.spec(stage)
        in_field, out_field = fields[stage]
        targets = [
            {"kind": "edge", "stage": index[e.consumer], "queue": -1, "sub": -1, "counts": -1}
            for e in g.edges
            if e.producer == stage
        ]
        published = []
        for t, tc in zip(g.topics, topics["topics"]):
            if stage in t.publishers:
                targets += tc["targets"]
                published.append(tc["published"])
        stages.append(
            {
                "k": kernel_context(spec),
                "consumers": [index[c] for c in g.consumers(stage)],
                "targets": targets,
                "published": published,
                "drains": [
                    (q, dq["counts"])
                    for q, dq in enumerate(topics["drop_queues"])
                    if dq["stage"] == index[stage]
                ],
                "exit": g.exits.index(stage) if stage in g.exits else -1,
                "in_stamp": _stamp_offset(spec.input, in_field),
                "out_stamp": _stamp_offset(spec.outbox or spec.output, out_field),
            }
        )
    ordered = is_stamped(g) or any(g.spec(s).order == "causal" for s in g.stages)
    return {
        "name": g.name,
        "label": g.label,
        "entry": index[g.entry],
        "ordered": ordered,
        "stages": stages,
        **topics,
    }


def emit_graph_driver(unit: "BuildUnit", metal_path: str, metal_file: str) -> str:
    """The C++ driver (``rg_metal_graph_<name>`` per graph of ``unit`` that Metal can run) for the
    shim build of ``metal_path``, the emitted ``<name>.metal`` (``metal_file`` its file name)."""
    skipped = skipped_graphs(unit)
    graphs = [graph_context(g) for g in unit.graphs if g.name not in skipped]
    return render(
        "metal/graph_driver.cpp.j2",
        version=__version__,
        metal_file=metal_file,
        metal_path=metal_path,
        graphs=graphs,
    )
