"""Graphs as one device kernel (the ``shared_memory`` and ``atomic_queue`` strategies, docs/graphs.md
"Strategies") against the same graph on the cpu reference; their back-pressure, termination,
faults and errors; both strategies' CUDA sources compiled with nvcc; and, with ``-m gpu``, the same
on CUDA for both strategies plus the per-hop latency and throughput measurements."""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import ringgen as rg
from ringgen.build import collect
from ringgen.codegen import graph_kernel, graph_queue
from ringgen.codegen.graph_strategies import STRATEGIES
from ringgen.errors import BuildError, QueueClosedError, QueueFullError
from ringgen.graph_fusion import counter_layout, fused_spec, stage_bounds
from ringgen.kernel import RingKernel
from ringgen.protocol import N_REASONS, Lifecycle
from ringgen.runtime import available_backends
from ringgen.testing import random_messages

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import device_strategy_backends, nvcc_compiles, requires_nvcc  # noqa: E402
import graph_hops as gh  # noqa: E402
import graph_kernels as gk  # noqa: E402

pytestmark = pytest.mark.timeout(300)

#: (backend, launch options with the strategy). PoCL runs a persistent kernel on one of its worker
#: threads: a fused graph is one kernel, so persistent mode runs here (the host strategy's stages
#: need one each). atomic_queue is CUDA's only.
BACKENDS = device_strategy_backends()

#: The graphs every backend runs, with whether replies keep the order of their requests (a kernel
#: with an Outbox reserves output slots warp by warp, so only an ordered one keeps it).
GRAPHS = {
    "linear": (lambda: gk.three, True),
    "optional": (lambda: gk.parse >> gk.odd_only >> gk.finish, True),
    "fan_out_fan_in": (lambda: gk.fanned, False),
    "outbox": (lambda: rg.pipeline(gk.parse, gk.repeat, gk.finish), False),
    "ordered": (lambda: rg.pipeline(gk.parse, gk.repeat, gk.number), True),
}


def _launch(g, backend, **options):
    name, extra = backend
    return rg.launch(g, backend=name, **extra, **options)


def _concat(chunks: list) -> np.ndarray:
    chunks = [c for c in chunks if len(c)]
    return np.concatenate(chunks) if chunks else np.zeros(0)


def _drain(handle) -> np.ndarray:
    """Every reply left after a terminate, in order."""
    out = []
    while True:
        try:
            out.append(handle.receive_batch(timeout=5.0))
        except QueueClosedError:
            return _concat(out)


def _reference(g, messages: np.ndarray, *, with_stats: bool = False):
    """``g`` on the cpu reference (the host strategy composing the stages' Python handlers): its
    replies, and with ``with_stats`` its final ``GraphStats`` too."""
    with rg.launch(g, backend="cpu", capacity=4096) as h:
        h.send_batch(messages)
        h.terminate()
        got = _drain(h)
        return (got, h.stats()) if with_stats else got


def _counts(stats) -> tuple[dict, dict]:
    """Per stage ``(processed, emitted, rejected)``, per edge ``forwarded``: what a device
    strategy counts, to compare with the reference's."""
    stages = {n: (s.processed, s.emitted, dict(s.rejected)) for n, s in stats.stages.items()}
    edges = {(e.producer, e.consumer): e.forwarded for e in stats.edges}
    return stages, edges


def _rows(arr: np.ndarray) -> list:
    return sorted(tuple(int(v) for v in row) for row in arr.tolist())


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape", sorted(GRAPHS))
def test_a_fused_graph_equals_the_reference_composition(backend, shape):
    make, in_order = GRAPHS[shape]
    g = make()
    msgs = random_messages(gk.Raw, 3000, seed=len(shape))
    with _launch(g, backend, capacity=1024) as h:
        h.send_batch(msgs, timeout=60.0)
        h.terminate(timeout=30.0)
        got = _drain(h)
        final = h.stats()
    want, ref = _reference(g, msgs, with_stats=True)
    assert len(want) > 0
    if in_order:
        np.testing.assert_array_equal(got, want)
    else:
        assert _rows(got) == _rows(want)
    assert final.strategy == backend[1]["strategy"] and final.lifecycle is Lifecycle.TERMINATED
    assert final.stages[g.entry].processed == len(msgs)
    assert _counts(final) == _counts(ref)
    assert all(e.depth == 0 and e.capacity > 0 for e in final.edges)
    if shape == "ordered":
        assert list(got["seq"]) == list(range(1, len(got) + 1))  # one state, in edge order
        assert h.stage("number").state().n == len(got)


