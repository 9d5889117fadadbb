"""Backend ``c`` (issue 13, part 6): the generated C handlers compiled natively and run by a C worker
loop over host rings. Every example kernel agrees with the reference; a million messages arrive
without loss, duplication or reordering; terminate drains or stops now (also a handler that loops
forever); faults are counted by reason; 200 launch/terminate cycles leave no thread behind.

Every wait here is bounded (pytest-timeout, and explicit deadlines).
"""

from __future__ import annotations

import asyncio
import gc
import importlib
import sys
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import pytest

import ringgen as rg
from ringgen.errors import BackendUnavailableError, QueueClosedError
from ringgen.layout import layout_of
from ringgen.protocol import Lifecycle, Reason
from ringgen.runtime import available_backends
from ringgen.runtime.backends import AUTO_ORDER, BACKENDS

sys.path.insert(0, str(Path(__file__).resolve().parent))
import hostpolicy_kernels as hk  # noqa: E402
import runtime_kernels as rk  # noqa: E402
from test_opencl_differential import (  # noqa: E402
    EXAMPLES,
    N_MESSAGES,
    assert_agree,
    random_messages,
)

pytestmark = [
    pytest.mark.timeout(300),
    pytest.mark.skipif("c" not in available_backends(), reason="no C compiler"),
]

MODULES = [f"examples.{e}" for e in EXAMPLES] + [
    "runtime_kernels",
    "language_kernels",
    "hostpolicy_kernels",
]


@pytest.fixture(autouse=True, scope="module")
def _forget_packages_built_here():
    """rg.launch memoizes built packages per process (``ringgen.jit._BUILT``); forget the ones built
    here, so later tests that expect a launch to reach the cache still do."""
    from ringgen import jit

    before = dict(jit._BUILT)
    yield
    jit._BUILT.clear()
    jit._BUILT.update(before)


#: Modules whose every kernel takes or returns a bridged message (refused on c, checked above).
_BRIDGED_ONLY = (
    "examples.list_reduce",
    "examples.word_stats",
    "examples.orders",
    "language_kernels",
)


def _workers() -> list:
    return [t for t in threading.enumerate() if t.name.startswith("ringgen-c-")]


def _bridged(spec) -> bool:
    return any(cls is not None and layout_of(cls).is_bridged for cls in (spec.input, spec.output))


def _drain(k, timeout: float = 60.0) -> np.ndarray:
    """Terminate ``k`` (it drains) and take every reply, in order."""
    k.terminate(timeout=timeout)
    parts = [np.zeros(0, dtype=k.out_codec.dtype)] if k.out_codec else []
    while k.out_codec is not None:
        try:
            part = k.receive_batch(timeout=0.0)
        except QueueClosedError:
            break
        parts.append(np.asarray(part))
    if not parts:
        return np.zeros(0)
    out = np.zeros(sum(len(p) for p in parts), dtype=parts[0].dtype)
    at = 0
    for p in parts:
        out[at : at + len(p)] = p
        at += len(p)
    return out


def _kernels(module_name: str):
    module = importlib.import_module(module_name)
    return [
        v for v in vars(module).values() if getattr(v, "spec", None) is not None and callable(v)
    ]


