"""The Metal shim: what compiles against it, what must not, and the attribute check.

Each test compiles a small .metal text with every C++ compiler present (g++ and clang++), warnings as
errors, the way ``ringgen check`` does. The rejected cases are the mistakes a broken template or
dialect would make: a type Metal lacks, an unknown function, a memory order Metal does not offer, a
64-bit atomic, an attribute that is not Metal's.
"""

from __future__ import annotations

import pytest

from ringgen.metal_shim import (
    HONEST_WORDING,
    MetalCheckResult,
    available_compilers,
    check_attributes,
    check_metal,
    check_metal_source,
)

pytestmark = pytest.mark.skipif(not available_compilers(), reason="no g++ or clang++")

GOOD = """#include <metal_stdlib>
struct Pair { float a; float b; };

kernel void add_pairs(device const Pair* in [[buffer(0)]],
                      device float* out [[buffer(1)]],
                      device uint* counter [[buffer(2)]],
                      uint gid [[thread_position_in_grid]])
{
    Pair p = in[gid];
    out[gid] = metal::precise::sqrt(p.a * p.a + p.b * p.b);
    metal::atomic_fetch_add_explicit((device metal::atomic_uint*)counter, 1u, metal::memory_order_relaxed);
    out[gid] += as_type<float>(0u);
}
"""


def _variant(old: str, new: str) -> str:
    assert old in GOOD
    return GOOD.replace(old, new)


def test_good_source_compiles_with_every_compiler():
    result = check_metal_source(GOOD, "good.metal")
    assert result.ok, result.stderr
    assert (
        result.wording
        == HONEST_WORDING
        == "checked against the shim, not compiled by Apple's compiler"
    )
    for exe in available_compilers():
        assert exe in result.compiler
    assert HONEST_WORDING in str(result)
    assert bool(result)


@pytest.mark.parametrize(
    "old, new, expected",
    [
        # a type Metal does not have
        ("Pair p = in[gid];", "double d = 1.0; Pair p = in[gid]; p.a += d;", "double"),
        # an unknown function
        ("metal::precise::sqrt(", "metal::precise::squareroot(", "squareroot"),
        # a memory order Metal does not offer
        ("metal::memory_order_relaxed", "metal::memory_order_acquire", "memory_order_acquire"),
        # a 64-bit atomic
        (
            "(device metal::atomic_uint*)counter, 1u",
            "(device metal::atomic<ulong>*)counter, 1ul",
            "64-bit",
        ),
        # a wrong type: an atomic operation on a plain pointer
        ("(device metal::atomic_uint*)counter", "counter", "atomic_fetch_add_explicit"),
        # as_type between types of different sizes
        ("as_type<float>(0u)", "as_type<float>(0ul)", "same size"),
    ],
)
def test_rejected_source_fails_the_check(old, new, expected):
    result = check_metal_source(_variant(old, new), "bad.metal")
    assert not result.ok
    assert expected in result.stderr


def test_double_is_rejected_even_by_name():
    """Metal has no double: the shim makes the type itself an error, not only its arithmetic."""
    result = check_metal_source(
        _variant("Pair p = in[gid];", "Pair p = in[gid]; double x = p.a; (void)x;")
    )
    assert not result.ok
    assert "double" in result.stderr


def test_unknown_attribute_fails_though_cplusplus_ignores_it():
    result = check_metal_source(_variant("[[thread_position_in_grid]]", "[[thread_id_in_grid]]"))
    assert not result.ok
    assert "[[thread_id_in_grid]] is not a Metal attribute" in result.stderr


def test_buffer_index_used_twice_fails():
    problems = check_attributes(_variant("[[buffer(2)]]", "[[buffer(1)]]"))
    assert problems == ["kernel add_pairs: buffer index 1 used twice"]


def test_check_metal_reads_a_file(tmp_path):
    path = tmp_path / "k.metal"
    path.write_text(GOOD)
    result = check_metal(path)
    assert isinstance(result, MetalCheckResult)
    assert result.ok and result.path == str(path)


def test_no_compiler_is_a_failure_not_a_pass(tmp_path):
    path = tmp_path / "k.metal"
    path.write_text(GOOD)
    result = check_metal(path, compilers=[])
    assert not result.ok
    assert "not checked" in result.stderr
