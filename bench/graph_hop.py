"""The parts of bench/graph.py that measure what a hop costs (issue 15's targets; docs/graphs.md,
"bench/graph.py"):

- **paired per hop**: the 1-stage and the 8-stage graph of a strategy launched alternately (launch
  one, time a block of round trips, terminate, launch the other; on CUDA one kernel is resident at
  a time), each pair giving ``(p50(8) - p50(1)) / 7``; reported as the median over pairs with the
  least and the most (``paired_per_hop``). Two launches far apart in time see different machines
  (clocks, other jobs, where the grid's blocks land): pairing puts each difference between two
  neighbours.
- **the zero-copy series** (CUDA's ``reserve``/``commit`` + ``receive_view``/``release``), on the
  graph and on the host round trip alike (``GraphZeroCopy``, ``HostZeroCopy``).
- **atomic_queue's hop variants**: the knobs of ``templates/graph/atomic_queue.cu.j2`` as ``-D``
  defines (``HOP_VARIANTS``), and ``precompile``, which fills the nvcc cache in parallel first.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable, Optional, Sequence

import numpy as np

log = logging.getLogger("ringgen.bench.graph")

#: atomic_queue's hop variants: name -> ``-D`` defines (templates/graph/atomic_queue.cu.j2 and
#: templates/cuda/kernel.cu.j2 say what each knob does). "default" is what ships.
HOP_VARIANTS: dict[str, tuple[str, ...]] = {
    "default": (),
    # a diagnostic, not a candidate: each stage's takes timed on the device (rg_aq_trace;
    # trace_summary), which also shows what the trace itself costs a hop
    "trace": ("RG_AQ_TRACE",),
    # a consumer thread keeps two polls of its slot in flight, 150 ns apart (half the wait for the
    # next poll once the stamp has landed, if an L2 round trip is ~300 ns or more)
    "poll2": ("RG_AQ_POLL_STAGGER_NS=150",),
    # the stamped slot words stored and polled as .relaxed.gpu, not .volatile (system scope)
    "gpu-scope": ("RG_AQ_SCOPE_GPU",),
    "all": (
        "RG_WORKER_HOT=1048576u",
        "RG_SLEEP_MAX_NS=1000u",
        "RG_AQ_TAKE_HOT=0xffffffffu",
        "RG_AQ_SCOPE_GPU",
        "RG_AQ_COUNT_AFTER_PUT",
        "RG_AQ_POLL_STAGGER_NS=150",
    ),
    # a consumer thread never sleeps on its slot (its message is accepted: its producer is working)
    "take-spin": ("RG_AQ_TAKE_HOT=0xffffffffu",),
    # a stage's counter atomics after its slot's stores, not before them
    "count-after": ("RG_AQ_COUNT_AFTER_PUT",),
    # every wait of the grid hot 256 times longer before it sleeps
    "hot": ("RG_WORKER_HOT=1048576u",),
    # a sleeping wait wakes within 1 us rather than 20 us
    "short-sleep": ("RG_SLEEP_MAX_NS=1000u",),
}


def check_variants(names: Sequence[str]) -> list[str]:
    """``names`` checked against ``HOP_VARIANTS``.

    Raises:
        SystemExit: a name is no variant (the message lists them).
    """
    bad = [n for n in names if n not in HOP_VARIANTS]
    if bad:
        raise SystemExit(
            f"unknown hop variant(s) {', '.join(bad)} (variants: {', '.join(HOP_VARIANTS)})"
        )
    return list(names)


# --------------------------------------------------------------------------- paired per hop


def pair_per_hop(p50_one: float, p50_eight: float) -> float:
    """One pair's added latency per hop, ``(p50(8 stages) - p50(1 stage)) / 7``, in seconds."""
    return (p50_eight - p50_one) / 7


def paired_per_hop(pairs: Sequence[tuple[float, float]]) -> dict:
    """The per-hop summary of ``pairs`` of ``(p50 of the 1-stage block, p50 of the 8-stage block)``
    in seconds: ``per_hop_s`` the median over pairs of ``pair_per_hop``, ``min_s``/``max_s`` their
    spread, ``pairs`` how many, ``pair_per_hop_s`` each pair's figure, and the medians of the two
    round trips (``one_stage_p50_s``, ``eight_stage_p50_s``).

    Raises:
        ValueError: no pairs.
    """
    if not pairs:
        raise ValueError("paired_per_hop() needs at least one pair")
    hops = [pair_per_hop(one, eight) for one, eight in pairs]
    return {
        "per_hop_s": float(np.median(hops)),
        "min_s": min(hops),
        "max_s": max(hops),
        "pairs": len(hops),
        "pair_per_hop_s": hops,
        "one_stage_p50_s": float(np.median([one for one, _ in pairs])),
        "eight_stage_p50_s": float(np.median([eight for _, eight in pairs])),
    }


