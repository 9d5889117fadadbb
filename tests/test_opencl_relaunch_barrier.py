"""Barriers in OpenCL relaunch mode (docs/barriers.md, "OpenCL relaunch: a launch per phase"), on PoCL.

A kernel that waits is cut at each wait into phases (``ringgen.codegen.body_phases``, as on Metal); a
step is ``parties`` messages of one kernel, launched once per phase, in order, on one in-order queue,
so no message starts phase j+1 before every message of its step has finished phase j. These tests
launch the kernels of tests/barrier_kernels_metal.py and tests/barrier_kernels.py with
``mode="relaunch"`` and compare each step with the reference: the Python handler run on ``parties``
threads that share the state and meet at the host barrier (``test_metal_barrier._reference``).
Every wait for a reply is bounded (a deadline per receive loop, pytest-timeout per test).
"""

from __future__ import annotations

import json
import time
from collections import Counter

import numpy as np
import pytest

import barrier_kernels as bk
import barrier_kernels_metal as bm
import barrier_kernels_relaunch as bkr
import ringgen as rg
from ringgen.build import collect
from ringgen.codegen.body import emit_program
from ringgen.codegen.opencl import ENTRY_ARGS, STEP_ARGS, abi, emit
from ringgen.codegen.writer import write_unit
from ringgen.dsl import compile_program
from ringgen.layout import layout_of
from ringgen.protocol import Lifecycle
from ringgen.reference import records
from test_metal_barrier import _reference, _row

pytestmark = [pytest.mark.opencl, pytest.mark.timeout(300)]

#: How long a test waits for the replies it expects before it calls the kernel hung.
REPLY_TIMEOUT_S = 30.0


@pytest.fixture(scope="module", autouse=True)
def _pocl():
    """Skip the module without PyOpenCL or an OpenCL device."""
    pytest.importorskip("pyopencl")
    from ringgen.runtime.opencl.build import select_device

    try:
        select_device(None)
    except rg.BackendUnavailableError as exc:
        pytest.skip(str(exc))


def _launch(kernel, **options):
    return rg.launch(kernel, backend="opencl", mode="relaunch", **options)


def _receive(k, n, timeout=REPLY_TIMEOUT_S):
    """Exactly ``n`` replies of ``k`` (a structured row each), or fail after ``timeout`` s."""
    out, deadline = [], time.monotonic() + timeout
    while len(out) < n:
        assert time.monotonic() < deadline, f"only {len(out)} of {n} replies arrived"
        out.extend(k.receive_batch(n - len(out), timeout=0.5))
    return out


def _parts(spec, pairs):
    arr = np.zeros(len(pairs), dtype=layout_of(spec.input).dtype)
    arr["index"] = [p[0] for p in pairs]
    arr["value"] = [p[1] for p in pairs]
    return arr


def _run_steps(kernel, steps, outputs_per_step=None, **options):
    """Send every step's messages at once, receive the replies; returns (replies cut into steps
    as Counters of tuples, stats after terminate, final state)."""
    spec = kernel.spec
    sizes = outputs_per_step or [len(s) for s in steps]
    with _launch(kernel, **options) as k:
        k.send_batch(_parts(spec, [p for s in steps for p in s]))
        rows = [_row(r) for r in _receive(k, sum(sizes))]
        stats = k.terminate()
        state = k.state()
    out, at = [], 0
    for n in sizes:
        out.append(Counter(rows[at : at + n]))
        at += n
    return out, stats, state


def _same_state(state, ref_state):
    for name in ref_state.dtype.names:
        assert np.asarray(getattr(state, name)).tolist() == ref_state[name].tolist(), name


# ---------------------------------------------------------------- what the target emits


def test_the_relaunch_entry_point_takes_the_step_and_the_phase():
    """A waiting kernel's relaunch entry point takes two more arguments, and the manifest says how
    many phases, parties and scratch bytes; a kernel whose barriers disagree on their parties keeps
    the plain entry point and the reason it is refused."""
    unit = collect(bm.__file__)
    ((_, text),) = emit(unit).items()
    keep = abi("keep", text)
    assert keep["steps"]["parties"] == 4 and keep["steps"]["phases"] == 3
    assert keep["steps"]["scratch_bytes"] > 0
    assert keep["entry_points"]["relaunch"]["args"] == ENTRY_ARGS["relaunch"] + STEP_ARGS
    assert keep["entry_points"]["persistent"]["args"] == ENTRY_ARGS["persistent"] + 1
    two = abi("two_sizes", text)
    assert "steps" not in two and "barriers of different sizes" in two["relaunch_refused"]
    assert two["entry_points"]["relaunch"]["args"] == ENTRY_ARGS["relaunch"]
    # the persistent entry point keeps calling the unsplit handler, which spins at its waits
    assert "RG_FN int rg_handle_keep(" in text and "RG_FN int rg_phase2_keep(" in text
    assert "rg_barrier_wait(" in text


