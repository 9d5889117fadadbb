"""The cpu reference backend: delivery, back-pressure, termination, leaks, stats, faults, ordering."""

from __future__ import annotations

import gc
from pathlib import Path
import threading
import time
import tracemalloc

import attrs
import numpy as np
import pytest

import ringgen as rg
from ringgen.build import import_target
from ringgen.errors import (
    BuildError,
    EncodeError,
    HandlerError,
    KernelFaultError,
    KernelTimeoutError,
    QueueClosedError,
    QueueFullError,
    SchemaError,
)
from ringgen.protocol import Lifecycle

import runtime_kernels as rk

# The examples are imported as the package ``examples`` from the repository root, as a user would.
import_target(str(Path(__file__).resolve().parent.parent / "examples" / "__init__.py"))
from examples.bank_account import Transaction, bank_account  # noqa: E402
from examples.threshold_filter import Reading, threshold_filter  # noqa: E402
from examples.vector_add import AddRequest, AddResponse, vector_add  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def _cache(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("RINGGEN_CACHE_DIR", str(tmp_path_factory.mktemp("ringgen-cache")))
    yield
    mp.undo()


def _seq_array(codec, start: int, n: int) -> np.ndarray:
    arr = np.zeros(n, dtype=codec.dtype)
    arr["seq"] = np.arange(start, start + n)
    arr["value"] = arr["seq"] % 1000
    return arr


def _worker_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("ringgen-cpu-")]


# ------------------------------------------------------------------------------ the four


@pytest.mark.timeout(180)
def test_million_messages_slow_consumer_lose_nothing_duplicate_nothing():
    n, chunk = 1_000_000, 8192
    with rg.launch(rk.echo, backend="cpu") as k:
        codec = k.in_codec
        errors: list[BaseException] = []

        def produce() -> None:
            try:
                for start in range(0, n, chunk):
                    assert k.send_batch(
                        _seq_array(codec, start, min(chunk, n - start)), timeout=60
                    ) == min(chunk, n - start)
            except BaseException as exc:  # surfaced by the main thread
                errors.append(exc)

        producer = threading.Thread(target=produce, daemon=True)
        producer.start()
        got = []
        received = 0
        deadline = time.monotonic() + 150
        while received < n and time.monotonic() < deadline and not errors:
            batch = k.receive_batch(max_n=2048, timeout=1.0)
            got.append(batch["seq"].copy())
            if (received + len(batch)) // 50_000 > received // 50_000:
                time.sleep(0.1)  # the slow consumer: the output queue fills and the kernel stalls
            received += len(batch)
        producer.join(10)
        assert not errors, errors
        seqs = np.concatenate(got)
        assert len(seqs) == n
        # The reference is sequential, so replies come back in order: no loss, no duplicate.
        np.testing.assert_array_equal(seqs, np.arange(n))
        assert k.receive_batch(timeout=0.05).size == 0  # nothing extra
        st = k.stats()
        assert (st.sent, st.processed, st.emitted, st.received) == (n, n, n, n)
        # The slow consumer backed the replies up: the kernel waited on its full output queue, or
        # the producer, finding the input queue full, moved replies into the spill first (the
        # anti-deadlock rule of send_batch); which one happens is a race between the two threads.
        assert st.output_stalls > 0 or st.spilled > 0, (st.output_stalls, st.spilled)
        assert st.rejected == {}


def _fill_until_full(k, limit: int = 10_000) -> int:
    """Send with block=False until the kernel's queues are full; return how many were accepted."""
    for i in range(limit):
        try:
            k.send(rk.Seq(seq=i, value=0), block=False)
        except QueueFullError:
            return i
        if i % 16 == 15:
            time.sleep(0.001)  # let the worker move what it can into the output queue
    raise AssertionError("the queue never filled")