def measure_pairs(
    make: Callable[[int], Any],
    batch: int,
    block: int,
    n_pairs: int,
    measure: Callable[[Any, int, int], np.ndarray],
) -> dict:
    """Alternate the 1-stage and the 8-stage series ``make(length)`` ``n_pairs`` times (the first
    of a pair alternates too, so neither length always runs first), each launched, checked and
    timed for ``block`` round trips of ``batch`` messages by ``measure(series, batch, block)``
    (which terminates it), and summarize the pairs (``paired_per_hop``; a block's p50 is its
    median round trip)."""
    pairs = []
    for i in range(n_pairs):
        p50 = {}
        for length in (1, 8) if i % 2 == 0 else (8, 1):
            samples = measure(make(length), batch, block)
            p50[length] = float(np.percentile(samples, 50))
        pairs.append((p50[1], p50[8]))
        log.info(
            "  pair %d: 1 stage %.2f us, 8 stages %.2f us: %.0f ns per hop",
            i + 1,
            p50[1] * 1e6,
            p50[8] * 1e6,
            pair_per_hop(p50[1], p50[8]) * 1e9,
        )
    return paired_per_hop(pairs)


def trace_summary(words: np.ndarray, stages: int, sm_khz: float) -> list[dict]:
    """What the hop trace ``words`` (``FusedCudaKernel.hop_trace``, summed over launches; per
    stage 8 words: takes, polls, SM cycles waiting, ns from the producer's stores to the take's end,
    SM cycles from the take's end to the own slot's stores, how many of those) says per stage of a
    ``stages``-stage pipeline that takes an input (all but the entry), with SM cycles turned into ns
    at ``sm_khz`` (the device's clock rate; the clock it ran at may be lower):

    ``hop_ns`` the mean time from a producer's stores to its consumer's take seeing them
    (%globaltimer, on two SMs: the hop itself); ``cycles_per_poll`` and ``ns_per_poll`` one poll of a
    slot (its loads' L2 round trip, while nothing sleeps); ``polls_per_take``; ``wait_ns`` the mean
    wait in the take (from the stage's start on the entry message: upstream stages included);
    ``handle_ns`` from the end of the take to the stores of its own slot (handler and packing)."""
    w = np.asarray(words, dtype=np.uint64).reshape(-1, 8)
    ns_per_cycle = 1e6 / sm_khz
    out = []
    for ix in range(1, min(stages, len(w))):
        takes, polls, wait, hop, handle, handles = (int(x) for x in w[ix][:6])
        if not takes:
            continue
        cell = {
            "stage": ix + 1,
            "takes": takes,
            "hop_ns": hop / takes,
            "polls_per_take": polls / takes,
            "cycles_per_poll": wait / polls if polls else None,
            "ns_per_poll": wait / polls * ns_per_cycle if polls else None,
            "wait_ns": wait / takes * ns_per_cycle,
            "handle_ns": handle / handles * ns_per_cycle if handles else None,
        }
        out.append(cell)
    return out


# --------------------------------------------------------------------------- zero copy


def zc_capacity(length: int, batch_ring: int) -> int:
    """The ring capacity of a zero-copy series of ``length`` stages, on the graph and the host
    round trip alike: ``max(2, length)`` blocks of ``batch_ring`` slots (a power of two at least
    the batch). The host round trip reserves the next pass's block while it holds the last pass's
    replies (a reply keeps its request's slot until released: two blocks), and with ``length``
    blocks its first pass always lands in block 0, which keeps the pattern written there once."""
    return max(2, length) * batch_ring


def _deadline_check(deadline: float, what: str, got: int, n: int) -> None:
    if time.monotonic() > deadline:
        raise SystemExit(f"{what}: only {got} of {n} replies in time")


