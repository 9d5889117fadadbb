"""Topics and causal order on Metal (issue 16, item 4): the emitted graph driver
(``ringgen.codegen.metal_graph``) compiled with the shim and run on CPU threads. A ``Block`` topic
among kernels is its fan-out edges (1, 4 and 16 subscribers, ``tests/topic_device_kernels.fan``),
compared with the reference composition: every subscriber gets every message, FIFO per publisher,
nothing dropped past a full queue. A causal fan-in reached by paths of two lengths
(``tests/causal_device_kernels``) runs ordered, its stamps kept by the driver's clocks: the replies
equal the reference's, every hop's stamp rises along each chain and per stage, and the history
rebuilt from the hops' stamps passes ``ringgen.testing.history``. Drop policies and the host
publishing or subscribing are driven (``tests/test_metal_topics_host.py`` runs them); what the
driver still leaves out is named with the reason (``skipped_graphs``)."""

from __future__ import annotations

import sys
from pathlib import Path

import attrs
import numpy as np
import pytest

import ringgen as rg
from ringgen.build import collect
from ringgen.codegen.metal import emit
from ringgen.codegen.metal_graph import emit_graph_driver, graph_context, skipped_graphs
from ringgen.graphs import named
from ringgen.metal_shim import available_compilers
from ringgen.metal_shim.graph_executor import build_graph_executor
from ringgen.testing import KernelRun, compare_runs, random_messages
from ringgen.testing.graphs import compare_graph_runs, reference_graph, run_graph_metal
from ringgen.testing.history import History, assert_causal, check_history

sys.path.insert(0, str(Path(__file__).resolve().parent))
import causal_device_kernels as ck  # noqa: E402
import topic_device_kernels as dk  # noqa: E402
import topic_kernels as tk  # noqa: E402

pytestmark = [
    pytest.mark.skipif(not available_compilers(), reason="no g++ or clang++"),
    pytest.mark.timeout(600),
]

FANS = (1, 4, 16)


def _build(module, graphs, work: Path):
    unit = attrs.evolve(collect(module), graphs=tuple(graphs))
    path = work / f"{unit.name}.metal"
    path.write_text(emit(unit)[path.name])
    return unit, build_graph_executor(path, unit, work / "build")


def _graph(unit, name):
    return next(g for g in unit.graphs if g.name == name)


@pytest.fixture(scope="module")
def fans(tmp_path_factory):
    """(unit, executor) of topic_device_kernels with the fan graphs of 1, 4 and 16 subscribers."""
    scores = rg.topic("scores", dk.Score)
    exits = rg.graph(dk.publish >> scores, scores >> dk.SUBSCRIBERS[:3], name="subscriber_exits")
    graphs = [dk.fan(n) for n in FANS] + [exits]
    return _build(dk, graphs, tmp_path_factory.mktemp("metal_topics"))


@pytest.fixture(scope="module")
def causal(tmp_path_factory):
    """(unit, executor) of causal_device_kernels with its two causal fan-ins and a pipeline whose
    middle hop carries no stamp."""
    graphs = [
        ck.two_paths(),
        ck.with_burst(),
        rg.pipeline(ck.source, ck.strip, ck.restamp, name="unstamped_hop"),
        rg.pipeline(ck.bare_source, ck.source, name="unstamped_entry"),
    ]
    return _build(ck, graphs, tmp_path_factory.mktemp("metal_causal"))


# ---- Block topics ---------------------------------------------------------------------------


def test_a_topic_is_forwarded_to_every_subscriber_by_the_driver(fans):
    unit, _ = fans
    assert skipped_graphs(unit) == {}
    ctx = graph_context(_graph(unit, "dfan16"))
    assert not ctx["ordered"]
    assert ctx["stages"][0]["consumers"] == list(range(1, 17))
    text = emit_graph_driver(unit, "/x/topic_device_kernels.metal", "topic_device_kernels.metal")
    body = text.split("int rg_metal_graph_dfan16(")[1].split("int rg_metal_graph_")[0]
    assert sum(f"rg_push(st[{c}], n, slot);" in body for c in range(1, 17)) == 16
    # a Block subscriber limits what the publisher hands on, and each counts what it was handed
    assert sum(f"n = st[{c}].room() < n ? st[{c}].room() : n;" in body for c in range(1, 17)) == 16
    assert "rg_to_dropping" not in body.split("/* dsub0 */")[0]


