"""``ringgen check`` on a package with graphs: the device sources under ``graphs/`` are compiled
(nvcc for ``.cu``, OpenCL for ``.cl``) and named by their path in the package; a broken one fails
under that name; a graph's ``.cl`` that calls ``rg.now()`` is reported as refused."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ringgen.check import check_package, find_nvcc, opencl_device, refused_sources
from ringgen.codegen.dialect_opencl import NOW_UNAVAILABLE

pytestmark = pytest.mark.timeout(300)

PIPELINE = Path(__file__).resolve().parent.parent / "generated" / "pipeline"
GRAPH_FILES = [
    "graphs/readings.atomic_queue.cu",
    "graphs/readings.shared_memory.cl",
    "graphs/readings.shared_memory.cu",
]


def _expected(path: str) -> str:
    """What a graph source's check gives on this machine: ok with its toolchain, else skipped."""
    if path.endswith(".cu"):
        return "ok" if find_nvcc() else "skipped"
    return "ok" if opencl_device()[0] is not None else "skipped"


def _graph_results(pkg: Path) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for r in check_package(pkg):
        if r.file.startswith("graphs/"):
            out.setdefault(r.file, set()).add(r.status)
    return out


def test_check_compiles_the_graph_sources_by_their_path_in_the_package():
    got = _graph_results(PIPELINE)
    assert sorted(got) == GRAPH_FILES
    for path, statuses in got.items():
        assert statuses == {_expected(path)}, path


def test_a_broken_graph_source_fails_under_its_path(tmp_path):
    pkg = tmp_path / "pipeline"
    shutil.copytree(PIPELINE, pkg)
    for path in GRAPH_FILES:
        with open(pkg / path, "a", encoding="utf-8") as f:
            f.write("\nthis is not C;\n")
    got = _graph_results(pkg)
    assert sorted(got) == GRAPH_FILES
    for path, statuses in got.items():
        want = "failed" if _expected(path) == "ok" else "skipped"
        assert statuses == {want}, path


def test_a_graph_opencl_source_calling_now_is_reported_as_refused(tmp_path):
    pkg = tmp_path / "pipeline"
    shutil.copytree(PIPELINE, pkg)
    assert refused_sources(pkg) == []
    cl = pkg / "graphs" / "readings.shared_memory.cl"
    cl.write_text(
        cl.read_text()
        + f"\n/* a stage's clock */ long rg_t(void) {{ return {NOW_UNAVAILABLE}(); }}\n"
    )
    assert [name for name, _ in refused_sources(pkg)] == ["graphs/readings.shared_memory.cl"]
