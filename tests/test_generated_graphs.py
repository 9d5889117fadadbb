"""Generated graphs on every host backend, against the reference composition (issue 15, item 5).

Hypothesis draws whole graph modules (``ringgen.testing.graphs.graph_modules``): 1 to 6 generated
stages whose message classes chain, with ``Optional`` returns, Outbox emits (sometimes one too
many: a fault counted in that stage), ordered stages with state, fan-out and fan-in. Each graph runs
on the cpu backend, ``c``, OpenCL persistent and relaunch (PoCL), with every strategy the runtime
lists (``graph_strategies``); each exit's outputs, each stage's fault counts and each ordered
stage's final state must be the reference's (each stage's handler alone on the reference
interpreter, over what its producers emitted). A failure prints the module's source.

``RINGGEN_GEN_GRAPHS`` sets how many graphs a run checks (default 10, the CI profile);
``RINGGEN_GEN_SEED`` as for tests/test_generated_kernels.py (default 0: a fixed set; ``random``).
"""

from __future__ import annotations

import os
import sys
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, note, reject, seed, settings
from hypothesis import strategies as st

from ringgen.errors import HandlerError
from ringgen.testing import Profile, random_messages
from ringgen.testing.graphs import (
    GRAPH_SHAPES,
    check_graph,
    compare_graph_runs,
    graph_modules,
    load_graph,
    reference_graph,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))
import graph_backends  # noqa: E402

pytestmark = [pytest.mark.opencl, pytest.mark.timeout(900)]

GRAPHS = int(os.environ.get("RINGGEN_GEN_GRAPHS", "10"))
GEN_SEED = os.environ.get("RINGGEN_GEN_SEED", "0")
PHASES = (Phase.explicit, Phase.reuse, Phase.generate) + (
    (Phase.shrink,) if os.environ.get("RINGGEN_GEN_SHRINK") == "1" else ()
)
N_MESSAGES = 64


BACKENDS = graph_backends.host_backends()
POCL_THREADS = graph_backends.pocl_threads()
RAN: Counter = Counter()
FEATURES: Counter = Counter()


def _modules():
    """Graphs without f64 half the time (so the Metal graph driver could run them too)."""
    return st.booleans().flatmap(lambda f64: graph_modules(profile=Profile(f64=f64)))


def _check(module, tmp_path, msg_seed: int) -> None:
    note(module.source)
    backends = dict(BACKENDS)
    if "opencl-persistent" in backends and len(module.stages) > POCL_THREADS:
        backends.pop("opencl-persistent")  # it would wait forever for a PoCL thread
        RAN["opencl-persistent skipped (more stages than PoCL threads)"] += 1
    try:
        report = check_graph(
            module, backends, tmp_path, seed=msg_seed, n_messages=N_MESSAGES, timeout=60.0
        )
    except HandlerError as exc:
        if "by zero" in exc.message or "out of range" in exc.message:
            reject()  # the compiler folded a constant fault: not a test case
        raise
    RAN.update(k for k, v in report.items() if v == "ran")
    FEATURES.update(s.shape for s in module.stages)
    FEATURES["stages=%d" % len(module.stages)] += 1
    FEATURES["fan_out"] += module.fan_out
    FEATURES["fan_in"] += module.fan_in


def test_generated_graphs_agree_with_the_reference(tmp_path_factory):
    """Every host backend present gives what the reference composition gives, for generated
    pipelines and DAGs."""

    @settings(
        max_examples=GRAPHS,
        deadline=None,
        print_blob=True,
        phases=PHASES,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    @given(module=_modules(), msg_seed=st.integers(0, 2**16))
    def run(module, msg_seed):
        _check(module, tmp_path_factory.mktemp("graph"), msg_seed)

    if GEN_SEED != "random":
        run = seed(int(GEN_SEED))(run)
    run()
    print(f"\ngenerated graphs: ran {dict(RAN)}; features {dict(FEATURES)}")
    for label in BACKENDS:
        assert RAN[f"{label}/host"] > 0, f"{label}: no generated graph ran there"
    for shape in GRAPH_SHAPES:
        assert FEATURES[shape] > 0, f"no stage of shape {shape} was generated"
    assert FEATURES["fan_out"] > 0 and FEATURES["fan_in"] > 0


def test_a_wrong_backend_result_is_caught(tmp_path):
    """The comparison can fail: a run that lost a message, swapped two or counted a fault the
    reference did not is reported, naming the exit or the stage."""

    source = (
        "import ringgen as rg\nfrom ringgen.types import i32, i64\n\n"
        "@rg.message\nclass A:\n    id: i64\n    x: i32\n\n"
        "@rg.message\nclass B:\n    id: i64\n    y: i32\n\n"
        "@rg.ring_kernel\ndef first(m: A) -> B:\n    return B(id=m.id, y=m.x + 1)\n\n"
        "@rg.ring_kernel\ndef second(m: B) -> B:\n    return B(id=m.id, y=m.y * 2)\n\n"
        "graph = rg.pipeline(first, second)\n"
    )
    graph, _ = load_graph(source, tmp_path)
    msgs = random_messages(graph.spec("first").input, 10, 0)
    want = reference_graph(graph, msgs)
    assert compare_graph_runs(graph, want, want) is None
    lost = type(want)("lossy", {"second": want.exits["second"][1:]}, want.rejected, want.states)
    assert "exit second" in compare_graph_runs(graph, want, lost)
    swapped = want.exits["second"][[1, 0, *range(2, 10)]]
    reordered = type(want)("swap", {"second": swapped}, want.rejected, want.states)
    assert "another order" in compare_graph_runs(graph, want, reordered)
    faulted = type(want)("f", want.exits, {"first": {3: 1}}, want.states)
    assert "stage first: faults" in compare_graph_runs(graph, want, faulted)
