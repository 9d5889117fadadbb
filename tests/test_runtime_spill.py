"""No deadlock against your own replies: while a send waits for room, ready replies move into the
host-side spill, so "send everything, then receive" finishes for any batch size (issue 10, item 3).

Runs on the cpu reference and on OpenCL (PoCL) in persistent and relaunch mode where present.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import numpy as np
import pytest

import ringgen as rg
from ringgen.errors import QueueFullError
from ringgen.protocol import OUTBOX_LIMIT

sys.path.insert(0, str(Path(__file__).resolve().parent))
import hostpolicy_kernels as hk  # noqa: E402
import runtime_kernels as rk  # noqa: E402
from transports import TRANSPORTS  # noqa: E402

BACKENDS = TRANSPORTS  # every transport, with its skip marks (tests/transports.py)


def _receive_all(k, n: int, field: str = "seq") -> np.ndarray:
    got, have = [], 0
    while have < n:
        part = k.receive_batch(timeout=10)
        assert len(part), f"no reply within 10 s after {have} of {n}"
        got.append(np.asarray(part[field]).copy())
        have += len(part)
    return np.concatenate(got)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("backend,options", BACKENDS)
def test_send_65536_rows_then_receive_them_all(backend, options):
    """The README's batch pattern with 64 times the queue's capacity: no receiver runs meanwhile."""
    with rg.launch(rk.echo, backend=backend, **options) as k:
        rows = np.zeros(65_536, dtype=k.in_codec.dtype)
        rows["seq"] = np.arange(len(rows))
        rows["value"] = np.arange(len(rows)) % 1000
        assert k.send_batch(rows) == len(rows)
        seqs = _receive_all(k, len(rows))
        np.testing.assert_array_equal(seqs, np.arange(len(rows)))
        s = k.stats()
        # Most replies went through the spill; it never holds more than the caller sent.
        assert len(rows) - 2 * k.capacity <= s.spilled <= len(rows)
        assert s.received == s.processed == s.sent == len(rows) and s.output_depth == 0


@pytest.mark.timeout(300)
@pytest.mark.parametrize("backend,options", BACKENDS)
def test_6000_messages_to_an_outbox_kernel_before_receiving(backend, options):
    """Each input emits OUTBOX_LIMIT replies: the output queue fills long before the input is in."""
    n = 6_000
    with rg.launch(hk.fanout, backend=backend, **options) as k:
        jobs = [hk.Job(seq=i, n=OUTBOX_LIMIT) for i in range(n)]
        assert k.send_batch(jobs) == n
        replies = []
        while len(replies) < n * OUTBOX_LIMIT:
            part = k.receive_batch(timeout=10)
            assert len(part), f"no reply within 10 s after {len(replies)}"
            replies.extend(zip(part["seq"].tolist(), part["k"].tolist()))
        # fanout is a parallel kernel: replies of different inputs may interleave (on CUDA they
        # do), but each input's own emits keep their order.
        assert sorted(replies) == [(i, j) for i in range(n) for j in range(OUTBOX_LIMIT)]
        per_input: dict[int, list[int]] = {}
        for seq, j in replies:
            per_input.setdefault(seq, []).append(j)
        assert all(ks == list(range(OUTBOX_LIMIT)) for ks in per_input.values())
        s = k.stats()
        assert s.spilled <= n * OUTBOX_LIMIT  # the bound: OUTBOX_LIMIT per message sent
        assert s.spilled >= n * OUTBOX_LIMIT // 2  # most of them went through it


@pytest.mark.timeout(120)
@pytest.mark.parametrize("backend,options", BACKENDS)
def test_send_async_spills_too(backend, options):
    async def main(k) -> None:
        for i in range(1_000):  # 16 times the capacity, nothing received meanwhile
            await k.send_async(rk.Seq(seq=i, value=0), timeout=30)

    with rg.launch(rk.echo_small, backend=backend, **options) as k:
        asyncio.run(main(k))
        np.testing.assert_array_equal(_receive_all(k, 1_000), np.arange(1_000))
        assert k.stats().spilled > 0


@pytest.mark.timeout(60)
def test_queue_full_hint_says_what_helps():
    with rg.launch(hk.spin, backend="cpu") as k:
        jobs = [hk.Job(seq=i, n=20_000) for i in range(4 * k.capacity)]
        with pytest.raises(QueueFullError) as timed_out:
            k.send_batch(jobs, timeout=0.05)
        assert "longer timeout" in timed_out.value.hint
        assert "block=True" not in timed_out.value.hint
        k.send_batch(jobs[: k.capacity], block=False)
        with pytest.raises(QueueFullError) as at_once:
            k.send(hk.Job(seq=-1, n=1), block=False)
        assert "block=True (the default)" in at_once.value.hint
        k.terminate(drain=False)
