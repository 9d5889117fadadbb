"""Kernel telemetry: latency histograms and queue-depth samples, written where the handler runs and
read by the host while the kernel runs.

One buffer per kernel, ``TELEMETRY_DTYPE``, holds two log-linear histograms of nanoseconds (time in
the input queue, time in the handler) and a ring of queue-depth samples. Whoever runs the handler
writes it (the ``c`` backend's native worker, the cpu reference's worker thread); the host copies it
when ``stats()`` is read, never stopping the writer: every count is an aligned 64-bit word with a
single writer, so a copy sees each word either before or after an increment, and a histogram read
mid-batch is a consistent prefix of the messages give or take the ones in flight.

Buckets are log-linear, as HdrHistogram's: values below ``2 * SUB_BUCKETS`` ns have a bucket each;
above, every power of two is split into ``SUB_BUCKETS`` equal buckets, so a bucket is at most
1/``SUB_BUCKETS`` (3.1 %) of its value wide and its midpoint is within 1.6 % of every value in it.
``compute_bucket_index`` is the one definition; ``c_worker.c`` computes the same index in C
(``tests/test_telemetry.py`` compares the two). The host turns the counts into an
``hdrhistogram.HdrHistogram`` (``Telemetry.handler_latency``, ``Telemetry.queue_latency``):
p50/p90/p99/p99.9 through ``get_value_at_percentile``, merged across kernels with ``add``.
"""

from __future__ import annotations

import collections
import functools
import threading
import time
from typing import Any, Mapping, Optional

import attrs
import numpy as np

from ..protocol import Reason

__all__ = [
    "BUCKETS",
    "DEPTH_SLOTS",
    "MAX_MSB",
    "SUB_BITS",
    "SUB_BUCKETS",
    "TELEMETRY_DTYPE",
    "TELEMETRY_VERSION",
    "CompletionTimer",
    "Telemetry",
    "TelemetryRecorder",
    "bucket_of",
    "compute_bucket_bounds",
    "compute_bucket_index",
    "empty_histogram",
    "merge_histograms",
    "new_buffer",
    "read_telemetry",
    "rejected_by_reason",
]

#: log2 of the buckets per power of two: 32 buckets, 3.1 % wide at most.
SUB_BITS = 5
SUB_BUCKETS = 1 << SUB_BITS
#: The highest bit of the largest value kept apart (2**41 ns is 36 minutes): larger values are
#: counted in the last bucket.
MAX_MSB = 40
#: Buckets per histogram: 2 * SUB_BUCKETS linear ones, then SUB_BUCKETS per power of two above.
BUCKETS = (MAX_MSB - SUB_BITS + 2) * SUB_BUCKETS
#: Queue-depth samples kept (the newest ones).
DEPTH_SLOTS = 256
#: Written into ``version`` by the host that allocates the buffer.
TELEMETRY_VERSION = 1

#: The buffer's layout, shared with ``c_worker.c`` (``rg_c_telemetry``), which asserts the offsets.
TELEMETRY_DTYPE = np.dtype(
    [
        ("version", "<u4"),
        ("sub_bits", "<u4"),
        ("buckets", "<u4"),
        ("depth_slots", "<u4"),
        ("sample_every", "<u4"),  # 1 in this many messages is timed
        ("pad0", "<u4"),
        ("depth_written", "<u8"),  # depth samples written so far (the ring holds the newest)
        ("started", "<u8"),  # cuda: the device clock when the kernel started (0 elsewhere)
        ("pad", "<u8", 3),  # to 64 bytes: the histograms start on a cache line
        ("queue", "<u8", (BUCKETS,)),
        ("handler", "<u8", (BUCKETS,)),
        ("depth_t", "<u8", (DEPTH_SLOTS,)),  # when (the backend's clock, ns)
        ("depth_in", "<u4", (DEPTH_SLOTS,)),
        ("depth_out", "<u4", (DEPTH_SLOTS,)),
    ]
)

#: The HdrHistogram every decoded histogram is: 1 ns to 2**(MAX_MSB+1) ns, 2 significant digits
#: (finer than the buckets it is filled from, so decoding loses nothing but the bucket width).
_HDR_LOWEST = 1
_HDR_HIGHEST = 1 << (MAX_MSB + 1)
_HDR_DIGITS = 2


