"""Graphs on Metal: a host driver dispatching the stages' event-driven skeletons in turn.

Metal has no resident kernels (``codegen/metal.py``), so a graph of ring kernels runs as successive
dispatches: the host dispatches the entry over its queued messages, moves its output slots into the
input queues of the stages it feeds, dispatches those, and so on, producers first, until nothing is
queued (``templates/metal/graph_driver.cpp.j2``). ``emit_graph_driver`` renders that driver for the
shim (``ringgen.metal_shim.graph_executor`` compiles and runs it on CPU threads); the same sequence of
command buffers is what a Metal host issues. ``skipped_graphs`` names the graphs it leaves out, and
why: a stage Metal skips (f64, ``codegen/metal.skipped_kernels``), one with a bridged edge (the
driver moves fixed-size view slots between stages), or a topic the driver does not keep.

A ``Block`` topic between kernels is its fan-out edges (``Graph.consumers`` lists them), which the
driver forwards as it forwards any fan-out: every subscriber gets every message, FIFO per
publisher, a full subscriber back-pressuring the publisher. A graph with an ``order="causal"``
stage or an ``rg.HLC`` stamp runs *ordered*: the driver feeds one entry message at a time, stamped
by its host clock, dispatches each stage one message per command buffer, and keeps each stage's
clock on the host (receive ``t = max(t, m) + 1``, send ``t = t + 1``), as the fused kernel of the
``shared_memory`` strategy does on the device.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

from .._version import __version__
from ..graphs import Graph
from ..graph_fusion import is_stamped, stamp_fields
from ..layout import layout_of
from .env import render
from .metal import kernel_context, skipped_kernels, waiting_kernels

if TYPE_CHECKING:
    from ..build import BuildUnit

__all__ = ["emit_graph_driver", "graph_context", "skipped_graphs"]


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
    """Why the driver cannot keep a topic of ``g`` (None: it keeps them all): a drop policy (the
    driver forwards a publisher's replies to every subscriber at once, so no subscriber has a queue
    of its own to drop from) or the host publishing or subscribing (the driver's only host buffers
    are the entry's input and the exits')."""
    for t in g.topics:
        if t.policy.capacity is not None:
            return (
                f"topic {t.name} has policy {t.policy.name}({t.policy.capacity}): the Metal graph "
                "driver forwards a publisher's replies to every subscriber at once and has no "
                "queue per subscriber to drop from (Block() is kept)"
            )
        if t.host_publishes or t.host_subscribes:
            side = "publishes to" if t.host_publishes else "subscribes to"
            return (
                f"the host {side} topic {t.name}: the Metal graph driver's only host buffers are "
                "the entry's input and the exits'"
            )
    return None


def _stamp_offset(cls: Optional[type], field: Optional[str]) -> int:
    """The byte offset of ``cls``'s ``rg.HLC`` field ``field`` in its queue slot (-1: none)."""
    if cls is None or field is None:
        return -1
    return int(layout_of(cls).dtype.fields[field][1])


def graph_context(g: Graph) -> dict:
    """What ``graph_driver.cpp.j2`` needs of graph ``g``: its name and label, whether it runs
    ordered (a causal stage or an ``rg.HLC`` stamp: one entry message at a time, one message per
    dispatch, clocks kept by the driver), and per stage (producers first) the kernel's Metal
    context, the indices of the stages it feeds (topic subscribers included), its exit index (-1
    when it is not an exit) and the byte offsets of the stamps in its input and output slots (-1:
    unstamped)."""
    index = {s: i for i, s in enumerate(g.stages)}
    fields = stamp_fields(g)
    stages = []
    for stage in g.stages:
        spec = g.spec(stage)
        in_field, out_field = fields[stage]
        stages.append(
            {
                "k": kernel_context(spec),
                "consumers": [index[c] for c in g.consumers(stage)],
                "exit": g.exits.index(stage) if stage in g.exits else -1,
                "in_stamp": _stamp_offset(spec.input, in_field),
                "out_stamp": _stamp_offset(spec.outbox or spec.output, out_field),
            }
        )
    ordered = is_stamped(g) or any(g.spec(s).order == "causal" for s in g.stages)
    return {"name": g.name, "label": g.label, "ordered": ordered, "stages": stages}


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
