"""CUDA benchmark: a resident ring kernel against one kernel launch per batch, side by side.

Runs ``examples/vector_add`` (16-byte request, 16-byte reply) on the first CUDA device, in one process:

- ``ringgen``        the public API: ``send``/``receive`` for one message, ``send_batch`` +
                     ``receive_batch`` (copies into and out of the rings) for batches;
- ``ringgen-out``    the same batches received into one reused array (``receive_batch(out=)``);
- ``ringgen-generic`` one message through the generic host path (the specialised ``send``/
                     ``receive`` closures switched off), for comparison in the same process;
- ``host-copies``   the two numpy copies the copying API cannot avoid (requests into pinned memory,
                     replies out of it), timed in the same run: the copying API's own floor;
- ``ringgen-zc``     the zero-copy API: ``reserve``/``commit`` + ``receive_view``/``release``;
- ``pycuda-launch``  what a PyCUDA user writes otherwise: pinned buffers, ``memcpy_htod_async``, one
                     launch, ``memcpy_dtoh_async``, synchronize, per batch;
- ``cupy-launch``    the same with CuPy's ``RawKernel``;
- ``cuda-graph``     the same copy in, kernel, copy out, captured once per batch size as a CUDA graph
                     (CuPy's stream capture) and replayed per batch;
- ``floor``          what nothing can beat, measured in the same run (``bench/floor_echo.py``): for
                     one message a hand-written persistent echo kernel on a host-mapped slot, for a
                     batch the copy engines moving its bytes both ways at once with no kernel.

Every series is checked against numpy before it is timed; each row also gets ``x_floor``, its p50
over the floor's at the same batch size. Percentiles (p50, p90, p99, p99.9) come from an
HdrHistogram of the round trips (``bench/_common.summarize``; numpy's, with a warning and a note in
the JSON, where the ``hdrhistogram`` package is missing). Round trip = host send -> handler -> host
receive, per batch; throughput = batch / median. For the zero-copy series, as for the baselines, the
input sits in pinned memory before the clock starts (the ring is filled once: a producer writes into
``reserve``'s view where a PyCUDA user fills its pinned buffer).

    python bench/cuda.py                       # table, bench/results/cuda.json and cuda.png
    python bench/cuda.py --quick               # fewer repeats
    python bench/cuda.py --plot-only bench/results/cuda.json
    python bench/cuda.py --host-path           # no GPU: the host's share of one round trip
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

_HERE = Path(__file__).resolve().parent
# Run as a script, bench/ is sys.path[0], and this file, cuda.py, then shadows the ``cuda`` package
# CuPy 14 imports (cuda.pathfinder, cuda.bindings): ``import cupy`` failed on the H100 and the H200
# for that reason alone. This folder's modules are imported as ``bench.*`` from the repository root.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

from bench._common import (
    BATCH_SIZES,
    RESULTS_DIR,
    Result,
    percentile_method,
    plot,
    print_table,
    summarize,
    write_json,
)  # noqa: E402
from bench.floor_echo import bench_copy_floor, bench_echo_floor  # noqa: E402

log = logging.getLogger("ringgen.bench")

BASELINE_SOURCE = r"""
struct AddRequest { long long id; float a; float b; };
struct AddResponse { long long id; float sum; };
extern "C" __global__ void vector_add_batch(const AddRequest* in, AddResponse* out, int n)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) { AddRequest r = in[i]; AddResponse o; o.id = r.id; o.sum = r.a + r.b; out[i] = o; }
}
"""


def _repeats(batch: int, quick: bool) -> int:
    base = 2000 if batch <= 64 else 400 if batch <= 4096 else 100 if batch <= 65536 else 30
    if batch == 1:
        base = 20000
    return max(10, base // (5 if quick else 1))


def _requests(dtype: np.dtype, n: int, rng: np.random.Generator) -> np.ndarray:
    arr = np.zeros(n, dtype=dtype)
    arr["id"] = rng.integers(-(2**62), 2**62, n)
    arr["a"] = rng.standard_normal(n).astype(np.float32)
    arr["b"] = rng.standard_normal(n).astype(np.float32)
    return arr


class WrongReplies(Exception):
    """A series gave replies that differ from numpy's: it is reported and left out of the table."""


