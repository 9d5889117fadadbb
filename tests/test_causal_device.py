"""Causal order and rg.HLC stamps on the shared_memory device strategy (docs/graphs.md, "Causal
order"): a causal fan-in reached by paths of two lengths, fused on PoCL (persistent and relaunch;
CUDA with ``-m gpu``), against the cpu reference's host strategy; every hop's stamp read back from
the replies (each stage copies the stamp it received into its reply) must rise along each chain and
per stage across messages; the causal stage takes one entry message's inputs in the thread's
program order; the host-level history passes ringgen/testing/history.py; atomic_queue refuses
what it does not keep, naming the stage; the CUDA sources compile with nvcc."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

import ringgen as rg
from ringgen.build import collect
from ringgen.codegen import graph_kernel
from ringgen.codegen.graph_strategies import STRATEGIES
from ringgen.errors import BuildError, QueueClosedError
from ringgen.graph_fusion import check_device_keeps, counter_layout, fused_spec
from ringgen.runtime import available_backends
from ringgen.testing import random_messages
from ringgen.testing.history import assert_causal, record

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import device_strategy_backends, nvcc_compiles, requires_nvcc  # noqa: E402
import causal_device_kernels as ck  # noqa: E402
import topic_kernels as tk  # noqa: E402

pytestmark = pytest.mark.timeout(300)

BACKENDS = device_strategy_backends(["shared_memory"])
GRAPHS = [pytest.param(ck.two_paths, id="two_paths"), pytest.param(ck.with_burst, id="with_burst")]


def _messages(n: int, seed: int) -> np.ndarray:
    msgs = random_messages(ck.Hop, n, seed=seed)
    msgs["id"] = np.arange(n)
    msgs["x"] %= 1000
    return msgs


def _run(g, backend: str, msgs: np.ndarray, batch: int, **options):
    """Send ``msgs`` in batches of ``batch``, terminate, drain: (replies in arrival order, the
    host's history, the host's clock after the last receive, the sent stamps by id)."""
    with rg.launch(g, backend=backend, capacity=1024, **options) as h:
        history = record(h)
        for i in range(0, len(msgs), batch):
            assert h.send_batch(msgs[i : i + batch], timeout=120.0) == len(msgs[i : i + batch])
        h.terminate(timeout=120.0)
        out = []
        while True:
            try:
                part = h.receive_batch(timeout=5.0)
            except QueueClosedError:
                break
            if len(part):
                out.append(part)
        clock = h._flow.clock.now if hasattr(h, "_flow") and hasattr(h._flow, "clock") else None
    got = np.concatenate(out) if out else np.zeros(0, dtype=rg.dtype_of(ck.Hop))
    sent = [e.stamp for e in history.events["host"] if e.kind == "send"]
    return got, history, clock, sent


def _values(arr: np.ndarray) -> list:
    """The replies without their stamps (which differ between strategies): sorted rows."""
    return sorted(zip(arr["id"].tolist(), arr["x"].tolist(), arr["src"].tolist()))


@pytest.mark.parametrize("make", GRAPHS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_a_causal_fan_in_on_shared_memory_equals_the_reference_and_keeps_causal_order(
    backend, make
):
    name, options = backend
    g = make()
    msgs = _messages(600, seed=21)
    got, history, clock, sent = _run(g, name, msgs, 150, **options)
    want, _, _, _ = _run(g, "cpu", msgs, 150)
    assert len(want) > len(msgs) and _values(got) == _values(want)

    # the host stamped every message it sent, in send order, and the device received that stamp
    assert len(sent) == len(msgs) and sent == sorted(set(sent))
    entry = np.array(sent, dtype=np.uint64)[got["id"]]
    assert (got["seen_source"] == entry).all()

    # every chain rises: host -> source -> (mid | burst) -> merge -> host
    direct = got["src"] == 0
    longer = ~direct
    assert (got["seen_mid"][direct] == 0).all()
    assert (got["seen_source"][direct] < got["seen_merge"][direct]).all()
    assert (got["seen_source"][longer] < got["seen_mid"][longer]).all()
    assert (got["seen_mid"][longer] < got["seen_merge"][longer]).all()
    assert (got["seen_merge"] < got["stamp"]).all()
    # whatever a handler wrote into the stamp (source writes 7) is replaced
    assert not (got["seen_mid"][longer] == 7).any()

    # per stage across messages: merge's stamps rise in arrival order (the exit), source's and
    # the longer path's stage's in send order
    assert (np.diff(got["stamp"].astype(np.int64)) > 0).all()
    by_id = np.argsort(got["id"], kind="stable")
    for mask in (direct, longer):
        sel = by_id[mask[by_id]]
        assert (np.diff(got["seen_merge"][sel].astype(np.int64)) > 0).all()

    # the causal stage took each entry message's inputs before the next one's, and within one,
    # source's message before what source's message caused on the longer path
    ids = got["id"].tolist()
    assert ids == sorted(ids)
    for i in np.flatnonzero(longer):
        j = np.flatnonzero(direct & (got["id"] == got["id"][i]))
        assert len(j) == 1 and j[0] < i

    # the host-level history is causally consistent, and the host received the exit's stamps
    assert_causal(history, causal=["host"])
    assert sum(1 for e in history.events["host"] if e.kind == "recv") == len(got)
    assert clock >= int(got["stamp"].max())
    fanned = Counter(got["src"].tolist())
    assert fanned[0] == len(msgs)


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_unstamped_hop_between_stamped_stages_keeps_the_chain_rising(backend):
    """source >> strip >> restamp: strip's Bare carries no stamp, so restamp receives it as if
    stamped with the largest stamp its thread has seen; its reply is still above the host's."""
    name, options = backend
    g = rg.pipeline(ck.source, ck.strip, ck.restamp, name="unstamped_hop")
    msgs = _messages(200, seed=4)
    got, history, _, sent = _run(g, name, msgs, 50, **options)
    assert sorted(got["id"].tolist()) == list(range(len(msgs)))
    assert (got["x"] == msgs["x"][got["id"]] + 1).all() and (got["src"] == 9).all()
    assert (got["stamp"] > np.array(sent, dtype=np.uint64)[got["id"]] + 1).all()
    assert (np.diff(got["stamp"].astype(np.int64)) > 0).all()
    assert_causal(history)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_bridged_stamped_message_sent_one_by_one_is_stamped_every_hop(backend):
    """A bridged message (a Str) carries its stamp in its rg.HLC field; send() and receive() of
    single objects stamp and receive as send_batch and receive_batch do."""
    name, options = backend
    g = rg.pipeline(tk.note_source, tk.note_sub, name="notes")
    msgs = [tk.Note(id=i, text=f"note {i}", stamp=99) for i in range(40)]
    with rg.launch(g, backend=name, capacity=256, **options) as h:
        history = record(h)
        for m in msgs[:10]:
            h.send(m, timeout=60.0)
        h.send_batch(msgs[10:], timeout=60.0)
        got = [h.receive(timeout=60.0) for _ in range(10)]
        while len(got) < len(msgs):
            got += list(h.receive_batch(timeout=5.0))
        clock = h._flow.clock.now
    sent = [m.stamp for m in msgs]  # stamped in place by the host's clock
    assert sent == sorted(set(sent)) and 99 not in sent
    assert [(r.id, r.text) for r in got] == [(m.id + 1000, m.text) for m in msgs]
    assert all(r.stamp > s + 1 for r, s in zip(got, sent))  # two hops above the host's stamp
    assert all(a.stamp < b.stamp for a, b in zip(got, got[1:]))
    assert clock >= got[-1].stamp
    assert_causal(history)


