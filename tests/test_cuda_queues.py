"""Host ends of the CUDA queues without a GPU: the kernel's side is played by direct writes to the
same arrays (its tail, hole marks and counts, or per-slot stamps), as it would write them over PCIe.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from ringgen.codegen.cuda import compute_outbox_slot
from ringgen.runtime.cuda.abi import outbox_slot, ring_stride
from ringgen.runtime.cuda.queues import DeadMarks, InputRing, OutboxOutput, PositionalOutput

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
    ring = InputRing(np.zeros(8 * REQ.itemsize, np.uint8), REQ, 8, words, IN_CTL, _Codec)
    assert ring.put(_batch(range(6)), admit_head=0) == 6
    assert words[IN_CTL] == 6
    assert ring.put(_batch(range(6, 12)), admit_head=0) == 2  # only two slots free
    assert ring.put(_batch(range(8, 12)), admit_head=5) == 4  # five consumed: wraps to slot 0
    assert list(ring.slots["id"]) == [8, 9, 10, 11, 4, 5, 6, 7]
    assert words[IN_CTL] == 12


def test_put_one_packs_into_the_slot(page):
    _, words = page
    ring = InputRing(np.zeros(4 * REQ.itemsize, np.uint8), REQ, 4, words, IN_CTL, _Codec)
    assert ring.try_put_one((7, 1.0, 2.0), admit_head=0)
    assert tuple(ring.slots[0]) == (7, 1.0, 2.0) and words[IN_CTL] == 1
    for i in range(3):
        assert ring.try_put_one((i, 0.0, 0.0), admit_head=0)
    assert not ring.try_put_one((9, 0.0, 0.0), admit_head=0)  # full: nothing written
    assert words[IN_CTL] == 4


def test_reserve_commit_is_contiguous_and_checked(page):
    _, words = page
    ring = InputRing(np.zeros(8 * REQ.itemsize, np.uint8), REQ, 8, words, IN_CTL, _Codec)
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
        PositionalOutput(
            np.zeros(cap * REP.itemsize, np.uint8), REP, cap, words, OUT_CTL, SIDE, marks, _RepCodec
        ),
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
    slots = np.zeros(8, outbox_slot(REP, *compute_outbox_slot(REP.itemsize, bridged=False)))
    q = OutboxOutput(slots, words, OUT_CTL)
    assert len(q.take(8)) == 0
    for pos in (0, 1, 3):  # slot 2 is reserved but not written yet
        slots[pos] = ((pos, 1.0), pos + 1)
    out = q.take(8)
    assert list(out["id"]) == [0, 1] and q.head == 2 and words[OUT_CTL + 16] == 2
    slots[2] = ((2, 1.0), 3)
    assert list(q.take(8)["id"]) == [2, 3]
    assert q.depth() == 0


def test_outbox_fast_take_one_reads_a_stamped_slot_in_place(page):
    """The Outbox latency path: None until the head's stamp is written, then the reply (built
    positionally), the head advanced and published; a stale stamp from the previous lap is not
    taken for the current one."""
    _, words = page
    slots = np.zeros(4, outbox_slot(REP, *compute_outbox_slot(REP.itemsize, bridged=False)))
    q = OutboxOutput(slots, words, OUT_CTL)
    take = q.fast_take_one(_RepCodec, lambda *values: values)
    assert take() is None and q.head == 0
    slots[1] = ((11, 2.5), 2)  # the next slot is written first: the head still waits
    assert take() is None
    slots[0] = ((10, 1.5), 1)
    assert take() == (10, 1.5) and q.head == 1 and words[OUT_CTL + 16] == 1
    assert take() == (11, 2.5) and take() is None and q.head == 2
    for seq in (2, 3):
        slots[seq] = ((20 + seq, 0.5), seq + 1)
    assert [take(), take()] == [(22, 0.5), (23, 0.5)]
    assert take() is None  # slot 0 still holds stamp 1 of the first lap, not 5
    slots[0] = ((30, 0.25), 5)
    assert take() == (30, 0.25) and q.head == 5
    assert OutboxOutput(slots, words, OUT_CTL).fast_take_one(object()) is None  # no packer


def test_stamped_slot_matches_the_c_struct():
    """The stamp at the next 8-byte boundary, the slot padded to a multiple of 16 (the template's
    ``__align__(16)`` struct): a 16-byte store of a reply never lands off a 16-byte boundary."""
    x = np.dtype({"names": ["x"], "formats": ["<i4"], "itemsize": 12})
    dt = outbox_slot(x, *compute_outbox_slot(x.itemsize, bridged=False))
    assert dt.fields["stamp"][1] == 16 and dt.itemsize == 32
    assert (
        outbox_slot(REP, *compute_outbox_slot(REP.itemsize, bridged=False)).itemsize == 32
    )  # was 24: the second slot's 16-byte store faulted


def test_bridged_rings_round_trip_through_the_codecs(page, tmp_path, monkeypatch):
    """Bridged queues end to end with the kernel played in Python: the host encodes a batch into
    16-byte-strided slots (SlotBatches + InputRing), the 'kernel' decodes each slot at its stride,
    runs the handler's logic and encodes the reply at the output stride, and the host takes the
    replies (batch and one by one) back as the objects the handler made."""
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parent.parent))
    from examples.word_stats import Word, WordStat, word_stats
    from ringgen.codegen.cuda import slot_stride
    from ringgen.runtime.batches import SlotBatches
    from ringgen.jit import built_package

    monkeypatch.setenv("RINGGEN_CACHE_DIR", str(tmp_path))
    spec = word_stats.spec
    _, codecs = built_package(spec)
    fmt = SlotBatches("word_stats", codecs["Word"], codecs["WordStat"])
    cap = 8
    # the strides the emitter lays the rings out with (the runtime reads them from manifest.json)
    in_stride, out_stride = slot_stride(fmt.in_slot.itemsize), slot_stride(fmt.out_slot.itemsize)
    assert in_stride == slot_stride(fmt.in_slot.itemsize) and in_stride % 16 == 0
    assert in_stride != fmt.in_slot.itemsize  # the stride path is what this test exercises
    _, words = page
    inq = InputRing(
        np.zeros(cap * in_stride, np.uint8),
        fmt.in_slot,
        cap,
        words,
        IN_CTL,
        fmt.in_codec,
        stride=in_stride,
    )
    out_buf = np.zeros(cap * out_stride, np.uint8)
    marks = np.zeros(cap, np.uint32)
    outq = PositionalOutput(
        out_buf, fmt.out_slot, cap, words, OUT_CTL, SIDE, marks, fmt.out_codec, stride=out_stride
    )
    assert outq.slots is None
    with pytest.raises(TypeError, match="direct output"):
        outq.view(4)
    texts = ["the", "unhappy", "", "naïve", "non-stop", "a", "x" * 32, "of"]
    msgs = [Word(id=i, text=t) for i, t in enumerate(texts)]
    done = 0

    def handler(w):  # word_stats without its state updates
        n = len(w.text.encode())
        stop = w.text in ("the", "a", "an", "and", "of")
        neg = w.text.startswith(("un", "non"))
        return WordStat(id=w.id, text=w.text, length=n, is_stop_word=stop, negated=neg)

    def device(upto):
        nonlocal done
        for seq in range(done, upto):
            at = (seq % cap) * in_stride
            req = fmt.in_codec.unpack(inq._u8[at : at + in_stride].tobytes())
            reply = handler(req)
            data = fmt.out_codec.pack(reply)
            assert len(data) <= fmt.out_slot.itemsize
            pos = (seq % cap) * out_stride
            out_buf[pos : pos + len(data)] = np.frombuffer(data, np.uint8)
        done = upto
        words[OUT_CTL] = upto

    assert inq.put(fmt.from_objects(msgs[:5]), admit_head=0) == 5
    device(5)
    got = fmt.to_objects(outq.take(3)) + [outq.take_one(), outq.take_one()]
    assert outq.take_one() is None
    assert inq.try_put_bytes(fmt.in_codec.pack(msgs[5]), admit_head=outq.head)
    assert inq.put(fmt.from_objects(msgs[6:]), admit_head=outq.head) == 2  # wraps: 8 and 9 -> 0, 1
    device(8)
    got += fmt.to_objects(outq.take(8))
    assert got == [handler(m) for m in msgs]
    assert [g.text for g in got] == texts


def _fake_handle(kernel, capacity=4, dead_letters=False):
    """A CudaKernelHandle whose 'mapped' page and rings are plain numpy arrays (no GPU): the host
    paths run for real, the kernel's side is played by the test."""
    from ringgen.runtime import cuda as C
    from ringgen.jit import built_package

    pkg, codecs = built_package(kernel.spec, ("cuda",))  # the handle reads abi.cuda
    k = C.CudaKernelHandle(
        kernel.spec, str(pkg), codecs=codecs, capacity=capacity, dead_letters=dead_letters
    )
    page = np.zeros(C._PAGE, np.uint8)
    k._words = memoryview(page).cast("Q")
    k._words32 = memoryview(page).cast("I")
    k._ctl = page[C._CTL_OFF : C._CTL_OFF + C.CONTROL_SIZE].view(C.CONTROL_DTYPE)
    k._ctl["state"] = int(C.Lifecycle.ACTIVE)
    fmt = k.format
    abi = k._abi()
    in_stride = ring_stride(abi["in_stride"], fmt.in_slot, k.name)
    out_stride = ring_stride(abi["out_stride"] or fmt.out_slot.itemsize, fmt.out_slot, k.name)
    k.inq = InputRing(
        np.zeros(capacity * in_stride, np.uint8),
        fmt.in_slot,
        capacity,
        k._words,
        C._INQ_OFF // 8,
        k.in_codec,
        stride=in_stride,
    )
    k.outq = PositionalOutput(
        np.zeros(capacity * out_stride, np.uint8),
        fmt.out_slot,
        capacity,
        k._words,
        C._OUTQ_OFF // 8,
        C._SIDE_OFF // 8,
        np.zeros(capacity, np.uint32),
        k.out_codec,
        stride=out_stride,
    )
    if k.dead_letter_capacity:  # as _launch makes them: one zeroed u64 mark per input slot
        k._dead = DeadMarks(np.zeros(capacity, np.uint64), k.inq.rows, k.dead_letter_capacity)
    k._setup_fast_paths()
    k._launched = k._accepting = True
    return k, C


