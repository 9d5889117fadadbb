"""Whole-batch round trip on the c backend against the memory floor: ``send_batch`` + one
``receive_batch(min_n=n)`` versus two plain numpy copies of the same bytes.

The batch is a structured array of the request dtype (examples/vector_add.py: 16-byte
``AddRequest`` in, 16-byte ``AddResponse`` out), so ``send_batch`` does no per-row work: it copies the
array into the ring. The baseline is what moving those bytes costs at all: ``np.copyto`` of the
requests' bytes into a buffer, then of the replies' bytes out of one (as ``uint8`` views: numpy
copies a structured array field by field, 10-20 times slower; both buffers allocated and touched once
before timing, as the ring is). Three series, taking turns call by call in one process, each
reported by its median and its fastest call (the cost itself, least disturbed by other load):

- ``ringgen``: ``send_batch(requests)`` then ``receive_batch(n, min_n=n)`` (a new reply array);
- ``ringgen out=``: the same, the replies copied into one reused array (``out=``);
- ``2 x np.copyto``: the two copies alone.

One batch is checked first: every reply, in order, sum = a + b bit for bit. The queues have ``capacity`` = n unless
``--capacity`` says otherwise (then ``send_batch`` waits for room and spills, and the replies come
in several steps of one call).

    .venv/bin/python bench/batch_copy.py                # table, ratios, bench/results/batch_copy.{json,png}
    .venv/bin/python bench/batch_copy.py --quick --capacity 65536
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

import _common  # noqa: E402
from _common import Result, plot, print_table, summarize, write_json  # noqa: E402
from opencl import _build_package, _requests  # noqa: E402

BATCHES = (65_536, 1_048_576)
SERIES = ("ringgen", "ringgen out=", "2 x np.copyto")


def _repeats(batch: int, quick: bool) -> int:
    """Timed calls per series."""
    n = 200 if batch <= 65_536 else 30
    return max(3, n // 5) if quick else n


def _calls(k, requests: np.ndarray, out: np.ndarray) -> dict:
    """One zero-argument call per series."""
    n = len(requests)
    # Bytes, not rows: numpy copies a structured array field by field, far below memory speed.
    src_in, src_out = requests.view(np.uint8), out.view(np.uint8)
    into, replies = np.empty_like(src_in), np.empty_like(src_out)
    np.copyto(into, src_in)  # touch every page before timing, as the ring's are
    np.copyto(replies, src_out)

    def copies() -> None:
        np.copyto(into, src_in)
        np.copyto(replies, src_out)

    def whole_batch() -> None:
        k.send_batch(requests)
        if len(k.receive_batch(n, timeout=60.0, min_n=n)) != n:
            raise SystemExit(f"batch {n}: replies missing")

    def whole_batch_out() -> None:
        t0 = time.perf_counter_ns()
        k.send_batch(requests)
        t1 = time.perf_counter_ns()
        if len(k.receive_batch(n, timeout=60.0, min_n=n, out=out)) != n:
            raise SystemExit(f"batch {n}: replies missing")
        split.append(((t1 - t0) * 1e-9, (time.perf_counter_ns() - t1) * 1e-9))

    split: list = []  # (send_batch, receive_batch) seconds of each "ringgen out=" call
    return dict(zip(SERIES, (whole_batch, whole_batch_out, copies))), split


def _time_interleaved(calls: dict, repeat: int) -> dict:
    """Seconds of each call, the series taking turns call by call (after one untimed call each), so
    a busy machine slows every series alike."""
    for call in calls.values():
        call()
    clock = time.perf_counter_ns
    samples = {name: np.empty(repeat) for name in calls}
    for i in range(repeat):
        for name, call in calls.items():
            t0 = clock()
            call()
            samples[name][i] = (clock() - t0) * 1e-9
    return samples


def _check(k, requests: np.ndarray, out: np.ndarray) -> None:
    """One batch through the kernel: every reply, in order, with sum = a + b bit for bit."""
    n = len(requests)
    k.send_batch(requests)
    got = k.receive_batch(n, timeout=60.0, min_n=n, out=out)
    expect = (requests["a"] + requests["b"]).astype(np.float32)
    if len(got) != n or not np.array_equal(got["id"], requests["id"]):
        raise SystemExit(f"batch {n}: {len(got)} replies, or out of order")
    if not np.array_equal(got["sum"].view(np.uint32), expect.view(np.uint32)):
        raise SystemExit(f"batch {n}: wrong sums")


def _cuda_calls(k, requests: np.ndarray, out: np.ndarray) -> dict:
    """The CUDA run's extra series: the copies into and out of the mapped rings themselves (pinned
    memory, as bench/cuda.py's ``host-copies``), and ``out=`` with the input published once, not
    in pieces (``publish_chunk`` None)."""
    src_in = requests.view(np.uint8)
    ring_in, ring_out = k.inq._u8[: src_in.size], k.outq._u8[: out.nbytes]
    sink = np.empty(out.nbytes, np.uint8)
    np.copyto(sink, ring_out)

    def pinned_copies() -> None:
        np.copyto(ring_in, src_in)
        np.copyto(sink, ring_out)

    def whole_batch_out_unchunked() -> None:
        chunk, k.inq.publish_chunk = k.inq.publish_chunk, None
        try:
            k.send_batch(requests)
            if len(
                k.receive_batch(len(requests), timeout=60.0, min_n=len(requests), out=out)
            ) != len(requests):
                raise SystemExit("replies missing")
        finally:
            k.inq.publish_chunk = chunk

    return {"2 x copy, pinned": pinned_copies, "ringgen out= unchunked": whole_batch_out_unchunked}


def _open(backend: str, cap: int):
    """A vector_add handle on ``backend`` with queues of ``cap`` slots, and its codecs."""
    if backend == "cuda":
        import ringgen as rg
        from examples import vector_add

        k = rg.launch(vector_add.vector_add, backend="cuda", capacity=cap)
        return k, {"AddRequest": k.in_codec, "AddResponse": k.out_codec}
    from ringgen.runtime.backends import load_backend

    pkg, unit, codecs = _build_package()
    k = load_backend(backend).open(unit.kernels[0], str(pkg), codecs=codecs, capacity=cap)
    return k, codecs


def _open_dtypes() -> tuple:
    """vector_add's request and reply dtypes."""
    import ringgen as rg
    from examples.vector_add import AddRequest, AddResponse

    return rg.dtype_of(AddRequest), rg.dtype_of(AddResponse)


