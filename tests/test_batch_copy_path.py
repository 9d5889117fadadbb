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


def _fake_handle_of(kernel, monkeypatch, capacity):
    """A CUDA handle whose mapped page and rings are numpy arrays (test_cuda_queues.py's)."""
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parent))
    from test_cuda_queues import _fake_handle

    return _fake_handle(kernel, capacity=capacity)


def _fake_cuda(monkeypatch, capacity):
    from examples.vector_add import AddRequest, vector_add

    k, C = _fake_handle_of(vector_add, monkeypatch, capacity)

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


def test_bridged_replies_are_decoded_straight_from_the_ring_into_out(monkeypatch):
    """receive_batch(out=view rows) of a bridged reply: the columnar decoder reads the ring's
    strided slots (both pieces of a wrapped run), no copy of them is taken; with a hole pending the
    call takes the copying path and still returns the same rows."""
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parent.parent))
    from examples.word_stats import Word, WordStat, word_stats

    k, C = _fake_handle_of(word_stats, monkeypatch, capacity=8)
    out_tail = C._OUTQ_OFF // 8
    texts = ["the", "unhappy", "", "naïve", "non-stop", "a", "x" * 32, "of", "an", "kernel"]

    def reply(i):
        t = texts[i % len(texts)]
        return WordStat(id=i, text=t, length=len(t.encode()), is_stop_word=False, negated=False)

    def kernel(seqs):
        for s in seqs:
            data = np.frombuffer(k.out_codec.pack(reply(s)), np.uint8)
            k.outq.rows[s % k.outq.cap, : len(data)] = data
        k._words[out_tail] = max(seqs) + 1

    real_take = k.outq.take
    monkeypatch.setattr(k.outq, "take", lambda n: pytest.fail("slots copied out of the ring"))
    rows = np.zeros(10, dtype=k.out_codec.dtype)
    for i in range(5):  # head to 5: the next run of 6 wraps after three slots
        k.send(Word(id=i, text="w"))
    kernel(range(5))
    assert len(k.receive_batch(5, timeout=1.0, min_n=5, out=rows)) == 5
    for i in range(6):
        k.send(Word(id=i, text="w"))
    kernel(range(5, 11))
    got = k.receive_batch(6, timeout=1.0, min_n=6, out=rows)
    assert np.shares_memory(got, rows) and len(got) == 6
    assert k.out_codec.from_array(got) == [reply(i) for i in range(5, 11)]
    assert k.outq.head == 11 and k._received == 11
    # a hole pending: decode_into declines, the slots are copied out, then decoded into out
    monkeypatch.setattr(k.outq, "take", real_take)
    for i in range(3):
        k.send(Word(id=i, text="w"))
    k.outq.marks[12 % 8] = 13  # request 12 left no reply
    k._words[C._SIDE_OFF // 8] = 1
    kernel([11, 13])
    got = k.receive_batch(3, timeout=0.5, min_n=2, out=rows)
    assert k.out_codec.from_array(got) == [reply(11), reply(13)]
    assert k.outq.holes_taken == 1


def test_a_bridged_batch_is_published_piece_by_piece(monkeypatch):
    """With publish_chunk, put_rows publishes each encoded piece before it encodes the next (the
    kernel starts early), the slots hold what one encode_batch call writes, and a row that cannot
    be encoded leaves the pieces before it published and counted, then raises."""
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parent.parent))
    from examples.word_stats import Word, word_stats
    from ringgen.errors import EncodeError
    from ringgen.runtime.cuda import queues as Q

    monkeypatch.setattr(Q, "now_ticks", lambda: 99)
    k, _ = _fake_handle_of(word_stats, monkeypatch, capacity=128)
    k.inq.publish_chunk = 32
    codec = k.in_codec
    tails = []
    real = k._encode_rows
    monkeypatch.setattr(
        k, "_encode_rows", lambda r, o, s: tails.append(k.inq.tail) or real(r, o, s)
    )
    rows = codec.to_array([Word(id=i, text="w" * (i % 33)) for i in range(100)])
    assert k.send_batch(rows) == 100
    assert tails == [0, 32, 64, 96] and k.inq.tail == 100 and k._sent == 100
    want = codec.encode_batch(rows, timestamp=99)
    ring = k.inq._u8.reshape(-1, k.inq.stride)[:100, : codec.slot_size]
    for i in range(100):
        total = int.from_bytes(want[i, 4:12].tobytes(), "little")
        assert (ring[i, :total] == want[i, :total]).all(), i
    k.outq.head = 100  # the replies were taken: room again
    bad = codec.to_array([Word(id=i, text="ok") for i in range(90)])
    bad["text"]["len"][70] = 40  # over Str[32]: in the third piece
    with pytest.raises(EncodeError, match="text"):
        k.send_batch(bad)
    assert k.inq.tail == 164 and k._sent == 164  # two pieces published, and counted
    bad["text"]["len"][5] = 40  # in the first piece: nothing published
    with pytest.raises(EncodeError, match="text"):
        k.send_batch(bad[:20])
    assert k.inq.tail == 164 and k._sent == 164
