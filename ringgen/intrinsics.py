"""The language's intrinsics and math functions, with the Python semantics the reference backend uses.

Handlers spell atomics ``rg.atomic_add(state.count, v)`` and ``rg.atomic_add(state.hist[i], v)``: the
first argument names a state field or state array element and the call returns the old value. Python
cannot pass a reference to a field, so the reference backend runs a copy of the handler in which
each atomic call is rewritten to ``atomic_<op>_at(obj, "field", index, *args)`` (see
``ringgen.reference.interpreter``); calling ``rg.atomic_add`` itself outside a handler is an error.

``MATH_FUNCTIONS`` is the one table of ``math.*`` functions the language knows: each has an arity and
a C name stem (the dialect prelude defines ``rg_<stem>_f32`` and ``rg_<stem>_f64``). Their semantics
follow numpy: a function of ``f32`` arguments computes and returns ``f32``; anything else returns
``f64`` (``math.floor`` returns a float, not an int).
"""

from __future__ import annotations

import contextvars
import time
from typing import Any, Callable, Optional

import attrs
import numpy as np

from .barriers import Barrier, host_barrier

__all__ = [
    "ATOMIC_OPS",
    "ATOMIC_TYPES",
    "MATH_FUNCTIONS",
    "MathFunction",
    "atomic_add",
    "atomic_add_at",
    "atomic_cas",
    "atomic_cas_at",
    "atomic_max",
    "atomic_max_at",
    "atomic_min",
    "atomic_min_at",
    "barrier_wait",
    "math_result_is_f32",
    "now",
    "set_thread_id",
    "thread_id",
]


@attrs.frozen
class MathFunction:
    """One ``math.<name>`` function: arity, the C stem and the numpy ufunc giving its semantics."""

    name: str
    arity: int
    stem: str
    ufunc: Callable = attrs.field(eq=False)


def _fn(name: str, arity: int, ufunc: Callable, stem: Optional[str] = None) -> MathFunction:
    return MathFunction(name, arity, stem or name, ufunc)


#: ``math.<name>`` -> MathFunction. The dialects render ``rg_<stem>_f32``/``_f64`` for every entry.
MATH_FUNCTIONS: dict[str, MathFunction] = {
    f.name: f
    for f in (
        _fn("sqrt", 1, np.sqrt),
        _fn("exp", 1, np.exp),
        _fn("log", 1, np.log),
        _fn("log2", 1, np.log2),
        _fn("log10", 1, np.log10),
        _fn("sin", 1, np.sin),
        _fn("cos", 1, np.cos),
        _fn("tan", 1, np.tan),
        _fn("asin", 1, np.arcsin),
        _fn("acos", 1, np.arccos),
        _fn("atan", 1, np.arctan),
        _fn("sinh", 1, np.sinh),
        _fn("cosh", 1, np.cosh),
        _fn("tanh", 1, np.tanh),
        _fn("floor", 1, np.floor),
        _fn("ceil", 1, np.ceil),
        _fn("trunc", 1, np.trunc),
        _fn("fabs", 1, np.fabs),
        _fn("atan2", 2, np.arctan2),
        _fn("pow", 2, np.power),
        _fn("hypot", 2, np.hypot),
        _fn("fmod", 2, np.fmod),
        _fn("copysign", 2, np.copysign),
    )
}


def math_result_is_f32(args: list[Any]) -> bool:
    """True when a math function of ``args`` computes in f32: every argument is an f32 or a
    Python float/int literal, and at least one is an f32 (numpy's rule for weak Python scalars)."""
    strong = [a for a in args if not isinstance(a, (int, float))]
    return bool(strong) and all(isinstance(a, np.float32) for a in strong)


def reference_math(name: str) -> Callable:
    """The reference implementation of ``math.<name>``: numpy at the precision the compiler picks."""
    fn = MATH_FUNCTIONS[name]

    def impl(*args):
        dtype = np.float32 if math_result_is_f32(list(args)) else np.float64
        with np.errstate(all="ignore"):
            return fn.ufunc(*[dtype(a) for a in args])

    impl.__name__ = name
    impl.__qualname__ = f"math.{name}"
    return impl


#: Atomic operations and the element types each supports on every backend.
ATOMIC_OPS = ("add", "min", "max", "cas")
ATOMIC_TYPES: dict[str, tuple[str, ...]] = {
    "add": ("i32", "u32", "i64", "u64", "f32"),
    "min": ("i32", "u32", "i64", "u64"),
    "max": ("i32", "u32", "i64", "u64"),
    "cas": ("i32", "u32", "i64", "u64"),
}