@pytest.mark.parametrize("module_name", MODULES)
def test_every_example_kernel_matches_the_reference(module_name):
    """Same random messages through cpu (the reference) and c: outputs in the same order (one worker),
    floats within FLOAT_ULPS (+ - * / sqrt bit for bit), faults by reason and final state equal.
    Bridged kernels are refused at launch with BackendUnavailableError naming the kernel."""
    ran = 0
    for kernel in _kernels(module_name):
        spec = kernel.spec
        if _bridged(spec):
            with pytest.raises(BackendUnavailableError, match=rf"kernel {spec.name}: .*bridged"):
                rg.launch(kernel, backend="c")
            continue
        ref = rg.launch(kernel, backend="cpu", capacity=4096)
        dtype = ref.in_codec.dtype
        msgs = random_messages(
            dtype, N_MESSAGES, np.random.default_rng(zlib.crc32(spec.name.encode()))
        )
        if spec.name == "spin":  # n < 0 loops forever: keep the loops short and finite
            msgs["n"] = np.abs(msgs["n"]) % 100
        ref.send_batch(msgs, timeout=60)
        ref_out = _drain(ref)
        k = rg.launch(kernel, backend="c", capacity=4096)
        assert k.backend == "c" and k.lifecycle is Lifecycle.ACTIVE
        k.send_batch(msgs, timeout=60)
        got = _drain(k)
        what = f"{module_name}.{spec.name}"
        assert k.stats().processed == len(msgs), what
        if spec.output is not None:
            assert_agree(ref_out, got, ordered=True, what=what)
        assert k.stats().rejected == ref.stats().rejected, what
        assert k.stats().emitted == ref.stats().emitted, what
        if spec.state is not None:
            codec = k.codecs[spec.state.__name__]
            assert_agree(
                codec.to_array([ref.state()]),
                codec.to_array([k.state()]),
                ordered=True,
                what=f"{what} final state",
            )
        ran += 1
    assert ran or module_name in _BRIDGED_ONLY


def test_vector_add_is_bit_exact():
    """f32 + f32 rounds once on both sides: every output bit equals the reference's."""
    from examples.vector_add import vector_add

    rng = np.random.default_rng(7)
    with rg.launch(vector_add, backend="c") as k:
        msgs = np.zeros(10_000, dtype=k.in_codec.dtype)
        msgs["id"] = np.arange(len(msgs))
        msgs["a"] = rng.standard_normal(len(msgs)).astype(np.float32) * 1e3
        msgs["b"] = rng.standard_normal(len(msgs)).astype(np.float32) * 1e-3
        k.send_batch(msgs, timeout=30)
        out = k.receive_batch(max_n=len(msgs), timeout=30)
        while len(out) < len(msgs):
            out = np.concatenate([out, k.receive_batch(max_n=len(msgs), timeout=30)])
    np.testing.assert_array_equal(out["id"], msgs["id"])
    expect = (msgs["a"] + msgs["b"]).astype(np.float32)
    np.testing.assert_array_equal(out["sum"].view(np.uint32), expect.view(np.uint32))


def test_a_million_messages_in_order_without_loss_or_duplication():
    """An ordered kernel with state: 1,000,000 messages, each answered once, in order, and the
    kernel itself saw them in order (its out_of_order count stays 0)."""
    n, chunk = 1_000_000, 65_536
    deadline = time.monotonic() + 120
    with rg.launch(rk.in_order, backend="c", capacity=65_536) as k:
        seqs = []
        got = 0
        sent = 0
        while sent < n or got < n:
            assert time.monotonic() < deadline, f"{got} of {n} replies in 120 s"
            if sent < n:
                batch = np.zeros(min(chunk, n - sent), dtype=k.in_codec.dtype)
                batch["seq"] = np.arange(sent, sent + len(batch))
                sent += k.send_batch(batch, block=False)
            part = k.receive_batch(max_n=chunk, timeout=0.01 if sent < n else 1.0)
            got += len(part)
            seqs.append(part["seq"].copy())
            assert not np.any(part["value"]), "the kernel saw a message out of order"
        stats = k.stats()
        assert k.state().out_of_order == 0 and k.state().last_seq == n - 1
    allseq = np.concatenate(seqs)
    assert len(allseq) == n
    np.testing.assert_array_equal(allseq, np.arange(n))
    assert stats.processed == stats.emitted == n


def test_terminate_drains_everything_accepted():
    k = rg.launch(hk.spin, backend="c", capacity=1024)
    k.send_batch([hk.Job(seq=i, n=20_000) for i in range(1024)])
    final = k.terminate(timeout=60)
    assert final.lifecycle is Lifecycle.TERMINATED
    assert final.processed == final.sent == 1024 and final.unprocessed == 0
    got = []
    while True:
        try:
            got += k.receive_batch()["seq"].tolist()
        except QueueClosedError:
            break
    assert got == list(range(1024))
    assert not _workers()


