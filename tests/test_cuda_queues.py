"""Host ends of the CUDA queues without a GPU: the kernel's side is played by direct writes to the
same arrays (its tail, hole marks and counts, or per-slot stamps), as it would write them over PCIe.
"""

from __future__ import annotations

import numpy as np
import pytest

from ringgen.runtime.cuda import _stamped
from ringgen.runtime.cuda_queues import InputRing, OutboxOutput, PositionalOutput

REQ = np.dtype(
    {
        "names": ["id", "a", "b"],
        "formats": ["<i8", "<f4", "<f4"],
        "offsets": [0, 8, 12],
        "itemsize": 16,
    }
)
REP = np.dtype(
    {"names": ["id", "sum"], "formats": ["<i8", "<f4"], "offsets": [0, 8], "itemsize": 16}
)
IN_CTL, OUT_CTL, SIDE = (
    64,
    96,
    128,
)  # word offsets in the fake control page, as the loader lays them


class _Codec:
    """The parts of a generated direct codec the queues use."""

    import struct

    packer = struct.Struct("<q2f")
    cls = tuple

    @staticmethod
    def flat(o):
        return o

    @staticmethod
    def from_flat(v, i):
        return v[i:]


class _RepCodec(_Codec):
    import struct

    packer = struct.Struct("<qf4x")


@pytest.fixture
def page():
    arr = np.zeros(2048, np.uint8)
    return arr, memoryview(arr).cast("Q")


def _batch(ids):
    b = np.zeros(len(ids), REQ)
    b["id"] = ids
    b["a"] = 1.5
    return b


def test_input_ring_wraps_and_respects_room(page):
    _, words = page
    ring = InputRing(np.zeros(8, REQ), words, IN_CTL, _Codec)
    assert ring.put(_batch(range(6)), admit_head=0) == 6
    assert words[IN_CTL] == 6
    assert ring.put(_batch(range(6, 12)), admit_head=0) == 2  # only two slots free
    assert ring.put(_batch(range(8, 12)), admit_head=5) == 4  # five consumed: wraps to slot 0
    assert list(ring.slots["id"]) == [8, 9, 10, 11, 4, 5, 6, 7]
    assert words[IN_CTL] == 12


def test_put_one_packs_into_the_slot(page):
    _, words = page
    ring = InputRing(np.zeros(4, REQ), words, IN_CTL, _Codec)
    assert ring.try_put_one((7, 1.0, 2.0), admit_head=0)
    assert tuple(ring.slots[0]) == (7, 1.0, 2.0) and words[IN_CTL] == 1
    for i in range(3):
        assert ring.try_put_one((i, 0.0, 0.0), admit_head=0)
    assert not ring.try_put_one((9, 0.0, 0.0), admit_head=0)  # full: nothing written
    assert words[IN_CTL] == 4


def test_reserve_commit_is_contiguous_and_checked(page):
    _, words = page
    ring = InputRing(np.zeros(8, REQ), words, IN_CTL, _Codec)
    ring.put(_batch(range(6)), admit_head=0)
    view = ring.reserve(5, admit_head=6)
    assert len(view) == 2  # stops at the end of the ring
    view["id"] = [60, 61]
    with pytest.raises(ValueError, match="only 2"):
        ring.commit(3)
    ring.commit(2)
    assert words[IN_CTL] == 8 and list(ring.slots["id"][6:]) == [60, 61]


def _positional(page, cap=8):
    _, words = page
    marks = np.zeros(cap, np.uint32)
    return (
        PositionalOutput(np.zeros(cap, REP), words, OUT_CTL, SIDE, marks, _RepCodec),
        words,
        marks,
    )


def _device_writes(q, words, marks, seqs, holes=()):
    """What the kernel does: replies in their slots, hole marks and count, then the tail."""
    for s in seqs:
        if s in holes:
            marks[s % q.cap] = s + 1
            words[SIDE] += 1
        else:
            q.slots[s % q.cap] = (s, s * 0.5)
    words[OUT_CTL] = max(seqs) + 1


def test_positional_take_skips_holes_in_order(page):
    q, words, marks = _positional(page)
    _device_writes(q, words, marks, range(6), holes={1, 4})
    out = q.take(10)
    assert list(out["id"]) == [0, 2, 3, 5]
    assert q.head == 6 and words[OUT_CTL + 16] == 6 and q.holes_taken == 2
    # next lap: slot 1 still carries the old mark 2; it must not count as a hole for seq 9
    _device_writes(q, words, marks, range(6, 12))
    assert list(q.take(10)["id"]) == [6, 7, 8, 9, 10, 11]


def test_positional_take_one_and_view(page):
    q, words, marks = _positional(page)
    assert q.take_one() is None
    _device_writes(q, words, marks, range(5), holes={0, 3})
    assert q.take_one() == (1, 0.5)  # the hole at 0 is skipped
    view = q.view(10)
    assert list(view["id"]) == [2]  # stops before the hole at 3
    assert not view.flags.writeable
    q.release(1)
    assert list(q.view(10)["id"]) == [4]  # the hole at 3 skipped on the way
    with pytest.raises(ValueError):
        q.release(5)


def test_hole_count_beyond_the_tail_is_not_consumed_early(page):
    q, words, marks = _positional(page)
    _device_writes(q, words, marks, range(3))
    words[SIDE] = 1  # a hole was counted for a message past the tail (still in flight)
    assert list(q.take(10)["id"]) == [0, 1, 2] and q.holes_taken == 0
    marks[3] = 4
    words[OUT_CTL] = 4
    assert len(q.take(10)) == 0 and q.holes_taken == 1 and q.head == 4


def test_outbox_output_takes_the_stamped_prefix(page):
    _, words = page
    slots = np.zeros(8, _stamped(REP))
    q = OutboxOutput(slots, words, OUT_CTL)
    assert len(q.take(8)) == 0
    for pos in (0, 1, 3):  # slot 2 is reserved but not written yet
        slots[pos] = ((pos, 1.0), pos + 1)
    out = q.take(8)
    assert list(out["id"]) == [0, 1] and q.head == 2 and words[OUT_CTL + 16] == 2
    slots[2] = ((2, 1.0), 3)
    assert list(q.take(8)["id"]) == [2, 3]
    assert q.depth() == 0


def test_stamped_slot_matches_the_c_struct():
    dt = _stamped(np.dtype({"names": ["x"], "formats": ["<i4"], "itemsize": 12}))
    assert dt.fields["stamp"][1] == 16 and dt.itemsize == 24
