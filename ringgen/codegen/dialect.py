"""The dialect layer: every name the shared handler body uses, and the contract each target fills.

The handler text (``body.py``) is identical for every target; it names qualifiers, math, atomics and
the thread id and clock only through the *prelude names* listed here. Each target's dialect renders a
prelude (from a template) that defines them. A backend subclasses ``Dialect``: every hook is
abstract, and capabilities are explicit attributes, so a missing piece fails when the dialect is
instantiated.

Prelude names (docs/architecture.md, "The handler ABI"):

- ``RG_FN`` (function qualifier), ``RG_GLOBAL`` (device/state memory), ``RG_PRIVATE`` (thread-local);
- ``rg_<stem>_f32`` / ``rg_<stem>_f64`` for every entry of ``ringgen.intrinsics.MATH_FUNCTIONS``
  (``f64`` only where ``has_f64``), plus ``rg_fabs_*``, ``rg_floor_*``, ``rg_trunc_*``, ``rg_fmod_*``
  and ``rg_copysign_*``, which the body's helpers use;
- ``rg_atomic_<op>_<t>(RG_GLOBAL rg_<t>* p, ...)`` for every (op, t) of ``ATOMIC_TYPES``, returning
  the old value (``cas`` takes expected then desired);
- ``rg_thread_id()`` (``rg_u32``) and ``rg_now()`` (``rg_u64`` nanoseconds).
"""

from __future__ import annotations

import abc
from typing import ClassVar

from ..intrinsics import ATOMIC_TYPES, MATH_FUNCTIONS
from .env import render

__all__ = [
    "Dialect",
    "MATH_FUNCTIONS",
    "PRELUDE_NAMES",
    "prelude_names",
    "math_names",
    "atomic_names",
]

QUALIFIERS = ("RG_FN", "RG_GLOBAL", "RG_PRIVATE")
BUILTINS = ("rg_thread_id", "rg_now")


def math_names(has_f64: bool = True) -> list[str]:
    """``rg_<stem>_f32`` (and ``_f64``) for every math function of the language, sorted."""
    precisions = ("f32", "f64") if has_f64 else ("f32",)
    return sorted(f"rg_{f.stem}_{p}" for f in MATH_FUNCTIONS.values() for p in precisions)


def atomic_names(has_atomics_64: bool = True) -> list[str]:
    """``rg_atomic_<op>_<t>`` for every atomic the language offers, sorted."""
    return sorted(
        f"rg_atomic_{op}_{t}"
        for op, types in ATOMIC_TYPES.items()
        for t in types
        if has_atomics_64 or t not in ("i64", "u64")
    )


def prelude_names(has_f64: bool = True, has_atomics_64: bool = True) -> list[str]:
    """Every name a target's prelude must define for the shared body to compile."""
    return list(QUALIFIERS) + math_names(has_f64) + atomic_names(has_atomics_64) + list(BUILTINS)


#: The full list, for a target with doubles and 64-bit atomics.
PRELUDE_NAMES: tuple[str, ...] = tuple(prelude_names())


class Dialect(abc.ABC):
    """One target's spelling of the prelude names.

    Subclasses set the capability attributes and implement every hook; ``render_prelude`` then
    renders ``templates/<template_dir>/prelude.h.j2``-style text through ``prelude_template``.
    """

    #: Short name of the target ("c", "opencl", "cuda", "metal").
    name: ClassVar[str]
    #: The target compiles 64-bit floats (Metal does not).
    has_f64: ClassVar[bool]
    #: The target has 64-bit integer atomics on state.
    has_atomics_64: ClassVar[bool]
    #: Kernels may stay resident (spin on a queue); otherwise the skeleton relaunches.
    persistent: ClassVar[bool]

    #: The capability attributes every concrete dialect must set.
    CAPABILITIES: ClassVar[tuple[str, ...]] = ("name", "has_f64", "has_atomics_64", "persistent")

    def __init__(self) -> None:
        missing = [c for c in self.CAPABILITIES if not hasattr(type(self), c)]
        if missing:
            raise TypeError(f"dialect {type(self).__name__} does not set {', '.join(missing)}")

    @property
    @abc.abstractmethod
    def prelude_template(self) -> str:
        """The template (relative to templates/) that renders the prelude."""

    @abc.abstractmethod
    def qualifiers(self) -> dict[str, str]:
        """The definitions of ``RG_FN``, ``RG_GLOBAL`` and ``RG_PRIVATE`` (name -> replacement)."""

    @abc.abstractmethod
    def math_function(self, stem: str, precision: str) -> str:
        """The target's function implementing ``rg_<stem>_<precision>`` (e.g. ``sqrtf``)."""

    @abc.abstractmethod
    def atomic_context(self, op: str, t: str) -> dict:
        """What the prelude template needs to define ``rg_atomic_<op>_<t>``."""

    @abc.abstractmethod
    def thread_id_expr(self) -> str:
        """A C expression for the global thread index (``rg_u32``)."""

    @abc.abstractmethod
    def now_expr(self) -> str:
        """A C expression for a monotonic clock in nanoseconds (``rg_u64``)."""

    def narrow_wrap(self, t: str, bits: int) -> str:
        """The expression defining ``rg_wrap_<t>(v)``: the narrow signed value (i8, i16) whose two's
        complement is the low ``bits`` of ``v``, an ``rg_u32`` holding a wrapped-around result.

        The body computes narrow arithmetic in ``rg_u32`` (no signed overflow in C) and narrows it
        with this; a plain cast is C's (implementation-defined, two's complement everywhere here).
        """
        return f"((rg_{t})(v))"

    def prelude_context(self) -> dict:
        """The template context: qualifiers, math rows, atomic rows, builtins, capabilities."""
        precisions = ("f32", "f64") if self.has_f64 else ("f32",)
        math_rows = [
            {
                "name": f"rg_{f.stem}_{p}",
                "impl": self.math_function(f.stem, p),
                "arity": f.arity,
                "precision": p,
            }
            for f in sorted(MATH_FUNCTIONS.values(), key=lambda f: f.stem)
            for p in precisions
        ]
        atomics = [
            dict(self.atomic_context(op, t), op=op, t=t, name=f"rg_atomic_{op}_{t}")
            for op, types in ATOMIC_TYPES.items()
            for t in types
            if self.has_atomics_64 or t not in ("i64", "u64")
        ]
        return {
            "dialect": self.name,
            "qualifiers": sorted(self.qualifiers().items()),
            "math": math_rows,
            "atomics": atomics,
            "thread_id": self.thread_id_expr(),
            "now": self.now_expr(),
            "has_f64": self.has_f64,
            "wraps": [
                {"name": f"rg_wrap_{t}", "expr": self.narrow_wrap(t, bits)}
                for t, bits in (("i8", 8), ("i16", 16))
            ],
        }

    def render_prelude(self) -> str:
        """The prelude text defining every prelude name for this target."""
        return render(self.prelude_template, **self.prelude_context())