def compute_bucket_index(ns: Any) -> np.ndarray:
    """The bucket of each value (nanoseconds, array-like of non-negative integers).

    ``v < 2 * SUB_BUCKETS``: bucket ``v``. Otherwise, with ``msb`` the highest set bit of ``v`` and
    ``shift = msb - SUB_BITS``: bucket ``(shift + 1) * SUB_BUCKETS + (v >> shift) - SUB_BUCKETS``,
    capped at ``BUCKETS - 1``. Negative values (a clock that stepped back) count as 0.
    """
    v = np.maximum(np.asarray(ns, dtype=np.int64), 0).astype(np.uint64)
    msb = np.zeros(v.shape, dtype=np.int64)
    big = v >= np.uint64(2 * SUB_BUCKETS)
    if big.any():
        # float64 log2 is exact for the exponent of every value below 2**53; larger ones are capped.
        msb[big] = np.floor(np.log2(v[big].astype(np.float64))).astype(np.int64)
    shift = np.maximum(msb - SUB_BITS, 0)
    top = (v >> shift.astype(np.uint64)).astype(np.int64)
    idx = np.where(big, (shift + 1) * SUB_BUCKETS + top - SUB_BUCKETS, v.astype(np.int64))
    return np.minimum(idx, BUCKETS - 1)


def bucket_of(ns: int) -> int:
    """``compute_bucket_index`` of one Python int, without numpy (a few hundred ns, not tens of us:
    for writers on the host's own path, such as ``CompletionTimer``)."""
    v = max(int(ns), 0)
    if v < 2 * SUB_BUCKETS:
        return v
    shift = v.bit_length() - 1 - SUB_BITS
    return min((shift + 1) * SUB_BUCKETS + (v >> shift) - SUB_BUCKETS, BUCKETS - 1)