def test_latency_fast_paths_keep_the_generic_semantics(monkeypatch):
    """send/receive of single direct messages through the specialised closures: same slots, same
    replies, same errors as the generic path (a full queue, a value that does not fit its field)."""
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parent.parent))
    from examples.vector_add import AddRequest, AddResponse, vector_add
    from ringgen.errors import QueueFullError
    from ringgen.runtime.cuda.abi import positional_class

    k, C = _fake_handle(vector_add)
    assert positional_class(k.out_codec) is AddResponse  # replies are built positionally
    out_tail = C._OUTQ_OFF // 8
    for i in range(4):
        k.send(AddRequest(id=i, a=float(i), b=0.5))
    assert k._words[C._INQ_OFF // 8] == 4 and list(k.inq.slots["id"]) == [0, 1, 2, 3]
    assert k._sent == 4
    with pytest.raises(QueueFullError):  # reply i reuses slot i: full until replies are taken
        k.send(AddRequest(id=9, a=0.0, b=0.0), block=False)
    k.outq.slots["id"] = [10, 11, 12, 13]
    k.outq.slots["sum"] = [0.5, 1.5, 2.5, 3.5]
    k._words[out_tail] = 2  # the kernel published two replies
    assert k.receive(timeout=0) == AddResponse(id=10, sum=0.5)
    assert k.receive(timeout=0) == AddResponse(id=11, sum=1.5)
    assert k._received == 2 and k._words[C._OUTQ_OFF // 8 + 16] == 2  # head published
    k.send(AddRequest(id=4, a=1.0, b=1.0))  # room again
    with pytest.raises(Exception) as fast:
        k.send(AddRequest(id=2**70, a=0.0, b=0.0))  # does not fit i64: the generic path's error
    assert k.inq.tail == 5 and k._sent == 5  # nothing published by the failed send
    monkeypatch.setattr(k, "_fast_cls", None)
    with pytest.raises(type(fast.value)):
        k.send(AddRequest(id=2**70, a=0.0, b=0.0))
    k.outq.marks[2] = 3  # slot 2 is a hole: the closure hands over to take_one, which skips it
    k._words[C._SIDE_OFF // 8] = 1
    k._words[out_tail] = 4
    assert k.receive(timeout=0) == AddResponse(id=13, sum=3.5)
    assert k.outq.holes_taken == 1
    k._request_terminate()  # from here on receive() takes the generic path (spill first)
    assert k._fast_take is None
    assert k._words32[(C._CTL_OFF + C.CONTROL_DTYPE.fields["terminate"][1]) // 4] == 1


def test_receive_batch_waits_for_min_n_and_fills_out(monkeypatch):
    """receive_batch's min_n and out= (KernelHandle.receive_batch) reach the mapped output queue:
    the handle waits in its polling _pop_wait, not in an override of its own."""
    import threading

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parent.parent))
    from examples.vector_add import AddRequest, vector_add

    k, C = _fake_handle(vector_add, capacity=8)
    out_tail = C._OUTQ_OFF // 8
    for i in range(6):
        k.send(AddRequest(id=i, a=float(i), b=0.5))
    k.outq.slots["id"][:6] = range(100, 106)
    k._words[out_tail] = 2  # two replies now, four a little later
    late = threading.Timer(0.05, lambda: k._words.__setitem__(out_tail, 6))
    late.start()
    out = np.zeros(8, k.format.out_slot)
    got = k.receive_batch(6, timeout=5.0, min_n=6, out=out)
    late.join()
    assert list(got["id"]) == list(range(100, 106)) and np.shares_memory(got, out)
    assert k._received == 6 and k.outq.head == 6
    assert len(k.receive_batch(8, timeout=0.01, min_n=2)) == 0  # timed out: nothing lost


def test_bridged_batches_are_encoded_into_the_ring_and_decoded_in_one_pass(monkeypatch):
    """send_batch of bridged view rows encodes them straight into the strided ring slots (the same
    bytes encode_batch makes, with the ring position as sequence); a batch of raw slots is copied as
    it is; receive_batch decodes bridged replies to the same objects the generic format gives."""
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parent.parent))
    from examples.word_stats import Word, WordStat, word_stats
    from ringgen.errors import EncodeError
    from ringgen.runtime.batches import SlotBatches

    k, C = _fake_handle(word_stats, capacity=8)
    codec = k.in_codec
    words = [Word(id=i, text=t) for i, t in enumerate(["the", "naïve", "", "unzip", "x" * 32])]
    assert k.send_batch(codec.to_array(words[:3])) == 3
    k.send(words[3])  # a bridged single message takes the generic path, into the same ring
    raw = codec.encode_batch(codec.to_array(words[4:]))
    assert k._try_push(raw.reshape(-1).view(k.format.in_slot)) == 1  # raw slots (transport)
    stride = k.inq.stride
    got = [codec.decode(k.inq._u8[i * stride : (i + 1) * stride].tobytes()) for i in range(5)]
    assert got == words and k.inq.tail == 5 and k._sent == 5
    seqs = [
        int.from_bytes(k.inq._u8[i * stride + 32 : i * stride + 40], "little") for i in range(3)
    ]
    assert seqs == [0, 1, 2]  # the header's sequence is the ring position
    with pytest.raises(EncodeError, match="text"):
        k.send_batch(codec.to_array([Word(id=9, text="y" * 33)]))
    assert k.inq.tail == 5  # nothing published
    replies = [
        WordStat(id=i, text="w" * i, length=i, is_stop_word=False, negated=i == 2) for i in range(5)
    ]
    ostride = k.outq.stride
    for i, r in enumerate(replies):
        data = k.out_codec.pack(r)
        k.outq._u8[i * ostride : i * ostride + len(data)] = np.frombuffer(data, np.uint8)
    k._words[C._OUTQ_OFF // 8] = 5
    batch = k.receive_batch(3)
    assert batch == replies[:3]
    generic = SlotBatches("word_stats", k.in_codec, k.out_codec)
    assert generic.to_objects(k.outq.take(2)) == replies[3:]


def test_large_bridged_batches_are_encoded_by_several_threads(monkeypatch):
    """A bridged batch split over encoder threads fills the ring with the bytes one encode_batch
    call makes (sequence numbers and all), and a row that cannot be encoded raises the encoder's
    error with nothing published and no thread still writing."""
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parent.parent))
    from examples.word_stats import Word, word_stats
    from ringgen.errors import EncodeError
    from ringgen.runtime.cuda import queues as Q

    monkeypatch.setattr(Q, "ENCODE_THREADS", 3)
    monkeypatch.setattr(Q, "PARALLEL_ENCODE_ROWS", 16)
    monkeypatch.setattr(Q, "now_ticks", lambda: 1234)
    k, _ = _fake_handle(word_stats, capacity=128)
    codec = k.in_codec
    words = [Word(id=i, text="w" * (i % 33)) for i in range(100)]
    rows = codec.to_array(words)
    calls = []
    real = type(codec).encode_batch
    monkeypatch.setattr(
        type(codec), "encode_batch", lambda self, b, **h: calls.append(len(b)) or real(self, b, **h)
    )
    assert k.send_batch(rows) == 100
    assert sorted(calls) == [33, 33, 34]  # three threads, one part each
    want = real(codec, rows, timestamp=1234)
    stride, size = k.inq.stride, codec.slot_size
    ring = k.inq._u8.reshape(-1, stride)[:100, :size]
    for i in range(100):
        total = int.from_bytes(want[i, 4:12].tobytes(), "little")
        assert (ring[i, :total] == want[i, :total]).all(), i
    k.outq.head = 100  # the replies were taken: room for another batch
    bad = codec.to_array([Word(id=i, text="ok") for i in range(60)])
    bad["text"]["len"][57] = 40  # over Str[32]: the last of three parts fails
    calls.clear()
    with pytest.raises(EncodeError, match="text"):
        k.send_batch(bad)
    assert len(calls) == 3 and k.inq.tail == 100 and k._sent == 100  # nothing published


