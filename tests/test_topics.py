"""Topics (rg.topic): declaration checks, and every host backend against the cpu reference for 1, 4
and 16 subscribers, Block and drop policies, and the host publishing and subscribing."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pytest

import ringgen as rg
from ringgen.errors import QueueClosedError
from ringgen.runtime import available_backends
from ringgen.testing import random_messages

sys.path.insert(0, str(Path(__file__).resolve().parent))
import graph_kernels as gk  # noqa: E402
import topic_kernels as tk  # noqa: E402

pytestmark = pytest.mark.timeout(300)

#: (backend, launch options): OpenCL in relaunch mode (PoCL runs one persistent kernel per worker
#: thread, and a topic graph has up to 17 stages; docs/graphs.md)
BACKENDS = [
    pytest.param(("cpu", {}), id="cpu"),
    pytest.param(
        ("c", {}),
        id="c",
        marks=pytest.mark.skipif("c" not in available_backends(), reason="no C compiler"),
    ),
    pytest.param(
        ("opencl", {"mode": "relaunch"}),
        id="opencl",
        marks=pytest.mark.skipif("opencl" not in available_backends(), reason="no OpenCL"),
    ),
]

FIELDS = ["id", "x", "src"]  # everything but the stamp, which each run fills with its own clock


def _launch(g, backend, **options):
    name, extra = backend
    return rg.launch(g, backend=name, **extra, **options)


def _drain(handle, exit: str) -> np.ndarray:
    """Every reply of ``exit`` left after a terminate, in order."""
    out = []
    while True:
        try:
            part = handle.receive_batch(timeout=5.0, exit=exit)
        except QueueClosedError:
            break
        if len(part):
            out.append(part)
    return np.concatenate(out) if out else np.zeros(0, dtype=rg.dtype_of(tk.Tick))


def _fan_out(n_subs: int, policy=None):
    scores = rg.topic("scores", tk.Tick, policy=policy)
    return rg.graph(tk.source >> scores, scores >> tk.SUBSCRIBERS[:n_subs], name=f"fan{n_subs}")


def _run_fan_out(backend, n_subs: int, msgs: np.ndarray) -> tuple[dict, object]:
    with _launch(_fan_out(n_subs), backend) as h:
        h.send_batch(msgs)
        h.terminate(timeout=120)
        out = {s.spec.name: _drain(h, s.spec.name) for s in tk.SUBSCRIBERS[:n_subs]}
        return out, h.stats()


# ------------------------------------------------------------------------------- declaration


def test_a_publisher_of_another_type_is_a_build_error_naming_topic_kernel_and_types():
    scores = rg.topic("scores", tk.Tick)
    with pytest.raises(rg.BuildError) as err:
        rg.graph(gk.parse >> scores)  # parse outputs graph_kernels.Mid
    text = str(err.value)
    for part in ("parse", "scores", "graph_kernels.Mid", "topic_kernels.Tick", "graph_kernels.py:"):
        assert part in text, text
    assert f"{Path(__file__).name}:" in text  # the line that wrote the link


def test_a_subscriber_of_another_type_is_a_build_error_naming_both_types():
    scores = rg.topic("scores", tk.Tick)
    with pytest.raises(rg.BuildError, match=r"topic scores .*topic_kernels\.Tick.*kernel parse"):
        rg.graph(tk.source >> scores, scores >> gk.parse)


def test_a_topic_needs_a_publisher_and_a_subscriber():
    scores = rg.topic("scores", tk.Tick)
    with pytest.raises(rg.BuildError, match="topic scores has no subscriber"):
        rg.graph(tk.source >> scores)
    with pytest.raises(rg.BuildError, match="topic scores has no publisher"):
        rg.graph(tk.source, scores >> tk.SUBSCRIBERS[0])


def test_a_causal_subscriber_needs_a_topic_that_never_drops():
    scores = rg.topic("scores", tk.Tick, policy=rg.DropOldest(8))
    with pytest.raises(rg.BuildError, match="kernel merge .*topic scores must not drop"):
        rg.graph(tk.source >> scores, scores >> tk.merge)


def test_policies_validate_their_capacity_and_the_topic_its_policy():
    with pytest.raises(ValueError, match="capacity must be an integer >= 1"):
        rg.DropNewest(0)
    with pytest.raises(TypeError, match="policy must be"):
        rg.topic("scores", tk.Tick, policy="drop")
    with pytest.raises(rg.BuildError, match="topic name"):
        rg.topic("not a name", tk.Tick)


def test_a_topic_graph_has_stages_exits_and_the_topic():
    g = rg.graph(tk.source >> (t := rg.topic("scores", tk.Tick)), t >> tk.SUBSCRIBERS[:3])
    assert g.entry == "source"
    assert g.exits == ("sub0", "sub1", "sub2")
    (spec,) = g.topics
    assert spec.publishers == ("source",) and spec.subscribers == ("sub0", "sub1", "sub2")
    assert g.consumers("source") == ("sub0", "sub1", "sub2")
    assert g.producers("sub1") == ("source",)


def test_the_host_must_be_declared_to_publish_or_subscribe():
    with rg.launch(_fan_out(1), backend="cpu") as h:
        with pytest.raises(
            ValueError, match=r"does not publish to topic scores.*rg.HOST >> scores"
        ):
            h.publish("scores", tk.Tick(id=1, x=1, src=0, stamp=0))
        with pytest.raises(ValueError, match=r"does not subscribe to topic scores"):
            h.subscribe("scores")
        with pytest.raises(ValueError, match="no topic 'nope'"):
            h.subscribe("nope")


# ----------------------------------------------------------------- differential, per backend


@pytest.fixture(scope="module")
def reference():
    """The cpu reference's outputs for 1, 4 and 16 subscribers over the same messages."""
    msgs = random_messages(tk.Tick, 3000, seed=5)
    return msgs, {n: _run_fan_out(("cpu", {}), n, msgs)[0] for n in (1, 4, 16)}