@pytest.mark.timeout(60)
def test_send_raises_queue_full_when_nonblocking_and_blocks_otherwise():
    with rg.launch(rk.echo_small, backend="cpu") as k:  # capacity 64, nobody receiving
        accepted = _fill_until_full(k)
        # Input queue (64) + output queue (64) + at most one chunk held by the stalled worker.
        assert 64 <= accepted <= 3 * 64
        assert k.send_batch([rk.Seq(seq=-1, value=0)], block=False) == 0
        with pytest.raises(QueueFullError) as info:
            k.send(rk.Seq(seq=-1, value=0), block=False)
        assert "echo_small" in str(info.value) and "capacity 64" in str(info.value)

        # A blocking send moves the replies that are ready into the host's spill, so the stalled
        # kernel goes on and the send completes with nobody receiving (issue 10).
        k.send(rk.Seq(seq=accepted, value=0), timeout=5)
        assert k.stats().spilled > 0
        seqs = []
        while len(seqs) < accepted + 1:
            seqs.append(k.receive(timeout=5).seq)
        assert seqs == list(range(accepted + 1))  # nothing lost or overwritten while full
        assert k.stats().output_stalls >= 1


@pytest.mark.timeout(60)
def test_terminate_idle_returns_within_100ms():
    times = []
    for _ in range(5):
        k = rg.launch(rk.echo, backend="cpu")
        time.sleep(0.2)  # fully idle: the worker is in its longest sleep
        t0 = time.perf_counter()
        k.terminate()
        times.append(time.perf_counter() - t0)
        assert k.lifecycle is Lifecycle.TERMINATED
    assert max(times) < 0.1, times


@pytest.mark.timeout(60)
def test_terminate_busy_returns_within_100ms_and_keeps_every_reply():
    k = rg.launch(rk.echo, backend="cpu")
    sent = []
    stop = threading.Event()

    def produce() -> None:
        start = 0
        try:
            while not stop.is_set():
                start += k.send_batch(_seq_array(k.in_codec, start, 512), timeout=5)
                sent.append(start)
        except QueueClosedError:
            pass

    producer = threading.Thread(target=produce, daemon=True)
    producer.start()
    got = []
    t_end = time.monotonic() + 0.5
    while time.monotonic() < t_end:  # a busy kernel: a stream in, replies out
        got.append(k.receive_batch(max_n=256, timeout=0.1)["seq"].copy())
    t0 = time.perf_counter()
    final = k.terminate()
    elapsed = time.perf_counter() - t0
    stop.set()
    producer.join(5)
    assert elapsed < 0.1, elapsed
    assert final.lifecycle is Lifecycle.TERMINATED
    # Every accepted message was drained, and its reply is still readable after termination.
    while True:
        try:
            got.append(k.receive_batch(max_n=4096)["seq"].copy())
        except QueueClosedError:
            break
    seqs = np.concatenate(got)
    np.testing.assert_array_equal(seqs, np.arange(final.sent))
    assert final.processed == final.sent > 1000  # it was streaming when terminate came


@pytest.mark.timeout(60)
def test_200_launch_terminate_cycles_leave_no_thread_or_memory():
    def cycle(i: int) -> None:
        with rg.launch(rk.echo_small, backend="cpu") as k:
            k.send(rk.Seq(seq=i, value=1))
            assert k.receive(timeout=5).seq == i

    before_threads = threading.active_count()
    for i in range(20):  # warm up: build cache, imports, first allocations
        cycle(i)
    gc.collect()
    tracemalloc.start()
    try:
        base, _ = tracemalloc.get_traced_memory()
        for i in range(200):
            cycle(i)
        gc.collect()
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert threading.active_count() == before_threads
    assert _worker_threads() == []
    # 200 handles with 64-slot queues and latency windows would hold several MB if any were kept.
    assert after - base < 256 * 1024, after - base


# ---------------------------------------------------------------------------------- the API