def test_dead_marks_harvest_marked_slots_in_order_within_the_bound():
    """The host end of the dead letters: only marks of this lap below the head count, each copied
    slot is marked as the device codec marks a dead letter, the buffer holds ``capacity`` rows and
    counts the rest as dropped, and ``take`` hands them out oldest first."""
    from ringgen.protocol import Reason
    from ringgen.runtime.cuda.queues import DeadMarks
    from ringgen.runtime.dead_letters import dead_letters_from_slots

    cap, size = 8, 64
    rows = np.zeros((cap, 80), np.uint8)[:, :size]  # a strided ring, as the bridged one is
    rows[:] = np.arange(cap, dtype=np.uint8)[:, None]
    marks = np.zeros(cap, np.uint64)
    dm = DeadMarks(marks, rows, capacity=3)
    marks[1] = (2 << 8) | int(Reason.BAD_CRC)  # seq 1
    marks[3] = (4 << 8) | int(Reason.BAD_MAGIC)  # seq 3
    marks[5] = ((5 + 1 + cap) << 8) | 4  # a mark that is not seq 5's: ignored
    assert dm.harvest(2) == 2 and dm.harvest(1) == 2  # the head never moves back
    assert dm.harvest(6) == 6
    rows[1] = 99  # the host reuses the slot after the harvest: the copy keeps what the kernel saw
    got = dm.take(10)
    assert got.shape == (2, size) and got[0, 0] == 1 and got[1, 0] == 3
    letters = dead_letters_from_slots(got)
    assert [d.reason for d in letters] == [Reason.BAD_CRC, Reason.BAD_MAGIC]
    assert all(int.from_bytes(d.data[44:48], "little") == 1 for d in letters)  # flags: DEAD_LETTER
    assert letters[0].data[52:] == bytes([1]) * (size - 52)  # the rest is the slot as it was
    assert dm.take(10).shape == (0, size)
    # Next lap (seqs 8..15): five dead letters, room for three, two dropped; partial takes.
    marks[5] = (6 << 8) | 4  # seq 5's mark, a lap old: stale for seq 13, ignored
    for seq in range(8, 13):
        marks[seq % cap] = ((seq + 1) << 8) | int(Reason.BAD_UTF8)
    dm.harvest(16)
    assert dm.dropped == 2
    assert len(dm.take(2)) == 2 and len(dm.take(2)) == 1
    marks[0] = (17 << 8) | int(Reason.BAD_SIZE)  # seq 16, after the queue emptied: kept
    dm.harvest(17)
    assert dead_letters_from_slots(dm.take(5))[0].reason is Reason.BAD_SIZE and dm.dropped == 2
    dm.detach()  # the mapped memory is gone: nothing is read any more
    assert dm.harvest(40) == 17 and dm.take(1).shape == (0, size)


