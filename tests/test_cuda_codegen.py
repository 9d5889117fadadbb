"""The CUDA target without a GPU: every example's ``.cu`` compiles with nvcc for sm_90, the emitted
text has the properties the design asks of a resident kernel, and the compile cache keys and writes
the way the loader relies on. (Execution is in test_cuda_gpu.py, ``-m gpu``.)"""

from __future__ import annotations

import re
import stat
from pathlib import Path

import pytest

import numpy as np

from ringgen.build import collect
from ringgen.codegen import cuda
from ringgen.errors import ToolchainError
from ringgen.layout import layout_of
from ringgen.runtime.cuda import build as cuda_build

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


def test_bridged_kernels_decode_validate_and_encode(monkeypatch):
    """A bridged kernel reads whole 16-byte aligned slots, validates and decodes them with the shared
    device codec, counts a bad one by its Reason (a hole, never a reply), and encodes its reply."""
    monkeypatch.chdir(ROOT)
    unit = collect("examples/word_stats.py")
    text = cuda.emit(unit)[cuda.source_name(unit)]
    code = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    (spec,) = unit.kernels
    word, stat = layout_of(spec.input), layout_of(spec.output)
    stride = cuda.slot_stride(word.slot_size)
    assert stride % 16 == 0 and word.slot_size <= stride < word.slot_size + 16
    assert "RG_FN int rg_decode_Word(" in code and "RG_FN rg_u32 rg_encode_WordStat(" in code
    fetch = code[code.index("RG_FN int rg_word_stats_fetch") :]
    fetch = fetch[: fetch.index("\n}\n")]
    assert f"slot * {stride}u" in fetch and "__ldcv" in code
    assert f"rg_decode_Word((const rg_u8*)raw, {word.slot_size}u, {word.type_id}u, msg)" in fetch
    reject = code[code.index("RG_FN void rg_word_stats_reject") :]
    reject = reject[: reject.index("\n}\n")]
    assert "rg_word_stats_fault(sched, -why)" in reject and "hole_marks[seq & in_mask]" in reject
    put = code[code.index("RG_FN void rg_word_stats_put") :]
    put = put[: put.index("\n}\n")]
    assert "rg_encode_WordStat(" in put and "rg__store_words((uint4*)dst" in put
    assert f"out_ring + (seq & out_mask) * {cuda.slot_stride(stat.slot_size)}u" in code
    assert "rg_word_stats_ring(rg_control* ctl, rg_queue_ctl* inq, const rg_u8* in_ring" in code


BRIDGED_OUTBOX = """
import ringgen as rg
from ringgen.types import List, Str, i32, i64


@rg.message
class Tagged:
    id: i64
    tags: List[i32, 4]


@rg.message
class Label:
    id: i64
    text: Str[12]


@rg.ring_kernel
def labels(t: Tagged, out: rg.Outbox[Label]) -> None:
    for x in t.tags:
        if x > 0:
            out.emit(Label(id=t.id, text="positive"))
"""


@needs_nvcc
@pytest.mark.timeout(300)
def test_bridged_outbox_kernel_compiles(tmp_path, monkeypatch):
    """An Outbox of bridged replies: 16-byte aligned stamped slots, the layout the loader reads."""
    from ringgen.runtime.cuda.abi import outbox_slot

    path = tmp_path / "h8_bridged_outbox.py"
    path.write_text(BRIDGED_OUTBOX)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    unit = collect(str(path))
    text = cuda.emit(unit)[cuda.source_name(unit)]
    (spec,) = unit.kernels
    lay = layout_of(spec.outbox)
    stride = cuda.slot_stride(lay.slot_size)
    assert f"rg_u8 m[{stride}];" in text and "rg_labels_put(slot->m, &ob.items[j], pos)" in text
    host = outbox_slot(
        np.dtype((np.void, lay.slot_size)), *cuda.compute_outbox_slot(lay.slot_size, bridged=True)
    )
    assert host.fields["stamp"][1] == stride and host.itemsize == stride + 16
    obj = cuda_build.nvcc_compile(
        text, cuda_build.DEFAULT_OPTIONS, "sm_90", what=f"{unit.name}.cu", output="obj"
    )
    assert len(obj) > 0


