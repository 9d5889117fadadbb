"""One message through ``send``/``receive`` on CUDA with the latency lane's reply written two ways,
in one process: as one 32-byte store of two lanes (the default where the reply slot is one sector)
and as stores plus a system-scope release of the word (``-DRG_LANE_RELEASE_REPLY``), with four reads
of the request slot in flight instead of one (``-DRG_LANE_DEPTH=4``), then with the lane
off (the rings alone). Every reply is checked before timing.

    python bench/lane_variants.py [--n 20000]
    python bench/lane_variants.py --host-path     # the host's share only, no GPU
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

import ringgen as rg  # noqa: E402
from examples import vector_add  # noqa: E402


def _time(k, n: int) -> np.ndarray:
    req = vector_add.AddRequest(id=1, a=1.5, b=2.0)
    out = np.empty(n)
    clock = time.perf_counter_ns
    for i in range(n):
        t0 = clock()
        k.send(req)
        k.receive(timeout=5.0)
        out[i] = clock() - t0
    return out / 1e3


def host_path(cycles: int = 100_000, repeats: int = 5) -> dict:
    """The host's share of one round trip through the lane and through the rings, without a GPU:
    ``send`` + ``receive`` of a reply the test plays the kernel for (one store of the lane's word,
    or of the output tail), on ``bench/cuda.py``'s fake handle. ns per cycle, best of ``repeats``.
    """
    from bench.cuda import bench_host_path
    from ringgen.runtime.cuda.lane import LatencyLane
    from ringgen.runtime.cuda import CudaKernelHandle

    made = []
    setup = CudaKernelHandle._setup_fast_paths

    def keep(self):  # bench_host_path builds its handle; keep it to time the lane on it too
        made.append(self)
        setup(self)

    CudaKernelHandle._setup_fast_paths = keep
    try:
        rings = bench_host_path(cycles, repeats)["send_receive_ns"]
    finally:
        CudaKernelHandle._setup_fast_paths = setup
    k = made[-1]
    g = k._abi()["lane"]
    buf = np.zeros(g["out_at"] + g["out_bytes"], np.uint8)
    lane = k._lane = LatencyLane(buf, g, k.in_codec, k.out_codec, k.format.out_slot)
    k._setup_fast_paths()
    words, at = lane.words, lane.word_at
    msg = vector_add.AddRequest(id=1, a=1.0, b=2.0)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter_ns()
        for _ in range(cycles):
            k.send(msg)
            words[at] = (lane.sent << 8) | 1  # the kernel's part: the answer is there
            k.receive()
        best = min(best, (time.perf_counter_ns() - t0) / cycles)
    return {"rings_ns": rings, "lane_ns": best, "cycles": cycles}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument(
        "--host-path", action="store_true", help="only the host's share of a round trip (no GPU)"
    )
    args = ap.parse_args(argv)
    if args.host_path:
        got = host_path()
        print(f"host path: lane {got['lane_ns']:.0f} ns, rings {got['rings_ns']:.0f} ns per cycle")
        return 0
    for label, defines, lane_on in (
        ("one store", (), True),
        ("release", ("RG_LANE_RELEASE_REPLY",), True),
        ("depth 4", ("RG_LANE_DEPTH=4",), True),
        ("rings", (), False),
    ):
        k = rg.launch(vector_add.vector_add, backend="cuda", defines=defines)
        with k:
            if not lane_on:
                k._lane = None
                k._setup_fast_paths()
            for i in range(2000):
                r = None
                k.send(vector_add.AddRequest(id=i, a=float(i), b=0.5))
                r = k.receive(timeout=5.0)
                if r.id != i or r.sum != np.float32(i) + np.float32(0.5):
                    raise SystemExit(f"{label}: wrong reply {r!r} to message {i}")
            us = _time(k, args.n)
            p50, p90, p99, p999 = np.percentile(us, [50, 90, 99, 99.9])
            print(
                f"{label:10s} p50 {p50:5.2f} p90 {p90:5.2f} p99 {p99:5.2f} p99.9 {p999:6.2f} us"
                f"  (n={args.n}, stats.processed={k.stats().processed})"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
