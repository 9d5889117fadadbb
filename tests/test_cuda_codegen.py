"""The CUDA target without a GPU: every example's ``.cu`` compiles with nvcc for sm_90, the emitted
text has the properties the design asks of a resident kernel, and the compile cache keys and writes
the way the loader relies on. (Execution is in test_cuda_gpu.py, ``-m gpu``.)"""

from __future__ import annotations

import re
import stat
from pathlib import Path

import pytest

from ringgen.build import collect
from ringgen.codegen import cuda
from ringgen.errors import ToolchainError
from ringgen.runtime import cuda_build

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted(
    p
    for p in (ROOT / "examples").glob("*.py")
    if not p.stem.startswith("_") and "ring_kernel" in p.read_text()
)

needs_nvcc = pytest.mark.skipif(cuda_build.find_nvcc() is None, reason="nvcc is not installed")


def _source(path: Path) -> tuple[object, str]:
    unit = collect(str(path.relative_to(ROOT)))
    return unit, cuda.emit(unit)[cuda.source_name(unit)]


@needs_nvcc
@pytest.mark.timeout(300)
@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_example_compiles_for_sm90(example, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    unit, text = _source(example)
    obj = cuda_build.nvcc_compile(
        text, cuda_build.DEFAULT_OPTIONS, "sm_90", what=f"{unit.name}.cu", output="obj"
    )
    assert len(obj) > 0
    for spec in unit.kernels:
        if cuda.supports(spec) is None:
            assert f"rg_{spec.name}_ring(" in text


def test_emitted_source_is_a_resident_kernel(monkeypatch):
    monkeypatch.chdir(ROOT)
    unit, text = _source(ROOT / "examples" / "vector_add.py")
    code = re.sub(r"/\*.*?\*/", "", text, flags=re.S)  # what the comments say does not count
    assert "printf" not in code
    assert "__nanosleep" in code  # idle backoff
    assert "grid.sync" not in code and "this_grid" not in code  # no grid-wide barrier
    assert "ld.acquire.sys" in code and "st.release.sys" in code  # host-shared words
    assert "__shfl_sync" not in code or unit.kernels[0].uses_outbox  # only outbox kernels reserve
    assert "__launch_bounds__(RG_BLOCK, 1)" in code
    # the control block and queue counters come from ringgen.protocol through ring.h
    assert "typedef struct rg_control" in code and "RG_LIFECYCLE_TERMINATED" in code


def test_outbox_kernel_reserves_per_warp(monkeypatch):
    monkeypatch.chdir(ROOT)
    unit, text = _source(ROOT / "examples" / "threshold_filter.py")
    assert unit.kernels[0].uses_outbox
    code = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    body = code[code.index("RG_FN void rg_threshold_filter_one") :]
    body = body[: body.index("\n}\n")]
    # one atomic per warp (lane 31 after an inclusive scan), not one per message
    assert body.count("atomicAdd((unsigned long long*)&sched->out_reserved") == 1
    assert "__shfl_up_sync" in body and "lane == 31u" in body


def test_emission_is_deterministic(monkeypatch):
    monkeypatch.chdir(ROOT)
    unit = collect("examples/vector_add.py")
    assert cuda.emit(unit) == cuda.emit(unit)


def test_bridged_kernels_are_left_out_with_a_reason(monkeypatch):
    monkeypatch.chdir(ROOT)
    unit = collect("examples/word_stats.py")
    for spec in unit.kernels:
        why = cuda.supports(spec)
        assert why and "bridged" in why and spec.input.__name__ in why or "output" in why
        assert f"rg_{spec.name}_ring(" not in cuda.emit(unit)[cuda.source_name(unit)]


def test_cache_key_covers_source_options_and_arch():
    base = cuda_build.cache_key("src", ("-O3",), "sm_90")
    assert base == cuda_build.cache_key("src", ("-O3",), "sm_90")
    assert base != cuda_build.cache_key("src2", ("-O3",), "sm_90")
    assert base != cuda_build.cache_key("src", ("-O2",), "sm_90")
    assert base != cuda_build.cache_key("src", ("-O3",), "sm_80")


def _fake_nvcc(tmp_path: Path, log: Path) -> Path:
    """A stand-in nvcc that records its calls and writes the source back as the 'cubin'."""
    script = tmp_path / "nvcc"
    script.write_text(
        "#!/bin/sh\n"
        f'echo "$@" >> {log}\n'
        'out=""; src=""; prev=""\n'
        'for a in "$@"; do [ "$prev" = "-o" ] && out="$a"; src="$a"; prev="$a"; done\n'
        'grep -q SYNTAX_ERROR "$src" && { echo "$src(1): error: bad" >&2; exit 1; }\n'
        'cp "$src" "$out"\n'
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return script


def test_compile_cache_runs_nvcc_once(tmp_path, monkeypatch):
    log = tmp_path / "calls.log"
    monkeypatch.setenv("RINGGEN_NVCC", str(_fake_nvcc(tmp_path, log)))
    monkeypatch.setenv("RINGGEN_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(cuda_build, "_memory", {})
    data, compiled = cuda_build.compile_cubin("kernel text", "sm_90")
    assert compiled and data == b"kernel text"
    assert "-arch=sm_90" in log.read_text() and "-cubin" in log.read_text()
    monkeypatch.setattr(cuda_build, "_memory", {})  # a new process: only the disk cache is left
    data2, compiled2 = cuda_build.compile_cubin("kernel text", "sm_90")
    assert (data2, compiled2) == (b"kernel text", False)
    assert len(log.read_text().splitlines()) == 1
    assert [p.suffix for p in (tmp_path / "cache" / "cuda").iterdir()] == [".cubin"]


def test_compile_error_names_the_source(tmp_path, monkeypatch):
    monkeypatch.setenv("RINGGEN_NVCC", str(_fake_nvcc(tmp_path, tmp_path / "log")))
    monkeypatch.setenv("RINGGEN_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(cuda_build, "_memory", {})
    with pytest.raises(
        ToolchainError, match=r"rejected vector_add\.cu:\n.*vector_add\.cu\(1\): error"
    ):
        cuda_build.compile_cubin("SYNTAX_ERROR", "sm_90", what="vector_add.cu")


def test_missing_nvcc_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(cuda_build, "find_nvcc", lambda: None)
    with pytest.raises(ToolchainError, match="nvcc was not found"):
        cuda_build.nvcc_compile("x", (), "sm_90", what="k.cu")
