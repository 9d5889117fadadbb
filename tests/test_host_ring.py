"""ringgen.runtime.host_ring: the host end of the shared SPSC ring, without a device (the kernel's
side is played by direct stores to the same control words)."""

from __future__ import annotations

import numpy as np
import pytest

from ringgen.protocol import QUEUE_CTL_DTYPE
from ringgen.runtime.host_ring import (
    HEAD_WORD,
    TAIL_WORD,
    RingConsumer,
    RingProducer,
    check_capacity,
    segments,
)

SLOT = np.dtype({"names": ["id", "x"], "formats": ["<i8", "<f4"], "itemsize": 16})


def _ctl():
    ctl = np.zeros(QUEUE_CTL_DTYPE.itemsize, np.uint8)
    return ctl, memoryview(ctl).cast("Q")


def _batch(ids):
    b = np.zeros(len(ids), SLOT)
    b["id"] = ids
    b["x"] = 0.5
    return b


def test_counters_sit_where_the_protocol_puts_them():
    ctl, words = _ctl()
    view = ctl.view(QUEUE_CTL_DTYPE)
    words[TAIL_WORD], words[HEAD_WORD] = 7, 3
    assert (int(view["tail"][0]), int(view["head"][0])) == (7, 3)


@pytest.mark.parametrize("bad", [0, 1, 3, 6, 2.0, "4", None])
def test_check_capacity_refuses_what_is_not_a_power_of_two(bad):
    with pytest.raises(ValueError, match="my ring must be a power of two >= 2"):
        check_capacity(bad, "my ring")
    assert check_capacity(8) == 8


def test_segments_split_at_the_wrap():
    assert segments(5, 2, 8) == [(5, 2)]
    assert segments(6, 4, 8) == [(6, 2), (0, 2)]
    assert segments(16, 8, 8) == [(0, 8)]


def test_producer_publishes_what_fits_and_wraps():
    _, words = _ctl()
    ring = RingProducer(np.zeros(8 * SLOT.itemsize, np.uint8), SLOT, 8, words, 0)
    assert ring.put(_batch(range(6)), ring.device_head()) == 6
    assert words[TAIL_WORD] == 6 and ring.tail == 6
    assert ring.put(_batch(range(6, 12)), ring.device_head()) == 2  # two slots free
    words[HEAD_WORD] = 5  # the kernel consumed five
    assert ring.put(_batch(range(8, 12)), ring.device_head()) == 4
    assert list(ring.slots["id"]) == [8, 9, 10, 11, 4, 5, 6, 7]
    assert words[TAIL_WORD] == 12
    assert ring.put(_batch([12, 13]), ring.device_head()) == 1  # one slot left
    assert ring.put(_batch([99]), ring.device_head()) == 0  # full: nothing overwritten
    assert list(ring.slots["id"]) == [8, 9, 10, 11, 12, 5, 6, 7]


def test_producer_publishes_a_large_batch_in_chunks():
    class Words:
        """Records every store of the tail (a memoryview cannot be watched)."""

        def __init__(self):
            self.w = [0] * QUEUE_CTL_DTYPE.itemsize
            self.tails = []

        def __getitem__(self, i):
            return self.w[i]

        def __setitem__(self, i, v):
            self.w[i] = v
            if i == TAIL_WORD:
                self.tails.append(v)

    words = Words()
    ring = RingProducer(np.zeros(16 * SLOT.itemsize, np.uint8), SLOT, 16, words, 0, publish_chunk=4)
    assert ring.put(_batch(range(10)), 0) == 10
    assert words.tails == [4, 8, 10]
    assert list(ring.slots["id"][:10]) == list(range(10))


def test_producer_with_a_stride_and_byte_rows():
    _, words = _ctl()
    stride = 32
    ring = RingProducer(np.zeros(4 * stride, np.uint8), SLOT, 4, words, 0, stride=stride)
    assert ring.slots is None
    rows = _batch([1, 2, 3]).view(np.uint8).reshape(3, SLOT.itemsize)
    assert ring.put(rows, 0) == 3
    assert [int(r[:8].view("<i8")[0]) for r in ring.rows[:3]] == [1, 2, 3]
    assert ring._u8[SLOT.itemsize : stride].sum() == 0  # the gap between slots is untouched
    with pytest.raises(TypeError, match="reserve"):
        ring.reserve(1, 0)


def test_reserve_and_commit():
    _, words = _ctl()
    ring = RingProducer(np.zeros(4 * SLOT.itemsize, np.uint8), SLOT, 4, words, 0)
    view = ring.reserve(10, 0)
    assert len(view) == 4
    view["id"] = [5, 6, 7, 8]
    with pytest.raises(ValueError, match="commit"):
        ring.commit(5)
    ring.commit(3)
    assert words[TAIL_WORD] == 3 and ring.tail == 3


def test_consumer_takes_published_slots_and_frees_them():
    _, words = _ctl()
    buf = np.zeros(4 * SLOT.itemsize, np.uint8)
    ring = RingConsumer(buf, SLOT, 4, words, 0)
    assert len(ring.take(4)) == 0 and ring.depth() == 0
    ring.slots["id"] = [10, 11, 12, 13]
    words[TAIL_WORD] = 3  # the kernel published three
    assert list(ring.take(2)["id"]) == [10, 11]
    assert words[HEAD_WORD] == 2 and ring.depth() == 1
    ring.slots["id"][:2] = [14, 15]
    words[TAIL_WORD] = 6
    assert list(ring.take(10)["id"]) == [12, 13, 14, 15]  # across the wrap
    assert words[HEAD_WORD] == 6
    with pytest.raises(ValueError, match="release"):
        ring.release(1)


def test_producer_and_consumer_agree_on_one_ring():
    """Both ends on one ring and one control block: what goes in comes out, in order."""
    _, words = _ctl()
    buf = np.zeros(8 * SLOT.itemsize, np.uint8)
    prod = RingProducer(buf, SLOT, 8, words, 0, publish_chunk=3)
    cons = RingConsumer(buf, SLOT, 8, words, 0)
    got, sent = [], 0
    while sent < 100 or cons.depth():
        sent += prod.put(_batch(range(sent, min(sent + 5, 100))), prod.device_head())
        got += list(cons.take(3)["id"])
    assert got == list(range(100))
