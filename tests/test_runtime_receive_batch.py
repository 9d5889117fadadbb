"""receive_batch waits for what the caller asked for (issue 14, item 3): ``min_n`` makes a whole batch
one call, a timeout returns the partial batch and loses nothing, ``out=`` fills the caller's array in
place, and a bad ``out``/``min_n`` is refused by name.

Runs on every transport of tests/transports.py (cpu, c, OpenCL persistent and relaunch where
present; CUDA with ``-m gpu``).
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import ringgen as rg
from ringgen.errors import KernelFaultError, QueueClosedError

sys.path.insert(0, str(Path(__file__).resolve().parent))
import runtime_kernels as rk  # noqa: E402
from transports import TRANSPORTS  # noqa: E402

pytestmark = pytest.mark.timeout(120)

#: The transports that run a bridged kernel (the c backend has no wire codec).
BRIDGED = [p for p in TRANSPORTS if p.id != "c"]


def _rows(n: int, start: int = 0) -> np.ndarray:
    rows = np.zeros(n, dtype=rg.dtype_of(rk.Seq))
    rows["seq"] = np.arange(start, start + n)
    rows["value"] = np.arange(start, start + n) % 1000
    return rows


def _send_slowly(k, rows: np.ndarray, chunks: int, pause: float) -> threading.Thread:
    """Send ``rows`` in ``chunks`` pieces from another thread, ``pause`` seconds apart, so the
    replies come in over time, not all at once."""

    def run() -> None:
        for part in np.array_split(rows, chunks):
            k.send_batch(part)
            time.sleep(pause)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("backend,options", TRANSPORTS)
def test_min_n_returns_the_whole_batch_in_one_call(backend, options):
    n = 5_000  # several times the queue's capacity (1,024): replies come through the spill too
    with rg.launch(rk.echo, backend=backend, **options) as k:
        sender = _send_slowly(k, _rows(n), chunks=5, pause=0.05)
        replies = k.receive_batch(n, timeout=60, min_n=n)
        sender.join(10)
        assert len(replies) == n
        np.testing.assert_array_equal(replies["seq"], np.arange(n))
        np.testing.assert_array_equal(replies["value"], np.arange(n) % 1000 + 1)
        assert k.receive_batch(timeout=0).size == 0
        s = k.stats()
        assert s.sent == s.received == n


@pytest.mark.parametrize("backend,options", TRANSPORTS)
def test_a_timeout_returns_the_partial_batch_and_loses_nothing(backend, options):
    with rg.launch(rk.echo, backend=backend, **options) as k:
        k.send_batch(_rows(300))
        start = time.monotonic()
        replies = k.receive_batch(1_000, timeout=0.5, min_n=1_000)  # only 300 will ever come
        waited = time.monotonic() - start
        assert waited >= 0.45  # it waited for the rest...
        assert len(replies) == 300  # ...and returned what came, without raising
        np.testing.assert_array_equal(replies["seq"], np.arange(300))
        # Nothing held back or dropped: the next replies are the next messages'.
        k.send_batch(_rows(200, start=300))
        more = k.receive_batch(1_000, timeout=30, min_n=200)
        np.testing.assert_array_equal(more["seq"], np.arange(300, 500))
        assert k.receive_batch(timeout=0.05).size == 0
        s = k.stats()
        assert s.sent == s.received == 500 and s.output_depth == 0


@pytest.mark.parametrize("backend,options", TRANSPORTS)
def test_out_is_filled_in_place_and_equals_the_returned_copy(backend, options):
    n = 3_000
    with rg.launch(rk.echo, backend=backend, **options) as k:
        k.send_batch(_rows(n))
        copy = k.receive_batch(n, timeout=30, min_n=n)
        out = np.zeros(n + 7, dtype=rg.dtype_of(rk.Seq))
        out["seq"] = -1
        k.send_batch(_rows(n))
        view = k.receive_batch(n, timeout=30, min_n=n, out=out)
        assert len(view) == n and np.shares_memory(view, out)
        assert view.__array_interface__["data"][0] == out.__array_interface__["data"][0]
        # field by field: the struct's padding bytes carry nothing
        assert (view == copy).all() and (out[:n] == copy).all()
        assert (out["seq"][n:] == -1).all()  # nothing past the replies is touched
        # max_n defaults to len(out); a timeout fills a prefix and returns it
        k.send_batch(_rows(5))
        deadline = (
            time.monotonic() + 30
        )  # all 5 answered first, so a loaded machine cannot split them
        while k.stats().emitted < 2 * n + 5 and time.monotonic() < deadline:
            time.sleep(0.001)
        part = k.receive_batch(timeout=0.2, min_n=len(out), out=out)
        np.testing.assert_array_equal(part["seq"], np.arange(5))
        assert np.shares_memory(part, out)
        assert k.receive_batch(timeout=0, out=out).size == 0


@pytest.mark.parametrize("backend,options", BRIDGED)
def test_min_n_gathers_bridged_replies_into_one_list(backend, options):
    with rg.launch(rk.summarize, backend=backend, **options) as k:
        named = [rk.Named(id=i, name=f"n{i}", scores=list(range(i % 8))) for i in range(2_500)]
        sender = threading.Thread(target=k.send_batch, args=(named,), daemon=True)
        sender.start()
        replies = k.receive_batch(len(named), timeout=60, min_n=len(named))
        sender.join(10)
        assert isinstance(replies, list) and [r.id for r in replies] == list(range(len(named)))
        assert replies[9].total == sum(range(1)) and replies[7].count == 7


def test_a_fault_while_gathering_returns_the_replies_taken_then_raises():
    k = rg.launch(rk.echo, backend="cpu")
    step = k._worker.step

    def faults_at_five(msg, state):  # white box: the compiler would reject such a handler
        if int(msg.seq) >= 5:
            raise RuntimeError("handler bug")
        return step(msg, state)

    k._worker.step = faults_at_five
    k.send_batch(_rows(5))
    deadline = time.monotonic() + 30
    while k.stats().output_depth < 5 and time.monotonic() < deadline:
        time.sleep(0.01)  # the five replies are published before the next message faults
    k.send_batch(_rows(5, start=5))
    replies = k.receive_batch(10, timeout=30, min_n=10)
    np.testing.assert_array_equal(replies["seq"], np.arange(5))
    with pytest.raises(KernelFaultError, match="echo.*handler bug"):
        k.receive_batch(10, timeout=1, min_n=10)
    with pytest.raises(KernelFaultError):
        k.terminate()


@pytest.mark.parametrize("backend,options", TRANSPORTS)
def test_termination_while_gathering_returns_the_replies_taken(backend, options):
    k = rg.launch(rk.echo, backend=backend, **options)
    k.send_batch(_rows(10))
    stopper = threading.Timer(0.3, k.terminate)
    stopper.start()
    replies = k.receive_batch(100, timeout=None, min_n=100)  # only 10 come, then the kernel stops
    stopper.join(30)
    np.testing.assert_array_equal(replies["seq"], np.arange(10))
    with pytest.raises(QueueClosedError):
        k.receive_batch(100, timeout=None, min_n=100)


@pytest.fixture(scope="module")
def echo_cpu():
    with rg.launch(rk.echo, backend="cpu") as k:
        yield k


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        ({"out": [0] * 10}, TypeError, r"echo\.receive_batch: out= must be a numpy .*got list"),
        ({"out": np.zeros(10, dtype=np.int64)}, TypeError, r"out= has dtype int64.*Seq rows"),
        ({"out": np.zeros((5, 2), dtype=rg.dtype_of(rk.Seq))}, ValueError, r"out= must be 1-d"),
        ({"out": np.zeros(0, dtype=rg.dtype_of(rk.Seq))}, ValueError, r"out= has room for no"),
        (
            {"max_n": 10, "out": np.zeros(4, dtype=rg.dtype_of(rk.Seq))},
            ValueError,
            r"out= has room for 4 replies, fewer than max_n=10",
        ),
        ({"min_n": 0}, ValueError, r"echo\.receive_batch: min_n=0 is not an int >= 1"),
        ({"min_n": True}, ValueError, r"min_n=True is not an int"),
        ({"min_n": 2.0}, ValueError, r"min_n=2\.0 is not an int"),
        ({"max_n": 4, "min_n": 5}, ValueError, r"min_n=5 is over max_n=4"),
        (
            {"min_n": 5, "out": np.zeros(4, dtype=rg.dtype_of(rk.Seq))},
            ValueError,
            r"min_n=5 is over max_n=4.*defaults to len\(out\)",
        ),
        ({"max_n": 0}, ValueError, r"echo\.receive_batch: max_n=0 is not an int >= 1"),
    ],
    ids=[
        "out-list",
        "out-dtype",
        "out-2d",
        "out-empty",
        "out-short",
        "min_n-0",
        "min_n-bool",
        "min_n-float",
        "min_n-over-max_n",
        "min_n-over-len-out",
        "max_n-0",
    ],
)
def test_bad_arguments_are_refused_by_name(echo_cpu, kwargs, error, match):
    with pytest.raises(error, match=match):
        echo_cpu.receive_batch(timeout=0, **kwargs)


def test_a_read_only_out_is_refused(echo_cpu):
    out = np.zeros(10, dtype=rg.dtype_of(rk.Seq))
    out.flags.writeable = False
    with pytest.raises(ValueError, match=r"echo\.receive_batch: out= is read-only"):
        echo_cpu.receive_batch(timeout=0, out=out)


@pytest.mark.parametrize("backend,options", BRIDGED)
def test_bridged_replies_are_decoded_into_view_rows_with_out(backend, options):
    """out= of the view dtype: bridged replies decoded columnar, the same messages the objects
    path returns, in the caller's array."""
    with rg.launch(rk.summarize, backend=backend, **options) as k:
        named = [rk.Named(id=i, name=f"w{i % 7}", scores=list(range(i % 9))) for i in range(1_500)]
        sender = threading.Thread(target=k.send_batch, args=(named,), daemon=True)
        sender.start()
        out = np.zeros(1_600, dtype=rg.dtype_of(rk.Summary))
        rows = k.receive_batch(1_500, timeout=60, min_n=1_500, out=out)
        sender.join(10)
        assert len(rows) == 1_500 and np.shares_memory(rows, out)
        got = k.out_codec.from_array(rows)
        assert got == [
            rk.Summary(id=i, name=f"w{i % 7}", total=sum(range(i % 9)), count=i % 9)
            for i in range(1_500)
        ]
        with pytest.raises(TypeError, match=r"summarize\.receive_batch: out= has dtype"):
            k.receive_batch(timeout=0, out=np.zeros(10, dtype=rg.dtype_of(rk.Seq)))


