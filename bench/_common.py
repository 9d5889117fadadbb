"""Shared benchmark utilities: timing, percentiles, the result table, JSON and the PNG plot.

Every ``bench/*.py`` script measures ringgen against the baseline a user would otherwise write and reports
the same way (docs/design.md §7): medians and p99 as a table on stdout, a JSON file under ``bench/results/``
stamped with device, commit and date, and a PNG plot. The API is deliberately small:

- ``time_calls(fn, repeat, warmup)`` -> per-call seconds (``time.perf_counter_ns``)
- ``summarize(samples)`` -> ``{"p50", "p90", "p99", "p99.9", "mean", "n", "percentiles"}``, times in
  seconds; the percentiles come from an HdrHistogram of the samples in ns (pip package
  ``hdrhistogram``, 3 significant digits) and, where that package is missing, from numpy, with a
  logged warning; ``"percentiles"`` says which
- ``Result`` rows, ``print_table(rows)``, ``write_json(name, rows, device)``, ``plot(name, rows)``
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Callable, Iterable, Optional

import attrs
import numpy as np

try:
    from hdrh.histogram import HdrHistogram
except ImportError:  # the numpy fallback below says so once, and the JSON records it
    HdrHistogram = None

__all__ = [
    "BATCH_SIZES",
    "PERCENTILES",
    "RESULTS_DIR",
    "Result",
    "git_commit",
    "percentile_method",
    "plot",
    "print_table",
    "summarize",
    "time_calls",
    "write_json",
]

#: The batch sizes every benchmark reports (docs/design.md §7).
BATCH_SIZES = (1, 64, 4096, 65536, 1048576)

RESULTS_DIR = Path(__file__).resolve().parent / "results"

#: The percentiles every summary reports, as (key, percent).
PERCENTILES = (("p50", 50.0), ("p90", 90.0), ("p99", 99.0), ("p99.9", 99.9))

#: HdrHistogram's range and precision: 1 ns to one hour, 3 significant digits (a value is reported
#: within 0.1% of what was recorded).
_HDR_LOWEST_NS, _HDR_HIGHEST_NS, _HDR_DIGITS = 1, 3_600_000_000_000, 3

log = logging.getLogger("ringgen.bench")
_warned_numpy = False


def time_calls(fn: Callable[[], object], repeat: int, warmup: int = 3) -> np.ndarray:
    """Run ``fn`` ``warmup`` times untimed, then ``repeat`` times; return each call's seconds."""
    for _ in range(warmup):
        fn()
    out = np.empty(repeat, dtype=np.float64)
    clock = time.perf_counter_ns
    for i in range(repeat):
        t0 = clock()
        fn()
        out[i] = (clock() - t0) * 1e-9
    return out


def percentile_method() -> str:
    """How ``summarize`` computes percentiles in this process: ``"hdrhistogram <version>, 3
    significant digits"`` or ``"numpy (hdrhistogram is not installed)"``."""
    if HdrHistogram is None:
        return "numpy (hdrhistogram is not installed)"
    from importlib.metadata import PackageNotFoundError, version

    try:
        ver = version("hdrhistogram")
    except PackageNotFoundError:  # imported from a folder on PYTHONPATH without its metadata
        ver = "(version unknown)"
    return f"hdrhistogram {ver}, {_HDR_DIGITS} significant digits"


def summarize(samples: Iterable[float]) -> dict:
    """Percentiles (``PERCENTILES``), mean and count of a set of per-call times in seconds.

    Each sample is recorded in ns in an HdrHistogram; without the ``hdrhistogram`` package numpy's
    linear-interpolation percentiles are used instead and a warning is logged (once per process).
    The returned ``"percentiles"`` names the method, so a reader never mistakes one for the other.

    Raises:
        ValueError: no samples, or a negative or non-finite one.
    """
    global _warned_numpy
    a = np.asarray(
        list(samples) if not isinstance(samples, np.ndarray) else samples, dtype=np.float64
    )
    if a.size == 0:
        raise ValueError("summarize() needs at least one sample")
    if not np.all(np.isfinite(a)) or a.min() < 0:
        raise ValueError(f"summarize(): samples must be finite and >= 0, got min {a.min()}")
    out: dict = {}
    if HdrHistogram is not None:
        hist = HdrHistogram(_HDR_LOWEST_NS, _HDR_HIGHEST_NS, _HDR_DIGITS)
        for ns in np.clip(np.rint(a * 1e9), _HDR_LOWEST_NS, _HDR_HIGHEST_NS).astype(np.int64):
            hist.record_value(int(ns))
        for key, pct in PERCENTILES:
            out[key] = hist.get_value_at_percentile(pct) * 1e-9
    else:
        if not _warned_numpy:
            log.warning(
                "hdrhistogram is not installed: percentiles come from numpy "
                "(pip install hdrhistogram); the JSON says so"
            )
            _warned_numpy = True
        for key, pct in PERCENTILES:
            out[key] = float(np.percentile(a, pct))
    out["mean"] = float(a.mean())
    out["n"] = int(a.size)
    out["percentiles"] = "hdrhistogram" if HdrHistogram is not None else "numpy"
    return out