def test_terminate_stop_now_leaves_the_queue():
    """drain=False: the worker stops within the grace period and counts what it left."""
    k = rg.launch(hk.spin, backend="c", capacity=1024)
    k.send_batch([hk.Job(seq=i, n=5_000_000) for i in range(1024)])
    t0 = time.monotonic()
    final = k.terminate(drain=False)
    assert time.monotonic() - t0 < 1.0
    assert final.lifecycle is Lifecycle.TERMINATED
    assert final.unprocessed > 0 and final.processed + final.unprocessed == 1024
    assert not _workers()


def test_a_handler_that_loops_forever_is_stopped():
    """spin with n < 0 never returns: terminate(drain=False) interrupts it through rg_stop (the
    handler's loop polls it), counted as Reason.STOPPED."""
    k = rg.launch(hk.spin, backend="c")
    k.send(hk.Job(seq=1, n=-1))
    deadline = time.monotonic() + 10
    while k.stats().processed == 0 and k.stats().heartbeat == 0:
        assert time.monotonic() < deadline
        time.sleep(0.001)
    time.sleep(0.05)  # well inside the endless loop
    t0 = time.monotonic()
    final = k.terminate(drain=False)
    assert time.monotonic() - t0 < 1.0
    assert final.lifecycle is Lifecycle.TERMINATED
    assert final.rejected.get("STOPPED") == 1
    assert not _workers()


def test_a_stalled_drain_gives_up_and_stops_the_worker():
    """A drain blocked behind an endless handler gives up after stall_timeout and stops it."""
    from ringgen.errors import KernelTimeoutError

    k = rg.launch(hk.spin, backend="c")
    k.send(hk.Job(seq=1, n=-1))
    with pytest.raises(KernelTimeoutError, match="stopped without draining"):
        k.terminate(stall_timeout=0.3, timeout=20)
    assert k.lifecycle in (Lifecycle.FAULTED, Lifecycle.TERMINATED)
    assert not _workers()


def test_faults_are_counted_by_reason():
    """Division by zero and an index out of range reject the message (no reply), counted apart."""
    with rg.launch(rk.divide, backend="c") as k:
        msgs = [
            rk.Div(seq=0, a=7, b=2, index=1, values=[1, 2, 3, 4]),
            rk.Div(seq=1, a=7, b=0, index=1, values=[1, 2, 3, 4]),
            rk.Div(seq=2, a=7, b=1, index=9, values=[1, 2, 3, 4]),
            rk.Div(seq=3, a=7, b=0, index=0, values=[1, 2, 3, 4]),
            rk.Div(seq=4, a=-7, b=2, index=3, values=[1, 2, 3, 4]),
        ]
        k.send_batch(msgs)
        replies = [k.receive(timeout=10), k.receive(timeout=10)]
        deadline = time.monotonic() + 10
        while k.stats().processed < 5:
            assert time.monotonic() < deadline
            time.sleep(0.001)
        stats = k.stats()
    assert [(r.seq, r.q, r.picked) for r in replies] == [(0, 3, 2), (4, -4, 4)]
    assert stats.rejected == {"DIVISION_BY_ZERO": 2, "INDEX_OUT_OF_RANGE": 1}
    assert int(Reason.DIVISION_BY_ZERO) == 9


def test_outbox_and_spill_when_nobody_reads():
    """fanout emits 8 per input into a 256-slot output queue: sending far more than fits blocks the
    worker on its full output queue, the host spills while it sends, and everything arrives."""
    with rg.launch(hk.fanout, backend="c", capacity=256) as k:
        k.send_batch([hk.Job(seq=i, n=8) for i in range(2000)], timeout=60)
        parts = []
        while sum(len(p) for p in parts) < 16_000:
            parts.append(k.receive_batch(timeout=10))
        assert k.stats().spilled > 0 and k.stats().output_stalls > 0
    out = np.concatenate(parts)
    np.testing.assert_array_equal(out["seq"], np.repeat(np.arange(2000), 8))
    np.testing.assert_array_equal(out["k"], np.tile(np.arange(8), 2000))


