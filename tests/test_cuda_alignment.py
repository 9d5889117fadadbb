"""Every load and store a CUDA ring kernel makes to a slot is aligned to its width (issue 10), without
a GPU: for replies of every size from 1 to 80 bytes, at every alignment, and the two held-out kernels
that faulted on the H200, the generator's slot geometry, the host's view of it and the emitted
``static_assert``s agree, and the ``.cu`` compiles for sm_90. A geometry that would misalign a
16-byte store is a ``CodegenError`` before any text exists. (The GPU run of the two kernels is
tests/test_cuda_outbox_alignment.py.)"""

from __future__ import annotations

import re

import numpy as np
import pytest

from ringgen.build import collect
from ringgen.codegen import cuda
from ringgen.errors import CodegenError
from ringgen.layout import layout_of
from ringgen.runtime.cuda import build as cuda_build
from ringgen.runtime.cuda.abi import outbox_slot

from cuda_alignment_kernels import sized_messages, sized_source

needs_nvcc = pytest.mark.skipif(cuda_build.find_nvcc() is None, reason="nvcc is not installed")


@pytest.fixture(scope="module")
def sized(tmp_path_factory):
    """The build unit of ``sized_source()`` and its emitted ``.cu``."""
    root = tmp_path_factory.mktemp("sized")
    path = root / "sized_kernels.py"
    path.write_text(sized_source())
    unit = collect(str(path))
    return unit, cuda.emit(unit)[cuda.source_name(unit)]


def test_the_sizes_cover_1_to_80_bytes_and_the_issue_kernels(sized):
    unit, _ = sized
    sizes = {layout_of(k.outbox).size for k in unit.kernels if k.uses_outbox}
    assert set(range(1, 81)) <= sizes
    names = {k.name for k in unit.kernels}
    assert {"bucketize", "scale"} <= names
    wide = [m for m in sized_messages() if m[1] % 16 == 0]  # with a positional echo each
    assert len(unit.kernels) == len(sized_messages()) + len(wide) + 2


def test_every_slot_access_is_aligned_to_its_width(sized):
    unit, text = sized
    for spec in unit.kernels:
        ctx = cuda.kernel_context(spec)
        lin = layout_of(spec.input)
        assert ctx["in_width"] == cuda.access_width(lin.size)
        assert ctx["in_stride"] % ctx["in_width"] == 0, spec.name
        size = layout_of(spec.outbox or spec.output).size
        assert ctx["out_width"] == cuda.access_width(size)
        stride = ctx["out_slot_stride"]
        assert stride % ctx["out_width"] == 0, spec.name
        if spec.uses_outbox:
            # every slot starts 16-byte aligned; the stamp follows the message, 8-byte aligned
            assert stride % 16 == 0 and ctx["out_stamp_at"] % 8 == 0, spec.name
            assert size <= ctx["out_stamp_at"] < ctx["out_stamp_at"] + 8 <= stride
            host = outbox_slot(
                np.dtype((np.void, size)), *cuda.compute_outbox_slot(size, bridged=False)
            )
            assert host.itemsize == stride and host.fields["stamp"][1] == ctx["out_stamp_at"]
            slot = f"rg_{spec.name}_out_slot"
            assert f"RG_STATIC_ASSERT(sizeof({slot}) == {stride}," in text
            assert f"RG_STATIC_ASSERT(RG_OFFSETOF({slot}, stamp) == {ctx['out_stamp_at']}," in text
            assert f"rg__store_slot<{ctx['out_width']}>(&slot->m, ob.items[j]);" in text
        else:
            name = layout_of(spec.output).name
            assert stride == size
            assert f"RG_STATIC_ASSERT(sizeof({name}) == {stride} && {stride} % " in text
            assert f"rg__store_slot<{ctx['out_width']}>(&out_ring[seq & out_mask], out);" in text


def test_every_16_byte_store_in_the_source_has_a_16_byte_stride(sized):
    """Read back from the text: each kernel's stores of W=16 go to a slot whose asserted size is a
    multiple of 16 (the assertion nvcc checks below), never to a 24- or 40-byte slot."""
    unit, text = sized
    sizes = dict(re.findall(r"RG_STATIC_ASSERT\(sizeof\((rg_\w+_out_slot)\) == (\d+),", text))
    wide = 0
    for spec in unit.kernels:
        if spec.uses_outbox and "rg__store_slot<16>" in _one_function(text, spec.name):
            wide += 1
            assert int(sizes[f"rg_{spec.name}_out_slot"]) % 16 == 0, spec.name
    assert wide >= 10  # sizes 16, 32, 48, 64, 80 at three alignments, and the issue's two


