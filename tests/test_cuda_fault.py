"""A kernel that dies on the device is seen (issue 10, ``pytest -m gpu``; never in CI).

Each case runs tests/cuda_fault_probe.py in a subprocess, because the fault loses that process's
CUDA context: ``ping`` is launched with the test-only fault hook (``debug_fault``) and dies on its
fourth message by an illegal address, a misaligned address or ``__trap()``. The handle must turn
FAULTED as soon as the driver reports the error (it adds at most one 10 ms poll; the driver itself
takes 10-380 ms on the H200, so the issue's "100 ms from the send" holds only for the fastest
reports), name the driver's error in ``stats().fault`` and in the
``KernelFaultError`` of ``send``, ``receive`` and ``terminate``; a launch while the dead handle is
live says the context was lost and who holds it; after terminate, the next launch in the same
process works (the context is replaced) or says in words that the context was lost.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.gpu, pytest.mark.timeout(600)]

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from cuda_fault_probe import AFTER  # noqa: E402  (the message on which the probe's kernel dies)

#: The driver's error for each kind of fault (the trap's name is whatever the driver says).
EXPECTED = {
    "illegal": "CUDA_ERROR_ILLEGAL_ADDRESS: an illegal memory access was encountered",
    "misaligned": "CUDA_ERROR_MISALIGNED_ADDRESS: misaligned address",
    "trap": "CUDA_ERROR_",
}


@pytest.fixture(scope="module")
def gpu():
    pytest.importorskip("pycuda.driver")
    from ringgen.errors import BackendUnavailableError
    from ringgen.runtime.cuda import device as cuda_device

    try:
        cuda_device.device_info(0)
    except BackendUnavailableError as exc:
        pytest.skip(str(exc))


def _probe(kind: str) -> dict:
    out = subprocess.run(
        [sys.executable, str(HERE / "cuda_fault_probe.py"), kind],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ),
    )
    lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, f"the probe printed no result (rc {out.returncode}):\n{out.stdout}\n{out.stderr}"
    result = json.loads(lines[-1][len("RESULT ") :])
    print(f"\n{kind}: {json.dumps(result, indent=1)}")  # the figures for the report (pytest -s)
    report = os.environ.get("RINGGEN_FAULT_REPORT")
    if report:
        Path(report).mkdir(parents=True, exist_ok=True)
        (Path(report) / f"fault-{kind}.json").write_text(json.dumps(result, indent=1))
    return result


@pytest.mark.parametrize("kind", ["misaligned", "illegal", "trap"])
def test_a_dead_kernel_is_faulted_named_and_the_next_launch_says_so(gpu, kind):
    r = _probe(kind)
    fault = r["fault"]
    assert r["lifecycle"] == "FAULTED", r
    assert fault and fault.startswith(EXPECTED[kind]), fault
    # The driver reports the error 10-380 ms after the faulting store on the H200 (measured:
    # docs/cuda.md), however often it is asked: that is the floor. The handle adds at most one
    # poll (base.DEVICE_FAULT_POLL_S, 10 ms) to it, and is never slower than a second.
    lag = r["fault_s"] - (r["driver_s"] if r["driver_s"] is not None else 0.0)
    assert lag < 0.050, f"FAULTED {lag * 1e3:.1f} ms after the driver reported the error"
    assert r["fault_s"] < 1.0, f"FAULTED {r['fault_s'] * 1e3:.1f} ms after the send"
    cls, message = r["send"]
    assert cls == "KernelFaultError" and fault in message, r["send"]
    # receive raises once no reply is left (KernelHandle.receive); a reply the device published
    # before the driver stopped the grid comes first (only the faulting message's own: an illegal
    # store does not stop its thread at once, seen on the H200 through the latency lane).
    cls, message = r["receive"]
    if cls == "ok":
        assert message.startswith(f"Ping(id={AFTER},"), r["receive"]
        cls, message = r["receive_again"]
    assert cls == "KernelFaultError" and fault in message, (r["receive"], r["receive_again"])
    cls, message = r["launch_while_live"]
    assert cls == "BackendUnavailableError", r["launch_while_live"]
    assert f"was lost ({fault}" in message and "kernel(s) ping launched in it" in message
    cls, value = r["terminate"]
    # base.KernelHandle.terminate raises KernelFaultError for a FAULTED kernel once m2-hostpolicy is
    # merged; until then it returns the final stats, which must say FAULTED and name the error.
    if cls == "ok":
        assert value == ["FAULTED", fault], value
    else:
        assert cls == "KernelFaultError" and fault in value, r["terminate"]
    assert r["terminate_s"] < 1.0, r["terminate_s"]
    cls, value = r["relaunch"]
    if cls == "ok":
        assert value == [7, 3.0, 2], value
        assert any("the context was lost" in line for line in r["log"]), r["log"]
    else:
        # NVIDIA documents these errors as needing a new process; seen so on the H200 (driver 580)
        assert cls == "BackendUnavailableError" and "context of device 0 was lost" in value, value
        assert "start a new process" in value
        assert r["relaunch_again"] == r["relaunch"]  # said again, at once: the refusal is kept
        assert r["relaunch_again_s"] < r["relaunch_s"] + 0.05
