"""Fused graphs (the ``shared_memory`` strategy) with several exits and several stateful stages
(docs/graphs.md, "Several exits, several states") against the same graphs on the cpu reference's
host strategy: each exit's replies (in order where the graph is ordered), each stage's counts and
each stateful stage's final state; the per-exit receive rules; ``atomic_queue``'s refusal; the
CUDA sources compiled with nvcc; with ``-m gpu``, the same on CUDA."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import ringgen as rg
from ringgen.build import collect
from ringgen.codegen import graph_kernel, graph_queue
from ringgen.codegen.graph_strategies import STRATEGIES
from ringgen.errors import BuildError, KernelTimeoutError, QueueClosedError
from ringgen.graph_fusion import fused_parts, fused_spec
from ringgen.protocol import Lifecycle
from ringgen.runtime import available_backends
from ringgen.testing import random_messages

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import device_strategy_backends  # noqa: E402
import exits_kernels as ek  # noqa: E402
import graph_kernels as gk  # noqa: E402

pytestmark = pytest.mark.timeout(300)

#: (backend, launch options). A fused graph is one kernel, so persistent PoCL runs it on one of
#: its worker threads.
BACKENDS = device_strategy_backends(["shared_memory"])

#: The graphs, with whether each exit's replies keep the order of their requests (an unordered
#: fused kernel with an Outbox reserves output slots warp by warp; an ordered one runs one entry
#: message at a time).
GRAPHS = {
    "forked": (lambda: ek.forked, False),
    "trident": (lambda: ek.trident, False),
    "tallied": (lambda: ek.tallied, True),
    "both": (lambda: ek.both, True),
    "sunk": (lambda: ek.sunk, True),
}


def _launch(g, backend, **options):
    name, extra = backend
    return rg.launch(g, backend=name, **extra, **options)


def _drain(handle, exit: str) -> np.ndarray:
    """Every reply of ``exit`` left after a terminate, in order (empty for an exit without
    output)."""
    out = []
    while True:
        try:
            out.append(handle.receive_batch(timeout=5.0, exit=exit))
        except QueueClosedError:
            break
    out = [c for c in out if len(c)]
    return np.concatenate(out) if out else np.zeros(0)


def _states(g, handle) -> dict:
    """Each stateful stage's final state, as a one-record array of its dtype."""
    out = {}
    for s in g.stages:
        cls = g.spec(s).state
        if cls is not None:
            out[s] = handle.stage(s).codecs[cls.__name__].to_array([handle.stage(s).state()])
    return out


def _run(g, launch, msgs):
    """``g`` run by ``launch`` over ``msgs``: each exit's replies, the final stats and states."""
    with launch() as h:
        h.send_batch(msgs, timeout=60.0)
        h.terminate(timeout=30.0)
        exits = {x: _drain(h, x) for x in g.exits}
        return exits, h.stats(), _states(g, h)


def _reference(g, msgs):
    return _run(g, lambda: rg.launch(g, backend="cpu", capacity=4096), msgs)


def _counts(stats) -> tuple[dict, dict]:
    stages = {n: (s.processed, s.emitted, dict(s.rejected)) for n, s in stats.stages.items()}
    edges = {(e.producer, e.consumer): e.forwarded for e in stats.edges}
    return stages, edges


def _rows(arr: np.ndarray) -> list:
    return sorted(tuple(float(v) for v in row) for row in arr.tolist())


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape", sorted(GRAPHS))
def test_each_exit_and_each_state_equal_the_reference(backend, shape):
    make, in_order = GRAPHS[shape]
    g = make()
    msgs = random_messages(ek.Raw, 3000, seed=len(shape))
    got, final, states = _run(g, lambda: _launch(g, backend, capacity=1024), msgs)
    want, ref, want_states = _reference(g, msgs)
    assert final.strategy == "shared_memory" and final.lifecycle is Lifecycle.TERMINATED
    assert final.stages[g.entry].processed == len(msgs)
    assert _counts(final) == _counts(ref)
    for x in g.exits:
        spec = g.spec(x)
        if (spec.outbox or spec.output) is None:
            assert len(got[x]) == 0
            continue
        assert len(want[x]) > 0, x
        assert got[x].dtype == want[x].dtype
        if in_order:
            np.testing.assert_array_equal(got[x], want[x], err_msg=f"exit {x}")
        else:
            assert _rows(got[x]) == _rows(want[x]), f"exit {x}"
        # per exit: what the stage made is what the host received from it
        assert final.stages[x].emitted == final.stages[x].received == len(want[x])
        assert final.stages[x].spilled <= len(want[x])
    assert sorted(states) == sorted(want_states)
    for s, want_state in want_states.items():
        np.testing.assert_array_equal(states[s], want_state, err_msg=f"stage {s}'s state")


