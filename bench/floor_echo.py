"""The floor every CUDA series is compared with, measured in the same run as they are.

- One message: a hand-written persistent echo. One thread of one warp spins on a 16-byte request
  slot in host-mapped pinned memory (``[seq, a, b, id]`` as 32-bit words, ``seq`` stored last by
  the host) with one 16-byte volatile load per iteration; when ``seq`` is the one it expects, it
  stores ``[seq, a + b, id, ECHO_TAG]`` as one 16-byte store to a reply slot in another cache line.
  The host (Python) writes the slot and spins on the reply's ``seq``. Nothing a ring kernel does
  for one message from Python can take less: one PCIe read that finds the message, one posted
  write back, and the host's two stores and its spin.
- Batches: the copy engines moving the batch's request bytes to the device and its reply bytes back
  at the same time, on two streams, from pinned memory, with no kernel and no dependence between
  the two directions. A launch-based series must at least move those bytes; a ring kernel reading
  and writing mapped memory can beat this floor only by not using the copy engines at all (its
  ratio below 1 says so).

The echo kernel is bounded three ways: the host stores ``STOP`` in ``seq`` (always, in a
``finally``); the kernel returns by itself after ``idle_s`` seconds without a message (it reads the
GPU's global timer); and every host wait has a timeout, so a lost reply ends the series with an
error instead of a hang.
"""

from __future__ import annotations

import logging
import time

import numpy as np

log = logging.getLogger("ringgen.bench")

__all__ = ["ECHO_SOURCE", "ECHO_TAG", "STOP", "bench_copy_floor", "bench_echo_floor"]

#: Request ``seq`` that tells the echo kernel to return.
STOP = 0xFFFFFFFF
#: Reply ``seq`` the echo kernel stores when it returns because no message came for ``idle_s``.
IDLE_EXIT = 0xFFFFFFFE
#: The reply's last word: shows a reply was written by this kernel, not left over.
ECHO_TAG = 0xEC40EC40

ECHO_SOURCE = r"""
extern "C" __global__ void floor_echo(const unsigned int* req, unsigned int* rep,
                                      unsigned long long idle_ns)
{
    if (blockIdx.x != 0 || threadIdx.x != 0) return;
    unsigned int expect = 1u;
    unsigned long long last, now;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(last));
    for (;;) {
        unsigned int s, a, b, id;
        asm volatile("ld.volatile.global.v4.u32 {%0, %1, %2, %3}, [%4];"
                     : "=r"(s), "=r"(a), "=r"(b), "=r"(id) : "l"(req) : "memory");
        if (s == 0xFFFFFFFFu) return;
        if (s == expect) {
            float sum = __uint_as_float(a) + __uint_as_float(b);
            asm volatile("st.volatile.global.v4.u32 [%0], {%1, %2, %3, %4};"
                         :: "l"(rep), "r"(s), "r"(__float_as_uint(sum)), "r"(id),
                            "r"(0xEC40EC40u) : "memory");
            __threadfence_system();
            expect = s + 1u;
            asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(last));
            continue;
        }
        asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(now));
        if (now - last > idle_ns) {
            asm volatile("st.volatile.global.u32 [%0], %1;" :: "l"(rep), "r"(0xFFFFFFFEu) : "memory");
            __threadfence_system();
            return;
        }
    }
}
"""

# Word offsets in the mapped page: the request at 0, the reply one 128-byte line further.
_REQ, _REP = 0, 32


class FloorError(RuntimeError):
    """Raised when the echo kernel gives a wrong reply, no reply in time, or does not stop."""


def _wait_reply(words: memoryview, seq: int, timeout_s: float) -> None:
    spins, deadline = 0, None
    while words[_REP] != seq:
        spins += 1
        if not spins & 0xFFFF:
            now = time.monotonic()
            if deadline is None:
                deadline = now + timeout_s
            elif now > deadline:
                got = words[_REP]
                why = "it returned: idle timeout" if got == IDLE_EXIT else f"reply seq {got}"
                raise FloorError(f"floor echo: no reply to seq {seq} in {timeout_s} s ({why})")


