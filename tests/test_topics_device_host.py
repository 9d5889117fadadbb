"""The host as a topic's subscriber and publisher, and drop policies, under ``shared_memory``
(docs/graphs.md, "Topics under each strategy"): on PoCL (persistent and relaunch; CUDA with
``-m gpu``) the host subscribes to a topic kernels publish (1, 4 and 16 kernel subscribers beside
it), publishes alone and beside a kernel publisher (FIFO per publisher at every subscriber, FIFO
with its sends), a host subscription that is not read drops exactly under DropOldest/DropNewest
while the graph keeps serving its exit, and back-pressures the graph under Block without
deadlocking a send or a terminate; every result equals the cpu reference's host strategy on the
same graph; ``stats().topics`` is filled; what stays refused is refused naming why; nvcc compiles
the fused CUDA sources."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

import ringgen as rg
from ringgen.build import collect
from ringgen.codegen import graph_kernel
from ringgen.codegen.graph_strategies import STRATEGIES
from ringgen.errors import BuildError, KernelTimeoutError, QueueClosedError, QueueFullError
from ringgen.graph_fusion import INPUT_TAG, check_device_keeps, fused_parts, fused_spec
from ringgen.layout import layout_of
from ringgen.runtime import available_backends
from ringgen.types import Str
from ringgen.testing import random_messages

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import device_strategy_backends, nvcc_compiles, requires_nvcc  # noqa: E402
import topic_device_kernels as dk  # noqa: E402
import topic_kernels as tk  # noqa: E402

pytestmark = pytest.mark.timeout(300)

#: (backend, launch options): PoCL persistent and relaunch, CUDA (gpu), all shared_memory
BACKENDS = device_strategy_backends(("shared_memory",))
#: the longest any one wait on a kernel may take
WAIT = 60.0


def _messages(n: int, seed: int, first_id: int = 0) -> np.ndarray:
    msgs = random_messages(dk.Score, n, seed=seed)
    msgs["id"] = np.arange(first_id, first_id + n)
    return msgs


def _all(receive_batch) -> np.ndarray:
    """Every row ``receive_batch(max_n, timeout)`` gives until it raises ``QueueClosedError``."""
    out = []
    while True:
        try:
            part = receive_batch(4096, 5.0)
        except QueueClosedError:
            break
        if len(part):
            out.append(part)
    return np.concatenate(out) if out else np.zeros(0, dtype=rg.dtype_of(dk.Score))


def _finish(h, subscribed: bool = True) -> tuple[np.ndarray, np.ndarray, object]:
    """Terminate ``h``, then every exit reply and every copy of the host's subscription to
    ``scores`` (empty without one), and the final stats."""
    h.terminate(timeout=WAIT)
    replies = _all(lambda n, t: h.receive_batch(n, timeout=t))
    copies = _all(h.subscribe("scores").receive_batch) if subscribed else None
    return replies, copies, h.stats()


def _i32(v: int) -> int:
    """``v`` as a 32-bit signed integer wraps it (the kernels' i32 arithmetic)."""
    return (v + 2**31) % 2**32 - 2**31


def _rows(arr: np.ndarray) -> list:
    return sorted(tuple(int(v) for v in row) for row in arr.tolist())


def _check_invariant(stats) -> None:
    """Per subscriber of every topic: delivered + dropped + depth == published."""
    for t in stats.topics.values():
        for name, s in t.subscribers.items():
            assert s.delivered + s.dropped + s.depth == t.published, (t.name, name, s)


def _published(msgs: np.ndarray) -> list:
    """What ``publish`` makes of ``msgs``, in order (the copies the host's subscription gets)."""
    return [(int(i), int(x) % 1000 + 1, 0) for i, x in zip(msgs["id"], msgs["x"])]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("n_subs", [1, 4, 16])
def test_the_host_subscribes_beside_kernel_subscribers_and_equals_the_host_strategy(
    backend, n_subs
):
    name, options = backend
    g = dk.watched(n_subs)
    msgs = _messages(600, seed=n_subs)
    with rg.launch(g, backend=name, capacity=256, **options) as h:
        h.send_batch(msgs, timeout=WAIT)
        got, copies, final = _finish(h)
    with rg.launch(g, backend="cpu", capacity=4096) as h:
        h.send_batch(msgs, timeout=WAIT)
        want, want_copies, reference = _finish(h)
    assert final.strategy == "shared_memory" and reference.strategy == "host"
    assert len(got) == n_subs * len(msgs) and _rows(got) == _rows(want)
    # every copy whole, each message once, as the host strategy's subscription has them
    assert len(copies) == len(msgs) and _rows(copies) == _rows(want_copies)
    assert sorted(_published(msgs)) == _rows(copies)
    scores = final.topics["scores"]
    assert scores.published == len(msgs) == reference.topics["scores"].published
    assert set(scores.subscribers) == {f"dsub{k}" for k in range(n_subs)} | {"host"}
    for sub, s in scores.subscribers.items():
        assert (s.delivered, s.dropped, s.depth) == (len(msgs), 0, 0), sub
    assert scores.subscribers["host"].capacity == 256
    _check_invariant(final)


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_ordered_graph_hands_the_host_its_copies_in_the_publishers_order(backend):
    name, options = backend
    g = dk.watched(4, last=dk.gather_in_order)
    msgs = _messages(1500, seed=11)
    with rg.launch(g, backend=name, capacity=128, **options) as h:
        h.send_batch(msgs, timeout=WAIT)
        got, copies, final = _finish(h)
    assert [tuple(int(v) for v in r) for r in copies.tolist()] == _published(msgs)
    for k in range(4):
        assert got["id"][got["src"] == k + 1].tolist() == msgs["id"].tolist()
    _check_invariant(final)


def _interleave(h, entries: np.ndarray, pubs: np.ndarray, step: int) -> list:
    """Send ``entries`` and publish ``pubs`` to ``scores`` in turns of ``step``; returns the
    order the host did it in: ("send" | "publish", row)."""
    order = []
    for at in range(0, max(len(entries), len(pubs)), step):
        e, p = entries[at : at + step], pubs[at : at + step]
        if len(e):
            assert h.send_batch(e, timeout=WAIT) == len(e)
            order += [("send", r) for r in e]
        if len(p):
            if len(p) == 1:
                one = dk.Score(id=int(p["id"][0]), x=int(p["x"][0]), src=int(p["src"][0]))
                h.publish("scores", one)
            else:
                assert h.publish_batch("scores", p, timeout=WAIT) == len(p)
            order += [("publish", r) for r in p]
    return order


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_host_publishes_alone_fifo_with_its_sends(backend):
    """``rg.HOST`` is the topic's only publisher; in an ordered graph every reply comes back in the
    order the host sent and published, each published message through every subscriber."""
    name, options = backend
    g = dk.hosted(4, last=dk.gather_in_order, kernel_publishes=False)
    assert fused_spec(g).input is fused_parts(g).input_class
    entries, pubs = _messages(300, seed=3), _messages(300, seed=4, first_id=100_000)
    with rg.launch(g, backend=name, capacity=64, **options) as h:
        order = _interleave(h, entries, pubs, step=7)
        got, _, final = _finish(h, subscribed=False)
    want = []
    for what, r in order:
        if what == "send":  # publish >> gather_in_order
            want.append((int(r["id"]), int(r["x"]) % 1000 + 1 - 5, 0))
        else:  # scores >> dsub0..dsub3 >> gather_in_order, subscribers in stage order
            want += [(int(r["id"]), _i32(int(r["x"]) * 3 + k - 5), k + 1) for k in range(4)]
    assert [tuple(int(v) for v in r) for r in got.tolist()] == want
    with rg.launch(g, backend="cpu", capacity=4096) as h:
        _interleave(h, entries, pubs, step=7)
        reference, _, ref_stats = _finish(h, subscribed=False)
    assert _rows(got) == _rows(reference)
    scores = final.topics["scores"]
    assert scores.published == len(pubs) == ref_stats.topics["scores"].published
    assert {s.delivered for s in scores.subscribers.values()} == {len(pubs)}
    # the entry counts what was sent into it; the host's publishes pass it by
    entry = final.stages["publish"]
    assert (entry.sent, entry.processed) == (len(entries), len(entries))
    assert {final.stages[f"dsub{k}"].processed for k in range(4)} == {len(pubs)}
    _check_invariant(final)


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_host_and_a_kernel_publish_together_fifo_per_publisher_at_every_subscriber(backend):
    name, options = backend
    g = dk.hosted(4, last=dk.gather_in_order, host_subscribes=True)
    entries, pubs = _messages(400, seed=5), _messages(250, seed=6, first_id=100_000)
    with rg.launch(g, backend=name, capacity=64, **options) as h:
        order = _interleave(h, entries, pubs, step=1)
        got, copies, final = _finish(h)
    # the host's subscription: publish's reply to each sent message and each message the host
    # published, in the order the host sent and published them
    want = []
    for what, r in order:
        if what == "send":
            want.append((int(r["id"]), int(r["x"]) % 1000 + 1, 0))
        else:
            want.append((int(r["id"]), int(r["x"]), int(r["src"])))
    assert [tuple(int(v) for v in r) for r in copies.tolist()] == want
    # every kernel subscriber got both publishers' messages, each publisher's in its order
    for k in range(4):
        ids = got["id"][got["src"] == k + 1].tolist()
        assert ids == [int(r["id"]) for _, r in order]
        assert [i for i in ids if i >= 100_000] == pubs["id"].tolist()
    with rg.launch(g, backend="cpu", capacity=4096) as h:
        _interleave(h, entries, pubs, step=1)
        reference, ref_copies, ref_stats = _finish(h)
    assert _rows(got) == _rows(reference) and _rows(copies) == _rows(ref_copies)
    scores = final.topics["scores"]
    assert scores.published == len(entries) + len(pubs) == ref_stats.topics["scores"].published
    assert scores.subscribers["host"].delivered == len(entries) + len(pubs)
    _check_invariant(final)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("policy", ["drop_oldest", "drop_newest"])
def test_an_unread_host_subscription_drops_exactly_and_the_graph_keeps_serving(backend, policy):
    name, options = backend
    keep = 16
    made = rg.DropOldest(keep) if policy == "drop_oldest" else rg.DropNewest(keep)
    g = dk.watched(2, last=dk.gather_in_order, policy=made)
    msgs = _messages(500, seed=8)
    with rg.launch(g, backend=name, capacity=64, **options) as h:
        sub = h.subscribe("scores")
        h.send_batch(msgs, timeout=WAIT)
        got = []
        while sum(map(len, got)) < 2 * len(msgs):  # the exit is served though sub is not read
            part = h.receive_batch(1024, timeout=WAIT)
            assert len(part), "the exit stopped while the host's subscription was unread"
            got.append(part)
        scores = h.stats().topics["scores"]
        host = scores.subscribers["host"]
        assert scores.published == len(msgs)
        assert (host.delivered, host.dropped, host.depth, host.capacity) == (
            0,
            len(msgs) - keep,
            keep,
            keep,
        )
        assert sub.stats() == host
        for k in ("dsub0", "dsub1"):  # a kernel subscriber runs in the publisher's thread
            assert (scores.subscribers[k].delivered, scores.subscribers[k].dropped) == (
                len(msgs),
                0,
            )
        kept = []
        while sum(map(len, kept)) < keep:
            part = sub.receive_batch(100, timeout=WAIT)
            assert len(part), "the kept copies did not come"
            kept.append(part)
        kept = np.concatenate(kept)
        assert not len(sub.receive_batch(100, timeout=0.2))
        _check_invariant(h.stats())
        h.terminate(timeout=WAIT)
    want = _published(msgs)
    want = want[-keep:] if policy == "drop_oldest" else want[:keep]
    assert [tuple(int(v) for v in r) for r in kept.tolist()] == want
    assert sorted(np.concatenate(got)["id"].tolist()) == sorted(2 * msgs["id"].tolist())


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_unread_block_subscription_back_pressures_without_deadlocking_send_or_terminate(
    backend,
):
    """A send of 10x the capacity into a graph whose host subscription nobody reads completes
    (the kernel's output spills while the send waits: without it the kernel, its output full,
    would take no input); receiving only from the exit then stops once the subscription holds
    its capacity (Block: the split takes no more of the kernel's output); terminate completes too
    (the subscription takes everything once the graph is terminating); then everything arrives."""
    name, options = backend
    cap = 64
    g = dk.watched(2, last=dk.gather_in_order)
    msgs = _messages(10 * cap, seed=9)
    with rg.launch(g, backend=name, capacity=cap, **options) as h:
        sub = h.subscribe("scores")
        assert h.send_batch(msgs, timeout=WAIT) == len(msgs)
        early = []
        while True:
            part = h.receive_batch(1024, timeout=1.0)
            if not len(part):
                break
            early.append(part)
        early_n = sum(map(len, early))
        assert early_n < 2 * len(msgs)  # back-pressured by the full subscription
        assert sub.stats().depth == cap  # its queue holds exactly its capacity
        with pytest.raises(KernelTimeoutError):
            h.receive(timeout=0.2)
        final = h.terminate(timeout=WAIT)
        # a few copies read, then the exit to its end: terminated, the graph no longer waits
        # for the subscription's room
        first = sub.receive_batch(10, timeout=WAIT)
        rest = _all(lambda n, t: h.receive_batch(n, timeout=t))
        copies = np.concatenate([first, _all(sub.receive_batch)])
    replies = np.concatenate(early + [rest])
    assert len(first) == 10
    assert sorted(replies["id"].tolist()) == sorted(2 * msgs["id"].tolist())
    assert [tuple(int(v) for v in r) for r in copies.tolist()] == _published(msgs)
    host = final.topics["scores"].subscribers["host"]
    assert host.delivered + host.depth == len(msgs) and host.dropped == 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_stats_topics_are_filled_for_a_kernel_only_topic(backend):
    name, options = backend
    msgs = _messages(300, seed=12)
    with rg.launch(dk.fan(4), backend=name, capacity=256, **options) as h:
        h.send_batch(msgs, timeout=WAIT)
        _, _, final = _finish(h, subscribed=False)
    scores = final.topics["scores"]
    assert (scores.published, scores.policy, scores.message) == (len(msgs), "block", "Score")
    assert {k: (s.delivered, s.dropped, s.depth) for k, s in scores.subscribers.items()} == {
        f"dsub{k}": (len(msgs), 0, 0) for k in range(4)
    }


@pytest.mark.skipif("opencl" not in available_backends(), reason="no OpenCL")
def test_the_host_api_errors_on_a_fused_graph():
    g = dk.hosted(2, host_subscribes=True)
    with rg.launch(
        g, backend="opencl", mode="relaunch", strategy="shared_memory", capacity=64
    ) as h:
        with pytest.raises(ValueError, match="has no topic 'nope'"):
            h.publish("nope", dk.Score(id=1, x=1, src=0))
        with pytest.raises(TypeError, match="topic scores carries Score, not Plain"):
            h.publish("scores", tk.Plain(id=1, x=1))
        with pytest.raises(TypeError, match=r"graph dhost2w: reserve\(\) writes the entry's"):
            h.reserve(4)
        assert h.publish_batch("scores", _messages(1000, seed=1), block=False) < 1000
        with pytest.raises(
            QueueFullError, match=r"topic scores: \d+ of 5000 messages published"
        ) as e:
            h.publish_batch("scores", _messages(5000, seed=2), timeout=1e-6)
        assert 0 <= e.value.accepted < 5000
        h.terminate(timeout=WAIT)
        with pytest.raises(QueueClosedError, match="topic scores: the graph is closed"):
            h.publish("scores", dk.Score(id=1, x=1, src=0))
    only = dk.watched(1)
    with rg.launch(only, backend="opencl", mode="relaunch", strategy="shared_memory") as h:
        with pytest.raises(ValueError, match="the host does not publish to topic scores"):
            h.publish("scores", dk.Score(id=1, x=1, src=0))
        h.terminate(timeout=WAIT)
    with rg.launch(dk.fan(2), backend="opencl", mode="relaunch", strategy="shared_memory") as h:
        with pytest.raises(ValueError, match="the host does not subscribe to topic scores"):
            h.subscribe("scores")
        h.terminate(timeout=WAIT)


def test_a_graph_without_a_host_publisher_keeps_its_input_and_layout():
    g = dk.watched(4)
    parts = fused_parts(g)
    assert parts.input_class is None and fused_spec(g).input is dk.Score
    assert parts.outlets == ("gather", "topic:scores") and parts.host_subscribed == ("scores",)
    hosted = dk.hosted(2)
    parts = fused_parts(hosted)
    lay = layout_of(parts.input_class)
    assert [f.name for f in lay.fields] == [INPUT_TAG, "payload"]
    assert parts.input_words == 2 and lay.size == 8 + 16  # Score: 16 bytes, two words
    assert parts.host_published == ("scores",) and parts.exit_class is None


@rg.message
class Label:
    text: Str[16]


@rg.ring_kernel
def label_source(m: Label) -> Label:
    return Label(text=m.text)


@rg.ring_kernel
def label_sub(m: Label) -> Label:
    return Label(text=m.text)


def test_what_shared_memory_still_refuses_names_why():
    labels = rg.topic("labels", Label)
    g = rg.graph(label_source >> labels, labels >> [label_sub, rg.HOST], name="labelled")
    with pytest.raises(BuildError, match=r"the host subscribes to topic labels, which carries "):
        fused_parts(g)
    ticks = rg.topic("ticks", tk.Tick)
    stamped = rg.graph(tk.source >> ticks, rg.HOST >> ticks, ticks >> tk.join, name="stamped_h")
    with pytest.raises(BuildError, match="carry no host clock") as err:
        check_device_keeps(stamped)
    assert "strategy='host'" in err.value.hint
    with pytest.raises(BuildError, match="carry no host clock"):
        STRATEGIES["shared_memory"].check(stamped)
    for graph in (dk.watched(2), dk.hosted(2), dk.fan(2, policy=rg.DropOldest(4))):
        with pytest.raises(BuildError, match="and the atomic_queue strategy"):
            check_device_keeps(graph, "atomic_queue")
    with pytest.raises(BuildError, match="so topic ticks must not drop"):
        drops = rg.topic("ticks", tk.Tick, policy=rg.DropNewest(4))
        rg.graph(tk.source >> drops, drops >> tk.merge)


@requires_nvcc
@pytest.mark.parametrize(
    "make",
    [
        lambda: dk.watched(16),
        lambda: dk.watched(2, last=dk.gather_in_order, policy=rg.DropOldest(8)),
        lambda: dk.hosted(4, host_subscribes=True),
        lambda: dk.hosted(4, last=dk.gather_in_order, kernel_publishes=False),
    ],
    ids=["watched16", "dropping", "hosted4w", "host-only"],
)
def test_the_fused_cuda_source_of_a_host_topic_graph_compiles_with_nvcc(make):
    g = make()
    source = graph_kernel.emit_fused(collect(dk), g, "cuda")
    assert f"rg_{fused_spec(g).name}_ring" in source
    nvcc_compiles(source, f"the fused source of {g.label}")


@pytest.mark.skipif("opencl" not in available_backends(), reason="no OpenCL")
def test_one_exit_beside_a_host_subscription_needs_no_exit_name_and_iterates():
    """The host's subscription makes the output tagged, but with one exit ``receive`` and
    ``async for`` still need no ``exit=``; ``for msg in sub`` ends once the graph is terminated and
    the subscription read."""
    import asyncio

    msgs = _messages(50, seed=13)
    with rg.launch(dk.watched(1), backend="opencl", mode="relaunch", strategy="shared_memory") as h:
        h.send_batch(msgs, timeout=WAIT)
        first = h.receive(timeout=WAIT)
        h.terminate(timeout=WAIT)

        async def rest():
            return [m async for m in h]

        replies = [first] + asyncio.run(asyncio.wait_for(rest(), WAIT))
        copies = list(h.subscribe("scores"))
    assert sorted(m.id for m in replies) == msgs["id"].tolist()
    assert sorted((m.id, m.x, m.src) for m in copies) == sorted(_published(msgs))
    with pytest.raises(ValueError, match="'nope' is not an exit"):
        h.receive(timeout=0, exit="nope")


HOSTED_MODULE = """
import ringgen as rg
from ringgen.types import i32, i64

@rg.message
class Score:
    id: i64
    x: i32

@rg.ring_kernel
def publish(s: Score) -> Score:
    return Score(id=s.id, x=s.x + 1)

@rg.ring_kernel
def a(s: Score) -> Score:
    return Score(id=s.id, x=s.x * 2)

@rg.ring_kernel
def gather(s: Score) -> Score:
    return s

scores = rg.topic("scores", Score, policy=rg.DropOldest(32))
hosted = rg.graph(publish >> scores, rg.HOST >> scores, scores >> [a, rg.HOST], a >> gather)
"""


def test_ringgen_build_writes_the_shared_memory_source_of_a_host_topic_graph(module_file, tmp_path):
    import json

    from ringgen.codegen.manifest import load_schema, validate
    from ringgen.codegen.writer import write_unit

    unit = collect(module_file(HOSTED_MODULE))
    pkg = tmp_path / "out"
    write_unit(unit, pkg, ("header", "serializers", "cuda", "opencl", "manifest"))
    manifest = json.loads((pkg / unit.name / "manifest.json").read_text())
    assert validate(manifest, load_schema()) == []
    (entry,) = manifest["graphs"]
    strategies = entry["strategies"]
    assert strategies["shared_memory"]["kernel"] == "graph_hosted"
    assert "topic scores has policy drop_oldest(32), and the atomic_queue strategy" in (
        strategies["atomic_queue"]["refused"]
    )
    for source in strategies["shared_memory"]["sources"].values():
        text = (pkg / unit.name / source).read_text()
        assert "rg_in->topic_index" in text and "graph_hosted_exits rg_tagged" in text


@pytest.mark.skipif("opencl" not in available_backends(), reason="no OpenCL")
def test_send_send_async_and_publish_share_the_input_queue_in_order():
    import asyncio

    g = dk.hosted(2, last=dk.gather_in_order, host_subscribes=True)
    with rg.launch(g, backend="opencl", mode="persistent", strategy="shared_memory") as h:
        asyncio.run(h.send_async(dk.Score(id=5, x=7, src=0), timeout=WAIT))
        h.send(dk.Score(id=6, x=8, src=0))
        h.publish("scores", dk.Score(id=9, x=1, src=3))
        copies = [h.subscribe("scores").receive(timeout=WAIT) for _ in range(3)]
        h.terminate(timeout=WAIT)
    assert [(m.id, m.x, m.src) for m in copies] == [(5, 8, 0), (6, 9, 0), (9, 1, 3)]


def test_inspect_lists_each_strategy_with_its_kernel_or_why_it_refuses(
    module_file, tmp_path, capsys
):
    from ringgen.cli import main

    path = module_file(HOSTED_MODULE, name="hostedtopics")
    assert main(["build", str(path), "-o", str(tmp_path / "gen")]) == 0
    capsys.readouterr()
    assert main(["inspect", str(tmp_path / "gen" / "hostedtopics")]) == 0
    out = capsys.readouterr().out
    table = out.split("  strategy ", 1)[1].split("\nfiles", 1)[0]
    rows = {line.split()[0]: line for line in table.splitlines()[2:] if line.strip()}
    assert set(rows) == {"atomic_queue", "shared_memory"}
    assert rows["atomic_queue"].split()[1] == "refused"
    assert "topic scores has policy drop_oldest(32)" in rows["atomic_queue"]
    assert "graphs/hosted.shared_memory.cu" in rows["shared_memory"]
    assert "graph_hosted" in rows["shared_memory"]
