"""Kernel statistics: one frozen snapshot type for every backend, assembled from the control block.

Every backend keeps its counters in a ``ringgen.protocol.CONTROL_DTYPE`` record (in host-mapped memory
on a device, in a plain numpy record for the cpu reference), so ``stats_from_control`` is the only code
that turns counters into a ``KernelStats``. Latency is measured on the host side of the queues where a
backend can do it cheaply; ``LatencyRecorder`` keeps a bounded window of samples for the summary.
"""

from __future__ import annotations

import threading
from typing import Mapping, Optional

import attrs
import numpy as np

from ..protocol import Lifecycle, Reason
from .telemetry import Telemetry

__all__ = ["KernelStats", "LatencyRecorder", "LatencySummary", "stats_from_control"]


@attrs.frozen
class LatencySummary:
    """Latency over the most recent ``count`` messages, in microseconds.

    What is measured depends on the backend and is named by ``what`` (for the cpu reference: from the
    host publishing a message to the kernel publishing its reply, "enqueue to reply").
    """

    what: str
    count: int
    mean_us: float
    p50_us: float
    p99_us: float
    max_us: float


@attrs.frozen
class KernelStats:
    """A snapshot of one kernel's counters (every field is read at one moment, nothing is live).

    Attributes:
        kernel: the kernel's name.
        backend: the backend running it ("cpu", "opencl", "cuda").
        lifecycle: the kernel's state as the device last reported it, or STALLED when the host's
            watchdog finds an ACTIVE kernel with input waiting that handled nothing for the launch
            option ``stall_timeout`` (docs/runtime.md, "Watchdog").
        processed: messages the handler ran on (faulted ones included).
        emitted: output messages the kernel published.
        rejected: rejected messages by ``Reason`` name, only the reasons that occurred.
        input_depth: messages waiting in the input queue.
        output_depth: replies waiting for the host (in the output queue, plus those the host already
            pulled out while terminating).
        capacity: slots per queue.
        output_stalls: times the kernel found the output queue full and had to wait.
        idle_spins: polls of the input queue that found nothing.
        heartbeat: bumped by the kernel on every loop iteration; a stuck value means a stuck kernel.
        launches: launches so far (1 for a persistent kernel; grows in relaunch mode).
        sent: messages the host published to the input queue.
        received: replies the host has taken.
        dead_letters_dropped: dead letters the kernel could not return because the dead-letter
            queue was full (their messages are still counted in ``rejected``); 0 without one.
        spilled: replies the host moved out of the output queue into its own buffer so that the
            kernel could go on (while a send waited for room, or while terminating); they are
            counted in ``output_depth`` until received.
        unprocessed: accepted messages the kernel never handled because it was stopped first
            (``terminate(drain=False)``, or a terminate that gave up); 0 otherwise.
        fault: the ``Reason`` name of an unrecoverable fault, or the device's own error when the
            kernel died on the device (e.g. a CUDA illegal address), or None.
        latency: a ``LatencySummary`` when the backend measures one, else None.
        telemetry: the kernel's latency histograms (``hdrhistogram`` objects: time in queue, time in
            the handler), queue-depth samples and per-reason counts (``ringgen.runtime.telemetry``),
            on backends that record them and while the launch option ``telemetry`` is on; else None.
    """

    kernel: str
    backend: str
    lifecycle: Lifecycle
    processed: int
    emitted: int
    rejected: Mapping[str, int]
    input_depth: int
    output_depth: int
    capacity: int
    output_stalls: int
    idle_spins: int
    heartbeat: int
    launches: int
    sent: int
    received: int
    dead_letters_dropped: int = 0
    spilled: int = 0
    unprocessed: int = 0
    fault: Optional[str] = None
    latency: Optional[LatencySummary] = None
    telemetry: Optional[Telemetry] = None

    @property
    def rejected_total(self) -> int:
        """All rejected messages, whatever the reason."""
        return sum(self.rejected.values())

    def as_dict(self) -> dict:
        """Plain data (str, int, float, dict) for JSON or a table."""
        d = attrs.asdict(self, recurse=True, filter=lambda a, _: a.name != "telemetry")
        d["telemetry"] = None if self.telemetry is None else self.telemetry.as_dict()
        d["lifecycle"] = self.lifecycle.name
        d["rejected"] = dict(self.rejected)
        return d


