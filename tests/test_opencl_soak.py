"""Soak: 10,000,000 messages through the OpenCL backend with a slow host consumer.

It runs in a few seconds on two cores, so it is not marked slow. The consumer thread sleeps between receives, so the kernel keeps finding its output queue full
(counted as output stalls) and the producer keeps finding its input queue full (blocked sends). The
sequence check then proves that back-pressure lost, duplicated and reordered nothing.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from test_opencl_support import device_params, open_kernel, requests, vector_add_package

pytestmark = [pytest.mark.opencl, pytest.mark.timeout(600)]

TOTAL = 10_000_000
CHUNK = 8192


@pytest.mark.parametrize(
    "device,mode", device_params(("persistent", "persistent-2groups", "relaunch"))
)
def test_ten_million_messages_slow_consumer(tmp_path_factory, device, mode):
    pkg, unit, codecs = vector_add_package(tmp_path_factory)
    chunk = requests(codecs, CHUNK)
    got = {"n": 0, "bad": None}

    def consume(k):
        expect = 0
        while expect < TOTAL:
            part = k.receive_batch(max_n=CHUNK, timeout=30.0)
            n = len(part)
            if n == 0:
                got["bad"] = f"no reply for 30 s after {expect}"
                return
            ids = part["id"]
            if (
                ids[0] != expect
                or ids[-1] != expect + n - 1
                or not np.array_equal(np.diff(ids), np.ones(n - 1, dtype=ids.dtype))
            ):
                got["bad"] = f"sequence broken at {expect}: got ids {ids[:4]}..."
                return
            if not np.array_equal(part["sum"], chunk["a"][(ids - 0) % CHUNK] + chunk["b"][0]):
                got["bad"] = f"wrong sums near {expect}"
                return
            expect += n
            got["n"] = expect
            time.sleep(0.0002)  # the slow consumer: the kernel must wait, not overwrite

    t0 = time.perf_counter()
    with open_kernel(pkg, unit, codecs, device, mode, capacity=16384) as k:
        consumer = threading.Thread(target=consume, args=(k,), daemon=True)
        consumer.start()
        for start in range(0, TOTAL, CHUNK):
            n = min(CHUNK, TOTAL - start)
            chunk["id"][:n] = np.arange(start, start + n)
            if got["bad"]:
                break
            k.send_batch(chunk[:n], timeout=60.0)
        consumer.join(timeout=300)
        stats = k.stats()
    elapsed = time.perf_counter() - t0
    print(
        f"\n{mode}: {TOTAL:,} messages in {elapsed:.1f} s ({TOTAL / elapsed / 1e6:.2f} M/s), "
        f"output stalls {stats.output_stalls}"
    )
    assert got["bad"] is None, got["bad"]
    assert got["n"] == TOTAL
    assert stats.processed == TOTAL and stats.emitted == TOTAL and stats.rejected == {}
    if mode.startswith("persistent"):
        assert stats.output_stalls > 0  # the consumer really was slower than the kernel
