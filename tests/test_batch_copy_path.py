"""The copying batch path (issue 14, item 3): a reply is copied once, from the ring straight into the
array ``receive_batch`` returns (the caller's ``out=``, or the one array a whole batch is gathered
in), in at most two slice copies where the run wraps; holes are dropped in place.

The kernel's side is played by direct stores to the rings and their counters (no device).
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from ringgen.protocol import QUEUE_CTL_DTYPE
from ringgen.runtime.cuda.queues import PositionalOutput
from ringgen.runtime.host_ring import TAIL_WORD, RingConsumer

pytestmark = pytest.mark.timeout(60)

SLOT = np.dtype({"names": ["id", "x"], "formats": ["<i8", "<f4"], "itemsize": 16})


def _consumer(cap: int, stride=None):
    ctl = np.zeros(QUEUE_CTL_DTYPE.itemsize, np.uint8)
    words = memoryview(ctl).cast("Q")
    buf = np.zeros(cap * (stride or SLOT.itemsize), np.uint8)
    return RingConsumer(buf, SLOT, cap, words, 0, stride=stride), words


def _publish(ring, words, ids) -> None:
    """The kernel: replies ``ids`` in the slots from its tail on, then the tail."""
    tail = words[TAIL_WORD]
    for k, i in enumerate(ids):
        at = ((tail + k) & (ring.cap - 1)) * ring.stride
        ring._u8[at : at + 16] = np.array([(i, i * 0.5)], SLOT).view(np.uint8)
    words[TAIL_WORD] = tail + len(ids)


@pytest.mark.parametrize("stride", [None, 32])
def test_take_into_writes_a_wrapped_run_in_place(stride):
    ring, words = _consumer(8, stride)
    _publish(ring, words, range(6))
    assert len(ring.take(6)) == 6  # head at 6: the next run of 6 wraps after two slots
    _publish(ring, words, range(10, 16))
    dst = np.zeros(10, SLOT)
    dst["id"] = -1
    assert ring.take_into(dst[2:]) == 6
    assert list(dst["id"]) == [-1, -1, 10, 11, 12, 13, 14, 15, -1, -1]
    assert list(dst["x"][2:8]) == [5.0, 5.5, 6.0, 6.5, 7.0, 7.5]
    assert ring.head == 12 and words[ring._head_at] == 12  # the slots are freed
    assert ring.take_into(dst) == 0  # nothing ready: nothing written
    assert dst["id"][0] == -1


def test_take_into_takes_at_most_len_dst_and_copes_with_a_strided_dst():
    ring, words = _consumer(8)
    _publish(ring, words, range(5))
    dst = np.zeros(6, SLOT)
    assert ring.take_into(dst[:3]) == 3  # the rest stays in the ring
    assert ring.depth() == 2
    assert ring.take_into(dst[::2]) == 2  # not contiguous: taken through take, then copied
    assert list(dst["id"]) == [3, 1, 4, 0, 0, 0]


def test_positional_take_into_drops_holes_in_place():
    arr = np.zeros(2048, np.uint8)
    words = memoryview(arr).cast("Q")
    cap, out_ctl, side = 8, 96, 128
    marks = np.zeros(cap, np.uint32)

    class Codec:
        pass

    q = PositionalOutput(
        np.zeros(cap * SLOT.itemsize, np.uint8), SLOT, cap, words, out_ctl, side, marks, Codec
    )
    for s in range(6):
        if s in (1, 4):  # requests without a reply
            marks[s] = s + 1
            words[side] += 1
        else:
            q.slots[s] = (s, 0.0)
    words[out_ctl] = 6
    dst = np.zeros(8, SLOT)
    dst["id"] = -1
    assert q.take_into(dst) == 4
    assert list(dst["id"][:4]) == [0, 2, 3, 5] and q.holes_taken == 2 and q.head == 6


def _fake_cuda(monkeypatch, capacity):
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parent))
    from test_cuda_queues import _fake_handle  # the mapped page and rings as numpy arrays

    from examples.vector_add import AddRequest, vector_add

    k, C = _fake_handle(vector_add, capacity=capacity)

    def no_take(max_n):
        raise AssertionError("receive_batch copied through take(), not straight into its array")

    monkeypatch.setattr(k.outq, "take", no_take)
    return k, C, AddRequest


def _kernel_replies(k, C, seqs) -> None:
    """The kernel: reply i (id 100 + i) in slot i, then the tail."""
    for s in seqs:
        k.outq.slots[s % k.outq.cap] = (100 + s, s * 0.5)
    k._words[C._OUTQ_OFF // 8] = max(seqs) + 1


def test_receive_batch_out_is_written_straight_from_the_ring(monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parent.parent))
    k, C, AddRequest = _fake_cuda(monkeypatch, capacity=8)
    for i in range(5):  # move the head to 5, so the next batch wraps
        k.send(AddRequest(id=i, a=0.0, b=0.0))
    _kernel_replies(k, C, range(5))
    first = np.zeros(5, k.format.out_slot)
    assert len(k.receive_batch(5, timeout=1.0, min_n=5, out=first)) == 5
    for i in range(8):
        k.send(AddRequest(id=i, a=0.0, b=0.0))
    _kernel_replies(k, C, range(5, 8))  # three now, five a little later, across the wrap
    late = threading.Timer(0.05, lambda: _kernel_replies(k, C, range(8, 13)))
    late.start()
    out = np.zeros(10, k.format.out_slot)
    got = k.receive_batch(8, timeout=5.0, min_n=8, out=out)
    late.join()
    assert got.__array_interface__["data"][0] == out.__array_interface__["data"][0]
    assert list(got["id"]) == list(range(105, 113)) and (out["id"][8:] == 0).all()
    assert k._received == 13 and k.outq.head == 13


def test_a_whole_batch_without_out_is_gathered_in_one_array(monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parent.parent))
    k, C, AddRequest = _fake_cuda(monkeypatch, capacity=8)
    for i in range(6):
        k.send(AddRequest(id=i, a=0.0, b=0.0))
    _kernel_replies(k, C, range(2))
    late = threading.Timer(0.05, lambda: _kernel_replies(k, C, range(2, 6)))
    late.start()
    got = k.receive_batch(6, timeout=5.0, min_n=6)
    late.join()
    assert got.dtype == k.out_codec.dtype and got.flags.owndata is False
    assert list(got["id"]) == list(range(100, 106))
    # min_n short of max_n: the few replies that came are handed out in an array of their own
    k.send(AddRequest(id=6, a=0.0, b=0.0))
    _kernel_replies(k, C, [6])
    few = k.receive_batch(8, timeout=0.05, min_n=8)
    assert list(few["id"]) == [106] and few.base is None
