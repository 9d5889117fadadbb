"""The OpenCL backend's host API on every device and mode: replies, batches, async, back-pressure,
stats, termination (idle, busy, never acknowledged), handler faults, launch/terminate cycles."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from ringgen.errors import BackendUnavailableError, QueueClosedError, QueueFullError
from ringgen.protocol import TERMINATE_STOP_NOW, Lifecycle
from test_opencl_support import (
    DEVICES,
    device_params,
    open_kernel,
    requests,
    vector_add_package,
)

pytestmark = [pytest.mark.opencl, pytest.mark.timeout(120)]

both_modes = pytest.mark.parametrize(
    "device,mode", device_params(("persistent", "persistent-2groups", "relaunch"))
)


@pytest.fixture(scope="module")
def va(tmp_path_factory):
    return vector_add_package(tmp_path_factory)


def _expected_sum(arr):
    return arr["a"] + arr["b"]  # float32 + float32, rounded once, as the device does


def _receive_n(k, n, timeout=10.0):
    parts, got, deadline = [np.zeros(0, k.out_codec.dtype)], 0, time.monotonic() + timeout
    while got < n:
        assert time.monotonic() < deadline, f"only {got} of {n} replies arrived"
        part = k.receive_batch(max_n=n - got, timeout=1.0)
        parts.append(part)
        got += len(part)
    return np.concatenate(parts)


@both_modes
def test_single_and_batch_round_trip(va, device, mode):
    """One object and one structured array come back exact, in order, with the mode requested."""
    pkg, unit, codecs = va
    from examples.vector_add import AddRequest, AddResponse

    with open_kernel(pkg, unit, codecs, device, mode) as k:
        assert k.persistent == mode.startswith("persistent")
        assert k.lifecycle is Lifecycle.ACTIVE
        k.send(AddRequest(id=7, a=1.5, b=2.25))
        assert k.receive(timeout=5.0) == AddResponse(id=7, sum=3.75)
        arr = requests(codecs, 3000)  # more than one queue's worth: wraps the ring
        sent = 0
        out = []
        while sent < len(arr):
            sent += k.send_batch(arr[sent:], block=False)
            out.append(k.receive_batch(timeout=0.0))
        out.append(_receive_n(k, len(arr) - sum(map(len, out))))
        got = np.concatenate(out)
        np.testing.assert_array_equal(got["id"], arr["id"])
        np.testing.assert_array_equal(got["sum"], _expected_sum(arr))
        s = k.stats()
        assert (s.processed, s.emitted, s.sent, s.received) == (3001, 3001, 3001, 3001)
        assert s.input_depth == 0 and s.output_depth == 0
        assert s.launches >= 1


@both_modes
def test_async_send_receive_and_iteration(va, device, mode):
    """send_async/receive_async and ``async for`` deliver every reply in order."""
    pkg, unit, codecs = va
    from examples.vector_add import AddRequest

    async def main(k):
        for i in range(20):
            await k.send_async(AddRequest(id=i, a=float(i), b=1.0), timeout=5.0)
        first = await k.receive_async(timeout=5.0)
        rest = []
        k.terminate(timeout=5.0)
        async for r in k:
            rest.append(r)
        return [first] + rest

    k = open_kernel(pkg, unit, codecs, device, mode)
    replies = asyncio.run(main(k))
    assert [r.id for r in replies] == list(range(20))
    assert [r.sum for r in replies] == [float(i) + 1.0 for i in range(20)]


@both_modes
def test_back_pressure_blocks_and_loses_nothing(va, device, mode):
    """With nobody receiving, the kernel stalls on its full output queue and sends fail with
    QueueFullError; once replies are taken everything arrives exactly once, in order."""
    pkg, unit, codecs = va
    cap = 64
    with open_kernel(pkg, unit, codecs, device, mode, capacity=cap, group_size=16) as k:
        arr = requests(codecs, 4 * cap)
        accepted = 0
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:  # fill input and output queues until nothing moves
            accepted += k.send_batch(arr[accepted:], block=False)
            time.sleep(0.01)
            if accepted >= 2 * cap and k.send_batch(arr[accepted:], block=False) == 0:
                break
        assert 2 * cap <= accepted < len(arr)
        with pytest.raises(QueueFullError):
            k.send(codecs["AddRequest"].from_array(arr[accepted : accepted + 1])[0], block=False)
        if mode.startswith("persistent"):
            assert k.stats().output_stalls >= 1
        # A blocking send moves the ready replies into the host's spill, so the stalled kernel
        # goes on and the send completes with nobody receiving (issue 10).
        k.send_batch(arr[accepted:], timeout=10)
        assert k.stats().spilled > 0
        got = _receive_n(k, len(arr))
        np.testing.assert_array_equal(got["id"], arr["id"])
        assert k.stats().processed == len(arr)


@both_modes
@pytest.mark.parametrize("busy", [False, True], ids=["idle", "busy"])
def test_terminate_within_100ms(va, device, mode, busy):
    """Termination is acknowledged within 100 ms, idle or with a full input queue draining."""
    pkg, unit, codecs = va
    k = open_kernel(pkg, unit, codecs, device, mode, capacity=4096)
    if busy:
        k.send_batch(requests(codecs, 4096), timeout=5)
    time.sleep(0.05)
    t0 = time.perf_counter()
    final = k.terminate(timeout=2.0)
    elapsed = time.perf_counter() - t0
    assert final.lifecycle is Lifecycle.TERMINATED
    assert elapsed < 0.1, f"terminate took {elapsed * 1e3:.1f} ms"
    if busy:  # drained: every queued message processed, replies kept readable
        assert final.processed == 4096
        assert len(_receive_n(k, 4096)) == 4096
    with pytest.raises(QueueClosedError):
        k.send_batch(requests(codecs, 1))


@both_modes
def test_handler_fault_is_counted_not_a_crash(tmp_path_factory, device, mode):
    """An out-of-range array index in a handler is counted as INDEX_OUT_OF_RANGE; the kernel keeps
    serving the other messages."""
    pkg, unit, codecs = vector_add_package(tmp_path_factory, "FAULTING_BODY")
    with open_kernel(pkg, unit, codecs, device, mode) as k:
        arr = requests(codecs, 12)  # ids 0..11: 0..3 valid
        k.send_batch(arr, timeout=5)
        got = _receive_n(k, 4)
        np.testing.assert_array_equal(got["id"], [0, 1, 2, 3])
        np.testing.assert_array_equal(got["sum"], np.float32([10, 20, 30, 40]) + arr["a"][:4])
        deadline = time.monotonic() + 5
        while k.stats().processed < 12 and time.monotonic() < deadline:
            time.sleep(0.001)
        s = k.stats()
        assert s.rejected == {"INDEX_OUT_OF_RANGE": 8}
        assert s.processed == 12 and s.emitted == 4
        assert s.lifecycle is Lifecycle.ACTIVE and s.fault is None
        assert len(k.receive_batch(timeout=0.05)) == 0


@pytest.mark.parametrize("device,mode", device_params(("persistent",)))
def test_never_acknowledging_kernel_times_out_and_process_exits(tmp_path_factory, device, mode):
    """A kernel stuck in its handler makes terminate raise KernelTimeoutError naming it, and the
    process still exits."""
    pkg, _, _ = vector_add_package(tmp_path_factory, "STUCK_BODY")
    tests_dir = os.path.dirname(__file__)
    script = textwrap.dedent(f"""
        import sys, time
        sys.path[:0] = [{tests_dir!r}, {os.getcwd()!r}]
        from test_opencl_support import build_package, open_kernel, STUCK_BODY, VECTOR_ADD
        from pathlib import Path
        from ringgen.errors import KernelTimeoutError
        from ringgen.runtime.opencl.build import select_device
        pkg, unit, codecs = build_package(Path({str(pkg.parent)!r}), VECTOR_ADD, body=STUCK_BODY)
        k = open_kernel(pkg, unit, codecs, select_device({device.index!r}), {mode!r})
        from examples.vector_add import AddRequest
        k.send(AddRequest(id=-1, a=0.0, b=0.0))
        time.sleep(0.05)
        t0 = time.monotonic()
        try:
            k.terminate(timeout=0.2)
        except KernelTimeoutError as exc:
            print("TIMEOUT", round(time.monotonic() - t0, 3), exc)
        print("EXITING", flush=True)
    """)
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert "EXITING" in proc.stdout, proc.stderr
    assert "TIMEOUT" in proc.stdout and "did not acknowledge terminate" in proc.stdout
    assert "vector_add" in proc.stdout
    assert time.monotonic() - t0 < 60


@both_modes
def test_launch_terminate_cycles_keep_memory_flat(va, device, mode):
    """200 launch/terminate cycles: the process's resident memory stays flat."""
    pkg, unit, codecs = va

    def rss_kb():
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))

    def cycle():
        with open_kernel(pkg, unit, codecs, device, mode, capacity=256) as k:
            k.send_batch(requests(codecs, 32), timeout=5)
            assert len(_receive_n(k, 32)) == 32

    for _ in range(20):  # warm up caches, allocator pools
        cycle()
    before = rss_kb()
    for _ in range(200):
        cycle()
    grown = rss_kb() - before
    assert grown < 8 * 1024, f"RSS grew by {grown} kB over 200 cycles"


