"""What telemetry costs: throughput at batch 65,536 with the launch option ``telemetry`` on and off.

One process, one resident kernel per series (examples/vector_add.py, 16-byte messages), the two
series of a backend interleaved round by round so that the machine's load hits both alike. A round
is ``send_batch`` of 65,536 requests, then ``receive_batch`` until every reply is in; each series
reports the median round of ``--repeat`` and the throughput it gives; the cost is
``1 - throughput(on) / throughput(off)`` over each pair of rounds run back to back, the median of
the pairs (the load of a shared machine drifts between rounds, and hits both of a pair alike).

    .venv/bin/python bench/telemetry.py                    # c and cpu, bench/results/telemetry.json
    .venv/bin/python bench/telemetry.py --backends c --repeat 41
    .venv/bin/python bench/telemetry.py --backends opencl  # PoCL (persistent mode)
    python3 bench/telemetry.py --backends cuda --out bench/results/h200   # on the GPU machine

On cuda one kernel may be resident per device and process, and on PoCL a resident kernel holds a
worker thread (of two on the development machine), so there the two series are launched in turn,
six launches each, alternating (``_sequential``); cpu and c keep both resident.
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

from _common import RESULTS_DIR, Result, print_table, summarize, write_json  # noqa: E402

BATCH = 65536
#: Rounds per series by backend (the cpu reference handles ~0.05 M msg/s, a round takes seconds).
REPEATS = {"c": 301, "cpu": 5, "cuda": 300, "opencl": 60}
#: Backends whose two series run one kernel at a time (``_sequential``).
SEQUENTIAL = ("cuda", "opencl")


def _round(k, arr: np.ndarray) -> float:
    t0 = time.perf_counter_ns()
    k.send_batch(arr)
    got = 0
    while got < len(arr):
        got += len(k.receive_batch(max_n=len(arr) - got, timeout=60.0))
    return (time.perf_counter_ns() - t0) * 1e-9


def _requests(dtype: np.dtype) -> np.ndarray:
    arr = np.zeros(BATCH, dtype=dtype)
    arr["id"] = np.arange(BATCH)
    arr["a"] = np.arange(BATCH, dtype=np.float32)
    arr["b"] = 1.0
    return arr


def _concurrent(backend: str, repeat: int, control: bool = False) -> tuple[dict, object]:
    """Both kernels resident at once, their rounds alternating (cpu, c). ``control``: the "on"
    kernel is launched without telemetry too (an A/A run: what the bench reads for no cost)."""
    import ringgen as rg
    from examples.vector_add import vector_add

    kernels = {
        on: rg.launch(vector_add, backend=backend, capacity=BATCH, telemetry=on and not control)
        for on in (True, False)
    }
    try:
        arr = _requests(kernels[True].in_codec.dtype)
        times: dict = {True: [], False: []}
        for on in (True, False):  # warm-up, untimed
            _round(kernels[on], arr)
        for i in range(repeat):
            for on in (True, False) if i % 2 == 0 else (False, True):
                times[on].append(_round(kernels[on], arr))
        tele = kernels[True].stats().telemetry
        assert kernels[False].stats().telemetry is None and (tele is None) == control
    finally:
        for k in kernels.values():
            k.terminate()
    return times, tele


def _sequential(
    backend: str, repeat: int, control: bool = False, blocks: int = 6
) -> tuple[dict, object]:
    """One kernel resident at a time (cuda allows one per device and process): ``blocks`` launches
    of each, alternating on and off, ``repeat // blocks`` rounds each after a warm-up round; the
    rounds of the i-th on block pair with those of the i-th off block. ``control``: the "on" blocks
    run without telemetry too (an A/A run)."""
    import ringgen as rg
    from examples.vector_add import vector_add

    times: dict = {True: [], False: []}
    tele = None
    per_block = max(repeat // blocks, 1)
    for b in range(blocks):
        for on in (True, False) if b % 2 == 0 else (False, True):
            tele_on = on and not control
            with rg.launch(vector_add, backend=backend, capacity=BATCH, telemetry=tele_on) as k:
                arr = _requests(k.in_codec.dtype)
                _round(k, arr)
                times[on] += [_round(k, arr) for _ in range(per_block)]
                if tele_on:
                    tele = k.stats().telemetry
                else:
                    assert k.stats().telemetry is None
    return times, tele


def measure(backend: str, repeat: int, control: bool = False) -> list[Result]:
    """Rows "<backend> telemetry on" and "... off": per-round seconds, medians, throughput."""
    if backend in SEQUENTIAL:
        times, tele = _sequential(backend, repeat, control)
    else:
        times, tele = _concurrent(backend, repeat, control)
    rows = []
    for on in (True, False):
        s = summarize(times[on])
        med = float(np.median(times[on]))
        extra = {"throughput_msg_s": BATCH / med, "median_s": med, "rounds": repeat}
        if on and tele is not None:
            extra["handler_p50_us"] = tele.percentiles_us("handler")["p50"]
            extra["handler_timed"] = int(tele.handler_counts.sum())
            extra["queue_p50_us"] = tele.percentiles_us("queue")["p50"]
            extra["queue_timed"] = int(tele.queue_counts.sum())
            extra["queue_what"] = tele.queue_what
            extra["sample_every"] = tele.sample_every
        name = "off (control)" if control and on else ("on" if on else "off")
        rows.append(Result(f"{backend} telemetry {name}", BATCH, s, extra))
    on_rate = rows[0].extra["throughput_msg_s"]
    off_rate = rows[1].extra["throughput_msg_s"]
    rows[0].extra["cost_of_medians"] = 1.0 - on_rate / off_rate
    # Each on round next to its off round (run back to back): the load that drifts between rounds
    # hits both of a pair alike, so the median of the pairs' ratios is the steadier estimate.
    ratios = np.asarray(times[False]) / np.asarray(times[True])
    rows[0].extra["cost_vs_off"] = float(1.0 - np.median(ratios))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backends", default="c,cpu")
    ap.add_argument("--repeat", type=int, default=0, help="rounds per series (0: per backend)")
    ap.add_argument("--out", default=str(RESULTS_DIR), help="folder of telemetry.json")
    ap.add_argument(
        "--control",
        action="store_true",
        help="A/A run: both series without telemetry, to read the bench's own bias",
    )
    ap.add_argument("--device", default=os.environ.get("RINGGEN_BENCH_DEVICE"))
    args = ap.parse_args()
    device = args.device or "host CPU (" + (platform.processor() or platform.machine()) + ")"
    if args.device is None and "cuda" in args.backends.split(","):
        from ringgen.runtime.cuda import device as cuda_device

        device = cuda_device.device_info(0).name
    if args.device is None and "opencl" in args.backends.split(","):
        from ringgen.runtime.opencl.build import select_device

        device = select_device(None).label
    load_before = os.getloadavg()
    rows: list[Result] = []
    for backend in args.backends.split(","):
        rows += measure(backend, args.repeat or REPEATS.get(backend, 11), args.control)
    print_table(rows, title=f"telemetry on vs off, batch {BATCH}")
    for r in rows:
        if "cost_vs_off" in r.extra:
            print(
                f"{r.series}: {r.extra['throughput_msg_s'] / 1e6:.3f} M msg/s, "
                f"cost {100 * r.extra['cost_vs_off']:+.1f} % of throughput (median of paired "
                f"rounds; {100 * r.extra['cost_of_medians']:+.1f} % from the medians)"
            )
    extra = {
        "batch": BATCH,
        "commit_env": os.environ.get("RINGGEN_COMMIT"),
        # a shared machine's load says how far to trust the cost: before and after the run
        "load_average_before": load_before,
        "load_average": os.getloadavg(),
    }
    name = "telemetry-control" if args.control else "telemetry"
    print(write_json(name, rows, device, extra, Path(args.out)))


if __name__ == "__main__":
    main()
