"""Declaration-time limits: MemoryPack's member count and the nesting depth (issue 11).

A bridged class with 255 fields used to write member count 255 (MemoryPack's null marker) and one
with 256 or more failed every ``rg.encode`` with a raw ``struct.error``; 200 levels of nesting raised
``RecursionError``. Both are now a ``SchemaError`` naming the class, raised by the decorator.
"""

from __future__ import annotations

import time

import pytest

import ringgen as rg
from ringgen.errors import SchemaError
from ringgen.schema import MAX_BRIDGED_FIELDS, MAX_NESTING_DEPTH, spec_of
from ringgen.types import Str, i32


def _declare(name: str, annotations: dict) -> type:
    return rg.message(
        type(name, (), {"__annotations__": dict(annotations), "__module__": __name__})
    )


def _fields(n: int, bridged: bool) -> dict:
    ann = {f"f{i}": i32 for i in range(n - 1 if bridged else n)}
    if bridged:
        ann["text"] = Str[8]
    return ann


def test_memorypack_member_count_limit_is_249():
    assert MAX_BRIDGED_FIELDS == 249


@pytest.mark.parametrize("n", [250, 255, 256, 400])
def test_a_bridged_class_with_too_many_fields_is_refused_at_declaration(n):
    with pytest.raises(SchemaError) as info:
        _declare(f"Wide{n}", _fields(n, bridged=True))
    assert str(info.value) == (
        f"error: message Wide{n} has {n} fields; a bridged message (one with a Str or List) travels "
        "as a MemoryPack object, which counts at most 249 members\n"
        "    hint: group fields into nested @rg.message classes"
    )


def test_249_bridged_fields_encode_with_member_count_249():
    cls = _declare("Wide249", _fields(249, bridged=True))
    obj = cls(**{f"f{i}": i for i in range(248)}, text="hi")
    data = rg.encode(obj)
    assert data[256] == 249  # the object's member-count byte
    assert rg.decode(cls, data) == obj


def test_a_direct_class_may_have_more_fields():
    cls = _declare("WideDirect", _fields(300, bridged=False))
    assert len(spec_of(cls).fields) == 300


def _chain(levels: int, prefix: str) -> list[type]:
    classes = [_declare(f"{prefix}0", {"x": i32})]
    for i in range(1, levels):
        classes.append(_declare(f"{prefix}{i}", {"inner": classes[-1], "y": i32}))
    return classes


def test_nesting_up_to_the_limit_is_accepted():
    classes = _chain(MAX_NESTING_DEPTH, "Ok")
    assert len(spec_of(classes[-1]).nested()) == MAX_NESTING_DEPTH - 1


@pytest.mark.parametrize("levels", [MAX_NESTING_DEPTH + 1, 200])
def test_nesting_past_the_limit_is_refused_at_declaration_naming_the_class(levels):
    prefix = f"Deep{levels}_"
    with pytest.raises(SchemaError) as info:
        _chain(levels, prefix)
    last = MAX_NESTING_DEPTH
    assert str(info.value) == (
        f"error: message {prefix}{last} nests messages {last + 1} levels deep ({prefix}{last} -> "
        f"{prefix}{last - 1} -> {prefix}{last - 2} -> {prefix}{last - 3} -> ... -> {prefix}2 -> "
        f"{prefix}1 -> {prefix}0); at most {MAX_NESTING_DEPTH} levels are supported\n"
        "    hint: flatten the innermost levels into fields of their parent"
    )


def test_a_class_nested_twice_at_every_level_resolves_in_linear_time():
    classes = [_declare("Twice0", {"x": i32})]
    for i in range(1, MAX_NESTING_DEPTH):
        classes.append(_declare(f"Twice{i}", {"a": classes[-1], "b": classes[-1]}))
    t0 = time.perf_counter()
    spec = spec_of(classes[-1])
    assert len(spec.nested()) == MAX_NESTING_DEPTH - 1
    assert not spec.is_bridged
    assert time.perf_counter() - t0 < 1.0  # 2**31 walks before
