"""What a global name in a handler refers to: a constant, a type, a message, a helper or an intrinsic.

Handlers read their module's globals (and closure variables) at compile time, as Numba and Warp do:
a module constant is folded in, ``math`` and ``rg`` are namespaces, a message class is a constructor.
"""

from __future__ import annotations

import builtins
import inspect
import math
import types as pytypes
from typing import Any, Callable, Optional

import attrs
import numpy as np

from .. import intrinsics
from ..barriers import Barrier
from ..kernel import DeviceFunction, Outbox
from ..schema import is_message_class
from ..types import ScalarType

__all__ = ["Resolved", "Resolver"]

_INTRINSICS = {
    intrinsics.atomic_add: "atomic_add",
    intrinsics.atomic_min: "atomic_min",
    intrinsics.atomic_max: "atomic_max",
    intrinsics.atomic_cas: "atomic_cas",
    intrinsics.thread_id: "thread_id",
    intrinsics.now: "now",
    intrinsics.barrier_wait: "barrier_wait",
}
_MATH_FNS = {getattr(math, name): name for name in intrinsics.MATH_FUNCTIONS if hasattr(math, name)}
_MATH_CONSTS = {"pi": math.pi, "e": math.e, "tau": math.tau, "inf": math.inf, "nan": math.nan}
_BUILTINS = {"range", "len", "min", "max", "abs"}


@attrs.frozen
class Resolved:
    """A resolved global. ``kind`` is one of: const, scalar_type, message, device, math_module,
    rg_module, math_fn, intrinsic, builtin, barrier, other."""

    kind: str
    value: Any = attrs.field(eq=False)
    name: str = ""


def _is_ringgen_module(obj: Any) -> bool:
    return isinstance(obj, pytypes.ModuleType) and obj.__name__ in ("ringgen", "ringgen.intrinsics")


class Resolver:
    """Looks names up in a function's globals and closure, as Python would at call time."""

    def __init__(self, func: Callable) -> None:
        self.namespace: dict[str, Any] = dict(func.__globals__)
        try:
            self.namespace.update(inspect.getclosurevars(func).nonlocals)
        except (TypeError, ValueError):  # pragma: no cover - builtins without closures
            pass

    def lookup(self, name: str) -> Optional[Resolved]:
        """The global ``name`` means, or None when it is not defined."""
        if name in self.namespace:
            return classify(self.namespace[name], name)
        if name in _BUILTINS:
            return Resolved("builtin", getattr(builtins, name), name)
        if hasattr(builtins, name):
            return Resolved("other", getattr(builtins, name), name)
        return None

    def attribute(self, base: Resolved, attr: str) -> Optional[Resolved]:
        """``base.attr`` for a namespace global (``math.sqrt``, ``rg.atomic_add``, ``rg.Outbox``)."""
        if base.kind == "math_module":
            if attr in intrinsics.MATH_FUNCTIONS:
                return Resolved("math_fn", None, attr)
            if attr in _MATH_CONSTS:
                return Resolved("const", _MATH_CONSTS[attr], f"math.{attr}")
            return Resolved("other", getattr(math, attr, None), f"math.{attr}")
        if base.kind == "rg_module":
            if attr in _INTRINSICS.values():
                return Resolved("intrinsic", None, attr)
            try:
                value = getattr(base.value, attr)
            except AttributeError:
                return None
            return classify(value, f"rg.{attr}")
        if base.kind == "other" and isinstance(base.value, pytypes.ModuleType):
            if not hasattr(base.value, attr):
                return None
            return classify(getattr(base.value, attr), f"{base.name}.{attr}")
        return None


def classify(obj: Any, name: str) -> Resolved:
    """Classify a Python object a handler names."""
    if isinstance(obj, (bool, int, float)):
        return Resolved("const", obj, name)
    if isinstance(obj, np.generic) and isinstance(obj, (np.integer, np.floating, np.bool_)):
        return Resolved("const", obj, name)
    if isinstance(obj, ScalarType):
        return Resolved("scalar_type", obj, name)
    if is_message_class(obj):
        return Resolved("message", obj, name)
    if isinstance(obj, Barrier):
        return Resolved("barrier", obj, name)
    if isinstance(obj, DeviceFunction):
        return Resolved("device", obj, name)
    if obj is math:
        return Resolved("math_module", obj, name)
    if _is_ringgen_module(obj):
        return Resolved("rg_module", obj, name)
    try:
        if obj in _MATH_FNS:
            return Resolved("math_fn", None, _MATH_FNS[obj])
        if obj in _INTRINSICS:
            return Resolved("intrinsic", None, _INTRINSICS[obj])
    except TypeError:  # unhashable
        pass
    if obj is Outbox:
        return Resolved("other", obj, name)
    if obj in (range, len, min, max, abs):
        return Resolved("builtin", obj, obj.__name__)
    return Resolved("other", obj, name)