def _check(kind: str, req: np.ndarray, out: np.ndarray) -> None:
    if len(out) != len(req):
        raise WrongReplies(f"{kind}: {len(out)} replies to {len(req)} requests")
    bad = np.flatnonzero((out["id"] != req["id"]) | (out["sum"] != req["a"] + req["b"]))
    if len(bad):
        raise WrongReplies(
            f"{kind}: {len(bad)} wrong replies, first at {bad[0]}: "
            f"{out[bad[0]]} for {req[bad[0]]}"
        )


def _report(row: Result) -> Result:
    log.info(
        "%-16s batch %8d  p50 %9.1f us  p99 %9.1f us  p99.9 %9.1f us  %8.1f M msg/s",
        row.series,
        row.batch,
        row.seconds["p50"] * 1e6,
        row.seconds["p99"] * 1e6,
        row.seconds["p99.9"] * 1e6,
        row.throughput / 1e6,
    )
    return row


def _time(fn, repeat: int, warmup: int = 3) -> np.ndarray:
    for _ in range(warmup):
        fn()
    out = np.empty(repeat)
    clock = time.perf_counter_ns
    for i in range(repeat):
        t0 = clock()
        fn()
        out[i] = (clock() - t0) * 1e-9
    return out


# ---------------------------------------------------------------------------------- ringgen


