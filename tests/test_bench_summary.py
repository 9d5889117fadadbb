"""bench/_common.py's summary of round-trip times: HdrHistogram percentiles, the numpy fallback,
and the JSON rows that carry them (no GPU needed)."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from bench import _common
from bench._common import PERCENTILES, Result, summarize


@pytest.fixture
def samples() -> np.ndarray:
    # A long-tailed set of round trips, 5 us to a few ms, as a latency run gives.
    rng = np.random.default_rng(7)
    return 5e-6 + rng.lognormal(mean=-11.0, sigma=1.2, size=20_000)


def test_numpy_fallback_warns_and_says_so(monkeypatch, samples, caplog):
    monkeypatch.setattr(_common, "HdrHistogram", None)
    monkeypatch.setattr(_common, "_warned_numpy", False)
    with caplog.at_level(logging.WARNING, logger="ringgen.bench"):
        s = summarize(samples)
    assert s["percentiles"] == "numpy"
    assert "hdrhistogram is not installed" in caplog.text
    assert _common.percentile_method().startswith("numpy")
    for key, pct in PERCENTILES:
        assert s[key] == pytest.approx(np.percentile(samples, pct), rel=1e-12)
    assert s["n"] == samples.size and s["mean"] == pytest.approx(samples.mean())


def test_hdrhistogram_percentiles_within_its_precision(samples):
    pytest.importorskip("hdrh.histogram")
    s = summarize(samples)
    assert s["percentiles"] == "hdrhistogram"
    assert _common.percentile_method().startswith("hdrhistogram")
    ordered = np.sort(samples)
    for key, pct in PERCENTILES:
        # HdrHistogram reports the highest value equivalent to the sample at that rank (3
        # significant digits): within 0.1% of the nearest-rank percentile.
        rank = int(pct * samples.size / 100 + 0.5) - 1
        assert s[key] == pytest.approx(ordered[rank], rel=2e-3), key
    assert s["p50"] <= s["p90"] <= s["p99"] <= s["p99.9"]


def test_summarize_refuses_bad_samples():
    with pytest.raises(ValueError, match="at least one sample"):
        summarize([])
    with pytest.raises(ValueError, match="finite and >= 0"):
        summarize([1e-6, float("nan")])
    with pytest.raises(ValueError, match="finite and >= 0"):
        summarize([1e-6, -1e-6])


def test_result_json_round_trip_keeps_percentiles_and_extra(samples):
    row = Result("floor", 64, summarize(samples), {"x_floor": 1.0, "floor": "copy engines"})
    doc = row.to_json()
    assert {"p50_s", "p90_s", "p99_s", "p99_9_s", "percentiles"} <= doc.keys()
    back = Result.from_json(doc)
    assert back.seconds == row.seconds and back.extra == row.extra
    old = {"series": "s", "batch": 1, "p50_s": 1e-5, "p99_s": 2e-5, "mean_s": 1.1e-5, "n": 10}
    assert Result.from_json(old).seconds == {"p50": 1e-5, "p99": 2e-5, "mean": 1.1e-5, "n": 10}


def test_cuda_script_does_not_shadow_the_cuda_package():
    # Run as a script, bench/ is sys.path[0] and bench/cuda.py would be what `import cuda` finds:
    # CuPy 14 imports cuda.pathfinder, so `import cupy` failed and its series were lost on two GPUs.
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    code = (
        "import importlib.util, runpy, sys; sys.path.insert(0, 'bench'); "
        "runpy.run_path('bench/cuda.py'); spec = importlib.util.find_spec('cuda'); "
        "print(spec.origin if spec else None)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert "bench/cuda.py" not in out.stdout, out.stdout


@pytest.mark.parametrize("long", [False, True])
def test_a_table_of_no_rows_prints_its_head(long):
    """A run in which no series measured anything (no device launched) still prints its table:
    the title and the head, no rows (it raised TypeError in the column widths before)."""
    text = _common.print_table([], "nothing measured", long=long)
    lines = text.splitlines()
    assert lines[0] == "nothing measured" and lines[1].startswith(("batch", "series"))
    assert len(lines) == 3 and set(lines[2]) <= {"-", " "}