def compute_bucket_bounds(index: Any) -> tuple[np.ndarray, np.ndarray]:
    """(lowest value, width) of each bucket index, in nanoseconds."""
    i = np.asarray(index, dtype=np.int64)
    linear = i < 2 * SUB_BUCKETS
    shift = np.where(linear, 0, i // SUB_BUCKETS - 1)
    top = np.where(linear, i, i - shift * SUB_BUCKETS)
    return top << shift, np.int64(1) << shift


def empty_histogram() -> Any:
    """An empty ``hdrhistogram.HdrHistogram`` of nanoseconds, as every decoded one is made.

    Raises:
        ImportError: the ``hdrhistogram`` package is not installed (it is optional: telemetry is
            recorded without it, and only its decoding into histograms needs it).
    """
    try:
        from hdrh.histogram import HdrHistogram
    except ImportError as exc:
        raise ImportError(
            "the latency histograms of stats().telemetry need the hdrhistogram package "
            "(pip install hdrhistogram, or the 'dev' or 'bench' extra of ringgen)"
        ) from exc
    return HdrHistogram(_HDR_LOWEST, _HDR_HIGHEST, _HDR_DIGITS)


def _histogram_of(counts: np.ndarray) -> Any:
    hist = empty_histogram()
    (nonzero,) = np.nonzero(counts)
    if nonzero.size:
        low, width = compute_bucket_bounds(nonzero)
        mids = np.maximum(low + width // 2, _HDR_LOWEST)
        for mid, n in zip(mids.tolist(), counts[nonzero].tolist()):
            hist.record_value(int(mid), int(n))
    return hist


def _percentile_ns(counts: np.ndarray, percent: float) -> float:
    """The midpoint of the bucket holding the ``percent``-th percentile of ``counts`` (non-empty)."""
    cumulative = np.cumsum(counts)
    rank = max(1, int(np.ceil(percent / 100.0 * cumulative[-1])))
    index = int(np.searchsorted(cumulative, rank))
    low, width = compute_bucket_bounds(index)
    return float(low + width // 2)


def merge_histograms(histograms: Any) -> Any:
    """One ``HdrHistogram`` holding every count of ``histograms`` (e.g. several kernels')."""
    merged = empty_histogram()
    for h in histograms:
        if h is not None:
            merged.add(h)
    return merged


@attrs.frozen(eq=False, slots=False)
class Telemetry:
    """One copy of a kernel's telemetry buffer (``KernelStats.telemetry``).

    ``handler_latency`` and ``queue_latency`` are ``hdrhistogram.HdrHistogram`` objects of
    nanoseconds, made from the bucket counts when first read (so ``stats()`` works, and costs
    nothing more, where the optional ``hdrhistogram`` package is missing; reading them there raises
    an ``ImportError`` that names it): the time each message spent in the handler, and the time
    from the host publishing it to its handler starting (``queue_what`` says what is measured
    where).

    Attributes:
        handler_counts, queue_counts: the raw bucket counts (``compute_bucket_bounds`` gives each
            bucket's range).
        depths: the newest queue-depth samples, oldest first: a structured array of ``t_ns`` (the
            backend's clock), ``input`` and ``output``.
        rejected: rejections and faults by ``Reason`` name (the control block's per-reason counts).
        clock: which clock stamped the values ("host CLOCK_MONOTONIC" for cpu and c).
        queue_what: what ``queue_latency`` measures on this backend.
        sample_every: 1 message in this many was timed (the histograms count the timed ones).
    """

    handler_counts: np.ndarray
    queue_counts: np.ndarray
    depths: np.ndarray
    rejected: Mapping[str, int]
    clock: str
    queue_what: str
    sample_every: int = 1

    @functools.cached_property
    def handler_latency(self) -> Any:
        """The time in the handler: an ``hdrhistogram.HdrHistogram`` of nanoseconds."""
        return _histogram_of(self.handler_counts)

    @functools.cached_property
    def queue_latency(self) -> Any:
        """The time in the queue: an ``hdrhistogram.HdrHistogram`` of nanoseconds."""
        return _histogram_of(self.queue_counts)

    def percentiles_us(self, which: str = "handler") -> dict:
        """{"p50", "p90", "p99", "p99.9"} of ``which`` ("handler" or "queue") in microseconds: the
        midpoint of the bucket that holds each percentile (None without samples); computed from
        the counts, so it needs no ``hdrhistogram``."""
        counts = self.handler_counts if which == "handler" else self.queue_counts
        return {
            name: _percentile_ns(counts, q) / 1e3 if counts.any() else None
            for name, q in (("p50", 50), ("p90", 90), ("p99", 99), ("p99.9", 99.9))
        }

    def as_dict(self) -> dict:
        """Plain data for JSON: counts and percentiles of both histograms, the depth samples."""
        out: dict = {
            "clock": self.clock,
            "queue_what": self.queue_what,
            "sample_every": self.sample_every,
        }
        for which in ("handler", "queue"):
            counts = self.handler_counts if which == "handler" else self.queue_counts
            out[which] = {"count": int(counts.sum()), **self.percentiles_us(which)}
        out["rejected"] = dict(self.rejected)
        out["depths"] = [
            (int(t), int(i), int(o))
            for t, i, o in zip(self.depths["t_ns"], self.depths["input"], self.depths["output"])
        ]
        return out


_DEPTHS_DTYPE = np.dtype([("t_ns", "<u8"), ("input", "<u4"), ("output", "<u4")])


def new_buffer(sample_every: int = 1) -> np.ndarray:
    """A zeroed telemetry buffer (a 0-d ``TELEMETRY_DTYPE`` array) with its header filled in;
    ``sample_every``: the writer times 1 message in this many (a power of two)."""
    buf = np.zeros((), dtype=TELEMETRY_DTYPE)
    buf["sample_every"] = sample_every
    buf["version"] = TELEMETRY_VERSION
    buf["sub_bits"] = SUB_BITS
    buf["buckets"] = BUCKETS
    buf["depth_slots"] = DEPTH_SLOTS
    return buf


def read_telemetry(
    buf: np.ndarray, *, rejected: Mapping[str, int], clock: str, queue_what: str
) -> Telemetry:
    """Decode a live telemetry buffer (copied first, so the writer never waits).

    Raises:
        ValueError: the buffer's header is not this version's layout (a stale worker library).
    """
    rec = np.array(buf, copy=True)[()]
    if (int(rec["version"]), int(rec["sub_bits"]), int(rec["buckets"])) != (
        TELEMETRY_VERSION,
        SUB_BITS,
        BUCKETS,
    ):
        raise ValueError(
            f"telemetry buffer header (version {int(rec['version'])}, sub_bits "
            f"{int(rec['sub_bits'])}, buckets {int(rec['buckets'])}) is not version "
            f"{TELEMETRY_VERSION} with {SUB_BITS} and {BUCKETS}"
        )
    written = int(rec["depth_written"])
    n = min(written, DEPTH_SLOTS)
    order = np.arange(written - n, written) % DEPTH_SLOTS
    depths = np.zeros(n, dtype=_DEPTHS_DTYPE)
    depths["t_ns"] = rec["depth_t"][order]
    depths["input"] = rec["depth_in"][order]
    depths["output"] = rec["depth_out"][order]
    return Telemetry(
        handler_counts=np.array(rec["handler"]),
        queue_counts=np.array(rec["queue"]),
        depths=depths,
        rejected=dict(rejected),
        clock=clock,
        queue_what=queue_what,
        sample_every=int(rec["sample_every"]),
    )


class TelemetryRecorder:
    """The host-side writer of a telemetry buffer, for backends whose handler runs in Python (the
    cpu reference): one thread records, any thread reads (``read``).

    Recording is one ``np.add.at`` per chunk of messages, so its cost is per chunk, not per message.
    """

    def __init__(self) -> None:
        self.buffer = new_buffer()

    def record(self, queue_ns: np.ndarray, handler_ns: np.ndarray) -> None:
        """Count one chunk's time in queue and time in handler (nanoseconds, one per message)."""
        if len(handler_ns):
            np.add.at(self.buffer["handler"], compute_bucket_index(handler_ns), 1)
        if len(queue_ns):
            np.add.at(self.buffer["queue"], compute_bucket_index(queue_ns), 1)

    def sample_depths(self, input_depth: int, output_depth: int) -> None:
        """Write one queue-depth sample stamped now (``time.monotonic_ns``)."""
        buf = self.buffer
        i = int(buf["depth_written"]) % DEPTH_SLOTS
        buf["depth_t"][i] = time.monotonic_ns()
        buf["depth_in"][i] = input_depth
        buf["depth_out"][i] = output_depth
        buf["depth_written"] += 1

    def read(self, *, rejected: Mapping[str, int], queue_what: str) -> Telemetry:
        """The decoded snapshot (``read_telemetry``) of this recorder's buffer."""
        return read_telemetry(
            self.buffer, rejected=rejected, clock="host CLOCK_MONOTONIC", queue_what=queue_what
        )


class CompletionTimer:
    """Telemetry measured on the host alone, for backends whose device has no clock (OpenCL): each
    message's time from the host's publication stamp to the host's first notice that it was handled
    and its replies published, counted into the queue histogram of a ``TelemetryRecorder`` (the
    handler histogram stays empty), and queue-depth samples taken when the host looks.

    The stamps never reach the device: ``sent`` keeps one (end sequence number, stamp) run per
    ``put`` (a batch published by one call shares one stamp), and ``completed`` counts each run's
    messages that the device has finished, all at one value (the notice time minus the run's stamp),
    so the cost is per call and per notice, never per message, and every message is timed.
    Messages complete in input order (sequence numbers), which both OpenCL transports guarantee.
    Any thread may call any method.
    """

    #: What the queue histogram measures (``Telemetry.queue_what``).
    WHAT = (
        "enqueue to reply, on the host: the host's stamp before it publishes a message to the host's "
        "first notice that the message was handled and its replies published (time in the queue + "
        "in the handler + the host's notice delay; one host clock)"
    )

    def __init__(self, depth_interval_ns: int = 1_000_000) -> None:
        self.recorder = TelemetryRecorder()
        self._runs: collections.deque = collections.deque()  # (end sequence, stamp ns)
        self._sent = 0
        self._done = 0
        self._depth_interval = depth_interval_ns
        self._depth_at: Optional[int] = None
        self._lock = threading.Lock()

    @staticmethod
    def stamp() -> int:
        """The clock of the stamps (``time.monotonic_ns``): read it before publishing."""
        return time.monotonic_ns()

    def sent(self, n: int, stamp: int) -> None:
        """``n`` messages (the next sequence numbers) were published; ``stamp`` was read before."""
        if n > 0:
            with self._lock:
                self._sent += n
                self._runs.append((self._sent, stamp))

    def completed(self, total: int) -> None:
        """The first ``total`` messages (by sequence number) are handled, their replies published:
        count the ones not counted before, at the time of this call."""
        if total <= self._done:
            return
        with self._lock:
            now = time.monotonic_ns()
            total = min(total, self._sent)
            hist = self.recorder.buffer["queue"]
            runs = self._runs
            while runs and self._done < total:
                end, stamp = runs[0]
                upto = min(end, total)
                hist[bucket_of(now - stamp)] += upto - self._done
                self._done = upto
                if upto == end:
                    runs.popleft()

    def due(self) -> bool:
        """Whether a queue-depth sample is due: at most one per ``depth_interval_ns`` (a busy
        host's every pop is not worth one, nor the reading of the depths it takes)."""
        at = self._depth_at
        return at is None or time.monotonic_ns() - at >= self._depth_interval

    def sample_depths(self, input_depth: int, output_depth: int) -> None:
        """A queue-depth sample now, unless the last one is younger than ``depth_interval_ns``."""
        with self._lock:
            if not self.due():
                return
            self._depth_at = time.monotonic_ns()
            self.recorder.sample_depths(input_depth, output_depth)

    def read(self, *, rejected: Mapping[str, int]) -> Telemetry:
        """The decoded snapshot: the queue histogram of enqueue-to-reply times (``WHAT``)."""
        with self._lock:
            return self.recorder.read(rejected=rejected, queue_what=self.WHAT)


def rejected_by_reason(ctl: np.ndarray) -> dict:
    """The control block's per-reason rejection counts, by ``Reason`` name (those that occurred)."""
    rec = ctl[()] if isinstance(ctl, np.ndarray) else ctl
    out = {}
    for code, n in enumerate(rec["rejected"]):
        if n:
            try:
                name = Reason(code).name
            except ValueError:
                name = f"REASON_{code}"
            out[name] = int(n)
    return out
