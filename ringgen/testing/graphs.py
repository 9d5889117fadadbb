"""Generated graphs of ring kernels, checked on a backend against the reference composition.

``graph_modules()`` draws a ``GeneratedGraph``: the Python source of a module declaring 1 to 6
generated stages whose types chain (each stage's output class is the input class of the stages it
feeds) and the graph composing them (``graph = rg.graph(kernel0 >> kernel1, ...)``). Stages are of
the shapes ``GRAPH_SHAPES``: 1:1, ``Optional`` return, ``rg.Outbox`` emitting 0 to ``OUTBOX_LIMIT``
(sometimes one more: a fault counted in that stage), and ordered actors with state; the graph
has fan-out (two stages fed by one) and fan-in (one stage fed by two producers of one output class).
An ordered stage is placed only where no fan-in is upstream of it, since how two producers'
streams interleave is not specified, and its state depends on the order it sees.

``reference_graph`` is the oracle: each stage's handler run alone by the reference interpreter, in a
topological order, over the concatenation of what its producers emitted. ``run_graph`` launches the
graph on a backend (``rg.launch(graph, backend=..., strategy=...)``), sends every message, drains,
and collects what each exit published, each stage's fault counts and each ordered stage's final
state. ``check_graph`` compares the two and raises ``MismatchError`` with the module's source.
"""

from __future__ import annotations

import os
import sys
from collections import Counter
from pathlib import Path
from typing import Any, Mapping, Optional, Union

import attrs
import numpy as np
from hypothesis import strategies as st

from ..build import collect
from ..errors import BackendUnavailableError, QueueClosedError, RinggenError
from ..graphs import Graph
from ..jit import launch
from ..layout import layout_of
from ..protocol import OUTBOX_LIMIT, Reason
from ..reference import records
from ..runtime.graph_host import STRATEGIES
from .compare import KernelRun, MismatchError, compare_runs
from .differential import module_name
from .expressions import Profile, Scope, bool_expr, expr_of
from .handlers import _Body, _scope_from, _state_decl, _state_writes, _statements, render_module
from .messages import random_messages
from .native import run_reference
from .schemas import SCALARS, MessageDecl, scalar

__all__ = [
    "GRAPH_SHAPES",
    "GeneratedGraph",
    "GeneratedStage",
    "GraphRun",
    "check_graph",
    "compare_graph_runs",
    "graph_modules",
    "graph_strategies",
    "load_graph",
    "reference_graph",
    "run_graph",
    "run_graph_metal",
]

#: The stage shapes a generated graph draws from.
GRAPH_SHAPES = ("one_to_one", "optional", "outbox", "ordered")


@attrs.frozen
class GeneratedStage:
    """One stage of a generated graph: its kernel's name and shape, and the stages feeding it."""

    name: str
    shape: str
    producers: tuple[str, ...]


@attrs.frozen
class GeneratedGraph:
    """A generated graph module: its source (which binds the graph to ``graph``) and its stages."""

    source: str
    stages: tuple[GeneratedStage, ...]
    profile: Profile = Profile()

    @property
    def fan_out(self) -> bool:
        """True when a stage feeds two or more others."""
        fed = Counter(p for s in self.stages for p in s.producers)
        return any(n > 1 for n in fed.values())

    @property
    def fan_in(self) -> bool:
        """True when a stage is fed by two or more producers."""
        return any(len(s.producers) > 1 for s in self.stages)

    def __str__(self) -> str:
        return self.source


def _types(profile: Profile) -> list[str]:
    return [t for t in SCALARS if profile.f64 or t != "f64"]


@st.composite
def _message(draw, name: str, profile: Profile) -> MessageDecl:
    """A message class of ``id: i64`` and one to three scalar fields, ``id`` anywhere among them."""
    fields = [
        (f"f{i}", scalar(draw(st.sampled_from(_types(profile)))))
        for i in range(draw(st.integers(1, 3)))
    ]
    fields.insert(draw(st.integers(0, len(fields))), ("id", scalar("i64")))
    return MessageDecl(name, tuple(fields))


def _value(draw, t: str, scope: Scope) -> str:
    return draw(bool_expr(scope)) if t == "bool_" else draw(expr_of(t, scope))


