"""The typed IR between the handler's Python AST and the C-family printer (``codegen/body.py``).

Every expression node carries its language type (``dsl/typesys.py``); operands of ``Binary`` and
``Compare`` are already converted to the operation's type, so the printer never re-derives a type.
Statements carry the 1-based source line they came from, for ``#line`` directives.
Nodes are frozen attrs classes: the IR is built once by ``lower`` and read by the printer.
"""

from __future__ import annotations

from typing import Optional, Union

import attrs

from .typesys import Type

# ---------------------------------------------------------------- expressions


@attrs.frozen
class Const:
    """A literal: int, float, bool, or bytes (a string literal, only in string comparisons)."""

    value: object
    type: Type


@attrs.frozen
class Var:
    """A local or parameter. ``pointer`` parameters (in, out, state, message params) use ``->``."""

    name: str
    type: Type
    pointer: bool = False


@attrs.frozen
class Field:
    base: "Expr"
    name: str
    type: Type


@attrs.frozen
class Index:
    """``base[index]`` on an Array or a List; ``bound`` is the constant length (None: the List's len).

    ``checked`` is False only when the index is a constant known to be in range.
    """

    base: "Expr"
    index: "Expr"
    type: Type
    bound: Optional[int]
    checked: bool


@attrs.frozen
class Len:
    base: "Expr"
    type: Type


@attrs.frozen
class Unary:
    op: str  # "-", "~", "not"
    operand: "Expr"
    type: Type


@attrs.frozen
class Binary:
    """An arithmetic or bitwise operation; both operands already have ``type``.

    ``divisor_checked`` marks an integer // or % whose divisor may be zero (a runtime fault).
    """

    op: str  # + - * / // % & | ^ << >>
    left: "Expr"
    right: "Expr"
    type: Type
    divisor_checked: bool = False


@attrs.frozen
class Compare:
    """``left op right``; both sides already converted to ``operand_type``. Result is bool."""

    op: str  # < <= > >= == !=
    left: "Expr"
    right: "Expr"
    operand_type: Type
    type: Type


@attrs.frozen
class BoolOp:
    op: str  # "and", "or"
    values: tuple
    type: Type


@attrs.frozen
class Select:
    cond: "Expr"
    then: "Expr"
    orelse: "Expr"
    type: Type


@attrs.frozen
class Convert:
    """A conversion to ``type``: an explicit cast (``f32(x)``) or an implicit one.

    ``checked`` marks a Python int converted into a narrower integer type in arithmetic, which
    numpy refuses (OverflowError) when it does not fit: the generated code faults with RANGE_ERROR.
    """

    operand: "Expr"
    type: Type
    checked: bool = False


@attrs.frozen
class MathCall:
    """A ``math.*`` function (or ``abs``, ``min``, ``max``) at the precision of ``type``."""

    fn: str
    args: tuple
    type: Type


@attrs.frozen
class CallDevice:
    fn: str
    args: tuple
    type: Type


@attrs.frozen
class StrEq:
    """``a == b`` on strings; ``b`` is a ``Const`` of bytes or another Str expression."""

    left: "Expr"
    right: "Expr"
    negate: bool
    type: Type


@attrs.frozen
class StartsWith:
    """``s.startswith(b"...")``, or ``s.endswith(b"...")`` when ``suffix``."""

    string: "Expr"
    prefix: bytes
    type: Type
    suffix: bool = False


@attrs.frozen
class Atomic:
    """``rg.atomic_<op>(target, *args)``: returns the old value; only at statement level."""

    op: str  # add, min, max, cas
    target: "Expr"
    args: tuple
    type: Type


@attrs.frozen
class Builtin:
    """``rg.thread_id()`` or ``rg.now()``."""

    fn: str
    type: Type


@attrs.frozen
class Construct:
    """``Msg(field=value, ...)``: every field of the message, in declaration order."""

    type: Type
    fields: tuple  # of (name, Expr | FillArray)


