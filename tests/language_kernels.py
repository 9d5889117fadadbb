"""Kernels written the way a Python user writes them (issue 12), for the differential tests.

Locals that widen instead of narrowing (``total = 0`` over i16 values), an annotated local, tuple
assignment and a swap, ``enumerate`` over an Array and a List, ``x ** n``, ``x in (...)``, list
literals as Array values, ``@rg.device`` helpers taking an Array, a List and a Str and returning a
tuple, ``str.endswith`` and an ``Outbox[Msg, N]`` with its own emit limit. ``tests/test_diff_c.py``
runs them through gcc and ``tests/test_opencl_differential.py`` through PoCL, both against the
reference.
"""

import ringgen as rg
from ringgen.types import Array, List, Str, bool_, f32, i16, i32, i64, u8


@rg.message
class Hist:
    id: i64
    hist: Array[i16, 4]
    w: Array[f32, 3]
    n: u8
    items: List[i16, 6]
    name: Str[8]


@rg.message
class Summary:
    id: i64
    total: i64
    mean: f32
    lo: i32
    hi: i32
    first_big: i64
    pos: Array[f32, 3]
    sq: f32
    cube: i32
    tagged: bool_
    weighted: i64
    swapped: i32


@rg.message
class Piece:
    id: i64
    k: i32


@rg.device
def bounds(v: Array[i16, 4]) -> tuple[i32, i32]:
    lo = i32(v[0])
    hi = i32(v[0])
    for x in v:
        lo = min(lo, x)
        hi = max(hi, x)
    return lo, hi


@rg.device
def weigh(items: List[i16, 6], name: Str[8]) -> i64:
    total = 0
    for i, it in enumerate(items, 1):
        total += it * i
    if name.endswith("x"):
        total += 100
    return total + len(name)


@rg.ring_kernel
def summarize(h: Hist) -> Summary:
    total = 0  # an i64: it also holds i16 sums, and never narrows to i16
    for i in range(4):
        total += h.hist[i]
    acc: f32 = 0.0
    for v in h.w:
        acc += v
    lo, hi = bounds(h.hist)
    first_big = -1
    for i, v in enumerate(h.hist):
        if v > 100 and first_big < 0:
            first_big = i
    a, b = lo, hi
    a, b = b, a
    tagged = h.n % 7 in (1, 2, 3) and h.name not in ("ab", "cd")
    pos = [h.w[2], h.w[1], h.w[0] * 2.0]
    return Summary(
        id=h.id,
        total=total,
        mean=acc / 3,
        lo=lo,
        hi=hi,
        first_big=first_big,
        pos=[pos[0], pos[1], pos[2] + 1.0],
        sq=h.w[0] ** 2,
        cube=i32(h.n) ** 3,
        tagged=tagged,
        weighted=weigh(h.items, h.name),
        swapped=a - b,
    )


@rg.ring_kernel
def pieces(h: Hist, out: rg.Outbox[Piece, 12]) -> None:
    for k in range(h.n % 14):  # 12 emits at most: 12 and 13 fault the message
        out.emit(Piece(id=h.id, k=k))