def test_unknown_mode_and_device_are_clear_errors(va):
    pkg, unit, codecs = va
    if not DEVICES:
        pytest.skip("no OpenCL device present")
    with pytest.raises(ValueError, match="mode must be one of"):
        open_kernel(pkg, unit, codecs, DEVICES[0], "sometimes")
    with pytest.raises(BackendUnavailableError, match="no OpenCL device matches"):
        open_kernel(pkg, unit, codecs, "no-such-device-xyz", None)
    d = DEVICES[0]
    with pytest.raises(ValueError, match="persistent mode only"):
        open_kernel(pkg, unit, codecs, d, "relaunch", groups=2)
    if d.persistent:
        with pytest.raises(ValueError, match="compute units"):
            open_kernel(pkg, unit, codecs, d, "persistent", groups=d.compute_units + 1)
    with pytest.raises(ValueError, match="must fit the capacity"):
        open_kernel(pkg, unit, codecs, d, "relaunch", capacity=64, group_size=128)


def test_rg_launch_opencl_and_auto(tmp_path, monkeypatch):
    """``rg.launch(kernel, backend="opencl")`` builds into the cache and runs; ``auto`` picks OpenCL
    when no CUDA device is present."""
    import ringgen as rg
    from ringgen.runtime.backends import resolve_backend

    if not DEVICES:
        pytest.skip("no OpenCL device present")
    monkeypatch.setenv("RINGGEN_CACHE_DIR", str(tmp_path))
    from examples.vector_add import AddRequest, AddResponse, vector_add

    with rg.launch(vector_add, backend="opencl") as k:
        assert k.backend == "opencl"
        k.send(AddRequest(id=3, a=0.5, b=0.25))
        assert k.receive(timeout=5.0) == AddResponse(id=3, sum=0.75)
    from ringgen.errors import BackendUnavailableError as Unavailable
    from ringgen.runtime.backends import load_backend

    try:
        load_backend("cuda")
    except Unavailable:  # no CUDA device here: auto must fall to OpenCL, not to the cpu
        monkeypatch.delenv("RINGGEN_BACKEND", raising=False)
        assert resolve_backend("auto") == "opencl"


