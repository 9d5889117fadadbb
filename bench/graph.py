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

Two APIs (``--apis``; the JSON's ``apis`` says which is which):

- ``copy`` (the series above): ``send_batch``/``receive_batch``, which copy every batch into the
  input ring and out of the output ring; at 65,536 those two host copies dominate a round trip on
  CUDA, on the graph and on the host round trip alike.
- ``zc`` (CUDA; series ending in `` zc``): the zero-copy calls, ``reserve``/``commit`` and
  ``receive_view``/``release`` (bench/graph_hop.py). The input ring is filled with the batch once
  and each round trip commits a block of it, as bench/cuda.py's ``ringgen-zc`` does; the graph's
  replies are taken as views and released; the host round trip takes each pass's replies as views
  and writes them into the next pass's reserved input view (one numpy copy per hop: what a user of
  the zero-copy API must do), and its last pass's replies are taken as the graph's are. Both get
  rings of ``max(2, L)`` blocks of the batch (``graph_hop.zc_capacity``).

Every configuration's replies are checked once (``v`` grew by L, ids in order) before timing.
Reported: p50 and p99 per round trip (HdrHistogram), throughput (B / p50), the per-hop latency
``(p50(8 stages) - p50(1 stage)) / 7`` from one launch of each (``per_hop_s``), and:

- ``paired_per_hop`` (``--pairs``, default 5; at ``--pair-batches``, default 1 and 4,096): the 1-
  and the 8-stage graph of each strategy launched alternately, a block of round trips each, and
  the median over pairs of ``(p50(8) - p50(1)) / 7`` with its least and most: one launch's round
  trip moves by more than a microsecond between launches, so the unpaired figure is mostly noise;
- ``--variants`` (CUDA): atomic_queue's hop knobs as ``-D`` defines (``graph_hop.HOP_VARIANTS``),
  each measured paired at batch 1;
- ``ratios``: the ``--ratio-length``-stage graphs' throughput at the largest batch over the single
  kernel's (the 1-stage host round trip) and over the host round trip's, per API.

JSON and a plot go to ``bench/results/graph-<backend>.{json,png}`` (or ``--out``) with the device
and commit; the JSON is rewritten after each measurement, so a run cut short keeps what it
measured.

    .venv/bin/python bench/graph.py --backend c            # also: cpu, opencl, cuda
    .venv/bin/python bench/graph.py --backend opencl --mode relaunch --quick
    .venv/bin/python bench/graph.py --backend cuda --quick --lengths 1,4 --batches 65536 \
        --variants default,take-spin                       # what gpu/hop.sh runs
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
import graph_hop  # noqa: E402
from _common import Result, plot, print_table, summarize, write_json  # noqa: E402

LENGTHS = (1, 2, 4, 8)
BATCHES = (1, 4096, 65536)
REPEATS = {1: 300, 4096: 40, 65536: 10}
#: The Python reference interprets every message: fewer repetitions.
CPU_REPEATS = {1: 100, 4096: 4, 65536: 2}
#: Round trips per launch in the paired per-hop measurement (bench/graph_hop.py), by batch.
PAIR_BLOCK = {1: 200, 4096: 40, 65536: 10}
#: The graph strategies whose handles have the zero-copy calls (one CUDA kernel's host side).
DEVICE_ZC = ("shared_memory", "atomic_queue")
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


class _CopySeries:
    """What the copying series share: a ring of the batch's size, nothing written ahead."""

    api = "copy"

    def ring_capacity(self, batch_ring: int) -> int:
        return batch_ring

    def prepare(self, arr: np.ndarray) -> None:
        """Nothing: every round trip copies its batch in (``send_batch``)."""


class _GraphSeries(_CopySeries):
    """An L-stage pipeline launched as one graph with ``strategy``."""

    def __init__(self, backend: str, strategy: str, length: int, options: dict) -> None:
        self.backend, self.strategy, self.length, self.options = backend, strategy, length, options
        self.name = f"{length}-stage graph/{strategy}"
        self.handle = None
        self.trace = None  # the hop trace read at close (an atomic_queue grid with RG_AQ_TRACE)

    def open(self, capacity: int, dtype: np.dtype) -> None:
        import graph_stages as gs

        import ringgen as rg

        g = rg.pipeline(*gs.STAGES[: self.length], name=f"bench{self.length}")
        self.handle = rg.launch(
            g, backend=self.backend, strategy=self.strategy, capacity=capacity, **self.options
        )

    def round_trip(self, arr: np.ndarray, check: bool = False) -> np.ndarray:
        self.handle.send_batch(arr, timeout=TIMEOUT_S)
        return _receive_all(self.handle, len(arr))

    def close(self) -> dict:
        stats = self.handle.stats()
        self.handle.terminate(timeout=TIMEOUT_S)
        # the hop trace of an atomic_queue grid built with RG_AQ_TRACE (bench/graph_hop.py)
        read = getattr(getattr(self.handle, "kernel", None), "hop_trace", None)
        self.trace = read() if read is not None else None
        return {"spilled": stats.spilled}


