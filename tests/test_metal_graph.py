"""Graphs on Metal, as successive dispatches of the event-driven skeleton (issue 15, item 3): the
emitted graph driver (``ringgen.codegen.metal_graph``) compiled with the shim and run on CPU
threads, against the reference composition of the stages, for the graphs of tests/graph_kernels.py
and for generated pipelines and DAGs."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, note, reject, seed, settings
from hypothesis import strategies as st

from ringgen.build import collect
from ringgen.codegen.metal import emit
from ringgen.codegen.metal_graph import emit_graph_driver, skipped_graphs
from ringgen.errors import HandlerError
from ringgen.metal_shim import available_compilers
from ringgen.metal_shim.graph_executor import build_graph_executor
from ringgen.testing import KernelRun, Profile, compare_runs, random_messages
from ringgen.testing.graphs import (
    compare_graph_runs,
    graph_modules,
    load_graph,
    reference_graph,
    run_graph_metal,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))

pytestmark = [
    pytest.mark.skipif(not available_compilers(), reason="no g++ or clang++"),
    pytest.mark.timeout(600),
]

HERE = Path(__file__).resolve().parent
GRAPHS = ("three", "fanned", "outboxed", "filtered", "faulty", "soak")
GENERATED = int(os.environ.get("RINGGEN_GEN_METAL_GRAPHS", "6"))
GEN_SEED = os.environ.get("RINGGEN_GEN_SEED", "0")


def _build(unit, work: Path):
    path = work / f"{unit.name}.metal"
    path.write_text(emit(unit)[path.name])
    return build_graph_executor(path, unit, work / "build")


@pytest.fixture(scope="module")
def kernels(tmp_path_factory):
    """(unit, executor) of tests/graph_kernels.py."""
    cwd = os.getcwd()
    os.chdir(HERE)
    try:
        unit = collect("graph_kernels.py")
    finally:
        os.chdir(cwd)
    return unit, _build(unit, tmp_path_factory.mktemp("metal_graph"))


def _graph(unit, name):
    return next(g for g in unit.graphs if g.name == name)


def test_the_driver_is_emitted_for_every_graph_metal_can_run(kernels):
    unit, _ = kernels
    text = emit_graph_driver(unit, "/x/graph_kernels.metal", "graph_kernels.metal")
    for name in GRAPHS:
        assert f"int rg_metal_graph_{name}(" in text
    assert "parse_begin(&s.in_q, &s.out_q, ctl, &s.d, 0u);" in text
    assert skipped_graphs(unit) == {}


@pytest.mark.parametrize("name", GRAPHS)
def test_a_graph_on_the_shim_equals_the_reference_composition(kernels, name):
    unit, ex = kernels
    g = _graph(unit, name)
    msgs = random_messages(g.spec(g.entry).input, 3000, seed=5)  # past one 1024-slot queue
    want = reference_graph(g, msgs)
    got = run_graph_metal(ex, g, msgs)
    assert compare_graph_runs(g, want, got) is None, compare_graph_runs(g, want, got)
    assert any(len(v) for v in want.exits.values())
    if name == "faulty":
        assert sum(got.rejected["overflow"].values()) > 0


def test_parallel_dispatch_gives_the_same_multiset(kernels):
    unit, ex = kernels
    g = _graph(unit, "fanned")
    msgs = random_messages(g.spec(g.entry).input, 2500, seed=9)
    want = reference_graph(g, msgs)
    got = run_graph_metal(ex, g, msgs, workers=3)
    for x in g.exits:
        detail = compare_runs(
            KernelRun("reference", want.exits[x], {}), KernelRun("m", got.exits[x], {})
        )
        assert detail is None, detail


def test_a_wrong_driver_result_is_caught(kernels):
    unit, ex = kernels
    g = _graph(unit, "three")
    msgs = random_messages(g.spec(g.entry).input, 100, seed=1)
    got = run_graph_metal(ex, g, msgs)
    lossy = type(got)("lossy", {"finish": got.exits["finish"][:-1]}, got.rejected, got.states)
    assert "exit finish" in compare_graph_runs(g, reference_graph(g, msgs), lossy)


def test_a_graph_with_an_f64_stage_is_left_out_with_the_reason(tmp_path):
    source = (
        "import ringgen as rg\nfrom ringgen.types import f64, i64\n\n"
        "@rg.message\nclass A:\n    id: i64\n    x: f64\n\n"
        "@rg.ring_kernel\ndef first(m: A) -> A:\n    return A(id=m.id, x=m.x * 2.0)\n\n"
        "@rg.ring_kernel\ndef second(m: A) -> A:\n    return A(id=m.id, x=m.x + 1.0)\n\n"
        "graph = rg.pipeline(first, second)\n"
    )
    graph, module = load_graph(source, tmp_path)
    unit = collect(module)
    why = skipped_graphs(unit)
    assert set(why) == {"graph"} and "stage first is not emitted for Metal" in why["graph"]
    assert "rg_metal_graph_graph(" not in emit_graph_driver(unit, "/x/a.metal", "a.metal")


def test_generated_graphs_on_the_shim_equal_the_reference(tmp_path_factory):
    """Generated pipelines and DAGs without f64 (Metal has none), through the graph driver."""

    @settings(
        max_examples=GENERATED,
        deadline=None,
        print_blob=True,
        phases=(Phase.explicit, Phase.reuse, Phase.generate),  # a failure prints its module at once
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    @given(module=graph_modules(profile=Profile(f64=False)), msg_seed=st.integers(0, 2**16))
    def run(module, msg_seed):
        note(module.source)
        work = tmp_path_factory.mktemp("gen_metal_graph")
        try:
            _, mod = load_graph(module.source, work)
            unit = collect(mod)
            graph = _graph(unit, "graph")  # named after its variable, as ringgen build names it
            ex = _build(unit, work)
        except HandlerError as exc:
            if "by zero" in exc.message or "out of range" in exc.message:
                reject()
            raise
        if graph.name in ex.skipped:
            reject()
        msgs = random_messages(graph.spec(graph.entry).input, 64, msg_seed, special=True)
        want = reference_graph(graph, msgs)
        got = run_graph_metal(ex, graph, msgs)
        detail = compare_graph_runs(graph, want, got)
        assert detail is None, f"{detail}\n{module.source}"
        ran.append(len(graph.stages))

    ran: list[int] = []
    if GEN_SEED != "random":
        run = seed(int(GEN_SEED))(run)
    run()
    print(f"\nMetal graph driver: {len(ran)} generated graphs of {sorted(ran)} stages")
    assert len(ran) >= GENERATED // 2, f"only {len(ran)} generated graphs ran"