def _stage_source(draw, k: int, shape: str, inp: MessageDecl, out: MessageDecl, profile) -> str:
    """The declarations (a state class, then the kernel) of stage ``k``."""
    parts = []
    decls = {inp.name: inp}
    scope = Scope(profile=profile)
    _scope_from(draw, "m", inp, decls, scope)
    body = _Body()
    _statements(draw, body, scope)
    state = None
    if shape == "ordered":
        state = _state_decl(draw, k, profile, atomics=False)
        parts.append(state.render())
        _state_writes(draw, body, state, scope, atomics=False)
        _scope_from(draw, "s", state, decls, scope)  # an actor reads its state back
    if shape == "optional":
        body.add(f"if {draw(bool_expr(scope))}:")
        body.add("return None", 1)
    inner = scope.copy()
    if shape == "outbox":
        inner.add("i32", "i32(j)")
    args = []
    for fname, t in out.fields:
        args.append(f"{fname}=m.id" if fname == "id" else f"{fname}={_value(draw, t.name, inner)}")
    ctor = f"{out.name}({', '.join(args)})"
    name = f"kernel{k}"
    if shape == "outbox":
        count = str(draw(st.integers(0, OUTBOX_LIMIT)))
        if draw(st.booleans()):  # sometimes one past the limit: that message faults in this stage
            count = f"i32({draw(expr_of('i64', scope, 2))}) % {OUTBOX_LIMIT + 2}"
        body.add(f"for j in range({count}):")
        body.add(f"out.emit({ctor})", 1)
        sig = f"def {name}(m: {inp.name}, out: rg.Outbox[{out.name}]) -> None:"
    else:
        body.add(f"return {ctor}")
        ret = f"Optional[{out.name}]" if shape == "optional" else out.name
        extra = f", s: {state.name}" if state is not None else ""
        sig = f"def {name}(m: {inp.name}{extra}) -> {ret}:"
    deco = "@rg.ring_kernel(ordered=True)" if shape == "ordered" else "@rg.ring_kernel"
    parts.append(f"{deco}\n{sig}\n{body.text()}")
    return "\n\n".join(p.rstrip("\n") + "\n" for p in parts)


@st.composite
def graph_modules(
    draw,
    stages: tuple[int, int] = (1, 6),
    shapes: tuple[str, ...] = GRAPH_SHAPES,
    profile: Optional[Profile] = None,
) -> GeneratedGraph:
    """A module of ``stages[0]..stages[1]`` generated stages composed into ``graph``.

    Stage 0 is the entry. Each later stage is fed by one earlier stage and, when others emit the
    same class, sometimes by those too (fan-in); two stages fed by one make a fan-out. A stage's
    output class is a fresh one or, half of the time, one an earlier stage already emits (which is
    what makes fan-in possible).

    Args:
        stages: how many stages, at least and at most.
        shapes: the stage shapes to draw (``GRAPH_SHAPES``).
        profile: what expressions may use (``ringgen.testing.Profile``); default everything.
    """
    profile = profile or Profile()
    n = draw(st.integers(*stages))
    types: list[MessageDecl] = [draw(_message("Msg0", profile))]
    ins: list[int] = [0]  # stage -> index of its input class in ``types``
    outs: list[int] = []  # stage -> index of its output class
    producers: list[tuple[int, ...]] = [()]
    clean: list[bool] = []  # stage -> no fan-in upstream of it or at it
    for k in range(n):
        if k > 0:
            # half the time the previous stage: long chains, not only stars around the entry
            p = draw(st.one_of(st.just(k - 1), st.integers(0, k - 1)))
            same = [q for q in range(k) if q != p and outs[q] == outs[p]]
            # two thirds of the time a second producer of the same class, when there is one
            extra = [draw(st.sampled_from(same))] if same and draw(st.integers(0, 2)) else []
            fed_by = tuple(sorted([p] + extra))
            producers.append(fed_by)
            ins.append(outs[p])
        fan_in_free = len(producers[k]) <= 1 and all(clean[q] for q in producers[k])
        clean.append(fan_in_free)
        earlier = sorted(set(outs) - {ins[k]})  # a stage's output class is not its input class
        if earlier and draw(st.booleans()):
            outs.append(draw(st.sampled_from(earlier)))
        else:
            types.append(draw(_message(f"Msg{len(types)}", profile)))
            outs.append(len(types) - 1)
    parts = [t.render() for t in types]
    gen = []
    for k in range(n):
        allowed = [s for s in shapes if s != "ordered" or clean[k]] or ["one_to_one"]
        shape = draw(st.sampled_from(allowed))
        parts.append(_stage_source(draw, k, shape, types[ins[k]], types[outs[k]], profile))
        gen.append(GeneratedStage(f"kernel{k}", shape, tuple(f"kernel{q}" for q in producers[k])))
    edges = [f"{p} >> {s.name}" for s in gen for p in s.producers]
    parts.append(f"graph = rg.graph({', '.join(edges) if edges else 'kernel0'})")
    return GeneratedGraph(render_module(parts), tuple(gen), profile)


# ------------------------------------------------------------------------------------ running


@attrs.frozen
class GraphRun:
    """What one graph run produced.

    Attributes:
        backend: the label of what ran it ("reference", "c/host", ...).
        exits: exit stage -> its output records, in the order the exit published them.
        rejected: stage -> {``Reason`` value: count} of the messages that faulted there.
        states: ordered stage -> its final state (a one-record array of the state's view dtype).
    """

    backend: str
    exits: Mapping[str, np.ndarray]
    rejected: Mapping[str, Mapping[int, int]]
    states: Mapping[str, np.ndarray]


