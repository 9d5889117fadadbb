"""The generated header compiles as C99, C++17, CUDA and OpenCL C, and its assertions bite."""

from __future__ import annotations

import re

import pytest
from conftest import requires_gcc, requires_gxx, requires_nvcc, requires_opencl

from ringgen.build import collect
from ringgen.check import check_file
from ringgen.codegen.header import emit, render_header

TOOLCHAINS = {
    "c99": ("gcc -std=c99", requires_gcc),
    "c++17": ("g++ -std=c++17", requires_gxx),
    "cuda": ("nvcc -arch=sm_90", requires_nvcc),
    "opencl": ("opencl", requires_opencl),
}


def _write(unit, tmp_path, text=None):
    ((name, body),) = emit(unit).items()
    path = tmp_path / name
    path.write_text(body if text is None else text)
    return path


def _result(path, toolchain):
    label = TOOLCHAINS[toolchain][0]
    (res,) = [r for r in check_file(path) if r.toolchain.startswith(label)]
    return res


def _params():
    return [pytest.param(t, marks=mark) for t, (_, mark) in TOOLCHAINS.items()]


@pytest.mark.parametrize("toolchain", _params())
def test_header_compiles(rich_unit, tmp_path, toolchain):
    res = _result(_write(rich_unit, tmp_path), toolchain)
    assert res.status == "ok", res.detail


@pytest.mark.parametrize("toolchain", _params())
def test_wrong_offset_fails_the_static_assertion(rich_unit, tmp_path, toolchain):
    text = render_header(rich_unit)
    good = "RG_OFFSETOF(Particle, mass) == 80"
    assert good in text
    path = _write(rich_unit, tmp_path, text.replace(good, "RG_OFFSETOF(Particle, mass) == 84"))
    res = _result(path, toolchain)
    assert res.status == "failed"
    assert "rg_check_Particle_mass_offset" in res.detail


@pytest.mark.parametrize("toolchain", _params())
def test_wrong_size_fails_the_static_assertion(rich_unit, tmp_path, toolchain):
    text = render_header(rich_unit)
    good = "sizeof(Vec3) == 12"
    assert good in text
    res = _result(_write(rich_unit, tmp_path, text.replace(good, "sizeof(Vec3) == 16")), toolchain)
    assert res.status == "failed"
    assert "rg_check_Vec3_size" in res.detail


def test_every_size_and_offset_is_asserted(rich_unit):
    text = render_header(rich_unit)
    for m in rich_unit.messages:
        assert f"RG_STATIC_ASSERT(sizeof({m.name}) == {m.size}, rg_check_{m.name}_size);" in text
        for f in m.fields:
            assert (
                f"RG_STATIC_ASSERT(RG_OFFSETOF({m.name}, {f.name}) == {f.offset}, "
                f"rg_check_{m.name}_{f.name}_offset);"
            ) in text
    for aux in ("rg_str16", "rg_list_f32_4", "rg_list_Vec3_2"):
        assert f"}} {aux};" in text
        assert f"rg_check_{aux}_size" in text


def test_structs_are_declared_dependencies_first_with_c_declarators(rich_unit):
    text = render_header(rich_unit)
    assert text.index("} Vec3;") < text.index("} Particle;")
    assert text.index("} rg_list_Vec3_2;") < text.index("} Tagged;")
    assert re.search(r"rg_i16 grid\[2\]\[3\];", text)
    assert re.search(r"Vec3 neighbours\[2\];", text)
    assert re.search(r"rg_bool alive;", text)
    assert re.search(r"rg_str16 label;", text)
    assert "#define RG_Tagged_SLOT_SIZE" in text


def test_bridged_message_is_declared_as_its_view(rich_unit):
    tagged = rich_unit.layout("Tagged")
    text = render_header(rich_unit)
    assert tagged.kind == "bridged"
    assert f"sizeof(Tagged) == {tagged.size}" in text
    assert f"#define RG_Tagged_SLOT_SIZE {tagged.slot_size}u" in text
    assert "Bridged: this is the view the device decodes into" in text


def test_header_is_deterministic_and_stamped(rich_unit):
    text = render_header(rich_unit)
    assert text == render_header(rich_unit)
    assert rich_unit.fingerprint in text
    assert f"ringgen {rich_unit.ringgen_version}" in text


@requires_gcc
def test_headers_of_two_builds_can_be_included_together(rich_unit, tmp_path):
    from pathlib import Path

    other = collect(Path(__file__).resolve().parent.parent / "examples" / "vector_add.py")
    a = _write(rich_unit, tmp_path)
    b = _write(other, tmp_path)
    main = tmp_path / "both_types.h"
    main.write_text(f'#include "{a.name}"\n#include "{b.name}"\n')
    assert _result(main, "c99").status == "ok"