@pytest.mark.parametrize("n_subs", FANS)
def test_a_block_topic_on_the_shim_equals_the_reference(fans, n_subs):
    """3,000 messages, past the 1,024 slots of every queue: each subscriber's copy reaches the
    final stage whole and in the publisher's order (FIFO per publisher, no drop under
    back-pressure)."""
    unit, ex = fans
    g = _graph(unit, f"dfan{n_subs}")
    msgs = random_messages(dk.Score, 3000, seed=7)
    msgs["id"] = np.arange(len(msgs))
    want = reference_graph(g, msgs)
    got = run_graph_metal(ex, g, msgs)
    assert compare_graph_runs(g, want, got) is None, compare_graph_runs(g, want, got)
    out = got.exits["gather"]
    assert len(out) == n_subs * len(msgs)
    for k in range(n_subs):
        assert out["id"][out["src"] == k + 1].tolist() == list(range(len(msgs))), f"dsub{k}"
    # gather's 1,024 slots hold back the subscribers (a pass takes at most a queue's worth), so
    # its n_subs x 3,000 inputs took as many passes at least, and none was dropped
    assert ex.run(g.name, msgs).passes >= -(-n_subs * len(msgs) // 1024)


def test_subscribers_as_exits_each_get_every_message_in_order(fans):
    unit, ex = fans
    g = _graph(unit, "subscriber_exits")
    assert g.exits == ("dsub0", "dsub1", "dsub2")
    msgs = random_messages(dk.Score, 2000, seed=11)
    msgs["id"] = np.arange(len(msgs))
    want = reference_graph(g, msgs)
    got = run_graph_metal(ex, g, msgs)
    assert compare_graph_runs(g, want, got) is None, compare_graph_runs(g, want, got)
    for x in g.exits:
        assert got.exits[x]["id"].tolist() == list(range(len(msgs))), x


def test_a_block_topic_on_parallel_dispatches_gives_the_same_multiset(fans):
    unit, ex = fans
    g = _graph(unit, "dfan4")
    msgs = random_messages(dk.Score, 2500, seed=3)
    want = reference_graph(g, msgs)
    got = run_graph_metal(ex, g, msgs, workers=3)
    detail = compare_runs(
        KernelRun("reference", want.exits["gather"], {}), KernelRun("m", got.exits["gather"], {})
    )
    assert detail is None, detail


def test_drop_policies_and_the_host_on_a_topic_are_kept_and_what_is_not_is_left_out():
    """Drop policies and the host publishing or subscribing are driven (issue 16); a topic of a
    bridged message and a stage reaching one consumer by two routes are left out, naming why."""
    subs = dk.SUBSCRIBERS[:2]
    dropping = named(dk.fan(2, policy=rg.DropOldest(8)), "dropping")
    newest = named(dk.fan(2, policy=rg.DropNewest(3)), "newest")
    scores = rg.topic("scores", dk.Score)
    twice = rg.graph(
        dk.publish >> scores,
        scores >> subs,
        dk.publish >> subs[0],
        subs[1] >> dk.gather,
        subs[0] >> dk.gather,
        name="twice",
    )
    notes = rg.topic("notes", tk.Note)
    bridged = rg.graph(tk.note_source >> notes, notes >> [tk.note_sub, rg.HOST], name="bridged")
    graphs = (dropping, newest, dk.hosted(2), dk.watched(2), dk.hosted(2, host_subscribes=True))
    unit = attrs.evolve(collect(dk), graphs=graphs + (twice,))
    why = skipped_graphs(unit)
    assert set(why) == {"twice"}
    assert why["twice"] == (
        "stage publish reaches dsub0 by two routes (an edge and a topic, or two topics): the "
        "Metal graph driver keeps one queue and one count per route"
    )
    text = emit_graph_driver(unit, "/x/a.metal", "a.metal")
    assert all(f"rg_metal_graph_{g.name}(" in text for g in graphs)
    assert "rg_metal_graph_twice(" not in text
    body = text.split("int rg_metal_graph_newest(")[1].split("int rg_metal_graph_")[0]
    assert body.count("rg_to_dropping(dq[") == 2 and "rg_push(st[1]" not in body
    tunit = attrs.evolve(collect(tk), graphs=(bridged,))
    assert skipped_graphs(tunit)["bridged"].startswith(
        "stage note_source takes or emits the bridged message Note"
    )


# ---- causal order and rg.HLC stamps ---------------------------------------------------------


def _messages(n: int, seed: int) -> np.ndarray:
    msgs = random_messages(ck.Hop, n, seed=seed)
    msgs["id"] = np.arange(n)
    msgs["x"] %= 1000
    return msgs


def _values(arr: np.ndarray) -> list:
    """The replies without their stamps (which the reference does not write): sorted rows."""
    return sorted(zip(arr["id"].tolist(), arr["x"].tolist(), arr["src"].tolist()))


def _history(got: np.ndarray, sent: np.ndarray, longer: str) -> History:
    """The graph's history rebuilt from every hop's stamps (each stage copies the stamp it received
    into its reply): per entry message, in send order (the driver sends the next one once the
    last is answered), the host's send, source's receive and send, the longer path's stage's
    receive and sends, merge's receive and send per reply and the host's receive of it."""
    h = History()
    for i, stamp in enumerate(sent["stamp"].tolist()):
        rows = got[got["id"] == i]
        direct = rows[rows["src"] == 0]
        assert len(direct) == 1, f"entry message {i}: {len(direct)} replies on the direct path"
        h.send("host", stamp)
        h.recv("source", "host", stamp)
        h.send("source", int(direct["seen_merge"][0]))
        via = rows[rows["src"] != 0]
        if len(via):
            h.recv(longer, "source", int(via["seen_mid"][0]))
        for r in via:
            h.send(longer, int(r["seen_merge"]))
        for r in rows:
            h.recv("merge", "source" if r["src"] == 0 else longer, int(r["seen_merge"]))
            h.send("merge", int(r["stamp"]))
            h.recv("host", "merge", int(r["stamp"]))
    return h


@pytest.mark.parametrize("name,longer", [("two_paths", "mid"), ("with_burst", "burst")])
def test_a_causal_fan_in_on_the_shim_equals_the_reference_and_keeps_causal_order(
    causal, name, longer
):
    unit, ex = causal
    g = _graph(unit, name)
    assert skipped_graphs(unit) == {} and graph_context(g)["ordered"]
    msgs = _messages(400, seed=21)
    want = reference_graph(g, msgs)
    run = ex.run(g.name, msgs)
    got = run.exits["merge"]
    assert len(got) > len(msgs) and _values(got) == _values(want.exits["merge"])
    assert all(not any(c["rejected"]) for c in run.controls.values())

    # the host stamped every message in send order, and source received that stamp
    sent = run.sent["stamp"]
    assert (np.diff(sent.astype(np.int64)) > 0).all() and (msgs["stamp"] != sent).any()
    assert (got["seen_source"] == sent[got["id"]]).all()

    # every chain rises: host -> source -> (mid | burst) -> merge -> host
    direct = got["src"] == 0
    via = ~direct
    assert (got["seen_mid"][direct] == 0).all()
    assert (got["seen_source"] < got["seen_merge"]).all()
    assert (got["seen_source"][via] < got["seen_mid"][via]).all()
    assert (got["seen_mid"][via] < got["seen_merge"][via]).all()
    assert (got["seen_merge"] < got["stamp"]).all()
    assert not (got["seen_mid"][via] == 7).any()  # source's own 7 was replaced
    assert run.clock > int(got["stamp"].max())

    # per stage across messages: merge's stamps rise in its output order; the causal stage took
    # each entry message's inputs before the next one's, source's message before what it caused
    assert (np.diff(got["stamp"].astype(np.int64)) > 0).all()
    assert (np.diff(got["seen_merge"].astype(np.int64)) > 0).all()
    ids = got["id"].tolist()
    assert ids == sorted(ids)
    for i in np.flatnonzero(via):
        j = np.flatnonzero(direct & (got["id"] == got["id"][i]))
        assert len(j) == 1 and j[0] < i

    history = _history(got, run.sent, longer)
    assert_causal(history, causal=["merge", "host"])


def test_a_history_with_merge_taking_an_effect_before_its_cause_is_rejected(causal):
    """The rebuilt history can fail: merge receiving mid's message before source's (the cause of
    mid's) is reported."""
    unit, ex = causal
    msgs = _messages(20, seed=2)
    run = ex.run("two_paths", msgs)
    got = run.exits["merge"].copy()
    assert not check_history(_history(got, run.sent, "mid"), causal=["merge"])
    pair = np.flatnonzero(got["id"] == 0)
    assert len(pair) == 2
    got[pair] = got[pair[::-1]]
    assert check_history(_history(got, run.sent, "mid"), causal=["merge"])


def test_an_unstamped_hop_between_stamped_stages_keeps_the_chain_rising(causal):
    """source >> strip >> restamp: strip's Bare carries no stamp, so restamp receives it as the
    largest stamp seen for its entry message; its reply is still above the host's stamp."""
    unit, ex = causal
    g = _graph(unit, "unstamped_hop")
    msgs = _messages(200, seed=4)
    run = ex.run(g.name, msgs)
    got = run.exits["restamp"]
    assert got["id"].tolist() == list(range(len(msgs)))
    assert (got["x"] == msgs["x"] + 1).all() and (got["src"] == 9).all()
    assert (got["stamp"] > run.sent["stamp"] + 1).all()
    assert (np.diff(got["stamp"].astype(np.int64)) > 0).all()
    assert (run.sent["stamp"][1:] > got["stamp"][:-1]).all()  # the host received each reply


def test_a_stamped_graph_behind_an_unstamped_entry_is_stamped_from_the_host_clock(causal):
    """bare_source takes an unstamped Bare: it receives it as the host's stamp for that entry
    message (the driver runs on the host, with a physical clock), so source's stamps still rise."""
    unit, ex = causal
    assert "unstamped_entry" not in skipped_graphs(unit)
    msgs = np.zeros(150, dtype=rg.dtype_of(ck.Bare))
    msgs["id"] = np.arange(len(msgs))
    run = ex.run("unstamped_entry", msgs)
    got = run.exits["source"]
    assert got["id"].tolist() == list(range(len(msgs)))
    assert (got["seen_source"] > 0).all() and (got["stamp"] > got["seen_source"]).all()
    assert (np.diff(got["seen_source"].astype(np.int64)) > 0).all()
    assert (got["seen_source"][1:] > got["stamp"][:-1]).all()
    assert run.clock > int(got["stamp"].max())
