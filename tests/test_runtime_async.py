"""The asyncio side of KernelHandle: send_async, receive_async, ``async for``, and a free event loop."""

from __future__ import annotations

import asyncio
import time

import pytest

import ringgen as rg
from ringgen.errors import KernelTimeoutError, QueueFullError

import runtime_kernels as rk


@pytest.fixture(scope="module", autouse=True)
def _cache(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("RINGGEN_CACHE_DIR", str(tmp_path_factory.mktemp("ringgen-cache")))
    yield
    mp.undo()


def _run(coro, timeout: float = 20.0):
    return asyncio.run(asyncio.wait_for(coro, timeout))


@pytest.mark.timeout(30)
def test_send_and_receive_async_round_trip():
    async def main():
        with rg.launch(rk.echo, backend="cpu") as k:
            for i in range(50):
                await k.send_async(rk.Seq(seq=i, value=i))
            return [(await k.receive_async(timeout=5)) for _ in range(50)]

    replies = _run(main())
    assert [(r.seq, r.value) for r in replies] == [(i, i + 1) for i in range(50)]


@pytest.mark.timeout(30)
def test_async_for_yields_every_reply_and_ends_after_terminate():
    async def main():
        k = rg.launch(rk.echo, backend="cpu")
        seen = []

        async def consume():
            async for reply in k:
                seen.append(reply.seq)

        task = asyncio.create_task(consume())
        for i in range(200):
            await k.send_async(rk.Seq(seq=i, value=0))
        await asyncio.get_running_loop().run_in_executor(None, k.terminate)
        await asyncio.wait_for(task, 5)  # the iteration ends by itself once every reply is taken
        return seen

    assert _run(main()) == list(range(200))


@pytest.mark.timeout(30)
def test_waiting_receive_async_does_not_block_the_event_loop():
    async def main():
        ticks = 0

        async def ticker():
            nonlocal ticks
            while True:
                await asyncio.sleep(0.005)
                ticks += 1

        with rg.launch(rk.echo, backend="cpu") as k:
            t = asyncio.create_task(ticker())
            t0 = time.monotonic()
            with pytest.raises(KernelTimeoutError, match="echo"):
                await k.receive_async(timeout=0.3)
            waited = time.monotonic() - t0
            t.cancel()
        return ticks, waited

    ticks, waited = _run(main())
    assert 0.25 <= waited < 2.0
    assert ticks >= 20  # the loop kept running while receive_async waited


@pytest.mark.timeout(30)
def test_send_async_times_out_on_a_full_queue():
    async def main():
        k = rg.launch(rk.busy, backend="cpu")  # capacity 256, its first handler runs for minutes
        sent = 0
        with pytest.raises(QueueFullError, match="busy"):
            for i in range(1000):
                await k.send_async(rk.Work(seq=i, iterations=2**31 - 1), timeout=0.05)
                sent += 1
        assert 256 <= sent <= 2 * 256 + 1
        k.terminate(drain=False)
        # Nobody receiving from a kernel that keeps up: a waiting send_async moves the ready
        # replies into the spill and completes (issue 10).
        with rg.launch(rk.echo_small, backend="cpu") as k:
            for i in range(1000):
                await k.send_async(rk.Seq(seq=i, value=0), timeout=5)
            assert k.stats().spilled > 0
            got = [await k.receive_async(timeout=5) for _ in range(1000)]
            return [r.seq for r in got]

    assert _run(main()) == list(range(1000))
