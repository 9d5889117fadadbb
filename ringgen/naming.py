"""Naming rules as data: the reserved words of every language ringgen emits, in one table.

A message, field, kernel or local name that any target reserves is rejected up front, with the
languages that reserve it, rather than escaped: the generated code should read like the user's code.
"""

from __future__ import annotations

import re

__all__ = ["RESERVED", "reserved_by", "check_identifier_shape"]

_C = """auto break case char const continue default do double else enum extern float for goto if inline
int long register restrict return short signed sizeof static struct switch typedef union unsigned void
volatile while _Alignas _Alignof _Atomic _Bool _Complex _Generic _Imaginary _Noreturn _Static_assert
_Thread_local bool true false NULL offsetof"""

_CXX = """alignas alignof and and_eq asm bitand bitor catch char16_t char32_t char8_t class compl concept
consteval constexpr constinit const_cast co_await co_return co_yield decltype delete dynamic_cast explicit
export friend mutable namespace new noexcept not not_eq nullptr operator or or_eq private protected public
reinterpret_cast requires static_assert static_cast template this thread_local throw try typeid typename
using virtual wchar_t xor xor_eq std"""

_CUDA = """dim3 threadIdx blockIdx blockDim gridDim warpSize char1 char2 char3 char4 uchar1 uchar2 uchar3
uchar4 short2 short4 ushort2 ushort4 int2 int3 int4 uint2 uint3 uint4 long2 long4 ulong2 ulong4 float2
float3 float4 double2 double4 half half2 cuda"""

_OPENCL = """kernel global local constant private read_only write_only read_write uchar ushort uint ulong
half size_t ptrdiff_t intptr_t uintptr_t image1d_t image2d_t image3d_t image1d_array_t image2d_array_t
image1d_buffer_t sampler_t event_t queue_t clk_event_t reserve_id_t ndrange_t atomic_int atomic_uint
atomic_long atomic_ulong atomic_float atomic_double atomic_flag memory_order memory_scope uniform
pipe float2 float3 float4 float8 float16 int2 int3 int4 int8 int16 uint2 uint4 char2 char4 bool2
bool4 complex imaginary quad"""

_METAL = """device threadgroup thread constant kernel vertex fragment metal packed_float2 packed_float3
packed_float4 ushort uchar uint ulong half texture sampler visible stitchable ray_data object mesh
threadgroup_imageblock"""

RESERVED: dict[str, frozenset[str]] = {
    "C": frozenset(_C.split()),
    "C++": frozenset(_CXX.split()),
    "CUDA": frozenset(_CUDA.split()),
    "OpenCL C": frozenset(_OPENCL.split()),
    "Metal": frozenset(_METAL.split()),
}

_SHAPE = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")


def reserved_by(name: str) -> list[str]:
    """The languages (in table order) that reserve ``name``; empty when it is free everywhere."""
    return [lang for lang, words in RESERVED.items() if name in words]


def check_identifier_shape(name: str) -> str | None:
    """Why ``name`` cannot be used as a C identifier by ringgen, or None when it can.

    ASCII letters, digits and underscores, starting with a letter (leading underscores are reserved
    in C and C++), without the ``rg_`` prefix that generated code uses and without ``__``.
    """
    if not _SHAPE.match(name):
        return "names must be ASCII letters, digits and '_', starting with a letter"
    if "__" in name:
        return "names containing '__' are reserved in C++"
    if name.lower().startswith("rg_"):
        return "the prefix 'rg_' is reserved for generated code"
    return None
