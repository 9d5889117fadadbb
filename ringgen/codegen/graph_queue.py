"""The ``atomic_queue`` strategy on CUDA: a graph as one grid whose blocks are split among its stages,
with edges as rings in device memory (docs/graphs.md, "Strategies").

The grid is the fused kernel's skeleton (``templates/cuda/kernel.cu.j2``, rendered for
``ringgen.graph_fusion.fused_spec``) with another entry point, ``rg_<fused>_aq``
(``templates/graph/atomic_queue.cu.j2``): block 0 is the skeleton's poller and publisher, the other
blocks run the stages, an ordered stage on one block, the others on equal shares. The exit's blocks
publish through the skeleton's ``rg_<fused>_one``, so the host side (queues, termination, faults)
is the single kernel's, unchanged. The edge rings, each stage's chunk ticket and its progress per
chunk live after ``rg_sched`` in the scheduler buffer, whose size the manifest's ``sched_bytes``
gives the loader (``compute_layout``).

Here: the layout of that area, the block split, the source and the abi. Pure.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

import attrs

from .. import protocol
from ..errors import BuildError
from ..graphs import Graph
from ..graph_fusion import fused_spec, stage_bounds
from ..kernel import KernelSpec
from ..layout import layout_of
from . import cuda
from .env import render
from .graph_kernel import check_fits, check_stages_built, counter_context, stage_contexts

if TYPE_CHECKING:
    from ..build import BuildUnit
    from .options import EmitOptions

__all__ = [
    "EDGE_CHUNKS",
    "STRATEGY",
    "abi",
    "compute_layout",
    "default_workers",
    "edge_capacity",
    "emit",
    "entry_point",
    "grid_spec",
    "launch_spec",
]

STRATEGY = "atomic_queue"
#: Chunks of ``BLOCK * ITEMS`` entry messages an edge ring holds (8 x 1,024 = 8,192 messages): a
#: producer this many chunks ahead of a consumer waits (back-pressure, never a drop).
EDGE_CHUNKS = 8
_CHUNK = cuda.BLOCK * cuda.ITEMS
_LINE = protocol.CACHE_LINE


def entry_point(graph: Graph) -> str:
    """The grid's ``extern "C"`` name: ``rg_<fused>_aq``."""
    return f"rg_{fused_spec(graph).name}_aq"


def grid_spec(graph: Graph) -> KernelSpec:
    """The fused kernel as the skeleton is rendered for it: ordered when the exit stage is (then
    its ``rg_<fused>_one`` reserves output slots alone, in order).

    Raises:
        BuildError: as ``fused_spec``, or the entry's input is bridged (its decoding lives in the
            skeleton's own worker loop, which this grid does not run).
    """
    spec = fused_spec(graph)
    if layout_of(spec.input).is_bridged:
        raise BuildError(
            f"graph {graph.label}: the {STRATEGY} strategy takes direct messages into its entry "
            f"{graph.entry}, and {spec.input.__name__} is bridged (it has Str or List fields)",
            file=graph.file,
            line=graph.line,
            hint="launch it with strategy='shared_memory'",
        )
    return attrs.evolve(spec, ordered=graph.spec(graph.exits[0]).ordered)


def launch_spec(graph: Graph) -> KernelSpec:
    """The fused kernel as the loader sees it: never ordered (the loader would launch one worker
    block; the grid orders each ordered stage itself)."""
    return attrs.evolve(fused_spec(graph), ordered=False)


