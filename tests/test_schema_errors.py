"""Every rejected declaration gets one exact message naming the class and the field, at its line.

Declaration-time errors (names) raise from the decorator; type errors raise when the schema is first
resolved (``rg.spec_of``/``rg.layout_of``), which is also what ``ringgen build`` does.
"""

import linecache
import typing

import attrs
import pytest

import ringgen as rg
from ringgen.build import collect
from ringgen.errors import BuildError, LayoutError, SchemaError
from ringgen.types import Array, List, Str, f32, f64, i32, i64, u8


def _at_field(exc: rg.RinggenError, field: str) -> None:
    """The error points at this test file, on the line that declares ``field``."""
    assert exc.file == __file__
    assert linecache.getline(exc.file, exc.line).strip().startswith(f"{field}:")


def _resolve_error(cls) -> SchemaError:
    with pytest.raises(SchemaError) as info:
        rg.spec_of(cls)
    return info.value


def test_list_annotation():
    @rg.message
    class BadList:
        xs: list

    err = _resolve_error(BadList)
    assert err.message == "BadList.xs: list is not supported: GPU messages need a bound"
    assert err.hint == "use Array[T, N] or List[T, N]"
    _at_field(err, "xs")


def test_parametrised_list_annotation():
    @rg.message
    class BadTypedList:
        ys: list[int]

    err = _resolve_error(BadTypedList)
    assert err.message == "BadTypedList.ys: list is not supported: GPU messages need a bound"
    _at_field(err, "ys")


def test_dict_annotation():
    @rg.message
    class BadDict:
        table: dict

    err = _resolve_error(BadDict)
    assert err.message == "BadDict.table: dict is not supported in messages"
    _at_field(err, "table")


def test_unbounded_str():
    @rg.message
    class BadStr:
        name: str

    err = _resolve_error(BadStr)
    assert err.message == "BadStr.name: unbounded str is not supported"
    assert err.hint == "use Str[N] with a bound N in UTF-8 bytes"
    _at_field(err, "name")


def test_optional_field():
    @rg.message
    class BadOptional:
        maybe: typing.Optional[i32]

    err = _resolve_error(BadOptional)
    assert err.message == "BadOptional.maybe: Optional and Union are not supported"
    _at_field(err, "maybe")


def test_bytes_field():
    @rg.message
    class BadBytes:
        blob: bytes

    err = _resolve_error(BadBytes)
    assert err.message == "BadBytes.blob: bytes is not supported"
    _at_field(err, "blob")


@pytest.mark.parametrize(
    "field, languages",
    [
        ("int", "C"),  # a C keyword
        ("threadIdx", "CUDA"),  # a CUDA built-in
        ("global", "OpenCL C"),  # an OpenCL address space
        ("kernel", "OpenCL C, Metal"),
        ("threadgroup", "Metal"),  # a Metal address space
        ("template", "C++"),
    ],
)
def test_reserved_field_name(field, languages):
    with pytest.raises(SchemaError) as info:
        rg.message(type("Holder", (), {"__annotations__": {field: i32}, "__module__": __name__}))
    assert info.value.message == f"Holder.{field}: '{field}' is a reserved word in {languages}"
    assert info.value.hint == f"rename the field, e.g. {field}_"


def test_reserved_field_name_in_source_points_at_the_field():
    with pytest.raises(SchemaError) as info:

        @rg.message
        class Keyed:
            id: i64
            float4: f32

    assert (
        info.value.message == "Keyed.float4: 'float4' is a reserved word in CUDA, OpenCL C, Metal"
    )
    _at_field(info.value, "float4")


def test_reserved_class_name():
    with pytest.raises(SchemaError) as info:

        @rg.message
        class half:  # noqa: N801 - the point of the test
            x: f32

    assert info.value.message == "class half: the name is a reserved word in CUDA, OpenCL C, Metal"


def test_generated_prefix_is_reserved():
    with pytest.raises(SchemaError) as info:

        @rg.message
        class Prefixed:
            rg_len: i32

    assert info.value.message == "Prefixed.rg_len: the prefix 'rg_' is reserved for generated code"


def test_double_underscore_name():
    with pytest.raises(SchemaError) as info:

        @rg.message
        class Dunder:
            a__b: i32

    assert info.value.message == "Dunder.a__b: names containing '__' are reserved in C++"


def test_message_without_fields():
    with pytest.raises(SchemaError) as info:

        @rg.message
        class Empty:
            pass

    assert info.value.message == "message Empty has no fields; C has no empty structs"


def test_message_contains_itself():
    @rg.message
    class Node:
        value: i32
        child: "Node"

    err = _resolve_error(Node)
    assert err.message == (
        "Node.child: message Node contains itself (Node -> Node); a fixed-size layout cannot hold it"
    )
    _at_field(err, "child")


def test_messages_containing_each_other():
    @rg.message
    class Ping:
        pong: "Pong"

    @rg.message
    class Pong:
        pings: Array[Ping, 2]

    globals().update(Ping=Ping, Pong=Pong)  # string annotations resolve in the module namespace
    try:
        err = _resolve_error(Ping)
    finally:
        del globals()["Ping"], globals()["Pong"]
    assert err.message == (
        "Pong.pings: message Ping contains itself (Ping -> Pong -> Ping); "
        "a fixed-size layout cannot hold it"
    )
    _at_field(err, "pings")