class _ZeroCopy:
    """What both zero-copy series share: the launch, the ring filled with the batch's pattern
    once (``prepare``), and the last pass's replies taken as views and released."""

    api = "zc"
    timeout = 60.0

    def __init__(self, length: int) -> None:
        self.length = length
        self.handle: Any = None
        self.capacity = 0
        self.batch = 0

    def ring_capacity(self, batch_ring: int) -> int:
        return zc_capacity(self.length, batch_ring)

    def prepare(self, arr: np.ndarray) -> None:
        """Write ``arr`` into every block of the input ring (a ``reserve`` of the whole ring,
        never committed), so that a round trip commits its block without a copy, as bench/cuda.py's
        ``ringgen-zc`` series does.

        Raises:
            SystemExit: the ring is not whole and empty, or the batch does not divide it.
        """
        n = len(arr)
        view = self.handle.reserve(self.capacity)
        if len(view) != self.capacity or self.capacity % n:
            raise SystemExit(
                f"{self.name}: reserve({self.capacity}) gave {len(view)} slots for batches of {n}"
            )
        for start in range(0, self.capacity, n):
            view[start : start + n] = arr
        self.batch = n

    def _commit_block(self) -> None:
        view = self.handle.reserve(self.batch)
        if len(view) != self.batch:
            raise SystemExit(f"{self.name}: reserve({self.batch}) gave {len(view)}")
        self.handle.commit(self.batch)

    def _views(self, n: int, into: Optional[np.ndarray]) -> None:
        """Take ``n`` replies as views, copy them into ``into`` (when given), release them."""
        h, got = self.handle, 0
        deadline = time.monotonic() + self.timeout
        while got < n:
            view = h.receive_view(n - got, timeout=1.0, min_n=n - got)
            k = len(view)
            if into is not None:
                into[got : got + k] = view
            h.release(k)
            got += k
            if got < n:
                _deadline_check(deadline, self.name, got, n)

    def _last(self, check: bool) -> Optional[np.ndarray]:
        out = np.empty(self.batch, self.dtype) if check else None
        self._views(self.batch, out)
        return out

    def close(self) -> dict:
        self.handle.terminate(timeout=self.timeout)
        return {"api": "zero-copy", "capacity": self.capacity}


class GraphZeroCopy(_ZeroCopy):
    """An L-stage graph, fed and drained with the zero-copy API: a round trip commits a block of
    the pre-filled ring and takes the exit's replies as views (no host copy at all)."""

    def __init__(self, backend: str, strategy: str, length: int, options: dict) -> None:
        super().__init__(length)
        self.backend, self.strategy, self.options = backend, strategy, options
        self.name = f"{length}-stage graph/{strategy} zc"

    def open(self, capacity: int, dtype: np.dtype) -> None:
        import graph_stages as gs

        import ringgen as rg

        g = rg.pipeline(*gs.STAGES[: self.length], name=f"bench{self.length}")
        self.capacity, self.dtype = capacity, dtype
        self.handle = rg.launch(
            g, backend=self.backend, strategy=self.strategy, capacity=capacity, **self.options
        )

    def round_trip(self, arr: np.ndarray, check: bool = False) -> Optional[np.ndarray]:
        self._commit_block()
        return self._last(check)


class HostZeroCopy(_ZeroCopy):
    """The L stages with the host between them, with the zero-copy API: one resident stage (CUDA
    runs one resident kernel per process), its block committed from the pre-filled ring, then
    L - 1 times its replies taken as views and written into the next pass's reserved input view
    (one numpy copy per hop: what a user of the zero-copy API must do), and the last pass's
    replies taken as views, as on the graph."""

    def __init__(self, backend: str, length: int, options: dict) -> None:
        super().__init__(length)
        self.backend, self.options = backend, options
        self.name = f"{length}-stage host round trip zc"

    def open(self, capacity: int, dtype: np.dtype) -> None:
        import graph_stages as gs

        import ringgen as rg

        self.capacity, self.dtype = capacity, dtype
        self.handle = rg.launch(
            gs.STAGES[0], backend=self.backend, capacity=capacity, **self.options
        )

    def round_trip(self, arr: np.ndarray, check: bool = False) -> Optional[np.ndarray]:
        h, n = self.handle, self.batch
        self._commit_block()
        for _ in range(1, self.length):
            nxt = h.reserve(n)
            if len(nxt) != n:
                raise SystemExit(f"{self.name}: reserve({n}) for the next pass gave {len(nxt)}")
            self._views(n, nxt)
            h.commit(n)
        return self._last(check)


# --------------------------------------------------------------------------- nvcc ahead of time


