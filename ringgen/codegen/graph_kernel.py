"""A graph of ring kernels as one device kernel: the decisions both device strategies' sources share.

The ``shared_memory`` strategy (docs/graphs.md, "Strategies") fuses a graph's stages into one ring
kernel: a handler ``rg_handle_graph_<name>`` that runs a message's whole path through the stages
(``templates/graph/fused.c.j2``: each stage's handler, its outputs handed to its consumers in the
order the stages run, so every edge is FIFO per producer), wrapped in the target's usual resident
skeleton (``templates/cuda/kernel.cu.j2``, ``templates/opencl/kernel.cl.j2``) as if it were a
kernel the user wrote. So the host side is the single-kernel runtime, unchanged.

Here: which stage takes how many messages per entry message (``ringgen.graph_fusion.stage_bounds``), what
the fused kernel is (``ringgen.graph_fusion.fused_spec``), whether a message's path fits what one thread
holds (``check_fits``), and the source and manifest entries per target (``emit_fused``,
``abi``). Pure: the writer and ``ringgen.jit`` write or load what it returns.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

import attrs

from .. import protocol
from ..errors import BuildError
from ..graphs import Graph
from ..graph_fusion import (
    EXIT_PAYLOAD,
    EXIT_TAG,
    INPUT_TAG,
    check_device_keeps,
    counter_layout,
    fused_parts,
    fused_spec,
    stage_bounds,
    stamp_fields,
    topic_outlet,
)
from ..layout import layout_of
from ..targets import with_capability
from . import cuda, opencl
from .env import render

if TYPE_CHECKING:
    from ..build import BuildUnit
    from .options import EmitOptions

__all__ = [
    "FUSED_TARGETS",
    "PATH_BUDGET",
    "STRATEGY",
    "abi",
    "check_fits",
    "check_stages_built",
    "compute_path_bytes",
    "counter_context",
    "edge_capacity",
    "emit_fused",
    "hosted_contexts",
    "source_path",
    "stage_contexts",
]

#: The strategy this module emits (``rg.launch(graph, strategy=...)``).
STRATEGY = "shared_memory"
#: The targets a fused graph is emitted for (``fused_graph`` in ``ringgen/targets.py``), with the
#: file suffix of each.
FUSED_TARGETS = {t.name: t.suffix.lstrip(".") for t in with_capability("fused_graph")}
#: Bytes of messages one thread may hold along a message's path through the fused stages: the
#: registers of one thread of a 256-thread CUDA block at full occupancy of its SM (65,536 32-bit
#: registers / 256 threads = 256 registers = 1 KiB). Beyond it the path spills to local memory,
#: and the fused kernel stops being the fast form the strategy promises.
PATH_BUDGET = 1024


def source_path(graph_name: str, target: str, strategy: str = STRATEGY) -> str:
    """Where ``ringgen build`` puts a graph's device source in the package:
    ``graphs/<name>.<strategy>.<ext>`` (a folder of its own, so a loader looking for ``*.cl`` or
    ``<pkg>.cu`` never finds it)."""
    return f"graphs/{graph_name}.{strategy}.{FUSED_TARGETS[target]}"


def stage_contexts(graph: Graph) -> list[dict]:
    """What ``templates/graph/fused.c.j2`` reads about each stage, producers first.

    ``kind``: ``outbox`` (its emits go on), ``value`` (its return value, when it returns one) or
    ``none`` (no output: an exit that only updates state); ``n_in``: the most messages it takes per
    entry message (the size of its input buffer); ``consumers``: the stages it feeds;
    ``in_stamp``/``out_stamp``: the ``rg.HLC`` field of its input and output class, or None;
    ``clock_at``: the counter word of its clock (a stage with a stamped output), or None;
    ``state_arg``: the expression its handler gets as its state (``0`` without one; with several
    stateful stages a pointer to its part of the fused state, ``FusedParts.state_at``);
    ``exit_index``: its index in ``graph.exits`` (the tag of its replies), or None; ``outlets``:
    where its replies also go out tagged (its exit, with several exits or a host subscription;
    each topic it publishes to that the host subscribes to), each ``index`` (the tag), ``exit``
    and ``topic``.
    """
    bounds = stage_bounds(graph)
    counters = counter_layout(graph)
    fields = stamp_fields(graph)
    parts = fused_parts(graph)
    out = []
    for k in graph.kernels:
        s = k.spec
        out_cls = s.outbox or s.output
        if s.state is None:
            state_arg = "0"
        elif parts.state_class is None:
            state_arg = "rg_state"
        else:
            state_arg = (
                f"(RG_GLOBAL {layout_of(s.state).name}*)((RG_GLOBAL rg_u8*)rg_state + "
                f"{parts.state_at[s.name]}u)"
            )
        out.append(
            {
                "name": s.name,
                "in_type": layout_of(s.input).name,
                "out_type": layout_of(out_cls).name if out_cls is not None else "rg_none",
                "kind": "outbox" if s.uses_outbox else ("value" if out_cls is not None else "none"),
                "limit": s.outbox_limit,
                "n_in": bounds[s.name][0],
                "stateful": s.state is not None,
                "consumers": list(graph.consumers(s.name)),
                "is_entry": s.name == graph.entry,
                "is_exit": s.name in graph.exits,
                "counters_at": counters.stage_at(s.name),
                "in_stamp": fields[s.name][0],
                "out_stamp": fields[s.name][1],
                "clock_at": counters.clock_at(s.name) if s.name in counters.clocks else None,
                "state_arg": state_arg,
                "exit_index": graph.exits.index(s.name) if s.name in graph.exits else None,
                "outlets": _outlets(graph, s.name),
            }
        )
    return out


def _outlets(graph: Graph, stage: str) -> list[dict]:
    """The tagged outlets ``stage``'s replies go out through (``stage_contexts``)."""
    parts = fused_parts(graph)
    if parts.exit_class is None:
        return []
    out = []
    if stage in graph.exits:
        out.append({"index": graph.exits.index(stage), "exit": True, "topic": None})
    for t in graph.topics:
        if t.host_subscribes and stage in t.publishers:
            index = parts.outlets.index(topic_outlet(t.name))
            out.append({"index": index, "exit": False, "topic": t.name})
    return out