def test_other_targets_keep_their_handler_text():
    """The phases are printed for OpenCL only: the shared printer's text has none."""
    unit = collect(bm.__file__)
    program = compile_program(unit.kernels, unit.device_functions, unit.source_file)
    assert "rg_phase0_" not in emit_program(program)


def test_the_manifest_records_the_steps(tmp_path):
    out = write_unit(collect(bk.__file__), tmp_path)
    manifest = json.loads((out / "manifest.json").read_text())
    kernels = {k["name"]: k["abi"]["opencl"] for k in manifest["kernels"]}
    assert kernels["turn_a"]["steps"] == {
        "parties": 2,
        "phases": 2,
        "scratch_bytes": kernels["turn_a"]["steps"]["scratch_bytes"],
    }
    assert kernels["turn_a"]["entry_points"]["relaunch"]["args"] == 9


# ---------------------------------------------------------------- steps agree with the reference


def test_gather_steps_agree_with_the_reference():
    """Four messages add their part into the shared state, wait, and each reads the whole: every
    reply of a step sees every part of it, step after step."""
    steps = [[(i, (s + 1) * 10**i) for i in range(4)] for s in range(5)]
    got, stats, state = _run_steps(bm.gather, steps)
    spec = bm.gather.spec
    ref_out, ref_faults, ref_state = _reference(
        spec, [_parts(spec, s) for s in steps], bm.gathering
    )
    assert got == ref_out
    assert not ref_faults and not stats.rejected
    _same_state(state, ref_state)
    assert stats.processed == 20 and stats.lifecycle is Lifecycle.TERMINATED


def test_two_waits_keep_locals_of_every_type():
    """i32, i64, f32, u8, an Array and a message local live across one wait and two."""
    steps = [[(i, 7 * s + i - 3) for i in range(4)] for s in range(3)]
    got, stats, state = _run_steps(bm.keep, steps)
    spec = bm.keep.spec
    ref_out, ref_faults, ref_state = _reference(spec, [_parts(spec, s) for s in steps], bm.keeping)
    assert got == ref_out
    assert not ref_faults and not stats.rejected
    _same_state(state, ref_state)


def test_an_f64_local_lives_across_the_wait():
    """OpenCL has doubles (Metal has none, and skips this kernel). The kernel has no state, which
    the threaded reference needs, so the replies are checked against the handler's arithmetic."""
    steps = [[(i, 2 * s + i + 1) for i in range(4)] for s in range(2)]
    got, stats, _ = _run_steps(bm.keep_f64, steps)
    assert got == [Counter((i, int(v * 0.5)) for i, v in step) for step in steps]
    assert not stats.rejected


def test_an_outbox_keeps_its_emits_across_the_wait():
    """Emits before the wait are kept with the message and published with those after it."""
    steps = [[(0, 3), (1, 4)], [(2, 5), (3, 6)]]
    got, stats, state = _run_steps(bm.emit_around, steps, outputs_per_step=[4, 4])
    spec = bm.emit_around.spec
    ref_out, _, ref_state = _reference(spec, [_parts(spec, s) for s in steps], bm.emitting)
    assert got == ref_out
    assert got[0] >= Counter({(0, -3): 1, (0, 7): 1})
    _same_state(state, ref_state)


def test_ordered_kernels_agree_with_the_reference():
    """ordered=True: the one work-item runs each phase over the step's messages in order."""
    steps = [[(i, s + i) for i in range(3)] for s in range(4)]
    got, _, state = _run_steps(bm.in_order, steps)
    spec = bm.in_order.spec
    ref_out, _, ref_state = _reference(spec, [_parts(spec, s) for s in steps], bm.ordering)
    assert got == ref_out
    _same_state(state, ref_state)


