"""The error catalogue: every rejected handler construct, its exact message and caret.

Each case is a small module (a shared header of messages plus one kernel); compiling it must raise
``HandlerError`` with exactly this message and hint, at the line and column of ``at`` (the caret
spanning it), and the rendered error must show that source line with the caret under it.
"""

from __future__ import annotations

import ast
import importlib.util
import sys
import warnings

import pytest

from ringgen.dsl import compile_program
from ringgen.dsl.checks import ALLOWED_NODES
from ringgen.dsl.diagnostics import unsupported_node_message
from ringgen.errors import HandlerError
from ringgen.kernel import DeviceFunction, RingKernel

HEADER = """import math
import numpy as np
import ringgen as rg
from ringgen.types import Array, Str, List, f32, i8, i32, i64, u32, u64


@rg.message
class Req:
    a: f32
    n: i32
    u: u32
    s: Str[8]
    v: Array[i32, 4]


@rg.message
class Res:
    x: f32
    k: i32


@rg.message
class Other:
    k: i32


@rg.state
class Tally:
    count: u64 = 0


def helper(x):
    return x


WEIGHTS = [1, 2, 3]


@rg.message
class Vec:
    pos: Array[f32, 3]


@rg.device
def lohi(a: i32, b: i32) -> tuple[i32, i32]:
    return min(a, b), max(a, b)

"""

