"""CUDA backend on a real GPU (``pytest -m gpu``; never in CI): correctness, lifecycle, resources.

Every test launches resident kernels through the public API (``rg.launch(kernel, backend="cuda")``)
or the handle class with a test-only build define, and bounds every wait, so a hung kernel fails its
test and not the suite.
"""

from __future__ import annotations

import importlib
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import ringgen as rg
from ringgen.errors import KernelTimeoutError, QueueClosedError
from ringgen.kernel import RingKernel

pytestmark = [pytest.mark.gpu, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

FLOAT_ULPS = 4
EXAMPLES = sorted(
    p.stem
    for p in (ROOT / "examples").glob("*.py")
    if not p.stem.startswith("_") and "ring_kernel" in p.read_text()
)


@pytest.fixture(scope="module")
def drv():
    drv = pytest.importorskip("pycuda.driver")
    from ringgen.runtime.cuda import device as cuda_device

    try:
        cuda_device.device_info(0)
    except rg.BackendUnavailableError as exc:
        pytest.skip(str(exc))
    return drv


def _random(dtype: np.dtype, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` records with every leaf random (small ints, spread floats, 0/1 booleans, ASCII strings
    and lists of random lengths within their bounds); ``id`` = index."""
    arr = np.zeros(n, dtype=dtype)

    def fill(view):
        dt = view.dtype
        if dt.names:
            for name in dt.names:
                fill(view[name])
            if dt.names == ("len", "data"):  # Str[N]: ASCII text of a random length <= N
                bound = dt["data"].shape[0]
                view["len"] = rng.integers(0, bound + 1, size=view.shape)
                view["data"] = rng.integers(97, 123, size=view["data"].shape)
            elif dt.names == ("len", "items"):  # List[T, N]: a random length <= N
                view["len"] = rng.integers(0, dt["items"].shape[0] + 1, size=view.shape)
        elif dt.subdtype is not None:
            fill(view)
        elif dt.kind == "b":
            view[...] = rng.integers(0, 2, size=view.shape)
        elif dt.kind == "i":
            view[...] = rng.integers(-1000, 1000, size=view.shape)
        elif dt.kind == "u":
            # (the modulus capped: 1 << 64 overflows numpy's int64; no value here reaches it)
            view[...] = rng.integers(0, 2000, size=view.shape) % min(
                1 << (8 * dt.itemsize), 1 << 62
            )
        elif dt.kind == "f":
            view[...] = rng.normal(0.0, 10.0, size=view.shape)

    fill(arr)
    if "id" in (dtype.names or ()):
        arr["id"] = np.arange(n)
    return arr


def _drain(k) -> np.ndarray:
    """Terminate ``k`` (it drains its input first) and take every reply, in order."""
    k.terminate(timeout=10.0)
    parts = [np.zeros(0, dtype=k.out_codec.dtype)] if k.out_codec else []
    while k.out_codec is not None:
        try:
            part = k.receive_batch(timeout=0.0)
        except QueueClosedError:
            break
        if isinstance(part, list):  # a bridged output comes back as objects: compare their views
            part = k.out_codec.to_array(part) if part else np.zeros(0, k.out_codec.dtype)
        parts.append(part)
    return np.concatenate(parts) if parts else np.zeros(0)


def _leaves(arr, prefix=""):
    if arr.dtype.names:
        for name in arr.dtype.names:
            yield from _leaves(arr[name], f"{prefix}{name}.")
    else:
        yield prefix.rstrip("."), arr


def _agree(ref: np.ndarray, got: np.ndarray, *, ordered: bool, what: str) -> None:
    assert len(got) == len(ref), f"{what}: {len(got)} outputs, the reference gave {len(ref)}"
    for (name, r), (_, g) in zip(_leaves(ref), _leaves(got)):
        if not ordered:
            r, g = np.sort(r, axis=0), np.sort(g, axis=0)
        if r.dtype.kind == "f":
            same = (r == g) | (np.isnan(r) & np.isnan(g))
            ulps = np.abs(r.astype(np.float64) - g.astype(np.float64)) / np.spacing(np.abs(r))
            worst = float(np.where(same, 0.0, ulps).max()) if r.size else 0.0
            assert worst <= FLOAT_ULPS, f"{what}: field {name} differs by {worst:g} ULPs"
        else:
            np.testing.assert_array_equal(g, r, err_msg=f"{what}: field {name}")


@pytest.mark.parametrize("example", EXAMPLES)
def test_example_matches_reference(drv, example):
    """Every example kernel gives on CUDA what the reference gives on the same random messages
    (bridged ones included: Str, List, nested bridged structs): outputs (in order, unless an outbox
    or parallel state allows any), rejections, state."""
    module = importlib.import_module(f"examples.{example}")
    kernels = [v for v in vars(module).values() if isinstance(v, RingKernel)]
    assert kernels, example
    for kernel in kernels:
        spec = kernel.spec
        ref = rg.launch(kernel, backend="cpu", capacity=4096)
        msgs = _random(ref.in_codec.dtype, 3000, np.random.default_rng(len(spec.name)))
        ref.send_batch(msgs, timeout=60)
        ref_out = _drain(ref)
        k = rg.launch(kernel, backend="cuda", capacity=4096)
        k.send_batch(msgs, timeout=30)
        out = _drain(k)
        what = f"{example}.{spec.name}"
        assert k.stats().processed == len(msgs), what
        assert k.stats().rejected == ref.stats().rejected, what
        if spec.output is not None or spec.outbox is not None:
            free_order = spec.uses_outbox or (spec.state is not None and not spec.ordered)
            _agree(ref_out, out, ordered=not free_order, what=what)
        if spec.state is not None:
            codec = k.codecs[spec.state.__name__]
            _agree(
                codec.to_array([ref.state()]),
                codec.to_array([k.state()]),
                ordered=True,
                what=f"{what} final state",
            )


def test_malformed_bridged_messages_are_counted_not_answered(drv):
    """Slots that fail validation (magic, type id, CRC) are counted by Reason in stats().rejected and
    leave no reply; the messages around them are answered, in order, and the kernel goes on."""
    from examples.word_stats import Word, word_stats

    with rg.launch(word_stats, backend="cuda", capacity=1024) as k:
        words = [Word(id=i, text=f"w{i}") for i in range(300)]
        raw = k.in_codec.encode_batch(k.in_codec.to_array(words))  # (n, slot_size) bytes
        slots = raw.reshape(-1).view(k.format.in_slot)  # a batch of raw slots: copied as it is
        bad = {
            "BAD_MAGIC": range(3, 300, 50),
            "BAD_TYPE": range(7, 300, 50),
            "BAD_CRC": range(11, 300, 50),
        }
        raw[list(bad["BAD_MAGIC"]), 0] ^= 0xFF  # magic
        raw[list(bad["BAD_TYPE"]), 28] ^= 0x01  # type id
        raw[list(bad["BAD_CRC"]), 260] ^= 0x01  # a payload byte: the CRC no longer matches
        assert k._try_push(slots) == len(words)
        got = []
        deadline = time.monotonic() + 5.0
        want = len(words) - sum(len(r) for r in bad.values())
        while len(got) < want and time.monotonic() < deadline:
            got += k.receive_batch(timeout=0.5)
        skipped = {i for r in bad.values() for i in r}
        assert [w.id for w in got] == [i for i in range(len(words)) if i not in skipped]
        assert all(w.text == f"w{w.id}" and w.length == len(w.text) for w in got)
        assert k.stats().rejected == {name: len(r) for name, r in bad.items()}
        k.send(Word(id=1000, text="unhappy"))  # still answering
        reply = k.receive(timeout=1.0)
        assert (reply.id, reply.negated, reply.length) == (1000, True, 7)


def test_single_message_round_trip(drv):
    from examples.vector_add import AddRequest, vector_add

    with rg.launch(vector_add, backend="cuda") as k:
        for i in range(1000):
            k.send(AddRequest(id=i, a=float(i), b=0.5))
            r = k.receive(timeout=1.0)
            assert (r.id, r.sum) == (i, np.float32(i) + np.float32(0.5))
        assert k.stats().processed == 1000


def test_hundred_million_messages_slow_consumer(drv):
    """No loss, duplication or reordering over 100,000,000 messages; the consumer is slower than the
    producer now and then, so the queue fills and back-pressure holds the producer."""
    from examples.vector_add import vector_add

    total, batch = 100_000_000, 1 << 18
    k = rg.launch(vector_add, backend="cuda", capacity=1 << 20)
    sent = received = 0
    rounds = 0
    try:
        while received < total:
            if sent < total:
                view = k.reserve(min(batch, total - sent))
                n = len(view)
                if n:
                    ids = np.arange(sent, sent + n, dtype=np.int64)
                    view["id"] = ids
                    view["a"] = (ids & 1023).astype(np.float32)
                    view["b"] = 1.0
                    k.commit(n)
                    sent += n
            rounds += 1
            if rounds % 64 == 0:
                time.sleep(0.005)  # the slow consumer: the producer meets a full queue meanwhile
            out = k.receive_view(timeout=5.0)
            assert len(out), f"stalled after {received} replies"
            ids = np.arange(received, received + len(out), dtype=np.int64)
            np.testing.assert_array_equal(out["id"], ids)
            np.testing.assert_array_equal(out["sum"], (ids & 1023).astype(np.float32) + 1.0)
            received += len(out)
            k.release(len(out))
        stats = k.terminate(timeout=5.0)
    finally:
        if k.lifecycle.name not in ("TERMINATED", "FAULTED"):
            k.terminate(timeout=5.0)
    assert stats.processed == total and stats.emitted == total


@pytest.mark.parametrize("busy", [False, True])
def test_terminate_within_100_ms(drv, busy):
    from examples.vector_add import vector_add

    k = rg.launch(vector_add, backend="cuda", capacity=1 << 21)
    if busy:
        view = k.reserve(1 << 20)
        view["id"] = np.arange(len(view))
        k.commit(len(view))
    else:
        time.sleep(0.3)  # long enough for every thread to reach its idle backoff
    t0 = time.perf_counter()
    stats = k.terminate(timeout=1.0)
    elapsed = time.perf_counter() - t0
    assert elapsed < 0.1, f"terminate took {elapsed * 1e3:.1f} ms"
    assert stats.lifecycle.name == "TERMINATED"
    if busy:
        assert stats.processed == 1 << 20  # drained before acknowledging


def test_launch_terminate_cycles_keep_memory_flat(drv):
    from examples.vector_add import AddRequest, vector_add

    def cycle(i):
        with rg.launch(vector_add, backend="cuda", capacity=1024) as k:
            k.send(AddRequest(id=i, a=1.0, b=2.0))
            assert k.receive(timeout=1.0).id == i

    for i in range(20):  # warm-up: module load, first allocations, driver pools
        cycle(i)
    free_before = drv.mem_get_info()[0]
    for i in range(1000):
        cycle(i)
    free_after = drv.mem_get_info()[0]
    assert abs(free_before - free_after) <= 4 << 20, (free_before, free_after)


def test_handler_fault_is_counted_not_a_hang(drv):
    import runtime_kernels as rk

    with rg.launch(rk.divide, backend="cuda", capacity=1024) as k:
        n = 1000
        msgs = np.zeros(n, dtype=k.in_codec.dtype)
        msgs["seq"] = np.arange(n)
        msgs["a"] = 100
        msgs["b"] = np.where(np.arange(n) % 10 == 0, 0, 7)  # every tenth divides by zero
        msgs["index"] = np.where(np.arange(n) % 25 == 1, 9, 2)  # some index past the array
        k.send_batch(msgs, timeout=5.0)
        got = []
        deadline = time.monotonic() + 5.0
        want = n - n // 10 - 40
        while sum(map(len, got)) < want and time.monotonic() < deadline:
            got.append(k.receive_batch(timeout=0.5))
        out = np.concatenate(got)
        ok = (np.arange(n) % 10 != 0) & (np.arange(n) % 25 != 1)
        np.testing.assert_array_equal(out["seq"], np.arange(n)[ok])
        assert (out["q"] == 100 // 7).all()
        stats = k.stats()
        assert stats.rejected == {"DIVISION_BY_ZERO": 100, "INDEX_OUT_OF_RANGE": 40}
        k.send_batch(msgs[1:3])  # still answering
        assert len(k.receive_batch(timeout=1.0)) >= 1


def test_kernel_that_never_acknowledges_is_reported_by_timeout(drv):
    from examples.vector_add import vector_add
    from ringgen.jit import built_package
    from ringgen.runtime.cuda import CudaKernelHandle

    pkg, codecs = built_package(vector_add.spec, ("cuda",))
    k = CudaKernelHandle.open(
        vector_add.spec,
        str(pkg),
        codecs=codecs,
        capacity=1024,
        defines=["RG_DEBUG_IGNORE_TERMINATE"],
    )
    t0 = time.perf_counter()
    with pytest.raises(KernelTimeoutError, match="did not acknowledge terminate"):
        k.terminate(timeout=0.2)
    assert time.perf_counter() - t0 < 1.0
    assert k.abort(timeout=2.0), "the grid did not exit after the abort request"


def test_warm_start_does_not_run_nvcc(drv, tmp_path, monkeypatch):
    from examples.vector_add import vector_add
    from ringgen.runtime.cuda import build as cuda_build
    from ringgen.jit import built_package
    from ringgen.runtime.cuda import CudaKernelHandle

    monkeypatch.setenv("RINGGEN_CACHE_DIR", str(tmp_path))
    cuda_build._memory.clear()
    pkg, codecs = built_package(vector_add.spec, ("cuda",))
    first = CudaKernelHandle.open(vector_add.spec, str(pkg), codecs=codecs)
    first.terminate()
    assert first.compiled and list((tmp_path / "cuda").glob("*/kernel.cubin"))
    cuda_build._memory.clear()
    monkeypatch.setenv("RINGGEN_NVCC", "/nonexistent/nvcc")  # a warm start must not need it
    second = CudaKernelHandle.open(vector_add.spec, str(pkg), codecs=codecs)
    second.terminate()
    assert not second.compiled


def test_language_forms_match_reference(drv):
    """tests/language_kernels.py (tuples, enumerate, **, in, list literals, device helpers taking
    Array/List/Str and returning tuples, Outbox[Msg, 12]) on CUDA, against the reference."""
    import language_kernels as lk

    for kernel in (lk.summarize, lk.pieces):
        spec = kernel.spec
        ref = rg.launch(kernel, backend="cpu", capacity=4096)
        msgs = _random(ref.in_codec.dtype, 3000, np.random.default_rng(12))
        ref.send_batch(msgs, timeout=60)
        ref_out = _drain(ref)
        k = rg.launch(kernel, backend="cuda", capacity=4096)
        k.send_batch(msgs, timeout=30)
        out = _drain(k)
        assert k.stats().processed == len(msgs), spec.name
        assert k.stats().rejected == ref.stats().rejected, spec.name
        _agree(ref_out, out, ordered=not spec.uses_outbox, what=spec.name)


# ---------------------------------------------------------------- bridged messages on the lane
# Issue 14: a bridged kernel's lone message takes the latency lane (docs/cuda.md, "The latency
# lane"). Each message below is sent alone (nothing outstanding), so it goes through the lane;
# its replies are compared with what the reference gives for the same message, then the same
# messages go through the rings alone (the lane switched off) and must give the same again.


def _ref_replies(ref, message) -> list:
    """The reference's replies to ``message`` alone (every reply of an Outbox kernel)."""
    before = ref.stats().processed
    ref.send(message)
    deadline = time.monotonic() + 5.0
    while ref.stats().processed == before:
        assert time.monotonic() < deadline, "the reference did not handle the message in 5 s"
        time.sleep(0.001)
    got = []
    while True:
        part = ref.receive_batch(64, timeout=0.05)
        if len(part) == 0:
            return got
        got += part if isinstance(part, list) else list(ref.out_codec.from_array(part))


def _cuda_replies(k, n: int) -> list:
    """``n`` replies of the message just sent (each within 2 s); for ``n == 0``, checks that the
    kernel answered without a reply (the lane's count 0), within 2 s."""
    if n:
        return [k.receive(timeout=2.0) for _ in range(n)]
    deadline = time.monotonic() + 2.0
    lane = k._lane
    while lane is not None and lane.busy() and not lane.answered():
        assert time.monotonic() < deadline, "the lane's message was not answered in 2 s"
        time.sleep(1e-4)
    with pytest.raises(KernelTimeoutError):
        k.receive(timeout=0.05)
    return []


def _stats_soon(k, what: str, want, timeout: float = 2.0):
    """Wait until ``getattr(k.stats(), what) == want`` (the publisher mirrors the counts a moment
    after the reply it follows), at most ``timeout`` seconds; returns the last value."""
    deadline = time.monotonic() + timeout
    while True:
        got = getattr(k.stats(), what)
        if got == want or time.monotonic() > deadline:
            return got
        time.sleep(1e-3)


def _bridged_cases():
    import bridged_fast_kernels as bk
    from examples import list_reduce, orders, word_stats

    return {
        "word_stats": (
            word_stats.word_stats,
            [word_stats.Word(id=i, text=t) for i, t in enumerate(["the", "unhappy", "", "ü" * 16])],
        ),
        "list_reduce": (
            list_reduce.list_reduce,
            [
                list_reduce.Samples(id=i, values=[float(j) * 0.25 - i for j in range(n)])
                for i, n in enumerate([0, 1, 16, 64])
            ],
        ),
        "shout": (
            bk.shout,
            [bk.Note(id=i, every=i + 1, text="héllo" * i) for i in range(4)],
        ),
        "spell": (  # a direct input, a bridged reply
            bk.spell,
            [bk.Count(id=i, n=n) for i, n in enumerate([-3, 0, 10, 9])],
        ),
        "labels": (  # an Outbox of bridged replies: 0 to 4 per message
            bk.labels,
            [bk.Tagged(id=i, tags=[j - i for j in range(i + 1)]) for i in range(4)],
        ),
        "orders": (
            orders.orders,
            [
                orders.Order(
                    id=i,
                    customer=orders.Customer(id=i, name="Ada" * i, tier=("gold", "tin")[i % 2]),
                    lines=[
                        orders.OrderLine(
                            sku=f"GIFT-{j}" if j % 2 else "X", quantity=j, unit_price=1.5
                        )
                        for j in range(i * 3)
                    ],
                )
                for i in range(4)
            ],
        ),
    }


def _same(k, ref_replies, got, what):
    codec = k.out_codec
    if not ref_replies:
        assert got == [], what
        return
    _agree(codec.to_array(ref_replies), codec.to_array(got), ordered=True, what=what)


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    "name", ["word_stats", "list_reduce", "shout", "spell", "labels", "orders"]
)
def test_bridged_single_messages_through_the_lane_match_reference(drv, name):
    """Single bridged messages (Str, List, nested bridged structs; a direct, a bridged and an
    Outbox of bridged replies) through the lane, then through the rings alone: the replies the
    reference gives, the lane used for every one."""
    kernel, messages = _bridged_cases()[name]
    with rg.launch(kernel, backend="cpu") as ref:
        want = [_ref_replies(ref, m) for m in messages]
    with rg.launch(kernel, backend="cuda", capacity=64) as k:
        assert k._lane is not None, f"{name}: no latency lane"
        for m, w in zip(messages, want):
            _same(k, w, _cuda_replies(k, len(w)), f"{name} lane {m!r}")
        assert k._lane.sent == len(messages) and k.inq.tail == 0
        lane, k._lane = k._lane, None
        k._setup_fast_paths()  # the rings alone (as bench/shapes.py's -rings rows)
        for m, w in zip(messages, want):
            k.send(m)
            _same(k, w, _cuda_replies(k, len(w)), f"{name} rings {m!r}")
        assert k.inq.tail == len(messages)
        k._lane = lane
        k._setup_fast_paths()
        assert _stats_soon(k, "processed", 2 * len(messages)) == 2 * len(messages)


@pytest.mark.timeout(120)
def test_bridged_lane_counts_a_corrupt_or_oversized_message_and_goes_on(drv):
    """A raw slot that fails its CRC, one whose total size is past the slot, through the lane:
    counted under their Reasons, no reply, the next message answered; a Str over its bound is
    refused on the host (EncodeError) and nothing is sent. With dead letters a bad raw slot takes
    the ring and comes back as a dead letter."""
    from examples.word_stats import Word, word_stats
    from ringgen.errors import EncodeError

    good = Word(id=5, text="fine")
    with rg.launch(word_stats, backend="cuda", capacity=64) as k:
        size = k.in_codec.slot_size
        bad_crc = bytearray(rg.encode(Word(id=1, text="crc")).ljust(size, b"\0"))
        bad_crc[262] ^= 0x01
        too_big = bytearray(rg.encode(Word(id=2, text="big")).ljust(size, b"\0"))
        too_big[4:12] = (size + 64).to_bytes(8, "little")
        for raw in (bad_crc, too_big):
            sent = k._lane.sent
            assert k.send_raw_batch(bytes(raw)) == 1
            assert k._lane.sent == sent + 1  # the lane took it
            _cuda_replies(k, 0)
        want = {"BAD_CRC": 1, "BAD_SIZE": 1}
        assert _stats_soon(k, "rejected", want) == want
        with pytest.raises(EncodeError):
            k.send(Word(id=3, text="x" * 40))
        k.send(good)
        reply = k.receive(timeout=2.0)
        assert (reply.id, reply.text, reply.length) == (5, "fine", 4)
        assert _stats_soon(k, "processed", 3) == 3
    with rg.launch(word_stats, backend="cuda", capacity=64, dead_letters=True) as k:
        assert k.send_raw_batch(bytes(bad_crc)) == 1 and k._lane.sent == 0
        deadline = time.monotonic() + 2.0
        letters = []
        while not letters and time.monotonic() < deadline:
            letters = k.receive_dead_letters()
        assert [d.reason.name for d in letters] == ["BAD_CRC"]
        assert k.receive_batch(timeout=0.05) == []  # the hole it left: the output head passes it
        k.send(good)  # nothing outstanding now: the lane
        assert k.receive(timeout=2.0).text == "fine" and k._lane.sent == 1


@pytest.mark.timeout(120)
def test_bridged_lane_handler_fault_is_counted_and_unanswered(drv):
    """A handler fault on the lane (division by zero; an index past an empty List in an Outbox
    kernel): counted under its Reason, no reply, and the kernel answers the next message."""
    import bridged_fast_kernels as bk

    with rg.launch(bk.shout, backend="cuda", capacity=64) as k:
        k.send(bk.Note(id=1, every=0, text="boom"))
        _cuda_replies(k, 0)
        k.send(bk.Note(id=1, every=4, text="ok"))
        assert k.receive(timeout=2.0) == bk.Note(id=26, every=4, text="ok")
        assert _stats_soon(k, "rejected", {"DIVISION_BY_ZERO": 1}) == {"DIVISION_BY_ZERO": 1}
        assert k._lane.sent == 2
    with rg.launch(bk.labels, backend="cuda", capacity=64) as k:
        k.send(bk.Tagged(id=1, tags=[]))
        _cuda_replies(k, 0)
        k.send(bk.Tagged(id=2, tags=[0, 1]))
        assert k.receive(timeout=2.0) == bk.Label(id=2, text="above")
        want = {"INDEX_OUT_OF_RANGE": 1}
        assert _stats_soon(k, "rejected", want) == want