def fused_source(strategy: str, length: int) -> str:
    """The CUDA source ``rg.launch`` compiles for the bench's ``length``-stage pipeline under a
    device ``strategy`` (as ``ringgen.jit`` emits it)."""
    import graph_stages as gs

    import ringgen as rg
    from ringgen.codegen import graph_kernel, graph_queue
    from ringgen.codegen.options import EmitOptions
    from ringgen.jit import _fused_unit

    g = rg.pipeline(*gs.STAGES[:length], name=f"bench{length}")
    unit, options = _fused_unit(g), EmitOptions.from_env()
    if strategy == graph_queue.STRATEGY:
        return graph_queue.emit(unit, g, options=options)
    return graph_kernel.emit_fused(unit, g, "cuda", options=options)


def precompile(
    jobs: Sequence[tuple[str, int, tuple[str, ...]]], arch: str, workers: int = 8
) -> float:
    """Compile each ``(strategy, length, defines)`` of ``jobs`` into the nvcc cache for ``arch``,
    ``workers`` at once, with the options a launch uses (so launches find their cubins); returns
    the seconds taken. A source whose key a launch does not match only costs that launch a compile.
    """
    from concurrent.futures import ThreadPoolExecutor

    from ringgen.runtime.cuda.build import DEFAULT_OPTIONS, compile_cubin

    t0 = time.perf_counter()
    sources = {(s, n): fused_source(s, n) for s, n, _ in jobs}

    def one(job: tuple[str, int, tuple[str, ...]]) -> None:
        s, n, defines = job
        options = DEFAULT_OPTIONS + tuple(f"-D{d}" for d in defines)
        compile_cubin(sources[(s, n)], arch, options=options, what=f"bench{n} {s} {defines}")

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(one, jobs))
    return time.perf_counter() - t0


# --------------------------------------------------------------------------- summary


def summary_lines(docs: Sequence[dict]) -> list[str]:
    """One table of what bench/graph.py's JSON documents ``docs`` hold about a hop: each paired
    per-hop figure (strategy or variant, batch, median, least, most, the two round trips) and each
    ratio (API, strategy, throughput, x the single kernel, x the host round trip)."""
    lines = [
        f"{'paired per hop':<40} {'median':>9} {'min':>9} {'max':>9} {'pairs':>5} "
        f"{'1 stage':>9} {'8 stages':>9}"
    ]
    for doc in docs:
        for key, c in doc.get("paired_per_hop", {}).items():
            lines.append(
                f"{key:<40} {c['per_hop_s'] * 1e9:7.0f}ns {c['min_s'] * 1e9:7.0f}ns "
                f"{c['max_s'] * 1e9:7.0f}ns {c['pairs']:>5} {c['one_stage_p50_s'] * 1e6:7.2f}us "
                f"{c['eight_stage_p50_s'] * 1e6:7.2f}us"
            )
            for t in c.get("trace", ()):
                poll = "-" if t["cycles_per_poll"] is None else f"{t['cycles_per_poll']:.0f}"
                handle = "-" if t["handle_ns"] is None else f"{t['handle_ns']:.0f}"
                lines.append(
                    f"  trace stage {t['stage']}: hop {t['hop_ns']:.0f} ns, poll {poll} cycles, "
                    f"{t['polls_per_take']:.1f} polls a take, handle {handle} ns, "
                    f"{t['takes']} takes"
                )
    lines.append(
        f"{'ratio (stages, batch, api, strategy)':<40} {'M msg/s':>9} {'x single':>9} {'x host':>9}"
    )
    for doc in docs:
        for api, cells in doc.get("ratios", {}).items():
            for strategy, c in cells.items():
                key = f"{doc['ratio_length']} @ {doc['ratio_batch']}, {api}, {strategy}"
                single = c.get("vs_single_kernel", float("nan"))
                host = c.get("vs_host_round_trip", float("nan"))
                lines.append(f"{key:<40} {c['msgs_per_s'] / 1e6:9.1f} {single:8.2f}x {host:8.2f}x")
    for doc in docs:
        for key, why in doc.get("refused", {}).items():
            lines.append(f"refused: {key}: {why}")
    return lines


if __name__ == "__main__":
    import json
    import sys

    found = []
    for p in sys.argv[1:]:
        try:
            with open(p, encoding="utf-8") as f:
                found.append(json.load(f))
        except (OSError, ValueError) as exc:
            print(f"{p}: not read ({exc})")
    print("\n".join(summary_lines(found)))
