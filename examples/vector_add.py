"""A 1:1 transform: every request gets one response with the sum of two floats."""

import ringgen as rg
from ringgen.types import f32, i64


@rg.message
class AddRequest:
    id: i64
    a: f32
    b: f32


@rg.message
class AddResponse:
    id: i64
    sum: f32


@rg.ring_kernel
def vector_add(req: AddRequest) -> AddResponse:
    return AddResponse(id=req.id, sum=req.a + req.b)