def hosted_contexts(graph: Graph) -> list[dict]:
    """What ``templates/graph/fused.c.j2`` reads about each topic the host publishes to
    (``FusedParts.host_published``): ``index`` (its input tag), ``topic``, ``type`` (its message's
    C type), ``subscribers``, ``outlet`` (the tag of the host's own copy when it subscribes too,
    else None) and ``counter_at`` (the word counting its messages handed on)."""
    parts = fused_parts(graph)
    counters = counter_layout(graph)
    topics = {t.name: t for t in graph.topics}
    out = []
    for i, name in enumerate(parts.host_published):
        t = topics[name]
        outlet = parts.outlets.index(topic_outlet(name)) if t.host_subscribes else None
        out.append(
            {
                "index": i + 1,
                "topic": name,
                "type": layout_of(t.message).name,
                "subscribers": list(t.subscribers),
                "outlet": outlet,
                "counter_at": counters.topic_at(name),
            }
        )
    return out


def edge_capacity(graph: Graph) -> dict[tuple[str, str], int]:
    """Per edge, the most messages it holds: its consumer's input buffer takes what its producer
    makes for one entry message (``stage_bounds``)."""
    bounds = stage_bounds(graph)
    return {(e.producer, e.consumer): bounds[e.producer][1] for e in graph.all_edges}


def counter_context(graph: Graph) -> dict[str, Any]:
    """What ``templates/graph/counters.c.j2`` reads besides the stages: the array's size, where
    the OpenCL handler finds it (the words after the control block, reached from the terminate
    word its ``rg_stop`` points at), the reasons, and each edge's first word."""
    counters = counter_layout(graph)
    return {
        "counters": {
            "total": counters.total,
            "ctl_stop_at": protocol.CONTROL_DTYPE.fields["terminate"][1],
            "ctl_bytes": protocol.CONTROL_SIZE,
            "n_reasons": protocol.N_REASONS,
        },
        "edges": [
            {"producer": p, "consumer": c, "counters_at": counters.edge_at(p, c)}
            for p, c in counters.edges
        ],
    }


def compute_path_bytes(graph: Graph) -> dict[str, int]:
    """Bytes one thread holds per stage along a message's path: each stage's input buffer (the
    entry's message is the skeleton's), an Outbox stage's outbox, and the fused output (its
    Outbox, or its one return value)."""
    spec = fused_spec(graph)
    sizes: dict[str, int] = {}
    for c, k in zip(stage_contexts(graph), graph.kernels):
        s = k.spec
        held = 0 if c["is_entry"] else c["n_in"] * layout_of(s.input).size
        if s.uses_outbox:
            held += s.outbox_limit * layout_of(s.outbox).size
        sizes[s.name] = held
    out_cls = spec.outbox or spec.output
    sizes["(output)"] = spec.outbox_limit * layout_of(out_cls).size if out_cls else 0
    return sizes