@pytest.mark.parametrize("backend", BACKENDS)
def test_sending_without_receiving_splits_every_exit_in_order(backend):
    """10x the capacity sent before any receive: the kernel's spill holds the tagged replies,
    nothing deadlocks, and each exit then gives all its replies in order (an ordered graph)."""
    g = ek.both
    msgs = random_messages(ek.Raw, 1280, seed=3)
    want, _, _ = _reference(g, msgs)
    with _launch(g, backend, capacity=128) as h:
        h.send_batch(msgs, timeout=60.0)
        first = h.receive(timeout=30.0, exit="spread_side")
        h.terminate(timeout=30.0)
        side = _drain(h, "spread_side")
        spread = _drain(h, "spread")
        stats = h.stats()
    # every spread reply was split off while spread_side was received from: spilled, per exit
    assert stats.stages["spread"].spilled == len(want["spread"])
    assert stats.stages["spread_side"].spilled == 0
    assert stats.stages["spread_side"].received == len(want["spread_side"])
    assert (first.id, first.v) == tuple(int(v) for v in want["spread_side"][0])
    np.testing.assert_array_equal(side, want["spread_side"][1:])
    np.testing.assert_array_equal(spread, want["spread"])


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_fault_in_one_exit_drops_that_entry_messages_replies_at_every_exit(backend):
    """docs/graphs.md, "Faults": each stage's counts are the reference's; the other exit loses
    exactly the replies to the entry messages that faulted."""
    g = ek.faulted
    msgs = random_messages(ek.Raw, 3000, seed=5)
    got, final, _ = _run(g, lambda: _launch(g, backend, capacity=1024), msgs)
    want, ref, _ = _reference(g, msgs)
    assert _counts(final) == _counts(ref)
    faults = sum(ref.stages["burst"].rejected.values())
    assert faults > 0
    assert _rows(got["burst"]) == _rows(want["burst"])
    narrow = _rows(got["narrow"])
    assert set(narrow) <= set(_rows(want["narrow"]))
    assert len(want["narrow"]) - len(narrow) == faults


@pytest.mark.parametrize("backend", BACKENDS)
def test_receiving_from_several_exits_names_the_exit(backend):
    g = ek.sunk
    with _launch(g, backend, capacity=64) as h:
        with pytest.raises(ValueError, match=r"2 exits \(spread_side, keep\): pass exit=NAME"):
            h.receive(timeout=0.1)
        with pytest.raises(ValueError, match=r"2 exits"):
            h.receive_batch()
        with pytest.raises(ValueError, match=r"'nope' is not an exit"):
            h.receive_batch(exit="nope")
        with pytest.raises(KernelTimeoutError, match="no reply from spread_side"):
            h.receive(timeout=0.05, exit="spread_side")
        with pytest.raises(QueueClosedError, match="exit keep has no output"):
            h.receive(timeout=0.05, exit="keep")
        assert len(h.receive_batch(exit="spread_side")) == 0
        h.send(ek.Raw(id=7, v=4), timeout=10.0)
        reply = h.receive(timeout=30.0, exit="spread_side")
        assert isinstance(reply, ek.Small) and reply.id == 7
        assert h.stage("keep").state().n == 1 and h.stage("tally").state().n == 1
        assert h.stage("spread_side").state().total == (4 + 1) * 2
        h.terminate(timeout=30.0)
        with pytest.raises(QueueClosedError, match="exit spread_side is terminated"):
            h.receive_batch(exit="spread_side")


def test_one_exit_and_one_state_stay_as_they_were():
    """No tag and no fused state unless the graph has several exits or stateful stages."""
    for g in (gk.three, gk.fanned, rg.pipeline(gk.parse, gk.repeat, gk.number)):
        parts = fused_parts(g)
        assert parts.exit_class is None and parts.state_class is None
        assert "rg_tagged" not in graph_kernel.emit_fused(collect(gk), g, "opencl")
    spec = fused_spec(ek.both)
    parts = fused_parts(ek.both)
    assert spec.outbox is parts.exit_class and spec.outbox_limit == 2 and spec.ordered
    assert spec.state is parts.state_class
    assert parts.state_at == {"tally": 0, "spread": 16, "spread_side": 48}
    assert fused_spec(ek.sunk).outbox is None  # one tagged reply per entry message: a value
    assert fused_parts(ek.forked) is fused_parts(ek.forked)  # one set of classes per graph


def test_atomic_queue_refuses_several_exits_and_states_naming_why():
    with pytest.raises(BuildError, match=r"graph forked: the atomic_queue .* 2 exits"):
        STRATEGIES["atomic_queue"].check(ek.forked)
    with pytest.raises(BuildError, match=r"atomic_queue .*stages tally, spread each have"):
        STRATEGIES["atomic_queue"].check(ek.tallied)
    for g in (ek.forked, ek.trident, ek.tallied, ek.both, ek.sunk):
        assert STRATEGIES["shared_memory"].check(g) == fused_spec(g).name
        with pytest.raises(BuildError, match="atomic_queue"):  # what rg.launch emits
            graph_queue.emit(collect(ek), g)


@pytest.mark.parametrize("backend", [p for p in BACKENDS if p.id == "cuda-shared_memory"])
def test_atomic_queue_refuses_them_at_launch_on_cuda(backend):
    for g in (ek.forked, ek.tallied):
        with pytest.raises(BuildError, match="atomic_queue"):
            rg.launch(g, backend="cuda", strategy="atomic_queue")


_NVCC = shutil.which("nvcc")


@pytest.mark.skipif(_NVCC is None, reason="no nvcc")
@pytest.mark.parametrize("shape", sorted(GRAPHS))
def test_the_cuda_source_compiles_with_nvcc(tmp_path, shape):
    g = GRAPHS[shape][0]()
    cu = tmp_path / "fused.cu"
    cu.write_text(graph_kernel.emit_fused(collect(ek), g, "cuda"))
    run = subprocess.run(
        [
            _NVCC,
            "-std=c++17",
            "-O3",
            "-arch=sm_90",
            "-cubin",
            "-o",
            str(tmp_path / "f.cubin"),
            str(cu),
        ],
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert run.returncode == 0, run.stderr[-4000:]
