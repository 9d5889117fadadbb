"""Hybrid logical clocks, order="causal" and the causal merge: unit tests, and recorded histories
of a fan-in graph on every host backend checked by ringgen/testing/history.py."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

import ringgen as rg
from ringgen.causal import HybridClock, hlc_field, hlc_parts, physical_now
from ringgen.errors import QueueClosedError
from ringgen.runtime.causal import CausalMerge, Stream
from ringgen.testing import random_messages
from ringgen.testing.history import assert_causal, record
from ringgen.types import i32

sys.path.insert(0, str(Path(__file__).resolve().parent))
import topic_kernels as tk  # noqa: E402
from test_topics import BACKENDS, _launch  # noqa: E402

pytestmark = pytest.mark.timeout(300)


def test_the_clock_rules_on_packed_stamps():
    c = HybridClock("a")
    t1 = c.send()
    t2 = c.send()
    assert t2 > t1
    us, _ = hlc_parts(t1)
    assert abs(us - physical_now()) < 5_000_000
    far = (physical_now() + 10_000_000) << 16 | 7  # a stamp from a clock 10 s ahead
    assert c.receive(far) == far + 1  # max(local, received) + 1 tick
    assert c.send() == far + 2
    assert c.next_lower_bound() == far + 3
    first = c.send(5)
    assert first == far + 3 and c.now == far + 7
    full = (physical_now() + 10_000_000) << 16 | 0xFFFF
    assert hlc_parts(HybridClock("b").receive(full)) == (hlc_parts(full)[0] + 1, 0)  # carries


def test_hlc_field_finds_the_stamp_and_hlc_lays_out_as_u64():
    assert hlc_field(tk.Tick) == "stamp"
    assert hlc_field(tk.Plain) is None
    assert rg.HLC == rg.u64 and rg.HLC is not rg.u64
    assert rg.dtype_of(tk.Tick)["stamp"] == np.dtype("<u8")


def test_order_causal_needs_a_stamped_input_naming_kernel_and_class():
    with pytest.raises(rg.HandlerError) as err:

        @rg.ring_kernel(order="causal")
        def unstamped(p: tk.Plain) -> tk.Plain:
            return p

    text = str(err.value)
    assert "kernel unstamped" in text and "topic_kernels.Plain has no rg.HLC field" in text
    assert f"{Path(__file__).name}:" in text
    with pytest.raises(rg.HandlerError, match="order='sorted' is not one of fifo, causal"):

        @rg.ring_kernel(order="sorted")
        def bad(t: tk.Tick) -> tk.Tick:
            return t


def _chunk(stamps) -> np.ndarray:
    arr = np.zeros(len(stamps), dtype=rg.dtype_of(tk.Tick))
    arr["stamp"] = stamps
    arr["id"] = stamps
    return arr


def test_the_merge_delivers_in_stamp_order_and_waits_for_a_live_producer():
    a, b, host = Stream("a"), Stream("b"), Stream("host")
    bounds = {"a": 35, "b": 100, "host": 25}
    merge = CausalMerge("m", "stamp", [a, b, host], bounds.get)
    a.put(_chunk([10, 20, 30]))
    b.put(_chunk([15, 40]))
    got: list = []
    send = lambda part: got.extend(int(i) for i in part["id"]) or len(part)  # noqa: E731
    merge.push_into(send)
    assert got == [10, 15, 20]  # 30 waits: host is silent and could still send 25
    bounds["host"] = None  # host sends nothing more
    merge.push_into(send)
    assert got == [10, 15, 20, 30]  # 40 waits: a is empty now and could still send 35...
    bounds["a"] = 41
    merge.push_into(send)
    assert got == [10, 15, 20, 30, 40]  # ...until a's clock has passed it
    assert a.depth == b.depth == 0 and a.forwarded == 3 and b.forwarded == 2


def test_the_merge_stops_when_the_consumer_is_full():
    a, b = Stream("a"), Stream("b")
    merge = CausalMerge("m", "stamp", [a, b], lambda p: None)
    a.put(_chunk([1, 2, 3]))
    b.put(_chunk([4]))
    taken: list = []

    def send(part):
        k = min(len(part), 2 - len(taken))
        taken.extend(int(i) for i in part["id"][:k])
        return k

    assert merge.push_into(send) == 2 and taken == [1, 2]
    assert a.depth == 1 and list(a.chunks[0]["id"]) == [3]


def _fan_in():
    return rg.graph(
        tk.source >> tk.left,
        tk.source >> tk.right,
        tk.left >> tk.merge,
        tk.right >> tk.merge,
        name="fan_in",
    )


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_causal_fan_in_passes_the_history_checker(backend):
    msgs = random_messages(tk.Tick, 2000, seed=12)
    with _launch(_fan_in(), backend) as h:
        history = record(h)
        for i in range(0, len(msgs), 250):  # several sends: the host's clock interleaves too
            h.send_batch(msgs[i : i + 250])
        h.terminate(timeout=120)
        out = []
        while True:
            try:
                out.append(h.receive_batch(timeout=5.0))
            except QueueClosedError:
                break
    got = np.concatenate([o for o in out if len(o)])
    assert_causal(history, causal=["merge"])
    delivered = [e.stamp for e in history.deliveries["merge"]]
    assert len(delivered) == 2 * len(msgs) == len(got)
    assert delivered == sorted(delivered)  # the merge hands over in stamp order

    # the same messages as the composition of the handlers
    def w(v: int) -> int:  # i32 arithmetic wraps, as in C
        return int(i32(v))

    xs = [(int(m["id"]), w(int(m["x"]) + 1)) for m in msgs]
    want = sorted([(i, w(x * 3), 1) for i, x in xs] + [(i, w(x - 7), 2) for i, x in xs])
    assert sorted(zip(got["id"].tolist(), got["x"].tolist(), got["src"].tolist())) == want


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_reply_is_stamped_after_what_caused_it(backend):
    g = rg.pipeline(tk.source, tk.left, tk.join)
    msgs = random_messages(tk.Tick, 500, seed=1)
    with _launch(g, backend) as h:
        history = record(h)
        h.send_batch(msgs)
        got = []
        while len(got) < len(msgs):
            got += list(h.receive_batch(timeout=5.0)["stamp"])
    assert_causal(history)  # the clock condition on every hop
    sent = [e.stamp for e in history.events["host"] if e.kind == "send"]
    assert len(sent) == len(msgs) and min(int(s) for s in got) > max(sent)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_causal_subscriber_of_a_topic_with_three_publishers(backend):
    """left, right and the host publish to one topic; merge takes it in stamp order."""
    t = rg.topic("ticks", tk.Tick)
    g = rg.graph(
        tk.source >> tk.left,
        tk.source >> tk.right,
        [tk.left, tk.right, rg.HOST] >> t,
        t >> tk.merge,
    )
    msgs = random_messages(tk.Tick, 1200, seed=13)
    with _launch(g, backend) as h:
        history = record(h)
        for i in range(0, 1200, 300):
            h.send_batch(msgs[i : i + 200])
            h.publish_batch("ticks", msgs[i + 200 : i + 300])
        h.terminate(timeout=120)
        st = h.stats().topics["ticks"]
    assert_causal(history, causal=["merge"])
    delivered = [(e.sender, e.stamp) for e in history.deliveries["merge"]]
    assert len(delivered) == 2 * 800 + 400 == st.published == st.subscribers["merge"].delivered
    assert [s for _, s in delivered] == sorted(s for _, s in delivered)
    assert {p for p, _ in delivered} == {"left", "right", "host"}
