"""The Metal dialect: the prelude that gives the shared handler body its meaning in Metal, and the
checks that refuse what Metal cannot express.

Metal has no ``double``, no 64-bit atomics and only relaxed atomics on 32-bit ``int``/``uint``. The
prelude builds ``rg.atomic_add`` on f32 from a compare-exchange loop and on i64/u64 from two 32-bit
adds with carry (exact sum, no old value). A kernel whose handler computes in f64, or needs a 64-bit
min/max/cas or the old value of a 64-bit add, cannot be emitted faithfully (the header maps ``rg_f64`` to a 64-bit pattern, on which C arithmetic would compile
and silently compute nonsense), so ``check_function`` raises a ``HandlerError`` naming the kernel and
the line; the Metal emitter turns that into a skipped kernel with a comment, a log line and a manifest
note.
"""

from __future__ import annotations

from typing import Iterator, Optional

import attrs

from ..dsl import ir
from ..dsl.typesys import Scalar
from ..errors import HandlerError
from ..types import f32, f64, i32, i64, u32, u64
from .dialect import Dialect

__all__ = [
    "FLOAT_ADD_TYPES",
    "METAL_ATOMIC_TYPES",
    "METAL_DIALECT",
    "MetalDialect",
    "WIDE_ADD_TYPES",
    "check_function",
    "metal_math_name",
]


def metal_math_name(stem: str) -> str:
    """The Metal function ``rg_<stem>_f32`` calls, for a stem of ``ringgen.intrinsics.MATH_FUNCTIONS``.

    ``metal::precise``, because Apple's compiler builds the plain ``metal::`` functions with fast
    math unless told otherwise.
    """
    return f"metal::precise::{stem}"


#: The scalar types Metal has atomics for, and the Metal atomic type of each.
METAL_ATOMIC_TYPES: dict[str, str] = {i32.name: "atomic_int", u32.name: "atomic_uint"}
#: 64-bit types whose atomic_add the prelude builds from two 32-bit atomics (result discarded only).
WIDE_ADD_TYPES = (i64.name, u64.name)
#: rg.atomic_add on f32 is a compare-exchange loop on the float's bits.
FLOAT_ADD_TYPES = (f32.name,)


class MetalDialect(Dialect):
    """Metal Shading Language: no double, relaxed 32-bit atomics, an event-driven skeleton.

    ``rg_thread_id()`` and ``rg_now()`` are members of the ``rg_context`` struct the skeleton wraps
    the body in (Metal passes the thread position only as a kernel parameter, and has no clock in
    compute functions: ``rg_now()`` is the host's monotonic clock when it encoded the batch).
    """

    name = "metal"
    has_f64 = False
    has_atomics_64 = False
    persistent = False  # event-driven: each dispatch drains what is queued
    #: The only memory order Metal's atomics take.
    memory_orders = ("relaxed",)

    @property
    def prelude_template(self) -> str:
        return "metal/prelude.metal.j2"

    def qualifiers(self) -> dict[str, str]:
        # inline, not static: the handlers are member functions of rg_context (see kernel.metal.j2)
        return {"RG_FN": "inline", "RG_GLOBAL": "device", "RG_PRIVATE": "thread"}

    def math_function(self, stem: str, precision: str) -> str:
        if precision != "f32":
            raise ValueError(f"Metal has no {precision} math (rg_{stem}_{precision})")
        return metal_math_name(stem)

    def atomic_context(self, op: str, t: str) -> dict:
        return {
            "c": "rg_" + t,
            "metal": METAL_ATOMIC_TYPES.get(t, "atomic_uint"),
            "float": t in FLOAT_ADD_TYPES,
        }

    def thread_id_expr(self) -> str:
        return "rg_tid"

    def now_expr(self) -> str:
        return "rg_clock_ns"

    def prelude_context(self) -> dict:
        ctx = super().prelude_context()
        ctx["wide_add_types"] = [{"name": t, "c": "rg_" + t} for t in WIDE_ADD_TYPES]
        return ctx


METAL_DIALECT = MetalDialect()


# ---------------------------------------------------------------- what Metal cannot express


