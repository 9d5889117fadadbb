"""Drop policies and the host as a topic's publisher and subscriber on Metal (issue 16, items 1 and
4): the emitted graph driver (``ringgen.codegen.metal_graph``) compiled with the shim and run on CPU
threads. A slow kernel subscriber (``limits``: a stage taking a few messages per command buffer)
drops exactly what a model of its own queue says, by its policy, and never holds back the
publisher or the other subscribers; a host subscription gets every copy under ``Block`` (the spill
rule: the host waits in the run) and exactly the kept ones under a drop policy; the host's
published messages reach every subscriber in order beside a kernel publisher's; results equal the
reference composition or the host strategy on the cpu backend, and per subscriber
``delivered + dropped + depth == published``."""

from __future__ import annotations

import sys
from pathlib import Path

import attrs
import numpy as np
import pytest

import ringgen as rg
from ringgen.build import collect
from ringgen.codegen.metal import emit
from ringgen.codegen.metal_graph import skipped_graphs, topic_context
from ringgen.errors import QueueClosedError
from ringgen.graphs import named
from ringgen.metal_shim import available_compilers
from ringgen.metal_shim.graph_executor import build_graph_executor
from ringgen.testing import random_messages
from ringgen.testing.graphs import reference_graph

sys.path.insert(0, str(Path(__file__).resolve().parent))
import topic_device_kernels as dk  # noqa: E402
import topic_kernels as tk  # noqa: E402

pytestmark = [
    pytest.mark.skipif(not available_compilers(), reason="no g++ or clang++"),
    pytest.mark.timeout(600),
]

#: the longest any one wait on a cpu-backend kernel may take
WAIT = 60.0
POLICIES = [rg.DropOldest(8), rg.DropNewest(8)]


def _exits_graph(policy) -> rg.Graph:
    """``publish`` >> topic ``scores`` (``policy``) >> ``dsub0``, ``dsub1``, both exits."""
    scores = rg.topic("scores", dk.Score, policy=policy)
    return rg.graph(dk.publish >> scores, scores >> dk.SUBSCRIBERS[:2], name=f"x_{policy.name}")


def _build(module, graphs, work: Path):
    unit = attrs.evolve(collect(module), graphs=tuple(graphs))
    path = work / f"{unit.name}.metal"
    path.write_text(emit(unit)[path.name])
    return unit, build_graph_executor(path, unit, work / "build")


@pytest.fixture(scope="module")
def device(tmp_path_factory):
    """(unit, executor) of topic_device_kernels with drop-policy and host-topic graphs."""
    graphs = [_exits_graph(p) for p in POLICIES]
    graphs += [named(dk.fan(4, policy=p), f"fan4_{p.name}") for p in POLICIES]
    graphs += [dk.watched(n) for n in (1, 4, 16)]
    graphs += [named(dk.watched(2, policy=rg.DropOldest(100)), "watch_old")]
    graphs += [named(dk.watched(2, policy=rg.DropNewest(100)), "watch_new")]
    graphs += [dk.hosted(4, host_subscribes=True), dk.hosted(4, kernel_publishes=False)]
    return _build(dk, graphs, tmp_path_factory.mktemp("metal_topics_host"))


@pytest.fixture(scope="module")
def stamped(tmp_path_factory):
    """(unit, executor) of topic_kernels (``rg.HLC``-stamped, so run ordered): ``source`` and the
    host publish to ``scores``, ``sub0`` and the host subscribe, under Block and drop policies."""
    graphs = []
    for name, policy in [("both", None), ("both_old", rg.DropOldest(100))]:
        graphs.append(_stamped_graph(name, policy))
    graphs.append(_stamped_graph("both_new", rg.DropNewest(100)))
    return _build(tk, graphs, tmp_path_factory.mktemp("metal_topics_stamped"))


def _stamped_graph(name: str, policy) -> rg.Graph:
    scores = rg.topic("scores", tk.Tick, policy=policy)
    return rg.graph(tk.source >> scores, rg.HOST >> scores, scores >> [tk.sub0, rg.HOST], name=name)


def _graph(unit, name):
    return next(g for g in unit.graphs if g.name == name)