@pytest.mark.parametrize("backend", BACKENDS)
def test_many_messages_wrap_every_edge_and_arrive_once_in_order(backend):
    """100,000 messages: the atomic_queue edge rings (8,192 slots) wrap a dozen times."""
    msgs = random_messages(gk.Raw, 100_000, seed=12)
    with _launch(gk.three, backend, capacity=4096) as h:
        h.send_batch(msgs, timeout=120.0)
        h.terminate(timeout=60.0)
        got = _drain(h)
    np.testing.assert_array_equal(got, _reference(gk.three, msgs))


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_fault_in_a_stage_is_counted_and_the_graph_keeps_serving(backend):
    """The middle stage faults on the messages whose y is a multiple of 5: its own counters hold
    exactly those faults, the other stages' none, and each edge forwards what the reference's does;
    the counters are read while the kernel runs, then after terminate."""
    msgs = random_messages(gk.Raw, 800, seed=6)
    g = gk.parse >> gk.overflow >> gk.finish
    want, ref = _reference(g, msgs, with_stats=True)
    faults = ref.stages["overflow"].rejected.get("OUTBOX_OVERFLOW", 0)
    with _launch(g, backend) as h:
        h.send_batch(msgs)
        live = _wait_for(
            lambda: h.stats(), lambda st: st.stages["finish"].processed == len(msgs) - faults
        )
        h.terminate(timeout=30.0)
        got = _drain(h)
        final = h.stats()
    assert 0 < faults < len(msgs)
    assert _counts(live) == _counts(final) == _counts(ref)
    stages = final.stages
    assert stages["overflow"].rejected == {"OUTBOX_OVERFLOW": faults}
    assert stages["parse"].rejected == stages["finish"].rejected == {}
    assert [stages[s].processed for s in g.stages] == [len(msgs), len(msgs), len(msgs) - faults]
    assert stages["overflow"].emitted == len(msgs) - faults
    edges = {(e.producer, e.consumer): e for e in final.edges}
    assert edges[("parse", "overflow")].forwarded == len(msgs)
    assert edges[("overflow", "finish")].forwarded == len(msgs) - faults
    assert len(got) == len(want) == len(msgs) - faults
    np.testing.assert_array_equal(got, want)


def _wait_for(read, done, timeout: float = 30.0):
    """Poll ``read()`` until ``done`` holds for what it returns (or fail after ``timeout`` s)."""
    deadline = time.monotonic() + timeout
    while True:
        value = read()
        if done(value):
            return value
        assert time.monotonic() < deadline, f"not reached in {timeout} s: {value}"
        time.sleep(0.01)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_bridged_exit(backend):
    msgs = random_messages(gk.Raw, 200, seed=8)
    g = gk.parse >> gk.twice >> gk.label
    with _launch(g, backend) as h:
        h.send_batch(msgs)
        replies = [h.receive(timeout=10.0) for _ in range(len(msgs))]
    want = [gk.Label(id=int(m["id"]), text="even") for m in msgs]  # twice makes y even
    assert sorted((r.id, r.text) for r in replies) == [(w.id, w.text) for w in want]


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_full_queue_stalls_the_sender_and_drops_nothing(backend):
    msgs = random_messages(gk.Raw, 5000, seed=2)
    with _launch(gk.three, backend, capacity=16) as h:
        accepted = 0
        idle_since = time.monotonic()
        while time.monotonic() - idle_since < 1.0 and accepted < len(msgs):
            n = h.send_batch(msgs[accepted:], block=False)
            accepted += n
            if n:
                idle_since = time.monotonic()
        assert accepted < len(msgs)  # nobody receives: back-pressure reaches the host
        with pytest.raises(QueueFullError):
            h.send(gk.Raw(id=-1, x=0), block=False)
        h.terminate(timeout=30.0)
        got = _drain(h)
    assert list(got["id"]) == list(range(accepted))


