"""Bridged messages on the CUDA backend's latency paths, without a GPU (issue 14).

The host ends run for real over numpy arrays standing in for mapped memory, as in
test_cuda_queues.py; the kernel's side is played by the test: it reads the slots the host wrote
(decoding them with the host codec, as the device decoder would) and writes replies encoded by the
host codec (``rg.encode``, the bytes the device encoder writes: tests/test_bridged_device_codec.py),
then the tail, the stamp or the lane's word. Each fast path is checked against the generic path on
the same bytes: the same objects, the same errors with the same text.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import ringgen as rg  # noqa: E402
from ringgen.errors import EncodeError, QueueFullError, WireFormatError  # noqa: E402
from ringgen.protocol import Reason  # noqa: E402
from ringgen.runtime.cuda.abi import outbox_slot, ring_stride  # noqa: E402
from ringgen.runtime.cuda.bridged_fast import RETRY, bridged_bytes  # noqa: E402
from ringgen.runtime.cuda.queues import (  # noqa: E402
    DeadMarks,
    InputRing,
    OutboxOutput,
    PositionalOutput,
)

from bridged_fast_kernels import Count, Label, Note, Tagged, labels, shout, spell  # noqa: E402
from examples.list_reduce import Samples, Summary, list_reduce  # noqa: E402
from examples.orders import Customer, Invoice, Order, OrderLine, orders  # noqa: E402
from examples.word_stats import Word, WordStat, word_stats  # noqa: E402

#: The header's timestamp (u64 at 12): the only bytes two encodings of one message may differ in.
_STAMP = slice(12, 20)


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("RINGGEN_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))


def _fake(kernel, capacity=4, dead_letters=False, lane=False):
    """A CudaKernelHandle over numpy arrays (no GPU): the rings ``_launch`` would map, laid out by
    the manifest's ``abi.cuda`` (a positional or an Outbox output), and the lane where asked."""
    from ringgen.jit import built_package
    from ringgen.runtime import cuda as C
    from ringgen.runtime.cuda.lane import LatencyLane

    pkg, codecs = built_package(kernel.spec, ("cuda",))
    k = C.CudaKernelHandle(
        kernel.spec, str(pkg), codecs=codecs, capacity=capacity, dead_letters=dead_letters
    )
    page = np.zeros(C._PAGE, np.uint8)
    k._words = memoryview(page).cast("Q")
    k._words32 = memoryview(page).cast("I")
    k._ctl = page[C._CTL_OFF : C._CTL_OFF + C.CONTROL_SIZE].view(C.CONTROL_DTYPE)
    k._ctl["state"] = int(C.Lifecycle.ACTIVE)
    fmt, abi = k.format, k._abi()
    in_stride = ring_stride(abi["in_stride"], fmt.in_slot, k.name)
    k.inq = InputRing(
        np.zeros(capacity * in_stride, np.uint8),
        fmt.in_slot,
        capacity,
        k._words,
        C._INQ_OFF // 8,
        k.in_codec,
        stride=in_stride,
    )
    if kernel.spec.uses_outbox:
        dtype = outbox_slot(fmt.out_slot, **abi["out_slot"])
        k.outq = OutboxOutput(np.zeros(capacity, dtype), k._words, C._OUTQ_OFF // 8)
    else:
        out_stride = ring_stride(abi["out_stride"] or fmt.out_slot.itemsize, fmt.out_slot, k.name)
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
    if k.dead_letter_capacity:
        k._dead = DeadMarks(np.zeros(capacity, np.uint64), k.inq.rows, k.dead_letter_capacity)
    if lane:
        g = abi["lane"]
        buf = np.zeros(g["out_at"] + g["out_bytes"], np.uint8)
        k._lane = LatencyLane(
            buf, g, k.in_codec, k.out_codec, fmt.out_slot, overtake=not kernel.spec.ordered
        )
        k._lane_buf = buf
    k._setup_fast_paths()
    k._launched = k._accepting = True
    return k, C


def _no_generic_send(k, monkeypatch):
    """Make the generic send path fail loudly: what passes took the fast path."""

    def boom(*a, **kw):
        raise AssertionError("the generic path was taken")

    monkeypatch.setattr(k.format, "input_batch", boom)


def _ring_slot(k, seq):
    """The bytes of input slot ``seq`` as the kernel reads them (one slot of the strided ring)."""
    return bytes(k.inq.rows[seq % k.capacity])


def _publish_reply(k, C, seq, reply):
    """Play a worker: reply ``seq`` into its positional slot (encoded as the device encodes it),
    then the output tail."""
    data = rg.encode(reply, sequence=seq)
    off = (seq % k.capacity) * k.outq.stride
    k.outq._u8[off : off + len(data)] = np.frombuffer(data, np.uint8)
    k._words[C._OUTQ_OFF // 8] = seq + 1


def _stamp_outbox(k, pos, reply, data=None):
    """Play an Outbox warp: the encoded reply into slot ``pos``, then its stamp."""
    data = rg.encode(reply, sequence=pos) if data is None else data
    rows = k.outq.slots.view(np.uint8).reshape(k.capacity, -1)  # the message is at offset 0
    rows[pos % k.capacity, : len(data)] = np.frombuffer(data, np.uint8)
    k.outq.slots["stamp"][pos % k.capacity] = pos + 1


def _generic_objects(k, slot_bytes):
    """What the generic receive path makes of one output slot's bytes (``format.to_objects``)."""
    slot = np.frombuffer(slot_bytes.ljust(k.format.out_slot.itemsize, b"\0"), np.uint8)
    return k.format.to_objects(slot[: k.format.out_slot.itemsize].view(k.format.out_slot))


MESSAGES = [
    (word_stats, [Word(id=1, text="hello"), Word(id=2, text=""), Word(id=3, text="ü" * 16)]),
    (
        list_reduce,
        [
            Samples(id=4, values=[1.5, -2.0, 3.25]),
            Samples(id=5, values=[]),
            Samples(id=6, values=[float(i) for i in range(64)]),
        ],
    ),
    (
        orders,
        [
            Order(
                id=7,
                customer=Customer(id=70, name="Ada", tier="gold"),
                lines=[OrderLine(sku="GIFT-1", quantity=2, unit_price=9.5)],
            ),
            Order(id=8, customer=Customer(id=80, name="", tier=""), lines=[]),
        ],
    ),
]


@pytest.mark.parametrize("kernel,messages", MESSAGES, ids=lambda v: getattr(v, "__name__", ""))
def test_bridged_send_encodes_straight_into_the_ring_slot(kernel, messages, monkeypatch):
    """One bridged message of each shape (Str, List, nested bridged structs) is encoded into its
    ring slot by the fast path and published with one store of the tail: the slot decodes to the
    message, and its bytes are the generic path's but for the header's timestamp."""
    k, C = _fake(kernel, capacity=4)
    assert k._fast_cls is kernel.spec.input and k._fast_put is not None
    generic = k.format.from_objects(messages).view(np.uint8).reshape(len(messages), -1)
    _no_generic_send(k, monkeypatch)
    for i, m in enumerate(messages):
        k.send(m, block=False)
        assert k._words[C._INQ_OFF // 8] == i + 1 and k.inq.tail == i + 1
        data = _ring_slot(k, i)
        assert rg.decode(kernel.spec.input, data) == m
        total = int.from_bytes(data[4:12], "little")
        want = bytearray(generic[i, :total].tobytes())
        got = bytearray(data[:total])
        want[_STAMP] = got[_STAMP] = bytes(8)
        assert got == want
    assert k._sent == len(messages)


def test_bridged_send_into_a_full_ring_waits_or_raises_as_the_generic_path(monkeypatch):
    """Four slots: the fifth message finds the ring full (reply slots still held): the fast path
    answers False and the generic path raises QueueFullError, publishing nothing; once a reply is
    taken its slot is reused."""
    k, C = _fake(word_stats, capacity=4)
    for i in range(4):
        k.send(Word(id=i, text=f"w{i}"), block=False)
    with pytest.raises(QueueFullError, match="input queue full"):
        k.send(Word(id=9, text="late"), block=False)
    assert k.inq.tail == 4 and k._sent == 4
    _publish_reply(k, C, 0, WordStat(id=0, text="w0", length=2, is_stop_word=False, negated=False))
    assert k.receive(timeout=0).id == 0
    _no_generic_send(k, monkeypatch)
    k.send(Word(id=9, text="late"), block=False)
    assert rg.decode(Word, _ring_slot(k, 4)) == Word(id=9, text="late")


def test_bridged_send_of_a_message_that_does_not_encode_raises_the_generic_error():
    """A Str over its bound: nothing is published, and the error is the generic path's."""
    k, C = _fake(word_stats, capacity=4)
    too_long = Word(id=1, text="x" * 33)
    with pytest.raises(EncodeError) as fast:
        k.send(too_long, block=False)
    assert k.inq.tail == 0 and k._sent == 0 and k._words[C._INQ_OFF // 8] == 0
    with pytest.raises(EncodeError) as generic:
        k.format.input_batch((too_long,))
    assert str(fast.value) == str(generic.value)


def test_bridged_send_never_overwrites_a_slot_whose_dead_letter_is_unharvested(monkeypatch):
    """With dead letters the fast path admits only up to the harvested head: a rejected slot is
    copied out (by the generic path's harvest) before the fast path writes over it."""
    k, C = _fake(word_stats, capacity=4, dead_letters=4)
    for i in range(4):
        k.send(Word(id=i, text="x" * i), block=False)
    first = _ring_slot(k, 0)
    head, out_tail, holes = C._INQ_OFF // 8 + 16, C._OUTQ_OFF // 8, C._SIDE_OFF // 8
    k._dead._marks[0] = (1 << 8) | int(Reason.BAD_CRC)  # the kernel rejected seq 0 ...
    k.outq.marks[0] = 1  # ... and left a hole for it
    k._words[holes] = 1
    k._words[out_tail] = 1
    k._words[head] = 1
    assert k.receive_batch(timeout=0) == []  # the hole: the output head passes it
    assert k.outq.head == 1 and k._dead.harvested == 0
    calls = []
    real = k._dead.harvest
    monkeypatch.setattr(k._dead, "harvest", lambda h: calls.append(h) or real(h))
    k.send(Word(id=4, text="new"), block=False)  # fast path: full up to harvested 0 -> generic
    assert calls and k._dead.harvested == 1
    (letter,) = k.receive_dead_letters()
    assert letter.reason is Reason.BAD_CRC and letter.data[52:] == first[52:]
    assert rg.decode(Word, _ring_slot(k, 4)) == Word(id=4, text="new")


REPLIES = [
    (
        word_stats,
        [
            WordStat(id=1, text="hello", length=5, is_stop_word=False, negated=False),
            WordStat(id=2, text="ünnötig", length=10, is_stop_word=True, negated=True),
            WordStat(id=3, text="", length=0, is_stop_word=False, negated=False),
        ],
    ),
    (
        orders,
        [
            Invoice(
                order_id=1,
                customer_id=2,
                customer="Ada",
                lines=1,
                gift_cards=0,
                subtotal=2.5,
                total=2.25,
                discounted=True,
            ),
            Invoice(
                order_id=3,
                customer_id=4,
                customer="",
                lines=0,
                gift_cards=0,
                subtotal=0.0,
                total=0.0,
                discounted=False,
            ),
        ],
    ),
]


@pytest.mark.parametrize("kernel,replies", REPLIES, ids=lambda v: getattr(v, "__name__", ""))
def test_bridged_receive_decodes_each_reply_once_as_the_generic_path(kernel, replies, monkeypatch):
    """Positional bridged replies through the receive closure: the objects the generic path makes
    of the same slots, in order, a hole skipped, each slot freed with one store of the head."""
    k, C = _fake(kernel, capacity=4)
    assert k._fast_take is not None
    seqs = list(range(len(replies) + 1))
    hole = seqs[1]
    it = iter(replies)
    for s in seqs:
        if s == hole:
            k.outq.marks[s % 4] = s + 1
            k._words[C._SIDE_OFF // 8] += 1
        else:
            _publish_reply(k, C, s, next(it))
    want = [_generic_objects(k, bytes(k.outq.rows[s % 4]))[0] for s in seqs if s != hole]
    monkeypatch.setattr(k.format, "to_objects", None)  # the generic path would fail now
    got = [k.receive(timeout=0) for _ in replies]
    assert got == list(replies) == want
    assert k.outq.head == len(seqs) and k._words[C._OUTQ_OFF // 8 + 16] == len(seqs)
    assert k._received == len(replies)


def test_a_corrupt_bridged_reply_is_taken_and_raises_the_generic_error():
    """A reply that fails its CRC: receive raises the WireFormatError the generic path raises for
    the same bytes (same text), the reply counts as taken, and the next reply is received."""
    k, C = _fake(word_stats, capacity=4)
    good = WordStat(id=1, text="ok", length=2, is_stop_word=False, negated=False)
    _publish_reply(k, C, 0, good)
    k.outq._u8[260] ^= 0xFF  # a payload byte: the CRC no longer matches
    with pytest.raises(WireFormatError) as generic:
        _generic_objects(k, bytes(k.outq.rows[0]))
    _publish_reply(k, C, 1, good)
    with pytest.raises(WireFormatError) as fast:
        k.receive(timeout=0)
    assert str(fast.value) == str(generic.value) and "CRC" in str(fast.value)
    assert k.outq.head == 1 and k._received == 1
    assert k.receive(timeout=0) == good and k._received == 2


def test_bridged_bytes_cut_at_the_total_size_as_the_decoder_does():
    """``bridged_bytes`` gives the decoder the generic path's bytes: cut at the header's total
    size when it lies in [256, slot size), else the whole slot (for the decoder to reject)."""
    from ringgen.wire.codec import message_bytes

    data = rg.encode(Word(id=1, text="abc"))
    slot = np.zeros(320, np.uint8)
    slot[: len(data)] = np.frombuffer(data, np.uint8)
    view = memoryview(slot)
    assert bridged_bytes(view, 0, 305) == data == message_bytes(view[:305])
    slot[4:12] = np.frombuffer((1000).to_bytes(8, "little"), np.uint8)  # past the slot
    assert bridged_bytes(view, 0, 305) == bytes(slot[:305]) == message_bytes(view[:305])


def test_outbox_of_bridged_replies_through_the_receive_closure():
    """An Outbox kernel's bridged replies: taken one at a time once their stamps are in place, in
    stamp order, decoded as the generic path decodes them; a corrupt one raises its error."""
    k, C = _fake(labels, capacity=4)
    assert k._fast_take is not None
    assert k.receive_batch(timeout=0) == []
    replies = [Label(id=1, text="above"), Label(id=1, text="positive"), Label(id=2, text="")]
    _stamp_outbox(k, 1, replies[1])  # the second slot first: nothing is taken yet
    with pytest.raises(rg.KernelTimeoutError):
        k.receive(timeout=0)
    _stamp_outbox(k, 0, replies[0])
    _stamp_outbox(k, 2, replies[2])
    assert [k.receive(timeout=0) for _ in range(3)] == replies
    assert k.outq.head == 3 and k._words[C._OUTQ_OFF // 8 + 16] == 3
    bad = bytearray(rg.encode(Label(id=3, text="x"), sequence=3))
    bad[0] ^= 1  # the magic
    _stamp_outbox(k, 3, replies[0], data=bytes(bad))
    with pytest.raises(WireFormatError) as generic:
        _generic_objects(k, bytes(bad))
    with pytest.raises(WireFormatError) as fast:
        k.receive(timeout=0)
    assert str(fast.value) == str(generic.value) and k.outq.head == 4


def _lane_request(k):
    """What the lane warp reads: the request's slot bytes and its stamp."""
    g, buf = k._abi()["lane"], k._lane_buf
    stamp = int(buf[g["in_stamp_at"] : g["in_stamp_at"] + 8].view("<u8")[0])
    return bytes(buf[: k.in_codec.slot_size]), stamp


def _lane_answer(k, stamp, replies, raw=None):
    """Play the lane warp: the replies (bridged ones encoded, whole slots at the item stride; direct
    ones as structs), then the word (stamp << 8 | count) last."""
    g, buf = k._abi()["lane"], k._lane_buf
    at = g["out_at"]
    for i, rep in enumerate(replies):
        item = buf[at + i * g["out_item_stride"] : at + (i + 1) * g["out_item_stride"]]
        if k.out_codec.bridged:
            data = rg.encode(rep) if raw is None else raw
            item[: len(data)] = np.frombuffer(data, np.uint8)
        else:
            item.view(k.format.out_slot)[0] = k.out_codec.to_array([rep])[0]
    word = at + g["out_word_at"]
    buf[word : word + 8].view("<u8")[0] = (stamp << 8) | len(replies)


def test_bridged_lane_round_trip_str_in_str_out(monkeypatch):
    """word_stats through the lane: the request is the ring slot's encoding (then the stamp in a
    word of its own), no ring tail moves, the reply is decoded once; a message sent while the
    lane's is unanswered takes the ring, and its reply comes after the lane's."""
    k, C = _fake(word_stats, capacity=4, lane=True)
    g = k._abi()["lane"]
    assert g["in_stamp_at"] == k.inq.stride and g["out_item_stride"] == k.outq.stride
    _no_generic_send(k, monkeypatch)
    k.send(Word(id=1, text="unhappy"))
    data, stamp = _lane_request(k)
    assert stamp == 1 and k.inq.tail == 0 and rg.decode(Word, data) == Word(id=1, text="unhappy")
    assert k.stats().input_depth == 1
    k.send(Word(id=2, text="the"))  # not answered yet: into the ring
    assert k.inq.tail == 1 and rg.decode(Word, _ring_slot(k, 0)) == Word(id=2, text="the")
    _publish_reply(k, C, 0, WordStat(id=2, text="the", length=3, is_stop_word=True, negated=False))
    with pytest.raises(rg.KernelTimeoutError):  # the ring's reply waits for the lane's
        k.receive(timeout=0)
    first = WordStat(id=1, text="unhappy", length=7, is_stop_word=False, negated=True)
    _lane_answer(k, 1, [first])
    assert k.receive(timeout=0) == first
    assert k.receive(timeout=0).text == "the" and not k._lane.busy()
    k.send(Word(id=3, text="a"))  # idle again: the lane, stamp 2
    assert _lane_request(k)[1] == 2 and k.inq.tail == 1
    _lane_answer(k, 2, [])  # rejected or faulted on the device: no reply
    with pytest.raises(rg.KernelTimeoutError):
        k.receive(timeout=0)
    assert not k._lane.busy()
    assert k._lane.put(Word(id=4, text="y" * 40)) is RETRY  # over Str[32]: nothing written
    monkeypatch.undo()  # the generic path again (and the cache folder: nothing is built here)
    with pytest.raises(EncodeError, match="text"):  # ... and the generic path says why
        k.send(Word(id=4, text="y" * 40))
    assert _lane_request(k)[1] == 2 and k._lane.sent == 2 and k.inq.tail == 1


def test_bridged_lane_reply_that_does_not_decode_raises_the_generic_error():
    """A corrupt reply in the lane: the generic path's error for the same bytes, the lane freed."""
    k, C = _fake(word_stats, capacity=4, lane=True)
    k.send(Word(id=1, text="x"))
    bad = bytearray(
        rg.encode(WordStat(id=1, text="x", length=1, is_stop_word=False, negated=False))
    )
    bad[-1] ^= 0x5A  # the last payload byte: a CRC mismatch
    _lane_answer(k, 1, [None], raw=bytes(bad))
    with pytest.raises(WireFormatError) as generic:
        _generic_objects(k, bytes(bad))
    with pytest.raises(WireFormatError) as fast:
        k.receive(timeout=0)
    assert str(fast.value) == str(generic.value) and not k._lane.busy() and k._received == 1


def test_bridged_lane_with_a_direct_reply_and_the_generic_batch_path():
    """list_reduce: a bridged request (a List of 64 floats: the request spans several 32-lane
    passes), a direct reply; receive_batch takes the lane's answer as a batch."""
    k, C = _fake(list_reduce, capacity=4, lane=True)
    g = k._abi()["lane"]
    assert g["in_stamp_at"] // 16 > 32  # more words than one warp read
    msg = Samples(id=9, values=[float(i) for i in range(64)])
    k.send(msg)
    data, stamp = _lane_request(k)
    assert stamp == 1 and rg.decode(Samples, data) == msg
    reply = Summary(id=9, count=64, total=2016.0, lowest=0.0, highest=63.0, mean=31.5)
    _lane_answer(k, 1, [reply])
    batch = k.receive_batch(4, timeout=0)
    assert list(batch["id"]) == [9] and float(batch["mean"][0]) == 31.5 and not k._lane.busy()


def test_bridged_lane_of_an_outbox_of_bridged_replies():
    """labels: up to four encoded replies in the lane's reply slot, taken one by one in order (the
    receive closure) or as a batch of objects (``receive_batch``)."""
    k, C = _fake(labels, capacity=4, lane=True)
    g = k._abi()["lane"]
    assert g["out_items"] == 4 and g["out_item_stride"] % 16 == 0
    k.send(Tagged(id=1, tags=[1, 5, -2, 3]))
    data, stamp = _lane_request(k)
    assert stamp == 1 and rg.decode(Tagged, data).tags == [1, 5, -2, 3]
    want = [Label(id=1, text="positive"), Label(id=1, text="above"), Label(id=1, text="above")]
    _lane_answer(k, 1, want)
    assert k.receive(timeout=0) == want[0]
    assert k.receive_batch(4, timeout=0) == want[1:] and not k._lane.busy()
    k.send(Tagged(id=2, tags=[2, 3]))
    _lane_answer(k, 2, [Label(id=2, text="above")])
    assert k.receive_batch(4, timeout=0) == [Label(id=2, text="above")]


def test_lane_of_a_direct_request_with_a_bridged_reply(monkeypatch):
    """spell: the request is the struct then its stamp (a direct lane's request), the reply an
    encoded slot at the output ring's stride, decoded once; a message sent past it takes the ring.
    """
    k, C = _fake(spell, capacity=4, lane=True)
    g = k._abi()["lane"]
    assert g["in_stamp_at"] == 16 and g["out_item_stride"] == k.outq.stride
    _no_generic_send(k, monkeypatch)
    k.send(Count(id=3, n=12))
    buf = k._lane_buf
    assert np.frombuffer(bytes(buf[:16]), k.format.in_slot)[0]["n"] == 12
    assert int(buf[16:24].view("<u8")[0]) == 1 and k.inq.tail == 0
    k.send(Count(id=4, n=-1))  # into the ring
    assert k.inq.tail == 1 and k.inq.slots["id"][0] == 4
    _publish_reply(k, C, 0, Label(id=4, text="negative"))
    _lane_answer(k, 1, [Label(id=3, text="many")])
    assert k.receive(timeout=0) == Label(id=3, text="many")
    assert k.receive(timeout=0) == Label(id=4, text="negative") and not k._lane.busy()


def test_lane_raw_slots_of_a_dead_letter_kernel_take_the_ring():
    """With dead letters a raw slot (send_raw_batch of one) goes into the ring, where a rejected
    one comes back as a dead letter; without them it may take the lane."""
    k, C = _fake(shout, capacity=4, dead_letters=True, lane=True)
    raw = rg.encode(Note(id=1, every=1, text="hi")).ljust(k.in_codec.slot_size, b"\0")
    assert k.send_raw_batch(raw) == 1
    assert k.inq.tail == 1 and k._lane.sent == 0
    k2, _ = _fake(shout, capacity=4, lane=True)
    assert k2.send_raw_batch(raw) == 1
    assert k2.inq.tail == 0 and k2._lane.sent == 1 and _lane_request(k2)[0] == raw


_GEN_COUNT = iter(range(10**6))


@pytest.mark.timeout(300)
@pytest.mark.skipif(
    __import__("ringgen.runtime.cuda.build", fromlist=["find_nvcc"]).find_nvcc() is None,
    reason="nvcc is not installed",
)
def test_generated_bridged_kernels_get_a_lane_that_compiles_for_sm90(tmp_path):
    """Kernels from the generator (ringgen.testing) with a bridged input or output: each one's
    ``.cu`` compiles with nvcc for sm_90, and every kernel with an output whose slots fit has a
    lane whose geometry follows its rings (the request's stamp at the input ring's stride, bridged
    replies at the output ring's)."""
    from hypothesis import HealthCheck, Phase, given, reject, settings
    from hypothesis import strategies as st

    from ringgen.build import collect
    from ringgen.codegen import cuda
    from ringgen.errors import HandlerError
    from ringgen.layout import layout_of
    from ringgen.runtime.cuda import build as cuda_build
    from ringgen.testing import kernel_modules

    seen = {"lanes": 0, "modules": 0}

    @settings(
        max_examples=4,
        derandomize=True,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],  # a failure is reported at once, not shrunk
        suppress_health_check=list(HealthCheck),
    )
    @given(
        st.sampled_from(["bridged_in", "bridged_out"]).flatmap(
            lambda shape: kernel_modules(shapes=(shape,), kernels=(2, 2))
        )
    )
    def check(module):
        path = tmp_path / f"gen_bridged_lane_{next(_GEN_COUNT)}.py"
        path.write_text(module.source)
        sys.path.insert(0, str(tmp_path))
        try:
            unit = collect(str(path))
            text = cuda.emit(unit)[cuda.source_name(unit)]
        except HandlerError as exc:
            # a constant the compiler folds to a fault is not a test case (test_generated_kernels)
            if "by zero" in exc.message or "out of range" in exc.message:
                reject()
            raise
        finally:
            sys.path.remove(str(tmp_path))
        for spec in unit.kernels:
            lane = cuda.compute_lane(spec)
            lin = layout_of(spec.input)
            out = spec.outbox or spec.output
            if lane is None:
                assert out is None or lin.slot_size + 16 > cuda.LANE_BRIDGED_IN_MAX, spec.name
                continue
            seen["lanes"] += 1
            if lin.is_bridged:
                assert lane.in_stamp_at == cuda.slot_stride(lin.slot_size), spec.name
                assert f"rg_decode_{lin.name}((const rg_u8*)s_msg" in text
            lout = layout_of(out)
            if lout.is_bridged:
                assert lane.out_item_stride == cuda.slot_stride(lout.slot_size), spec.name
                assert f"rg_{spec.name}_put(lane_out" in text
        obj = cuda_build.nvcc_compile(
            text, cuda_build.DEFAULT_OPTIONS, "sm_90", what=f"{unit.name}.cu", output="obj"
        )
        assert len(obj) > 0
        seen["modules"] += 1

    check()
    assert seen["modules"] == 4 and seen["lanes"] > 0


@pytest.mark.timeout(300)
@pytest.mark.skipif(
    __import__("ringgen.runtime.cuda.build", fromlist=["find_nvcc"]).find_nvcc() is None,
    reason="nvcc is not installed",
)
def test_the_gpu_tests_kernels_compile_for_sm90_with_their_lanes():
    """The kernels of the gpu tests (an Outbox of bridged replies, Str in and out, a direct input
    with a bridged reply) compile for sm_90, each with its lane."""
    from ringgen.build import collect
    from ringgen.codegen import cuda
    from ringgen.runtime.cuda import build as cuda_build

    unit = collect(str(ROOT / "tests" / "bridged_fast_kernels.py"))
    text = cuda.emit(unit)[cuda.source_name(unit)]
    for spec in unit.kernels:
        assert cuda.compute_lane(spec) is not None, spec.name
        assert f"rg_{spec.name}_lane((const uint4*)lane" in text
    obj = cuda_build.nvcc_compile(
        text, cuda_build.DEFAULT_OPTIONS, "sm_90", what=f"{unit.name}.cu", output="obj"
    )
    assert len(obj) > 0
