"""How long ``terminate`` takes, per backend, in the situations that used to hang (issue 10).

Scenarios, each on a fresh launch, repeated ``--repeat`` times (median and p99 of the
``terminate`` call alone):

- ``idle``: nothing queued, ``terminate()``.
- ``flood stop-now``: an Outbox kernel emitting 8 replies per input, its input queue filled and
  nobody reading (the output queue is full, the kernel blocked on it): ``terminate(drain=False)``.
- ``flood drain``: the same flood, ``terminate()``: every accepted message is handled, the replies
  move into the host-side spill (that is the time to handle 1,024 inputs, 8,192 replies).
- ``endless stop-now``: one message to a handler that loops forever, ``terminate(drain=False)``.

The baseline a user had before is not runnable side by side: milestone 1 gave up after 1 s
("abandoned") in the flood and endless cases. Usage::

    python bench/terminate.py [--backends cpu,opencl-persistent,opencl-relaunch,cuda] [--repeat 10]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
# The kernels are the terminate tests' (tests/hostpolicy_kernels.py): one set, measured and tested.
sys.path[:0] = [str(ROOT), str(ROOT / "bench"), str(ROOT / "tests")]

import ringgen as rg  # noqa: E402
from ringgen.runtime.backends import available_backends  # noqa: E402
import hostpolicy_kernels as hk  # noqa: E402
from _common import summarize, write_json  # noqa: E402

#: ``fanout``'s queues in the flood scenarios (a launch option: the tests declare 256).
FLOOD_CAPACITY = 1024

BACKENDS = {
    "cpu": ("cpu", {}),
    "opencl-persistent": ("opencl", {"mode": "persistent"}),
    "opencl-relaunch": ("opencl", {"mode": "relaunch"}),
    "cuda": ("cuda", {}),
}


def _flood(k) -> int:
    """Fill the input queue of ``fanout`` without reading; returns how many were accepted."""
    jobs = np.zeros(k.capacity, dtype=rg.dtype_of(hk.Job))
    jobs["seq"] = np.arange(len(jobs))
    jobs["n"] = 8
    sent = k.send_batch(jobs, block=False)
    time.sleep(0.05)  # let the kernel fill its output queue and block on it
    return int(sent)


def _one(backend: str, options: dict, scenario: str) -> tuple[float, dict]:
    kernel = hk.spin if scenario.startswith("endless") else hk.fanout
    if kernel is hk.fanout:
        options = {**options, "capacity": FLOOD_CAPACITY}
    k = rg.launch(kernel, backend=backend, **options)
    try:
        if scenario.startswith("flood"):
            _flood(k)
        elif scenario.startswith("endless"):
            k.send(hk.Job(seq=1, n=-1))
            time.sleep(0.05)
        drain = not scenario.endswith("stop-now")
        t0 = time.perf_counter()
        s = k.terminate(timeout=60.0, drain=drain)
        took = time.perf_counter() - t0
    except BaseException:
        k.terminate(timeout=10.0, drain=False)
        raise
    return took, {"processed": s.processed, "unprocessed": s.unprocessed, "spilled": s.spilled}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backends", default="cpu,opencl-persistent,opencl-relaunch,cuda")
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--out", default=None, help="folder for terminate.json (default bench/results)")
    args = ap.parse_args(argv)
    present = set(available_backends())
    scenarios = ("idle", "flood stop-now", "flood drain", "endless stop-now")
    rows = []
    print(f"{'backend':<18} {'scenario':<17} {'p50':>10} {'p99':>10}  last stats")
    for name in args.backends.split(","):
        backend, options = BACKENDS[name]
        if backend not in present:
            print(f"{name:<18} skipped: backend not present")
            continue
        for scenario in scenarios:
            times, last = [], {}
            for _ in range(args.repeat):
                took, last = _one(backend, options, scenario)
                times.append(took)
            s = summarize(times)
            rows.append({"backend": name, "scenario": scenario, "seconds": s, "last": last})
            print(
                f"{name:<18} {scenario:<17} {s['p50'] * 1e3:>8.2f} ms {s['p99'] * 1e3:>7.2f} ms"
                f"  {last}"
            )
    device = f"host: {os.cpu_count()} CPUs"
    if "cuda" in present:
        from ringgen.runtime.cuda import device as cuda_device

        device += f"; cuda: {cuda_device.device_info(0).name}"
    path = write_json(
        "terminate",
        [],
        device,
        extra={"rows": rows, "repeat": args.repeat},
        directory=args.out,
    )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