@pytest.mark.parametrize("backend", BACKENDS)
def test_send_everything_then_receive_does_not_deadlock(backend):
    msgs = random_messages(gk.Raw, 3000, seed=9)
    with _launch(gk.three, backend, capacity=64) as h:
        h.send_batch(msgs, timeout=60.0)
        assert h.stats().spilled > 0
        rest = h.receive_batch(max_n=5000, timeout=5.0)
        h.terminate(timeout=30.0)
        tail = _drain(h)
    assert list(rest["id"]) + list(tail["id"]) == list(range(3000))


@pytest.mark.parametrize("backend", BACKENDS)
def test_terminate_stops_within_100_ms(backend):
    with _launch(gk.three, backend, capacity=1024) as h:
        h.send(gk.Raw(id=0, x=4))
        assert h.receive(timeout=10.0).z == 40  # running
        h.send_batch(random_messages(gk.Raw, 1000, seed=4))
        t0 = time.perf_counter()
        final = h.terminate(drain=False)
        took = time.perf_counter() - t0
    assert final.lifecycle is Lifecycle.TERMINATED
    assert took < 0.1, f"stop-now took {took * 1e3:.1f} ms"
    with _launch(gk.three, backend, capacity=1024) as h:
        h.send_batch(random_messages(gk.Raw, 1000, seed=5))
        while h.stats().stages["finish"].processed < 1000:
            time.sleep(0.001)
        t0 = time.perf_counter()
        h.terminate()
        took = time.perf_counter() - t0
        assert len(_drain(h)) == 1000
    assert took < 0.1, f"draining an idle graph took {took * 1e3:.1f} ms"


@rg.ring_kernel(ordered=True)
def count_mid(m: gk.Mid, st: gk.Counter) -> gk.Mid:
    st.n = st.n + 1
    return m


def test_what_cannot_be_fused_is_refused_naming_why():
    # shared_memory takes several exits and stateful stages (tests/test_graph_exits_device.py);
    # atomic_queue refuses them, naming why
    two_exits = rg.graph(gk.parse >> gk.twice, gk.parse >> gk.negate)
    graph_kernel.check_fits(two_exits)
    with pytest.raises(BuildError, match=r"atomic_queue .* 2 exits \(twice, negate\)"):
        STRATEGIES["atomic_queue"].check(two_exits)
    two_states = rg.pipeline(gk.parse, count_mid, gk.number)
    graph_kernel.check_fits(two_states)
    with pytest.raises(BuildError, match="atomic_queue .*stages count_mid, number each have"):
        STRATEGIES["atomic_queue"].check(two_states)
    rep2 = rg.ring_kernel(name="repeat2")(gk.repeat.__wrapped__)
    rep3 = rg.ring_kernel(name="repeat3")(gk.repeat.__wrapped__)
    big = rg.pipeline(gk.parse, gk.repeat, rep2, rep3, gk.finish)
    with pytest.raises(BuildError, match=r"shared_memory .* path holds \d+ bytes \(.*finish 1024"):
        graph_kernel.check_fits(big)
    with pytest.raises(BuildError, match=r"the atomic_queue strategy holds .*than the 1024 bytes"):
        STRATEGIES["atomic_queue"].check(big)
    with pytest.raises(ValueError, match="runs on opencl, cuda, not on backend 'cpu'"):
        rg.launch(gk.three, backend="cpu", strategy="shared_memory")
    with pytest.raises(ValueError, match="'atomic_queue' runs on cuda, not on backend 'cpu'"):
        rg.launch(gk.three, backend="cpu", strategy="atomic_queue")
    if "opencl" in available_backends():
        with pytest.raises(ValueError, match="takes no edge_capacity"):
            rg.launch(gk.three, backend="opencl", strategy="shared_memory", edge_capacity=4)


