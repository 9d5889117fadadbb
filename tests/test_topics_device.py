"""Topics on the device strategies (docs/graphs.md, "Topics under each strategy"): a Block topic whose
publishers and subscribers are all kernels is fan-out edges, so its graph fused on PoCL (persistent
and relaunch) equals the cpu reference's composition for 1, 4 and 16 subscribers fanning in at a final
stage; what a device strategy cannot keep is refused, naming the graph, the topic and why; the fused
CUDA sources of a 16-subscriber graph compile with nvcc; and, with ``-m gpu``, the same on CUDA for
both strategies."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

import ringgen as rg
from ringgen.build import collect
from ringgen.codegen import graph_kernel, graph_queue
from ringgen.codegen.graph_strategies import STRATEGIES
from ringgen.errors import BuildError, QueueClosedError
from ringgen.graph_fusion import check_device_keeps, fused_spec
from ringgen.runtime import available_backends
from ringgen.testing import random_messages

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import device_strategy_backends, nvcc_compiles, requires_nvcc  # noqa: E402
import topic_device_kernels as dk  # noqa: E402
import topic_kernels as tk  # noqa: E402

pytestmark = pytest.mark.timeout(300)

#: (backend, launch options with the strategy); atomic_queue is CUDA's only
BACKENDS = device_strategy_backends()


def _drain(handle) -> np.ndarray:
    """Every reply left after a terminate, in order."""
    out = []
    while True:
        try:
            part = handle.receive_batch(timeout=5.0)
        except QueueClosedError:
            break
        if len(part):
            out.append(part)
    return np.concatenate(out) if out else np.zeros(0, dtype=rg.dtype_of(dk.Score))


def _run(g, backend: str, msgs: np.ndarray, **options) -> tuple[np.ndarray, object]:
    with rg.launch(g, backend=backend, **options) as h:
        h.send_batch(msgs, timeout=120.0)
        h.terminate(timeout=120.0)
        return _drain(h), h.stats()


def _rows(arr: np.ndarray) -> list:
    return sorted(tuple(int(v) for v in row) for row in arr.tolist())


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("n_subs", [1, 4, 16])
def test_a_block_topic_on_a_device_strategy_equals_the_reference_composition(backend, n_subs):
    name, options = backend
    g = dk.fan(n_subs)
    msgs = random_messages(dk.Score, 2000, seed=n_subs)
    got, final = _run(g, name, msgs, capacity=1024, **options)
    want, _ = _run(g, "cpu", msgs, capacity=4096)
    assert final.strategy == options["strategy"]
    assert final.stages["publish"].processed == final.stages["dsub0"].processed == len(msgs)
    assert final.stages["gather"].processed == n_subs * len(msgs)
    # a topic is its fan-out edges, each counted: publish >> dsub<k>, then dsub<k> >> gather
    forwarded = {(e.producer, e.consumer): e.forwarded for e in final.edges}
    subs = [f"dsub{k}" for k in range(n_subs)]
    assert list(forwarded) == [(s, "gather") for s in subs] + [("publish", s) for s in subs]
    assert set(forwarded.values()) == {len(msgs)}
    assert len(want) == n_subs * len(msgs)
    assert _rows(got) == _rows(want)
    # every subscriber got every message, exactly once
    per_sub = Counter(int(s) for s in got["src"])
    assert per_sub == {k + 1: len(msgs) for k in range(n_subs)}
    for k in range(n_subs):
        assert sorted(got["id"][got["src"] == k + 1].tolist()) == sorted(msgs["id"].tolist())


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("n_subs", [1, 16])
def test_subscribers_that_keep_a_share_each_run_on_every_message(backend, n_subs):
    """The fan-out bench's device-kept series (bench/topics.py): each of ``n_subs`` subscribers
    runs on every message and keeps the ids that are its number modulo ``n_subs``, so the one exit
    gets exactly one reply per message, from the subscriber the id names."""
    name, options = backend
    g = dk.share_fan(n_subs)
    msgs = random_messages(dk.Score, 2000, seed=n_subs + 100)
    msgs["id"] = np.arange(len(msgs))
    msgs["src"] = n_subs
    got, final = _run(g, name, msgs, capacity=1024, **options)
    want, _ = _run(g, "cpu", msgs, capacity=4096)
    assert len(got) == len(msgs) and _rows(got) == _rows(want)
    assert (got["src"] == got["id"] % n_subs + 1).all()
    assert sorted(got["id"].tolist()) == list(range(len(msgs)))
    for k in range(n_subs):
        assert final.stages[f"share{k}"].processed == len(msgs)  # every message, every subscriber


@pytest.mark.parametrize("backend", BACKENDS)
def test_each_subscriber_gets_the_publishers_messages_in_order(backend):
    """FIFO per publisher: with an ordered final stage the fused kernel takes one message at a
    time, so each subscriber's replies come back in the order the messages were sent."""
    name, options = backend
    msgs = random_messages(dk.Score, 3000, seed=7)
    msgs["id"] = np.arange(len(msgs))
    got, _ = _run(dk.fan(4, last=dk.gather_in_order), name, msgs, capacity=1024, **options)
    for k in range(4):
        assert got["id"][got["src"] == k + 1].tolist() == list(range(len(msgs)))
    if options["strategy"] == "shared_memory":  # one thread runs a message's whole path
        assert got["src"][:8].tolist() == [1, 2, 3, 4, 1, 2, 3, 4]