def test_dialect_subclasses_the_shared_base():
    """CudaDialect fills the Dialect contract: every prelude name the shared body may use is defined."""
    from ringgen.codegen.dialect import Dialect, prelude_names
    from ringgen.codegen.dialect_cuda import CUDA_DIALECT

    assert isinstance(CUDA_DIALECT, Dialect) and CUDA_DIALECT.persistent
    text = CUDA_DIALECT.prelude()
    for name in prelude_names(CUDA_DIALECT.has_f64, CUDA_DIALECT.has_atomics_64):
        assert re.search(rf"(#define|RG_FN [a-z0-9_ ]+) ?{name}\b", text), name
    assert "#define rg_sqrt_f32(a) sqrtf((a))" in text
    assert "atomicMin((long long*)p" in text  # signed 64-bit min compares signed


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
    (entry,) = (tmp_path / "cache" / "cuda").iterdir()
    assert sorted(p.name for p in entry.iterdir()) == ["entry.json", "kernel.cubin"]


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


STATE_ONLY_BRIDGED = """
import ringgen as rg
from ringgen.types import Str, i64


@rg.message
class Note:
    id: i64
    text: Str[16]


@rg.state
class Seen:
    total: i64


@rg.ring_kernel
def tally(n: Note, state: Seen) -> None:
    rg.atomic_add(state.total, n.id)


@rg.ring_kernel(ordered=True)
def last(n: Note, state: Seen) -> Note:
    state.total = n.id
    return n
"""


def _ring_signature(code: str, kernel: str) -> str:
    sig = code[code.index(f"rg_{kernel}_ring(") :]
    return sig[: sig.index(")") + 1]


def test_dead_letter_marks_only_in_bridged_kernels(monkeypatch):
    """A bridged kernel takes the dead-letter marks as its ring kernel's last parameter, marks a
    rejected slot with (seq + 1) << 8 | reason when they are given, and releases the input head at
    system scope (the host reads the marks below it); a direct kernel has none of it and still
    stores its head relaxed, as before dead letters existed."""
    monkeypatch.chdir(ROOT)
    unit, text = _source(ROOT / "examples" / "word_stats.py")
    code = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    assert _ring_signature(code, "word_stats").endswith("* state, rg_u64* dead_marks)")
    reject = code[code.index("RG_FN void rg_word_stats_reject") :]
    reject = reject[: reject.index("\n}\n")]
    assert "if (dead_marks) {" in reject
    assert "dead_marks[seq & in_mask] = ((seq + 1ull) << 8) | (rg_u64)why;" in reject
    assert code.count("rg_word_stats_reject(seq, why, sched, hole_marks, in_mask, dead_marks,") == 1
    assert "rg_queue_release_head(inq, pub);" in code
    assert "rg_store_relaxed_u64(&inq->head, pub);" not in code
    assert "hole_marks, state, dead_marks);" in code  # the ring kernel passes them to its workers

    for direct in ("vector_add", "threshold_filter", "counters"):
        unit, text = _source(ROOT / "examples" / f"{direct}.py")
        assert "dead_marks" not in text
        code = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
        assert "rg_store_relaxed_u64(&inq->head, pub);" in code
        assert "rg_queue_release_head(inq, pub)" not in code
        for spec in unit.kernels:
            assert _ring_signature(code, spec.name).endswith("* state)")


@needs_nvcc
@pytest.mark.timeout(300)
def test_dead_letter_kernels_compile(tmp_path, monkeypatch):
    """Bridged kernels with dead-letter marks compile for sm_90: one with a positional reply, one with
    no output queue at all (its head release alone carries the marks to the host) and an ordered one
    (a single thread validates and rejects)."""
    path = tmp_path / "h10_state_only.py"
    path.write_text(STATE_ONLY_BRIDGED)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    unit = collect(str(path))
    text = cuda.emit(unit)[cuda.source_name(unit)]
    code = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    assert unit.kernels[0].output is None and unit.kernels[1].ordered
    assert "dead_marks[seq & in_mask]" in code and "rg_queue_release_head(inq, pub);" in code
    assert _ring_signature(code, "tally").endswith(", rg_u64* dead_marks)")
    assert _ring_signature(code, "last").endswith(", rg_u64* dead_marks)")
    # the ordered kernel's single thread rejects through the same path
    assert code.count("rg_last_reject(seq, why, sched, hole_marks, in_mask, dead_marks,") == 1
    for source, what in ((text, "h10_state_only.cu"), (_source_at(ROOT, "word_stats"), "ws.cu")):
        obj = cuda_build.nvcc_compile(
            source, cuda_build.DEFAULT_OPTIONS, "sm_90", what=what, output="obj"
        )
        assert len(obj) > 0


def _source_at(root: Path, example: str) -> str:
    unit = collect(str(root / "examples" / f"{example}.py"))
    return cuda.emit(unit)[cuda.source_name(unit)]