def check_fits(graph: Graph, strategy: str = STRATEGY) -> None:
    """Raise unless ``strategy`` keeps what ``graph``'s topics and orders promise
    (``ringgen.graph_fusion.check_device_keeps``: ``atomic_queue`` refuses causal stages and stamps,
    ``shared_memory`` keeps them) and what one entry message makes along the stages fits one
    thread (``PATH_BUDGET``): ``shared_memory`` holds the whole path in one thread,
    ``atomic_queue`` a stage's share of it (checked against the same budget, so a graph runs
    under both or neither). Both strategies' sources and checks call it first.

    Raises:
        BuildError: ``check_device_keeps`` refuses the graph under ``strategy``; or the path holds
            more bytes (the message gives them per stage and names ``strategy``).
    """
    check_device_keeps(graph, strategy)
    sizes = compute_path_bytes(graph)
    total = sum(sizes.values())
    if total > PATH_BUDGET:
        parts = ", ".join(f"{name} {n}" for name, n in sizes.items() if n)
        raise BuildError(
            f"graph {graph.label}: the {strategy} strategy holds what one entry message makes "
            f"along the stages in a thread, and this graph's path holds {total} bytes ({parts}), "
            f"more than the {PATH_BUDGET} bytes of registers one of 256 threads has",
            file=graph.file,
            line=graph.line,
            hint="launch it with strategy='host', or lower the Outbox bounds (Outbox[Msg, N]) "
            "and fan-ins that multiply the messages per entry message",
        )


def _render_body(unit: "BuildUnit", graph: Graph, options: Optional["EmitOptions"]) -> str:
    from .body import emit_body

    stages = attrs.evolve(unit, kernels=tuple(k.spec for k in graph.kernels), graphs=())
    spec = fused_spec(graph)
    parts = fused_parts(graph)
    return render(
        "graph/fused.c.j2",
        graph=graph.label,
        fused=cuda.kernel_context(spec),
        stages=stage_contexts(graph),
        tagged=(
            {"tag": EXIT_TAG, "payload": EXIT_PAYLOAD, "words": parts.payload_words}
            if parts.exit_class is not None
            else None
        ),
        input_tag=INPUT_TAG if parts.input_class is not None else None,
        tagged_payload=EXIT_PAYLOAD,
        hosted=hosted_contexts(graph),
        entry_stamp=stamp_fields(graph)[graph.entry][0],
        stage_body=emit_body(stages, debug=options.debug_line_directives if options else None),
        **counter_context(graph),
    )


def check_stages_built(unit: "BuildUnit", graph: Graph) -> None:
    """Raise ``BuildError`` naming the stages of ``graph`` that ``unit`` does not build (a device
    strategy's source is rendered from the build's kernels)."""
    names = {k.name for k in unit.kernels}
    missing = [s for s in graph.stages if s not in names]
    if missing:
        raise BuildError(
            f"graph {graph.label}: stage(s) {', '.join(missing)} are not in the build of "
            f"{unit.module}",
            hint="declare or import every stage in the module that declares the graph",
        )


def emit_fused(
    unit: "BuildUnit", graph: Graph, target: str, *, options: Optional["EmitOptions"] = None
) -> str:
    """The source of ``graph`` fused into one ring kernel for ``target`` ("cuda" or "opencl").

    Args:
        unit: a build whose kernels include every stage (its header and codecs are used).
        graph: the graph, with one exit and at most one stateful stage.

    Raises:
        BuildError: the graph cannot be fused (``fused_spec``), does not fit (``check_fits``), or
            a stage is not in ``unit``.
        ValueError: an unknown target.
    """
    if target not in FUSED_TARGETS:
        raise ValueError(f"graph {graph.label}: no fused source for target {target!r}")
    check_stages_built(unit, graph)
    check_fits(graph)
    from .bridged_c import emit_device_codec
    from .header import render_header

    body = _render_body(unit, graph, options)
    unit = _with_fused_classes(unit, graph)
    fused = attrs.evolve(unit, kernels=(fused_spec(graph),), graphs=())
    renderer = cuda.render_source if target == "cuda" else opencl.render_source
    return renderer(fused, header=render_header(unit), body=body, codec=emit_device_codec(unit))


def _with_fused_classes(unit: "BuildUnit", graph: Graph) -> "BuildUnit":
    """``unit`` with the classes fusing ``graph`` adds (``FusedParts``: the tagged exit class, the
    fused state class) after its own messages, so the header declares and checks them too.

    Raises:
        BuildError: a message of the build has the name of one of them (naming both).
    """
    parts = fused_parts(graph)
    extra = [c for c in (parts.exit_class, parts.state_class, parts.input_class) if c]
    names = {m.name for m in unit.messages}
    for cls in extra:
        if cls.__name__ in names:
            raise BuildError(
                f"graph {graph.label}: the fused kernel declares the struct {cls.__name__}, and "
                f"module {unit.module} has a message of that name",
                file=graph.file,
                line=graph.line,
                hint="rename the message, or give the graph another name=",
            )
    if not extra:
        return unit
    return attrs.evolve(unit, messages=unit.messages + tuple(layout_of(c) for c in extra))


def abi(graph: Graph, target: str, source: str) -> dict[str, Any]:
    """The fused kernel's ``abi`` for ``target``: what its loader needs, as a kernel's manifest
    entry has it (``ringgen.codegen.cuda.abi``, ``ringgen.codegen.opencl.abi``)."""
    spec = fused_spec(graph)
    if target == "cuda":
        return cuda.abi(spec)
    return opencl.abi(spec.name, source)