@pytest.mark.parametrize("n_subs", [1, 4, 16])
@pytest.mark.parametrize("backend", BACKENDS)
def test_every_subscriber_gets_every_message_as_the_reference_does(backend, n_subs, reference):
    msgs, ref = reference
    got, stats = _run_fan_out(backend, n_subs, msgs)
    want = ref[n_subs]
    assert set(got) == set(want) and len(got) == n_subs
    for name in got:
        assert len(got[name]) == len(msgs)
        for f in FIELDS:  # in the same order: FIFO from the one publisher
            np.testing.assert_array_equal(got[name][f], want[name][f], err_msg=f"{name}.{f}")
        assert np.all(np.diff(got[name]["stamp"].astype(np.int64)) > 0)  # stamps increase
    t = stats.topics["scores"]
    assert t.published == len(msgs)
    assert {s: (v.delivered, v.dropped) for s, v in t.subscribers.items()} == {
        s: (len(msgs), 0) for s in got
    }


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_host_publishes_and_subscribes(backend):
    scores = rg.topic("scores", tk.Tick)
    g = rg.graph(tk.source >> scores, rg.HOST >> scores, scores >> [tk.sub0, rg.HOST])
    msgs = random_messages(tk.Tick, 500, seed=9)
    with _launch(g, backend) as h:
        sub = h.subscribe("scores")
        h.send_batch(msgs[:200])
        assert h.publish_batch("scores", msgs[200:]) == 300
        h.publish("scores", tk.Tick(id=9999, x=1, src=3, stamp=0))
        seen = []
        deadline = time.monotonic() + 60
        while len(seen) < 501 and time.monotonic() < deadline:
            part = sub.receive_batch(timeout=0.5)
            seen += [int(i) for i in part["id"]]
        h.terminate(timeout=60)
        at_sub0 = _drain(h, "sub0")
        with pytest.raises(QueueClosedError):
            sub.receive(timeout=1.0)
    # the host's copy and sub0's input are the same sequence: what source published (200, in
    # order) interleaved with what the host published (301, in order)
    assert sorted(seen) == sorted(list(range(500)) + [9999])
    assert [i for i in seen if i < 200] == list(range(200))
    assert [i for i in seen if i >= 200] == list(range(200, 500)) + [9999]
    assert [int(i) for i in at_sub0["id"]] == seen


def test_a_host_subscriber_back_pressures_the_publisher_under_block():
    scores = rg.topic("scores", tk.Tick)
    g = rg.graph(tk.source >> scores, rg.HOST >> scores, scores >> [tk.sub0, rg.HOST])
    msgs = random_messages(tk.Tick, 100, seed=2)
    with rg.launch(g, backend="cpu", edge_capacity=64) as h:
        sub = h.subscribe("scores")
        assert h.publish_batch("scores", msgs, block=False) == 64  # the host's queue holds 64
        with pytest.raises(rg.QueueFullError) as err:
            h.publish_batch("scores", msgs[64:], timeout=0.2)
        assert err.value.accepted == 0
        assert len(sub.receive_batch(max_n=10)) == 10
        assert h.publish_batch("scores", msgs[64:74], timeout=5.0) == 10
        assert sub.stats().dropped == 0


@pytest.mark.parametrize(
    "policy, kept",
    [(rg.DropNewest(100), range(0, 100)), (rg.DropOldest(100), range(900, 1000))],
    ids=["drop_newest", "drop_oldest"],
)
def test_a_host_subscriber_drops_by_its_policy_and_counts(policy, kept):
    scores = rg.topic("scores", tk.Tick, policy=policy)
    g = rg.graph(tk.source >> scores, rg.HOST >> scores, scores >> [tk.sub0, rg.HOST])
    msgs = random_messages(tk.Tick, 1000, seed=4)
    with rg.launch(g, backend="cpu") as h:
        sub = h.subscribe("scores")
        for i in range(0, 1000, 10):  # in batches: a drop policy never makes the publisher wait
            assert h.publish_batch("scores", msgs[i : i + 10], block=False) == 10
        got = []
        while len(part := sub.receive_batch(max_n=1000)):  # one published batch at a time
            got += [int(i) for i in part["id"]]
        assert got == list(kept)
        st = h.stats().topics["scores"]
        assert st.subscribers["host"].dropped == 900
        assert st.subscribers["host"].delivered == 100
        assert st.published == 1000