def test_shared_memory_orders_a_stamped_graph_and_gives_each_stamping_stage_a_clock():
    g = ck.two_paths()
    check_device_keeps(g)
    assert STRATEGIES["shared_memory"].check(g) == "graph_two_paths"
    assert fused_spec(g).ordered
    assert fused_spec(rg.pipeline(ck.source, ck.mid, name="stamped")).ordered
    layout = counter_layout(g)
    assert layout.clocks == ("source", "mid", "merge")
    assert layout.clock_at("merge") == layout.total - 1
    assert counter_layout(rg.pipeline(ck.source, ck.strip)).clocks == ("source",)


def test_atomic_queue_refuses_a_causal_stage_and_a_stamp_naming_the_stage():
    causal = STRATEGIES["atomic_queue"]
    with pytest.raises(BuildError) as err:
        causal.check(ck.two_paths())
    text = str(err.value)
    assert "graph two_paths: stage(s) merge declare order='causal'" in text
    assert "side by side on their own blocks" in text
    assert "strategy='shared_memory'" in err.value.hint
    stamped = rg.pipeline(ck.source, ck.mid, name="stamped")
    with pytest.raises(BuildError, match=r"graph stamped: stage source's message Hop has the "):
        causal.check(stamped)
    with pytest.raises(BuildError, match="side by side on their own blocks"):
        check_device_keeps(stamped, "atomic_queue")
    with pytest.raises(BuildError, match=r"stage\(s\) merge declare order='causal'"):
        graph_kernel.check_fits(ck.two_paths(), "atomic_queue")