def test_dead_letters_are_copied_before_the_host_reuses_their_slots(monkeypatch, tmp_path):
    """The handle's wiring without a GPU: the kernel (played here) marks rejected slots; a send that
    wraps over them harvests first, so receive_dead_letters returns what the kernel rejected, not
    the messages that replaced them, and stale marks of an earlier lap are ignored."""
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parent.parent))
    monkeypatch.setenv("RINGGEN_CACHE_DIR", str(tmp_path))
    import ringgen as rg
    from examples.word_stats import Word, word_stats
    from ringgen.errors import BuildError
    from ringgen.protocol import Reason
    from examples.vector_add import vector_add

    k, C = _fake_handle(word_stats, capacity=4, dead_letters=8)
    assert k.dead_letter_capacity == 8 and k._dead is not None
    dead = k._dead._marks
    size = k.in_codec.slot_size

    def bad(i):
        data = bytearray(rg.encode(Word(id=i, text="x" * i), sequence=i))
        data[40] ^= 1  # CRC
        return bytes(data).ljust(size, b"\0")

    sent = {i: bad(i) for i in range(6)}  # once: the header carries a timestamp

    head, out_tail, holes = C._INQ_OFF // 8 + 16, C._OUTQ_OFF // 8, C._SIDE_OFF // 8

    def kernel(upto, rejected):
        """Publish [head, upto): every message rejected (a dead mark and a hole), or a hole only."""
        for seq in range(k._words[head], upto):
            if seq in rejected:
                dead[seq % 4] = ((seq + 1) << 8) | int(Reason.BAD_CRC)
            k.outq.marks[seq % 4] = seq + 1
            k._words[holes] += 1
        k._words[out_tail] = upto
        k._words[head] = upto

    assert k.send_raw_batch(b"".join(sent[i] for i in range(4))) == 4
    kernel(2, rejected={0, 1})
    assert k.receive_batch(timeout=0) == []  # both holes: the output head moves past them
    assert k.send_raw_batch(b"".join(sent[i] for i in (4, 5))) == 2  # reuses the slots of 0 and 1
    kernel(6, rejected={2, 4})  # 3 and 5: no dead mark (slot 1 keeps the stale mark of seq 1)
    got = k.receive_dead_letters()
    assert [(d.reason, d.sequence) for d in got] == [(Reason.BAD_CRC, s) for s in (0, 1, 2, 4)]
    for d, i in zip(got, (0, 1, 2, 4)):
        want = bytearray(sent[i])
        want[44:48], want[48:52] = (1).to_bytes(4, "little"), int(Reason.BAD_CRC).to_bytes(
            4, "little"
        )
        assert d.data == bytes(want)
    assert k.receive_dead_letters() == [] and k._dead_letters_dropped() == 0
    with pytest.raises(BuildError, match="vector_add.*bridged input"):
        _fake_handle(vector_add, dead_letters=True)