# name -> (kernel source, where the caret goes, message, hint). "where" is the text the caret spans,
# optionally with context around it in backticks ("k=`k`)" spans the second k); None: the def line.
CASES = {
    "try": (
        """
@rg.ring_kernel
def h(r: Req) -> Res:
    try:
        pass
    except Exception:
        pass
    return Res(x=r.a, k=r.n)
""",
        "try:",
        "kernel h: a try statement is not supported in handlers",
        "handlers cannot raise or catch; return a message that reports the problem",
    ),
    "unknown_name": (
        """
@rg.ring_kernel
def h(r: Req) -> Res:
    return Res(x=r.a, k=missing + 1)
""",
        "missing",
        "kernel h: unknown name 'missing'",
        "define it as a local before this line, or at module level",
    ),
    "wrong_field": (
        """
@rg.ring_kernel
def h(r: Req) -> Res:
    return Res(x=r.nope, k=r.n)
""",
        "r.nope",
        "kernel h: Req has no field 'nope'",
        "its fields are: a, n, u, s, v",
    ),
    "type_mismatch": (
        """
@rg.ring_kernel
def h(r: Req) -> Res:
    return Res(x=r.a + r.n, k=r.n)
""",
        "r.a + r.n",
        "kernel h: cannot apply + to f32 and i32: mixing f32 and i32 needs an explicit cast",
        "convert one side explicitly, e.g. f32(n) or i64(x)",
    ),
    "int_true_division": (
        """
@rg.ring_kernel
def h(r: Req) -> Res:
    return Res(x=r.a, k=r.n / 2)
""",
        "r.n / 2",
        "kernel h: / on integers is not supported (Python's true division would make a float)",
        "use // for floor division, or convert first: f32(a) / b",
    ),
    "state_write_parallel": (
        """
@rg.ring_kernel
def h(r: Req, t: Tally) -> Res:
    t.count = t.count + 1
    return Res(x=r.a, k=r.n)
""",
        "t.count",
        "kernel h: a plain write to kernel state in a parallel kernel races with other threads",
        "use rg.atomic_add(...) (or atomic_min/max/cas), or declare @rg.ring_kernel(ordered=True)",
    ),
    "state_augassign_parallel": (
        """
@rg.ring_kernel
def h(r: Req, t: Tally) -> Res:
    t.count += 1
    return Res(x=r.a, k=r.n)
""",
        "t.count",
        "kernel h: a plain write to kernel state in a parallel kernel races with other threads",
        "use rg.atomic_add(...) (or atomic_min/max/cas), or declare @rg.ring_kernel(ordered=True)",
    ),
    "recursion": (
        """
@rg.device
def ping(x: i32) -> i32:
    return pong(x - 1)


@rg.device
def pong(x: i32) -> i32:
    return ping(x)


@rg.ring_kernel
def h(r: Req) -> Res:
    return Res(x=r.a, k=ping(r.n))
""",
        "ping(x)",
        "device function pong: recursion between device functions is not supported (through ping)",
        "rewrite the recursion as a loop",
    ),
    "arbitrary_call": (
        """
@rg.ring_kernel
def h(r: Req) -> Res:
    return Res(x=r.a, k=helper(r.n))
""",
        "helper",
        "kernel h: call to an arbitrary Python function 'helper' is not supported in handlers",
        "declare it with @rg.device (and type its parameters), or use math.*/rg.*",
    ),
    "print_call": (
        """
@rg.ring_kernel
def h(r: Req) -> Res:
    print(r.n)
    return Res(x=r.a, k=r.n)
""",
        "print",
        "kernel h: kernels cannot print",
        "report values through the output message, an Outbox or state fields",
    ),
    "wrong_return_message": (
        """
@rg.ring_kernel
def h(r: Req) -> Res:
    return Other(k=r.n)
""",
        "Other(k=r.n)",
        "kernel h: this kernel returns Res, not Other",
        "return Res(...)",
    ),
    "float_into_int_local": (
        """
@rg.ring_kernel
def h(r: Req) -> Res:
    k = r.n
    k = r.a
    return Res(x=r.a, k=k)
""",
        "k=`k`)",
        "kernel h: cannot assign a value of type f64 to field Res.k of type i32",
        "local 'k' is f64, the type that holds every value assigned to it; declare it "
        "`k: i32 = ...`, or convert: i32(k)",
    ),
    "while_else": (
        """
@rg.ring_kernel
def h(r: Req) -> Res:
    while r.n > 0:
        break
    else:
        pass
    return Res(x=r.a, k=r.n)
""",
        "pass",
        "kernel h: while ... else is not supported",
        "use a flag local",
    ),
    "dict": (
        """
@rg.ring_kernel
def h(r: Req) -> Res:
    d = {1: 2}
    return Res(x=r.a, k=r.n)
""",
        "{1: 2}",
        "kernel h: a dict literal is not supported in handlers",
        "messages and locals are fixed-size; use a @rg.message class or Array fields",
    ),
    "lambda": (
        """
@rg.ring_kernel
def h(r: Req) -> Res:
    f = lambda y: y
    return Res(x=r.a, k=r.n)
""",
        "lambda y: y",
        "kernel h: a lambda is not supported in handlers",
        "declare a @rg.device function",
    ),
    "comprehension": (
        """
@rg.ring_kernel
def h(r: Req) -> Res:
    t = sum([x for x in r.v])
    return Res(x=r.a, k=r.n)
""",
        "[x for x in r.v]",
        "kernel h: a list comprehension is not supported in handlers",
        "write a for loop",
    ),
    "with": (
        """
@rg.ring_kernel
def h(r: Req) -> Res:
    with open("f") as fh:
        pass
    return Res(x=r.a, k=r.n)
""",
        'with open("f") as fh:',
        "kernel h: a with statement is not supported in handlers",
        "remove the with block; handlers have no context managers",
    ),
    "import": (
        """
@rg.ring_kernel
def h(r: Req) -> Res:
    import os
    return Res(x=r.a, k=r.n)
""",
        "import os",
        "kernel h: an import is not supported in handlers",
        "import at module level; handlers may use math.* and rg.* names",
    ),
    "global": (
        """
@rg.ring_kernel
def h(r: Req) -> Res:
    global total
    return Res(x=r.a, k=r.n)
""",
        "global total",
        "kernel h: a global statement is not supported in handlers",
        "kernel state lives in an @rg.state parameter; module constants can be read directly",
    ),
    "is_compare": (
        """
@rg.ring_kernel
def h(r: Req) -> Res:
    if r.n is 0:
        return Res(x=r.a, k=0)
    return Res(x=r.a, k=r.n)
""",
        "r.n is 0",
        "kernel h: an `is` comparison is not supported in handlers",
        "use == or !=",
    ),
    "missing_field": (
        """
@rg.ring_kernel
def h(r: Req) -> Res:
    return Res(x=r.a)
""",
        "Res(x=r.a)",
        "kernel h: Res(...) is missing field 'k'",
        "pass k=... (or give the field a default in the class)",
    ),
    "unknown_keyword": (
        """
@rg.ring_kernel
def h(r: Req) -> Res:
    return Res(x=r.a, k=r.n, z=1)
""",
        "1",
        "kernel h: Res has no field 'z'",
        "its fields are: x, k",
    ),
    "literal_overflow": (
        """
@rg.ring_kernel
def h(r: Req) -> Res:
    return Res(x=r.a, k=i32(i8(r.n) + 300))
""",
        "i8(r.n) + 300",
        "kernel h: the literal 300 does not fit i8",
        "use a wider type, or wrap it explicitly: i8(300)",
    ),
    "signed_unsigned": (
        """
@rg.ring_kernel
def h(r: Req) -> Res:
    return Res(x=r.a, k=i32(r.n + r.u))
""",
        "r.n + r.u",
        "kernel h: cannot apply + to i32 and u32: mixing signed i32 and unsigned u32 needs an explicit cast",
        "convert one side explicitly, e.g. f32(n) or i64(x)",
    ),
    "input_read_only": (
        """
@rg.ring_kernel
def h(r: Req) -> Res:
    r.n = 3
    return Res(x=r.a, k=r.n)
""",
        "r.n",
        "kernel h: the input message 'r' is read-only",
        "build an output message instead",
    ),
    "atomic_on_input": (
        """
@rg.ring_kernel
def h(r: Req, t: Tally) -> Res:
    rg.atomic_add(r.n, 1)
    return Res(x=r.a, k=r.n)
""",
        "r.n",
        "kernel h: the first argument of rg.atomic_add must be a state field or an element of a state Array field",
        "e.g. rg.atomic_add(state.count, 1) or rg.atomic_add(state.hist[i], 1)",
    ),
    "atomic_in_expression": (
        """
@rg.ring_kernel
def h(r: Req, t: Tally) -> Res:
    return Res(x=r.a, k=i32(rg.atomic_add(t.count, 1)))
""",
        "rg.atomic_add(t.count, 1)",
        "kernel h: rg.atomic_add must be a statement of its own or the whole right-hand side of an assignment",
        "old = rg.atomic_add(...) on its own line",
    ),
    "return_none_not_optional": (
        """
@rg.ring_kernel
def h(r: Req) -> Res:
    if r.n < 0:
        return None
    return Res(x=r.a, k=r.n)
""",
        "return None",
        "kernel h: this kernel must return a Res on every path",
        "annotate the return type as Optional[Res] to allow returning None",
    ),
    "missing_return_path": (
        """
@rg.ring_kernel
def h(r: Req) -> Res:
    if r.n < 0:
        return Res(x=r.a, k=r.n)
""",
        None,
        "kernel h: not every path ends with a return",
        "add a return at the end of the function",
    ),
    "use_before_assign": (
        """
@rg.ring_kernel
def h(r: Req) -> Res:
    if r.n > 0:
        k = 1
    return Res(x=r.a, k=k)
""",
        "k=`k`)",
        "kernel h: local 'k' may be used before it is assigned",
        "assign it on every path before this line",
    ),
    "int_builtin": (
        """
@rg.ring_kernel
def h(r: Req) -> Res:
    return Res(x=r.a, k=int(r.a))
""",
        "int",
        "kernel h: int() is not supported in handlers",
        "cast with i64(x) or i32(x)",
    ),
    "str_ordering": (
        """
@rg.ring_kernel
def h(r: Req) -> Res:
    if r.s < "m":
        return Res(x=r.a, k=1)
    return Res(x=r.a, k=r.n)
""",
        'r.s < "m"',
        "kernel h: a string literal can only be compared with == or != against a Str field, not with < against Str[8]",
        None,
    ),
    "range_args": (
        """
@rg.ring_kernel
def h(r: Req) -> Res:
    for i in range(1, 2, 3, 4):
        pass
    return Res(x=r.a, k=r.n)
""",
        "range(1, 2, 3, 4)",
        "kernel h: range() takes 1 to 3 integer arguments",
        None,
    ),
    "iterate_scalar": (
        """
@rg.ring_kernel
def h(r: Req) -> Res:
    for x in r.n:
        pass
    return Res(x=r.a, k=r.n)
""",
        "r.n",
        "kernel h: for loops iterate over range(...), an Array or a List, not i32",
        None,
    ),
    "c_keyword_local": (
        """
@rg.ring_kernel
def h(r: Req) -> Res:
    double = r.a
    return Res(x=double, k=r.n)
""",
        "double",
        "kernel h: local 'double': 'double' is a reserved word in C",
        "rename the local",
    ),
    "annotated_local_message": (
        """
@rg.ring_kernel
def h(r: Req) -> Res:
    y: Res = Res(x=r.a, k=r.n)
    return y
""",
        "y: `Res` = Res",
        "kernel h: a local can be declared only with a scalar type (i8..u64, f32, f64, bool_)",
        "e.g. `acc: f32 = 0.0`; build messages with Msg(...) and let their type be inferred",
    ),
    "annotated_twice": (
        """
@rg.ring_kernel
def h(r: Req) -> Res:
    y: f32 = r.a
    y: i32 = r.n
    return Res(x=r.a, k=r.n)
""",
        "y: i32 = r.n",
        "kernel h: local 'y' is declared f32 and i32",
        "declare a local's type once; use a new local for the other",
    ),
    "annotated_narrowing": (
        """
@rg.ring_kernel
def h(r: Req) -> Res:
    y: i8 = r.n
    return Res(x=r.a, k=y)
""",
        "r.n",
        "kernel h: cannot assign a value of type i32 to local 'y' of type i8",
        "convert explicitly: i8(...)",
    ),
    "local_u64_and_i64": (
        """
@rg.ring_kernel
def h(r: Req) -> Res:
    k = u64(r.u)
    k = i64(r.n)
    return Res(x=r.a, k=r.n)
""",
        "k = i64(r.n)",
        "kernel h: local 'k' is assigned both u64 and i64 values: no integer type holds every i64 "
        "and every u64 value",
        "convert one of them explicitly, or declare the local's type once: `k: u64 = ...`",
    ),
    "local_i64_and_f32": (
        """
@rg.ring_kernel
def h(r: Req) -> Res:
    k = i64(r.n)
    k = r.a
    return Res(x=r.a, k=r.n)
""",
        "k = r.a",
        "kernel h: local 'k' is assigned both i64 and f32 values: f32 cannot hold every i64 value "
        "exactly",
        "convert one of them explicitly, or declare the local's type once: `k: i64 = ...`",
    ),
    "yield": (
        """
@rg.ring_kernel
def h(r: Req) -> Res:
    yield Res(x=r.a, k=r.n)
""",
        "yield Res(x=r.a, k=r.n)",
        "kernel h: yield is not supported in handlers",
        "emit messages through an rg.Outbox[Msg] parameter: out.emit(Msg(...))",
    ),
    "and_non_bool": (
        """
@rg.ring_kernel
def h(r: Req) -> Res:
    if r.n and r.u > 1:
        return Res(x=r.a, k=1)
    return Res(x=r.a, k=r.n)
""",
        "r.n",
        "kernel h: the operands of and must be bool_, not i32",
        "compare explicitly, e.g. (n != 0)",
    ),
    "fstring": (
        """
@rg.ring_kernel
def h(r: Req) -> Res:
    t = f"{r.n}"
    return Res(x=r.a, k=r.n)
""",
        'f"{r.n}"',
        "kernel h: an f-string is not supported in handlers",
        "handlers have no string formatting; copy Str fields, store string literals, or compare",
    ),
    "index_constant_out_of_range": (
        """
@rg.ring_kernel
def h(r: Req) -> Res:
    return Res(x=r.a, k=r.v[4])
""",
        "4",
        "kernel h: index 4 is out of range for Array[i32, 4]",
        None,
    ),
    "device_missing_return_annotation": (
        """
@rg.device
def twice(x: i32):
    return x * 2


@rg.ring_kernel
def h(r: Req) -> Res:
    return Res(x=r.a, k=twice(r.n))
""",
        None,
        "device function twice: missing return annotation",
        "annotate the result, e.g. '-> f32'",
    ),
    "assign_to_parameter": (
        """
@rg.ring_kernel
def h(r: Req) -> Res:
    r = 5
    return Res(x=1.0, k=1)
""",
        "`r` = 5",
        "kernel h: cannot assign to parameter 'r'",
        "assign to a new local instead",
    ),
    "math_unknown": (
        """
@rg.ring_kernel
def h(r: Req) -> Res:
    return Res(x=f32(math.gamma(r.a)), k=r.n)
""",
        "math.gamma",
        "kernel h: math.gamma is not one of the handler language's math functions",
        "available: math.acos, math.asin, math.atan, math.atan2, math.ceil, math.copysign, math.cos, math.cosh, math.exp, math.fabs, math.floor, math.fmod, math.hypot, math.log, math.log10, math.log2, math.pow, math.sin, math.sinh, math.sqrt, math.tan, math.tanh, math.trunc",
    ),
    "outbox_wrong_type": (
        """
@rg.ring_kernel
def h(r: Req, out: rg.Outbox[Res]) -> None:
    out.emit(Other(k=r.n))
""",
        "Other(k=r.n)",
        "kernel h: this Outbox takes Res, not Other",
        None,
    ),
    "append_to_input": (
        """
@rg.message
class Bag:
    xs: List[i32, 4]


@rg.ring_kernel
def h(b: Bag) -> Bag:
    b.xs.append(1)
    return Bag(xs=b.xs)
""",
        "`b.xs`.append(1)",
        "kernel h: the input message 'b' is read-only",
        "build an output message instead",
    ),
    "string_too_long": (
        """
@rg.ring_kernel
def h(r: Req) -> Req:
    return Req(a=r.a, n=r.n, u=r.u, s="much too long", v=r.v)
""",
        '"much too long"',
        "kernel h: this string is 13 bytes long; field Req.s holds at most 8",
        "shorten it",
    ),
    "list_literal": (
        """
@rg.ring_kernel
def h(r: Req) -> Res:
    return Res(x=r.a, k=len([r.n, r.n]))
""",
        "[r.n, r.n]",
        "kernel h: a list literal can only be stored: into an Array field or local (one value per element), or `[]` into a List field",
        "e.g. out = Msg(pos=[x, y, z]), or v = [a, b, c] and then index v",
    ),
    "list_literal_wrong_length": (
        """
@rg.ring_kernel
def h(r: Req) -> Vec:
    return Vec(pos=[r.a, r.a])
""",
        "[r.a, r.a]",
        "kernel h: field Vec.pos is Array[f32, 3]: its list literal needs exactly 3 elements, not 2",
        "write all 3 values: [a, b, ...]",
    ),
    "list_literal_empty_local": (
        """
@rg.ring_kernel
def h(r: Req) -> Res:
    xs = []
    return Res(x=r.a, k=r.n)
""",
        "[]",
        "kernel h: an empty list literal has no element type",
        "`[]` can only fill a List field; a local Array needs its N values",
    ),
    "list_literal_mixed": (
        """
@rg.ring_kernel
def h(r: Req) -> Res:
    xs = [u64(r.u), r.n]
    return Res(x=r.a, k=r.n)
""",
        "r.u), `r.n`]",
        "kernel h: the elements of this list literal have types u64 and i32: no integer type holds every i32 and every u64 value",
        "convert the elements to one type, e.g. [f32(a), f32(b)]",
    ),
    "pow_float": (
        """
@rg.ring_kernel
def h(r: Req) -> Res:
    return Res(x=r.a ** 0.5, k=r.n)
""",
        "r.a ** 0.5",
        "kernel h: the power operator ** takes a constant integer exponent 0..8, not an exponent that is not a constant integer",
        "use math.pow(x, y)",
    ),
    "pow_negative": (
        """
@rg.ring_kernel
def h(r: Req) -> Res:
    return Res(x=r.a ** -2, k=r.n)
""",
        "r.a ** -2",
        "kernel h: the power operator ** takes a constant integer exponent 0..8, not a negative exponent",
        "divide: 1.0 / (x * x), or use math.pow(x, y)",
    ),
    "pow_large": (
        """
@rg.ring_kernel
def h(r: Req) -> Res:
    return Res(x=r.a, k=r.n ** 9)
""",
        "r.n ** 9",
        "kernel h: the power operator ** takes a constant integer exponent 0..8, not an exponent above 8",
        "use math.pow(x, y) or a loop",
    ),
    "pow_variable": (
        """
@rg.ring_kernel
def h(r: Req) -> Res:
    return Res(x=r.a, k=r.n ** r.n)
""",
        "r.n ** r.n",
        "kernel h: the power operator ** takes a constant integer exponent 0..8, not an exponent that is not a constant integer",
        "use math.pow(x, y)",
    ),
    "tuple_unpack_scalar": (
        """
@rg.ring_kernel
def h(r: Req) -> Res:
    a, b = r.n
    return Res(x=r.a, k=a)
""",
        "r.n",
        "kernel h: only a tuple written out (a, b = x, y) or a @rg.device function returning a tuple can be unpacked",
        "handlers have no tuple values; assign each value on its own line",
    ),
    "tuple_unpack_count": (
        """
@rg.ring_kernel
def h(r: Req) -> Res:
    a, b = r.n, r.n, r.n
    return Res(x=r.a, k=a)
""",
        "a, b = r.n, r.n, r.n",
        "kernel h: 2 names but 3 values",
        "give one value per name",
    ),
    "tuple_unpack_message": (
        """
@rg.ring_kernel
def h(r: Req) -> Res:
    a, b = r.n, Other(k=1)
    return Res(x=r.a, k=a)
""",
        "Other(k=1)",
        "kernel h: multiple assignment takes numbers and bool_ values, not Other",
        "assign this value on its own line",
    ),
    "tuple_call_as_value": (
        """
@rg.ring_kernel
def h(r: Req) -> Res:
    k = lohi(r.n, 3)
    return Res(x=r.a, k=r.n)
""",
        "k = lohi(r.n, 3)",
        "kernel h: this call returns 2 values (tuple[i32, i32])",
        "unpack them: v0, v1 = ...",
    ),
    "tuple_call_count": (
        """
@rg.ring_kernel
def h(r: Req) -> Res:
    a, b, c = lohi(r.n, 3)
    return Res(x=r.a, k=a)
""",
        "a, b, c = lohi(r.n, 3)",
        "kernel h: lohi returns 2 values; 3 names unpack them",
        "unpack every value: v0, v1, v2 = lohi(...)",
    ),
    "tuple_return_count": (
        """
@rg.device
def two(a: i32) -> tuple[i32, i32]:
    return a, a, a


@rg.ring_kernel
def h(r: Req) -> Res:
    p, q = two(r.n)
    return Res(x=r.a, k=p)
""",
        "a, a, a",
        "device function two: this function returns tuple[i32, i32]; return 2 values: v0, v1",
        None,
    ),
    "in_not_literal": (
        """
@rg.ring_kernel
def h(r: Req) -> Res:
    return Res(x=r.a, k=1 if r.n in r.v else 0)
""",
        "r.v",
        "kernel h: `in` tests a value against a tuple written out, e.g. x in (1, 2, 3)",
        "to search an Array or List, write a for loop that compares each element",
    ),
    "in_chain": (
        """
@rg.ring_kernel
def h(r: Req) -> Res:
    return Res(x=r.a, k=1 if 0 < r.n in (1, 2) else 0)
""",
        "0 < r.n in (1, 2)",
        "kernel h: an `in` test cannot be part of a chain of comparisons",
        "write it on its own: (a < b) and (b in (1, 2))",
    ),
    "zip_loop": (
        """
@rg.ring_kernel
def h(r: Req) -> Res:
    for a, b in zip(r.v, r.v):
        pass
    return Res(x=r.a, k=r.n)
""",
        "zip(r.v, r.v)",
        "kernel h: zip() is not supported in handlers",
        "loop over the indices: for i in range(len(a)): ... a[i] ... b[i]",
    ),
    "enumerate_as_value": (
        """
@rg.ring_kernel
def h(r: Req) -> Res:
    e = enumerate(r.v)
    return Res(x=r.a, k=r.n)
""",
        "enumerate",
        "kernel h: enumerate() can only be the iterable of a for loop",
        "for i, v in enumerate(seq): ...",
    ),
    "loop_unpack_not_enumerate": (
        """
@rg.ring_kernel
def h(r: Req) -> Res:
    for a, b in r.v:
        pass
    return Res(x=r.a, k=r.n)
""",
        "a, b",
        "kernel h: a loop unpacks only `for i, v in enumerate(seq)`",
        "use one loop variable: for v in seq, or for i in range(len(seq))",
    ),
    "enumerate_scalar": (
        """
@rg.ring_kernel
def h(r: Req) -> Res:
    for i, x in enumerate(r.n):
        pass
    return Res(x=r.a, k=r.n)
""",
        "enumerate(`r.n`)",
        "kernel h: enumerate() needs an Array or a List, not i32",
        None,
    ),
    "sum_builtin": (
        """
@rg.ring_kernel
def h(r: Req) -> Res:
    return Res(x=r.a, k=sum(r.v))
""",
        "sum",
        "kernel h: sum() is not supported in handlers",
        "add in a for loop: for x in seq: total += x",
    ),
    "round_builtin": (
        """
@rg.ring_kernel
def h(r: Req) -> Res:
    return Res(x=r.a, k=round(r.a))
""",
        "round",
        "kernel h: round() is not supported in handlers",
        "use math.floor(x + 0.5) to round half up, or a cast: i32(x) truncates toward zero",
    ),
    "numpy_type": (
        """
@rg.ring_kernel
def h(r: Req) -> Res:
    return Res(x=np.float32(r.n), k=r.n)
""",
        "np.float32",
        "kernel h: numpy's float32 is not supported in handlers",
        "use ringgen's type: f32(x) (from ringgen.types import f32)",
    ),
    "numpy_function": (
        """
@rg.ring_kernel
def h(r: Req) -> Res:
    return Res(x=np.sqrt(r.a), k=r.n)
""",
        "np.sqrt",
        "kernel h: numpy function np.sqrt() is not supported in handlers",
        "handlers compute on scalars: use math.* functions, operators and loops",
    ),
    "module_list": (
        """
@rg.ring_kernel
def h(r: Req) -> Res:
    return Res(x=r.a, k=WEIGHTS[r.n])
""",
        "WEIGHTS",
        "kernel h: 'WEIGHTS' is a module-level list; handlers can read only scalar constants",
        "put the table in an Array field with a default in the @rg.state class (or in the message), or write its values as scalar constants",
    ),
    "str_concat": (
        """
@rg.ring_kernel
def h(r: Req) -> Res:
    t = r.s + "!"
    return Res(x=r.a, k=r.n)
""",
        'r.s + "!"',
        "kernel h: strings cannot be combined with + in handlers",
        'write the whole string into a Str field (out.name = "..."), or copy a Str field; build other text on the host',
    ),
    "str_method": (
        """
@rg.ring_kernel
def h(r: Req) -> Res:
    return Res(x=r.a, k=1 if r.s.upper() == "A" else 0)
""",
        "r.s.upper",
        "kernel h: Str has no method 'upper' in handlers",
        'a Str supports ==, !=, len(s), s.startswith("...") and s.endswith("...")',
    ),
    "set_literal": (
        """
@rg.ring_kernel
def h(r: Req) -> Res:
    return Res(x=r.a, k=1 if r.n in {1, 2} else 0)
""",
        "{1, 2}",
        "kernel h: a set literal is not supported in handlers",
        "use an Array and a loop, or `x in (a, b, c)` for a test",
    ),
    "walrus": (
        """
@rg.ring_kernel
def h(r: Req) -> Res:
    return Res(x=r.a, k=(y := r.n))
""",
        "y := r.n",
        "kernel h: an assignment expression (:=) is not supported in handlers",
        "assign on its own line",
    ),
    "matmul": (
        """
@rg.ring_kernel
def h(r: Req) -> Res:
    return Res(x=r.a, k=r.n @ r.n)
""",
        "r.n @ r.n",
        "kernel h: the matrix multiplication operator @ is not supported in handlers",
        "write the loops out",
    ),
    "slice": (
        """
@rg.ring_kernel
def h(r: Req) -> Res:
    return Res(x=r.a, k=len(r.v[1:3]))
""",
        "1:3",
        "kernel h: a slice is not supported in handlers",
        "index one element at a time in a loop",
    ),
    "match_statement": (
        """
@rg.ring_kernel
def h(r: Req) -> Res:
    match r.n:
        case 1:
            pass
    return Res(x=r.a, k=r.n)
""",
        "match r.n:",
        "kernel h: a match statement is not supported in handlers",
        "use if/elif/else",
    ),
    "assert_statement": (
        """
@rg.ring_kernel
def h(r: Req) -> Res:
    assert r.n > 0
    return Res(x=r.a, k=r.n)
""",
        "assert r.n > 0",
        "kernel h: an assert statement is not supported in handlers",
        "use if and return a rejection message",
    ),
    "del_statement": (
        """
@rg.ring_kernel
def h(r: Req) -> Res:
    y = r.n
    del y
    return Res(x=r.a, k=r.n)
""",
        "del y",
        "kernel h: a del statement is not supported in handlers",
        "locals cannot be deleted",
    ),
    "raise_statement": (
        """
@rg.ring_kernel
def h(r: Req) -> Res:
    raise ValueError("no")
""",
        'raise ValueError("no")',
        "kernel h: a raise statement is not supported in handlers",
        "return a rejection message (or None) instead of raising",
    ),
    "is_not_compare": (
        """
@rg.ring_kernel
def h(r: Req) -> Res:
    return Res(x=r.a, k=1 if r.n is not 0 else 0)
""",
        "r.n is not 0",
        "kernel h: an `is not` comparison is not supported in handlers",
        "use == or !=",
    ),
    "bool_and_int_local": (
        """
@rg.ring_kernel
def h(r: Req) -> Res:
    k = r.n > 0
    k = 1
    return Res(x=r.a, k=r.n)
""",
        "k = 1",
        "kernel h: local 'k' is assigned both bool_ and int (a Python int) values: a bool_ local holds only bool_ values",
        "convert one of them explicitly, or declare the local's type once: `k: i64 = ...`",
    ),
    "starred_call": (
        """
@rg.ring_kernel
def h(r: Req) -> Res:
    return Res(x=r.a, k=max(*r.v))
""",
        "*r.v",
        "kernel h: a starred expression (*x) is not supported in handlers",
        "pass arguments one by one",
    ),
    "array_local_alias": (
        """
@rg.ring_kernel
def h(r: Req) -> Res:
    w = r.v
    return Res(x=r.a, k=r.n)
""",
        "w = r.v",
        "kernel h: a local cannot refer to an existing Array[i32, 4] (Python would share it, the device would copy it)",
        "index the field directly, or make a new Array local from a list literal: v = [a, b, c]",
    ),
    "tuple_value": (
        """
@rg.ring_kernel
def h(r: Req) -> Res:
    t = (r.n, r.n)
    return Res(x=r.a, k=r.n)
""",
        "(r.n, r.n)",
        "kernel h: a tuple can only be unpacked where it is written (a, b = x, y), returned by a "
        "@rg.device function, or tested with `in`",
        "index an Array of Arrays one dimension at a time: grid[i][j]",
    ),
    "outbox_limit_zero": (
        """
@rg.ring_kernel
def h(r: Req, out: rg.Outbox[Res, 0]) -> None:
    out.emit(Res(x=r.a, k=r.n))
""",
        "rg.Outbox[Res, 0]",
        "kernel h: the Outbox emit limit must be an integer from 1 to 256, not 0",
        "e.g. rg.Outbox[Msg, 16]; plain rg.Outbox[Msg] allows 8",
    ),
    "local_alias_of_message": (
        """
@rg.ring_kernel
def h(r: Req) -> Res:
    copy = r
    return Res(x=copy.a, k=r.n)
""",
        "copy = `r`",
        "kernel h: a local cannot refer to an existing message (Python would share it, the device would copy it)",
        "read its fields directly, or build a new message: Msg(...)",
    ),
}