def test_the_kernels_of_the_barrier_tests_run_in_steps_of_their_own():
    """tests/barrier_kernels.py's turn_a (ordered, a plain write to state): in relaunch mode a
    step is two of its own messages, the parties of one kernel (across kernels: persistent mode)."""
    spec = bk.turn_a.spec
    pairs = [(s, i) for s in range(6) for i in range(2)]
    msgs = np.zeros(12, dtype=layout_of(spec.input).dtype)
    msgs["step"] = [p[0] for p in pairs]
    msgs["index"] = [p[1] for p in pairs]
    with _launch(bk.turn_a) as k:
        k.send_batch(msgs)
        rows = [_row(r) for r in _receive(k, 12)]
        k.terminate()
        state = k.state()
    ref_out, _, ref_state = _reference(spec, [msgs[2 * s : 2 * s + 2] for s in range(6)], bk.turns)
    assert [Counter(rows[2 * s : 2 * s + 2]) for s in range(6)] == ref_out
    assert rows[:4] == [(0, 1), (0, 1), (1, 2), (1, 2)]
    _same_state(state, ref_state)


def test_bridged_messages_are_decoded_in_every_phase():
    """A bridged input is decoded again in each phase; a message local holding a Str lives across
    the wait, and a device function runs on both sides of it."""
    words = [(0, "ab"), (1, "héllo"), (2, ""), (3, "ring kernels!")]
    msgs = [bm.Note(index=i, text=t) for i, t in words]
    with _launch(bm.talk) as k:
        for m in msgs:
            k.send(m)
        deadline = time.monotonic() + REPLY_TIMEOUT_S
        got = []
        while len(got) < 4:
            assert time.monotonic() < deadline, f"only {len(got)} of 4 replies arrived"
            got.extend(k.receive_batch(4 - len(got), timeout=0.5))
        stats = k.terminate()
        state = k.state()
    rows = [records.to_numpy_message(m).array[0] for m in msgs]
    ref_out, _, ref_state = _reference(bm.talk.spec, [rows[:2], rows[2:]], bm.talking)
    ref = sorted((row[0], row[2]) for step in ref_out for row in step)  # (index, total)
    assert sorted((int(g.index), int(g.total)) for g in got) == ref
    assert sorted((int(g.index), str(g.text)) for g in got) == sorted(words)
    assert not stats.rejected
    _same_state(state, ref_state)


def test_a_barrier_of_one_party_is_a_step_per_message():
    pairs = [(i % 4, i + 1) for i in range(9)]
    with _launch(bm.lone) as k:
        k.send_batch(_parts(bm.lone.spec, pairs))
        totals = [int(r["total"]) for r in _receive(k, 9)]
        stats = k.terminate()
    assert totals == list(np.cumsum([v for _, v in pairs]))  # in order: one message a step
    assert stats.launches == 2 * 9  # a launch per phase, two phases per step


# ---------------------------------------------------------------- returning or faulting early


def test_a_fault_before_the_wait_breaks_its_step_like_the_reference():
    """A message that faults before the wait can never arrive: the others of its step leave the
    wait with BARRIER_BROKEN, as on every backend; the next step is whole again."""
    steps = [[(0, 1), (1, 10), (7, 100), (3, 1000)], [(0, 1), (1, 10), (2, 100), (3, 1000)]]
    got, stats, state = _run_steps(bm.gather_f, steps, outputs_per_step=[0, 4])
    spec = bm.gather_f.spec
    ref_out, ref_faults, ref_state = _reference(spec, [_parts(spec, s) for s in steps], bm.breaking)
    assert stats.rejected == {"BARRIER_BROKEN": 3, "INDEX_OUT_OF_RANGE": 1}
    assert dict(ref_faults) == stats.rejected
    assert got == ref_out
    _same_state(state, ref_state)


def test_a_message_that_returns_before_the_wait_does_not_block_its_step():
    """A message that returns (a reply, or None) before the wait gives the unsplit handler's reply
    and has arrived for the others, who pass and see every write of the step. (The reference cannot
    judge this: there such a call never arrives and its party waits for another.)"""
    pairs = [(0, 5), (1, -7), (2, 0), (3, 9), (0, 1), (1, 2)]  # three steps of two
    got, stats, _ = _run_steps(bm.early_out, [pairs], outputs_per_step=[5])
    rows = list(got[0].elements())
    assert Counter(rows) == Counter(
        {(1, -1): 1, (0, 5 - 7): 1, (3, 5 - 7 + 0 + 9): 1, (0, 10): 1, (1, 10): 1}
    )
    assert not stats.rejected and stats.processed == 6


# ---------------------------------------------------------------- a step that is not whole