@attrs.define
class Result:
    """One measured configuration: a series (e.g. "persistent"), a batch size and its timings.

    ``seconds`` holds the per-batch round-trip summary from ``summarize``; throughput is derived from
    the median (messages per second).
    """

    series: str
    batch: int
    seconds: dict
    extra: dict = attrs.field(factory=dict)

    @property
    def throughput(self) -> float:
        return self.batch / self.seconds["p50"] if self.seconds["p50"] > 0 else float("inf")

    def to_json(self) -> dict:
        times = {
            f"{key.replace('.', '_')}_s": self.seconds[key]
            for key, _ in PERCENTILES
            if key in self.seconds
        }
        return {
            "series": self.series,
            "batch": self.batch,
            **times,
            "mean_s": self.seconds["mean"],
            "n": self.seconds["n"],
            "msgs_per_s": self.throughput,
            **(
                {"percentiles": self.seconds["percentiles"]}
                if "percentiles" in self.seconds
                else {}
            ),
            **self.extra,
        }

    @classmethod
    def from_json(cls, row: dict) -> "Result":
        """The row ``to_json`` wrote (older files have only p50 and p99); other keys go to ``extra``."""
        seconds = {"mean": row["mean_s"], "n": row["n"]}
        for key, _ in PERCENTILES:
            if f"{key.replace('.', '_')}_s" in row:
                seconds[key] = row[f"{key.replace('.', '_')}_s"]
        if "percentiles" in row:
            seconds["percentiles"] = row["percentiles"]
        known = {"series", "batch", "mean_s", "n", "msgs_per_s", "percentiles"}
        known |= {f"{key.replace('.', '_')}_s" for key, _ in PERCENTILES}
        extra = {k: v for k, v in row.items() if k not in known}
        return cls(row["series"], row["batch"], seconds, extra)


def _fmt_time(s: float) -> str:
    if s < 1e-3:
        return f"{s * 1e6:.1f} us"
    if s < 1.0:
        return f"{s * 1e3:.2f} ms"
    return f"{s:.2f} s"


def _fmt_rate(r: float) -> str:
    for unit, scale in (("G/s", 1e9), ("M/s", 1e6), ("k/s", 1e3)):
        if r >= scale:
            return f"{r / scale:.2f} {unit}"
    return f"{r:.0f} /s"


def print_table(rows: list[Result], title: str = "", long: bool = False) -> str:
    """Print (and return) a table: one line per batch size, p50 / p99 / throughput per series; with
    ``long``, one line per series and batch size with every percentile, the rate and, where a row's
    ``extra`` has it, ``x_floor`` (its p50 over the floor's)."""
    if long:
        return _print_long_table(rows, title)
    series = list(dict.fromkeys(r.series for r in rows))
    batches = sorted({r.batch for r in rows})
    by = {(r.series, r.batch): r for r in rows}
    head = ["batch"] + [f"{s} p50 | p99 | rate" for s in series]
    lines = []
    for b in batches:
        cells = [f"{b:,}"]
        for s in series:
            r = by.get((s, b))
            cells.append(
                "-"
                if r is None
                else f"{_fmt_time(r.seconds['p50'])} | {_fmt_time(r.seconds['p99'])} | "
                f"{_fmt_rate(r.throughput)}"
            )
        lines.append(cells)
    widths = [max([len(head[i])] + [len(c[i]) for c in lines]) for i in range(len(head))]
    out = []
    if title:
        out.append(title)
    out.append("  ".join(h.ljust(w) for h, w in zip(head, widths)))
    out.append("  ".join("-" * w for w in widths))
    out.extend(
        "  ".join(
            c.rjust(w) if i == 0 else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths))
        )
        for cells in lines
    )
    text = "\n".join(out)
    print(text)
    return text