def _messages(n: int, seed: int, first_id: int = 0, cls=dk.Score) -> np.ndarray:
    msgs = random_messages(cls, n, seed=seed)
    msgs["id"] = np.arange(first_id, first_id + n)
    return msgs


def _rows(arr: np.ndarray, fields=("id", "x", "src")) -> list:
    return sorted(zip(*[arr[f].tolist() for f in fields]))


def _check_invariant(topics) -> None:
    """Per subscriber of every topic: delivered + dropped + depth == published."""
    for t in topics.values():
        for name, s in t.subscribers.items():
            assert s.delivered + s.dropped + s.depth == t.published, (t.name, name, s)


def _model(arrivals: list, keep: int, oldest: bool, take: int, capacity: int) -> tuple:
    """What the driver's slow subscriber keeps: per pass, its own queue (``keep`` slots) drains
    into its input queue (``capacity``), each arrival goes straight in while its own queue is empty
    and the input has room, else into its own queue (a full one drops its oldest, or the arrival),
    then it takes ``take`` messages. Returns (the ids it takes, in order; how many it dropped)."""
    own: list = []
    queued: list = []
    taken: list = []
    dropped = 0
    passes = list(arrivals)
    while passes or own or queued:
        batch = passes.pop(0) if passes else []
        while own and len(queued) < capacity:
            queued.append(own.pop(0))
        for m in batch:
            if not own and len(queued) < capacity:
                queued.append(m)
            elif len(own) < keep:
                own.append(m)
            elif oldest:
                own.pop(0)
                own.append(m)
                dropped += 1
            else:
                dropped += 1
        taken += queued[:take]
        del queued[:take]
    return taken, dropped


@pytest.mark.parametrize("policy", POLICIES, ids=lambda p: p.name)
@pytest.mark.parametrize("workers", [1, 3])
def test_a_slow_kernel_subscriber_drops_exactly_by_its_policy(device, policy, workers):
    """dsub1 takes 7 messages per command buffer while publish hands on 1,024 a pass: its queue of
    8 drops the rest, exactly as the model says; dsub0 (fast) gets every message, as the reference
    composition; the publisher is never held back."""
    unit, ex = device
    g = _graph(unit, f"x_{policy.name}")
    msgs = _messages(3000, seed=13)
    run = ex.run(g.name, msgs, limits={"dsub1": 7}, workers=workers)
    cap = g.spec("publish").capacity
    arrivals = [list(range(i, min(i + cap, len(msgs)))) for i in range(0, len(msgs), cap)]
    kept, dropped = _model(arrivals, 8, policy.name == "drop_oldest", 7, g.spec("dsub1").capacity)
    slow = run.exits["dsub1"]
    assert sorted(slow["id"].tolist()) == kept  # in order with one thread; as a set on three
    if workers == 1:
        assert slow["id"].tolist() == kept
    assert (slow["x"] == (msgs["x"][slow["id"]] % 1000 + 1) * 3 + 1).all()
    scores = run.topics["scores"]
    assert scores.published == len(msgs)
    s1 = scores.subscribers["dsub1"]
    assert (s1.delivered, s1.dropped, s1.depth, s1.capacity) == (len(kept), dropped, 0, 8)
    assert dropped > 1900
    s0 = scores.subscribers["dsub0"]
    assert (s0.delivered, s0.dropped, s0.depth) == (len(msgs), 0, 0)
    want = reference_graph(g, msgs).exits["dsub0"]
    assert _rows(run.exits["dsub0"]) == _rows(want)
    # the publisher ran as if dsub1 were not there: 1,024 messages a pass
    assert run.controls["publish"]["processed"] == len(msgs)
    assert run.passes >= len(kept) // 7
    _check_invariant(run.topics)


