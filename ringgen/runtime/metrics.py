"""``rg.serve_metrics``: every live kernel's counters in the Prometheus text format.

A ``KernelCollector`` (a custom ``prometheus_client`` collector) reads ``stats()`` of each kernel in
``ringgen.runtime.registry.live_kernels()`` when the endpoint is scraped, so nothing is recorded
between scrapes and a kernel appears from its launch to its termination. Every sample carries the
labels ``kernel`` (its name), ``backend`` and ``instance`` (an id unique in the process, telling two
launches of one kernel apart). docs/observability.md lists the metrics.

``prometheus-client`` is optional (``pip install 'ringgen[metrics]'``); it is imported only here.
"""

from __future__ import annotations

import importlib
import threading
from typing import Any, Callable, Iterable, Iterator, Optional

from ..protocol import Lifecycle, Reason
from .logs import kernel_logger
from .registry import instance_id, live_kernels

__all__ = ["KernelCollector", "MetricsServer", "serve_metrics"]

log = kernel_logger(__name__)

LABELS = ("kernel", "backend", "instance")

#: Rejection reasons that are handler faults (the generated body raised them), not invalid input.
HANDLER_FAULTS = frozenset(r.name for r in Reason if r >= Reason.INDEX_OUT_OF_RANGE)

#: Quantiles exported from an ``hdrhistogram`` latency (a ``LatencySummary`` has only p50 and p99).
HDR_QUANTILES = (0.5, 0.9, 0.99, 0.999)

INSTALL_HINT = "pip install 'ringgen[metrics]' (prometheus-client)"