def bench_ringgen(spec, pkg, codecs, source, batches, quick, workers, rng) -> list[Result]:
    from ringgen.runtime.cuda import CudaKernelHandle

    cap = 1 << max(12, (2 * max(batches)).bit_length() - 1)
    k = CudaKernelHandle.open(
        spec, str(pkg), codecs=codecs, capacity=cap, workers=workers, source=source
    )
    rows = []
    name = "ringgen" if workers is None else f"ringgen-w{workers}"
    try:
        in_dtype, out_dtype = k.in_codec.dtype, k.out_codec.dtype
        for b in batches:
            reqs = _requests(in_dtype, b, rng)
            if b == 1:
                msg = k.in_codec.from_array(reqs)[0]
                reply = None

                def one():
                    nonlocal reply
                    k.send(msg)
                    reply = k.receive(timeout=5.0)

                one()
                if reply.id != msg.id or np.float32(reply.sum) != np.float32(msg.a) + np.float32(
                    msg.b
                ):
                    raise SystemExit(f"ringgen: wrong reply {reply!r} to {msg!r}")
                rows.append(
                    _report(Result(name, 1, summarize(_time(one, _repeats(1, quick), 100))))
                )
                # The same round trip through the generic host path (the latency path's closures
                # switched off), in the same process: what the specialised send/receive save.
                fast = k._fast_cls, k._fast_take
                k._fast_cls = k._fast_take = None
                try:
                    generic = summarize(_time(one, _repeats(1, quick), 100))
                finally:
                    k._fast_cls, k._fast_take = fast
                rows.append(_report(Result(name + "-generic", 1, generic)))
                continue

            def batch_copy():
                # The whole batch in, the whole batch out, one call each: receive_batch waits
                # for min_n replies (a loop over partial batches, as before, would concatenate).
                k.send_batch(reqs, timeout=10.0)
                got = k.receive_batch(b, timeout=10.0, min_n=b)
                if len(got) != b:
                    raise SystemExit(f"ringgen: {len(got)} of {b} replies within 10 s")
                return got

            sink = np.empty(b, dtype=out_dtype)

            def batch_copy_out():
                # The same into one array reused from call to call (receive_batch's out=).
                k.send_batch(reqs, timeout=10.0)
                got = k.receive_batch(b, timeout=10.0, min_n=b, out=sink)
                if len(got) != b:
                    raise SystemExit(f"ringgen: {len(got)} of {b} replies within 10 s")
                return got

            # What the copying API must do at least: the requests' bytes into pinned memory and
            # the replies' bytes out of it (numpy copies, the same sizes), timed in this run.
            pinned_in = k.inq.slots[:b].view(np.uint8) if b <= len(k.inq.slots) else None
            src_bytes = reqs.view(np.uint8)
            sink_bytes = np.empty(b * out_dtype.itemsize, np.uint8)

            def two_copies():
                np.copyto(pinned_in[: src_bytes.size], src_bytes)
                np.copyto(sink_bytes, pinned_in[: sink_bytes.size])

            try:
                _check(f"{name} batch {b}", reqs, batch_copy())
            except WrongReplies as exc:
                log.error("%s", exc)
                continue
            rows.append(_report(Result(name, b, summarize(_time(batch_copy, _repeats(b, quick))))))
            try:
                _check(f"{name}-out batch {b}", reqs, batch_copy_out())
                timed = summarize(_time(batch_copy_out, _repeats(b, quick)))
                rows.append(_report(Result(name + "-out", b, timed)))
            except WrongReplies as exc:
                log.error("%s", exc)
            if pinned_in is not None and pinned_in.size >= max(src_bytes.size, sink_bytes.size):
                rows.append(
                    _report(
                        Result("host-copies", b, summarize(_time(two_copies, _repeats(b, quick))))
                    )
                )

        # zero-copy: fill the whole ring once with the pattern, then reserve/commit laps over it.
        for b in batches:
            if b == 1:
                continue
            reqs = _requests(in_dtype, b, rng)
            # Align the tail to a multiple of b, so every lap's reservation is contiguous and
            # starts at the same offset of the pattern.
            pad = (-k.inq.tail) % b
            if pad:
                k.send_batch(np.zeros(pad, dtype=in_dtype), timeout=10.0)
                taken = 0
                while taken < pad:
                    taken += len(k.receive_batch(pad - taken, timeout=10.0))
            full = k.inq.slots
            for start in range(0, len(full), b):
                full[start : start + b] = reqs[: len(full) - start]
            sink = np.empty(b, dtype=out_dtype)

            def zero_copy(check=False):
                v = k.reserve(b)
                if len(v) != b:
                    raise SystemExit(f"ringgen-zc: reserve({b}) gave {len(v)}")
                k.commit(b)
                got = 0
                while got < b:
                    view = k.receive_view(b - got, timeout=10.0, min_n=b - got)
                    if not len(view):
                        raise SystemExit("ringgen-zc: timed out")
                    if check:
                        sink[got : got + len(view)] = view
                    got += len(view)
                    k.release(len(view))

            zero_copy(check=True)
            try:
                _check(f"{name}-zc batch {b}", reqs, sink)
            except WrongReplies as exc:
                log.error("%s", exc)
                continue
            rows.append(
                _report(Result(name + "-zc", b, summarize(_time(zero_copy, _repeats(b, quick)))))
            )
    finally:
        stats = k.terminate(timeout=5.0)
        log.info("ringgen stats: %s", stats)
    return rows


# --------------------------------------------------------------------------------- baselines