def test_the_fused_bounds_follow_outboxes_and_fan_in():
    assert stage_bounds(gk.fanned)["finish"] == (2, 2)
    spec = fused_spec(gk.fanned)
    assert (spec.outbox, spec.outbox_limit, spec.ordered) == (gk.Out, 2, False)
    spec = fused_spec(rg.pipeline(gk.parse, gk.repeat, gk.number))
    assert (spec.outbox_limit, spec.state, spec.ordered) == (4, gk.Counter, True)
    spec = fused_spec(gk.three)
    assert (spec.output, spec.outbox, spec.name) == (gk.Out, None, "graph_parse_twice_finish")


def test_the_counter_layout_gives_each_stage_and_edge_its_own_words():
    c = counter_layout(gk.fanned)
    assert c.stages == ("parse", "twice", "negate", "finish")
    assert c.STAGE_WORDS == 2 + N_REASONS and c.EDGE_WORDS == 2
    starts = [c.stage_at(s) for s in c.stages] + [c.edge_at(p, q) for p, q in c.edges]
    assert starts == sorted(set(starts)) and starts[0] == 0
    assert c.edge_at(*c.edges[-1]) + c.EDGE_WORDS == c.total == 4 * c.STAGE_WORDS + 4 * 2
    source = graph_kernel.emit_fused(collect(gk), gk.fanned, "opencl")
    assert f"#define RG_GRAPH_COUNTERS {c.total}u" in source
    assert f"#define RG_GC_finish {c.stage_at('finish')}u" in source


def test_atomic_queue_edges_are_stamped_slots():
    """A consumer waits on its own slot's stamped words (one round trip), never on a progress word
    before loading the slot; a ring holds two bytes per byte of slot."""
    source = graph_queue.emit(collect(gk), gk.three)
    assert "rg_aq_take<RG_AQ_parse_WORDS>" in source and "rg_aq_take<RG_AQ_twice_WORDS>" in source
    assert "rg_aq_put<RG_AQ_parse_WORDS>" in source and "rg_aq_put<RG_AQ_twice_WORDS>" in source
    assert "RG_AQ_parse_DONE) + ((lo" not in source  # no wait on a producer's progress word
    stages, _ = graph_queue.compute_layout(gk.three)
    parse, twice = stages[0], stages[1]
    ring = graph_queue.EDGE_CHUNKS * 1024 * 2 * parse["slot_bytes"]
    assert twice["ticket_at"] - parse["ring_at"] == ring


@requires_nvcc
@pytest.mark.parametrize("strategy", ["shared_memory", "atomic_queue"])
@pytest.mark.parametrize("shape", sorted(GRAPHS) + ["bridged"])
def test_the_fused_cuda_source_compiles_with_nvcc(tmp_path, shape, strategy):
    g = (lambda: gk.parse >> gk.twice >> gk.label) if shape == "bridged" else GRAPHS[shape][0]
    g = g()
    if strategy == "atomic_queue":
        source = graph_queue.emit(collect(gk), g)
        assert graph_queue.entry_point(g) in source
    else:
        source = graph_kernel.emit_fused(collect(gk), g, "cuda")
    nvcc_compiles(source, "the fused graph source")
    assert f"rg_graph_{g.name or '_'.join(g.stages)}_ring" in source


# ---- measurements (-m gpu): printed, and asserted only loosely (the targets are in the docs)