def test_state_starts_from_its_defaults_and_async_works():
    async def main():
        k = rg.launch(rk.in_order, backend="c")
        assert k.state().last_seq == -1
        await k.send_async(rk.Seq(seq=0, value=5))
        reply = await k.receive_async(timeout=10)
        k.terminate()
        return reply, k.state()

    reply, state = asyncio.run(main())
    assert reply.seq == 0 and reply.value == 0 and state.last_seq == 0


def test_launch_terminate_cycles_leave_no_thread():
    from examples.vector_add import AddRequest, vector_add

    for i in range(200):
        with rg.launch(vector_add, backend="c", capacity=64) as k:
            if i % 10 == 0:
                k.send(AddRequest(id=i, a=1.0, b=2.0))
                assert k.receive(timeout=10).sum == 3.0
    assert not _workers()


def test_a_dropped_handle_stops_its_worker():
    from examples.vector_add import vector_add

    k = rg.launch(vector_add, backend="c")
    assert len(_workers()) == 1
    del k
    gc.collect()
    deadline = time.monotonic() + 10
    while _workers():
        assert time.monotonic() < deadline, "the worker of a dropped handle kept running"
        time.sleep(0.01)


def test_registered_once_and_auto_prefers_it_to_cpu():
    assert BACKENDS["c"] == "ringgen.runtime.c_native"
    assert AUTO_ORDER.index("c") == AUTO_ORDER.index("cpu") - 1
    assert AUTO_ORDER.index("opencl") < AUTO_ORDER.index("c")


def test_no_compiler_means_unavailable(monkeypatch):
    from ringgen.runtime import c_native

    monkeypatch.setenv("CC", "/nonexistent/cc")
    with pytest.raises(BackendUnavailableError, match="no C compiler"):
        c_native.probe()


def test_the_runtime_imports_no_compiler_module():
    source = (Path(rg.__file__).parent / "runtime" / "c_native.py").read_text()
    for forbidden in ("codegen", "dsl", "ringgen.build", "..build"):
        assert f"from ..{forbidden}" not in source and f"import {forbidden}" not in source


def test_now_is_the_host_monotonic_clock():
    """rg.now() (which OpenCL cannot run) works on c: CLOCK_MONOTONIC ns, between the host's reads."""
    import c_backend_kernels as ck

    with rg.launch(ck.stamp, backend="c") as k:
        before = time.monotonic_ns()
        k.send_batch([ck.Tick(seq=i) for i in range(100)])
        out = k.receive_batch(max_n=100, timeout=10)
        while len(out) < 100:
            out = np.concatenate([out, k.receive_batch(max_n=100, timeout=10)])
        after = time.monotonic_ns()
    t = out["t"].astype(np.int64)
    assert np.all(np.diff(t) >= 0) and before <= t[0] and t[-1] <= after


def test_outbox_with_its_own_limit_matches_the_reference():
    """Outbox[Tick, 12]: the manifest's outbox_limit (12) sizes the room reserved per input; 13 emits
    is OUTBOX_OVERFLOW (nothing of that message is published), as on the reference."""
    import c_backend_kernels as ck

    jobs = [ck.Burst(seq=i, n=i % 14) for i in range(300)]
    results = {}
    for backend in ("cpu", "c"):
        k = rg.launch(ck.burst, backend=backend, capacity=256)
        k.send_batch(jobs, timeout=60)
        out = _drain(k)
        results[backend] = (out["seq"].tolist(), k.stats().rejected, k.stats().emitted)
    assert results["c"] == results["cpu"]
    seqs, rejected, emitted = results["c"]
    assert rejected == {"OUTBOX_OVERFLOW": sum(1 for j in jobs if j.n > 12)}
    assert emitted == sum(j.n for j in jobs if j.n <= 12) == len(seqs)
