"""``ringgen top``: a live table of the kernels a process serves with ``rg.serve_metrics``.

It reads the metrics page (Prometheus text format) over HTTP, once per ``interval``, and shows one
row per kernel: lifecycle, messages handled per second (the change of ``processed`` between two
reads), queue depths, p50 and p99 latency when the kernel measures it (the time in the handler
from its telemetry where it records one, else the backend's latency summary), handler faults and
rejections. It needs nothing of the process but its endpoint, so it watches a process on this
machine or, through a tunnel, on another. ``rich`` draws the table and ``prometheus-client`` parses
the page (``pip install 'ringgen[top]'``).
"""

from __future__ import annotations

import importlib
import time
import urllib.error
import urllib.request
from typing import Any, Callable, Mapping, Optional

import attrs

__all__ = ["KernelRow", "TopError", "fetch", "parse", "rates", "render", "run", "url_for"]

INSTALL_HINT = "pip install 'ringgen[top]' (rich and prometheus-client)"

#: The series that identify one kernel instance (``ringgen.runtime.metrics.LABELS``).
KEY_LABELS = ("kernel", "backend", "instance")

#: One kernel instance: (kernel, backend, instance).
Key = tuple[str, str, str]


class TopError(Exception):
    """Raised when the metrics endpoint cannot be read or is not a ringgen metrics page."""


@attrs.define
class KernelRow:
    """What ``ringgen top`` shows of one kernel, read from one scrape."""

    kernel: str
    backend: str
    instance: str
    lifecycle: str = "?"
    sent: float = 0.0
    received: float = 0.0
    processed: float = 0.0
    rejected: float = 0.0
    faults: float = 0.0
    input_depth: float = 0.0
    output_depth: float = 0.0
    capacity: float = 0.0
    p50_s: Optional[float] = None
    p99_s: Optional[float] = None
    fault: Optional[str] = None
    latency_rank: int = 0  # which of ``_LATENCIES`` p50_s and p99_s come from

    @property
    def key(self) -> Key:
        return (self.kernel, self.backend, self.instance)


def _require(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise TopError(f"ringgen top needs {module.split('.')[0]}: {INSTALL_HINT}") from exc


def url_for(url: Optional[str], port: Optional[int], host: str = "127.0.0.1") -> str:
    """The metrics page to read: ``url`` as given, else ``http://HOST:PORT/metrics``."""
    if url:
        return url
    if port is None:
        raise TopError("give the metrics endpoint: --url http://HOST:PORT/metrics or --port PORT")
    return f"http://{host}:{port}/metrics"


def fetch(url: str, timeout: float = 5.0) -> str:
    """The text of the metrics page at ``url``.

    Raises:
        TopError: it cannot be reached, or answers with an HTTP error.
    """
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - user's URL
            return response.read().decode("utf-8")
    except urllib.error.HTTPError as exc:
        raise TopError(f"cannot read {url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise TopError(
            f"cannot read {url}: {reason} (is a process serving rg.serve_metrics there?)"
        ) from None


#: The latency summaries p50 and p99 are read from, by rank: the handler's time recorded by the
#: kernel's telemetry (launch option ``telemetry``) over the backend's own latency summary.
_LATENCIES = {"ringgen_latency_seconds": 1, "ringgen_handler_latency_seconds": 2}

_COUNTERS = {
    "ringgen_messages_sent": "sent",
    "ringgen_messages_received": "received",
    "ringgen_messages_processed": "processed",
    "ringgen_messages_rejected": "rejected",
    "ringgen_handler_faults": "faults",
    "ringgen_queue_capacity": "capacity",
}


def parse(text: str) -> list[KernelRow]:
    """One ``KernelRow`` per kernel instance on a metrics page, in the page's order.

    Raises:
        TopError: the text is not in the Prometheus text format.
    """
    parser = _require("prometheus_client.parser")
    rows: dict[Key, KernelRow] = {}

    def row(labels: Mapping[str, str]) -> Optional[KernelRow]:
        if not all(k in labels for k in KEY_LABELS):
            return None
        key = (labels["kernel"], labels["backend"], labels["instance"])
        if key not in rows:
            rows[key] = KernelRow(*key)
        return rows[key]

    try:
        families = list(parser.text_string_to_metric_families(text))
    except ValueError as exc:
        raise TopError(f"not a metrics page in the Prometheus text format: {exc}") from None
    for family in families:
        for sample in family.samples:
            r = row(sample.labels)
            if r is None:
                continue
            name, labels, value = sample.name, sample.labels, sample.value
            base = name[: -len("_total")] if name.endswith("_total") else name
            if base in _COUNTERS:
                field = _COUNTERS[base]
                # rejected comes as one series per reason: add them up
                setattr(r, field, getattr(r, field) + value if field == "rejected" else value)
            elif name == "ringgen_queue_depth":
                if labels.get("queue") == "input":
                    r.input_depth = value
                elif labels.get("queue") == "output":
                    r.output_depth = value
            elif name == "ringgen_kernel_lifecycle" and value >= 1:
                r.lifecycle = labels.get("state", "?")
            elif name == "ringgen_kernel_fault" and value >= 1:
                r.fault = labels.get("fault")
            elif name in _LATENCIES:
                # The handler's time from telemetry wins over the backend's own latency summary.
                q = labels.get("quantile")
                rank = _LATENCIES[name]
                if q in ("0.5", "0.99") and rank >= r.latency_rank:
                    r.latency_rank = rank
                    if q == "0.5":
                        r.p50_s = value
                    else:
                        r.p99_s = value
    return list(rows.values())


def rates(
    before: Mapping[Key, KernelRow], now: list[KernelRow], seconds: float
) -> dict[Key, float]:
    """Messages processed per second of each kernel in ``now`` that ``before`` also had."""
    out: dict[Key, float] = {}
    if seconds <= 0:
        return out
    for r in now:
        old = before.get(r.key)
        if old is not None:
            out[r.key] = max(0.0, r.processed - old.processed) / seconds
    return out


def _duration(seconds: Optional[float]) -> str:
    if seconds is None:
        return "-"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f} µs"
    if seconds < 1.0:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds:.2f} s"


