"""Graphs on Metal: a host driver dispatching the stages' event-driven skeletons in turn.

Metal has no resident kernels (``codegen/metal.py``), so a graph of ring kernels runs as successive
dispatches: the host dispatches the entry over its queued messages, moves its output slots into the
input queues of the stages it feeds, dispatches those, and so on, producers first, until nothing is
queued (``templates/metal/graph_driver.cpp.j2``). ``emit_graph_driver`` renders that driver for the
shim (``ringgen.metal_shim.graph_executor`` compiles and runs it on CPU threads); the same sequence of
command buffers is what a Metal host issues. ``skipped_graphs`` names the graphs it leaves out, and
why: a stage Metal skips (f64, ``codegen/metal.skipped_kernels``) or one with a bridged edge (the
driver moves fixed-size view slots between stages).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

from .._version import __version__
from ..graphs import Graph
from ..layout import layout_of
from .env import render
from .metal import kernel_context, skipped_kernels

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
    out = {}
    for g in unit.graphs if graphs is None else graphs:
        for stage in g.stages:
            spec = g.spec(stage)
            if stage in skipped_stages:
                out[g.name] = f"stage {stage} is not emitted for Metal: {skipped_stages[stage]}"
                break
            bridged = [c for c in (spec.input, spec.output) if c and layout_of(c).is_bridged]
            if bridged:
                out[g.name] = (
                    f"stage {stage} takes or emits the bridged message {bridged[0].__name__}: the "
                    "Metal graph driver moves fixed-size view slots between stages"
                )
                break
    return out


def graph_context(g: Graph) -> dict:
    """What ``graph_driver.cpp.j2`` needs of graph ``g``: its name and label, and per stage (producers
    first) the kernel's Metal context, the indices of the stages it feeds and its exit index (-1
    when it is not an exit)."""
    index = {s: i for i, s in enumerate(g.stages)}
    stages = []
    for stage in g.stages:
        stages.append(
            {
                "k": kernel_context(g.spec(stage)),
                "consumers": [index[c] for c in g.consumers(stage)],
                "exit": g.exits.index(stage) if stage in g.exits else -1,
            }
        )
    return {"name": g.name, "label": g.label, "stages": stages}


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
