"""HostQueue: the bounded SPSC ring of the cpu backend (device protocol, no drop, no overwrite)."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from ringgen.runtime.host_queue import HostQueue


@pytest.mark.parametrize("bad", [0, 1, 3, 100, -4, 2.0])
def test_capacity_must_be_a_power_of_two(bad):
    with pytest.raises(ValueError, match="power of two"):
        HostQueue(bad)


def test_push_takes_only_what_fits_and_never_overwrites():
    q = HostQueue(4)
    assert q.push(["a", "b", "c"]) == 3
    assert q.push(["d", "e", "f"]) == 1  # one free slot
    assert q.push(["x"]) == 0 and len(q) == 4 and q.free == 0
    assert q.pop(2) == ["a", "b"]
    assert q.push(["e", "f", "g"]) == 2  # wraps around the end of the ring
    assert q.pop(10) == ["c", "d", "e", "f"]
    assert q.pop(1) == [] and len(q) == 0
    assert (q.tail, q.head) == (6, 6)  # counters only grow


def test_consumed_slots_drop_their_references():
    q = HostQueue(2)
    obj = object()
    q.push([obj])
    q.pop(1)
    assert all(s is None for s in q._slots)


def test_numpy_slots_and_stamps_wrap_around():
    dt = np.dtype([("seq", "<i8"), ("v", "<f4")], align=True)
    q = HostQueue(8, dtype=dt, stamps=True)
    a = np.zeros(6, dtype=dt)
    a["seq"] = np.arange(6)
    assert q.push(a, stamp=100) == 6
    out, st = q.pop_stamped(4)
    np.testing.assert_array_equal(out["seq"], [0, 1, 2, 3])
    np.testing.assert_array_equal(st, [100] * 4)
    b = np.zeros(6, dtype=dt)
    b["seq"] = np.arange(6, 12)
    assert q.push(b, stamp=200) == 6  # 2 left + 6 = 8: fills the ring across its end
    out, st = q.pop_stamped(100)
    assert out.dtype == dt
    np.testing.assert_array_equal(out["seq"], np.arange(4, 12))
    np.testing.assert_array_equal(st, [100, 100] + [200] * 6)
    empty, st = q.pop_stamped(3)
    assert empty.dtype == dt and len(empty) == 0 and len(st) == 0


@pytest.mark.timeout(60)
def test_two_threads_move_every_item_once_in_order():
    q = HostQueue(64)
    n = 100_000

    def produce():
        i = 0
        while i < n:
            k = q.push(list(range(i, min(i + 97, n))))
            i += k
            if not k:
                time.sleep(0)  # hand the interpreter lock to the consumer

    t = threading.Thread(target=produce, daemon=True)
    t.start()
    got = []
    while len(got) < n:
        items = q.pop(50)
        got.extend(items)
        if not items:
            time.sleep(0)
    t.join(10)
    assert got == list(range(n))
