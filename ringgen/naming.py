"""Naming rules as data: the reserved words of every language ringgen emits, in one table.

A message, field, kernel or local name that any target reserves is rejected up front, with the
languages that reserve it, rather than escaped: the generated code should read like the user's code.

``RESERVED`` holds, per language, its keywords and builtin types (written here) plus what its
compiler knows before any user code: the macros and file-scope names of the standard headers and of
CUDA's runtime headers (``FILE``, ``time_t``, ``EOF``, ``INT_MAX``, ``M_PI``, ``linux``,
``cudaError_t``, ...), derived from gcc, g++ and nvcc by ``tools/reserved_names.py`` into
``reserved_names.txt``. OpenCL and Metal builtin types are written here as data (element types x
vector widths), since no OpenCL or Metal compiler can be asked on every machine.
"""

from __future__ import annotations

import re
from pathlib import Path

__all__ = ["FUNCTIONS", "RESERVED", "TEMPLATE_NAMES", "reserved_by", "check_identifier_shape"]

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

#: Vector and matrix type families, as (element types, widths): ``float4``, ``uint16``, ``half2x3``.
_OPENCL_VECTORS = (
    "bool char uchar short ushort int uint long ulong half float double quad",
    (2, 3, 4, 8, 16),
)
_OPENCL_MATRICES = ("half float double", (2, 3, 4, 8, 16))
_OPENCL_SCALARS = "event_t cl_mem_fence_flags"  # the scalar keywords are C's
_METAL_VECTORS = (
    "bool char uchar short ushort int uint long ulong half bfloat float packed_bool packed_char "
    "packed_uchar packed_short packed_ushort packed_int packed_uint packed_long packed_ulong "
    "packed_half packed_bfloat packed_float simd_bool simd_char simd_uchar simd_short simd_ushort "
    "simd_int simd_uint simd_half simd_float",
    (2, 3, 4),
)
_METAL_MATRICES = ("half bfloat float", (2, 3, 4))
_METAL_SCALARS = (
    "bfloat size_t ptrdiff_t atomic_int atomic_uint atomic_bool atomic_float simdgroup_matrix"
)


def _family(spec: tuple[str, tuple[int, ...]], matrix: bool = False) -> set[str]:
    types, widths = spec
    if matrix:
        return {f"{t}{n}x{m}" for t in types.split() for n in widths for m in widths}
    return {f"{t}{n}" for t in types.split() for n in widths}


def _derived(path: Path) -> dict[str, set[str]]:
    """The ``[section]`` name lists of ``reserved_names.txt`` (see tools/reserved_names.py)."""
    sections: dict[str, set[str]] = {}
    current = None
    for line in path.read_text().splitlines():
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), set())
        elif current is not None:
            current.add(line.strip())
    return sections


_DERIVED = _derived(Path(__file__).with_name("reserved_names.txt"))

#: Names a language knows only as functions or function-like macros (``index``, ``y1``, ``sin``): a
#: message, kernel or local of that name breaks the generated code, a struct member does not.
FUNCTIONS: dict[str, frozenset[str]] = {
    lang: frozenset(_DERIVED.get(f"{lang} functions", set()) - set(words.split()))
    for lang, words in (("C", _C), ("C++", _CXX), ("CUDA", _CUDA))
}

#: The plain identifiers ringgen's own templates declare (locals and parameters such as ``i``,
#: ``tid``, ``state``): a message *type* of such a name is shadowed inside the skeletons, a field,
#: kernel or local of that name is not (tools/reserved_names.py derives them from templates/).
TEMPLATE_NAMES: frozenset[str] = frozenset(_DERIVED.get("generated code", set()))

RESERVED: dict[str, frozenset[str]] = {
    "C": frozenset(set(_C.split()) | _DERIVED.get("C", set()) | FUNCTIONS["C"]),
    "C++": frozenset(set(_CXX.split()) | _DERIVED.get("C++", set()) | FUNCTIONS["C++"]),
    "CUDA": frozenset(set(_CUDA.split()) | _DERIVED.get("CUDA", set()) | FUNCTIONS["CUDA"]),
    "OpenCL C": frozenset(
        set(_OPENCL.split())
        | set(_OPENCL_SCALARS.split())
        | _family(_OPENCL_VECTORS)
        | _family(_OPENCL_MATRICES, matrix=True)
    ),
    "Metal": frozenset(
        set(_METAL.split())
        | set(_METAL_SCALARS.split())
        | _family(_METAL_VECTORS)
        | _family(_METAL_MATRICES, matrix=True)
    ),
}

_SHAPE = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")


def reserved_by(name: str, *, functions_ok: bool = False, type_name: bool = False) -> list[str]:
    """The languages (in table order) that reserve ``name``; empty when it is free everywhere.

    Args:
        name: a message, kernel, device function, local or field name.
        functions_ok: a library function of that name cannot clash: ``name`` is a struct member,
            or a kernel name (which the generated code only uses inside longer identifiers, such as
            ``rg_handle_<name>``).
        type_name: ``name`` names a message or state type, which must not be one of the plain
            identifiers of ringgen's own templates either (reported as "ringgen's generated code").

    Returns:
        The languages, in table order.
    """
    langs = [
        lang
        for lang, words in RESERVED.items()
        if name in words and not (functions_ok and name in FUNCTIONS.get(lang, ()))
    ]
    if type_name and name in TEMPLATE_NAMES:
        langs.append("ringgen's generated code")
    return langs


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