def _compile_module(tmp_path, name: str, source: str) -> None:
    path = tmp_path / f"errcase_{name}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(f"errcase_{name}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SyntaxWarning)  # `r.n is 0` warns at import
            spec.loader.exec_module(module)
        kernels = [v.spec for v in vars(module).values() if isinstance(v, RingKernel)]
        devices = [v for v in vars(module).values() if isinstance(v, DeviceFunction)]
        compile_program(kernels, devices)
    finally:
        sys.modules.pop(spec.name, None)


def test_catalogue_is_large_enough():
    assert len(CASES) >= 25


@pytest.mark.parametrize("name", sorted(CASES))
def test_rejected_handler(name, tmp_path):
    src, at, message, hint = CASES[name]
    source = HEADER + src
    with pytest.raises(HandlerError) as info:
        _compile_module(tmp_path, name, source)
    err = info.value
    assert err.message == message
    assert err.hint == hint
    lines = source.splitlines()
    if at is None:  # the whole `def` line
        line_no = next(
            i
            for i, text in enumerate(lines, 1)
            if text.startswith("def ") and i > HEADER.count("\n")
        )
        col = 0
    else:
        before, span, after = at.split("`") if "`" in at else ("", at, "")
        line_no, col = next(
            (i, text.index(before + span + after) + len(before))
            for i, text in enumerate(lines, 1)
            if before + span + after in text and i > HEADER.count("\n")
        )
    assert (err.line, err.col) == (line_no, col), f"caret at {err.line}:{err.col}"
    if at is not None:
        assert err.end_col == col + len(span)
    rendered = str(err).splitlines()
    assert rendered[0].startswith(f"{tmp_path / f'errcase_{name}.py'}:{line_no}:{col + 1}: error: ")
    assert rendered[1] == "    " + lines[line_no - 1]
    caret = rendered[2][4:]
    assert caret.index("^") == col
    if at is not None:
        assert caret.strip() == "^" + "~" * (len(span) - 1)


def test_deep_expression_compiles_or_fails_cleanly(tmp_path):
    """A long chain of + either compiles or raises HandlerError, never an internal RecursionError."""
    expr = "r.n" + " + r.n" * 900
    src = f"\n@rg.ring_kernel\ndef h(r: Req) -> Res:\n    return Res(x=r.a, k={expr})\n"
    try:
        _compile_module(tmp_path, "deep", HEADER + src)
    except HandlerError as err:
        assert "nested too deeply" in err.message


def test_no_message_names_an_ast_class():
    """Messages and hints speak Python ("a dict literal"), never the compiler's ``ast.Dict``."""
    for name, (_src, _at, message, hint) in CASES.items():
        assert "ast." not in message and "ast." not in (hint or ""), name


def test_every_construct_outside_the_allow_list_is_named_in_words():
    for base in (ast.stmt, ast.expr, ast.operator, ast.cmpop, ast.unaryop, ast.boolop):
        for cls in base.__subclasses__():
            if cls in ALLOWED_NODES:
                continue
            message, hint = unsupported_node_message(cls.__new__(cls))
            assert message.endswith(" is not supported in handlers"), cls.__name__
            assert "ast." not in message and cls.__name__ not in message, message
            assert "this construct" not in message, message