def _with_lane(k):
    """Give a fake handle the latency lane ``_launch`` gives it: the manifest's geometry over a
    zeroed buffer (no GPU), and the lane's closures around the rings'."""
    from ringgen.runtime.cuda.lane import LatencyLane

    g = k._abi()["lane"]
    buf = np.zeros(g["out_at"] + g["out_bytes"], np.uint8)
    k._lane = LatencyLane(buf, g, k.in_codec, k.out_codec, k.format.out_slot)
    k._setup_fast_paths()
    return k._lane, buf, g


def _lane_request(lane, buf, g):
    """What the lane warp reads: the request slot's message bytes and its stamp."""
    stamp = int(buf[g["in_stamp_at"] : g["in_stamp_at"] + 8].view("<u8")[0])
    return bytes(buf[: lane._in_size]), stamp


def _lane_answer(buf, g, stamp, replies, dtype):
    """Play the lane warp: store the replies, then the word (stamp << 8 | count) last."""
    at = g["out_at"]
    for i, rep in enumerate(replies):
        view = buf[at + i * g["out_item_stride"] : at + (i + 1) * g["out_item_stride"]]
        view.view(dtype)[0] = rep
    word = at + g["out_word_at"]
    buf[word : word + 8].view("<u8")[0] = (stamp << 8) | len(replies)


