"""The ``bridged`` target: generated ``bridged.py`` (black-formatted, importable, fast == reference) and
the device codec text for the bridged examples (compiles as C99 with the generated header)."""

from __future__ import annotations

import importlib
import subprocess
import sys

import black
import pytest

import ringgen as rg
from ringgen.build import collect
from ringgen.codegen import bridged_py
from ringgen.codegen.bridged_c import emit_device_codec
from ringgen.codegen.header import render_header
from ringgen.codegen.targets import TARGETS
from ringgen.codegen.writer import write_unit
from ringgen.wire.codec import decode_reference, encode_reference

from conftest import ROOT, requires_gcc

BRIDGED_EXAMPLES = ["word_stats", "list_reduce", "orders"]


def _samples(name: str):
    if name == "word_stats":
        from examples.word_stats import Word

        return [Word(1, "the"), Word(2, ""), Word(-3, "ünïcödé 😀")]
    if name == "list_reduce":
        from examples.list_reduce import Samples

        return [Samples(1, []), Samples(2, [1.5, -2.25] * 32)]
    from examples.orders import Customer, Order, OrderLine

    return [
        Order(
            1,
            Customer(7, "Ada Lovelace", "gold"),
            [OrderLine("GIFT-1", 2, 9.5), OrderLine("X", 0, 1.0)],
        ),
        Order(2, Customer(8, "", ""), []),
    ]


def test_target_is_registered():
    assert TARGETS["bridged"] == "ringgen.codegen.bridged_py:emit"


def test_no_bridged_messages_no_file():
    assert bridged_py.emit(collect(ROOT / "examples" / "vector_add.py")) == {}
    assert emit_device_codec(collect(ROOT / "examples" / "vector_add.py")) == ""


@pytest.mark.parametrize("name", BRIDGED_EXAMPLES)
def test_generated_module(name, tmp_path, monkeypatch):
    unit = collect(ROOT / "examples" / f"{name}.py")
    files = bridged_py.emit(unit)
    text = files["bridged.py"]
    assert black.format_str(text, mode=black.Mode(line_length=100)) == text
    assert f"from examples.{name} import" in text
    assert bridged_py.emit(unit) == files  # deterministic
    pkg = write_unit(unit, tmp_path, targets=["header", "serializers", "bridged", "package"])
    assert (pkg / "bridged.py").read_text() == text
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.syspath_prepend(str(ROOT))
    bridged = importlib.import_module(f"{unit.name}.bridged")
    serializers = importlib.import_module(f"{unit.name}.serializers")
    try:
        for obj in _samples(name):
            cls = type(obj)
            codec = serializers.CODECS[cls.__name__]
            assert codec is bridged.CODECS[cls.__name__]
            data = codec.pack(obj)
            assert data[12:20] != bytes(8)  # a real timestamp
            assert (
                rg.decode(cls, data)
                == obj
                == codec.unpack(data + bytes(codec.slot_size - len(data)))
            )
            fixed = getattr(bridged, f"encode_{cls.__name__}")(obj, 1, 2, 3, 4)
            assert fixed == encode_reference(
                cls, obj, sender=1, receiver=2, sequence=3, timestamp=4
            )
            assert getattr(bridged, f"fast_decode_{cls.__name__}")(fixed) == decode_reference(
                cls, fixed
            )
            arr = codec.to_array([obj, obj])
            assert codec.from_array(arr) == [obj, obj]
            slots = codec.pack_array(arr)
            assert len(slots) == 2 * codec.slot_size
            assert codec.from_array(codec.unpack_array(slots)) == [obj, obj]
    finally:
        for mod in [m for m in sys.modules if m.startswith(unit.name + ".") or m == unit.name]:
            del sys.modules[mod]


@requires_gcc
@pytest.mark.parametrize("name", BRIDGED_EXAMPLES)
def test_device_codec_compiles_with_the_header(name, tmp_path):
    unit = collect(ROOT / "examples" / f"{name}.py")
    src = tmp_path / "codec.c"
    src.write_text(
        "#define RG_FN static inline\n#define RG_GLOBAL\n#define RG_PRIVATE\n"
        + render_header(unit)
        + emit_device_codec(unit)
    )
    subprocess.run(
        [
            "gcc",
            "-std=c99",
            "-pedantic",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-Wno-unused-function",
            "-c",
            str(src),
            "-o",
            str(tmp_path / "codec.o"),
        ],
        check=True,
    )
