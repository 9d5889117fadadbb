"""bench/opencl.py still runs end to end (a smoke run on the OpenCL device present: PoCL here): every
series checks its replies against numpy before it is timed, so a wrong result fails the run, and
the JSON it writes has a row per series and batch size."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from ringgen.runtime import available_backends

BENCH = Path(__file__).resolve().parent.parent / "bench"

pytestmark = [
    pytest.mark.timeout(240),
    pytest.mark.skipif("opencl" not in available_backends(), reason="no OpenCL device"),
]


def test_the_opencl_bench_runs_and_checks_every_series(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    import opencl as bench_opencl

    monkeypatch.setattr(bench_opencl, "ROUNDS", 1)  # one round per batch size: a smoke run
    monkeypatch.setattr(bench_opencl, "SETTLE_S", 0.0)
    argv = ["--quick", "--batches", "1,4096", "--name", "smoke", "--out-dir", str(tmp_path)]
    assert bench_opencl.main(argv) == 0
    doc = json.loads((tmp_path / "smoke.json").read_text())
    got = {(r["series"], r["batch"]) for r in doc["results"]}
    from ringgen.runtime.opencl.build import select_device

    modes = ["persistent", "relaunch"] if select_device(None).persistent else ["relaunch"]
    assert got == {(s, b) for s in [*modes, "launch per batch"] for b in (1, 4096)}
    assert all(r["p50_s"] > 0 and r["msgs_per_s"] > 0 for r in doc["results"])
    assert (tmp_path / "smoke.png").exists()
    sys.modules.pop("opencl", None)
