"""The device strategies of a graph as ``ringgen build`` emits them: one row per strategy (its
source per target, its abi, what it refuses), read by the writer and the manifest.

``shared_memory`` is ``graph_kernel`` (CUDA and OpenCL), ``atomic_queue`` is ``graph_queue``
(CUDA); docs/graphs.md, "Strategies".
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Optional

import attrs

from ..graphs import Graph
from ..targets import with_capability
from . import graph_kernel, graph_queue

if TYPE_CHECKING:
    from ..build import BuildUnit
    from .options import EmitOptions

__all__ = ["STRATEGIES", "GraphStrategy"]


@attrs.frozen
class GraphStrategy:
    """One device strategy: ``emit(unit, graph, target, options) -> source`` for each of its
    ``targets``; ``check(graph) -> kernel name`` (raises ``BuildError`` naming why the strategy
    refuses the graph); ``abi(graph, target, source) -> dict``."""

    name: str
    targets: tuple[str, ...]
    emit: Callable[["BuildUnit", Graph, str, Optional["EmitOptions"]], str]
    check: Callable[[Graph], str]
    abi: Callable[[Graph, str, str], dict[str, Any]]


def _check_fused(graph: Graph) -> str:
    graph_kernel.check_fits(graph)
    return graph_kernel.fused_spec(graph).name


def _check_queue(graph: Graph) -> str:
    graph_kernel.check_fits(graph, graph_queue.STRATEGY)
    return graph_queue.grid_spec(graph).name


#: The device strategies, by name.
STRATEGIES = {
    graph_kernel.STRATEGY: GraphStrategy(
        graph_kernel.STRATEGY,
        tuple(graph_kernel.FUSED_TARGETS),
        lambda unit, graph, target, options: graph_kernel.emit_fused(
            unit, graph, target, options=options
        ),
        _check_fused,
        graph_kernel.abi,
    ),
    graph_queue.STRATEGY: GraphStrategy(
        graph_queue.STRATEGY,
        tuple(t.name for t in with_capability("grid_graph")),
        lambda unit, graph, target, options: graph_queue.emit(unit, graph, options=options),
        _check_queue,
        lambda graph, target, source: graph_queue.abi(graph),
    ),
}