@pytest.mark.timeout(30)
def test_round_trip_objects_and_arrays():
    with rg.launch(vector_add, backend="cpu") as k:
        k.send(AddRequest(id=1, a=1.0, b=2.0))
        assert k.receive(timeout=5) == AddResponse(id=1, sum=3.0)
        arr = np.zeros(100, dtype=k.in_codec.dtype)
        arr["id"] = np.arange(100)
        arr["a"] = np.arange(100) * 0.5
        arr["b"] = 1.0
        assert k.send_batch(arr) == 100
        out = []
        while sum(len(o) for o in out) < 100:
            out.append(k.receive_batch(timeout=5))
        assert all(o.dtype == k.out_codec.dtype for o in out)  # the C layout, padding included
        res = np.concatenate(out)
        np.testing.assert_array_equal(res["id"], np.arange(100))
        np.testing.assert_array_equal(res["sum"], (np.arange(100) * 0.5 + 1.0).astype(np.float32))


@pytest.mark.timeout(30)
def test_receive_times_out_and_closed_kernel_refuses():
    with rg.launch(vector_add, backend="cpu") as k:
        t0 = time.monotonic()
        with pytest.raises(KernelTimeoutError, match="vector_add"):
            k.receive(timeout=0.05)
        assert 0.04 <= time.monotonic() - t0 < 1.0
        assert len(k.receive_batch(timeout=0.01)) == 0
        k.send(AddRequest(id=7, a=1.0, b=1.0))
    assert k.lifecycle is Lifecycle.TERMINATED
    assert k.receive().id == 7  # published before the acknowledgement: still readable
    with pytest.raises(QueueClosedError, match="vector_add"):
        k.receive(timeout=1)
    with pytest.raises(QueueClosedError, match="accepts no more"):
        k.send(AddRequest(id=8, a=1.0, b=1.0))
    assert k.terminate().lifecycle is Lifecycle.TERMINATED  # a second terminate is harmless


@pytest.mark.timeout(30)
def test_wrong_message_type_is_rejected_by_name():
    with rg.launch(vector_add, backend="cpu") as k:
        with pytest.raises(SchemaError, match="AddRequest"):
            k.send(AddResponse(id=1, sum=1.0))
        with pytest.raises(SchemaError, match="lacks field"):
            k.send_batch(np.zeros(3, dtype=[("id", "<i8")]))
        assert k.stats().sent == 0


@pytest.mark.timeout(30)
def test_stats_snapshot():
    with rg.launch(rk.echo, backend="cpu") as k:
        for i in range(10):
            k.send(rk.Seq(seq=i, value=i))
        replies = [k.receive(timeout=5) for _ in range(10)]
        assert [r.value for r in replies] == [i + 1 for i in range(10)]
        st = k.stats()
        assert (st.kernel, st.backend, st.lifecycle) == ("echo", "cpu", Lifecycle.ACTIVE)
        assert (st.sent, st.processed, st.emitted, st.received) == (10, 10, 10, 10)
        assert (st.input_depth, st.output_depth, st.capacity) == (0, 0, 1024)
        assert st.heartbeat > 0 and st.launches == 1 and st.fault is None
        assert st.latency is not None and st.latency.count == 10
        assert 0 < st.latency.p50_us <= st.latency.p99_us <= st.latency.max_us
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            st.processed = 0  # type: ignore[misc]
        assert st.as_dict()["lifecycle"] == "ACTIVE"
        k.send(rk.Seq(seq=10, value=0))
    final = k.stats()
    assert final.lifecycle is Lifecycle.TERMINATED and final.processed == 11
    assert final.output_depth == 1  # one reply waits in the host-side buffer


@pytest.mark.timeout(30)
def test_handler_faults_are_counted_by_reason_not_crashes():
    with rg.launch(rk.divide, backend="cpu") as k:
        vals = [10, 20, 30, 40]
        k.send(rk.Div(seq=0, a=7, b=2, index=1, values=vals))
        k.send(rk.Div(seq=1, a=7, b=0, index=1, values=vals))  # division by zero
        k.send(rk.Div(seq=2, a=7, b=1, index=9, values=vals))  # index out of range
        k.send(rk.Div(seq=3, a=-7, b=2, index=3, values=vals))
        a = k.receive(timeout=5)
        b = k.receive(timeout=5)
        assert (a.seq, a.q, a.picked) == (0, 3, 20)
        assert (b.seq, b.picked) == (3, 40)
        with pytest.raises(KernelTimeoutError):
            k.receive(timeout=0.05)
        st = k.stats()
        assert st.rejected == {"DIVISION_BY_ZERO": 1, "INDEX_OUT_OF_RANGE": 1}
        assert st.rejected_total == 2 and st.processed == 4 and st.emitted == 2
        assert st.lifecycle is Lifecycle.ACTIVE


