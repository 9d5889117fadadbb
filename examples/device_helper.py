"""A kernel that calls @rg.device helpers: a clamp and a polynomial, reused across handlers."""

import ringgen as rg
from ringgen.types import f32, i32, i64


@rg.message
class Point:
    id: i64
    x: f32
    steps: i32


@rg.message
class Smoothed:
    id: i64
    y: f32
    bucket: i32


@rg.device
def clamp(v: f32, lo: f32, hi: f32) -> f32:
    return min(max(v, lo), hi)


@rg.device
def smoothstep(x: f32) -> f32:
    t = clamp(x, f32(0.0), f32(1.0))
    return t * t * (3.0 - 2.0 * t)


@rg.device
def bucket_of(steps: i32, width: i32) -> i32:
    return steps // width


@rg.ring_kernel
def device_helper(p: Point) -> Smoothed:
    return Smoothed(id=p.id, y=smoothstep(p.x), bucket=bucket_of(p.steps, 4))