def run(batches, quick: bool, capacity, backend: str = "c") -> list[Result]:
    rows = []
    for batch in batches:
        cap = capacity or max(2, 1 << (batch - 1).bit_length())
        k, codecs = _open(backend, cap)
        requests = _requests(codecs["AddRequest"].dtype, batch)
        out = np.zeros(batch, dtype=codecs["AddResponse"].dtype)
        try:
            _check(k, requests, out)
            calls, split = _calls(k, requests, out)
            if backend == "cuda":
                calls.update(_cuda_calls(k, requests, out))
            samples = _time_interleaved(calls, _repeats(batch, quick))
            stats = k.stats()
        finally:
            k.terminate(timeout=60.0)
        extra = {"capacity": cap, "spilled": stats.spilled, "bytes_each_way": requests.nbytes}
        for s in samples:
            best = {"min_s": float(samples[s].min())}
            if s == "ringgen out=":  # where the time goes: the send's copy, then the wait
                sends, receives = np.array(split[1:]).T  # the first call is untimed
                best.update(send_p50_s=float(np.median(sends)))
                best.update(receive_p50_s=float(np.median(receives)))
            rows.append(Result(s, batch, summarize(samples[s]), {**extra, **best}))
    return rows


def ratios(rows: list[Result], key: str) -> dict:
    """Each ringgen series' time over the copies', per batch size: ``key`` "p50" (the median call)
    or "min" (the fastest call: the cost itself, least disturbed by other load)."""
    by = {
        (r.series, r.batch): r.seconds["p50"] if key == "p50" else r.extra["min_s"]
        for r in rows
        if key == "p50" or "min_s" in r.extra  # the PyCUDA rows have no fastest call
    }
    out = {}
    for batch in sorted({r.batch for r in rows}):
        base = by.get(("2 x copy, pinned", batch), by[("2 x np.copyto", batch)])
        out[str(batch)] = {
            s: v / base for (s, b), v in by.items() if b == batch and s.startswith("ringgen")
        }
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", default=",".join(map(str, BATCHES)))
    ap.add_argument("--capacity", type=int, default=None, help="queue slots (default: the batch)")
    ap.add_argument("--quick", action="store_true", help="fewer repetitions")
    ap.add_argument("--name", default="batch_copy", help="results file stem under bench/results/")
    ap.add_argument(
        "--backend",
        default="c",
        choices=("c", "cuda"),
        help="cuda: also the copies into and out of the mapped rings and PyCUDA launch per batch",
    )
    args = ap.parse_args(argv)
    from ringgen.runtime import available_backends

    if args.backend not in available_backends():
        print(f"the {args.backend} backend is not available here")
        return 1
    t0 = time.perf_counter()
    load_before = os.getloadavg()
    batches = [int(b) for b in args.batches.split(",")]
    rows = run(batches, args.quick, args.capacity, args.backend)
    cpu = platform.processor() or platform.machine()
    device = f"host CPU {cpu}, {os.cpu_count()} cores, backend {args.backend}"
    if args.backend == "cuda":
        import pycuda.driver as drv

        from bench.cuda import bench_pycuda

        device += f", {drv.Device(0).name()}"
        in_dtype, out_dtype = _open_dtypes()
        rows += bench_pycuda(in_dtype, out_dtype, batches, args.quick, np.random.default_rng(3))
    title = f"vector_add whole batch (send_batch + receive_batch(min_n=n)) vs 2 copies, {device}"
    print()
    print_table(rows, title)
    found = {key: ratios(rows, key) for key in ("p50", "min")}
    print()
    for key, table in found.items():
        for batch, per in table.items():
            print(
                f"{key:>3} {int(batch):>9,}: "
                + ", ".join(f"{s} / the copies = {r:.2f}" for s, r in per.items())
            )
    for r in rows:
        if "send_p50_s" in r.extra:
            print(
                f"{r.batch:>9,}: ringgen out= p50 split: send_batch {r.extra['send_p50_s'] * 1e3:.2f}"
                f" ms, receive_batch {r.extra['receive_p50_s'] * 1e3:.2f} ms"
            )
    load_after = os.getloadavg()
    print(f"\nload average before {load_before[0]:.2f}, after {load_after[0]:.2f}")
    path = write_json(
        args.name,
        rows,
        device,
        extra={
            "message_bytes": 16,
            "quick": args.quick,
            "ratios": found,
            "loadavg_before": load_before,
            "loadavg_after": load_after,
            "wall_s": round(time.perf_counter() - t0, 1),
        },
    )
    png = plot(args.name, rows, title)
    print(f"wrote {path} and {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
