"""Native C backend benchmark: ``backend="c"`` against the ``cpu`` reference and OpenCL persistent (PoCL).

Round trip = host send -> handler -> host receive, measured on the host, for 16-byte messages
(examples/vector_add.py: AddRequest {i64 id; f32 a; f32 b}) at batch sizes 1, 64, 4096 and 65536
(array API: ``send_batch`` of a structured array, then blocking ``receive_batch`` calls until every
reply is in: each backend waits its own way, as a user's call would).
A single message is also timed through the object API (``send(obj)`` then ``receive()``), the
path a user calls most. The series run side by side in one process, interleaved in rounds per batch
size, one resident kernel at a time; the JSON records the device, commit and the machine's load.

    .venv/bin/python bench/c_backend.py            # table on stdout, bench/results/c_backend.{json,png}
    .venv/bin/python bench/c_backend.py --quick
"""

from __future__ import annotations

import argparse
import logging
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
from opencl import _build_package, _pow2_at_least, _requests  # noqa: E402

BATCHES = (1, 64, 4096, 65536)
ROUNDS = 4
SETTLE_S = 0.2


def _repeats(series: str, batch: int, quick: bool) -> int:
    n = {1: 4000, 64: 2000, 4096: 400, 65536: 60}[batch]
    if series == "cpu":  # the Python reference: ~0.04 M msg/s
        n = {1: 400, 64: 60, 4096: 4, 65536: 2}[batch]
    return max(ROUNDS * 2, n // 5) if quick else n


class _Series:
    """One backend: launches vector_add for a batch size, checks one batch, times round trips."""

    def __init__(self, name: str, package, **options) -> None:
        self.name = name
        self.backend = name.split(" ")[0]
        self.options = options
        self.pkg, unit, self.codecs = package
        self.spec = unit.kernels[0]
        self.dtype = self.codecs["AddRequest"].dtype
        self.extra: dict = {}

    def _open(self, capacity: int):
        from ringgen.runtime.backends import load_backend

        cls = load_backend(self.backend)
        return cls.open(
            self.spec, str(self.pkg), codecs=self.codecs, capacity=capacity, **self.options
        )

    def measure(self, batch: int, repeat: int, objects: bool = False) -> np.ndarray:
        arr = _requests(self.dtype, batch)
        k = self._open(_pow2_at_least(batch))
        try:
            k.send_batch(arr)
            parts, got = [], 0
            while got < batch:
                part = k.receive_batch(max_n=batch - got, timeout=30.0)
                part = self.codecs["AddResponse"].to_array(part) if isinstance(part, list) else part
                parts.append(np.asarray(part)["sum"].copy())
                got += len(part)
            expect = (arr["a"] + arr["b"]).astype(np.float32)
            if not np.array_equal(np.concatenate(parts).view(np.uint32), expect.view(np.uint32)):
                raise SystemExit(f"{self.name} batch {batch}: wrong results")
            if objects:
                from examples.vector_add import AddRequest

                msg = AddRequest(id=1, a=1.0, b=2.0)

                def round_trip(k=k, msg=msg):
                    k.send(msg)
                    k.receive(timeout=30.0)

            else:

                def round_trip(k=k, arr=arr, n=batch):
                    k.send_batch(arr)
                    got = 0
                    while got < n:
                        got += len(k.receive_batch(max_n=n - got, timeout=30.0))

            samples = _common.time_calls(round_trip, repeat, warmup=3)
            stats = k.stats()
        finally:
            k.terminate(timeout=30.0)
        self.extra = {"capacity": k.capacity, "output_stalls": stats.output_stalls}
        return samples


def run(series, batches, quick: bool, objects: bool) -> list[Result]:
    log = logging.getLogger("ringgen")
    rows = []
    jobs = [(b, False) for b in batches] + ([(1, True)] if objects else [])
    for batch, obj in jobs:
        samples = {s.name: [] for s in series}
        for _ in range(ROUNDS):
            for s in series:
                per_round = max(2, _repeats(s.backend, batch, quick) // ROUNDS)
                samples[s.name].append(s.measure(batch, per_round, objects=obj))
                time.sleep(SETTLE_S)
        for s in series:
            name = f"{s.name} (send/receive objects)" if obj else s.name
            rows.append(
                Result(name, batch, summarize(np.concatenate(samples[s.name])), dict(s.extra))
            )
        log.info("batch %d%s done", batch, " (objects)" if obj else "")
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--series", default="c,cpu,opencl", help="comma-separated backends")
    ap.add_argument("--batches", default=",".join(map(str, BATCHES)))
    ap.add_argument("--quick", action="store_true", help="fewer repetitions")
    ap.add_argument("--no-objects", action="store_true", help="skip the object-API single message")
    ap.add_argument("--name", default="c_backend", help="results file stem under bench/results/")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from ringgen.runtime import available_backends

    have = available_backends()
    t0 = time.perf_counter()
    load_before = os.getloadavg()
    package = _build_package()
    series = []
    for name in [s for s in args.series.split(",") if s]:
        if name not in have:
            print(f"backend {name} is not available here; skipped")
            continue
        opts = {"mode": "persistent"} if name == "opencl" else {}
        series.append(_Series(name + (" persistent" if name == "opencl" else ""), package, **opts))
    batches = [int(b) for b in args.batches.split(",")]
    rows = run(series, batches, args.quick, not args.no_objects)
    cpu = platform.processor() or platform.machine()
    device = f"host CPU {cpu}, {os.cpu_count()} cores, no GPU"
    title = f"vector_add round trip, 16-byte messages, {device}"
    print()
    print_table(rows, title)
    load_after = os.getloadavg()
    print(f"\nload average before {load_before[0]:.2f}, after {load_after[0]:.2f}")
    path = write_json(
        args.name,
        rows,
        device,
        extra={
            "message_bytes": 16,
            "quick": args.quick,
            "rounds": ROUNDS,
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