def _one_function(text: str, kernel: str) -> str:
    start = text.index(f"RG_FN void rg_{kernel}_one(")
    return text[start : text.index("\n}\n", start)]


def test_the_issue_kernels_had_misaligned_slots_before(sized):
    """What broke on the H200: a 16-byte reply in a 24-byte slot, a 32-byte one in a 40-byte slot.
    Both now sit in slots of 32 and 48 bytes."""
    unit, _ = sized
    by_name = {k.name: k for k in unit.kernels}
    assert cuda.kernel_context(by_name["scale"])["out_slot_stride"] == 32
    assert cuda.kernel_context(by_name["bucketize"])["out_slot_stride"] == 48
    assert layout_of(by_name["bucketize"].outbox).size == 32


def test_a_misaligned_geometry_is_a_codegen_error(sized, monkeypatch):
    """The generator asserts its own geometry: the old slot rule (stamp right after the message,
    8-byte aligned) is refused before any text is rendered, naming kernel, slot and stride."""
    unit, _ = sized

    def old_rule(slot_size, *, bridged):
        at = (slot_size + 7) // 8 * 8
        return at + 8, at

    monkeypatch.setattr(cuda, "compute_outbox_slot", old_rule)
    scale = next(k for k in unit.kernels if k.name == "scale")
    with pytest.raises(CodegenError) as info:
        cuda.kernel_context(scale)
    assert info.value.message == (
        "kernel scale: outbox output slot (stride 24, 16-byte accesses): stride 24 is not a "
        "multiple of the 16-byte access; stride 24 is not a multiple of 16"
    )
    with pytest.raises(CodegenError, match=r"kernel echo_s9a1: outbox output slot \(stride 24, "):
        cuda.emit(unit)


def test_check_slot_geometry_names_each_fault():
    cuda.check_slot_geometry("k", cuda.SlotGeometry("input", 48, 16))
    with pytest.raises(CodegenError, match=r"kernel k: output slot \(stride 20, 8-byte accesses\)"):
        cuda.check_slot_geometry("k", cuda.SlotGeometry("output", 20, 8))
    with pytest.raises(CodegenError, match="the stamp at offset 12 is not 8-byte aligned"):
        cuda.check_slot_geometry("k", cuda.SlotGeometry("outbox output", 32, 4, stamp_at=12))


@pytest.mark.parametrize(
    "size,bridged,expected",
    [
        (1, False, (16, 8)),
        (8, False, (16, 8)),
        (9, False, (32, 16)),
        (16, False, (32, 16)),
        (24, False, (32, 24)),
        (32, False, (48, 32)),
        (40, False, (48, 40)),
        (300, True, (320, 304)),
    ],
)
def test_compute_outbox_slot(size, bridged, expected):
    assert cuda.compute_outbox_slot(size, bridged=bridged) == expected


def test_fault_hook_is_emitted_only_when_asked(sized):
    unit, text = sized
    assert "TEST-ONLY" not in text and "__trap" not in text
    hooked = cuda.emit(unit, fault=cuda.FaultHook("trap", 3))[cuda.source_name(unit)]
    assert hooked.count("__trap();") == len(unit.kernels)
    assert "if (active && seq == 3ull) {" in hooked
    illegal = cuda.emit(unit, fault=cuda.FaultHook("illegal"))[cuda.source_name(unit)]
    assert "*(volatile rg_u32*)(rg_u64)8u = 1u;" in illegal
    with pytest.raises(ValueError):
        cuda.FaultHook("segfault")


@needs_nvcc
@pytest.mark.timeout(600)
def test_sized_kernels_compile_for_sm90(sized):
    """nvcc checks the emitted static_asserts (slot sizes, stamp offsets, 16-byte alignment) and the
    width argument of every rg__load_slot / rg__store_slot against sizeof."""
    unit, text = sized
    obj = cuda_build.nvcc_compile(
        text, cuda_build.DEFAULT_OPTIONS, "sm_90", what=f"{unit.name}.cu", output="obj"
    )
    assert len(obj) > 0


@needs_nvcc
@pytest.mark.timeout(600)
@pytest.mark.parametrize("kind", cuda.FAULT_KINDS)
def test_fault_hooked_kernel_compiles_for_sm90(kind):
    """The test-only hook (tests/test_cuda_fault.py uses it on the GPU) is valid CUDA."""
    import cuda_fault_kernels

    unit = collect(cuda_fault_kernels)
    text = cuda.emit(unit, fault=cuda.FaultHook(kind, 3))[cuda.source_name(unit)]
    obj = cuda_build.nvcc_compile(
        text, cuda_build.DEFAULT_OPTIONS, "sm_90", what=f"{unit.name}.cu ({kind})", output="obj"
    )
    assert len(obj) > 0