@pytest.mark.timeout(30)
def test_optional_output_and_outbox_kernels():
    with rg.launch(rk.evens, backend="cpu") as k:
        k.send_batch([rk.Seq(seq=i, value=0) for i in range(10)])
        got = [k.receive(timeout=5).seq for _ in range(5)]
        assert got == [0, 2, 4, 6, 8]
        st = k.stats()
        assert st.processed == 10 and st.emitted == 5
    with rg.launch(threshold_filter, backend="cpu") as k:
        k.send_batch(
            [Reading(sensor=1, seq=i, value=v) for i, v in enumerate([10.0, 60.0, 95.0, -70.0])]
        )
        alerts = [k.receive(timeout=5) for _ in range(4)]
        assert [(a.seq, a.level) for a in alerts] == [(1, 1), (2, 1), (2, 2), (3, -1)]
        assert k.stats().emitted == 4


@pytest.mark.timeout(30)
def test_state_is_read_back_and_stateless_output_free_kernel_works():
    with rg.launch(rk.tally, backend="cpu") as k:
        k.send_batch([rk.Seq(seq=i, value=i) for i in range(100)])
        deadline = time.monotonic() + 5
        while k.stats().processed < 100 and time.monotonic() < deadline:
            time.sleep(0.005)
        st = k.state()
        assert (int(st.count), int(st.total)) == (100, sum(range(100)))
        st.count = 0  # a copy: the kernel's state is untouched
        assert int(k.state().count) == 100
        with pytest.raises(QueueClosedError, match="no output queue"):
            k.receive(timeout=0.01)
    assert int(k.state().total) == sum(range(100))  # the final state survives termination


@pytest.mark.timeout(30)
def test_ordered_kernel_sees_messages_in_arrival_order():
    with rg.launch(bank_account, backend="cpu") as k:
        amounts = [100, -30, -80, 50, -120, 10]
        k.send_batch([Transaction(id=i, amount=a) for i, a in enumerate(amounts)])
        receipts = [k.receive(timeout=5) for _ in amounts]
        assert [bool(r.accepted) for r in receipts] == [True, True, False, True, True, True]
        assert [int(r.balance) for r in receipts] == [100, 70, 70, 120, 0, 10]
        assert int(k.state().balance) == 10 and int(k.state().transactions) == 5
    with rg.launch(rk.in_order, backend="cpu") as k:
        replies = []
        for start in range(0, 3000, 500):  # within the queue capacity: no receiver runs meanwhile
            k.send_batch(_seq_array(k.in_codec, start, 500), timeout=10)
            while len(replies) < start + 500:
                replies.extend(int(v) for v in k.receive_batch(timeout=5)["seq"])
        assert replies == list(range(3000))
        assert int(k.state().out_of_order) == 0 and int(k.state().last_seq) == 2999


@pytest.mark.timeout(30)
def test_terminate_that_is_never_acknowledged_times_out_naming_the_kernel():
    k = rg.launch(rk.busy, backend="cpu")
    k.send(rk.Work(seq=0, iterations=2**31 - 1))  # a handler that would run for minutes
    time.sleep(0.05)
    t0 = time.monotonic()
    with pytest.raises(KernelTimeoutError, match="busy.*did not acknowledge"):
        k.terminate(timeout=0.1)
    assert time.monotonic() - t0 < 1.0
    assert k.lifecycle is Lifecycle.FAULTED and k.stats().lifecycle is Lifecycle.FAULTED
    with pytest.raises(QueueClosedError):
        k.send(rk.Work(seq=1, iterations=1))
    # The abandoned worker is interrupted: no thread keeps burning a core.
    deadline = time.monotonic() + 5
    while _worker_threads() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _worker_threads() == []


