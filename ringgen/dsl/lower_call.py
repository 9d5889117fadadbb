"""Lowering calls: casts, message constructors, device functions, math, builtins and intrinsics."""

from __future__ import annotations

import ast

import attrs

from .. import intrinsics
from ..schema import spec_of
from ..types import ScalarType, u32, u64
from . import ir
from .diagnostics import builtin_call_message
from .consts import const_of
from .typesys import (
    BOOL,
    F32,
    F64,
    WEAK_INT,
    ArrayT,
    ListT,
    MsgT,
    OutboxT,
    Scalar,
    StrT,
    describe,
    from_field_type,
    promote_arith,
)


def lower_call(lw: "ExprLowering", node: ast.Call, allow_atomic: bool) -> ir.Expr:
    """Lower any call node; ``lw`` is the function being lowered (a ``lower_expr.ExprLowering``,
    which calls this: lower_call.py does not import lower_expr.py)."""
    d = lw.diag
    if any(isinstance(a, ast.Starred) for a in node.args) or any(
        k.arg is None for k in node.keywords
    ):
        raise d.error(
            node,
            "*args and **kwargs are not supported in handlers",
            hint="pass arguments one by one",
        )
    f = node.func
    if isinstance(f, ast.Attribute):
        # a method on a value: s.startswith("x"), out.emit(...) (statement level)
        base_local = (
            isinstance(f.value, ast.Name) and lw.read_local(f.value, probe=True) is not None
        )
        if not isinstance(f.value, ast.Name) or base_local:
            return _method_call(lw, node, f)
        res = lw.resolver.lookup(f.value.id)
        if res is None:
            raise d.error(f.value, f"unknown name '{f.value.id}'")
        target = lw.resolver.attribute(res, f.attr)
        if target is None:
            raise d.error(f, f"'{f.value.id}' has no attribute '{f.attr}'")
        name = f"{f.value.id}.{f.attr}"
    elif isinstance(f, ast.Name):
        if lw.read_local(f, probe=True) is not None:
            raise d.error(f, f"'{f.id}' is a local, not a function")
        target = lw.resolver.lookup(f.id)
        if target is None:
            raise d.error(
                f, f"unknown name '{f.id}'", hint="declare helpers at module level with @rg.device"
            )
        name = f.id
    else:
        raise d.error(f, "only named functions can be called in handlers")
    kind = target.kind
    if kind != "message" and node.keywords:
        raise d.error(
            node.keywords[0].value,
            f"{name}() takes no keyword arguments here",
            hint="pass arguments by position",
        )
    if kind == "scalar_type":
        return _cast(lw, node, target.value)
    if kind == "message":
        return construct(lw, node, target.value)
    if kind == "device":
        return _device_call(lw, node, target.value)
    if kind == "math_fn":
        return _math_call(lw, node, target.name)
    if kind == "builtin":
        return _builtin(lw, node, target.name)
    if kind == "intrinsic":
        return _intrinsic(lw, node, target.name, allow_atomic)
    if name.startswith("math."):
        raise d.error(
            f,
            f"{name} is not one of the handler language's math functions",
            hint="available: math." + ", math.".join(sorted(intrinsics.MATH_FUNCTIONS)),
        )
    known = builtin_call_message(name, target.value)
    if known is not None:
        raise d.error(f, known[0], hint=known[1])
    if name in ("int", "float", "bool"):
        hint = {"int": "i64(x) or i32(x)", "float": "f32(x) or f64(x)", "bool": "bool_(x)"}[name]
        raise d.error(f, f"{name}() is not supported in handlers", hint=f"cast with {hint}")
    raise d.error(
        f,
        f"call to an arbitrary Python function '{name}' is not supported in handlers",
        hint="declare it with @rg.device (and type its parameters), or use math.*/rg.*",
    )


def _nargs(lw, node, name, lo, hi=None):
    hi = lo if hi is None else hi
    n = len(node.args)
    if not lo <= n <= hi:
        want = f"{lo}" if lo == hi else f"{lo} to {hi}"
        raise lw.diag.error(
            node, f"{name}() takes {want} argument{'s' if hi != 1 else ''}, got {n}"
        )


def _cast(lw, node, t: ScalarType) -> ir.Expr:
    _nargs(lw, node, t.name, 1)
    x = lw.scalar_expr(node.args[0], f"the argument of {t.name}()")
    dst = Scalar(t)
    if isinstance(x, ir.Const) and not isinstance(x.value, bool) and x.type.weak:
        if t.is_float:
            return ir.Const(float(x.value), dst)
        if t.kind == "bool":
            return ir.Const(bool(x.value), dst)
        if isinstance(x.value, int):
            return ir.Const(int(t(x.value)), dst)  # wraps at compile time, as the cast does
    if x.type == dst:
        return x
    checked = x.type.is_float and t.is_integer  # NaN and infinity cannot become integers
    return ir.Convert(x, dst, checked)


