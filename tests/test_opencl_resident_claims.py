"""The resident OpenCL loop's claims: up to RG_<k>_LANE messages per work-item, outputs written straight
into their slots by a lone group (direct outputs) and the holes of messages without output closed in
input order, claims clamped to the room in the output queue, and the staged path (two groups, or no
room) unchanged. Batches span many claims and wrap the rings."""

from __future__ import annotations

import time

import numpy as np
import pytest

from test_opencl_support import build_package, device_params, open_kernel

pytestmark = [pytest.mark.opencl, pytest.mark.timeout(120)]

modes = pytest.mark.parametrize("device,mode", device_params(("persistent", "persistent-2groups")))


@pytest.fixture(scope="module")
def kernels(tmp_path_factory):
    return build_package(tmp_path_factory.mktemp("claims"), "tests/runtime_kernels.py")


def _seqs(codecs, name: str, n: int, start: int = 0) -> np.ndarray:
    arr = np.zeros(n, dtype=codecs[name].dtype)
    arr["seq"] = np.arange(start, start + n)
    return arr


def _receive_n(k, n: int, timeout: float = 20.0) -> np.ndarray:
    got = k.receive_batch(n, timeout=timeout, min_n=n)  # the whole batch in one call
    assert len(got) == n, f"only {len(got)} of {n} replies arrived"
    return got


def _wait_processed(k, n: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while k.stats().processed < n:
        assert time.monotonic() < deadline, f"processed {k.stats().processed} of {n}"
        time.sleep(0.001)


@modes
def test_optional_outputs_close_their_holes_in_order(kernels, device, mode):
    """Odd messages produce nothing: the even ones come back in input order across many claims."""
    pkg, unit, codecs = kernels
    n = 5000  # several claims of up to group_size * lane messages, wrapping the 1024-slot rings
    with open_kernel(pkg, unit, codecs, device, mode, kernel="evens", capacity=1024) as k:
        arr = _seqs(codecs, "Seq", n)
        arr["value"] = np.arange(n) * 3
        k.send_batch(arr, timeout=20.0)
        got = _receive_n(k, n // 2)
        assert got["seq"].tolist() == list(range(0, n, 2))
        assert got["value"].tolist() == [3 * s for s in range(0, n, 2)]
        _wait_processed(k, n)
        assert k.receive_batch(timeout=0.05).size == 0
        stats = k.stats()
    assert stats.processed == n


@modes
def test_faults_leave_no_gap_and_are_counted(kernels, device, mode):
    """Every seventh message divides by zero: it is counted, and the others' replies stay in order."""
    pkg, unit, codecs = kernels
    n = 3000
    with open_kernel(pkg, unit, codecs, device, mode, kernel="divide", capacity=1024) as k:
        arr = _seqs(codecs, "Div", n)
        arr["a"] = np.arange(n) + 10
        arr["b"] = np.where(np.arange(n) % 7 == 3, 0, 2)
        k.send_batch(arr, timeout=20.0)
        good = [s for s in range(n) if s % 7 != 3]
        got = _receive_n(k, len(good))
        assert got["seq"].tolist() == good
        assert got["q"].tolist() == [(s + 10) // 2 for s in good]
        _wait_processed(k, n)
        stats = k.stats()
    assert stats.processed == n
    assert sum(stats.rejected.values()) == len(range(3, n, 7))


@modes
def test_full_output_queue_stalls_then_resumes_in_order(kernels, device, mode):
    """Replies left untaken fill the output queue: the kernel stops there (a stall), and once the host
    takes them it goes on where it left, nothing lost or reordered; claims never outgrow the room.
    """
    pkg, unit, codecs = kernels
    cap = 1024
    with open_kernel(pkg, unit, codecs, device, mode, kernel="echo", capacity=cap) as k:
        k.send_batch(_seqs(codecs, "Seq", cap - 24), timeout=20.0)
        _wait_processed(k, cap - 24)
        # 24 slots of room: the next claim fits them, the one after finds none and waits.
        k.send_batch(_seqs(codecs, "Seq", cap, start=cap - 24), timeout=20.0)
        deadline = time.monotonic() + 20.0
        while k.stats().output_stalls == 0:
            assert time.monotonic() < deadline, "the kernel never waited on its full output queue"
            time.sleep(0.001)
        got = _receive_n(k, 2 * cap - 24)
        assert got["seq"].tolist() == list(range(2 * cap - 24))
        assert got["value"].tolist() == [1] * (2 * cap - 24)
        _wait_processed(k, 2 * cap - 24)


@modes
def test_ordered_kernel_sees_every_message_in_order(kernels, device, mode):
    """An ordered kernel (one work-item) takes its claims one message after the other."""
    pkg, unit, codecs = kernels
    n = 4000
    with open_kernel(pkg, unit, codecs, device, mode, kernel="in_order", capacity=1024) as k:
        k.send_batch(_seqs(codecs, "Seq", n), timeout=20.0)
        got = _receive_n(k, n)
        assert got["seq"].tolist() == list(range(n))
        assert not got["value"].any(), "the handler saw a message out of order"