@pytest.mark.parametrize("policy", [rg.DropNewest(64), rg.DropOldest(64)], ids=repr)
@pytest.mark.parametrize("backend", BACKENDS)
def test_kernel_subscribers_under_a_drop_policy_get_an_ordered_subset_counted(backend, policy):
    msgs = random_messages(tk.Tick, 4000, seed=6)
    with _launch(_fan_out(4, policy), backend) as h:
        h.send_batch(msgs)
        h.terminate(timeout=120)
        got = {s.spec.name: _drain(h, s.spec.name) for s in tk.SUBSCRIBERS[:4]}
        st = h.stats().topics["scores"]
    assert st.published == len(msgs)
    for name, out in got.items():
        sub = st.subscribers[name]
        assert sub.delivered + sub.dropped + sub.depth == len(msgs)
        assert sub.delivered == len(out)
        ids = out["id"].astype(np.int64)
        assert np.all(np.diff(ids) > 0)  # a subsequence, in order, nothing twice
        np.testing.assert_array_equal(out["x"], msgs["x"][ids] * 2 + 3)  # (x + 1) * 2 + 1


@pytest.mark.parametrize("backend", BACKENDS)
def test_optional_and_outbox_publishers_publish_what_they_emit(backend):
    scores = rg.topic("scores", tk.Tick)
    g = rg.graph(
        tk.source >> tk.evens,
        tk.source >> tk.burst,
        [tk.evens, tk.burst] >> scores,
        scores >> tk.sub0,
    )
    msgs = random_messages(tk.Tick, 600, seed=8)
    msgs["id"] = np.arange(600)
    with _launch(g, backend) as h:
        h.send_batch(msgs)
        h.terminate(timeout=120)
        got = _drain(h, "sub0")
        st = h.stats().topics["scores"]
    want_evens = {i for i in range(600) if i % 2 == 0}
    want_burst = {i * 4 + k for i in range(600) for k in range(i % 3)}
    by_src = {3: set(), 4: set()}
    for i, s in zip(got["id"].tolist(), got["src"].tolist()):
        by_src[s].add(i)
    assert by_src == {3: want_evens, 4: want_burst}
    assert len(got) == st.published == len(want_evens) + len(want_burst)
    for s in (3, 4):  # FIFO per publisher
        ids = got["id"][got["src"] == s]
        assert np.all(np.diff(ids) > 0)


@pytest.mark.skipif("opencl" not in available_backends(), reason="no OpenCL")
def test_a_topic_on_opencl_persistent():
    """Persistent PoCL kernels hold a worker thread each: two stages fit the CI machine's two."""
    scores = rg.topic("scores", tk.Tick)
    g = rg.graph(tk.source >> scores, scores >> [tk.sub0, rg.HOST])
    msgs = random_messages(tk.Tick, 1000, seed=10)
    with rg.launch(g, backend="opencl", mode="persistent") as h:
        sub = h.subscribe("scores")
        h.send_batch(msgs)
        seen = []
        deadline = time.monotonic() + 60
        while len(seen) < len(msgs) and time.monotonic() < deadline:
            seen += [int(i) for i in sub.receive_batch(timeout=0.5)["id"]]
        h.terminate(timeout=60)
        out = _drain(h, "sub0")
    assert seen == [int(i) for i in msgs["id"]]
    np.testing.assert_array_equal(out["x"], (msgs["x"] + 1) * 2 + 1)


@pytest.mark.parametrize("backend", [b for b in BACKENDS if b.id != "c"])  # c: no wire codec
def test_bridged_messages_through_a_topic_are_stamped_and_iterable(backend):
    notes = rg.topic("notes", tk.Note)
    g = rg.graph(tk.note_source >> notes, notes >> [tk.note_sub, rg.HOST])
    msgs = [tk.Note(id=i, text=f"n{i}" * (i % 4), stamp=0) for i in range(50)]
    with _launch(g, backend) as h:
        sub = h.subscribe("notes")
        h.send_batch(msgs)
        first = sub.receive(timeout=30)
        h.terminate(timeout=60)
        rest = list(sub)  # until the graph is terminated and the subscription read
        out = []
        while True:
            try:
                out += h.receive_batch(timeout=5.0, exit="note_sub")
            except QueueClosedError:
                break
    seen = [first] + rest
    assert [(m.id, m.text) for m in seen] == [(m.id, m.text) for m in msgs]
    stamps = [int(m.stamp) for m in seen]
    assert stamps == sorted(stamps) and len(set(stamps)) == 50 and stamps[0] > 0
    assert [(m.id, m.text) for m in out] == [(m.id + 1000, m.text) for m in msgs]