def _round_trips(target, n: int, strategy: str) -> float:
    """Median seconds of one message sent into ``target`` (a kernel or a graph) and its reply
    received, over ``n`` after 100 warm-up round trips."""
    opts = {} if isinstance(target, RingKernel) else {"strategy": strategy}
    with rg.launch(target, backend="cuda", capacity=1024, **opts) as h:
        times = []
        for i in range(n + 100):
            t0 = time.perf_counter()
            h.send(gh.Hop(id=i, v=0))
            reply = h.receive(timeout=5.0)
            times.append(time.perf_counter() - t0)
            assert reply.id == i
        return statistics.median(times[100:])


_STRATEGIES = ["shared_memory", "atomic_queue"]


@pytest.mark.gpu
@pytest.mark.skipif("cuda" not in available_backends(), reason="no CUDA")
@pytest.mark.parametrize("strategy", _STRATEGIES)
def test_measure_per_hop_latency_on_cuda(strategy):
    """(8-stage round trip - 1-stage round trip) / 7, each the median of 3,000, alternated three
    times so the spread between repeats shows the noise."""
    runs: dict[str, list[float]] = {"kernel": [], "1": [], "8": []}
    for _ in range(3):
        runs["kernel"].append(_round_trips(gh.hop0, 3000, strategy))
        runs["1"].append(_round_trips(gh.hops(1), 3000, strategy))
        runs["8"].append(_round_trips(gh.hops(8), 3000, strategy))
    per_hop = [(e - o) / 7 for o, e in zip(runs["1"], runs["8"])]
    print(f"\n{strategy}: round trip (median of 3,000, us), three repeats:")
    for key, label in (("kernel", "hop0 alone"), ("1", "1-stage graph"), ("8", "8-stage graph")):
        print(f"  {label:14s} " + "  ".join(f"{t * 1e6:7.2f}" for t in runs[key]))
    print("  per hop (ns)   " + "  ".join(f"{p * 1e9:7.0f}" for p in per_hop))
    assert statistics.median(per_hop) < 5e-6


def _throughput(target, n: int, strategy: str, reps: int = 5) -> float:
    """Messages per second through ``target`` (a kernel or a graph): a batch of ``n`` sent, then
    every reply received; the median of ``reps`` after one warm-up."""
    msgs = np.zeros(n, dtype=[("id", "<i8"), ("v", "<i8")])
    msgs["id"] = np.arange(n)
    msgs["v"] = np.random.default_rng(n).integers(-1000, 1000, n)
    opts = {} if isinstance(target, RingKernel) else {"strategy": strategy}
    with rg.launch(target, backend="cuda", capacity=1 << 17, **opts) as h:
        rates = []
        for _ in range(reps + 1):
            t0 = time.perf_counter()
            h.send_batch(msgs, timeout=30.0)
            got = []
            while sum(map(len, got)) < n:
                got.append(h.receive_batch(timeout=10.0))
            rates.append(n / (time.perf_counter() - t0))
            out = np.concatenate(got)
            assert (out["id"] == msgs["id"]).all()
        return statistics.median(rates[1:])


@pytest.mark.gpu
@pytest.mark.skipif("cuda" not in available_backends(), reason="no CUDA")
@pytest.mark.parametrize("strategy", _STRATEGIES)
def test_measure_four_stage_throughput_against_one_kernel_on_cuda(strategy):
    """A batch sent, every reply received: one kernel against the 4-stage graph, at 4,096 and
    65,536 messages, alternated twice."""
    print(f"\n{strategy}: throughput (M msg/s, median of 5 batches), two repeats:")
    ratios = []
    for n in (4096, 65536):
        single, four = [], []
        for _ in range(2):
            single.append(_throughput(gh.hop0, n, strategy))
            four.append(_throughput(gh.hops(4), n, strategy))
        print(f"  {n:6d}  hop0 alone " + " ".join(f"{r / 1e6:6.1f}" for r in single), end="")
        print("   4-stage graph " + " ".join(f"{r / 1e6:6.1f}" for r in four), end="")
        print(f"   ratio {statistics.median(four) / statistics.median(single):.2f}")
        ratios.append(statistics.median(four) / statistics.median(single))
    assert ratios[-1] > 0.2