def _reason_name(code: int) -> str:
    try:
        return Reason(code).name
    except ValueError:
        return f"REASON_{code}"


def stats_from_control(
    ctl: np.ndarray,
    *,
    kernel: str,
    backend: str,
    input_depth: int,
    output_depth: int,
    capacity: int,
    sent: int,
    received: int,
    latency: Optional[LatencySummary] = None,
    lifecycle: Optional[Lifecycle] = None,
    dead_letters_dropped: int = 0,
    spilled: int = 0,
    telemetry: Optional[Telemetry] = None,
) -> KernelStats:
    """Assemble a ``KernelStats`` from one ``CONTROL_DTYPE`` record and the host's own counters.

    Args:
        ctl: a record (or 0-d array) of ``ringgen.protocol.CONTROL_DTYPE``; read once, field by field.
        lifecycle: overrides the recorded state (the host knows a released kernel is TERMINATED).
        dead_letters_dropped: the backend's count of dead letters its full queue could not take.
        spilled: replies the host has moved into its own buffer so far.
        telemetry: the backend's decoded telemetry buffer, or None.
    """
    rec = ctl[()] if isinstance(ctl, np.ndarray) else ctl
    rejected = {_reason_name(i): int(n) for i, n in enumerate(rec["rejected"]) if n}
    fault = int(rec["fault"])
    state = lifecycle if lifecycle is not None else _lifecycle_of(int(rec["state"]))
    return KernelStats(
        kernel=kernel,
        backend=backend,
        lifecycle=state,
        processed=int(rec["processed"]),
        emitted=int(rec["emitted"]),
        rejected=rejected,
        input_depth=int(input_depth),
        output_depth=int(output_depth),
        capacity=int(capacity),
        output_stalls=int(rec["output_stalls"]),
        idle_spins=int(rec["idle_spins"]),
        heartbeat=int(rec["heartbeat"]),
        launches=int(rec["launches"]),
        sent=int(sent),
        received=int(received),
        dead_letters_dropped=int(dead_letters_dropped),
        spilled=int(spilled),
        fault=_reason_name(fault) if fault else None,
        latency=latency,
        telemetry=telemetry,
    )


def _lifecycle_of(code: int) -> Lifecycle:
    try:
        state = Lifecycle(code)
    except ValueError:
        # A value outside the enum means the control block was overwritten: report it as a fault.
        return Lifecycle.FAULTED
    # STALLED is the host's verdict (ringgen.runtime.watchdog); a device never writes it.
    return Lifecycle.FAULTED if state is Lifecycle.STALLED else state


class LatencyRecorder:
    """A fixed window of the latest latency samples (nanoseconds), summarised on demand.

    Recording is one slice assignment per batch, so the hot path stays cheap; the window keeps the
    newest ``window`` samples. Thread-safe: one thread records while another summarises.
    """

    def __init__(self, what: str, window: int = 4096) -> None:
        self.what = what
        self._buf = np.zeros(window, dtype=np.int64)
        self._n = 0  # samples recorded so far (the window holds the last min(n, window))
        self._lock = threading.Lock()

    def record(self, samples_ns: np.ndarray) -> None:
        """Add samples (nanoseconds); only the newest ``window`` are kept."""
        samples = np.asarray(samples_ns, dtype=np.int64)[-len(self._buf) :]
        k = len(samples)
        if not k:
            return
        with self._lock:
            w = len(self._buf)
            start = self._n % w
            first = min(k, w - start)
            self._buf[start : start + first] = samples[:first]
            self._buf[: k - first] = samples[first:]
            self._n += k

    def summary(self) -> Optional[LatencySummary]:
        """The summary of the window, or None before the first sample."""
        with self._lock:
            count = min(self._n, len(self._buf))
            if not count:
                return None
            us = self._buf[:count].astype(np.float64) / 1e3
        return LatencySummary(
            what=self.what,
            count=count,
            mean_us=float(us.mean()),
            p50_us=float(np.percentile(us, 50)),
            p99_us=float(np.percentile(us, 99)),
            max_us=float(us.max()),
        )