@pytest.mark.timeout(30)
def test_unexpected_handler_error_faults_the_kernel():
    k = rg.launch(rk.echo, backend="cpu")

    def broken(msg, state):
        raise RuntimeError("handler bug")

    k._worker.step = broken  # white box: the compiler would reject such a handler
    k.send(rk.Seq(seq=0, value=0))
    with pytest.raises(KernelFaultError, match="echo.*RuntimeError: handler bug"):
        k.receive(timeout=5)
    assert k.lifecycle is Lifecycle.FAULTED
    with pytest.raises(KernelFaultError):
        k.send(rk.Seq(seq=1, value=0))
    with pytest.raises(KernelFaultError, match="echo.*terminated after a fault"):
        k.terminate()
    assert k.stats().lifecycle is Lifecycle.FAULTED
    assert _worker_threads() == []


@pytest.mark.timeout(30)
def test_context_manager_terminates_on_error_and_dropped_handle_stops_worker():
    with pytest.raises(ValueError):
        with rg.launch(rk.echo, backend="cpu") as k:
            raise ValueError("user error")
    assert k.lifecycle is Lifecycle.TERMINATED
    k2 = rg.launch(rk.echo, backend="cpu")
    thread = k2._thread
    del k2
    gc.collect()
    thread.join(5)
    assert not thread.is_alive()


@pytest.mark.timeout(30)
def test_capacity_option_and_its_validation():
    with rg.launch(rk.echo, backend="cpu", capacity=8) as k:
        assert k.capacity == 8 and k.stats().capacity == 8
    with pytest.raises(BuildError, match="capacity=100 is not a power of two"):
        rg.launch(rk.echo, backend="cpu", capacity=100)
    with pytest.raises(BuildError, match="(?s)no launch option 'capcity'.*options are: capacity"):
        rg.launch(rk.echo, backend="cpu", capcity=8)
    assert _worker_threads() == []


@pytest.mark.timeout(30)
def test_bridged_messages_round_trip_as_objects_and_arrays():
    with rg.launch(rk.summarize, backend="cpu") as k:
        k.send(rk.Named(id=1, name="héllo", scores=[1, 2, 3]))
        r = k.receive(timeout=5)
        assert (r.id, r.name, r.total, r.count) == (1, "héllo", 6, 3)
        arr = k.in_codec.to_array(
            [rk.Named(id=i, name="n" * i, scores=[i] * i) for i in range(2, 6)]
        )
        assert k.send_batch(arr) == 4
        got = []
        while len(got) < 4:
            got.extend(k.receive_batch(timeout=5))  # a list of objects for a bridged message
        assert [(g.id, g.name, g.total) for g in got] == [(i, "n" * i, i * i) for i in range(2, 6)]
        with pytest.raises(EncodeError, match=r"Named.name: Str\[16\]"):  # as a device backend
            k.send(rk.Named(id=9, name="x" * 17, scores=[]))
        assert k.stats().sent == 5 and k.stats().rejected == {}


@pytest.mark.timeout(30)
def test_atomics_update_state_in_the_counters_example():
    from examples.counters import Sample, counters

    values = [3, 19, -5, 35, 3, 0, 16]
    with rg.launch(counters, backend="cpu") as k:
        k.send_batch([Sample(id=i, value=v) for i, v in enumerate(values)])
        acks = [k.receive(timeout=5) for _ in values]
        st = k.state()
    assert [int(a.bin) for a in acks] == [v % 16 for v in values]
    assert [int(a.seen_before) for a in acks] == [0, 1, 0, 2, 3, 0, 1]
    assert (int(st.count), int(st.total), int(st.largest)) == (7, sum(values), 35)
    assert int(st.hist[3]) == 4 and int(st.hist[0]) == 2 and int(sum(st.hist)) == 7


