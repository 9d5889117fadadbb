"""The reference semantics: run the user's own handler in Python, on numpy-typed values.

``reference_handler(spec)`` compiles the handler first (so the reference never runs what the
compiler rejects), then builds a copy of the function with a small, documented rewrite:

1. ``rg.atomic_<op>(X.field, v)`` / ``rg.atomic_<op>(X.field[i], v)`` become
   ``__rg_atomic_<op>(X, "field", None | i, v)``: Python cannot pass a reference to a field, so the
   call passes the object, the field name and the index (``ringgen.intrinsics.atomic_<op>_at``);
2. ``a // b``, ``a % b`` and ``a / b`` (and their ``op=`` forms) become ``__rg_floordiv(a, b)``,
   ``__rg_mod(a, b)`` and ``__rg_truediv(a, b)``: numpy returns 0 for an integer division by zero
   where the device faults, and Python raises for a float one where the device gives inf/nan;
3. every store into a typed local (``x = v``, ``x += v``, ``x: f32 = v``, a loop or tuple target)
   and every return value of a device function is wrapped in ``__rg_as_<type>(...)``, the local's
   (or return) type as the compiler inferred or was told it (``dsl/scope.py``), converting as a C
   store does: so ``total = 0; total += msg.hist[i]`` accumulates in i64 here as on the device.

Everything else is the user's code, run with its own globals except that message classes build
``Record``s, ``math`` computes with numpy at the precision the compiler picks (f32 for f32), and
``min``/``max``/``abs`` convert their arguments as the generated C does. The rewritten source is
registered in ``linecache``, so tracebacks and pdb show it. Faults raise ``HandlerFault``.

Exactness: integer results equal the generated C bit for bit, except that a local holding only
Python ints (a literal, a ``range`` variable) is unbounded here and 64-bit in C.
"""

from __future__ import annotations

import ast
import builtins
import linecache
import math
import types as pytypes
import weakref
from typing import Any, Callable, Optional

import numpy as np

from .. import intrinsics
from ..barriers import BarrierBroken, break_barriers
from ..dsl import ir
from ..kernel import DeviceFunction, KernelSpec
from ..protocol import Reason
from ..schema import is_message_class
from ..types import SCALARS, cast_scalar
from .records import (
    HandlerFault,
    Record,
    from_array,
    new_record,
    new_state,
    to_numpy_message,
    to_object,
)
from ..dsl.resolve import Resolver
from ..dsl.typesys import ArrayT, Scalar, TupleT, Type

__all__ = ["HandlerFault", "ReferenceHandler", "new_state", "reference_handler", "to_numpy_message"]

_ATOMICS = ("atomic_add", "atomic_min", "atomic_max", "atomic_cas")
_DIV_OPS = {ast.FloorDiv: "__rg_floordiv", ast.Mod: "__rg_mod", ast.Div: "__rg_truediv"}


def _is_int(x) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_))


def _weak(x) -> bool:
    return type(x) in (int, float)


def _divide(op: Callable, a, b):
    if _is_int(a) and _is_int(b):
        if b == 0:
            raise HandlerFault(Reason.DIVISION_BY_ZERO, "integer division by zero")
        with np.errstate(all="ignore"):
            return op(a, b)
    with np.errstate(all="ignore"):
        if _weak(a) and _weak(b):  # Python floats: IEEE results as on the device, still weak
            return float(op(np.float64(a), np.float64(b)))
        return op(a, b)


