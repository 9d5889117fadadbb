"""bench/graph.py's hop measurements without a GPU: the paired per-hop arithmetic and its
alternation, the ratios at the largest batch, and the zero-copy series run against a fake of the
CUDA handle's zero-copy calls that keeps CUDA's rules (a reply holds its request's slot until it is
released; views are contiguous), so a series that reserves more than the ring admits fails here."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "bench")]

import graph_hop  # noqa: E402
import graph_stages as gs  # noqa: E402
from _common import Result, summarize  # noqa: E402

import ringgen as rg  # noqa: E402
from ringgen.graphs import Graph  # noqa: E402
from ringgen.layout import layout_of  # noqa: E402

pytestmark = pytest.mark.timeout(120)

_spec = importlib.util.spec_from_file_location("bench_graph", ROOT / "bench" / "graph.py")
bench_graph = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench_graph)

VAL = layout_of(gs.Val).dtype


# --------------------------------------------------------------------------- paired arithmetic


def test_paired_per_hop_is_the_median_over_pairs_with_its_spread():
    us = 1e-6
    got = graph_hop.paired_per_hop([(10 * us, 17 * us), (9 * us, 16.3 * us), (11 * us, 17 * us)])
    assert got["pair_per_hop_s"] == pytest.approx([1 * us, 1.0428571 * us, 6 / 7 * us])
    assert got["per_hop_s"] == pytest.approx(1 * us)
    assert got["min_s"] == pytest.approx(6 / 7 * us)
    assert got["max_s"] == pytest.approx(1.0428571 * us)
    assert got["pairs"] == 3
    assert got["one_stage_p50_s"] == pytest.approx(10 * us)
    assert got["eight_stage_p50_s"] == pytest.approx(17 * us)


def test_paired_per_hop_keeps_a_negative_difference():
    """Noise may make the 8-stage block faster than the 1-stage one: reported, not clipped."""
    got = graph_hop.paired_per_hop([(10e-6, 9.3e-6)])
    assert got["per_hop_s"] == pytest.approx(-0.1e-6)


def test_paired_per_hop_needs_a_pair():
    with pytest.raises(ValueError, match="at least one pair"):
        graph_hop.paired_per_hop([])


def test_measure_pairs_alternates_which_length_runs_first():
    order = []
    p50 = {1: 10e-6, 8: 24e-6}

    def measure(series, batch, block):
        order.append(series)
        assert (batch, block) == (1, 50)
        return np.full(block, p50[series])

    got = graph_hop.measure_pairs(lambda n: n, 1, 50, 4, measure)
    assert order == [1, 8, 8, 1, 1, 8, 8, 1]
    assert got["per_hop_s"] == pytest.approx(2e-6) and got["pairs"] == 4


# --------------------------------------------------------------------------- ratios


def _row(series, batch, p50):
    return Result(series, batch, summarize([p50]))


def test_ratios_compare_each_graph_with_the_series_of_its_own_api():
    b = 65536
    rows = [
        _row("1-stage host round trip", b, 400e-6),
        _row("4-stage host round trip", b, 1600e-6),
        _row("4-stage graph/shared_memory", b, 440e-6),
        _row("1-stage host round trip zc", b, 40e-6),
        _row("4-stage host round trip zc", b, 400e-6),
        _row("4-stage graph/shared_memory zc", b, 50e-6),
        _row("4-stage graph/atomic_queue zc", b, 80e-6),
        _row("4-stage graph/shared_memory", 4096, 1.0),  # another batch: not compared
    ]
    got = bench_graph.ratios(rows, 4, b)
    assert set(got) == {"copy", "zc"}
    assert got["copy"]["shared_memory"]["vs_single_kernel"] == pytest.approx(400 / 440, rel=1e-3)
    assert got["copy"]["shared_memory"]["vs_host_round_trip"] == pytest.approx(1600 / 440, rel=1e-3)
    assert set(got["zc"]) == {"shared_memory", "atomic_queue"}
    assert got["zc"]["shared_memory"]["vs_single_kernel"] == pytest.approx(0.8, rel=1e-3)
    assert got["zc"]["shared_memory"]["vs_host_round_trip"] == pytest.approx(8.0, rel=1e-3)
    assert got["zc"]["atomic_queue"]["vs_host_round_trip"] == pytest.approx(5.0, rel=1e-3)


# --------------------------------------------------------------------------- zero-copy series


class _FakeZeroCopy:
    """The CUDA handle's zero-copy calls on numpy rings, with its rules: ``reserve`` offers at most
    the slots whose replies were released (a reply keeps its request's slot), contiguous up to the
    ring's end; the 'kernel' answers a commit at once with ``v + adds``; ``receive_view`` is
    contiguous from the head."""

    def __init__(self, capacity, adds):
        self.capacity, self.adds = capacity, adds
        self.inq = np.zeros(capacity, VAL)
        self.outq = np.zeros(capacity, VAL)
        self.tail = self.published = self.released = 0
        self.reserved = 0
        self.copies_in = 0

    def reserve(self, n):
        start = self.tail % self.capacity
        k = min(n, self.capacity - (self.tail - self.released), self.capacity - start)
        self.reserved = k
        return self.inq[start : start + k]

    def commit(self, n):
        assert n <= self.reserved, "commit past the reserved view"
        start = self.tail % self.capacity
        self.outq[start : start + n] = self.inq[start : start + n]
        self.outq["v"][start : start + n] += self.adds
        self.tail += n
        self.published += n
        self.reserved = 0

    def receive_view(self, max_n=None, timeout=0.0, *, min_n=1):
        start = self.released % self.capacity
        k = min(max_n, self.published - self.released, self.capacity - start)
        view = self.outq[start : start + k]
        view.flags.writeable = False
        return view

    def release(self, n):
        assert self.released + n <= self.published
        self.released += n

    def terminate(self, timeout=None):
        pass


@pytest.fixture
def fake_launch(monkeypatch):
    """rg.launch as the zero-copy series call it: a graph adds its stages, a kernel 1 per pass."""
    made = []

    def launch(what, backend, capacity, **options):
        adds = len(what.stages) if isinstance(what, Graph) else 1
        made.append(_FakeZeroCopy(capacity, adds))
        return made[-1]

    monkeypatch.setattr(rg, "launch", launch)
    return made


@pytest.mark.parametrize("length", [1, 2, 4, 8])
@pytest.mark.parametrize("batch", [1, 4096])
def test_zero_copy_series_check_and_time_their_round_trips(fake_launch, length, batch):
    for series in (
        graph_hop.GraphZeroCopy("cuda", "shared_memory", length, {}),
        graph_hop.HostZeroCopy("cuda", length, {}),
    ):
        samples, extra = bench_graph._measure(series, batch, 20, VAL)  # checks one round trip
        assert len(samples) == 20
        ring = bench_graph._pow2_at_least(batch)
        assert extra == {"api": "zero-copy", "capacity": max(2, length) * ring}
        k = fake_launch[-1]
        assert k.capacity == max(2, length) * ring
        rounds = 1 + 3 + 20  # checked, warm-up, timed
        passes = length if isinstance(series, graph_hop.HostZeroCopy) else 1
        assert k.tail == k.released == rounds * passes * batch  # every reply taken and released


def test_host_zero_copy_stays_right_over_many_laps(fake_launch):
    """The first pass always lands in the block the pattern was written to once; later passes'
    copies never overwrite it, so every round trip's replies are right, not only the first's."""
    series = graph_hop.HostZeroCopy("cuda", 4, {})
    arr = bench_graph._batch(VAL, 8)
    series.open(series.ring_capacity(8), VAL)
    series.prepare(arr)
    for _ in range(25):
        out = series.round_trip(arr, check=True)
        assert list(out["id"]) == list(arr["id"]) and list(out["v"]) == list(arr["v"] + 4)


def test_a_ring_too_small_for_the_next_pass_fails_loudly(fake_launch, monkeypatch):
    """One block of ring: the next pass's reservation cannot be had while the last pass's
    replies are held, and the series says so instead of hanging or copying elsewhere."""
    series = graph_hop.HostZeroCopy("cuda", 2, {})
    monkeypatch.setattr(series, "ring_capacity", lambda ring: ring)
    with pytest.raises(SystemExit, match=r"reserve\(1024\) for the next pass gave 0"):
        bench_graph._measure(series, 1024, 5, VAL)  # a ring of 1,024


def test_every_hop_variant_is_a_list_of_defines():
    assert graph_hop.HOP_VARIANTS["default"] == ()
    for name, defines in graph_hop.HOP_VARIANTS.items():
        assert all(d and " " not in d for d in defines), name
    with pytest.raises(SystemExit, match="unknown hop variant"):
        graph_hop.check_variants(["default", "nope"])


def test_trace_summary_turns_the_trace_words_into_per_stage_figures():
    words = np.zeros(64 * 8, np.uint64)
    w = words.reshape(64, 8)
    w[0] = [9, 9, 9, 9, 9, 9, 0, 0]  # the entry takes nothing: left out even if set
    w[1] = [10, 40, 8000, 6000, 1500, 10, 0, 0]  # 10 takes, 4 polls each, 200 cycles a poll
    w[2] = [10, 20, 2000, 9000, 0, 0, 0, 0]  # the exit: takes, no slot of its own to store
    got = graph_hop.trace_summary(words, 3, sm_khz=2_000_000)  # 2 GHz: 0.5 ns a cycle
    assert [t["stage"] for t in got] == [2, 3]
    s2, s3 = got
    assert s2["hop_ns"] == 600 and s2["polls_per_take"] == 4
    assert s2["cycles_per_poll"] == 200 and s2["ns_per_poll"] == 100
    assert s2["wait_ns"] == 400 and s2["handle_ns"] == 75
    assert s3["hop_ns"] == 900 and s3["handle_ns"] is None
    line = [
        x
        for x in graph_hop.summary_lines([{"paired_per_hop": {"v": _cell(got)}}])
        if "stage 2" in x
    ]
    assert line == [
        "  trace stage 2: hop 600 ns, poll 200 cycles, 4.0 polls a take, handle 75 ns, 10 takes"
    ]


def _cell(trace):
    return {
        **graph_hop.paired_per_hop([(10e-6, 17e-6)]),
        "trace": trace,
    }


@pytest.mark.parametrize("strategy", ["atomic_queue", "shared_memory"])
def test_precompiled_sources_are_the_ones_a_launch_compiles(monkeypatch, strategy):
    """graph_hop.precompile fills the nvcc cache under the key a launch looks up: the source it
    emits must be the one rg.launch hands the CUDA loader, byte for byte."""
    import ringgen.jit as jit

    seen = {}

    class Captured(Exception):
        pass

    def capture(backend, spec, package_dir, *, source, **options):
        seen.update(source=source, backend=backend, defines=options.get("defines"))
        raise Captured

    monkeypatch.setattr(jit, "open_fused", capture)
    monkeypatch.setattr(jit, "resolve_backend", lambda backend: backend)
    g = rg.pipeline(*gs.STAGES[:8], name="bench8")
    with pytest.raises(Captured):
        rg.launch(g, backend="cuda", strategy=strategy, defines=("RG_AQ_TRACE",))
    assert seen["backend"] == "cuda" and seen["defines"] == ("RG_AQ_TRACE",)
    assert seen["source"] == graph_hop.fused_source(strategy, 8)
