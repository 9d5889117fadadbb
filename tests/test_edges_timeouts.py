"""Invalid timeouts (NaN, negative, not a number) are answered with a ValueError naming the call.

A NaN compares false with every clock reading, so before this check a wait bounded by one never
ended. Every public call that takes a timeout is driven here on the cpu backend (the check lives in
``ringgen.runtime.waiting`` and is shared by every backend).
"""

from __future__ import annotations

import asyncio
import math
import re

import numpy as np
import pytest

import ringgen as rg
from ringgen.runtime.waiting import check_timeout, deadline_after

import runtime_kernels as rk

BAD = [float("nan"), -1.0, -1e-9, "1", b"1", [1], True, 1j]


@pytest.mark.parametrize("bad", BAD, ids=repr)
def test_check_timeout_names_the_call_and_the_argument(bad):
    with pytest.raises(ValueError, match=r"^kernel k\.receive: timeout=") as info:
        check_timeout(bad, "kernel k.receive")
    assert repr(bad) in str(info.value)
    with pytest.raises(ValueError, match=r"^kernel k\.send: timeout="):
        deadline_after(bad, "kernel k.send")


def test_check_timeout_accepts_numbers_none_and_infinity():
    assert check_timeout(None) is None
    assert check_timeout(0) == 0.0
    assert check_timeout(np.float32(0.5)) == 0.5
    assert check_timeout(np.int64(2)) == 2.0
    assert check_timeout(math.inf) is None  # no limit, as None


@pytest.fixture(scope="module")
def kernel():
    k = rg.launch(rk.echo, backend="cpu")
    yield k
    k.terminate()


def _calls(k):
    msg = rk.Seq(seq=1, value=2)
    return {
        "send": lambda t: k.send(msg, timeout=t),
        "send_batch": lambda t: k.send_batch([msg, msg], timeout=t),
        "send_raw": lambda t: k.send_raw(rg.encode(msg), timeout=t),
        "send_raw_batch": lambda t: k.send_raw_batch(rg.encode(msg), timeout=t),
        "receive": lambda t: k.receive(timeout=t),
        "receive_batch": lambda t: k.receive_batch(timeout=t),
        "send_async": lambda t: asyncio.run(k.send_async(msg, timeout=t)),
        "receive_async": lambda t: asyncio.run(k.receive_async(timeout=t)),
    }


@pytest.mark.parametrize("bad", [float("nan"), -0.5, "soon"], ids=repr)
@pytest.mark.parametrize(
    "call",
    [
        "send",
        "send_batch",
        "send_raw",
        "send_raw_batch",
        "receive",
        "receive_batch",
        "send_async",
        "receive_async",
    ],
)
def test_every_call_rejects_an_invalid_timeout_at_once(kernel, call, bad):
    # a reply is waiting, so a call that checked only on its slow path would return instead
    kernel.send(rk.Seq(seq=7, value=1))
    kernel.receive_batch(timeout=1.0)
    kernel.send(rk.Seq(seq=8, value=1))
    with pytest.raises(ValueError, match=rf"^kernel echo\.{call}: timeout={re.escape(repr(bad))} "):
        _calls(kernel)[call](bad)


def test_terminate_rejects_nan_and_still_terminates_with_a_valid_one():
    k = rg.launch(rk.echo_small, backend="cpu")
    with pytest.raises(ValueError, match=r"^kernel echo_small\.terminate: timeout=nan is not"):
        k.terminate(timeout=float("nan"))
    assert k.terminate(timeout=math.inf).lifecycle.name == "TERMINATED"


@pytest.mark.gpu
@pytest.mark.timeout(600)
def test_cuda_fast_paths_reject_an_invalid_timeout_too():
    """CUDA's send/receive/receive_batch/receive_view have fast paths of their own before the
    base class's: each checks the timeout first (run on a GPU machine)."""
    pytest.importorskip("pycuda.driver")
    from ringgen.runtime.cuda import device as cuda_device

    try:
        cuda_device.device_info(0)
    except rg.BackendUnavailableError as exc:
        pytest.skip(str(exc))
    with rg.launch(rk.echo, backend="cuda") as k:
        k.send(rk.Seq(seq=1, value=1))
        assert k.receive(timeout=5.0) == rk.Seq(seq=1, value=2)  # echo adds 1
        k.send(rk.Seq(seq=2, value=1))
        calls = {
            "send": lambda: k.send(rk.Seq(seq=3, value=1), timeout=float("nan")),
            "receive": lambda: k.receive(timeout=float("nan")),
            "receive_batch": lambda: k.receive_batch(timeout=-1),
            "receive_view": lambda: k.receive_view(timeout=float("nan")),
            "abort": lambda: k.abort(timeout=float("nan")),
        }
        for call, fn in calls.items():
            with pytest.raises(ValueError, match=rf"^kernel echo\.{call}: timeout="):
                fn()
        assert k.receive(timeout=5.0).seq == 2
