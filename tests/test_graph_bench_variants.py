"""Every atomic_queue hop variant of bench/graph.py (``graph_hop.HOP_VARIANTS``: ``-D`` defines)
compiles with nvcc for the H200 (sm_90), for the 1- and the 8-stage bench pipeline, with the
options a launch uses; each knob changes the code it names and the default build is the one
without defines. Skipped without nvcc."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "bench")]

import graph_hop  # noqa: E402

from ringgen.check import find_nvcc  # noqa: E402

pytestmark = [
    pytest.mark.timeout(300),
    pytest.mark.skipif(find_nvcc() is None, reason="nvcc not found"),
]


def _compile(source: str, defines, what: str, output: str = "cubin") -> bytes:
    from ringgen.runtime.cuda.build import DEFAULT_OPTIONS, nvcc_compile

    options = DEFAULT_OPTIONS + tuple(f"-D{d}" for d in defines)
    return nvcc_compile(source, options, "sm_90", what=what, output=output)


@pytest.fixture(scope="module")
def sources():
    return {n: graph_hop.fused_source("atomic_queue", n) for n in (1, 8)}


@pytest.mark.parametrize("variant", list(graph_hop.HOP_VARIANTS))
def test_every_variant_compiles_for_sm90(sources, variant):
    for n, source in sources.items():
        cubin = _compile(source, graph_hop.HOP_VARIANTS[variant], f"bench{n} {variant}")
        assert cubin[:4] == b"\x7fELF", (n, variant)


def test_the_knobs_reach_the_code_they_name(sources):
    """The source reads each knob where the template says (so a -D is not silently ignored), the
    defaults keep the skeleton's values, and a variant's PTX differs from the default's."""
    src = sources[8]
    for knob in (
        "RG_AQ_HOT",
        "RG_AQ_TAKE_HOT",
        "RG_AQ_SCOPE_GPU",
        "RG_AQ_COUNT_AFTER_PUT",
        "RG_AQ_POLL_STAGGER_NS",
    ):
        assert knob in src, knob
    assert "#ifndef RG_WORKER_HOT\n#define RG_WORKER_HOT 4096u" in src
    assert "#ifndef RG_SLEEP_MAX_NS\n#define RG_SLEEP_MAX_NS 20000u" in src
    assert src.count("rg__backoff(&spins, RG_AQ_TAKE_HOT)") == 2  # rg_aq_take, both polls
    ptx = {
        v: _compile(src, graph_hop.HOP_VARIANTS[v], f"bench8 {v}", output="obj")
        for v in ("default", "gpu-scope", "take-spin", "poll2")
    }
    assert ptx["gpu-scope"] != ptx["default"]
    assert ptx["take-spin"] != ptx["default"]
    assert ptx["poll2"] != ptx["default"]


def test_the_shared_memory_source_of_the_bench_compiles_with_the_worker_knobs():
    src = graph_hop.fused_source("shared_memory", 8)
    cubin = _compile(src, ("RG_WORKER_HOT=1048576u", "RG_SLEEP_MAX_NS=1000u"), "bench8 sm")
    assert cubin[:4] == b"\x7fELF"


def test_the_hop_trace_is_the_size_the_host_reads(sources):
    """The trace array the template declares under RG_AQ_TRACE holds TRACE_WORDS words (the host
    copies exactly that many bytes), and every take and put of the 8-stage source is traced."""
    import re

    from ringgen.runtime.graph_cuda import TRACE_DEFINE, TRACE_WORDS

    src = sources[8]
    stages = int(re.search(r"#define RG_AQ_TRACE_MAX_STAGES (\d+)u", src).group(1))
    words = int(re.search(r"#define RG_AQ_TRACE_WORDS (\d+)u", src).group(1))
    assert stages * words == TRACE_WORDS and TRACE_DEFINE in graph_hop.HOP_VARIANTS["trace"]
    assert src.count("rg_aq_trace_take(RG_AQ_IX_") == 7  # stages 2..8 each take one input
    assert src.count("rg_aq_trace_put(RG_AQ_IX_") == 6  # stages 2..7 store a slot


def test_every_knob_at_once_compiles_on_the_example_graph():
    """The committed example graph (generated/pipeline: an ordered stage with state, an Optional
    exit) built with every define of every variant, the trace included."""
    src = (ROOT / "generated" / "pipeline" / "graphs" / "readings.atomic_queue.cu").read_text()
    defines = sorted({d for ds in graph_hop.HOP_VARIANTS.values() for d in ds})
    assert "RG_AQ_TRACE" in defines and "RG_AQ_POLL_STAGGER_NS=150" in defines
    assert _compile(src, defines, "readings, every knob")[:4] == b"\x7fELF"
