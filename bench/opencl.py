"""OpenCL backend benchmark: ringgen's persistent and relaunch modes against one launch per batch.

Round trip = host send -> handler -> host receive, measured on the host through the public API
(``send_batch``, then ``receive_batch(n, min_n=n, out=...)``: one call that waits for the whole
batch, polling and then sleeping as the handle's ``free_poll_s`` says), for 16-byte messages
(examples/vector_add.py: AddRequest {i64 id; f32 a; f32 b}) at batch sizes 1, 64, 4096, 65536 and
1,048,576. The baseline is what a PyOpenCL user would write without ringgen: a kernel launch per batch
with a copy in and a copy out, buffers allocated once. All three run side by side in one process,
interleaved in rounds per batch size (``ROUNDS``), and only one ringgen kernel is resident at a time.

    .venv/bin/python bench/opencl.py                # table on stdout, bench/results/opencl.{json,png}
    .venv/bin/python bench/opencl.py --quick        # fewer repetitions
    RINGGEN_OPENCL_DEVICE=nvidia .venv/bin/python bench/opencl.py --modes relaunch
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

import _common  # noqa: E402
from _common import BATCH_SIZES, Result, plot, print_table, summarize, write_json  # noqa: E402

BASELINE_SOURCE = """
typedef struct { long id; float a; float b; } AddRequest;
typedef struct { long id; float sum; } AddResponse;
__kernel void add(__global const AddRequest* in, __global AddResponse* out)
{
    const size_t i = get_global_id(0);
    out[i].id = in[i].id;
    out[i].sum = in[i].a + in[i].b;
}
"""


def _repeats(batch: int, quick: bool) -> int:
    n = {1: 3000, 64: 2000, 4096: 400, 65536: 60, 1048576: 12}.get(batch, 20)
    return max(5, n // 5) if quick else n


def _pow2_at_least(n: int) -> int:
    return 1 << max(10, (n - 1).bit_length())


def _build_package():
    """vector_add generated into a fresh temporary folder: the benchmark measures this checkout's
    generator and templates, never a cached build of another version."""
    import tempfile

    from ringgen.build import collect
    from ringgen.codegen.writer import write_unit
    from ringgen.runtime.cache import load_codecs

    unit = collect(str(ROOT / "examples" / "vector_add.py"))
    pkg = write_unit(unit, tempfile.mkdtemp(prefix="ringgen-bench-"))
    return pkg, unit, load_codecs(pkg)


def _requests(dtype: np.dtype, n: int) -> np.ndarray:
    arr = np.zeros(n, dtype=dtype)
    arr["id"] = np.arange(n)
    arr["a"] = 1.0
    arr["b"] = np.arange(n, dtype=np.float32)
    return arr


class _Ringgen:
    """One ringgen series (a mode): launches the kernel for a batch size, times round trips."""

    def __init__(self, mode: str, device, package, group_size=None, groups=1, spin_s=None) -> None:
        self.mode = mode
        self.name = mode if groups == 1 else f"{mode} x{groups} groups"
        if spin_s is not None:
            self.name += f" spin {spin_s * 1e6:g} us"
        self.spin_s = spin_s  # None: the handle's own free_poll_s
        self.device = device
        self.group_size = group_size
        self.groups = groups
        self.pkg, unit, self.codecs = package
        self.spec = unit.kernels[0]
        self.dtype = self.codecs["AddRequest"].dtype
        self.extra: dict = {}

    def measure(self, batch: int, repeat: int) -> np.ndarray:
        """Launch, check one batch's results, time ``repeat`` round trips, terminate."""
        from ringgen.runtime.opencl import OpenclKernel

        arr = _requests(self.dtype, batch)
        opts = {}
        if self.mode == "persistent":
            opts["groups"] = self.groups
            if self.group_size:
                opts["group_size"] = self.group_size
        k = OpenclKernel.open(
            self.spec,
            str(self.pkg),
            codecs=self.codecs,
            device=self.device,
            mode=self.mode,
            capacity=_pow2_at_least(batch),
            **opts,
        )
        try:
            k.send_batch(arr)
            parts, got = [], 0
            while got < batch:
                part = k.receive_batch(max_n=batch - got, timeout=5.0)
                parts.append(part["sum"].copy())
                got += len(part)
            if not np.array_equal(np.concatenate(parts), arr["a"] + arr["b"]):
                raise SystemExit(f"{self.mode} batch {batch}: wrong results")

            if self.spin_s is not None:
                k.free_poll_s = self.spin_s
            out = np.empty(batch, dtype=k.out_codec.dtype)

            def round_trip(k=k, arr=arr, n=batch, out=out):
                k.send_batch(arr)
                if len(k.receive_batch(n, timeout=10.0, min_n=n, out=out)) != n:
                    raise SystemExit(f"{self.mode} batch {n}: replies missing after 10 s")

            samples = _common.time_calls(round_trip, repeat, warmup=2)
            stats = k.stats()
        finally:
            k.terminate(timeout=5.0)
        self.extra = {
            "group_size": k.group_size,
            "groups": getattr(k, "groups", 1),
            "capacity": k.capacity,
            "output_stalls": stats.output_stalls,
        }
        return samples