def _floordiv(a, b):
    return _divide(lambda x, y: x // y, a, b)


def _mod(a, b):
    return _divide(lambda x, y: x % y, a, b)


def _truediv(a, b):
    return _divide(lambda x, y: x / y, a, b)


def _common(args):
    if all(_weak(a) for a in args):
        return list(args)
    dtype = np.result_type(*args)
    return [dtype.type(a) for a in args]


def _min(*args):
    vals = _common(args)
    r = vals[0]
    for b in vals[1:]:
        if b < r:
            r = b
    return r


def _max(*args):
    vals = _common(args)
    r = vals[0]
    for b in vals[1:]:
        if b > r:
            r = b
    return r


def _abs(x):
    with np.errstate(all="ignore"):
        return abs(x)


def _math_namespace() -> pytypes.SimpleNamespace:
    ns = {name: intrinsics.reference_math(name) for name in intrinsics.MATH_FUNCTIONS}
    ns.update(pi=math.pi, e=math.e, tau=math.tau, inf=math.inf, nan=math.nan)
    return pytypes.SimpleNamespace(**ns)


_MATH = _math_namespace()


def _caster(t: Type) -> Optional[Callable]:
    """How the reference converts a value stored into a local of type ``t`` (None: kept as is)."""
    if isinstance(t, ArrayT) and isinstance(t.elem, Scalar):
        elem = t.elem.t

        def cast_array(values, _t=elem):
            return np.array([cast_scalar(_t, v) for v in values], dtype=_t.np_type)

        return cast_array
    if not isinstance(t, Scalar):
        return None
    if t.weak:
        return float if t.is_float else None  # a Python int local stays a Python int
    st = t.t

    def cast(value, _t=st):
        return cast_scalar(_t, value)

    cast.__name__ = f"__rg_as_{st.name}"
    return cast


class _Rewrite(ast.NodeTransformer):
    """The rewrite described in the module docstring."""

    def __init__(self, resolver: Resolver, local_types: dict, return_type: Type) -> None:
        self.resolver = resolver
        self.casts = {n: f"__rg_as_{_cast_key(t)}" for n, t in local_types.items() if _caster(t)}
        self.return_type = return_type

    def _cast(self, name: str, value: ast.AST) -> ast.AST:
        call = ast.Call(ast.Name(self.casts[name], ast.Load()), [value], [])
        return ast.copy_location(call, value)

    def _recast(self, names: list, at: ast.AST) -> list:
        """``name = __rg_as_T(name)`` for each typed local in ``names``."""
        out = []
        for n in names:
            if n in self.casts:
                stmt = ast.Assign(
                    [ast.Name(n, ast.Store())], self._cast(n, ast.Name(n, ast.Load()))
                )
                out.append(ast.copy_location(stmt, at))
        return out

    def visit_Assign(self, node: ast.Assign):
        self.generic_visit(node)
        if len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            name = node.targets[0].id
            if name in self.casts:
                node.value = self._cast(name, node.value)
            return node
        return [node] + self._recast(_stored_names(node.targets), node)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> ast.AST:
        new = ast.Assign([node.target], node.value)  # visited once, as an assignment
        return self.visit_Assign(ast.copy_location(new, node))

    def visit_For(self, node: ast.For) -> ast.AST:
        self.generic_visit(node)
        node.body = self._recast(_stored_names([node.target]), node) + node.body
        return node

    def visit_Return(self, node: ast.Return) -> ast.AST:
        self.generic_visit(node)
        rt = self.return_type
        if node.value is None:
            return node
        if isinstance(rt, TupleT) and isinstance(node.value, ast.Tuple):
            node.value.elts = [
                _cast_call(t, e) if _caster(t) else e for t, e in zip(rt.elems, node.value.elts)
            ]
        elif _caster(rt):
            node.value = _cast_call(rt, node.value)
        return node

    def _atomic_name(self, func: ast.AST) -> Optional[str]:
        if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
            base = self.resolver.lookup(func.value.id)
            if base is not None and base.kind == "rg_module" and func.attr in _ATOMICS:
                return func.attr
        if isinstance(func, ast.Name):
            res = self.resolver.lookup(func.id)
            if res is not None and res.kind == "intrinsic" and res.name in _ATOMICS:
                return res.name
        return None

    def visit_Call(self, node: ast.Call) -> ast.AST:
        self.generic_visit(node)
        name = self._atomic_name(node.func)
        if name is None or not node.args:
            return node
        target = node.args[0]
        index: ast.AST = ast.Constant(None)
        if isinstance(target, ast.Subscript):
            index, target = target.slice, target.value
        if not isinstance(target, ast.Attribute):
            return node  # the compiler has rejected this already
        new = ast.Call(
            ast.Name(f"__rg_{name}", ast.Load()),
            [target.value, ast.Constant(target.attr), index] + node.args[1:],
            [],
        )
        return ast.copy_location(new, node)

    def visit_Compare(self, node: ast.Compare) -> ast.AST:
        self.generic_visit(node)
        if len(node.ops) != 1 or not isinstance(node.ops[0], (ast.In, ast.NotIn)):
            return node  # the compiler accepts `in` only alone, over a tuple written out
        seq = node.comparators[0]
        options = ast.Tuple(list(seq.elts), ast.Load())
        test = ast.Call(ast.Name("__rg_member", ast.Load()), [node.left, options], [])
        if isinstance(node.ops[0], ast.NotIn):
            test = ast.UnaryOp(ast.Not(), test)
        return ast.copy_location(test, node)

    def visit_BinOp(self, node: ast.BinOp) -> ast.AST:
        self.generic_visit(node)
        if isinstance(node.op, ast.Pow):
            call = ast.Call(ast.Name("__rg_power", ast.Load()), [node.left, node.right], [])
            return ast.copy_location(call, node)
        helper = _DIV_OPS.get(type(node.op))
        if helper is None:
            return node
        return ast.copy_location(
            ast.Call(ast.Name(helper, ast.Load()), [node.left, node.right], []), node
        )

    def visit_AugAssign(self, node: ast.AugAssign) -> ast.AST:
        self.generic_visit(node)
        helper = _DIV_OPS.get(type(node.op)) or (
            "__rg_power" if isinstance(node.op, ast.Pow) else None
        )
        load = _as_load(node.target)
        if helper is not None:
            value = ast.Call(ast.Name(helper, ast.Load()), [load, node.value], [])
        elif isinstance(node.target, ast.Name) and node.target.id in self.casts:
            value = ast.BinOp(load, node.op, node.value)
        else:
            return node
        value = ast.copy_location(value, node)
        if isinstance(node.target, ast.Name) and node.target.id in self.casts:
            value = self._cast(node.target.id, value)
        return ast.copy_location(ast.Assign([node.target], value), node)


def _cast_key(t: Type) -> str:
    if isinstance(t, ArrayT):
        return f"array_{t.elem.t.name}"
    return t.t.name if not t.weak else "float"


def _cast_call(t: Scalar, value: ast.AST) -> ast.AST:
    call = ast.Call(ast.Name(f"__rg_as_{_cast_key(t)}", ast.Load()), [value], [])
    return ast.copy_location(call, value)


def _stored_names(targets: list) -> list:
    return [
        n.id
        for t in targets
        for n in ast.walk(t)
        if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)
    ]


