"""Shared benchmark utilities: timing, percentiles, the result table, JSON and the PNG plot.

Every ``bench/*.py`` script measures ringgen against the baseline a user would otherwise write and reports
the same way (docs/design.md §7): medians and p99 as a table on stdout, a JSON file under ``bench/results/``
stamped with device, commit and date, and a PNG plot. The API is deliberately small:

- ``time_calls(fn, repeat, warmup)`` -> per-call seconds (``time.perf_counter_ns``)
- ``summarize(samples)`` -> ``{"p50": ..., "p99": ..., "mean": ..., "n": ...}`` in seconds
- ``Result`` rows, ``print_table(rows)``, ``write_json(name, rows, device)``, ``plot(name, rows)``
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Callable, Iterable, Optional

import attrs
import numpy as np

__all__ = [
    "BATCH_SIZES",
    "RESULTS_DIR",
    "Result",
    "git_commit",
    "plot",
    "print_table",
    "summarize",
    "time_calls",
    "write_json",
]

#: The batch sizes every benchmark reports (docs/design.md §7).
BATCH_SIZES = (1, 64, 4096, 65536, 1048576)

RESULTS_DIR = Path(__file__).resolve().parent / "results"


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


def summarize(samples: Iterable[float]) -> dict:
    """Median, 99th percentile, mean and count of a set of per-call times (seconds)."""
    a = np.asarray(
        list(samples) if not isinstance(samples, np.ndarray) else samples, dtype=np.float64
    )
    if a.size == 0:
        raise ValueError("summarize() needs at least one sample")
    return {
        "p50": float(np.median(a)),
        "p99": float(np.percentile(a, 99)),
        "mean": float(a.mean()),
        "n": int(a.size),
    }


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
        return {
            "series": self.series,
            "batch": self.batch,
            "p50_s": self.seconds["p50"],
            "p99_s": self.seconds["p99"],
            "mean_s": self.seconds["mean"],
            "n": self.seconds["n"],
            "msgs_per_s": self.throughput,
            **self.extra,
        }


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


def print_table(rows: list[Result], title: str = "") -> str:
    """Print (and return) a table: one line per batch size, p50 / p99 / throughput per series."""
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
    widths = [max(len(head[i]), *(len(c[i]) for c in lines)) for i in range(len(head))]
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


def git_commit(repo: Optional[Path] = None) -> str:
    """The commit the benchmark ran at (with ``+dirty`` when the tree has changes), or "unknown".

    ``RINGGEN_BENCH_COMMIT`` wins: a copy of the tree without ``.git`` (the GPU machine gets one) is
    told its commit by the command that runs it.
    """
    if os.environ.get("RINGGEN_BENCH_COMMIT"):
        return os.environ["RINGGEN_BENCH_COMMIT"]
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
    """Write ``<directory>/<name>.png``: round-trip p50 (with p99 whiskers) and throughput vs batch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    directory = Path(directory or RESULTS_DIR)
    directory.mkdir(parents=True, exist_ok=True)
    fig, (ax_t, ax_r) = plt.subplots(1, 2, figsize=(11, 4.2))
    for s in dict.fromkeys(r.series for r in rows):
        pts = sorted((r for r in rows if r.series == s), key=lambda r: r.batch)
        b = [r.batch for r in pts]
        p50 = np.array([r.seconds["p50"] for r in pts]) * 1e6
        p99 = np.array([r.seconds["p99"] for r in pts]) * 1e6
        ax_t.errorbar(
            b,
            p50,
            yerr=[np.zeros_like(p50), np.maximum(p99 - p50, 0)],
            marker="o",
            capsize=3,
            label=s,
        )
        ax_r.plot(b, [r.throughput for r in pts], marker="o", label=s)
    for ax, ylabel in (
        (ax_t, "round trip per batch, us (p50, bar to p99)"),
        (ax_r, "messages / s"),
    ):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("batch size (messages)")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.suptitle(title or name)
    fig.tight_layout()
    path = directory / f"{name}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