@pytest.mark.parametrize("length", [0, -3])
def test_array_length_not_positive(length):
    @rg.message
    class BadArray:
        xs: Array[f32, length]

    err = _resolve_error(BadArray)
    assert err.message == f"BadArray.xs: Array length must be positive, got {length}"
    _at_field(err, "xs")


def test_array_length_not_integer():
    @rg.message
    class FloatLength:
        xs: Array[f32, 2.5]

    err = _resolve_error(FloatLength)
    assert err.message == "FloatLength.xs: Array length must be an integer literal, got 2.5"


def test_malformed_array():
    @rg.message
    class OneArg:
        xs: Array[f32]

    err = _resolve_error(OneArg)
    assert err.message == "OneArg.xs: malformed Array[...] annotation"
    assert err.hint == "Array takes an element type and a length: Array[f32, 4]"


def test_str_bound_not_positive():
    @rg.message
    class ZeroStr:
        s: Str[0]

    err = _resolve_error(ZeroStr)
    assert err.message == "ZeroStr.s: Str bound must be a positive integer number of bytes, got 0"


def test_list_bound_not_positive():
    @rg.message
    class NegList:
        items: List[f32, -1]

    err = _resolve_error(NegList)
    assert err.message == "NegList.items: List bound must be a positive integer, got -1"


def test_str_over_payload_bound():
    @rg.message
    class HugeStr:
        text: Str[70000]

    err = _resolve_error(HugeStr)
    assert err.message == "HugeStr.text: Str[70000] exceeds the 65536-byte payload bound"


def test_bridged_message_over_payload_bound():
    @rg.message
    class TooBig:
        first: Str[40000]
        second: Str[30000]

    with pytest.raises(LayoutError) as info:
        rg.layout_of(TooBig)
    assert info.value.message == (
        "TooBig: bridged payload bound is 70017 bytes, over the 65536-byte limit "
        "(largest field: TooBig.first, 40008 bytes)"
    )
    _at_field(info.value, "first")


def test_direct_message_over_size_bound():
    @rg.message
    class Wide:
        id: i64
        samples: Array[f64, 9000]

    with pytest.raises(LayoutError) as info:
        rg.layout_of(Wide)
    assert info.value.message == (
        "Wide: struct size is 72008 bytes, over the 65536-byte limit "
        "(largest field: Wide.samples, 72000 bytes)"
    )


def test_array_of_str():
    @rg.message
    class Names:
        names: Array[Str[8], 4]

    err = _resolve_error(Names)
    assert err.message == (
        "Names.names: Array elements must be fixed-size; a Str or List inside an Array is not allowed"
    )


def test_list_of_lists():
    @rg.message
    class Ragged:
        rows: List[List[u8, 4], 4]

    err = _resolve_error(Ragged)
    assert (
        err.message
        == "Ragged.rows: List elements must be scalars, Arrays or messages, not Str or List"
    )


def test_state_nested_in_message():
    @rg.state
    class Counter:
        n: i64

    @rg.message
    class Carrier:
        counter: Counter

    err = _resolve_error(Carrier)
    assert (
        err.message == "Carrier.counter: Counter is a @rg.state class; only messages can be nested"
    )


def test_state_with_str():
    @rg.state
    class Named:
        name: Str[8]

    err = _resolve_error(Named)
    assert err.message == (
        "Named.name: kernel state must be fixed-size; Str and List are only allowed in messages"
    )


def test_plain_attrs_class_field():
    @attrs.define
    class Plain:
        x: int

    @rg.message
    class UsesPlain:
        p: Plain

    err = _resolve_error(UsesPlain)
    assert err.message == "UsesPlain.p: Plain is an attrs class but not a ringgen message"
    assert err.hint == "decorate Plain with @rg.message"


def test_unknown_name_in_string_annotation():
    @rg.message
    class Unknown:
        x: "NoSuchType"  # noqa: F821

    err = _resolve_error(Unknown)
    assert err.message == "Unknown.x: unknown type in annotation: name 'NoSuchType' is not defined"


def test_complex_field():
    @rg.message
    class Wave:
        amplitude: complex

    err = _resolve_error(Wave)
    assert err.message == "Wave.amplitude: complex is not supported"


def test_duplicate_message_names_in_one_build(module_file):
    first = module_file(
        "import ringgen as rg\n"
        "from ringgen.types import f32\n"
        "\n"
        "@rg.message\n"
        "class Point:\n"
        "    x: f32\n"
        "\n"
        "@rg.message\n"
        "class Segment:\n"
        "    a: Point\n",
        name="geo_first",
    )
    second = module_file(
        "import ringgen as rg\n"
        "from ringgen.types import i32\n"
        "from geo_first import Segment\n"
        "\n"
        "@rg.message\n"
        "class Route:\n"
        "    leg: Segment\n"
        "\n"
        "@rg.message\n"
        "class Point:  # not geo_first.Point, but the same C struct name\n"
        "    y: i32\n",
        name="geo_second",
    )
    with pytest.raises(BuildError) as info:
        collect(second)
    assert info.value.message == (
        f"duplicate message name 'Point': geo_first.Point ({first}:5) and "
        f"geo_second.Point ({second}:10)"
    )


def test_module_declaring_nothing(module_file):
    path = module_file("x = 1\n", name="nothing_here")
    with pytest.raises(BuildError) as info:
        collect(path)
    assert info.value.message == (
        "nothing_here declares no @rg.message, @rg.state or @rg.ring_kernel"
    )
