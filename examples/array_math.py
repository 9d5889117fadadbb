"""Fixed-size array math: dot product, norm and a normalised copy of an 8-vector."""

import math

import ringgen as rg
from ringgen.types import Array, f32, i64


@rg.message
class VecPair:
    id: i64
    a: Array[f32, 8]
    b: Array[f32, 8]


@rg.message
class VecStats:
    id: i64
    dot: f32
    norm_a: f32
    unit_a: Array[f32, 8]
    max_abs_diff: f32


@rg.ring_kernel
def array_math(p: VecPair) -> VecStats:
    dot = f32(0.0)
    sq = f32(0.0)
    worst = f32(0.0)
    for i in range(8):
        dot += p.a[i] * p.b[i]
        sq += p.a[i] * p.a[i]
        worst = max(worst, abs(p.a[i] - p.b[i]))
    norm = math.sqrt(sq)
    res = VecStats(id=p.id, dot=dot, norm_a=norm, unit_a=p.a, max_abs_diff=worst)
    if norm > 0.0:
        for i in range(8):
            res.unit_a[i] = p.a[i] / norm
    return res