def construct(lw, node: ast.Call, cls: type) -> ir.Construct:
    """``Msg(a=..., b=...)``: every field given by keyword or taken from its default."""
    d = lw.diag
    spec = spec_of(cls)
    if spec.kind == "state":
        raise d.error(
            node,
            f"{spec.name} is an @rg.state class; kernel state cannot be constructed "
            "in a handler",
            hint="take it as a parameter",
        )
    if node.args:
        raise d.error(
            node.args[0],
            f"construct {spec.name} with keyword arguments",
            hint=f"e.g. {spec.name}({spec.fields[0].name}=...)",
        )
    given = {}
    for kw in node.keywords:
        if kw.arg in given:
            raise d.error(kw.value, f"field '{kw.arg}' given twice")
        given[kw.arg] = kw
    names = [f.name for f in spec.fields]
    for k, kw in given.items():
        if k not in names:
            raise d.error(
                kw.value,
                f"{spec.name} has no field '{k}'",
                hint=f"its fields are: {', '.join(names)}",
            )
    fields = []
    for f in spec.fields:
        ft = from_field_type(f.type)
        if f.name in given:
            kw = given[f.name]
            fields.append((f.name, lw.value_for(kw.value, ft, f"field {spec.name}.{f.name}")))
        elif f.default is not attrs.NOTHING:
            fields.append((f.name, _default(lw, node, spec.name, f, ft)))
        else:
            raise d.error(
                node,
                f"{spec.name}(...) is missing field '{f.name}'",
                hint=f"pass {f.name}=... (or give the field a default in the class)",
            )
    return ir.Construct(MsgT(cls, spec.name), tuple(fields))


def _default(lw, node, cname, f, ft):
    v = f.default
    if isinstance(v, attrs.Factory):
        raise lw.diag.error(
            node,
            f"{cname}.{f.name} has a factory default, which handlers cannot " "evaluate",
            hint=f"pass {f.name}=... explicitly",
        )
    elem = ft
    while isinstance(elem, ArrayT):
        elem = elem.elem
    if isinstance(ft, ArrayT) and isinstance(elem, Scalar):
        try:
            c = const_of(v)
        except TypeError:
            raise lw.diag.error(
                node,
                f"{cname}.{f.name}: only a scalar default (filling every "
                "element) can be used in handlers",
                hint=f"pass {f.name}=... explicitly",
            ) from None
        return ir.FillArray(lw.const_as(c, elem, node), ft)
    if isinstance(ft, Scalar):
        try:
            return lw.const_as(const_of(v), ft, node)
        except TypeError:
            pass
    if isinstance(ft, StrT) and isinstance(v, str) and len(v.encode()) <= ft.max_bytes:
        return ir.Const(v.encode(), StrT(len(v.encode())))
    raise lw.diag.error(
        node,
        f"{cname}.{f.name}: its default {v!r} cannot be used in handlers",
        hint=f"pass {f.name}=... explicitly",
    )


def _device_call(lw, node, df) -> ir.Expr:
    d = lw.diag
    sig = lw.device_signature(df, node)
    params, ret = sig
    _nargs(lw, node, df.__name__, len(params))
    args = []
    for (pname, ptype), a in zip(params, node.args):
        e = lw.expr(a)
        what = f"parameter '{pname}' of {df.__name__}"
        if not isinstance(ptype, Scalar):  # passed by pointer: the very same C type, not state
            if _is_state_value(e):
                raise d.error(
                    a,
                    f"kernel state cannot be passed to {what} (state lives in another "
                    "address space)",
                    hint="pass the scalars it needs, or copy them into a local first",
                )
            if isinstance(ptype, (StrT, ListT)) and e.type != ptype:
                raise d.error(
                    a,
                    f"{what} is {describe(ptype)}; this is {describe(e.type)}",
                    hint=f"declare the parameter as {describe(e.type)}",
                )
        args.append(lw.assignable(e, ptype, a, what))
    lw.note_call(df, node)
    return ir.CallDevice(df.__name__, tuple(args), ret)


def _float_args(lw, node, name):
    args = []
    for a in node.args:
        e = lw.scalar_expr(a, f"an argument of {name}")
        if e.type.is_bool:
            raise lw.diag.error(a, f"{name} needs numbers, not bool_")
        args.append(e)
    strong = [e.type for e in args if not e.type.weak]
    t = F32 if strong and all(s == F32 for s in strong) else F64
    return [
        lw.coerce(e, t, node) if e.type.weak else (e if e.type == t else ir.Convert(e, t))
        for e in args
    ], t


def _math_call(lw, node, name) -> ir.Expr:
    fn = intrinsics.MATH_FUNCTIONS[name]
    _nargs(lw, node, f"math.{name}", fn.arity)
    args, t = _float_args(lw, node, f"math.{name}")
    return ir.MathCall(name, tuple(args), t)