@pytest.mark.parametrize("policy", POLICIES, ids=lambda p: p.name)
def test_subscribers_before_a_fan_in_drop_ordered_subsets_and_never_hold_the_publisher(
    device, policy
):
    """Four subscribers fan in at gather's 1,024 slots, so all four fall behind the publisher's
    1,024 a pass (dsub3, taking 5 a command buffer, the most) and drop: each hands gather an
    ordered subset of the reference's rows, counted; the publisher took every message."""
    unit, ex = device
    g = _graph(unit, f"fan4_{policy.name}")
    msgs = _messages(3000, seed=17)
    run = ex.run(g.name, msgs, limits={"dsub3": 5})
    out = run.exits["gather"]
    want = reference_graph(g, msgs).exits["gather"]
    scores = run.topics["scores"]
    assert scores.published == len(msgs) == run.controls["publish"]["processed"]
    dropped = {}
    for k in range(4):
        mine, ref = out[out["src"] == k + 1], want[want["src"] == k + 1]
        ids = mine["id"].astype(np.int64)
        assert np.all(np.diff(ids) > 0), f"dsub{k}"  # a subsequence, in order, nothing twice
        assert _rows(mine) == [r for r in _rows(ref) if r[0] in set(ids.tolist())]
        sub = scores.subscribers[f"dsub{k}"]
        assert sub.delivered == len(mine) and sub.dropped == len(msgs) - len(mine), f"dsub{k}"
        dropped[k] = sub.dropped
    assert dropped[3] > max(dropped[k] for k in range(3)) and dropped[3] > 1900
    _check_invariant(run.topics)


def _cpu(g, entries: np.ndarray, pubs=None, subscribed: bool = True) -> tuple:
    """The host strategy on the cpu backend: send ``entries``, publish ``pubs`` to ``scores``,
    terminate; returns (the exit's replies, the host subscription's copies or None, the stats)."""

    def drain(receive_batch) -> np.ndarray:
        out = []
        while True:
            try:
                part = receive_batch(4096, 5.0)
            except QueueClosedError:
                break
            if len(part):
                out.append(part)
        return np.concatenate(out) if out else np.zeros(0, entries.dtype)

    with rg.launch(g, backend="cpu", capacity=4096) as h:
        sub = h.subscribe("scores") if subscribed else None
        h.send_batch(entries, timeout=WAIT)
        if pubs is not None:
            assert h.publish_batch("scores", pubs, timeout=WAIT) == len(pubs)
        h.terminate(timeout=WAIT)
        replies = drain(lambda n, t: h.receive_batch(n, timeout=t))
        copies = drain(sub.receive_batch) if sub is not None else None
        return replies, copies, h.stats()


@pytest.mark.parametrize("n_subs", [1, 4, 16])
def test_the_host_subscribes_beside_kernel_subscribers_and_equals_the_host_strategy(device, n_subs):
    """Under Block the host's subscription takes every copy (the host waits in the run, so it
    spills rather than deadlock on its unread copies), in the publisher's order; 3,000 messages,
    past every queue's 1,024 slots."""
    unit, ex = device
    g = _graph(unit, f"dwatch{n_subs}")
    msgs = _messages(3000, seed=n_subs)
    run = ex.run(g.name, msgs)
    copies = run.subscriptions["scores"]
    assert copies["id"].tolist() == list(range(len(msgs)))
    assert (copies["x"] == msgs["x"] % 1000 + 1).all() and (copies["src"] == 0).all()
    got = run.exits["gather"]
    assert len(got) == n_subs * len(msgs)
    want, want_copies, stats = _cpu(g, msgs)
    assert _rows(got) == _rows(want) and _rows(copies) == _rows(want_copies)
    scores = run.topics["scores"]
    assert scores.published == len(msgs) == stats.topics["scores"].published
    assert set(scores.subscribers) == {f"dsub{k}" for k in range(n_subs)} | {"host"}
    for sub, s in scores.subscribers.items():
        assert (s.delivered, s.dropped, s.depth) == (len(msgs), 0, 0), sub
    _check_invariant(run.topics)