def test_fewer_messages_than_parties_are_held_until_their_step_is_whole():
    """Six messages for a barrier of four: one step runs, the other two are held (none passes
    before all parties arrived); two more make their step whole."""
    spec = bm.gather.spec
    with _launch(bm.gather) as k:
        k.send_batch(_parts(spec, [(i % 4, 1) for i in range(6)]))
        assert [int(r["total"]) for r in _receive(k, 4)] == [4] * 4
        assert len(k.receive_batch(4, timeout=1.0)) == 0
        assert k.stats().processed == 4
        k.send_batch(_parts(spec, [(2, 1), (3, 1)]))
        assert [int(r["total"]) for r in _receive(k, 4)] == [8] * 4
        stats = k.terminate()
    assert stats.processed == 8 and not stats.rejected


def test_a_terminate_breaks_a_step_that_can_never_be_whole():
    """With a terminate request, the two messages that can never make a step of four run as a
    short step: each leaves the wait with BARRIER_BROKEN, and the kernel terminates."""
    spec = bm.gather.spec
    with _launch(bm.gather) as k:
        k.send_batch(_parts(spec, [(i % 4, 1) for i in range(6)]))
        assert len(_receive(k, 4)) == 4
        stats = k.terminate(timeout=REPLY_TIMEOUT_S)
        state = k.state()
    assert stats.lifecycle is Lifecycle.TERMINATED
    assert stats.rejected == {"BARRIER_BROKEN": 2} and stats.processed == 6
    assert np.asarray(state.v).tolist() == [2, 2, 1, 1]  # the short step's writes before the wait


def test_a_step_waits_for_room_for_its_replies():
    """Replies waiting on the host hold the next step back whole: with capacity 8, two steps of
    four fill the replies, the third runs once the host takes them."""
    spec = bm.gather_small.spec
    steps = [[(i, s + 1) for i in range(4)] for s in range(4)]
    with _launch(bm.gather_small) as k:
        k.send_batch(_parts(spec, [p for st in steps[:2] for p in st]))
        deadline = time.monotonic() + REPLY_TIMEOUT_S
        while k.stats().processed < 8:
            assert time.monotonic() < deadline, "the first two steps did not run"
            time.sleep(0.02)
        k.send_batch(_parts(spec, [p for st in steps[2:] for p in st]))
        time.sleep(0.3)
        assert k.stats().processed == 8  # no room for a third step's replies
        totals = [int(r["total"]) for r in _receive(k, 16)]
        stats = k.terminate()
    assert totals == [4] * 4 + [12] * 4 + [24] * 4 + [40] * 4
    assert stats.processed == 16 and not stats.rejected


# ---------------------------------------------------------------- what relaunch mode still refuses


def test_barriers_of_different_sizes_are_refused():
    with pytest.raises(rg.BackendUnavailableError, match="two_sizes waits on barrier.*different"):
        _launch(bm.two_sizes)


def test_a_step_larger_than_the_queue_is_refused():
    with pytest.raises(rg.BackendUnavailableError, match="too_big .*64 parties.*capacity 16"):
        _launch(bm.too_big)
    with pytest.raises(rg.BackendUnavailableError, match="capacity >= 4"):
        _launch(bm.gather, capacity=2)


# ---------------------------------------------------------------- stopping a step in flight


def test_a_stop_now_request_ends_a_step_in_flight():
    """One message of a step of two spins before the wait until the host asks to stop now; it
    leaves with STOPPED, which breaks the step, and the other, at the wait, sees the stop word in
    the next phase and leaves with STOPPED too: the kernel terminates instead of hanging."""
    with _launch(bkr.stall) as k:
        k.send(bkr.Ask(index=0, spin=0))
        k.send(bkr.Ask(index=1, spin=1))
        # the step is launched at once, and its phase 0 cannot finish by itself
        assert len(k.receive_batch(2, timeout=0.5)) == 0
        stats = k.terminate(timeout=REPLY_TIMEOUT_S, drain=False)
    assert stats.lifecycle is Lifecycle.TERMINATED
    assert stats.rejected == {"STOPPED": 2} and stats.processed == 2


@pytest.mark.parametrize("cl_std", ["CL1.2", "CL3.0"])
def test_steps_run_with_either_opencl_c_version(cl_std):
    """OpenCL 1.2 (NVIDIA's OpenCL, whose relaunch mode is the one barriers there use) builds and
    runs the phases with its legacy atomics."""
    steps = [[(i, (s + 1) * 10**i) for i in range(4)] for s in range(2)]
    got, stats, _ = _run_steps(bm.gather, steps, cl_std=cl_std)
    assert got == [Counter((i, 1111 * (s + 1) * (s + 2) // 2) for i in range(4)) for s in range(2)]
    assert not stats.rejected
