"""Where a persistent OpenCL round trip goes: each piece of one vector_add batch, measured alone.

For one batch size (default 65,536 16-byte messages), on the OpenCL device that ``bench/opencl.py``
uses, in this order:

- ``memcpy in`` / ``memcpy out``: the host's byte copy of the batch into / out of the SVM rings;
- ``drain (one-off)``: the persistent entry point launched once over a batch already queued, with
  terminate requested, so it drains the batch and returns: the kernel's own cost with no host
  thread involved (launch and wait included: compare with ``empty launch``);
- ``empty launch``: the same launch over an empty queue;
- ``kernel only (sleep|yield|spin)``: a resident kernel, the batch copied in beforehand and
  published with one store, the host polling the output tail between sleeps, yields or not at all;
- ``round trip``: ``send_batch`` + ``receive_batch(n, min_n=n)`` through the public API.

    .venv/bin/python bench/opencl_pieces.py             # 65,536
    .venv/bin/python bench/opencl_pieces.py --batch 4096

Prints medians and p90 in microseconds, with the load average before and after (the CI machine is
shared: read the figures beside it). bench/NOTES-opencl.md has what they showed.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from opencl import _build_package, _pow2_at_least, _requests  # noqa: E402


def _line(what: str, seconds: list) -> None:
    us = np.asarray(seconds) * 1e6
    print(f"{what:28s} p50 {np.median(us):9.1f} us   p90 {np.percentile(us, 90):9.1f} us")


def _timed(fn, repeat: int) -> list:
    fn()
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def _one_off_drain(device, source: str, dtype, n: int, group_size: int, repeat: int) -> tuple:
    """(drain seconds, empty-launch seconds) of the persistent entry point launched once."""
    import pyopencl as cl

    from ringgen.protocol import CONTROL_DTYPE, CONTROL_SIZE, QUEUE_CTL_DTYPE, TERMINATE_DRAIN
    from ringgen.runtime.host_ring import TAIL_WORD
    from ringgen.runtime.opencl.build import context_for

    ctx = context_for(device)
    queue = cl.CommandQueue(ctx, device.device)
    options = ["-cl-std=CL3.0", f"-DRG_GROUP_SIZE={group_size}"]
    kernel = cl.Kernel(cl.Program(ctx, source).build(options=options), "rg_vector_add_persistent")
    flags = (
        cl.svm_mem_flags.READ_WRITE
        | cl.svm_mem_flags.SVM_FINE_GRAIN_BUFFER
        | cl.svm_mem_flags.SVM_ATOMICS
    )

    def svm(nbytes: int) -> np.ndarray:
        arr = cl.svm_empty(ctx, flags, max(nbytes, 128), np.uint8, alignment=128)
        arr[:] = 0
        return arr

    q_bytes = QUEUE_CTL_DTYPE.itemsize
    ctl, inq, outq, dlq, groups, state = (
        svm(b) for b in (CONTROL_SIZE, q_bytes, q_bytes, 2 * q_bytes, 5 * 128, 128)
    )
    in_ring, out_ring, dl_ring = svm(n * dtype.itemsize), svm(n * 16), svm(128)
    in_ring[:] = _requests(dtype, n).view(np.uint8)

    def launch(queued: int) -> None:
        for arr in (ctl, inq, outq, dlq, groups):
            arr[:] = 0
        memoryview(inq).cast("Q")[TAIL_WORD] = queued
        ctl.view(CONTROL_DTYPE)["terminate"] = TERMINATE_DRAIN
        kernel.set_args(
            cl.SVM(ctl),
            cl.SVM(inq),
            cl.SVM(in_ring),
            np.uint64(n),
            cl.SVM(outq),
            cl.SVM(out_ring),
            np.uint64(n),
            cl.SVM(dlq),
            cl.SVM(dl_ring),
            np.uint64(0),
            cl.SVM(state),
            cl.SVM(groups),
        )
        cl.enqueue_nd_range_kernel(queue, kernel, (group_size,), (group_size,))
        queue.finish()
        if memoryview(outq).cast("Q")[TAIL_WORD] != queued:
            raise SystemExit("one-off drain: not every reply was published")

    return _timed(lambda: launch(n), repeat), _timed(lambda: launch(0), repeat)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=65536)
    ap.add_argument("--repeat", type=int, default=30)
    ap.add_argument("--device", default=None, help="OpenCL device pattern")
    args = ap.parse_args(argv)

    from ringgen.runtime.opencl import OpenclKernel
    from ringgen.runtime.opencl.build import select_device

    device = select_device(args.device)
    n, repeat = args.batch, args.repeat
    pkg, unit, codecs = _build_package()
    dtype = codecs["AddRequest"].dtype
    batch = _requests(dtype, n)
    print(f"{device.label}, batch {n:,}, load average {os.getloadavg()}")

    k = OpenclKernel.open(
        unit.kernels[0],
        str(pkg),
        codecs=codecs,
        device=device,
        mode="persistent",
        capacity=_pow2_at_least(n),
    )
    try:
        inq, outq = k._inq, k._outq
        src = batch.view(np.uint8)
        out = np.empty(n, dtype=outq.dtype)
        _line("memcpy in", _timed(lambda: inq._u8.__setitem__(slice(0, src.size), src), repeat))
        out_u8 = out.view(np.uint8)
        _line(
            "memcpy out",
            _timed(lambda: out_u8.__setitem__(slice(None), outq._u8[: src.size]), repeat),
        )
        for how in ("sleep", "yield", "spin"):
            samples = []
            for _ in range(repeat):
                base = inq.tail
                inq._u8[: src.size] = src
                t0 = time.perf_counter()
                inq._publish(base + n)
                while outq.device_tail() < base + n:
                    if how == "sleep":
                        time.sleep(50e-6)
                    elif how == "yield":
                        os.sched_yield()
                samples.append(time.perf_counter() - t0)
                outq.head = base + n
                outq._publish_head()
            _line(f"kernel only ({how})", samples)

        def round_trip() -> None:
            k.send_batch(batch)
            k.receive_batch(n, timeout=10.0, min_n=n, out=out)

        _line("round trip (public API)", _timed(round_trip, repeat))
        group_size = k.group_size
    finally:
        k.terminate(timeout=5.0)

    source = next(Path(pkg).glob("*.cl")).read_text()
    drain, empty = _one_off_drain(device, source, dtype, n, group_size, repeat)
    _line("drain (one-off launch)", drain)
    _line("empty launch", empty)
    print(f"load average {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