def bench_echo_floor(
    repeat: int,
    time_fn,
    rng: np.random.Generator,
    checks: int = 2000,
    idle_s: float = 10.0,
    timeout_s: float = 5.0,
) -> np.ndarray:
    """Time ``repeat`` round trips of one message through the persistent echo kernel.

    Args:
        repeat: timed round trips (after ``time_fn``'s warm-up).
        time_fn: ``(fn, repeat, warmup) -> seconds per call``, the caller's clock.
        rng: draws the ``checks`` messages whose replies are verified before timing.
        idle_s: the kernel returns by itself after this long without a message.
        timeout_s: the longest the host waits for one reply, and for the kernel to return.

    Returns:
        the per-round-trip seconds.

    Raises:
        FloorError: a wrong or missing reply, or a kernel that did not return after ``STOP``.
    """
    import pycuda.driver as drv

    from ringgen.runtime.cuda import build as cuda_build, device as cuda_device

    info = cuda_device.device_info(0)
    cubin, _ = cuda_build.compile_cubin(ECHO_SOURCE, info.arch, what="floor echo")
    fn = drv.module_from_buffer(cubin).get_function("floor_echo")
    # Pinned before the kernel is resident: pinning while a kernel spins can stall the driver.
    page, dptr = cuda_device.mapped_empty(4096)
    words = memoryview(page).cast("I")
    stream = drv.Stream(flags=1)
    a = rng.standard_normal(checks).astype(np.float32)
    b = rng.standard_normal(checks).astype(np.float32)
    ids = rng.integers(0, 2**32 - 1, checks, dtype=np.uint32)
    want = (a + b).view(np.uint32)
    a_bits, b_bits = a.view(np.uint32).tolist(), b.view(np.uint32).tolist()
    fn(
        np.uintp(dptr + 4 * _REQ),
        np.uintp(dptr + 4 * _REP),
        np.uint64(int(idle_s * 1e9)),
        block=(32, 1, 1),
        grid=(1, 1),
        stream=stream,
    )
    seq = 0
    try:
        for i in range(checks):
            seq += 1
            words[_REQ + 1], words[_REQ + 2], words[_REQ + 3] = a_bits[i], b_bits[i], int(ids[i])
            words[_REQ] = seq
            _wait_reply(words, seq, timeout_s)
            got = (words[_REP + 1], words[_REP + 2], words[_REP + 3])
            if got != (int(want[i]), int(ids[i]), ECHO_TAG):
                raise FloorError(
                    f"floor echo: reply {got} to seq {seq} (a={a[i]}, b={b[i]}, id={ids[i]}), "
                    f"expected ({int(want[i])}, {int(ids[i])}, {ECHO_TAG})"
                )
        w1, w2, w3 = a_bits[0], b_bits[0], int(ids[0])

        def one():
            nonlocal seq
            seq += 1
            words[_REQ + 1] = w1
            words[_REQ + 2] = w2
            words[_REQ + 3] = w3
            words[_REQ] = seq
            _wait_reply(words, seq, timeout_s)

        samples = time_fn(one, repeat, 100)
        if (words[_REP + 1], words[_REP + 2]) != (int(want[0]), w3):
            raise FloorError(f"floor echo: last timed reply wrong: {tuple(words[_REP:_REP + 4])}")
        return samples
    finally:
        words[_REQ] = STOP
        # A kernel that missed STOP still returns after idle_s: wait that long before giving the
        # pinned page back, never free memory a running kernel reads.
        deadline = time.monotonic() + idle_s + timeout_s
        while not stream.is_done():
            if time.monotonic() > deadline:
                raise FloorError(
                    f"floor echo: kernel still running {idle_s + timeout_s} s after STOP"
                )
            time.sleep(1e-4)
        stream.synchronize()
        page.base.free()


def bench_copy_floor(in_dtype, out_dtype, batch: int, repeat: int, time_fn) -> np.ndarray:
    """Time the copy engines moving ``batch`` requests in and ``batch`` replies out at once.

    Two non-blocking streams, pinned host buffers, one ``memcpy_htod_async`` and one
    ``memcpy_dtoh_async`` per round, then both streams synchronized. Returns seconds per round.
    """
    import pycuda.driver as drv

    from ringgen.runtime.cuda import device as cuda_device

    cuda_device.context(0)
    h_in = drv.pagelocked_empty(batch, in_dtype)
    h_out = drv.pagelocked_empty(batch, out_dtype)
    h_in.view(np.uint8)[:] = np.random.default_rng(batch).integers(0, 256, h_in.nbytes, np.uint8)
    d_in = drv.mem_alloc(h_in.nbytes)
    d_out = drv.mem_alloc(h_out.nbytes)
    s_in, s_out = drv.Stream(flags=1), drv.Stream(flags=1)
    try:

        def once():
            drv.memcpy_htod_async(d_in, h_in, s_in)
            drv.memcpy_dtoh_async(h_out, d_out, s_out)
            s_in.synchronize()
            s_out.synchronize()

        return time_fn(once, repeat, 3)
    finally:
        d_in.free()
        d_out.free()
        h_in.base.free()
        h_out.base.free()