def load_graph(source: str, workdir: Union[str, os.PathLike], name: Optional[str] = None):
    """Write ``source`` as a module into ``workdir``, import it and return (its ``graph``, module).

    Raises:
        BuildError, HandlerError, SchemaError: the module does not build.
    """
    name = name or module_name("rg_graph")
    folder = Path(workdir) / "modules"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.py"
    path.write_text(source)
    unit = collect(str(path))
    module = sys.modules[unit.module]
    return module.graph, module


def _empty(cls: Optional[type]) -> np.ndarray:
    return np.zeros(0, layout_of(cls).dtype if cls is not None else np.dtype("u1"))


def reference_graph(graph: Graph, messages: np.ndarray) -> GraphRun:
    """The oracle: each stage alone on the reference interpreter, in topological order, over the
    concatenation of its producers' outputs (the entry: ``messages``)."""
    outputs: dict[str, np.ndarray] = {}
    rejected: dict[str, dict[int, int]] = {}
    states: dict[str, np.ndarray] = {}
    for stage in graph.stages:
        spec = graph.spec(stage)
        feeds = [outputs[p] for p in graph.producers(stage)]
        inputs = messages if stage == graph.entry else _concat(feeds, spec.input)
        state = records.new_state(spec.state) if spec.state is not None else None
        per_msg, status = run_reference(spec, inputs, state)
        rows = [o for msg in per_msg for o in msg]
        dtype = layout_of(spec.output).dtype if spec.output is not None else np.dtype("u1")
        outputs[stage] = np.array(rows, dtype=dtype) if rows else np.zeros(0, dtype)
        rejected[stage] = dict(Counter(-s for s in status if s < 0))
        if state is not None:
            states[stage] = state.array
    return GraphRun("reference", {x: outputs[x] for x in graph.exits}, rejected, states)


def _concat(parts: list, cls: Optional[type]) -> np.ndarray:
    parts = [np.asarray(p) for p in parts if len(p)]
    return np.concatenate(parts) if parts else _empty(cls)


def run_graph(
    graph: Graph,
    backend: str,
    messages: np.ndarray,
    *,
    strategy: str = "host",
    timeout: float = 60.0,
    **options: Any,
) -> GraphRun:
    """Launch ``graph`` on ``backend``, send ``messages`` into its entry, terminate (draining), and
    collect what each exit published, each stage's faults and each stateful stage's final state.

    Every wait is bounded by ``timeout`` seconds.

    Raises:
        BackendUnavailableError: a stage cannot run on ``backend`` with ``strategy``.
        KernelTimeoutError, QueueFullError: the graph did not take or drain the messages in time.
    """
    with launch(graph, backend=backend, strategy=strategy, **options) as h:
        h.send_batch(messages, timeout=timeout)
        h.terminate(timeout=timeout)
        exits = {}
        for x in graph.exits:
            spec = graph.spec(x)
            parts = []
            while spec.output is not None:
                try:
                    part = h.receive_batch(timeout=0.0, exit=x)
                except QueueClosedError:
                    break
                if not len(part):
                    break
                parts.append(part)
            exits[x] = _concat(parts, spec.output)
        stats = h.stats()
        states = {}
        for stage in graph.stages:
            spec = graph.spec(stage)
            if spec.state is not None:
                handle = h.stage(stage)
                states[stage] = handle.codecs[spec.state.__name__].to_array([handle.state()])
    rejected = {
        s: {int(Reason[r]): int(n) for r, n in st_.rejected.items() if n}
        for s, st_ in stats.stages.items()
    }
    return GraphRun(f"{backend}/{strategy}", exits, rejected, states)


def run_graph_metal(executor, graph: Graph, messages: np.ndarray, *, workers: int = 1) -> GraphRun:
    """Run ``graph`` through a ``MetalGraphExecutor`` (the emitted graph driver on the shim) over
    ``messages``: what each exit published, each stage's faults and each stateful stage's state.

    Raises:
        KeyError: the driver left the graph out (``executor.skipped`` says why).
        KernelTimeoutError: the graph stopped moving with messages queued.
    """
    run = executor.run(graph.name, messages, workers=workers)
    rejected = {
        s: {r: int(n) for r, n in enumerate(ctl["rejected"]) if n}
        for s, ctl in run.controls.items()
    }
    return GraphRun(f"metal-shim/{workers}", dict(run.exits), rejected, dict(run.states))


