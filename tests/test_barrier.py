"""Barriers (docs/barriers.md): the declaration, the intrinsic's checks, the generated code, and
bulk-synchronous steps across resident kernels on the cpu reference and the native c backend, with a
broken barrier (a party faulted or terminated) reported as BARRIER_BROKEN within a bound, never a hang.
"""

from __future__ import annotations

import shutil
import subprocess
import textwrap
import time

import pytest

import barrier_kernels as bk
import ringgen as rg
from ringgen.barriers import BARRIER_DTYPE, host_barrier
from ringgen.build import collect
from ringgen.codegen.cuda import emit as emit_cuda
from ringgen.codegen.c_target import emit as emit_c
from ringgen.codegen.metal import skipped_kernels
from ringgen.dsl import compile_program
from ringgen.errors import BuildError, HandlerError
from ringgen.protocol import CACHE_LINE, Reason, Status
from ringgen.types import Array, i32, u64

pytestmark = pytest.mark.timeout(120)

STEPS = 20

#: Every test uses barriers of its own: a broken barrier stays broken until reset().
lockstep = rg.barrier("t_lockstep", parties=2)


@rg.message
class Tick:
    step: i32
    index: i32  # an index into the state: out of range faults the handler before its wait


@rg.message
class Tock:
    step: i32
    count: i32
    arrived: u64
    left: u64


@rg.state
class Clock:
    counts: Array[i32, 2]


@rg.ring_kernel(ordered=True)
def lock_a(m: Tick, c: Clock) -> Tock:
    arrived = rg.now()
    c.counts[m.index] = c.counts[m.index] + 1
    rg.barrier_wait(lockstep)
    left = rg.now()
    return Tock(step=m.step, count=c.counts[m.index], arrived=arrived, left=left)


@rg.ring_kernel(ordered=True)
def lock_b(m: Tick, c: Clock) -> Tock:
    arrived = rg.now()
    c.counts[m.index] = c.counts[m.index] + 2
    rg.barrier_wait(lockstep)
    left = rg.now()
    return Tock(step=m.step, count=c.counts[m.index], arrived=arrived, left=left)


# ---------------------------------------------------------------- declaration and the language


def test_declaration_is_checked():
    with pytest.raises(BuildError, match="parties must be an int from 1"):
        rg.barrier("t_bad_parties", parties=0)
    with pytest.raises(BuildError, match="must be a letter"):
        rg.barrier("9lives", parties=2)
    assert rg.barrier("t_lockstep", parties=2) is lockstep
    with pytest.raises(BuildError, match="declared with parties=2"):
        rg.barrier("t_lockstep", parties=3)


def test_reason_and_layout():
    assert Reason.BARRIER_BROKEN == 13 and Status.FAULT_BARRIER == -13
    assert BARRIER_DTYPE.itemsize == 2 * CACHE_LINE
    assert issubclass(rg.BarrierBrokenError, rg.KernelFaultError)


def _compile_src(tmp_path, body: str):
    # a module name of its own per case: the importer refuses a name another file took
    src = tmp_path / f"barrier_case_{abs(hash(body))}.py"
    src.write_text(textwrap.dedent("""
            import ringgen as rg
            from ringgen.types import i32

            step = rg.barrier("t_src_step", parties=2)
            NOT_A_BARRIER = 3

            @rg.message
            class M:
                x: i32

            @rg.device
            def helper(x: i32) -> i32:
                rg.barrier_wait(step)
                return x

            @rg.ring_kernel
            def k(m: M) -> M:
            """) + textwrap.indent(textwrap.dedent(body), "    "))
    unit = collect(str(src))
    return compile_program(unit.kernels, (), source_file=str(src))


@pytest.mark.parametrize(
    "body, message",
    [
        (
            "if m.x > 0:\n    rg.barrier_wait(step)\nreturn m\n",
            "must be a statement at the top level of the handler",
        ),
        (
            "for i in range(3):\n    rg.barrier_wait(step)\nreturn m\n",
            "must be a statement at the top level of the handler",
        ),
        ("rg.barrier_wait(NOT_A_BARRIER)\nreturn m\n", "takes a barrier declared at module level"),
        ("rg.barrier_wait(undeclared)\nreturn m\n", "takes a barrier declared at module level"),
        ("rg.barrier_wait()\nreturn m\n", "takes one barrier"),
        ("y = rg.barrier_wait(step)\nreturn m\n", "returns nothing"),
        ("return M(x=helper(m.x))\n", "can only be called in a @rg.ring_kernel handler"),
    ],
)
def test_misuse_is_a_handler_error_at_the_call(tmp_path, body, message):
    with pytest.raises(HandlerError, match=message) as info:
        _compile_src(tmp_path, body)
    err = info.value
    assert err.file.endswith(".py") and err.line is not None and err.col is not None
    assert "barrier_wait" in err.source_line