@attrs.frozen
class FillArray:
    """An Array field initialised from a scalar default (every element set to ``value``)."""

    value: "Expr"
    type: Type


@attrs.frozen
class ArrayLit:
    """A list literal as an Array value: ``items`` (one per element, each already of the element
    type, or a nested ``ArrayLit``)."""

    items: tuple
    type: Type


@attrs.frozen
class TupleValue:
    """``return a, b`` in a device function returning a tuple: the values, already converted."""

    items: tuple
    type: Type


Expr = Union[
    ArrayLit,
    TupleValue,
    Const,
    Var,
    Field,
    Index,
    Len,
    Unary,
    Binary,
    Compare,
    BoolOp,
    Select,
    Convert,
    MathCall,
    CallDevice,
    StrEq,
    StartsWith,
    Atomic,
    Builtin,
    Construct,
    FillArray,
]

# ---------------------------------------------------------------- statements


@attrs.frozen
class Assign:
    """``target = value``; ``target`` is a Var, Field or Index; ``value`` has the target's type."""

    target: Expr
    value: Expr
    line: int


@attrs.frozen
class ExprStmt:
    expr: Expr
    line: int


@attrs.frozen
class BarrierWait:
    """``rg.barrier_wait(step)``: arrive at the declared barrier ``name`` of ``parties`` and wait for
    the step to complete (docs/barriers.md); a statement at the top level of a handler."""

    name: str
    parties: int
    line: int


@attrs.frozen
class If:
    cond: Expr
    then: tuple
    orelse: tuple
    line: int


@attrs.frozen
class ForRange:
    var: Var
    start: Expr
    stop: Expr
    step: Expr
    body: tuple
    line: int


@attrs.frozen
class ForEach:
    """``for var in seq`` over an Array or a List (``index`` is a hidden counter local)."""

    var: Var
    seq: Expr
    index: Var
    body: tuple
    line: int


@attrs.frozen
class While:
    cond: Expr
    body: tuple
    line: int


@attrs.frozen
class Break:
    line: int


@attrs.frozen
class Continue:
    line: int


@attrs.frozen
class Return:
    """A return: in a handler ``value`` is the output message or None; in a device function, a value."""

    value: Optional[Expr]
    line: int


@attrs.frozen
class Append:
    """``msg.items.append(value)`` on a List field of a local message (faults when it is full)."""

    target: Expr
    value: Expr
    line: int


@attrs.frozen
class Unpack:
    """``a, b = helper(...)``: call a device function returning a tuple into hidden locals
    ``targets`` (the stores into ``a`` and ``b`` follow as plain ``Assign`` statements)."""

    targets: tuple
    call: Expr
    line: int


@attrs.frozen
class Emit:
    kernel: str
    value: Expr
    line: int


Stmt = Union[
    Assign,
    ExprStmt,
    BarrierWait,
    If,
    ForRange,
    ForEach,
    While,
    Break,
    Continue,
    Return,
    Emit,
    Append,
    Unpack,
]

# ---------------------------------------------------------------- functions


@attrs.frozen
class Param:
    name: str
    type: Type
    role: str  # "input", "state", "outbox", or "value" (a device function's parameter)


@attrs.frozen
class Function:
    """One compiled handler or device function.

    ``kind`` is "handler" or "device". ``locals`` lists every local (declared at the top of the C
    function, as Python locals are function-scoped). For a handler, ``output`` is the output
    message type or None.
    """

    name: str
    kind: str
    params: tuple
    locals: tuple
    body: tuple
    return_type: Type
    file: Optional[str]
    first_line: int
    output: Optional[Type] = None
    state: Optional[Type] = None
    input: Optional[Type] = None
    outbox: bool = False
    calls: tuple = ()
    barriers: tuple = ()  # (name, parties) of every barrier the handler waits on, sorted


@attrs.frozen
class Program:
    """Everything ``emit_body`` prints: device functions (callees first), then one handler per kernel."""

    device_functions: tuple
    handlers: tuple
    source_file: Optional[str] = None