@pytest.mark.parametrize("backend,options", [p for p in TRANSPORTS if p.id != "cpu"])
def test_send_batch_hands_a_request_dtype_array_to_the_transport_as_is(backend, options):
    """No per-row work on a device backend: the caller's array (the request's dtype, contiguous)
    is the batch the transport copies into its ring; no conversion, no intermediate copy."""
    with rg.launch(rk.echo, backend=backend, **options) as k:
        rows = _rows(4_096)
        batch = k.format.input_batch(rows)
        assert batch.__array_interface__["data"][0] == rows.__array_interface__["data"][0]
        assert k.send_batch(rows) == len(rows)
        got = k.receive_batch(len(rows), timeout=30, min_n=len(rows))
        np.testing.assert_array_equal(got["value"], rows["value"] + 1)


def test_a_strided_out_is_filled_too(echo_cpu):
    buf = np.zeros(200, dtype=rg.dtype_of(rk.Seq))
    out = buf[::2]  # not contiguous: numpy's own copy instead of bytes
    echo_cpu.send_batch(_rows(100))
    got = echo_cpu.receive_batch(timeout=30, min_n=100, out=out)
    np.testing.assert_array_equal(got["seq"], np.arange(100))
    np.testing.assert_array_equal(buf["seq"][::2], np.arange(100))
    assert (buf["seq"][1::2] == 0).all()


@pytest.mark.parametrize("backend,options", TRANSPORTS)
def test_a_strided_request_array_is_sent_whole(backend, options):
    rows = _rows(2_000)[::2]  # not contiguous: copied once, as rows of bytes
    with rg.launch(rk.echo, backend=backend, **options) as k:
        assert k.send_batch(rows) == 1_000
        got = k.receive_batch(1_000, timeout=30, min_n=1_000)
        np.testing.assert_array_equal(got["seq"], np.arange(0, 2_000, 2))
        np.testing.assert_array_equal(got["value"], rows["value"] + 1)