class _HostSeries(_CopySeries):
    """The same L stages as separate kernels, the host moving each batch from one to the next."""

    def __init__(self, backend: str, length: int, options: dict) -> None:
        self.backend, self.length, self.options = backend, length, options
        self.name = f"{length}-stage host round trip"
        # CUDA runs one resident kernel per process (docs/graphs.md): L passes through one stage
        self.one_kernel = backend == "cuda"
        self.handles: list = []

    def open(self, capacity: int, dtype: np.dtype) -> None:
        import graph_stages as gs

        import ringgen as rg

        stages = gs.STAGES[:1] if self.one_kernel else gs.STAGES[: self.length]
        for k in stages:
            self.handles.append(
                rg.launch(k, backend=self.backend, capacity=capacity, **self.options)
            )

    def round_trip(self, arr: np.ndarray, check: bool = False) -> np.ndarray:
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
    """Launch ``series`` with a ring for ``batch``, check one round trip's replies, time ``repeat``
    more (after 3 untimed), terminate it; returns the seconds of each and the series' notes."""
    arr = _batch(dtype, batch)
    series.open(series.ring_capacity(_pow2_at_least(batch)), dtype)
    try:
        series.prepare(arr)
        # checked once: every reply, in order, through every stage
        out = series.round_trip(arr, check=True)
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


