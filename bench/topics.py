"""Topic fan-out (issue 16): throughput per subscriber and added latency, 1, 4 and 16 subscribers.

The graphs are the topic tests' kernels (tests/topic_kernels.py): ``source`` publishes every
message to topic ``scores`` and each subscriber ``sub<i>`` handles every message. The baseline is
what the same source does with one consumer and no topic: ``source >> sub0`` (one edge).

- **throughput**: ``--batch`` messages (65,536) sent in one ``send_batch``, then received from
  every subscriber until each has them all; ``msgs/s per subscriber`` is batch / the median time
  of that whole round, so 0.5x the baseline means each of N subscribers gets its copy at half the
  rate one consumer gets its messages.
- **latency**: one message sent, received from every subscriber; ``added`` is the median round
  trip minus the baseline's.

Each configuration is launched once per backend, warmed up, and repeated ``--repeat`` times.
Usage::

    python bench/topics.py [--backends cpu,c,opencl-relaunch,opencl-persistent,cuda]
                           [--strategy host] [--repeat 10] [--batch 65536]

A backend or strategy that cannot run a configuration (CUDA refuses host-forwarded graphs; PoCL
runs one persistent kernel per worker thread) is reported as refused, with the reason, not
measured. ``--strategy`` is passed to ``rg.launch``: the device strategies run the same graphs.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench"), str(ROOT / "tests")]

import ringgen as rg  # noqa: E402
from ringgen.runtime.backends import available_backends  # noqa: E402
import topic_kernels as tk  # noqa: E402
from _common import Result, summarize, write_json  # noqa: E402

SUBSCRIBERS = (1, 4, 16)

#: ``--backends`` names -> (backend, launch options)
BACKENDS = {
    "cpu": ("cpu", {}),
    "c": ("c", {}),
    "opencl-relaunch": ("opencl", {"mode": "relaunch"}),
    "opencl-persistent": ("opencl", {"mode": "persistent"}),
    "cuda": ("cuda", {}),
}


def _graph(n: int):
    """``n`` subscribers of one topic (0: the baseline, one plain edge to ``sub0``)."""
    if n == 0:
        return rg.graph(tk.source >> tk.sub0, name="baseline")
    scores = rg.topic("scores", tk.Tick)
    return rg.graph(tk.source >> scores, scores >> tk.SUBSCRIBERS[:n], name=f"topic{n}")


def _round(h, msgs: np.ndarray, exits: list[str], timeout: float = 60.0) -> None:
    """Send ``msgs`` and receive every copy at every exit (each must get them all)."""
    h.send_batch(msgs, timeout=timeout)
    left = {x: len(msgs) for x in exits}
    deadline = time.monotonic() + timeout
    while left:
        for x in list(left):
            left[x] -= len(h.receive_batch(exit=x))
            if left[x] <= 0:
                del left[x]
        if time.monotonic() > deadline:
            raise TimeoutError(f"subscribers {sorted(left)} short of {len(msgs)} replies")


def measure(name: str, n: int, strategy: str, repeat: int, batch: int) -> list[Result]:
    """Throughput and latency rows of ``n`` subscribers (0: the baseline) on backend ``name``."""
    backend, options = BACKENDS[name]
    g = _graph(n)
    exits = list(g.exits)
    msgs = np.zeros(batch, dtype=rg.dtype_of(tk.Tick))
    msgs["id"] = np.arange(batch)
    msgs["x"] = np.arange(batch) % 977
    series = f"{name} {'single consumer' if n == 0 else f'{n} subscribers'}"
    capacity = max(4096, batch)
    with rg.launch(g, backend=backend, strategy=strategy, capacity=capacity, **options) as h:
        for _ in range(2):  # warm-up: compiled, resident, queues touched
            _round(h, msgs, exits)
        big = []
        for _ in range(repeat):
            t0 = time.perf_counter_ns()
            _round(h, msgs, exits)
            big.append((time.perf_counter_ns() - t0) * 1e-9)
        one = []
        for _ in range(max(repeat, 50)):
            t0 = time.perf_counter_ns()
            _round(h, msgs[:1], exits)
            one.append((time.perf_counter_ns() - t0) * 1e-9)
    extra = {"subscribers": n, "backend": name, "strategy": strategy}
    return [
        Result(series, batch, summarize(big), dict(extra, kind="throughput")),
        Result(series, 1, summarize(one), dict(extra, kind="latency")),
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backends", default="cpu,c,opencl-relaunch")
    ap.add_argument("--strategy", default="host")
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--batch", type=int, default=65536)
    ap.add_argument("--out", default=None, help="folder for the JSON (default bench/results)")
    args = ap.parse_args()
    present = available_backends()
    rows: list[Result] = []
    refused: dict[str, str] = {}
    lines = []
    for name in args.backends.split(","):
        if BACKENDS[name][0] not in present:
            refused[name] = "backend not present"
            continue
        base = None
        for n in (0,) + SUBSCRIBERS:
            try:
                tput, lat = measure(name, n, args.strategy, args.repeat, args.batch)
            except (rg.BackendUnavailableError, rg.KernelTimeoutError, TimeoutError) as exc:
                refused[f"{name} n={n}"] = str(exc).splitlines()[0]
                continue
            rows += [tput, lat]
            if n == 0:
                base = (tput, lat)
            per_sub = tput.throughput
            ratio = per_sub / base[0].throughput if base else float("nan")
            added = (lat.seconds["p50"] - base[1].seconds["p50"]) if base else float("nan")
            tput.extra.update(ratio_to_single=ratio)
            lat.extra.update(added_latency_s=added)
            lines.append(
                f"{name:18s} {('single' if n == 0 else n):>6} {per_sub / 1e6:10.2f} "
                f"{ratio:8.2f} {lat.seconds['p50'] * 1e6:10.1f} {added * 1e6:10.1f}"
            )
    device = f"host: {os.cpu_count()} CPUs"
    if "cuda" in args.backends and "cuda" in present:
        from ringgen.runtime.cuda import device as cuda_device

        device += f"; cuda: {cuda_device.device_info(0).name}"
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    path = write_json(
        f"topics-{stamp}",
        rows,
        device,
        extra={"strategy": args.strategy, "refused": refused},
        directory=Path(args.out) if args.out else None,
    )
    print(f"topic fan-out, batch {args.batch}, strategy {args.strategy}, {device}")
    print(
        f"{'backend':18s} {'subs':>6} {'Mmsg/s/sub':>10} {'vs single':>8} "
        f"{'lat p50 us':>10} {'added us':>10}"
    )
    print("\n".join(lines))
    for what, why in refused.items():
        print(f"refused: {what}: {why}")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