BAD_KERNEL = """
import ringgen as rg
from ringgen.types import i64


@rg.message
class Ping:
    id: i64


@rg.ring_kernel
def bad(p: Ping) -> Ping:
    table = {1: 2}
    return Ping(id=p.id)
"""


@pytest.mark.timeout(30)
def test_a_handler_the_compiler_rejects_fails_at_launch_with_its_position(module_file):
    path = module_file(BAD_KERNEL)
    mod = import_target(str(path))
    with pytest.raises(HandlerError) as info:
        rg.launch(mod.bad, backend="cpu")
    assert f"{path}:13:" in str(info.value)
    assert _worker_threads() == []


def test_terminate_without_timeout_waits_and_frees():
    """terminate(timeout=None) means no limit (as in receive): it completes and frees the kernel."""
    k = rg.launch(vector_add, backend="cpu")
    k.send(AddRequest(id=1, a=1.0, b=2.0))
    final = k.terminate(timeout=None)
    assert final.lifecycle is Lifecycle.TERMINATED and k._released
    assert not k._thread.is_alive()
    assert k.receive(timeout=1.0) == AddResponse(id=1, sum=3.0)


def test_send_batch_array_of_other_dtypes_converts_only_safely():
    """A structured array whose fields have other dtypes converts when no value changes (int32 id,
    float64 operands round to float32 as send does) and raises EncodeError naming Class.field
    otherwise, where numpy would silently truncate or wrap."""
    ok = np.zeros(2, dtype=[("id", "<i4"), ("a", "<f8"), ("b", "<f8")])
    ok["id"], ok["a"], ok["b"] = [1, 2], [1.5, 2.5], 1.0
    with rg.launch(vector_add, backend="cpu") as k:
        assert k.send_batch(ok) == 2
        got = [k.receive(timeout=2.0) for _ in range(2)]
        assert got == [AddResponse(id=1, sum=2.5), AddResponse(id=2, sum=3.5)]
        floats = np.zeros(1, dtype=[("id", "<f8"), ("a", "<f8"), ("b", "<f8")])
        floats["id"] = 1.7
        with pytest.raises(EncodeError, match=r"AddRequest\.id.*float64"):
            k.send_batch(floats)
        big = np.zeros(2, dtype=[("id", "<u8"), ("a", "<f4"), ("b", "<f4")])
        big["id"] = [1, 2**63]
        with pytest.raises(EncodeError, match=r"AddRequest\.id = 9223372036854775808.*uint64"):
            k.send_batch(big)
        assert k.stats().sent == 2


def test_concurrent_observers_during_terminate_never_see_a_raw_error():
    """stats(), lifecycle, state() and receive_batch from other threads while the kernel terminates
    give the live or the final values, or QueueClosedError: terminate frees under the locks."""
    errors = []

    def poll(k, stop):
        while not stop.is_set():
            try:
                k.stats()
                k.lifecycle
                k.state()
                k.receive_batch(timeout=0)
            except QueueClosedError:
                pass
            except Exception as exc:  # noqa: BLE001 - any other error is the bug under test
                errors.append(repr(exc))
                return

    for _ in range(20):
        k = rg.launch(vector_add, backend="cpu")
        stop = threading.Event()
        threads = [threading.Thread(target=poll, args=(k, stop)) for _ in range(2)]
        for t in threads:
            t.start()
        time.sleep(0.002)
        k.terminate()
        stop.set()
        for t in threads:
            t.join()
        assert not errors, errors
        assert k.lifecycle is Lifecycle.TERMINATED


def test_small_error_messages_name_the_kernel_and_what_happened():
    """receive_batch(max_n=0) names the kernel; a full queue with timeout=0 says it did not wait."""
    with rg.launch(rk.echo_small, backend="cpu") as k:
        with pytest.raises(ValueError, match="echo_small.*max_n"):
            k.receive_batch(max_n=0)
        _fill_until_full(k)
        with pytest.raises(QueueFullError, match="without waiting") as info:
            k.send(rk.Seq(seq=-1, value=0), timeout=0)
        assert "block=False" not in str(info.value)