def _count(value: float) -> str:
    return f"{int(value):,}"


_STYLES = {"ACTIVE": "green", "FAULTED": "bold red", "TERMINATING": "yellow"}


def render(
    rows: list[KernelRow],
    per_second: Mapping[Key, float],
    *,
    source: str,
    note: str = "",
) -> Any:
    """A ``rich`` table of ``rows``: one line per kernel; messages/s from ``per_second``."""
    table_module = _require("rich.table")
    caption = note or ("no live kernel" if not rows else "")
    table = table_module.Table(title=f"ringgen top: {source}", caption=caption or None)
    for header, justify in (
        ("kernel", "left"),
        ("backend", "left"),
        ("id", "right"),
        ("lifecycle", "left"),
        ("msg/s", "right"),
        ("processed", "right"),
        ("in depth", "right"),
        ("out depth", "right"),
        ("p50", "right"),
        ("p99", "right"),
        ("faults", "right"),
        ("rejected", "right"),
    ):
        table.add_column(header, justify=justify)
    for r in rows:
        rate = per_second.get(r.key)
        lifecycle = r.lifecycle if r.fault is None else f"{r.lifecycle} ({r.fault})"
        table.add_row(
            r.kernel,
            r.backend,
            r.instance,
            f"[{_STYLES[r.lifecycle]}]{lifecycle}[/]" if r.lifecycle in _STYLES else lifecycle,
            "-" if rate is None else f"{rate:,.0f}",
            _count(r.processed),
            f"{_count(r.input_depth)}/{_count(r.capacity)}",
            _count(r.output_depth),
            _duration(r.p50_s),
            _duration(r.p99_s),
            _count(r.faults),
            _count(r.rejected),
        )
    return table


def run(
    url: str,
    *,
    interval: float = 1.0,
    once: bool = False,
    console: Any = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Show the kernels behind ``url``: one table (``once``), or a table refreshed in place every
    ``interval`` seconds until interrupted (Ctrl-C).

    Raises:
        TopError: ``once`` and the endpoint cannot be read (a live view keeps trying and says so in
            the table's caption); rich or prometheus-client is missing.
    """
    console = console or _require("rich.console").Console()
    if once:
        console.print(render(parse(fetch(url)), {}, source=url))
        return
    live_module = _require("rich.live")
    previous: dict[Key, KernelRow] = {}
    previous_at = clock()
    rows: list[KernelRow] = []
    with live_module.Live(
        render([], {}, source=url, note="reading..."), console=console, auto_refresh=False
    ) as live:
        while True:
            note = ""
            try:
                rows = parse(fetch(url, timeout=max(interval, 1.0)))
            except TopError as exc:
                note = str(exc)
            now = clock()
            per_second = rates(previous, rows, now - previous_at) if not note else {}
            if not note:
                previous, previous_at = {r.key: r for r in rows}, now
            live.update(render(rows, per_second, source=url, note=note), refresh=True)
            sleep(interval)