#: The casts the rewrite calls (``__rg_as_<type>``), one per scalar type and Python float.
_CASTS = {f"__rg_as_{t.name}": _caster(Scalar(t)) for t in SCALARS.values()}
_CASTS.update({f"__rg_as_array_{t.name}": _caster(ArrayT(Scalar(t), 1)) for t in SCALARS.values()})
_CASTS["__rg_as_float"] = float


def _power(x, n: int):
    """``x ** n`` as the compiler expands it: ``x * x * ... * x``, left to right."""
    if n == 0:
        return type(x)(1)
    result = x
    with np.errstate(all="ignore"):
        for _ in range(n - 1):
            result = result * x
    return result


def _member(x, options: tuple) -> bool:
    """``x in (a, b, ...)`` as the compiler lowers it: ``x == a or x == b ...`` (no identity test)."""
    return any(bool(x == o) for o in options)


def _as_load(target: ast.AST) -> ast.AST:
    new = ast.parse(ast.unparse(target), mode="eval").body
    return ast.copy_location(new, target)


def _message_constructor(cls: type) -> Callable:
    def make(**fields):
        return new_record(cls, **fields)

    make.__name__ = cls.__name__
    return make


_COMPILED: "weakref.WeakKeyDictionary[Callable, Callable]" = weakref.WeakKeyDictionary()


def reference_function(func: Callable, label: str, typed: Optional[ir.Function] = None) -> Callable:
    """The rewritten copy of ``func`` (a handler or device function body), cached per function.

    ``typed`` is the compiled function (its local and return types); a device function is
    compiled here when it is not given.
    """
    key = func
    if key in _COMPILED:
        return _COMPILED[key]
    if typed is None:
        typed = _compiled_device(func)
    import inspect
    import textwrap

    src = textwrap.dedent(inspect.getsource(func))
    tree = ast.parse(src)
    fn = tree.body[0]
    fn.decorator_list = []
    fn.returns = None
    for a in fn.args.args:
        a.annotation = None
    resolver = Resolver(func)
    rewrite = _Rewrite(resolver, dict(typed.locals), typed.return_type)
    tree = ast.fix_missing_locations(rewrite.visit(tree))
    text = (
        f"# ringgen reference copy of {label} ({inspect.getsourcefile(func)}): atomics and\n"
        f"# // % / and typed stores rewritten as ringgen/reference/interpreter.py documents\n"
        + ast.unparse(tree)
        + "\n"
    )
    filename = f"<ringgen-reference {label}>"
    linecache.cache[filename] = (len(text), None, text.splitlines(True), filename)
    namespace = dict(resolver.namespace)
    for name, value in list(namespace.items()):
        namespace[name] = _substitute(value, name)
    namespace.update(
        {
            "__builtins__": builtins,
            "min": _min,
            "max": _max,
            "abs": _abs,
            "__rg_floordiv": _floordiv,
            "__rg_mod": _mod,
            "__rg_truediv": _truediv,
            "__rg_power": _power,
            "__rg_member": _member,
            **_CASTS,
            "__rg_atomic_add": intrinsics.atomic_add_at,
            "__rg_atomic_min": intrinsics.atomic_min_at,
            "__rg_atomic_max": intrinsics.atomic_max_at,
            "__rg_atomic_cas": intrinsics.atomic_cas_at,
        }
    )
    code = compile(text, filename, "exec")
    exec(code, namespace)  # noqa: S102 - the user's own handler, rewritten as documented above
    result = namespace[fn.name]
    _COMPILED[key] = result
    return result


