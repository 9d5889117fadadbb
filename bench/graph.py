"""Graph benchmark (issue 15): 1-, 2-, 4- and 8-stage pipelines, each graph strategy, against the
same stages run as separate kernels with a host round trip between stages.

The stages (bench/graph_stages.py) are eight kernels of one shape (``Val {i64 id; i64 v}`` in and
out, ``v + 1``). For each pipeline length L and batch size B (1, 4,096, 65,536) one round trip is:

- ``graph/<strategy>``: ``rg.launch(rg.pipeline(stage1..stageL), strategy=...)``; ``send_batch`` of
  B messages into the entry, then ``receive_batch`` from the exit until all B replies are in;
- ``host round trip``: what a user does without graphs: L kernels launched one by one, each
  batch sent into stage 1, its B replies received, sent into stage 2, ... (on CUDA, which runs one
  resident kernel per process, the batch passes L times through one resident stage instead: the
  same hops, recorded as ``baseline`` in the JSON).

Every configuration's replies are checked once (``v`` grew by L, ids in order) before timing.
Reported: p50 and p99 per round trip (HdrHistogram), throughput (B / p50) and the per-hop latency
``(p50(8 stages) - p50(1 stage)) / 7`` at every batch size, per series. JSON and a plot go to
``bench/results/graph-<backend>.{json,png}`` with the device and commit.

    .venv/bin/python bench/graph.py --backend c            # also: cpu, opencl, cuda
    .venv/bin/python bench/graph.py --backend opencl --mode relaunch --quick
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import sys
import time
from pathlib import Path

# A persistent PoCL kernel holds one PoCL thread: an 8-stage graph and its 8-kernel baseline need
# eight at once. PoCL reads this when it starts, which is after this line in this process.
os.environ.setdefault("POCL_MAX_PTHREAD_COUNT", "16")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

import _common  # noqa: E402
from _common import Result, plot, print_table, summarize, write_json  # noqa: E402

LENGTHS = (1, 2, 4, 8)
BATCHES = (1, 4096, 65536)
REPEATS = {1: 300, 4096: 40, 65536: 10}
#: The Python reference interprets every message: fewer repetitions.
CPU_REPEATS = {1: 100, 4096: 4, 65536: 2}
TIMEOUT_S = 60.0

log = logging.getLogger("ringgen.bench.graph")


def _pow2_at_least(n: int) -> int:
    return 1 << max(10, (n - 1).bit_length())


def _batch(dtype: np.dtype, n: int) -> np.ndarray:
    arr = np.zeros(n, dtype)
    arr["id"] = np.arange(n)
    arr["v"] = np.arange(n) * 10
    return arr


def _receive_all(handle, n: int) -> np.ndarray:
    parts, got = [], 0
    deadline = time.monotonic() + TIMEOUT_S
    while got < n:
        if time.monotonic() > deadline:
            raise SystemExit(f"{handle!r}: only {got} of {n} replies within {TIMEOUT_S:g} s")
        part = handle.receive_batch(max_n=n - got, timeout=1.0)
        if len(part):
            parts.append(part)
            got += len(part)
    return np.concatenate(parts)


class _GraphSeries:
    """An L-stage pipeline launched as one graph with ``strategy``."""

    def __init__(self, backend: str, strategy: str, length: int, options: dict) -> None:
        self.backend, self.strategy, self.length, self.options = backend, strategy, length, options
        self.name = f"{length}-stage graph/{strategy}"
        self.handle = None

    def open(self, capacity: int) -> None:
        import graph_stages as gs

        import ringgen as rg

        g = rg.pipeline(*gs.STAGES[: self.length], name=f"bench{self.length}")
        self.handle = rg.launch(
            g, backend=self.backend, strategy=self.strategy, capacity=capacity, **self.options
        )

    def round_trip(self, arr: np.ndarray) -> np.ndarray:
        self.handle.send_batch(arr, timeout=TIMEOUT_S)
        return _receive_all(self.handle, len(arr))

    def close(self) -> dict:
        stats = self.handle.stats()
        self.handle.terminate(timeout=TIMEOUT_S)
        return {"spilled": stats.spilled}


class _HostSeries:
    """The same L stages as separate kernels, the host moving each batch from one to the next."""

    def __init__(self, backend: str, length: int, options: dict) -> None:
        self.backend, self.length, self.options = backend, length, options
        self.name = f"{length}-stage host round trip"
        # CUDA runs one resident kernel per process (docs/graphs.md): L passes through one stage
        self.one_kernel = backend == "cuda"
        self.handles: list = []

    def open(self, capacity: int) -> None:
        import graph_stages as gs

        import ringgen as rg

        stages = gs.STAGES[:1] if self.one_kernel else gs.STAGES[: self.length]
        for k in stages:
            self.handles.append(
                rg.launch(k, backend=self.backend, capacity=capacity, **self.options)
            )

    def round_trip(self, arr: np.ndarray) -> np.ndarray:
        for i in range(self.length):
            h = self.handles[0 if self.one_kernel else i]
            h.send_batch(arr, timeout=TIMEOUT_S)
            arr = _receive_all(h, len(arr))
        return arr

    def close(self) -> dict:
        for h in self.handles:
            h.terminate(timeout=TIMEOUT_S)
        self.handles = []
        return {"baseline": "one resident kernel, L passes" if self.one_kernel else "L kernels"}


def _measure(series, batch: int, repeat: int, dtype) -> tuple[np.ndarray, dict]:
    arr = _batch(dtype, batch)
    series.open(_pow2_at_least(batch))
    try:
        out = series.round_trip(arr)  # checked once: every reply, in order, through every stage
        if not (
            np.array_equal(out["id"], arr["id"])
            and np.array_equal(out["v"], arr["v"] + series.length)
        ):
            raise SystemExit(f"{series.name} batch {batch}: wrong replies")
        samples = _common.time_calls(lambda: series.round_trip(arr), repeat, warmup=3)
    finally:
        extra = series.close()
    return samples, extra


def _device(backend: str) -> str:
    cpu = platform.processor() or platform.machine()
    host = f"host CPU {cpu}, {os.cpu_count()} cores"
    if backend == "opencl":
        from ringgen.runtime.opencl.build import list_devices

        devices = list_devices()
        return f"{devices[0].label} ({host})" if devices else host
    if backend == "cuda":
        import pycuda.driver as drv

        drv.init()
        return drv.Device(0).name()
    return host


def _strategies(backend: str, wanted: str) -> list[str]:
    """The strategies asked for, else every one the backend runs: the host's (not on CUDA: one
    resident kernel per device and process) and the device strategies that list the backend."""
    from ringgen.runtime.graph_device import DEVICE_STRATEGIES
    from ringgen.runtime.graph_host import STRATEGIES

    if wanted:
        return [s for s in wanted.split(",") if s]
    host = [s for s in STRATEGIES if backend != "cuda"]
    return host + [s for s, backends in DEVICE_STRATEGIES.items() if backend in backends]


def per_hop(rows: list[Result]) -> dict:
    """``(p50(8 stages) - p50(1 stage)) / 7`` per series kind and batch size, in seconds."""
    out: dict = {}
    by = {(r.series, r.batch): r for r in rows}
    kinds = {r.series.split("-stage ", 1)[1] for r in rows}
    for kind in sorted(kinds):
        for batch in sorted({r.batch for r in rows}):
            one, eight = by.get((f"1-stage {kind}", batch)), by.get((f"8-stage {kind}", batch))
            if one and eight:
                out.setdefault(kind, {})[str(batch)] = (
                    eight.seconds["p50"] - one.seconds["p50"]
                ) / 7
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", default="c", help="cpu, c, opencl or cuda")
    ap.add_argument("--mode", default="persistent", help="OpenCL mode: persistent or relaunch")
    ap.add_argument("--strategies", default="", help="comma-separated (default: every one listed)")
    ap.add_argument("--lengths", default=",".join(map(str, LENGTHS)))
    ap.add_argument("--batches", default=",".join(map(str, BATCHES)))
    ap.add_argument("--quick", action="store_true", help="a fifth of the repetitions")
    ap.add_argument("--name", default="", help="results file stem (default graph-<backend>)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from ringgen.errors import BackendUnavailableError
    from ringgen.layout import layout_of

    import graph_stages as gs

    options = {"mode": args.mode} if args.backend == "opencl" else {}
    dtype = layout_of(gs.Val).dtype
    lengths = [int(x) for x in args.lengths.split(",")]
    batches = [int(x) for x in args.batches.split(",")]
    table = CPU_REPEATS if args.backend == "cpu" else REPEATS
    t0, load_before = time.perf_counter(), os.getloadavg()
    rows: list[Result] = []
    refused: dict = {}
    for length in lengths:
        series = [_HostSeries(args.backend, length, options)]
        series += [
            _GraphSeries(args.backend, s, length, options)
            for s in _strategies(args.backend, args.strategies)
        ]
        for s in series:
            for batch in batches:
                repeat = max(3, table[batch] // (5 if args.quick else 1))
                try:
                    samples, extra = _measure(s, batch, repeat, dtype)
                except BackendUnavailableError as exc:  # a strategy this backend lacks
                    refused[s.name] = exc.message
                    log.info("%s: refused: %s", s.name, exc.message)
                    break
                rows.append(Result(s.name, batch, summarize(samples), extra))
                log.info("%s, batch %d: p50 %.1f us", s.name, batch, rows[-1].seconds["p50"] * 1e6)
    device = _device(args.backend)
    mode = f" ({args.mode})" if args.backend == "opencl" else ""
    title = f"graph pipelines on {args.backend}{mode}, 16-byte messages, {device}"
    print()
    print_table(rows, title, long=True)
    hops = per_hop(rows)
    print("\nper-hop latency, (p50(8 stages) - p50(1 stage)) / 7:")
    for kind, per_batch in hops.items():
        cells = ", ".join(f"batch {b}: {v * 1e6:.2f} us" for b, v in per_batch.items())
        print(f"  {kind}: {cells}")
    for name, why in refused.items():
        print(f"  {name}: refused ({why})")
    name = args.name or f"graph-{args.backend}"
    path = write_json(
        name,
        rows,
        device,
        extra={
            "backend": args.backend,
            "mode": args.mode if args.backend == "opencl" else None,
            "message_bytes": 16,
            "quick": args.quick,
            "per_hop_s": hops,
            "refused": refused,
            "loadavg_before": load_before,
            "loadavg_after": os.getloadavg(),
            "wall_s": round(time.perf_counter() - t0, 1),
        },
    )
    png = plot(name, rows, title)
    print(f"wrote {path} and {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