def default_workers(graph: Graph) -> int:
    """Worker blocks when ``workers`` is not given: one per ordered stage, and for the others an
    equal share of 16 (at least 2 each), the CUDA backend's default for one kernel."""
    ordered = sum(1 for k in graph.kernels if k.spec.ordered)
    unordered = len(graph.kernels) - ordered
    return ordered + (unordered * max(2, 16 // unordered) if unordered else 0)


def edge_capacity(graph: Graph) -> dict[tuple[str, str], int]:
    """Per edge, the most messages it holds: its producer's ring, ``EDGE_CHUNKS`` chunks of entry
    messages, each slot up to what the producer makes for one (``stage_bounds``)."""
    bounds = stage_bounds(graph)
    return {
        (e.producer, e.consumer): EDGE_CHUNKS * _CHUNK * max(1, bounds[e.producer][1])
        for e in graph.all_edges
    }


def _slot_bytes(n_out: int, out_size: int) -> int:
    return (16 + n_out * out_size + 15) // 16 * 16


def _up(n: int, to: int) -> int:
    return (n + to - 1) // to * to


def compute_layout(graph: Graph) -> tuple[list[dict], int]:
    """Each stage's context for the template (``graph_kernel.stage_contexts`` plus its producers,
    bound of outputs, slot size and the offsets of its ticket, progress words and ring in the area
    after ``rg_sched``), and the area's size in bytes."""
    bounds = stage_bounds(graph)
    stages = stage_contexts(graph)
    at = 0
    for s, k in zip(stages, graph.kernels):
        spec = k.spec
        out_cls = spec.outbox or spec.output
        s["producers"] = list(graph.producers(spec.name))
        s["ordered"] = spec.ordered
        s["n_out"] = max(1, bounds[spec.name][1])
        s["slot_bytes"] = _slot_bytes(s["n_out"], layout_of(out_cls).size if out_cls else 1)
        s["blocks_note"] = "one block, messages in order" if spec.ordered else "a share of blocks"
        s["ticket_at"] = at
        at += _LINE
        s["done_at"] = at
        at += _up(EDGE_CHUNKS * 8, _LINE)
        s["ring_at"] = at
        if not s["is_exit"]:
            # stamped words: 8 bytes in the ring per 4 of the slot (templates/graph/atomic_queue.cu.j2)
            at += _up(EDGE_CHUNKS * _CHUNK * 2 * s["slot_bytes"], _LINE)
    return stages, at


def _out_slot(ctx: dict) -> str:
    if ctx["uses_outbox"]:
        return f"rg_{ctx['name']}_out_slot"
    return "rg_u8" if ctx["out_bridged"] else ctx["out_type"]


def emit(unit: "BuildUnit", graph: Graph, *, options: Optional["EmitOptions"] = None) -> str:
    """The ``.cu`` of ``graph`` as one grid of per-stage blocks (see the module docstring).

    Raises:
        BuildError: the graph cannot be fused (``fused_spec``), does not fit a thread
            (``graph_kernel.check_fits``: a stage holds its inputs as the fused kernel does), has a
            bridged entry, or a stage is not in ``unit``.
    """
    from .body import emit_body
    from .bridged_c import emit_device_codec
    from .header import render_header

    check_stages_built(unit, graph)
    check_fits(graph, STRATEGY)
    spec = grid_spec(graph)
    fused = cuda.kernel_context(spec)
    stages, area = compute_layout(graph)
    exit_ctx = next(s for s in stages if s["is_exit"])
    ordered = sum(1 for s in stages if s["ordered"])
    unordered = [s["name"] for s in stages if not s["ordered"]]
    aq = {
        "chunks": EDGE_CHUNKS,
        "bytes": area,
        "entry_point": entry_point(graph),
        "ordered_stages": ordered,
        "unordered_stages": len(unordered),
        "last_unordered": unordered[-1] if unordered else "",
        "min_blocks": len(stages),
    }
    common = dict(
        graph=graph.label,
        fused=fused,
        stages=stages,
        exit=exit_ctx,
        aq=aq,
        out_slot=_out_slot(fused),
        **counter_context(graph),
    )
    sub = attrs.evolve(unit, kernels=tuple(k.spec for k in graph.kernels), graphs=())
    handler = render(
        "graph/atomic_queue.cu.j2",
        part="handler",
        stage_body=emit_body(sub, debug=options.debug_line_directives if options else None),
        **common,
    )
    grid = render("graph/atomic_queue.cu.j2", part="grid", stage_body="", **common)
    skeleton = cuda.render_source(
        attrs.evolve(unit, kernels=(spec,), graphs=()),
        header=render_header(unit),
        body=handler,
        codec=emit_device_codec(unit),
    )
    return skeleton + grid


def abi(graph: Graph) -> dict[str, Any]:
    """The grid's ``abi.cuda``: the fused kernel's, with the entry point ``rg_<fused>_aq`` and the
    scheduler buffer grown by the area of edge rings (``compute_layout``)."""
    out = cuda.abi(launch_spec(graph))
    out["entry_point"] = entry_point(graph)
    out["sched_bytes"] = cuda.SCHED_BYTES + compute_layout(graph)[1]
    # No latency lane: the grid's block 0 runs the poller and the publisher only, so the host must
    # send every message through the ring (the loader passes a null lane pointer).
    out["lane"] = None
    return out