def _prometheus(module: str = "prometheus_client") -> Any:
    """``prometheus_client`` (or one of its modules), imported on first use."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(f"rg.serve_metrics needs prometheus-client: {INSTALL_HINT}") from exc


class KernelCollector:
    """A ``prometheus_client`` collector of the live kernels, snapshotted at each scrape.

    Args:
        kernels: returns the handles to report (default: every live kernel of the process).
    """

    def __init__(self, kernels: Callable[[], Iterable[Any]] = live_kernels) -> None:
        self._kernels = kernels

    def describe(self) -> list:
        # Nothing to declare up front: the kernels come and go between scrapes.
        return []

    def collect(self) -> Iterator[Any]:
        """Yield one metric family per quantity, with a sample per kernel."""
        core = _prometheus("prometheus_client.core")
        counter = core.CounterMetricFamily
        gauge = core.GaugeMetricFamily
        fam = {
            "sent": counter("ringgen_messages_sent", "Messages the host published", labels=LABELS),
            "received": counter(
                "ringgen_messages_received", "Replies the host has taken", labels=LABELS
            ),
            "processed": counter(
                "ringgen_messages_processed", "Messages the handler ran on", labels=LABELS
            ),
            "emitted": counter(
                "ringgen_messages_emitted", "Output messages the kernel published", labels=LABELS
            ),
            "rejected": counter(
                "ringgen_messages_rejected",
                "Rejected messages, by reason (ringgen.protocol.Reason)",
                labels=LABELS + ("reason",),
            ),
            "faults": counter(
                "ringgen_handler_faults",
                "Messages whose handler faulted (the rejections of handler-fault reasons)",
                labels=LABELS,
            ),
            "spilled": counter(
                "ringgen_replies_spilled",
                "Replies the host moved out of the output queue into its own buffer",
                labels=LABELS,
            ),
            "output_stalls": counter(
                "ringgen_output_stalls",
                "Times the kernel found its output queue full and waited",
                labels=LABELS,
            ),
            "dead_letters_dropped": counter(
                "ringgen_dead_letters_dropped",
                "Dead letters dropped because the dead-letter queue was full",
                labels=LABELS,
            ),
            "depth": gauge(
                "ringgen_queue_depth",
                "Messages waiting in a queue (output: with the host's spill)",
                labels=LABELS + ("queue",),
            ),
            "capacity": gauge("ringgen_queue_capacity", "Slots per queue", labels=LABELS),
            "heartbeat": gauge(
                "ringgen_heartbeat",
                "The kernel's loop counter (stuck: a stuck kernel)",
                labels=LABELS,
            ),
            "lifecycle": gauge(
                "ringgen_kernel_lifecycle",
                "1 for the kernel's lifecycle state, 0 for the others",
                labels=LABELS + ("state",),
            ),
            "fault": gauge(
                "ringgen_kernel_fault",
                "1 when the kernel stopped on an unrecoverable fault, labelled with it",
                labels=LABELS + ("fault",),
            ),
        }
        latency = core.Metric(
            "ringgen_latency_seconds", "Message latency (what the backend measures)", "summary"
        )
        # The telemetry histograms (launch option telemetry): counts are of the timed messages.
        handler_latency = core.Metric(
            "ringgen_handler_latency_seconds",
            "Time in the handler, from the kernel's telemetry (timed messages)",
            "summary",
        )
        queue_latency = core.Metric(
            "ringgen_queue_latency_seconds",
            "Time from the host's send to the handler's start, from the kernel's telemetry",
            "summary",
        )
        for handle in list(self._kernels()):
            try:
                stats = handle.stats()
                labels = [stats.kernel, stats.backend, str(instance_id(handle))]
            except Exception as exc:  # terminated or faulted between listing and reading
                name = getattr(handle, "name", "?")
                log.debug("metrics: skipping kernel %s: %s", name, exc, extra={"kernel": name})
                continue
            for key in ("sent", "received", "processed", "emitted", "spilled"):
                fam[key].add_metric(labels, getattr(stats, key))
            fam["output_stalls"].add_metric(labels, stats.output_stalls)
            fam["dead_letters_dropped"].add_metric(labels, stats.dead_letters_dropped)
            for reason, n in sorted(stats.rejected.items()):
                fam["rejected"].add_metric(labels + [reason], n)
            fam["faults"].add_metric(
                labels, sum(n for r, n in stats.rejected.items() if r in HANDLER_FAULTS)
            )
            fam["depth"].add_metric(labels + ["input"], stats.input_depth)
            fam["depth"].add_metric(labels + ["output"], stats.output_depth)
            fam["capacity"].add_metric(labels, stats.capacity)
            fam["heartbeat"].add_metric(labels, stats.heartbeat)
            for state in Lifecycle:
                fam["lifecycle"].add_metric(
                    labels + [state.name], 1.0 if stats.lifecycle is state else 0.0
                )
            if stats.fault:
                fam["fault"].add_metric(labels + [stats.fault], 1.0)
            _add_latency(latency, dict(zip(LABELS, labels)), stats.latency)
            tele = stats.telemetry
            if tele is not None:
                try:
                    _add_latency(handler_latency, dict(zip(LABELS, labels)), tele.handler_latency)
                    _add_latency(queue_latency, dict(zip(LABELS, labels)), tele.queue_latency)
                except ImportError as exc:  # hdrhistogram is optional: the page goes on without
                    log.debug(
                        "metrics: no telemetry histograms: %s", exc, extra={"kernel": stats.kernel}
                    )
        yield from fam.values()
        yield latency
        yield handler_latency
        yield queue_latency


def _add_latency(metric: Any, labels: dict, latency: Any) -> None:
    """Add a kernel's latency to the summary ``metric``, in seconds.

    Two shapes are read: a ``LatencySummary`` (microseconds: p50, p99, mean, count), and an
    ``hdrhistogram.HdrHistogram`` of nanoseconds (p50, p90, p99, p99.9). None adds nothing.
    """
    if latency is None:
        return
    name = metric.name
    if hasattr(latency, "get_value_at_percentile"):
        count = int(latency.get_total_count())
        total = float(latency.get_mean_value()) * count * 1e-9
        quantiles = [(q, latency.get_value_at_percentile(q * 100) * 1e-9) for q in HDR_QUANTILES]
    else:
        count = int(latency.count)
        total = latency.mean_us * count * 1e-6
        quantiles = [(0.5, latency.p50_us * 1e-6), (0.99, latency.p99_us * 1e-6)]
    for q, value in quantiles:
        metric.add_sample(name, dict(labels, quantile=repr(q)), float(value))
    metric.add_sample(name + "_count", labels, float(count))
    metric.add_sample(name + "_sum", labels, total)


class MetricsServer:
    """The HTTP endpoint ``serve_metrics`` started; ``close()`` stops it (also as a context manager).

    Attributes:
        port: the port it listens on.
        url: the address of its metrics page, ``http://ADDR:PORT/metrics``.
    """

    def __init__(self, server: Any, thread: threading.Thread, addr: str) -> None:
        self._server = server
        self._thread = thread
        self.port: int = int(server.server_port)
        host = f"[{addr}]" if ":" in addr else addr
        self.url = f"http://{host}:{self.port}/metrics"

    def close(self) -> None:
        """Stop serving and free the port; calling it again does nothing."""
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5.0)
        self._server = None

    def __enter__(self) -> "MetricsServer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._server is None else "serving"
        return f"<MetricsServer {self.url} {state}>"


def serve_metrics(
    port: int = 0, addr: str = "127.0.0.1", *, kernels: Optional[Callable[[], Iterable[Any]]] = None
) -> tuple[int, MetricsServer]:
    """Serve every live kernel's metrics over HTTP in the Prometheus text format, from a thread.

    Args:
        port: the port to listen on; 0 picks a free one (returned).
        addr: the address to bind; the default serves this machine only. "0.0.0.0" exposes the
            kernels' counters to the network: do that only behind a firewall.
        kernels: returns the handles to report (default: every live kernel of the process).

    Returns:
        ``(port, server)``: the bound port and the ``MetricsServer``, whose ``close()`` stops it.

    Raises:
        ImportError: prometheus-client is not installed.
        OSError: the address cannot be bound (the port is taken).
    """
    prometheus = _prometheus()
    registry = prometheus.CollectorRegistry(auto_describe=False)
    registry.register(KernelCollector(kernels or live_kernels))
    server, thread = prometheus.start_http_server(port, addr=addr, registry=registry)
    handle = MetricsServer(server, thread, addr)
    log.info("serving ringgen metrics at %s", handle.url)
    return handle.port, handle