def test_latency_lane_keeps_order_across_the_lane_and_the_rings(monkeypatch):
    """A lone message goes into the stamped lane slot (no ring tail moves); nothing is sent past
    it until the kernel answers; its reply is received before the ring's, a lane message without a
    reply (count 0) is skipped, and the lane is used again only once everything was taken."""
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parent.parent))
    from examples.vector_add import AddRequest, AddResponse, vector_add
    from ringgen.errors import KernelTimeoutError, QueueFullError

    k, C = _fake_handle(vector_add)
    lane, buf, g = _with_lane(k)
    assert g["in_bytes"] == 32 and g["in_stamp_at"] == 16 and g["out_items"] == 1
    k.send(AddRequest(id=7, a=1.0, b=2.0))
    data, stamp = _lane_request(lane, buf, g)
    assert stamp == 1 and k.inq.tail == 0 and k._words[C._INQ_OFF // 8] == 0
    assert np.frombuffer(data, k.format.in_slot)[0]["id"] == 7
    with pytest.raises(KernelTimeoutError):  # not answered yet, and nothing in the ring
        k.receive(timeout=0)
    assert k._sent == 1 and k.stats().input_depth == 1
    # Not answered yet: the next message takes the ring at once (vector_add is not ordered; the
    # kernel may handle it first), and its reply, though published first, waits for the lane's.
    k.send(AddRequest(id=8, a=0.5, b=0.5), block=False)
    assert k.inq.tail == 1 and k.inq.slots["id"][0] == 8 and lane.sent == 1
    k.outq.slots[0] = (80, 1.0)
    k._words[C._OUTQ_OFF // 8] = 1
    with pytest.raises(KernelTimeoutError):  # the ring's reply is there, the lane's is not
        k.receive(timeout=0)
    assert len(k.receive_batch(4, timeout=0, out=np.zeros(4, k.format.out_slot))) == 0
    _lane_answer(buf, g, 1, [(70, 3.0)], k.format.out_slot)
    assert k.receive(timeout=0) == AddResponse(id=70, sum=3.0)  # the lane's reply first
    assert k.receive(timeout=0) == AddResponse(id=80, sum=1.0)
    assert k._received == 2 and not lane.busy()
    k.send(AddRequest(id=9, a=0.0, b=0.0))  # all taken: the lane again, stamp 2
    assert _lane_request(lane, buf, g)[1] == 2 and k.inq.tail == 1
    _lane_answer(buf, g, 2, [], k.format.out_slot)  # the handler returned no reply
    with pytest.raises(KernelTimeoutError):
        k.receive(timeout=0)
    assert not lane.busy()
    with pytest.raises(Exception) as fast:  # does not fit i64: nothing written or counted
        k.send(AddRequest(id=2**70, a=0.0, b=0.0))
    assert lane.sent == 2 and k._sent == 3 and fast.type is not KernelTimeoutError
    monkeypatch.setattr(k, "_fast_cls", None)  # the generic path uses the lane as well
    k.send(AddRequest(id=10, a=1.0, b=1.0))
    data, stamp = _lane_request(lane, buf, g)
    assert stamp == 3 and np.frombuffer(data, k.format.in_slot)[0]["id"] == 10
    _lane_answer(buf, g, 3, [(100, 2.0)], k.format.out_slot)
    batch = k.receive_batch(4, timeout=0)
    assert list(batch["id"]) == [100] and not lane.busy()
    side = C._SIDE_OFF // 8  # the lane warp's counts, stored before each reply
    k._words[side + C._SIDE_LANE_DONE], k._words[side + C._SIDE_LANE_EMITTED] = 3, 2
    k._ctl["processed"], k._ctl["emitted"] = 1, 1  # the ring's, from the publisher
    stats = k.stats()
    assert (stats.processed, stats.emitted) == (4, 3)
    held, done = threading.Event(), threading.Event()

    def receiver():  # holds the receive lock, as a receive deciding between lane and ring does
        with k._recv_lock:
            held.set()
            done.wait(5.0)

    t = threading.Thread(target=receiver)
    t.start()
    try:
        assert held.wait(5.0)
        monkeypatch.setattr(k, "_fast_cls", AddRequest)
        k.send(AddRequest(id=11, a=0.0, b=0.0))  # idle, but the ring it is
        assert k.inq.tail == 2 and lane.sent == 3
    finally:
        done.set()
        t.join(5.0)


def test_latency_lane_hands_over_an_outbox_answer_one_reply_at_a_time():
    """An Outbox answer holds up to the limit's replies: taken one by one (the receive closure) or
    as a batch (``take``), in order, the lane freed after the last; a stale word (an earlier
    stamp) is never taken for the current message; while the receive lock is held elsewhere the
    message takes the ring."""
    import struct

    from ringgen.runtime.cuda.lane import LatencyLane

    class In(_Codec):
        cls = tuple

    g = {
        "in_bytes": 32,
        "in_stamp_at": 16,
        "out_at": 128,
        "out_items": 3,
        "out_item_stride": 16,
        "out_word_at": 48,
        "out_bytes": 64,
    }
    buf = np.zeros(192, np.uint8)
    lane = LatencyLane(buf, g, In, _RepCodec, REP)
    dense = []
    take = lane.fast_take_one(lambda: dense.pop(0) if dense else None, lambda *v: v)
    gate = threading.Lock()  # the handle's receive lock
    put = lane.fast_put_one(lambda: True, lambda m: "ring", gate)
    with gate:  # a receiver is deciding between the lane and the ring: the ring it is
        assert put((0, 1.0, 2.0)) == "ring" and lane.sent == 0
    waiting = lane.waiting()
    assert not waiting()  # nothing in the lane
    assert put((1, 1.0, 2.0)) is True and lane.sent == 1
    assert struct.unpack_from("<q2fQ", buf, 0) == (1, 1.0, 2.0, 1)
    assert put((2, 0.0, 0.0)) == "ring" and waiting()  # unanswered: past it, into the ring
    ordered = LatencyLane(np.zeros(192, np.uint8), g, In, _RepCodec, REP, overtake=False)
    put_ordered = ordered.fast_put_one(lambda: True, lambda m: "ring", gate)
    assert put_ordered((1, 1.0, 2.0)) is True and not ordered.passable()
    assert put_ordered((2, 0.0, 0.0)) is False  # an ordered kernel's next one waits for the answer
    _lane_answer(buf, g, 1, [(10, 0.5), (11, 1.5)], REP)
    assert not waiting()
    dense.append("ring reply")
    assert take() == (10, 0.5) and lane.busy() and lane.item == 1
    assert take() == (11, 1.5) and not lane.busy()
    assert take() == "ring reply" and take() is None
    assert put((3, 0.0, 0.0)) is True and lane.sent == 2
    assert take() is None  # the word still says stamp 1
    assert lane.take(8) is None
    _lane_answer(buf, g, 2, [(20, 0.0), (21, 0.0), (22, 0.0)], REP)
    assert list(lane.take(2)["id"]) == [20, 21] and lane.busy()
    assert list(lane.take(2)["id"]) == [22] and not lane.busy()
    assert put((2**70, 0.0, 0.0)) is not True and lane.sent == 2  # RETRY: nothing written


def test_lane_geometry_of_the_examples():
    """Every direct kernel with an output gets a lane whose request is read in one 32-byte read
    where it fits; a bridged kernel's request is its ring slot then the stamp in a word of its
    own, its bridged replies whole slots at the ring's stride; kernels without output get none."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from examples import bank_account, threshold_filter, vector_add, word_stats
    from ringgen.codegen.cuda import abi, compute_lane

    lane = compute_lane(vector_add.vector_add.spec)
    assert lane.one_read and lane.in_words == 2 and lane.out_at == 128
    assert abi(vector_add.vector_add.spec)["lane"] == lane.as_abi()
    outbox = compute_lane(threshold_filter.threshold_filter.spec)
    assert outbox.out_items == threshold_filter.threshold_filter.spec.outbox_limit
    assert outbox.out_word_at % 16 == 0 and outbox.out_word_at >= outbox.out_items * 8
    assert compute_lane(bank_account.bank_account.spec) is not None
    bridged = compute_lane(word_stats.word_stats.spec)
    assert (bridged.in_stamp_at, bridged.in_bytes, bridged.stamp_word) == (320, 336, 20)
    assert bridged.out_item_stride == 320 and bridged.out_word_at == 320 and not bridged.one_read


def test_idle_check_of_an_outbox_kernel(page):
    """An Outbox kernel is idle for the lane when the kernel's input head has reached the host's
    tail and no reply waits at the output head (its stamp is not the head's)."""
    from ringgen.runtime.cuda.lane import idle_check

    _, words = page
    inq = InputRing(np.zeros(4 * REQ.itemsize, np.uint8), REQ, 4, words, IN_CTL, _Codec)
    slots = np.zeros(4, outbox_slot(REP, *compute_outbox_slot(REP.itemsize, bridged=False)))
    outq = OutboxOutput(slots, words, OUT_CTL)
    idle = idle_check(inq, outq)
    assert idle()
    assert inq.try_put_one((1, 1.0, 2.0), 0) and not idle()  # sent, not handled yet
    words[IN_CTL + 16] = 1  # the kernel's input head: handled
    assert idle()
    slots[0] = ((5, 1.0), 1)  # ...with one reply the host has not taken
    assert not idle()
    assert len(outq.take(4)) == 1 and idle()