_NODE_TYPES = tuple(
    v
    for v in vars(ir).values()
    if isinstance(v, type) and attrs.has(v) and v.__module__ == ir.__name__
)


def _children(node: object) -> Iterator[object]:
    """The IR nodes directly under ``node``: its fields, and the items of tuples (a ``Construct``'s
    fields are (name, expr) pairs), never the types the nodes carry."""
    values = (
        node
        if isinstance(node, tuple)
        else (getattr(node, a.name) for a in attrs.fields(type(node)))
    )
    for v in values:
        if isinstance(v, (tuple, *_NODE_TYPES)):
            yield v


def _walk(node: object, parent: object, line: Optional[int]) -> Iterator[tuple]:
    """(node, parent, source line) for every node under ``node``, depth first."""
    line = node.line if isinstance(getattr(node, "line", None), int) else line
    yield node, parent, line
    for child in _children(node):
        yield from _walk(child, node, line)


def _is_f64(t: object) -> bool:
    return isinstance(t, Scalar) and t.t is f64


def _is_f32(t: object) -> bool:
    return isinstance(t, Scalar) and t.t is f32


def _f64_problem(node: object, parent: object) -> Optional[str]:
    if not isinstance(node, _NODE_TYPES) or not _is_f64(getattr(node, "type", None)):
        return None
    if isinstance(node, ir.Const) and isinstance(parent, ir.Convert) and _is_f32(parent.type):
        # A Python float literal rounded once to f32: exact in Metal too. Converted to an integer it
        # is not: that cast goes through the f64 helper (trunc, fmod), which Metal has no double for.
        return None
    if isinstance(node, ir.Var):
        return f"local '{node.name}' is f64"
    if isinstance(node, ir.Field):
        return f"field '{node.name}' is f64"
    return "an expression computes in f64 (Python float literals and math on them are f64)"


def _atomic_problem(node: ir.Atomic, parent: object) -> Optional[str]:
    tname = node.type.t.name if isinstance(node.type, Scalar) else None
    if tname in METAL_ATOMIC_TYPES:
        return None
    if node.op == "add" and tname in FLOAT_ADD_TYPES:
        return None
    if node.op == "add" and tname in WIDE_ADD_TYPES:
        if isinstance(parent, ir.ExprStmt):
            return None
        return (
            "Metal has no 64-bit atomics; ringgen adds in two 32-bit halves, which gives the exact "
            "sum but no old value to return"
        )
    return "Metal has atomics on 32-bit int and uint only (no 64-bit atomics)"


def check_function(func: ir.Function, kernel: str) -> None:
    """Refuse a compiled handler or device function Metal cannot run.

    Args:
        func: the function's IR.
        kernel: the ring kernel it belongs to, named in the error.

    Raises:
        HandlerError: the function computes in f64, or uses an atomic Metal cannot provide: min,
            max or cas on a 64-bit field, or a 64-bit atomic_add whose old value is used (Metal has
            neither double nor 64-bit atomics).
    """
    where = {"file": func.file, "line": func.first_line}
    # an f64 local is reported below, at the statement that first assigns it
    wide = [p.name for p in func.params if _is_f64(p.type)]
    if wide or _is_f64(func.return_type):
        what = f"'{wide[0]}' is f64" if wide else "it returns f64"
        raise HandlerError(
            f"kernel {kernel}: {func.name}: {what}, and Metal has no double",
            hint="use f32 (write f32(x) for literals and fields) to run this kernel on Metal",
            **where,
        )
    for node, parent, line in _walk(func.body, None, func.first_line):
        if isinstance(node, ir.Atomic):
            why = _atomic_problem(node, parent)
            if why:
                raise HandlerError(
                    f"kernel {kernel}: rg.atomic_{node.op} on {node.type.t.name}: {why}",
                    file=func.file,
                    line=line,
                    hint="declare the state field as i32 or u32 to run this kernel on Metal",
                )
            continue
        problem = _f64_problem(node, parent)
        if problem:
            raise HandlerError(
                f"kernel {kernel}: {problem}, and Metal has no double",
                file=func.file,
                line=line,
                hint="use f32 (write f32(1.5) or annotate the local as f32) to run this kernel on Metal",
            )
