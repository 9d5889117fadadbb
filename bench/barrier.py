"""Barrier cost per step for 2 to 132 participating blocks on one GPU (docs/barriers.md).

What is timed: ringgen's device barrier (``rg_barrier_wait`` from ``templates/common/barrier.c.j2``,
taken from the CUDA source ringgen emits for the kernel below) against cooperative groups'
``grid.sync()``, both in one program (``bench/barrier_bench.cu``) built by nvcc in the same run. Each
block is one party; the per-step time is read on the device (block 0's cycle counter after every step,
scaled to ns by the run's ``%globaltimer`` span), over ``--steps`` steps after a warm-up run.

    python bench/barrier.py [--steps 10000] [--blocks 2 4 8 16 32 64 132] [--out DIR]

Writes ``barrier-<commit>.json`` (device, commit from ``RINGGEN_COMMIT`` or git, median and p99 per
block count and kind) into ``--out`` (default ``bench/results/<device tag>/``) and prints a table.
Target (issue 16): at most 5 us per step at 132 blocks.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import ringgen as rg  # noqa: E402
from ringgen.build import collect  # noqa: E402
from ringgen.codegen.cuda import emit as emit_cuda  # noqa: E402
from ringgen.types import i32  # noqa: E402

#: A kernel that waits on a barrier, so that the emitted CUDA source holds the barrier code.
bench_step = rg.barrier("bench_step", parties=2)


@rg.message
class BenchStep:
    step: i32


@rg.ring_kernel
def bench_party(m: BenchStep) -> BenchStep:
    rg.barrier_wait(bench_step)
    return BenchStep(step=m.step)


TARGET_NS = 5000


def _commit() -> str:
    env = os.environ.get("RINGGEN_COMMIT")
    if env:
        return env
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=HERE, capture_output=True, text=True
        )
        return out.stdout.strip() or "unknown"
    except OSError:
        return "unknown"


def build(folder: Path) -> Path:
    """Write the generated source and the bench program into ``folder``; compile; the binary."""
    ((_, source),) = emit_cuda(collect(__file__)).items()
    (folder / "barrier_gen.cu").write_text(source)
    shutil.copy(HERE / "barrier_bench.cu", folder / "barrier_bench.cu")
    nvcc = shutil.which("nvcc") or "/usr/local/cuda/bin/nvcc"
    exe = folder / "barrier_bench"
    cmd = [nvcc, "-O3", "-std=c++17", "-arch=sm_90", "-o", str(exe), "barrier_bench.cu"]
    proc = subprocess.run(cmd, cwd=folder, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise SystemExit(f"nvcc failed:\n{proc.stderr[-4000:]}")
    return exe


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=10000)
    ap.add_argument("--blocks", type=int, nargs="*", default=[2, 4, 8, 16, 32, 64, 132])
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        exe = build(Path(tmp))
        proc = subprocess.run(
            [str(exe), str(args.steps), *map(str, args.blocks)],
            capture_output=True,
            text=True,
            timeout=300,
        )
    sys.stderr.write(proc.stderr)
    if proc.returncode != 0:
        raise SystemExit(f"the bench program failed with status {proc.returncode}")
    lines = [json.loads(x) for x in proc.stdout.splitlines() if x.strip()]
    device = lines[0]
    rows = []
    for r in lines[1:]:
        ns = np.asarray(r["ns"], dtype=np.float64)
        rows.append(
            {
                "kind": r["kind"],
                "blocks": r["blocks"],
                "steps": r["steps"],
                "median_ns": float(np.median(ns)),
                "p99_ns": float(np.percentile(ns, 99)),
                "max_ns": float(ns.max()),
                "mean_ns_from_span": r["span_ns"] / r["steps"],
            }
        )
    result = {
        "bench": "barrier",
        "device": device["device"],
        "sms": device["sms"],
        "commit": _commit(),
        "steps": args.steps,
        "threads_per_block": 128,
        "clock": "block 0's clock64() per step, scaled by the run's %globaltimer span",
        "target_ns_at_132": TARGET_NS,
        "rows": rows,
    }
    tag = "h200" if "H200" in device["device"] else device["device"].lower().replace(" ", "-")
    out = args.out or HERE / "results" / tag
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"barrier-{result['commit']}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"{device['device']} ({device['sms']} SMs), {args.steps} steps, commit {result['commit']}"
    )
    print(f"{'blocks':>6}  {'ringgen p50':>11}  {'p99':>8}  {'grid.sync p50':>13}  {'p99':>8}")
    by = {(r["kind"], r["blocks"]): r for r in rows}
    for n in sorted({r["blocks"] for r in rows}):
        a, b = by.get(("ringgen", n)), by.get(("grid_sync", n))
        fa = f"{a['median_ns']:>9.0f}ns  {a['p99_ns']:>6.0f}ns" if a else " " * 21
        fb = f"{b['median_ns']:>11.0f}ns  {b['p99_ns']:>6.0f}ns" if b else ""
        print(f"{n:>6}  {fa}  {fb}")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