def bench_pycuda(in_dtype, out_dtype, batches, quick, rng) -> list[Result]:
    import pycuda.driver as drv

    from ringgen.runtime.cuda import build as cuda_build, device as cuda_device

    info = cuda_device.device_info(0)
    cubin, _ = cuda_build.compile_cubin(BASELINE_SOURCE, info.arch, what="baseline")
    mod = drv.module_from_buffer(cubin)
    fn = mod.get_function("vector_add_batch")
    stream = drv.Stream(flags=1)
    rows = []
    for b in batches:
        h_in = drv.pagelocked_empty(b, in_dtype)
        h_out = drv.pagelocked_empty(b, out_dtype)
        reqs = _requests(in_dtype, b, rng)
        h_in[:] = reqs
        d_in = drv.mem_alloc(h_in.nbytes)
        d_out = drv.mem_alloc(h_out.nbytes)
        grid = ((b + 255) // 256, 1)

        def once():
            drv.memcpy_htod_async(d_in, h_in, stream)
            fn(d_in, d_out, np.int32(b), block=(256, 1, 1), grid=grid, stream=stream)
            drv.memcpy_dtoh_async(h_out, d_out, stream)
            stream.synchronize()

        once()
        _check(f"pycuda batch {b}", reqs, h_out)
        rows.append(_report(Result("pycuda-launch", b, summarize(_time(once, _repeats(b, quick))))))
        d_in.free()
        d_out.free()
        h_in.base.free()
        h_out.base.free()
    return rows


def bench_cupy(in_dtype, out_dtype, batches, quick, rng) -> list[Result]:
    import cupy as cp  # ImportError: _run_series reports the series as unavailable

    kern = cp.RawKernel(BASELINE_SOURCE, "vector_add_batch", options=("-std=c++17",))
    stream = cp.cuda.Stream(non_blocking=True)
    rows = []
    for b in batches:
        h_in = cp.cuda.alloc_pinned_memory(b * in_dtype.itemsize)
        h_out = cp.cuda.alloc_pinned_memory(b * out_dtype.itemsize)
        a_in = np.frombuffer(h_in, in_dtype, b)
        a_out = np.frombuffer(h_out, out_dtype, b)
        reqs = _requests(in_dtype, b, rng)
        a_in[:] = reqs
        d_in = cp.empty(b * in_dtype.itemsize, dtype=cp.uint8)
        d_out = cp.empty(b * out_dtype.itemsize, dtype=cp.uint8)
        grid = ((b + 255) // 256,)

        def once():
            with stream:
                d_in.set(a_in.view(np.uint8), stream=stream)
                kern(grid, (256,), (d_in, d_out, np.int32(b)))
                d_out.get(out=a_out.view(np.uint8), stream=stream)
                stream.synchronize()

        once()
        _check(f"cupy batch {b}", reqs, a_out)
        rows.append(_report(Result("cupy-launch", b, summarize(_time(once, _repeats(b, quick))))))
    return rows


def bench_cuda_graph(in_dtype, out_dtype, batches, quick, rng) -> list[Result]:
    """Copy in, kernel, copy out captured once per batch size into a CUDA graph (CuPy's stream
    capture), replayed with one ``Graph.launch`` and a synchronize per batch."""
    import cupy as cp  # ImportError: _run_series reports the series as unavailable

    rt = cp.cuda.runtime
    kern = cp.RawKernel(BASELINE_SOURCE, "vector_add_batch", options=("-std=c++17",))
    stream = cp.cuda.Stream(non_blocking=True)
    rows = []
    for b in batches:
        n_in, n_out = b * in_dtype.itemsize, b * out_dtype.itemsize
        h_in = cp.cuda.alloc_pinned_memory(n_in)
        h_out = cp.cuda.alloc_pinned_memory(n_out)
        a_in = np.frombuffer(h_in, in_dtype, b)
        a_out = np.frombuffer(h_out, out_dtype, b)
        reqs = _requests(in_dtype, b, rng)
        a_in[:] = reqs
        d_in = cp.empty(n_in, dtype=cp.uint8)
        d_out = cp.empty(n_out, dtype=cp.uint8)
        grid = ((b + 255) // 256,)
        h2d = getattr(rt, "memcpyHostToDevice", 1)
        d2h = getattr(rt, "memcpyDeviceToHost", 2)
        with stream:
            # An empty launch first: the module is compiled and loaded outside the capture.
            kern((1,), (32,), (d_in, d_out, np.int32(0)))
            stream.synchronize()
            stream.begin_capture()
            try:
                rt.memcpyAsync(d_in.data.ptr, h_in.ptr, n_in, h2d, stream.ptr)
                kern(grid, (256,), (d_in, d_out, np.int32(b)))
                rt.memcpyAsync(h_out.ptr, d_out.data.ptr, n_out, d2h, stream.ptr)
            finally:
                graph = stream.end_capture()

        def once():
            graph.launch(stream)
            stream.synchronize()

        a_out.view(np.uint8)[:] = 0xA5  # poisoned: the replay must write every reply
        once()
        _check(f"cuda-graph batch {b}", reqs, a_out)
        rows.append(_report(Result("cuda-graph", b, summarize(_time(once, _repeats(b, quick))))))
    return rows


def bench_floor(in_dtype, out_dtype, batches, quick, rng) -> list[Result]:
    """The floor at each batch size (``bench/floor_echo.py``): the persistent echo for one message,
    the copy engines moving the batch both ways at once for more."""
    rows = []
    for b in batches:
        if b == 1:
            samples = bench_echo_floor(_repeats(1, quick), _time, rng)
            kind = "persistent echo kernel, host-mapped 16-byte slot"
        else:
            samples = bench_copy_floor(in_dtype, out_dtype, b, _repeats(b, quick), _time)
            kind = "copy engines, requests in and replies out at once, no kernel"
        rows.append(_report(Result("floor", b, summarize(samples), {"floor": kind})))
    return rows


def _run_series(name, fn, failed: dict, *args) -> list[Result]:
    """Run one series; an error is logged and recorded (``failed`` in the JSON), and the run goes on
    with the other series."""
    try:
        return fn(*args)
    except ImportError as exc:
        log.warning("series %s is unavailable: %s", name, exc)
        failed[name] = f"unavailable: {type(exc).__name__}: {exc}"
        return []
    except Exception as exc:  # noqa: BLE001 - reported by name, kept in the JSON
        log.exception("series %s failed", name)
        failed[name] = f"{type(exc).__name__}: {exc}"
        return []


def add_floor_ratios(rows: list[Result]) -> None:
    """Set ``extra["x_floor"]`` on every row whose batch size has a ``floor`` row: its p50 over the
    floor's p50 (the floor row itself gets 1.0)."""
    floor = {r.batch: r.seconds["p50"] for r in rows if r.series == "floor"}
    for r in rows:
        if floor.get(r.batch):
            r.extra["x_floor"] = r.seconds["p50"] / floor[r.batch]


def _driver_info() -> dict:
    """The display driver's version (nvidia-smi) and the CUDA driver API version (PyCUDA)."""
    import subprocess

    import pycuda.driver as drv

    out = {"cuda_driver_api": drv.get_driver_version()}
    try:
        smi = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
        )
        out["driver"] = smi.stdout.strip().splitlines()[0] if smi.returncode == 0 else None
    except (OSError, subprocess.SubprocessError, IndexError):
        out["driver"] = None
    return out


# -------------------------------------------------------------------------------------- main


def _kernel_source(unit, spec, pkg, source_file):
    if source_file:
        return Path(source_file).read_text()
    cu = Path(pkg) / f"{unit.name}.cu"
    if cu.is_file():
        return cu.read_text()
    from ringgen.codegen import cuda as cuda_codegen

    return cuda_codegen.emit(unit)[cuda_codegen.source_name(unit)]


def bench_host_path(cycles: int = 200_000, repeats: int = 5) -> dict:
    """The host's share of one round trip, without a GPU: ``send`` + ``receive`` of a reply that is
    already there, through a ``CudaKernelHandle`` whose mapped page and rings are numpy arrays (the
    kernel's part is one store of the output tail). Returns ns per cycle, best of ``repeats``."""
    from examples.vector_add import AddRequest, vector_add
    from ringgen.runtime import cuda as C
    from ringgen.jit import built_package
    from ringgen.runtime.cuda.queues import InputRing, PositionalOutput

    pkg, codecs = built_package(vector_add.spec, ("cuda",))
    cap = 1024
    k = C.CudaKernelHandle(vector_add.spec, str(pkg), codecs=codecs, capacity=cap)
    page = np.zeros(C._PAGE, np.uint8)
    k._words = words = memoryview(page).cast("Q")
    fmt = k.format
    k.inq = InputRing(
        np.zeros(cap * fmt.in_slot.itemsize, np.uint8),
        fmt.in_slot,
        cap,
        words,
        C._INQ_OFF // 8,
        k.in_codec,
    )
    k.outq = PositionalOutput(
        np.zeros(cap * fmt.out_slot.itemsize, np.uint8),
        fmt.out_slot,
        cap,
        words,
        C._OUTQ_OFF // 8,
        C._SIDE_OFF // 8,
        np.zeros(cap, np.uint32),
        k.out_codec,
    )
    k._setup_fast_paths()
    k._launched = k._accepting = True
    msg, out_tail, inq = AddRequest(id=1, a=1.0, b=2.0), C._OUTQ_OFF // 8, k.inq
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter_ns()
        for _ in range(cycles):
            k.send(msg)
            words[out_tail] = inq.tail  # the kernel's part: the reply is published
            k.receive()
        best = min(best, (time.perf_counter_ns() - t0) / cycles)
    return {"send_receive_ns": best, "cycles": cycles}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="fewer repeats (a smoke run)")
    ap.add_argument(
        "--batches", type=lambda s: [int(x) for x in s.split(",")], default=list(BATCH_SIZES)
    )
    ap.add_argument(
        "--workers",
        type=lambda s: [int(x) for x in s.split(",")],
        default=None,
        help="worker blocks to compare (default: the loader's default only)",
    )
    ap.add_argument("--source", help="benchmark this .cu text instead of the generated one")
    ap.add_argument(
        "--out", type=Path, default=RESULTS_DIR, help="folder for cuda.json and cuda.png"
    )
    ap.add_argument("--no-baselines", action="store_true")
    ap.add_argument("--plot-only", type=Path, help="only draw the PNG from an existing JSON")
    ap.add_argument(
        "--host-path", action="store_true", help="only the host's share of a round trip (no GPU)"
    )
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    if args.host_path:
        r = bench_host_path(20_000 if args.quick else 200_000)
        print(f"send + receive of a ready reply, host only: {r['send_receive_ns']:.0f} ns")
        return 0

    if args.plot_only:
        doc = json.loads(args.plot_only.read_text())
        rows = [Result.from_json(r) for r in doc["results"]]
        print_table(rows, f"cuda: {doc['device']}", long=True)
        print(
            plot(
                "cuda",
                rows,
                f"ring kernel vs launch per batch: {doc['device']}",
                args.out.parent if args.out.suffix else args.out,
            )
        )
        return 0

    from ringgen.build import collect
    from ringgen.runtime.cuda import device as cuda_device
    from ringgen.jit import built_package

    unit = collect("examples/vector_add.py")
    spec = unit.kernels[0]
    pkg, codecs = built_package(spec, ("cuda",))
    source = _kernel_source(unit, spec, pkg, args.source)
    info = cuda_device.device_info(0)
    rng = np.random.default_rng(12345)
    rows: list[Result] = []
    for w in args.workers or [None]:
        rows += bench_ringgen(spec, pkg, codecs, source, args.batches, args.quick, w, rng)
    in_dtype, out_dtype = codecs["AddRequest"].dtype, codecs["AddResponse"].dtype
    failed: dict = {}
    if not args.no_baselines:
        b_args = (in_dtype, out_dtype, args.batches, args.quick, rng)
        rows += _run_series("pycuda-launch", bench_pycuda, failed, *b_args)
        rows += _run_series("cupy-launch", bench_cupy, failed, *b_args)
        rows += _run_series("cuda-graph", bench_cuda_graph, failed, *b_args)
    rows += _run_series(
        "floor", bench_floor, failed, in_dtype, out_dtype, args.batches, args.quick, rng
    )
    add_floor_ratios(rows)
    device = f"{info.name} ({info.arch}, {info.sm_count} SMs)"
    print_table(rows, f"cuda: {device}", long=True)
    path = write_json(
        "cuda",
        rows,
        device,
        extra={
            "kernel": "examples/vector_add",
            "message_bytes": int(in_dtype.itemsize),
            **_driver_info(),
            "percentiles": percentile_method(),
            "quick": bool(args.quick),
            "floor": {
                "1": "persistent echo kernel on a host-mapped 16-byte slot, Python host loop "
                "(bench/floor_echo.py)",
                ">1": "copy engines moving the batch's requests in and replies out at once, "
                "two streams, pinned memory, no kernel",
            },
            "x_floor": "p50 over the floor's p50 at the same batch size",
            "failed": failed,
        },
        directory=args.out,
    )
    print(path)
    try:
        print(plot("cuda", rows, f"ring kernel vs launch per batch: {device}", args.out))
    except ImportError:
        log.warning("matplotlib is missing: no PNG (run with --plot-only %s where it is)", path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