_thread = contextvars.ContextVar("ringgen_thread_id", default=0)


def _outside(name: str):
    raise RuntimeError(
        f"rg.{name} updates kernel state and only runs inside a handler compiled or run by ringgen "
        "(the reference backend rewrites the call); call the kernel through rg.launch"
    )


def atomic_add(target: Any, value: Any) -> Any:
    """``rg.atomic_add(state.field, v)``: add ``v`` to a state field atomically; returns the old value."""
    _outside("atomic_add")


def atomic_min(target: Any, value: Any) -> Any:
    """``rg.atomic_min(state.field, v)``: store ``min(old, v)`` atomically; returns the old value."""
    _outside("atomic_min")


def atomic_max(target: Any, value: Any) -> Any:
    """``rg.atomic_max(state.field, v)``: store ``max(old, v)`` atomically; returns the old value."""
    _outside("atomic_max")


def atomic_cas(target: Any, expected: Any, desired: Any) -> Any:
    """``rg.atomic_cas(state.field, expected, desired)``: store ``desired`` if the field equals
    ``expected``; returns the old value."""
    _outside("atomic_cas")


def _slot(obj: Any, field: str, index: Any):
    """The numpy array holding the target and the position in it (``IndexError`` when out of range)."""
    arr = obj.field_array(field)  # a 1-element view for a scalar field
    if index is None:
        return arr, 0
    n = arr.shape[0]
    i = int(index)
    if not -n <= i < n:
        raise IndexError(f"index {i} out of range for {field} (length {n})")
    return arr, i


def _like(old: Any, value: Any) -> Any:
    """``value`` converted to ``old``'s type as a C store converts it (integers wrap)."""
    from .types import SCALARS, cast_scalar

    for t in SCALARS.values():
        if type(old) is t.np_type:
            return cast_scalar(t, value)
    return type(old)(value)


def _update(obj, field, index, compute):
    arr, i = _slot(obj, field, index)
    old = arr[i]
    with np.errstate(all="ignore"):
        arr[i] = compute(old)
    return old


def atomic_add_at(obj: Any, field: str, index: Any, value: Any) -> Any:
    """Reference semantics of ``rg.atomic_add``: ``obj.field[index] += value``, wrapping; old value."""
    return _update(obj, field, index, lambda old: old + _like(old, value))


def atomic_min_at(obj: Any, field: str, index: Any, value: Any) -> Any:
    """Reference semantics of ``rg.atomic_min``; returns the old value."""
    return _update(obj, field, index, lambda old: min(old, _like(old, value)))


def atomic_max_at(obj: Any, field: str, index: Any, value: Any) -> Any:
    """Reference semantics of ``rg.atomic_max``; returns the old value."""
    return _update(obj, field, index, lambda old: max(old, _like(old, value)))


def atomic_cas_at(obj: Any, field: str, index: Any, expected: Any, desired: Any) -> Any:
    """Reference semantics of ``rg.atomic_cas``; returns the old value."""
    return _update(
        obj, field, index, lambda old: _like(old, desired) if old == _like(old, expected) else old
    )


def barrier_wait(b: Any) -> None:
    """``rg.barrier_wait(step)``: wait until every party of the declared barrier ``step`` has
    reached it (docs/barriers.md). A statement at the top level of a handler.

    In the reference backend this is the call itself: the process's host barrier of that name
    (``ringgen.barriers.host_barrier``), shared by every kernel running on host threads.

    Raises:
        TypeError: ``b`` is not a barrier declared with ``rg.barrier``.
        ringgen.barriers.BarrierBroken: the barrier is broken (the reference turns it into the
            fault ``Reason.BARRIER_BROKEN``).
    """
    if not isinstance(b, Barrier):
        raise TypeError(f"rg.barrier_wait takes a barrier declared with rg.barrier, not {b!r}")
    host_barrier(b).wait()


def thread_id() -> np.uint32:
    """``rg.thread_id()``: the global index of the device thread running the handler (u32).

    The reference backend runs handlers one at a time; it reports the id set by ``set_thread_id``.
    """
    return np.uint32(_thread.get())


def set_thread_id(tid: int) -> None:
    """Set what ``thread_id()`` returns in this context (used by the reference backend)."""
    _thread.set(int(tid))


def now() -> np.uint64:
    """``rg.now()``: a monotonic clock in nanoseconds (u64), for timing inside a handler."""
    return np.uint64(time.monotonic_ns())