@pytest.mark.parametrize("name,oldest", [("watch_old", True), ("watch_new", False)])
def test_an_unread_host_subscription_drops_exactly_and_the_graph_keeps_serving(
    device, name, oldest
):
    unit, ex = device
    g = _graph(unit, name)
    msgs = _messages(3000, seed=23)
    run = ex.run(g.name, msgs)
    kept = run.subscriptions["scores"]["id"].tolist()
    assert kept == (list(range(2900, 3000)) if oldest else list(range(100)))
    host = run.topics["scores"].subscribers["host"]
    assert (host.delivered, host.dropped, host.depth, host.capacity) == (100, 2900, 0, 100)
    # the kernel subscribers (the topic's policy is theirs too, and gather's 1,024 slots hold
    # them back) each handed gather an ordered subset, counted; the exit was served throughout
    out = run.exits["gather"]
    for k in range(2):
        ids = out["id"][out["src"] == k + 1].astype(np.int64)
        assert np.all(np.diff(ids) > 0)
        assert run.topics["scores"].subscribers[f"dsub{k}"].delivered == len(ids)
    _check_invariant(run.topics)


def test_the_host_and_a_kernel_publish_together_fifo_per_publisher_at_every_subscriber(device):
    unit, ex = device
    g = _graph(unit, "dhost4w")
    entries, pubs = _messages(2500, seed=5), _messages(1500, seed=6, first_id=100_000)
    run = ex.run(g.name, entries, publish={"scores": pubs})
    got, copies = run.exits["gather"], run.subscriptions["scores"]
    # the host's subscription sees each publisher's messages in its order
    ids = copies["id"].tolist()
    assert sorted(ids) == sorted(entries["id"].tolist() + pubs["id"].tolist())
    assert [i for i in ids if i < 100_000] == entries["id"].tolist()
    assert [i for i in ids if i >= 100_000] == pubs["id"].tolist()
    for k in range(4):  # one order per topic: every kernel subscriber's is the host's
        assert got["id"][got["src"] == k + 1].tolist() == ids
    want, want_copies, stats = _cpu(g, entries, pubs)
    assert _rows(got) == _rows(want) and _rows(copies) == _rows(want_copies)
    scores = run.topics["scores"]
    assert scores.published == len(entries) + len(pubs) == stats.topics["scores"].published
    assert {s.delivered for s in scores.subscribers.values()} == {len(entries) + len(pubs)}
    assert (run.published["scores"] == pubs).all()
    _check_invariant(run.topics)


def test_the_host_publishes_alone(device):
    unit, ex = device
    g = _graph(unit, "dhostonly4")
    entries, pubs = _messages(300, seed=3), _messages(2000, seed=4, first_id=100_000)
    run = ex.run(g.name, entries, publish={"scores": pubs})
    got = run.exits["gather"]
    for k in range(4):
        mine = got[got["src"] == k + 1]
        assert mine["id"].tolist() == pubs["id"].tolist()
    assert got["id"][got["src"] == 0].tolist() == entries["id"].tolist()
    want, _, stats = _cpu(g, entries, pubs, subscribed=False)
    assert _rows(got) == _rows(want)
    assert run.topics["scores"].published == len(pubs) == stats.topics["scores"].published
    assert run.controls["publish"]["processed"] == len(entries)
    assert all(run.controls[f"dsub{k}"]["processed"] == len(pubs) for k in range(4))
    _check_invariant(run.topics)


def test_the_stamped_host_publishes_and_subscribes_in_one_order(stamped):
    """An ``rg.HLC``-stamped graph runs ordered: the host stamps what it sends and publishes, its
    subscription and sub0 see one sequence (source's 200 in order, then the host's 301), and the
    stamps rise along it; equal to the host strategy's as multisets."""
    unit, ex = stamped
    assert skipped_graphs(unit) == {}
    g = _graph(unit, "both")
    entries = _messages(200, seed=9, cls=tk.Tick)
    pubs = _messages(301, seed=10, first_id=200, cls=tk.Tick)
    run = ex.run(g.name, entries, publish={"scores": pubs})
    seen = run.subscriptions["scores"]
    assert seen["id"].tolist() == list(range(501))  # the sends first, then the publishes
    assert run.exits["sub0"]["id"].tolist() == seen["id"].tolist()
    assert (np.diff(seen["stamp"].astype(np.int64)) > 0).all()
    sent = run.published["scores"]["stamp"]
    assert (np.diff(sent.astype(np.int64)) > 0).all() and (sent > run.sent["stamp"].max()).all()
    assert run.clock > int(seen["stamp"].max())
    want, want_copies, _ = _cpu(g, entries, pubs)
    fields = ("id", "x", "src")
    assert _rows(run.exits["sub0"], fields) == _rows(want, fields)
    assert _rows(seen, fields) == _rows(want_copies, fields)
    _check_invariant(run.topics)