def test_the_ir_names_the_barriers_and_the_body_breaks_them_on_a_fault():
    program = compile_program([lock_a.spec, lock_b.spec])
    assert [h.barriers for h in program.handlers] == [(("t_lockstep", 2),)] * 2
    from ringgen.codegen.body import emit_program

    text = emit_program(program)
    assert text.count("RG_BAR_STORAGE(rg_barrier_t_lockstep);") == 1
    arg = "RG_BAR_ARG(rg_barrier_t_lockstep)"
    assert f"*rg_fault = rg_barrier_wait_t_lockstep(rg_stop {arg});" in text
    assert "rg_barrier_break_t_lockstep(RG_BAR_ARG1(rg_barrier_t_lockstep));" in text
    assert "RG_FN int rg_steps_lock_a(" in text and "RG_FN int rg_handle_lock_a(" in text


# ---------------------------------------------------------------- generated code compiles


def _unit():
    return collect(__file__)


def test_c_source_compiles(tmp_path):
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        pytest.skip("no C compiler")
    unit = _unit()
    files = emit_c(unit)
    ((name, text),) = files.items()
    from ringgen.codegen.header import render_header

    (tmp_path / f"{unit.name}_types.h").write_text(render_header(unit))
    (tmp_path / name).write_text(text)
    proc = subprocess.run(
        [cc, "-std=c99", "-D_POSIX_C_SOURCE=199309L", "-Wall", "-Werror", "-fsyntax-only", name],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr


def test_cuda_source_compiles_with_nvcc(tmp_path):
    from ringgen.runtime.cuda.build import find_nvcc

    nvcc = find_nvcc()
    if nvcc is None:
        pytest.skip("nvcc is not installed")
    unit = _unit()
    ((name, text),) = emit_cuda(unit).items()
    (tmp_path / name).write_text(text)
    proc = subprocess.run(
        [str(nvcc), "-arch=sm_90", "-cubin", "-o", "k.cubin", name],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]


def test_opencl_source_builds_on_pocl():
    """The barrier storage is an argument: the persistent entry point of a waiting kernel takes one
    more (the manifest says which), the relaunch one the step's scratch and the phase instead
    (docs/barriers.md, "OpenCL relaunch: a launch per phase"); OpenCL 1.2 builds the relaunch ones.
    """
    cl = pytest.importorskip("pyopencl")
    from ringgen.codegen.opencl import ENTRY_ARGS, STEP_ARGS, abi, emit as emit_opencl

    try:
        devices = [d for p in cl.get_platforms() for d in p.get_devices()]
    except cl.Error:
        devices = []
    if not devices:
        pytest.skip("no OpenCL device")
    ctx = cl.Context(devices[:1])
    ((name, text),) = emit_opencl(collect(bk.__file__)).items()
    entry = abi("turn_a", text)
    assert entry["barriers"] == ["bk_turns"]
    assert entry["entry_points"]["persistent"]["args"] == ENTRY_ARGS["persistent"] + 1
    assert entry["entry_points"]["relaunch"]["args"] == ENTRY_ARGS["relaunch"] + STEP_ARGS
    prg = cl.Program(ctx, text).build(options=["-cl-std=CL3.0"])
    args = {k.function_name: k.num_args for k in prg.all_kernels()}
    assert args["rg_turn_a_persistent"] == ENTRY_ARGS["persistent"] + 1
    assert args["rg_turn_a_relaunch"] == ENTRY_ARGS["relaunch"] + STEP_ARGS
    prg = cl.Program(ctx, text).build(options=["-cl-std=CL1.2"])
    assert "rg_turn_a_relaunch" in [k.function_name for k in prg.all_kernels()]


def test_opencl_relaunch_mode_refuses_what_it_cannot_keep():
    """Relaunch mode runs a waiting kernel in steps of its own messages, a launch per phase
    (tests/test_opencl_relaunch_barrier.py); it refuses, at launch, naming the kernel and the
    barrier, a kernel whose barriers disagree on how many messages a step is."""
    pytest.importorskip("pyopencl")
    from ringgen.runtime.opencl.build import select_device

    try:
        select_device(None)
    except rg.BackendUnavailableError as exc:
        pytest.skip(str(exc))
    import barrier_kernels_metal as bm

    with pytest.raises(
        rg.BackendUnavailableError,
        match="two_sizes waits on barrier 'mb_pair_of_two'.*barriers of different sizes",
    ):
        rg.launch(bm.two_sizes, backend="opencl", mode="relaunch")


def test_metal_emits_barrier_kernels_split_into_phases():
    # (Metal keeps a barrier at a dispatch boundary: tests/test_metal_barrier.py runs them)
    reasons = skipped_kernels(_unit())
    assert "lock_a" not in reasons and "lock_b" not in reasons


def test_opencl_a_barrier_kernel_runs_one_work_item_per_group():
    """PoCL runs a group's work-items one after the other, so two calls of one group could never
    meet: a waiting kernel gets group_size 1 by default and refuses more, naming the barrier."""
    pytest.importorskip("pyopencl")
    from ringgen.runtime.opencl.build import select_device

    try:
        info = select_device(None)
    except rg.BackendUnavailableError as exc:
        pytest.skip(str(exc))
    if not info.persistent:
        pytest.skip(f"{info.label} cannot run persistent kernels")
    with pytest.raises(ValueError, match="spread_a waits on barrier 'bk_spread'.*group_size=4"):
        rg.launch(bk.spread_a, backend="opencl", group_size=4)
    bk.spread.reset()
    with rg.launch(bk.spread_a, backend="opencl") as k:
        assert k.group_size == 1


# ---------------------------------------------------------------- running on host backends


def _receive_all(handle, n, timeout=30.0):
    out = []
    deadline = time.monotonic() + timeout
    while len(out) < n and time.monotonic() < deadline:
        out.extend(handle.receive_batch(n - len(out), timeout=0.5))
    return out


@pytest.mark.parametrize("backend", ["cpu", "c"])
def test_lockstep_steps_agree_with_the_reference(backend):
    host_barrier(lockstep).reset()
    try:
        a = rg.launch(lock_a, backend=backend)
    except rg.BackendUnavailableError as exc:
        pytest.skip(str(exc))
    b = rg.launch(lock_b, backend=backend)
    with a, b:
        for s in range(STEPS):
            a.send(Tick(step=s, index=0))
            b.send(Tick(step=s, index=1))
        ra, rb = _receive_all(a, STEPS), _receive_all(b, STEPS)
    assert [int(r["count"]) for r in ra] == [s + 1 for s in range(STEPS)]
    assert [int(r["count"]) for r in rb] == [2 * (s + 1) for s in range(STEPS)]
    # The barrier's property: no party leaves step s before every party has arrived at it.
    for x, y in zip(ra, rb):
        assert max(x["arrived"], y["arrived"]) <= min(x["left"], y["left"]), (x, y)


#: Backends where kernels of one process meet at a barrier (OpenCL: persistent mode, e.g. PoCL).
BACKENDS = ["cpu", "c", "opencl"]


def _launch_pair(ka, kb, backend):
    try:
        a = rg.launch(ka, backend=backend)
    except rg.BackendUnavailableError as exc:
        pytest.skip(str(exc))
    return a, rg.launch(kb, backend=backend)


def _wait_for(pred, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.02)
    return pred()


@pytest.mark.parametrize("backend", BACKENDS)
def test_no_party_passes_before_every_party_arrives(backend):
    """Each step, one party arrives alone first and must not pass until the other arrives; the
    replies then agree with the reference (each kernel's own count, step by step)."""
    host_barrier(bk.turns).reset()
    a, b = _launch_pair(bk.turn_a, bk.turn_b, backend)
    with a, b:
        for s in range(6):
            first, second = (a, b) if s % 2 == 0 else (b, a)
            first.send(bk.Go(step=s, index=0))
            assert first.receive_batch(1, timeout=0.3).shape[0] == 0, f"step {s}: passed alone"
            second.send(bk.Go(step=s, index=0))
            ra, rb = _receive_all(a, 1), _receive_all(b, 1)
            assert len(ra) == 1 and len(rb) == 1, f"step {s}: no reply"
            assert (int(ra[0]["step"]), int(ra[0]["count"])) == (s, s + 1)
            assert (int(rb[0]["step"]), int(rb[0]["count"])) == (s, 3 * (s + 1))


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_faulting_party_breaks_the_barrier(backend):
    host_barrier(bk.faulting).reset()
    a, b = _launch_pair(bk.fault_a, bk.fault_b, backend)
    broken = lambda n: b.stats().rejected.get("BARRIER_BROKEN", 0) >= n  # noqa: E731
    with a, b:
        a.send(bk.Go(step=0, index=0))
        b.send(bk.Go(step=0, index=0))
        assert len(_receive_all(a, 1)) == 1 and len(_receive_all(b, 1)) == 1
        b.send(bk.Go(step=1, index=0))  # b waits ...
        time.sleep(0.2)
        t0 = time.monotonic()
        a.send(bk.Go(step=1, index=7))  # ... and a faults (index 7 of 2) before its wait
        assert _wait_for(lambda: broken(1)), b.stats()
        assert time.monotonic() - t0 < 5.0
        assert _wait_for(lambda: a.stats().rejected.get("INDEX_OUT_OF_RANGE", 0) == 1)
        # receive reports it (once), instead of only timing out
        with pytest.raises(rg.BarrierBrokenError, match="1 message.* broken barrier"):
            b.receive(timeout=0.2)
        with pytest.raises(rg.KernelTimeoutError):
            b.receive(timeout=0.2)
        # Broken stays broken: the next step faults at once.
        b.send(bk.Go(step=2, index=0))
        assert _wait_for(lambda: broken(2)), b.stats()


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_terminated_party_breaks_the_barrier(backend):
    host_barrier(bk.leaving).reset()
    a, b = _launch_pair(bk.leave_a, bk.leave_b, backend)
    with b:
        a.terminate(timeout=10.0)
        t0 = time.monotonic()
        b.send(bk.Go(step=0, index=0))
        assert _wait_for(lambda: b.stats().rejected.get("BARRIER_BROKEN", 0) == 1), b.stats()
        assert time.monotonic() - t0 < 5.0


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_party_stopped_while_waiting_breaks_the_barrier(backend):
    """terminate(drain=False) reaches a party waiting alone: it leaves, the barrier is broken (the
    host sees it, wherever the backend keeps the words), the other party's next wait faults at once,
    and reset() re-arms it."""
    bk.stopping.reset()
    a, b = _launch_pair(bk.stop_a, bk.stop_b, backend)
    with b:
        a.send(bk.Go(step=0, index=0))
        time.sleep(0.3)  # a waits alone
        assert bk.stopping.broken is None
        t0 = time.monotonic()
        a.terminate(drain=False, timeout=10.0)
        assert time.monotonic() - t0 < 10.0
        assert _wait_for(lambda: bk.stopping.broken is not None), "not broken"
        b.send(bk.Go(step=0, index=0))
        assert _wait_for(lambda: b.stats().rejected.get("BARRIER_BROKEN", 0) == 1), b.stats()
    bk.stopping.reset()
    assert bk.stopping.broken is None


# ---------------------------------------------------------------- CUDA: calls of one resident grid


@pytest.fixture(scope="module")
def cuda_ok():
    pytest.importorskip("pycuda.driver")
    from ringgen.runtime.cuda import device as cuda_device

    try:
        cuda_device.device_info(0)
    except rg.BackendUnavailableError as exc:
        pytest.skip(str(exc))


@pytest.mark.gpu
def test_cuda_calls_of_one_grid_meet_at_the_barrier(cuda_ok):
    """Four messages published at once are four concurrent handler calls of one grid: each adds its
    part, waits, and then sees the whole (every part), on the device."""
    import barrier_cuda_kernels as bc

    with rg.launch(bc.gather, backend="cuda") as k:
        k.send_batch(_parts(bc, [0, 1, 2, 3]))
        got = _receive_all(k, 4, timeout=20.0)
        assert sorted(int(r["index"]) for r in got) == [0, 1, 2, 3]
        assert [int(r["total"]) for r in got] == [1 + 10 + 100 + 1000] * 4


@pytest.mark.gpu
def test_cuda_a_faulting_call_breaks_the_barrier(cuda_ok):
    import barrier_cuda_kernels as bc

    with rg.launch(bc.gather_f, backend="cuda") as k:
        t0 = time.monotonic()
        k.send_batch(_parts(bc, [0, 1, 7, 3]))  # index 7 of 4 faults before its wait
        rejected = lambda: k.stats().rejected  # noqa: E731
        assert _wait_for(lambda: sum(rejected().values()) == 4, timeout=20.0), rejected()
        assert rejected() == {"BARRIER_BROKEN": 3, "INDEX_OUT_OF_RANGE": 1}
        assert time.monotonic() - t0 < 20.0


def _parts(bc, indices):
    import numpy as np

    arr = np.zeros(len(indices), dtype=rg.dtype_of(bc.Part))
    arr["index"] = indices
    arr["value"] = [10**i for i in range(len(indices))]
    return arr