def graph_strategies(backend: str) -> tuple[str, ...]:
    """The strategies ``ringgen.runtime.graph_host.STRATEGIES`` lists (``host`` on every backend);
    a strategy a backend lacks is refused by ``rg.launch`` with ``BackendUnavailableError``, which
    ``check_graph`` reports as skipped."""
    return tuple(STRATEGIES)


def _in_order(graph: Graph, stage: str) -> bool:
    """True when no fan-in is upstream of (or at) ``stage``: its outputs have one order."""
    todo, seen = [stage], set()
    while todo:
        s = todo.pop()
        prods = graph.producers(s)
        if len(prods) > 1:
            return False
        todo += [p for p in prods if p not in seen]
        seen.update(prods)
    return True


def _failure(what: str, source: str, seed: int, detail: str) -> str:
    return (
        f"{what}\n  seed {seed}\n  {detail}\n"
        f"--- the module (paste it into a regression test) ---\n{source}"
        "--- end of module ---"
    )


def check_graph(
    module: Union[GeneratedGraph, str],
    backends: Mapping[str, Mapping[str, Any]],
    workdir: Union[str, os.PathLike],
    *,
    seed: int = 0,
    n_messages: int = 64,
    timeout: float = 60.0,
    strategies: Optional[Mapping[str, tuple[str, ...]]] = None,
) -> dict[str, str]:
    """Run ``module``'s graph on the reference and on each backend with each strategy; compare.

    Each exit's outputs must be the reference's as a multiset (exactly in order where no fan-in is
    upstream: FIFO per edge), each stage's fault counts by reason and each ordered stage's final
    state the same.

    Args:
        module: a ``GeneratedGraph`` or module source binding a graph to ``graph``.
        backends: label -> {"backend": name, launch options...}, e.g.
            ``{"opencl-relaunch": {"backend": "opencl", "mode": "relaunch"}}``.
        workdir: a scratch folder.
        seed: seeds the random messages.
        n_messages: messages sent into the entry.
        timeout: the bound on each wait of each run, in seconds.
        strategies: label -> strategies to run (default: ``graph_strategies`` of its backend).

    Returns:
        ``"label/strategy"`` -> "ran", or why it was skipped (a strategy the backend refused).

    Raises:
        MismatchError: a backend disagreed with the reference, or failed to run the graph.
    """
    source = module.source if isinstance(module, GeneratedGraph) else str(module)
    name = module_name("rg_graph")
    try:
        graph, _ = load_graph(source, workdir, name)
        entry = graph.spec(graph.entry)
        special = module.profile.nan if isinstance(module, GeneratedGraph) else True
        messages = random_messages(entry.input, n_messages, seed, special=special)
        want = reference_graph(graph, messages)
        report: dict[str, str] = {}
        for label, opts in backends.items():
            opts = dict(opts)
            backend = opts.pop("backend")
            for strategy in (strategies or {}).get(label) or graph_strategies(backend):
                key = f"{label}/{strategy}"
                try:
                    got = run_graph(
                        graph, backend, messages, strategy=strategy, timeout=timeout, **opts
                    )
                except BackendUnavailableError as exc:
                    report[key] = f"skipped: {exc.message}"
                    continue
                except RinggenError as exc:
                    raise MismatchError(
                        _failure(f"{key} failed to run the graph", source, seed, exc.message)
                    ) from None
                detail = compare_graph_runs(graph, want, got)
                if detail is not None:
                    raise MismatchError(
                        _failure(f"{key} disagrees with the reference", source, seed, detail)
                    )
                report[key] = "ran"
        return report
    finally:
        sys.modules.pop(name, None)


def compare_graph_runs(graph: Graph, want: GraphRun, got: GraphRun) -> Optional[str]:
    """What differs between the reference's run of ``graph`` (``want``) and another (None:
    nothing): faults per stage, each exit's outputs (as a multiset; in order where no fan-in is
    upstream), each stateful stage's final state."""
    for stage in graph.stages:
        if dict(want.rejected.get(stage, {})) != dict(got.rejected.get(stage, {})):
            return (
                f"stage {stage}: faults by reason {dict(got.rejected.get(stage, {}))}, "
                f"the reference {dict(want.rejected.get(stage, {}))}"
            )
    for x in graph.exits:
        w, g = want.exits[x], got.exits[x]
        detail = compare_runs(KernelRun("reference", w, {}), KernelRun(got.backend, g, {}))
        if detail is not None:
            return f"exit {x}: {detail}"
        if len(w) and _in_order(graph, x) and list(w["id"]) != list(g["id"]):
            return f"exit {x}: the ids arrive in another order than the reference's (FIFO per edge)"
    for stage, w in want.states.items():
        detail = compare_runs(
            KernelRun("reference", _empty(None), {}, w),
            KernelRun(got.backend, _empty(None), {}, got.states.get(stage)),
        )
        if detail is not None:
            return f"stage {stage} (its final state): {detail}"
    return None