def _compiled_device(func: Callable) -> ir.Function:
    """The compiled ``ir.Function`` of the ``@rg.device`` function whose body is ``func``."""
    from ..dsl.compile import compile_program

    for v in func.__globals__.values():
        if isinstance(v, DeviceFunction) and v.func is func:
            program = compile_program([], [v])
            return next(f for f in program.device_functions if f.name == v.__name__)
    raise LookupError(f"{func.__qualname__} is not a @rg.device function")  # pragma: no cover


def _substitute(value: Any, name: str) -> Any:
    if value is math:
        return _MATH
    if is_message_class(value) and value.__ringgen_decl__.kind == "message":
        return _message_constructor(value)
    if isinstance(value, DeviceFunction):
        # resolved at call time: device functions of one module name each other
        def call(*args, _df=value):
            return reference_function(_df.func, f"device function {_df.__name__}")(*args)

        call.__name__ = value.__name__
        return call
    try:
        for mname in intrinsics.MATH_FUNCTIONS:
            if value is getattr(math, mname, None):
                return getattr(_MATH, mname)
    except TypeError:
        pass
    return value


class _CollectingOutbox:
    """What the rewritten handler emits into: copies each message, faults past the limit."""

    def __init__(self, limit: int) -> None:
        self.items: list[Record] = []
        self.limit = limit

    def emit(self, message: Record) -> None:
        if len(self.items) >= self.limit:
            raise HandlerFault(Reason.OUTBOX_OVERFLOW, f"more than {self.limit} emits")
        self.items.append(
            message.copy() if isinstance(message, Record) else to_numpy_message(message)
        )


class ReferenceHandler:
    """A kernel's handler as the reference runs it: ``handler(msg, state=None) -> [outputs]``.

    ``msg`` is a message object, a ``Record`` or a row of a numpy array of the input's view dtype;
    ``state`` comes from ``new_state(spec.state)``.
    The result is a list: the returned message (or nothing), or what the handler emitted. With
    ``raw=True`` outputs are ``Record``s, else the user's message objects. If ``outbox`` is given,
    the outputs are also emitted into it. Raises ``HandlerFault`` for a fault.
    """

    def __init__(
        self, spec: KernelSpec, raw: bool = False, outbox_limit: Optional[int] = None
    ) -> None:
        from ..dsl.compile import compile_program

        program = compile_program([spec])  # the reference runs only what the compiler accepts
        self.spec = spec
        self.raw = raw
        self.outbox_limit = spec.outbox_limit if outbox_limit is None else outbox_limit
        self.func = reference_function(spec.func, f"kernel {spec.name}", program.handlers[0])
        self._names = spec.param_names
        #: Names of the barriers the handler waits on (docs/barriers.md).
        self.barriers = tuple(name for name, _ in program.handlers[0].barriers)

    def _run(self, kwargs: dict) -> Any:
        """Call the rewritten handler; Python's errors become the faults the device reports."""
        try:
            with np.errstate(all="ignore"):
                return self.func(**kwargs)
        except IndexError as exc:
            raise HandlerFault(Reason.INDEX_OUT_OF_RANGE, str(exc)) from None
        except (OverflowError, ValueError) as exc:
            raise HandlerFault(Reason.RANGE_ERROR, str(exc)) from None
        except ZeroDivisionError as exc:
            raise HandlerFault(Reason.DIVISION_BY_ZERO, str(exc)) from None
        except BarrierBroken as exc:
            raise HandlerFault(Reason.BARRIER_BROKEN, f"barrier broken: {exc}") from None

    def __call__(self, msg: Any, state: Any = None, outbox: Any = None) -> list:
        if isinstance(msg, Record):
            rec = msg
        elif isinstance(msg, (np.void, np.ndarray)):  # a row of a batch in the view dtype
            rec = from_array(self.spec.input, msg)
        else:
            rec = to_numpy_message(msg)
        kwargs = {self._names["input"]: rec}
        if "state" in self._names:
            kwargs[self._names["state"]] = state
        box = None
        if "outbox" in self._names:
            box = kwargs[self._names["outbox"]] = _CollectingOutbox(self.outbox_limit)
        try:
            result = self._run(kwargs)
        except HandlerFault as fault:
            # A party that left its step early can never arrive: the others must not wait for it.
            if self.barriers:
                break_barriers(
                    self.barriers, f"kernel {self.spec.name} faulted ({fault.reason.name})"
                )
            raise
        outs = box.items if box is not None else ([] if result is None else [result])
        if not self.raw:
            outs = [to_object(r) for r in outs]
        if outbox is not None:
            for o in outs:
                outbox.emit(o)
        return outs


def reference_handler(spec: KernelSpec, *, raw: bool = False) -> ReferenceHandler:
    """The reference semantics of ``spec``'s handler (see ``ReferenceHandler``).

    Raises:
        HandlerError: the handler is outside the language.
    """
    return ReferenceHandler(spec, raw=raw)