def ratios(rows: list[Result], length: int, batch: int) -> dict:
    """The ``length``-stage graphs' throughput at ``batch`` over the single kernel's (the 1-stage
    host round trip: one resident stage, one pass) and over the ``length``-stage host round trip,
    per API (``copy``: ``send_batch``/``receive_batch``; ``zc``: the zero-copy calls), each graph
    compared with the series of its own API. ``{api: {strategy: {vs_single_kernel,
    vs_host_round_trip, msgs_per_s}}}``; a missing series leaves its ratio out."""
    by = {(r.series, r.batch): r for r in rows}
    out: dict = {}
    for api, suffix in (("copy", ""), ("zc", " zc")):
        single = by.get((f"1-stage host round trip{suffix}", batch))
        host = by.get((f"{length}-stage host round trip{suffix}", batch))
        prefix = f"{length}-stage graph/"
        for r in rows:
            if r.batch != batch or not r.series.startswith(prefix):
                continue
            strategy = r.series[len(prefix) :]
            if suffix and not strategy.endswith(suffix):
                continue
            if not suffix and strategy.endswith(" zc"):
                continue
            strategy = strategy[: len(strategy) - len(suffix)]
            cell = {"msgs_per_s": r.throughput}
            if single:
                cell["vs_single_kernel"] = r.throughput / single.throughput
            if host:
                cell["vs_host_round_trip"] = r.throughput / host.throughput
            out.setdefault(api, {})[strategy] = cell
    return out


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def _block(batch: int, quick: bool) -> int:
    """Round trips per launch in the paired measurement."""
    return max(10, PAIR_BLOCK.get(batch, 10) // (2 if quick else 1))


def _print_summary(doc: dict) -> None:
    """The paired per-hop figures, the variants and the ratios: the table printed last."""
    if doc.get("paired_per_hop"):
        print("\nper-hop latency, paired: median over pairs of (p50(8) - p50(1)) / 7 [min, max]:")
    for key, cell in doc.get("paired_per_hop", {}).items():
        print(
            f"  {key:<34} {cell['per_hop_s'] * 1e9:8.0f} ns  [{cell['min_s'] * 1e9:.0f}, "
            f"{cell['max_s'] * 1e9:.0f}] over {cell['pairs']} pairs; 1 stage "
            f"{cell['one_stage_p50_s'] * 1e6:.2f} us, 8 stages {cell['eight_stage_p50_s'] * 1e6:.2f} us"
        )
    for api, cells in doc.get("ratios", {}).items():
        for strategy, cell in cells.items():
            parts = [f"{cell['msgs_per_s'] / 1e6:.1f} M msg/s"]
            for key, label in (
                ("vs_single_kernel", "single kernel"),
                ("vs_host_round_trip", "host round trip"),
            ):
                if key in cell:
                    parts.append(f"{cell[key]:.2f}x the {label}")
            print(
                f"  {doc['ratio_length']} stages at {doc['ratio_batch']}, {api:<4} {strategy:<14} "
                + ", ".join(parts)
            )
    for name, why in doc.get("refused", {}).items():
        print(f"  {name}: refused ({why})")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", default="c", help="cpu, c, opencl or cuda")
    ap.add_argument("--mode", default="persistent", help="OpenCL mode: persistent or relaunch")
    ap.add_argument("--strategies", default="", help="comma-separated (default: every one listed)")
    ap.add_argument("--lengths", default=",".join(map(str, LENGTHS)), help='"" skips the sweep')
    ap.add_argument("--batches", default=",".join(map(str, BATCHES)))
    ap.add_argument(
        "--apis",
        default="",
        help="copy and/or zc (default: copy, and zc on cuda: the zero-copy calls)",
    )
    ap.add_argument(
        "--pairs", type=int, default=5, help="1-/8-stage pairs per hop figure (0: none)"
    )
    ap.add_argument(
        "--pair-batches", default="1,4096", help="batch sizes of the paired per-hop figure"
    )
    ap.add_argument(
        "--variants",
        default="",
        help=f"atomic_queue hop variants, paired at batch 1 (cuda; {', '.join(graph_hop.HOP_VARIANTS)})",
    )
    ap.add_argument("--ratio-length", type=int, default=4, help="the pipeline the ratios are of")
    ap.add_argument("--quick", action="store_true", help="a fifth of the repetitions")
    ap.add_argument("--name", default="", help="results file stem (default graph-<backend>)")
    ap.add_argument("--out", default="", help="results folder (default bench/results)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from ringgen.errors import BackendUnavailableError
    from ringgen.layout import layout_of

    import graph_stages as gs

    options = {"mode": args.mode} if args.backend == "opencl" else {}
    dtype = layout_of(gs.Val).dtype
    lengths = _ints(args.lengths)
    batches = _ints(args.batches)
    apis = [
        a for a in (args.apis or ("copy,zc" if args.backend == "cuda" else "copy")).split(",") if a
    ]
    variants = graph_hop.check_variants([v for v in args.variants.split(",") if v])
    table = CPU_REPEATS if args.backend == "cpu" else REPEATS
    floor = 3 if args.backend == "cpu" else 10
    strategies = _strategies(args.backend, args.strategies)
    t0, load_before = time.perf_counter(), os.getloadavg()
    rows: list[Result] = []
    refused: dict = {}
    out_dir = Path(args.out) if args.out else None
    name = args.name or f"graph-{args.backend}"
    device = _device(args.backend)
    doc: dict = {
        "backend": args.backend,
        "mode": args.mode if args.backend == "opencl" else None,
        "message_bytes": 16,
        "quick": args.quick,
        "apis": {
            "copy": "send_batch / receive_batch (each batch copied into and out of the rings)",
            "zc": "reserve/commit + receive_view/release (the ring filled once; the host round "
            "trip copies each pass's reply views into the next pass's reserved input view)",
        },
        "ratio_length": args.ratio_length,
        "ratio_batch": max(batches) if batches else None,
        "refused": refused,
        "loadavg_before": load_before,
    }

    def save() -> Path:
        doc.update(
            per_hop_s=per_hop(rows),
            ratios=ratios(rows, args.ratio_length, doc["ratio_batch"]) if batches else {},
            loadavg_after=os.getloadavg(),
            wall_s=round(time.perf_counter() - t0, 1),
        )
        return write_json(name, rows, device, extra=doc, directory=out_dir)

    if args.backend == "cuda":
        jobs = {(s, n, ()) for s in strategies for n in (*lengths, *((1, 8) if args.pairs else ()))}
        jobs |= {("atomic_queue", n, graph_hop.HOP_VARIANTS[v]) for v in variants for n in (1, 8)}
        import pycuda.driver as drv

        from ringgen.runtime.cuda import device as cuda_device

        took = graph_hop.precompile(sorted(jobs), cuda_device.device_info(0).arch)
        doc["sm_clock_khz"] = drv.Device(0).get_attribute(drv.device_attribute.CLOCK_RATE)
        doc["precompile_s"] = round(took, 1)
        log.info("compiled %d graph sources in %.1f s", len(jobs), took)

    # 1. the paired per-hop figure: 1 and 8 stages alternately, per strategy and batch
    def timed(series, batch: int, block: int) -> np.ndarray:
        return _measure(series, batch, block, dtype)[0]

    doc["paired_per_hop"] = paired = {}
    for strategy in strategies if args.pairs else ():
        for batch in _ints(args.pair_batches):
            key = f"graph/{strategy} batch {batch}"
            log.info("%s: %d pairs of 1 and 8 stages", key, args.pairs)
            try:
                paired[key] = graph_hop.measure_pairs(
                    lambda n, s=strategy: _GraphSeries(args.backend, s, n, options),
                    batch,
                    _block(batch, args.quick),
                    args.pairs,
                    timed,
                )
            except BackendUnavailableError as exc:
                refused[key] = exc.message
                break
            save()

    # 2. atomic_queue's hop variants (compile-time defines), paired at batch 1
    for variant in variants:
        if args.backend != "cuda":
            refused[f"variant {variant}"] = "the variants are -D defines of the CUDA source"
            continue
        key = f"graph/atomic_queue[{variant}] batch 1"
        log.info("%s: %s", key, " ".join(graph_hop.HOP_VARIANTS[variant]) or "(no defines)")
        opts = {**options, "defines": graph_hop.HOP_VARIANTS[variant]}
        made: list = []

        def make(n: int, o: dict = opts, made: list = made) -> _GraphSeries:
            made.append(_GraphSeries(args.backend, "atomic_queue", n, o))
            return made[-1]

        paired[key] = graph_hop.measure_pairs(
            make, 1, _block(1, args.quick), args.pairs or 5, timed
        )
        paired[key]["defines"] = list(graph_hop.HOP_VARIANTS[variant])
        traces = [s.trace for s in made if s.length == 8 and getattr(s, "trace", None) is not None]
        if traces:
            total = np.sum(np.stack(traces), axis=0, dtype=np.uint64)
            paired[key]["trace"] = graph_hop.trace_summary(total, 8, doc["sm_clock_khz"])
        save()

    # 3. the sweep: every length, batch, series and API
    for length in lengths:
        series: list = []
        if "copy" in apis:
            series.append(_HostSeries(args.backend, length, options))
            series += [_GraphSeries(args.backend, s, length, options) for s in strategies]
        if "zc" in apis:
            if args.backend != "cuda":
                refused[f"{length}-stage zc"] = "the zero-copy calls are the CUDA handle's"
            else:
                series.append(graph_hop.HostZeroCopy(args.backend, length, options))
                series += [
                    graph_hop.GraphZeroCopy(args.backend, s, length, options)
                    for s in strategies
                    if s in DEVICE_ZC
                ]
        for s in series:
            for batch in batches:
                repeat = max(floor, table[batch] // (5 if args.quick else 1))
                try:
                    samples, extra = _measure(s, batch, repeat, dtype)
                except BackendUnavailableError as exc:  # a strategy this backend lacks
                    refused[s.name] = exc.message
                    log.info("%s: refused: %s", s.name, exc.message)
                    break
                rows.append(Result(s.name, batch, summarize(samples), extra))
                log.info("%s, batch %d: p50 %.1f us", s.name, batch, rows[-1].seconds["p50"] * 1e6)
        save()
    mode = f" ({args.mode})" if args.backend == "opencl" else ""
    title = f"graph pipelines on {args.backend}{mode}, 16-byte messages, {device}"
    print()
    if rows:
        print_table(rows, title, long=True)
    if per_hop(rows):
        print("\nper-hop latency, (p50(8 stages) - p50(1 stage)) / 7, one launch each:")
        for kind, per_batch in per_hop(rows).items():
            cells = ", ".join(f"batch {b}: {v * 1e6:.2f} us" for b, v in per_batch.items())
            print(f"  {kind}: {cells}")
    path = save()
    if rows:
        png = plot(name, rows, title, directory=out_dir)
        print(f"wrote {path} and {png}")
    else:
        print(f"wrote {path}")
    _print_summary(doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