def _print_long_table(rows: list[Result], title: str) -> str:
    keys = [k for k, _ in PERCENTILES if any(k in r.seconds for r in rows)]
    head = ["series", "batch", *keys, "rate", "x floor"]
    lines = []
    for r in sorted(rows, key=lambda r: (r.batch, r.seconds["p50"])):
        ratio = r.extra.get("x_floor")
        lines.append(
            [r.series, f"{r.batch:,}"]
            + [_fmt_time(r.seconds[k]) if k in r.seconds else "-" for k in keys]
            + [_fmt_rate(r.throughput), "-" if ratio is None else f"{ratio:.2f}x"]
        )
    widths = [max([len(head[i])] + [len(c[i]) for c in lines]) for i in range(len(head))]
    out = [title] if title else []
    out.append(
        "  ".join(h.rjust(w) if i else h.ljust(w) for i, (h, w) in enumerate(zip(head, widths)))
    )
    out.append("  ".join("-" * w for w in widths))
    out.extend(
        "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths)))
        for cells in lines
    )
    text = "\n".join(out)
    print(text)
    return text


def git_commit(repo: Optional[Path] = None) -> str:
    """The commit the benchmark ran at (with ``+dirty`` when the tree has changes), or "unknown".

    ``RINGGEN_COMMIT`` (or the older ``RINGGEN_BENCH_COMMIT``) wins: a copy of the tree without
    ``.git`` (the GPU machine gets one) is told its commit by the command that runs it.
    """
    for var in ("RINGGEN_COMMIT", "RINGGEN_BENCH_COMMIT"):
        if os.environ.get(var):
            return os.environ[var]
    repo = repo or Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=repo,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=repo,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def write_json(
    name: str,
    rows: list[Result],
    device: str,
    extra: Optional[dict] = None,
    directory: Optional[Path] = None,
) -> Path:
    """Write ``<directory>/<name>.json`` with the rows, device, commit, date, host and ``extra``."""
    directory = Path(directory or RESULTS_DIR)
    directory.mkdir(parents=True, exist_ok=True)
    doc = {
        "benchmark": name,
        "device": device,
        "commit": git_commit(),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "host": {
            "machine": platform.machine(),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
        },
        **(extra or {}),
        "results": [r.to_json() for r in rows],
    }
    path = directory / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path)
    return path


def plot(name: str, rows: list[Result], title: str = "", directory: Optional[Path] = None) -> Path:
    """Write ``<directory>/<name>.png``: round-trip p50 (bar to p99, a tick at p99.9 where
    recorded) and throughput vs batch, and where rows carry ``x_floor``, a third panel: p50 over the
    floor's."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    directory = Path(directory or RESULTS_DIR)
    directory.mkdir(parents=True, exist_ok=True)
    with_floor = any("x_floor" in r.extra for r in rows)
    fig, axes = plt.subplots(1, 3 if with_floor else 2, figsize=(16 if with_floor else 11, 4.6))
    ax_t, ax_r = axes[0], axes[1]
    for s in dict.fromkeys(r.series for r in rows):
        pts = sorted((r for r in rows if r.series == s), key=lambda r: r.batch)
        b = [r.batch for r in pts]
        p50 = np.array([r.seconds["p50"] for r in pts]) * 1e6
        p99 = np.array([r.seconds["p99"] for r in pts]) * 1e6
        line = ax_t.errorbar(
            b,
            p50,
            yerr=[np.zeros_like(p50), np.maximum(p99 - p50, 0)],
            marker="o",
            capsize=3,
            label=s,
        )
        tail = [(r.batch, r.seconds["p99.9"] * 1e6) for r in pts if "p99.9" in r.seconds]
        if tail:
            ax_t.plot(
                *zip(*tail), linestyle="none", marker="_", markersize=9, color=line[0].get_color()
            )
        ax_r.plot(b, [r.throughput for r in pts], marker="o", label=s)
        if with_floor:
            ratio = [(r.batch, r.extra["x_floor"]) for r in pts if "x_floor" in r.extra]
            if ratio:
                axes[2].plot(*zip(*ratio), marker="o", label=s)
    panels = [
        (ax_t, "round trip per batch, us (p50, bar to p99, - p99.9)", "log"),
        (ax_r, "messages / s", "log"),
    ]
    if with_floor:
        axes[2].axhline(1.0, color="k", linewidth=0.8)
        panels.append((axes[2], "p50 / floor's p50", "log"))
    for ax, ylabel, yscale in panels:
        ax.set_xscale("log")
        ax.set_yscale(yscale)
        ax.set_xlabel("batch size (messages)")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    if with_floor:  # after set_yscale, which installs its own formatters
        axes[2].yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%gx"))
        axes[2].yaxis.set_minor_formatter(matplotlib.ticker.FormatStrFormatter("%gx"))
    fig.suptitle(title or name)
    fig.tight_layout()
    path = directory / f"{name}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