def test_a_stamped_graph_behind_an_unstamped_entry_is_refused_naming_both():
    g = rg.pipeline(ck.bare_source, ck.mid, name="bare_entry")
    for strategy in STRATEGIES.values():
        with pytest.raises(BuildError) as err:
            strategy.check(g)
    assert "stage bare_source's message Hop has the rg.HLC stamp stamp" in str(err.value)
    with pytest.raises(BuildError, match=r"the entry bare_source's input Bare has none"):
        fused_spec(g)


@pytest.mark.gpu
@pytest.mark.skipif("cuda" not in available_backends(), reason="no CUDA")
def test_on_cuda_the_default_strategy_runs_a_causal_graph():
    """CUDA's default strategy is shared_memory: a causal graph now runs there by default;
    atomic_queue refuses it at launch, naming the stage, before any kernel starts."""
    msgs = _messages(300, seed=8)
    got, history, _, _ = _run(ck.two_paths(), "cuda", msgs, 100)
    assert (got["src"] == 0).sum() == len(msgs)
    assert (np.diff(got["stamp"].astype(np.int64)) > 0).all()
    assert_causal(history)
    with pytest.raises(BuildError, match=r"stage\(s\) merge declare order='causal'"):
        rg.launch(ck.two_paths(), backend="cuda", strategy="atomic_queue")


@requires_nvcc
def test_the_fused_cuda_source_of_a_stamped_causal_graph_compiles_with_nvcc(tmp_path):
    source = graph_kernel.emit_fused(collect(ck), ck.with_burst(), "cuda")
    assert "rg_clk[" in source and "rg_graph_with_burst_ring" in source
    nvcc_compiles(source, "the fused graph source")


class _ZeroCopyKernel:
    """Stands in for a CUDA kernel's zero-copy calls: the input ring is an array, committed
    slots are kept, and receive_view hands back what a test puts in ``replies``."""

    backend = "cuda"

    def __init__(self) -> None:
        self.ring = np.zeros(8, dtype=rg.dtype_of(ck.Hop))
        self.committed: list = []
        self.replies = np.zeros(0, dtype=rg.dtype_of(ck.Hop))

    def reserve(self, n: int) -> np.ndarray:
        return self.ring[:n]

    def commit(self, n: int) -> None:
        self.committed.append(self.ring[:n].copy())

    def receive_view(self, max_n, timeout, *, min_n=1) -> np.ndarray:
        view = self.replies.view()
        view.flags.writeable = False
        return view


def test_zero_copy_commits_are_stamped_and_viewed_replies_received():
    """reserve/commit (CUDA's zero-copy send) stamp the committed slots in place with the host's
    clock; receive_view's replies advance it (receive rule), as send_batch/receive_batch do."""
    from ringgen.runtime.graph_device import FusedGraphHandle

    kernel = _ZeroCopyKernel()
    h = FusedGraphHandle(ck.two_paths(), kernel, strategy="shared_memory")
    history = record(h)
    view = h.reserve(5)
    view["id"] = np.arange(5)
    view["stamp"] = 3  # replaced
    h.commit(3)
    first = kernel.committed[0]["stamp"]
    assert len(first) == 3 and (np.diff(first.astype(np.int64)) == 1).all() and first[0] > 3
    assert (view["stamp"][3:] == 3).all()  # not committed: not stamped
    far = int(first[-1]) + (10_000_000 << 16)  # a reply stamped 10 s ahead of the host's clock
    kernel.replies = np.zeros(2, dtype=rg.dtype_of(ck.Hop))
    kernel.replies["stamp"] = [far - 1, far]
    h.receive_view(2)
    assert h._flow.clock.now == far + 1
    h.reserve(2)
    h.commit(2)
    assert int(kernel.committed[1]["stamp"][0]) == far + 2  # the next send is above the reply
    assert_causal(history)