def test_a_block_topic_is_its_fan_out_edges():
    g = dk.fan(4)
    check_device_keeps(g)
    assert g.consumers("publish") == ("dsub0", "dsub1", "dsub2", "dsub3")
    spec = fused_spec(g)
    assert (spec.input, spec.outbox, spec.outbox_limit) == (dk.Score, dk.Score, 4)
    for strategy in STRATEGIES.values():
        assert strategy.check(g) == "graph_dfan4"


@pytest.mark.parametrize(
    "policy, shown",
    [(rg.DropOldest(8), r"drop_oldest\(8\)"), (rg.DropNewest(3), r"drop_newest\(3\)")],
)
def test_a_drop_policy_is_refused_by_atomic_queue_naming_graph_topic_and_why(policy, shown):
    g = dk.fan(4, policy=policy)
    check_device_keeps(g)  # shared_memory keeps it (tests/test_topics_device_host.py)
    with pytest.raises(BuildError, match=rf"graph dfan4: topic scores has policy {shown}.*no per-"):
        STRATEGIES["atomic_queue"].check(g)
    with pytest.raises(BuildError, match="atomic_queue strategy") as info:
        check_device_keeps(g, "atomic_queue")
    err = info.value
    assert err.file.endswith("topic_device_kernels.py")  # where the topic is declared
    assert "rg.topic(" in Path(err.file).read_text().splitlines()[err.line - 1]
    assert "strategy='host'" in err.hint and "Block()" in err.hint


def _refused_by_queue(g, match: str) -> None:
    """atomic_queue refuses ``g`` with a message matching ``match``; shared_memory keeps it."""
    with pytest.raises(BuildError, match=match):
        STRATEGIES["atomic_queue"].check(g)
    assert STRATEGIES["shared_memory"].check(g) == fused_spec(g).name


def test_the_host_publishing_or_subscribing_is_refused_by_atomic_queue():
    scores = rg.topic("scores", dk.Score)
    subs = dk.SUBSCRIBERS[:2]
    hosted = rg.graph(
        dk.publish >> scores, rg.HOST >> scores, scores >> subs, *[s >> dk.gather for s in subs]
    )
    _refused_by_queue(hosted, r"the host publishes to topic scores \(rg.HOST\), and the atomic_q")
    scores = rg.topic("scores", dk.Score)
    watched = rg.graph(
        dk.publish >> scores, scores >> subs, scores >> rg.HOST, *[s >> dk.gather for s in subs]
    )
    _refused_by_queue(watched, r"the host subscribes to topic scores \(rg.HOST\), and the atomic_")


def test_a_causal_stage_and_a_stamp_are_refused_by_atomic_queue_and_kept_by_shared_memory():
    """shared_memory keeps causal order and stamps (tests/test_causal_device.py runs them);
    atomic_queue runs its stages side by side and refuses both, naming the stage."""
    causal = rg.graph(tk.source >> tk.left, tk.source >> tk.right, tk.left >> tk.merge)
    causal = rg.graph(causal, tk.right >> tk.merge, name="causal_fan_in")
    stamped = rg.pipeline(tk.source, tk.join, name="stamped")
    queue = STRATEGIES["atomic_queue"]
    with pytest.raises(BuildError, match=r"graph causal_fan_in: stage\(s\) merge declare "):
        queue.check(causal)
    with pytest.raises(BuildError, match=r"graph stamped: stage source's message Tick has the "):
        queue.check(stamped)
    for g in (causal, stamped):
        with pytest.raises(BuildError, match="side by side on their own blocks"):
            check_device_keeps(g, "atomic_queue")
        check_device_keeps(g)
        assert STRATEGIES["shared_memory"].check(g) == fused_spec(g).name
        assert fused_spec(g).ordered


def test_a_drop_policy_topic_graph_runs_on_the_host_strategy_and_on_shared_memory():
    g = dk.fan(4, policy=rg.DropOldest(8))
    msgs = random_messages(dk.Score, 100, seed=3)
    got, final = _run(g, "cpu", msgs)
    assert final.strategy == "host" and len(got) == 4 * len(msgs)
    if "opencl" in available_backends():
        fused, final = _run(g, "opencl", msgs, strategy="shared_memory", mode="relaunch")
        assert final.strategy == "shared_memory" and _rows(fused) == _rows(got)
        assert {s.dropped for s in final.topics["scores"].subscribers.values()} == {0}


@pytest.mark.gpu
@pytest.mark.skipif("cuda" not in available_backends(), reason="no CUDA")
def test_on_cuda_the_default_launch_of_a_drop_policy_topic_graph_runs_and_atomic_queue_refuses():
    """The default on CUDA is ``shared_memory``, which keeps a drop policy on a kernel subscriber
    (it never drops there); ``atomic_queue`` refuses it naming the topic, before any kernel
    starts."""
    g = dk.fan(4, policy=rg.DropNewest(4096))
    with pytest.raises(BuildError, match="graph dfan4: topic scores has policy drop_newest"):
        rg.launch(g, backend="cuda", strategy="atomic_queue")
    msgs = random_messages(dk.Score, 300, seed=5)
    got, final = _run(g, "cuda", msgs)
    assert final.strategy == "shared_memory" and len(got) == 4 * len(msgs)


@requires_nvcc
@pytest.mark.parametrize("strategy", ["shared_memory", "atomic_queue"])
def test_the_fused_cuda_source_of_a_16_subscriber_topic_compiles_with_nvcc(tmp_path, strategy):
    g = dk.fan(16)
    if strategy == "atomic_queue":
        source = graph_queue.emit(collect(dk), g)
        assert graph_queue.entry_point(g) in source
    else:
        source = graph_kernel.emit_fused(collect(dk), g, "cuda")
    assert "rg_graph_dfan16_ring" in source
    nvcc_compiles(source, "the fused graph source")