def test_warm_start_loads_the_binary_cache(va, tmp_path, monkeypatch, caplog):
    """A second process (simulated by clearing the in-memory programs) loads the built binary from
    the cache directory instead of compiling again."""
    import logging

    from ringgen.runtime.opencl import build as opencl_build

    if not DEVICES:
        pytest.skip("no OpenCL device present")
    pkg, unit, codecs = va
    monkeypatch.setenv("RINGGEN_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(opencl_build, "_programs", {})
    caplog.set_level(logging.DEBUG, logger="ringgen")
    with open_kernel(pkg, unit, codecs, DEVICES[0], "relaunch", group_size=32):
        pass
    cached = list((tmp_path / "opencl").glob("*/program.bin"))
    assert len(cached) == 1
    assert any("building" in r.getMessage() for r in caplog.records)
    caplog.clear()
    monkeypatch.setattr(opencl_build, "_programs", {})
    with open_kernel(pkg, unit, codecs, DEVICES[0], "relaunch", group_size=32) as k:
        k.send_batch(requests(codecs, 4), timeout=5)
        assert len(_receive_n(k, 4)) == 4
    messages = [r.getMessage() for r in caplog.records]
    assert any("loaded from the binary cache" in m for m in messages), messages
    assert not any(m.startswith("building") for m in messages), messages


@pytest.mark.parametrize("device,mode", device_params(("persistent",)))
def test_dropped_handle_stops_its_kernel_safely(va, device, mode):
    """A persistent handle dropped without terminate asks its kernel to stop and keeps the kernel's
    memory until it has; the next launch frees it."""
    import gc

    from ringgen.runtime.opencl import persistent as backend

    pkg, unit, codecs = va
    k = open_kernel(pkg, unit, codecs, device, mode)
    k.send_batch(requests(codecs, 16), timeout=5)
    ctl = k._ctl
    del k
    gc.collect()
    assert ctl["terminate"][0] == TERMINATE_STOP_NOW
    deadline = time.monotonic() + 5
    while ctl["state"][0] != int(Lifecycle.TERMINATED) and time.monotonic() < deadline:
        time.sleep(0.001)
    assert ctl["state"][0] == int(Lifecycle.TERMINATED)
    with open_kernel(pkg, unit, codecs, device, mode) as k2:  # reaps the orphan
        k2.send_batch(requests(codecs, 4), timeout=5)
        assert len(_receive_n(k2, 4)) == 4
    assert backend._ORPHANS == []


@pytest.mark.parametrize("device,mode", device_params(("persistent", "persistent-2groups")))
def test_dropped_handle_with_full_output_queue_stops_and_is_reaped(va, device, mode):
    """A handle dropped while its kernel waits for room in a full output queue (no one will ever
    drain it) still stops the kernel (stop now, not drain), and the reaper frees its memory."""
    import gc

    from ringgen.runtime.opencl import persistent as backend

    pkg, unit, codecs = va
    k = open_kernel(pkg, unit, codecs, device, mode, capacity=64)
    sent = k.send_batch(requests(codecs, 64), timeout=5)
    deadline = time.monotonic() + 5
    while k.stats().output_depth < 64 and time.monotonic() < deadline:
        time.sleep(0.001)
    sent += k.send_batch(requests(codecs, 64), block=False)
    deadline = time.monotonic() + 5
    while k.stats().output_stalls == 0 and time.monotonic() < deadline:
        time.sleep(0.001)
    assert k.stats().output_stalls >= 1, "the kernel never waited on its full output queue"
    ctl = k._ctl
    del k
    gc.collect()
    deadline = time.monotonic() + 5
    while ctl["state"][0] != int(Lifecycle.TERMINATED) and time.monotonic() < deadline:
        time.sleep(0.001)
    assert ctl["state"][0] == int(Lifecycle.TERMINATED)
    deadline = time.monotonic() + 5
    while backend._ORPHANS and time.monotonic() < deadline:
        backend._reap_orphans()
        time.sleep(0.001)
    assert backend._ORPHANS == []


@pytest.mark.parametrize("device,mode", device_params(("persistent",)))
def test_terminate_while_other_threads_poll(va, device, mode):
    """stats(), lifecycle, state() and receive_batch(timeout=0) from other threads during terminate
    see the live kernel or the final snapshot (or QueueClosedError), never freed memory or a
    released memoryview's ValueError."""
    import threading

    pkg, unit, codecs = va
    errors = []

    def poll(k, stop):
        while not stop.is_set():
            try:
                k.stats()
                k.lifecycle
                k.receive_batch(timeout=0)
            except QueueClosedError:
                pass
            except Exception as exc:  # noqa: BLE001 - any other error is the bug under test
                errors.append(repr(exc))
                return

    for _ in range(15):
        k = open_kernel(pkg, unit, codecs, device, mode)
        stop = threading.Event()
        threads = [threading.Thread(target=poll, args=(k, stop)) for _ in range(2)]
        for t in threads:
            t.start()
        time.sleep(0.005)
        final = k.terminate()
        time.sleep(0.002)
        stop.set()
        for t in threads:
            t.join()
        assert not errors, errors
        assert final.lifecycle is Lifecycle.TERMINATED
        assert k.stats().lifecycle is Lifecycle.TERMINATED


def test_calls_now_detects_the_unavailable_clock_through_the_dialect_constant():
    """The loader refuses a source that uses rg.now() (the prelude maps it to NOW_UNAVAILABLE) and
    accepts one whose only mention is the prelude's definition."""
    from ringgen.codegen.dialect_opencl import NOW_UNAVAILABLE
    from ringgen.codegen.opencl import calls_now

    prelude = f"#define rg_now() {NOW_UNAVAILABLE}()\n"
    assert not calls_now(prelude + "void f(void) { x = 1; }\n")
    assert calls_now(prelude + "void f(void) { t = rg_now(); }\n")
    assert calls_now(f"void f(void) {{ t = {NOW_UNAVAILABLE}(); }}\n")