class _Baseline:
    """What a PyOpenCL user writes without ringgen: one launch per batch, a copy in and a copy out,
    buffers allocated once."""

    name = "launch per batch"

    def __init__(self, device, biggest: int) -> None:
        import pyopencl as cl

        from ringgen.runtime.opencl.build import context_for

        self.cl = cl
        ctx = context_for(device)
        self.queue = cl.CommandQueue(ctx, device.device)
        self.kernel = cl.Kernel(cl.Program(ctx, BASELINE_SOURCE).build(), "add")
        self.req = np.dtype(
            {
                "names": ["id", "a", "b"],
                "formats": ["<i8", "<f4", "<f4"],
                "offsets": [0, 8, 12],
                "itemsize": 16,
            }
        )
        self.resp = np.dtype(
            {"names": ["id", "sum"], "formats": ["<i8", "<f4"], "offsets": [0, 8], "itemsize": 16}
        )
        mf = cl.mem_flags
        self.in_buf = cl.Buffer(ctx, mf.READ_ONLY, biggest * self.req.itemsize)
        self.out_buf = cl.Buffer(ctx, mf.WRITE_ONLY, biggest * self.resp.itemsize)
        self.kernel.set_args(self.in_buf, self.out_buf)
        self.extra: dict = {}

    def measure(self, batch: int, repeat: int) -> np.ndarray:
        cl, queue, kernel = self.cl, self.queue, self.kernel
        arr = _requests(self.req, batch)
        out = np.empty(batch, dtype=self.resp)

        def round_trip(arr=arr, out=out, n=batch):
            cl.enqueue_copy(queue, self.in_buf, arr, is_blocking=False)
            cl.enqueue_nd_range_kernel(queue, kernel, (n,), None)
            cl.enqueue_copy(queue, out, self.out_buf, is_blocking=True)

        samples = _common.time_calls(round_trip, repeat, warmup=2)
        if not np.array_equal(out["sum"], arr["a"] + arr["b"]):
            raise SystemExit(f"baseline batch {batch}: wrong results")
        return samples


#: Each batch size is measured in this many rounds, every series once per round, so that load from
#: other processes on a shared machine falls on all series alike.
ROUNDS = 4
SETTLE_S = 0.5


def run(series, batches, quick: bool) -> list[Result]:
    """Measure every series at every batch size, interleaved in rounds; one Result per pair."""
    log = logging.getLogger("ringgen")
    rows = []
    for batch in batches:
        per_round = max(2, _repeats(batch, quick) // ROUNDS)
        samples = {s.name: [] for s in series}
        for _ in range(ROUNDS):
            for s in series:
                samples[s.name].append(s.measure(batch, per_round))
                # PoCL's worker threads keep polling for a while after a kernel ends; let them
                # settle so that they do not slow down the next series.
                time.sleep(SETTLE_S)
        for s in series:
            rows.append(
                Result(s.name, batch, summarize(np.concatenate(samples[s.name])), dict(s.extra))
            )
        log.info("batch %d done", batch)
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--modes", default="persistent,relaunch", help="comma-separated modes")
    ap.add_argument("--batches", default=",".join(map(str, BATCH_SIZES)))
    ap.add_argument(
        "--device", default=None, help="OpenCL device pattern (else $RINGGEN_OPENCL_DEVICE)"
    )
    ap.add_argument("--quick", action="store_true", help="fewer repetitions")
    ap.add_argument(
        "--group-size",
        type=int,
        default=None,
        help="work-items of the resident group (default: the backend's)",
    )
    ap.add_argument("--no-baseline", action="store_true", help="skip the launch-per-batch baseline")
    ap.add_argument(
        "--groups",
        type=int,
        default=1,
        help="also measure persistent mode with this many resident groups (1: skip)",
    )
    ap.add_argument(
        "--spin-us",
        type=float,
        default=None,
        help="also measure persistent mode with the host polling this long before it sleeps",
    )
    ap.add_argument("--name", default="opencl", help="results file stem under bench/results/")
    ap.add_argument(
        "--out-dir", default=None, help="where to write the results (default bench/results)"
    )
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    from ringgen.runtime.opencl.build import select_device

    device = select_device(args.device)
    batches = [int(b) for b in args.batches.split(",")]
    modes = [m for m in args.modes.split(",") if m]
    if "persistent" in modes and not device.persistent:
        print(f"{device.label}: no fine-grained SVM with atomics; skipping persistent mode")
        modes.remove("persistent")
    t0 = time.perf_counter()
    # The CI machine is shared: the load average beside every figure says how quiet it was.
    load_before = os.getloadavg()
    package = _build_package()
    series = [_Ringgen(m, device, package, args.group_size) for m in modes]
    if "persistent" in modes and args.groups > 1:
        series.insert(1, _Ringgen("persistent", device, package, args.group_size, args.groups))
    if "persistent" in modes and args.spin_us is not None:
        spin = args.spin_us * 1e-6
        series.insert(1, _Ringgen("persistent", device, package, args.group_size, spin_s=spin))
    if not args.no_baseline:
        series.append(_Baseline(device, max(batches)))
    rows = run(series, batches, args.quick)
    load_after = os.getloadavg()
    title = f"vector_add round trip, 16-byte messages, {device.label}"
    print()
    print_table(rows, title)
    print(f"load average before {load_before}, after {load_after}")
    path = write_json(
        args.name,
        rows,
        device.label,
        extra={
            "message_bytes": 16,
            "quick": args.quick,
            "rounds": ROUNDS,
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in load_after],
            "wall_s": round(time.perf_counter() - t0, 1),
        },
        directory=args.out_dir,
    )
    png = plot(args.name, rows, title, directory=args.out_dir)
    print(f"\nwrote {path} and {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
