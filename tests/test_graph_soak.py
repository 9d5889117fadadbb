"""Soaks: millions of messages through a 3-stage pipeline with no loss, duplication or reordering
per edge (issue 15, item 5).

The pipeline (``graph_kernels.soak``) numbers what its first stage and its last stage receive
(``s1``, ``s3``, each from its own ordered state); at the exit every reply must have ``id`` equal to
its position, ``s1 == s3 == id + 1`` and the middle stage's value: nothing lost, duplicated or
reordered on either edge. Messages go in and out as numpy arrays (``send_batch`` /
``receive_batch``), interleaved in one thread, so the graph's queues stay full without spilling.

``make soak`` runs these (``-m soak``): 10,000,000 messages on PoCL (and the ``c`` backend), and the
100,000,000-message GPU soak with ``-m "gpu and soak"`` on a CUDA machine.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import ringgen as rg
from ringgen.errors import BackendUnavailableError
from ringgen.layout import layout_of
from ringgen.runtime import available_backends
from ringgen.runtime.graph_device import DEVICE_STRATEGIES
from ringgen.runtime.graph_host import STRATEGIES

sys.path.insert(0, str(Path(__file__).resolve().parent))
import graph_kernels as gk  # noqa: E402

#: Messages per soak (RINGGEN_SOAK_MESSAGES overrides, e.g. for a quick run).
HOST_MESSAGES = int(os.environ.get("RINGGEN_SOAK_MESSAGES", "10000000"))
GPU_MESSAGES = int(os.environ.get("RINGGEN_SOAK_GPU_MESSAGES", "100000000"))
CHUNK = 65536


def soak(h, n: int, *, stall_s: float = 60.0) -> dict:
    """Push ``n`` messages through the running soak pipeline ``h`` and check every reply.

    Returns:
        {"messages": n, "seconds": wall time, "per_s": messages per second}.
    """
    dtype = layout_of(gk.Raw).dtype
    chunk = np.zeros(CHUNK, dtype)
    chunk["x"] = np.arange(CHUNK, dtype=np.int32) % 1000 - 500
    sent = received = 0
    pending = None  # the part of the current chunk not yet accepted
    last_progress = t0 = time.perf_counter()
    while received < n:
        if pending is None and sent < n:
            m = min(CHUNK, n - sent)
            pending = chunk[:m].copy()
            pending["id"] = np.arange(sent, sent + m, dtype=np.int64)
        moved = 0
        if pending is not None:
            k = h.send_batch(pending, block=False)
            sent += k
            moved += k
            pending = pending[k:] if k < len(pending) else None
        part = h.receive_batch(max_n=CHUNK, timeout=0.0 if pending is not None else 0.001)
        if len(part):
            ids = part["id"]
            expect = np.arange(received, received + len(part), dtype=np.int64)
            if not np.array_equal(ids, expect):
                bad = int(np.flatnonzero(ids != expect)[0])
                raise AssertionError(
                    f"reply {received + bad} has id {int(ids[bad])}: lost, duplicated or reordered"
                )
            assert np.array_equal(part["s1"], expect + 1), "the first edge lost or reordered"
            assert np.array_equal(part["s3"], expect + 1), "the second edge lost or reordered"
            x = (expect % CHUNK) % 1000 - 500
            assert np.array_equal(part["v"], x * 3 + 1), "a reply carries another message's value"
            received += len(part)
            moved += len(part)
        now = time.perf_counter()
        if moved:
            last_progress = now
        elif now - last_progress > stall_s:
            raise AssertionError(f"no progress for {stall_s:g} s at {received} of {n} replies")
    seconds = time.perf_counter() - t0
    return {"messages": n, "seconds": seconds, "per_s": n / seconds}


def _run(backend: str, n: int, strategy: str, graph=gk.soak, **options) -> dict:
    try:
        h = rg.launch(graph, backend=backend, strategy=strategy, **options)
    except BackendUnavailableError as exc:
        if strategy == "host":
            raise
        pytest.skip(f"{backend} has no {strategy} strategy: {exc.message}")
    with h:
        result = soak(h, n)
        stats = h.stats()
    if strategy == "host":  # the host moved every message across each edge once
        assert [e.forwarded for e in stats.edges] == [n, n]
    print(f"\nsoak {backend}/{strategy} {options}: {result}")
    return result


@pytest.mark.soak
@pytest.mark.timeout(1800)
@pytest.mark.skipif("opencl" not in available_backends(), reason="no OpenCL")
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_ten_million_messages_through_three_stages_on_pocl(strategy):
    # relaunch: three persistent kernels need three PoCL threads (docs/graphs.md)
    _run("opencl", HOST_MESSAGES, strategy, mode="relaunch", capacity=65536)


@pytest.mark.soak
@pytest.mark.timeout(1800)
@pytest.mark.skipif("c" not in available_backends(), reason="no C compiler")
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_ten_million_messages_through_three_stages_on_c(strategy):
    _run("c", HOST_MESSAGES, strategy, capacity=65536)


@pytest.mark.gpu
@pytest.mark.soak
@pytest.mark.timeout(3600)
@pytest.mark.skipif("cuda" not in available_backends(), reason="no CUDA")
@pytest.mark.parametrize("strategy", ["atomic_queue", "shared_memory"])
def test_hundred_million_messages_through_three_stages_on_the_gpu(strategy):
    assert "cuda" in DEVICE_STRATEGIES[strategy]
    _run("cuda", GPU_MESSAGES, strategy, graph=gk.soak_device, capacity=65536)