def _builtin(lw, node, name) -> ir.Expr:
    d = lw.diag
    if name == "range":
        raise d.error(node, "range() can only be used as the iterable of a for loop")
    if name == "len":
        _nargs(lw, node, "len", 1)
        x = lw.expr(node.args[0])
        if isinstance(x.type, ArrayT):
            return ir.Const(x.type.length, WEAK_INT)
        if isinstance(x.type, (ListT, StrT)):
            return ir.Len(x, WEAK_INT)
        raise d.error(node.args[0], f"len() needs an Array, List or Str, not {describe(x.type)}")
    if name == "abs":
        _nargs(lw, node, "abs", 1)
        x = lw.scalar_expr(node.args[0], "the argument of abs()")
        if x.type.is_bool:
            raise d.error(node.args[0], "abs() needs a number, not bool_")
        if isinstance(x, ir.Const) and x.type.weak:
            return ir.Const(abs(x.value), x.type)
        return ir.MathCall("abs", (x,), x.type)
    # min / max
    if len(node.args) < 2:
        raise d.error(
            node, f"{name}() takes two or more numbers", hint="to reduce an Array, write a loop"
        )
    args = [lw.scalar_expr(a, f"an argument of {name}()") for a in node.args]
    t = args[0].type
    for a, a_node in zip(args[1:], node.args[1:]):
        t2, why = promote_arith(t, a.type)
        if t2 is None:
            raise d.error(
                a_node,
                f"{name}() of {describe(t)} and {describe(a.type)}: {why}",
                hint="convert the arguments to one type",
            )
        t = t2
    return ir.MathCall(name, tuple(lw.coerce(a, t, node) for a in args), t)


def _intrinsic(lw, node, name, allow_atomic) -> ir.Expr:
    d = lw.diag
    if name in ("thread_id", "now"):
        _nargs(lw, node, f"rg.{name}", 0)
        return ir.Builtin(name, Scalar(u32 if name == "thread_id" else u64))
    if name == "barrier_wait":
        raise d.error(
            node,
            "rg.barrier_wait returns nothing: call it as a statement of its own",
            hint="rg.barrier_wait(step) on its own line, at the top level of the handler",
        )
    op = name[len("atomic_") :]
    if not allow_atomic:
        raise d.error(
            node,
            f"rg.{name} must be a statement of its own or the whole right-hand side "
            "of an assignment",
            hint=f"old = rg.{name}(...) on its own line",
        )
    _nargs(lw, node, f"rg.{name}", 3 if op == "cas" else 2)
    target = lw.expr(node.args[0])
    if not _is_state_place(target):
        raise d.error(
            node.args[0],
            f"the first argument of rg.{name} must be a state field or an "
            "element of a state Array field",
            hint=f"e.g. rg.{name}(state.count, 1) or rg.{name}(state.hist[i], 1)",
        )
    t = target.type
    allowed = intrinsics.ATOMIC_TYPES[op]
    if not isinstance(t, Scalar) or t.t.name not in allowed:
        raise d.error(
            node.args[0],
            f"rg.{name} works on {', '.join(allowed)} fields, not " f"{describe(t)}",
            hint="change the state field's type",
        )
    args = []
    for a in node.args[1:]:
        e = lw.expr(a)
        args.append(lw.assignable(e, t, a, f"the value of rg.{name}"))
    return ir.Atomic(op, target, tuple(args), t)


def _is_state_value(e) -> bool:
    """True when ``e`` is (part of) the kernel state."""
    while isinstance(e, (ir.Field, ir.Index)):
        e = e.base
    return isinstance(e, ir.Var) and isinstance(e.type, MsgT) and e.type.is_state


def _is_state_place(e) -> bool:
    if isinstance(e, ir.Index):
        e = e.base
    return (
        isinstance(e, ir.Field)
        and isinstance(e.base, ir.Var)
        and isinstance(e.base.type, MsgT)
        and e.base.type.is_state
    )


def _method_call(lw, node, f: ast.Attribute) -> ir.Expr:
    d = lw.diag
    base = lw.expr(f.value)
    if isinstance(base.type, StrT) and f.attr in ("startswith", "endswith"):
        _nargs(lw, node, f.attr, 1)
        a = node.args[0]
        if not (isinstance(a, ast.Constant) and isinstance(a.value, str)):
            raise d.error(a, f"{f.attr} takes a string literal")
        return ir.StartsWith(base, a.value.encode("utf-8"), BOOL, suffix=f.attr == "endswith")
    if isinstance(base.type, StrT):
        raise d.error(
            f,
            f"Str has no method '{f.attr}' in handlers",
            hint='a Str supports ==, !=, len(s), s.startswith("...") and s.endswith("...")',
        )
    if isinstance(base.type, OutboxT) and f.attr == "emit":
        raise d.error(node, "out.emit(...) must be a statement of its own")
    if isinstance(base.type, ListT) and f.attr == "append":
        raise d.error(node, "list.append(...) must be a statement of its own")
    raise d.error(f, f"{describe(base.type)} has no method '{f.attr}' in handlers")
