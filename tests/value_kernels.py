"""Kernels for the value-validation tests: one direct and one bridged input carrying every kind of field
(handlers must live in a file: the compiler reads them)."""

import ringgen as rg
from ringgen.types import Array, List, Str, bool_, f32, f64, i8, i32, i64


@rg.message
class VIn:
    id: i64
    qty: i32
    small: i8
    price: f32
    wide: f64
    flag: bool_
    pos: Array[f32, 3]


@rg.message
class BIn:
    id: i64
    qty: i32
    price: f32
    flag: bool_
    pos: Array[f32, 3]
    name: Str[8]
    vals: List[f32, 4]


@rg.message
class VOut:
    id: i64


@rg.ring_kernel(capacity=64)
def vcheck(m: VIn) -> VOut:
    return VOut(id=m.id)


@rg.ring_kernel(capacity=64)
def bcheck(m: BIn) -> VOut:
    return VOut(id=m.id)