@pytest.mark.parametrize("name,kept", [("both_old", range(900, 1000)), ("both_new", range(100))])
def test_a_stamped_host_subscription_drops_by_its_policy_as_the_host_strategy(stamped, name, kept):
    """As tests/test_topics.py's host-strategy test: 1,000 published, the unread subscription
    keeps 100 by its policy (the host strategy reads it only after publishing, too); sub0, which
    takes one message a command buffer in an ordered graph, never holds 100 and drops none."""
    unit, ex = stamped
    g = _graph(unit, name)
    pubs = _messages(1000, seed=4, cls=tk.Tick)
    run = ex.run(g.name, pubs[:0], publish={"scores": pubs})
    assert run.subscriptions["scores"]["id"].tolist() == list(kept)
    scores = run.topics["scores"]
    host = scores.subscribers["host"]
    assert (scores.published, host.delivered, host.dropped, host.depth) == (1000, 100, 900, 0)
    assert scores.subscribers["sub0"].dropped == 0
    assert run.exits["sub0"]["id"].tolist() == list(range(1000))
    with rg.launch(g, backend="cpu") as h:
        sub = h.subscribe("scores")
        for i in range(0, 1000, 10):  # a drop policy never makes the publisher wait
            assert h.publish_batch("scores", pubs[i : i + 10], block=False) == 10
        got = []
        while len(part := sub.receive_batch(max_n=1000)):
            got += [int(i) for i in part["id"]]
        assert got == list(kept)
    _check_invariant(run.topics)


def test_the_topic_counts_are_laid_out_per_subscriber_and_the_api_names_what_is_wrong(device):
    unit, ex = device
    g = _graph(unit, "dhost4w")
    layout = topic_context(g)
    (t,) = layout["topics"]
    assert [s["name"] for s in t["subscribers"]] == ["dsub0", "dsub1", "dsub2", "dsub3", "host"]
    assert [s["counts"] for s in t["subscribers"]] == [1, 4, 7, 10, 13]
    assert layout["n_counts"] == 16 and t["host_pub"] == 0 and t["host_sub"] == 0
    msgs = _messages(4, seed=1)
    with pytest.raises(ValueError, match="does not publish to topic 'nope'"):
        ex.run(g.name, msgs, publish={"nope": msgs})
    with pytest.raises(ValueError, match="does not publish to topic 'scores'"):
        ex.run("dwatch4", msgs, publish={"scores": msgs})
    with pytest.raises(ValueError, match="limit dsub9=3 must name a stage"):
        ex.run(g.name, msgs, limits={"dsub9": 3})
    with pytest.raises(ValueError, match="limit dsub0=0"):
        ex.run(g.name, msgs, limits={"dsub0": 0})


def test_the_topic_driver_builds_with_warnings_as_errors(tmp_path):
    """Drop queues, host buffers and an ordered graph's clocks beside unordered graphs: no unused
    helper or variable, with every compiler present."""
    scores = rg.topic("scores", dk.Score, policy=rg.DropNewest(4))
    graphs = (dk.watched(2), dk.hosted(2, kernel_publishes=False), named(dk.fan(2), "plain"))
    dropping = rg.graph(dk.publish >> scores, scores >> [dk.dsub0, rg.HOST], name="dropping")
    unit = attrs.evolve(collect(dk), graphs=graphs + (dropping,))
    path = tmp_path / f"{unit.name}.metal"
    path.write_text(emit(unit)[path.name])
    for cc in available_compilers():
        ex = build_graph_executor(path, unit, tmp_path / cc, compiler=cc, werror=True)
        run = ex.run("dropping", _messages(50, seed=2))
        assert run.subscriptions["scores"]["id"].tolist() == [0, 1, 2, 3]
