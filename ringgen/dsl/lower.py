"""Lowering a handler or device function: the driver and the statements.

Locals and their types are ``scope.ScopeLowering``'s job: a local's type is declared or unified
over every assignment to it, so types are found by lowering the body until they stop changing (two
passes in practice).
"""

from __future__ import annotations

import ast
from typing import Optional

from ..kernel import DeviceFunction, KernelSpec, SourceInfo
from ..intrinsics import MATH_FUNCTIONS
from ..naming import check_identifier_shape, reserved_by
from . import ir
from .checks import check_allowed, always_returns
from .diagnostics import Diagnostics
from .lower_call import construct
from .scope import assigned_names, first_store
from .unpack import UnpackLowering
from .resolve import Resolver
from .typesys import (
    VOID,
    WEAK_INT,
    ArrayT,
    ListT,
    MsgT,
    OutboxT,
    Scalar,
    StrT,
    TupleT,
    Type,
    describe,
)

__all__ = ["FunctionLowering"]

_MAX_PASSES = 6


#: Library functions the generated bodies call by name through the dialects' math and atomic macros
#: (``#define rg_sqrt_f32 sqrtf``): a local of such a name would shadow the function inside the
#: handler. Every other C library function name (``index``, ``time``, ``y0``, ``j1``, ...) is a
#: fine local: a local may shadow a function the body never calls.
BODY_CALLS = frozenset(
    {f.stem for f in MATH_FUNCTIONS.values()}
    | {f"{f.stem}f" for f in MATH_FUNCTIONS.values()}
    | {"atom_add", "atomic_add", "atomic_min", "atomic_max", "atomic_cmpxchg"}
    | {"atomicAdd", "atomicMin", "atomicMax", "atomicCAS"}
)


def local_name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a handler's local or parameter in C (None: it can).

    Keywords, macros and type names of C, C++, CUDA, OpenCL C and Metal are refused; library
    function names only where the generated body calls them (``BODY_CALLS``).
    """
    problem = check_identifier_shape(name)
    if problem:
        return problem
    langs = reserved_by(name, functions_ok=True)
    if langs:
        return f"'{name}' is a reserved word in {', '.join(langs)}"
    if name in BODY_CALLS:
        return f"'{name}' is a C math function the generated code calls"
    return None


class FunctionLowering(UnpackLowering):
    """Lowers one function body; ``lower()`` returns an ``ir.Function``."""

    def __init__(self, func, info: SourceInfo, where: str, compiler) -> None:
        self.func = func
        self.info = info
        self.diag = Diagnostics(info, where)
        self.resolver = Resolver(func)
        self.compiler = compiler  # answers device_signature() for calls
        self.node = ast.parse(info.text).body[0]
        check_allowed(self.node, self.diag)
        self.params: dict[str, ir.Var] = {}
        self.pinned: dict[str, Type] = {}
        self.declared: dict[str, Type] = {}
        self.kernel: Optional[KernelSpec] = None
        self.return_type: Type = VOID
        self.hidden_locals: dict[str, Type] = {}  # ForEach counters (rg_i<n>)

    def note_call(self, df: DeviceFunction, node: ast.AST) -> None:
        self.calls.setdefault(
            df.__name__,
            (
                df,
                self.diag.error(
                    node,
                    f"recursion between device functions is not supported (through "
                    f"{df.__name__})",
                    hint="rewrite the recursion as a loop",
                ),
            ),
        )

    def device_signature(self, df: DeviceFunction, node: ast.AST):
        return self.compiler.device_signature(df, self.diag, node)

    # -------------------------------------------------------------- driver

    def run(self, params: dict[str, ir.Var]) -> tuple[tuple, dict]:
        self.params = params
        self.local_names = assigned_names(self.node) - set(params)
        for name in sorted(self.local_names):
            problem = local_name_problem(name)
            if problem:
                raise self.diag.error(
                    first_store(self.node, name),
                    f"local '{name}': {problem}",
                    hint="rename the local",
                )
        self.declared = self.collect_declared(self.node)
        for _ in range(_MAX_PASSES):
            self.seen: dict[str, Type] = {}
            self.assigned: set[str] = set()
            self.calls: dict = {}
            self.loop_depth = 0
            self.hidden = 0
            self.n_temps = 0
            self.safe_ranges: dict[str, tuple[int, int]] = {}
            self.item_views: set[str] = set()  # loop variables over a List of messages
            self.barriers: dict[str, int] = {}  # barriers waited on: name -> parties
            self.top_level = {id(s) for s in self.node.body}
            body = self.block(_strip_docstring(self.node.body))
            if self.seen == {k: v for k, v in self.pinned.items() if k in self.seen}:
                break
            self.pinned = dict(self.seen)
        self.locals = {**self.seen, **self.hidden_locals}
        return body, self.locals

    # -------------------------------------------------------------- statements

    def block(self, stmts: list) -> tuple:
        out = []
        for s in stmts:
            method = getattr(self, "stmt_" + type(s).__name__, None)
            if method is None:
                raise self.unsupported(s)
            r = method(s)
            if r is not None:
                out.extend(r if isinstance(r, list) else [r])
        return tuple(out)

    def line(self, node: ast.AST) -> int:
        return self.diag.line_of(node)

    def stmt_Pass(self, node):
        return None

    def stmt_Expr(self, node: ast.Expr):
        v = node.value
        if isinstance(v, ast.Call) and isinstance(v.func, ast.Attribute) and v.func.attr == "emit":
            base = v.func.value
            if (
                isinstance(base, ast.Name)
                and base.id in self.params
                and isinstance(self.params[base.id].type, OutboxT)
            ):
                return self.emit(node, v, self.params[base.id].type)
        if (
            isinstance(v, ast.Call)
            and isinstance(v.func, ast.Attribute)
            and v.func.attr == "append"
        ):
            place = self.expr(v.func.value)
            if isinstance(place.type, ListT):
                return self.append(node, v, place)
        if isinstance(v, ast.Call) and self.is_barrier_wait(v):
            return self.barrier_wait(node, v)
        if isinstance(v, ast.Call):
            e = self.expr(v, allow_atomic=True)
            if isinstance(e, (ir.Atomic, ir.CallDevice)):
                return ir.ExprStmt(e, self.line(node))
        raise self.diag.error(
            node, "this expression has no effect", hint="assign its value to a local, or remove it"
        )

    def is_barrier_wait(self, call: ast.Call) -> bool:
        """True when ``call`` calls ``rg.barrier_wait`` (however it was imported)."""
        f = call.func
        if isinstance(f, ast.Name) and f.id not in self.params:
            res = self.resolver.lookup(f.id)
        elif isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name):
            base = self.resolver.lookup(f.value.id)
            res = self.resolver.attribute(base, f.attr) if base is not None else None
        else:
            return False
        return res is not None and res.kind == "intrinsic" and res.name == "barrier_wait"

    def barrier_wait(self, node: ast.Expr, call: ast.Call) -> ir.BarrierWait:
        """``rg.barrier_wait(step)``: only at the top level of a handler, so that every call of
        the handler arrives exactly once per step (a wait in a branch or a loop would arrive a
        data-dependent number of times, and the step could never complete)."""
        d = self.diag
        if self.kernel is None:
            raise d.error(
                call,
                "rg.barrier_wait can only be called in a @rg.ring_kernel handler, not in a "
                "@rg.device function",
                hint="wait in the handler, before or after calling the helper",
            )
        if id(node) not in self.top_level:
            raise d.error(
                call,
                "rg.barrier_wait must be a statement at the top level of the handler, not inside "
                "an if, a loop or a with",
                hint="every party must arrive once per message: move the wait out of the block",
            )
        if len(call.args) != 1 or call.keywords:
            raise d.error(call, "rg.barrier_wait takes one barrier: rg.barrier_wait(step)")
        arg = call.args[0]
        res = None
        if isinstance(arg, ast.Name) and self.read_local(arg, probe=True) is None:
            res = self.resolver.lookup(arg.id)
        if res is None or res.kind != "barrier":
            raise d.error(
                arg,
                "rg.barrier_wait takes a barrier declared at module level",
                hint="declare it with step = rg.barrier('step', parties=N), then "
                "rg.barrier_wait(step)",
            )
        b = res.value
        self.barriers[b.name] = b.parties
        return ir.BarrierWait(b.name, b.parties, self.line(node))

    def append(self, node, call: ast.Call, place: ir.Expr):
        if len(call.args) != 1 or call.keywords:
            raise self.diag.error(call, "append takes one value: items.append(x)")
        self.check_writable(place, call.func.value)
        value = self.value_for(call.args[0], place.type.elem, "a List element")
        return ir.Append(place, value, self.line(node))

    def emit(self, node, call: ast.Call, ob: OutboxT):
        if len(call.args) != 1 or call.keywords:
            raise self.diag.error(call, "emit takes one message: out.emit(Msg(...))")
        value = self.message_value(call.args[0])
        if value.type != ob.elem:
            raise self.diag.error(
                call.args[0], f"this Outbox takes {ob.elem.name}, not " f"{describe(value.type)}"
            )
        return ir.Emit(self.kernel.name, value, self.line(node))

    def message_value(self, node: ast.AST, allow_atomic: bool = False) -> ir.Expr:
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            res = self.resolver.lookup(node.func.id) if node.func.id not in self.params else None
            if res is not None and res.kind == "message" and node.func.id not in self.local_names:
                return construct(self, node, res.value)
        return self.expr(node, allow_atomic=allow_atomic)

    def stmt_Assign(self, node: ast.Assign):
        if len(node.targets) != 1:
            raise self.diag.error(
                node, "assign one target at a time", hint="split `a = b = x` into separate lines"
            )
        if isinstance(node.targets[0], (ast.Tuple, ast.List)):
            return self.assign_tuple(node)
        if not isinstance(node.targets[0], (ast.Name, ast.Attribute, ast.Subscript)):
            raise self.diag.error(node.targets[0], "cannot assign to this expression")
        target = node.targets[0]
        if not isinstance(target, ast.Name):
            place = self.expr(target)
            literal = isinstance(node.value, ast.List) or (
                isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)
            )
            if literal and isinstance(place.type, (StrT, ArrayT, ListT)):  # a literal fills it
                self.check_writable(place, target)
                what = f"field '{place.name}'" if isinstance(place, ir.Field) else "this element"
                value = self.value_for(node.value, place.type, what)
                return ir.Assign(place, value, self.line(node))
            return self.assign(target, self.expr(node.value), node)
        if isinstance(node.value, ast.List):
            return self.assign(target, self.local_array_literal(node.value), node)
        value = self.message_value(node.value, allow_atomic=True)
        if isinstance(value.type, MsgT) and not isinstance(value, ir.Construct):
            raise self.diag.error(
                node.value,
                "a local cannot refer to an existing message (Python "
                "would share it, the device would copy it)",
                hint="read its fields directly, or build a new message: Msg(...)",
            )
        return self.assign(target, value, node)

    def stmt_AugAssign(self, node: ast.AugAssign):
        from .lower_expr import _BINOPS

        if isinstance(node.op, ast.Pow):
            load = ast.parse(ast.unparse(node.target), mode="eval").body
            for n in ast.walk(load):  # errors point at the target as written
                ast.copy_location(n, node.target)
            power = ast.copy_location(ast.BinOp(load, ast.Pow(), node.value), node)
            ast.fix_missing_locations(power)
            return self.assign(node.target, self.power(power), node)
        op = _BINOPS.get(type(node.op))
        if op is None:
            raise self.unsupported(node.op, at=node)
        current = self.expr(node.target)
        if not isinstance(current.type, Scalar):
            raise self.diag.error(
                node.target, f"{op}= needs a number, not {describe(current.type)}"
            )
        rhs = self.scalar_expr(node.value, f"the right side of {op}=")
        return self.assign(node.target, self.binary(op, current, rhs, node), node)

    def assign(self, target: ast.AST, value: ir.Expr, node: ast.AST, at: Optional[ast.AST] = None):
        """The IR store of ``value`` into ``target``; errors point at ``at`` (default: the
        statement's value, or the statement)."""
        if at is None:
            at = node.value if getattr(node, "value", None) is not None else node
        if isinstance(target, ast.Name):
            param = self.params.get(target.id)
            if param is not None and isinstance(param.type, Scalar):  # a by-value C parameter
                return ir.Assign(
                    param,
                    self.assignable(value, param.type, at, f"parameter '{target.id}'"),
                    self.line(node),
                )
            if param is not None:
                raise self.diag.error(
                    target,
                    f"cannot assign to parameter '{target.id}'",
                    hint="assign to a new local instead",
                )
            var = self.define_local(target.id, value, node)
            return ir.Assign(var, self.local_value(value, var, at), self.line(node))
        if isinstance(value, ir.Atomic):
            raise self.diag.error(node, "assign the result of an atomic to a local")
        place = self.expr(target)
        self.check_writable(place, target)
        what = "this element" if isinstance(place, ir.Index) else f"field '{place.name}'"
        return ir.Assign(place, self.assignable(value, place.type, at, what), self.line(node))

    def check_writable(self, place: ir.Expr, node: ast.AST) -> None:
        root = place
        while isinstance(root, (ir.Field, ir.Index)):
            root = root.base
        if not isinstance(root, ir.Var):
            raise self.diag.error(node, "cannot assign to this expression")
        if root.pointer and isinstance(root.type, MsgT) and root.type.is_state:
            if self.kernel is None or not self.kernel.ordered:
                raise self.diag.error(
                    node,
                    "a plain write to kernel state in a parallel kernel "
                    "races with other threads",
                    hint="use rg.atomic_add(...) (or atomic_min/max/cas), or "
                    "declare @rg.ring_kernel(ordered=True)",
                )
            return
        if root.pointer and self.kernel is None:
            raise self.diag.error(
                node,
                f"parameter '{root.name}' is read-only",
                hint="build a new value in a local instead",
            )
        if root.pointer or root.name not in self.local_names:
            raise self.diag.error(
                node,
                f"the input message '{root.name}' is read-only",
                hint="build an output message instead",
            )
        if root.name in self.item_views:
            raise self.diag.error(
                node,
                f"'{root.name}' is an item of the List being iterated, which is read-only",
                hint="build a new message from its fields",
            )

    def stmt_If(self, node: ast.If):
        cond = self.scalar_expr(node.test, "a condition")
        before = set(self.assigned)
        then = self.block(node.body)
        after_then = self.assigned if not always_returns(then) else None
        self.assigned = set(before)
        orelse = self.block(node.orelse)
        after_else = self.assigned if not always_returns(orelse) else None
        if after_then is None and after_else is None:
            self.assigned = before | set(self.local_names)
        elif after_then is None:
            self.assigned = after_else
        elif after_else is None:
            self.assigned = after_then
        else:
            self.assigned = after_then & after_else
        return ir.If(cond, then, orelse, self.line(node))

    def loop_body(self, stmts) -> tuple:
        before = set(self.assigned)
        self.loop_depth += 1
        body = self.block(stmts)
        self.loop_depth -= 1
        self.assigned = before
        return body

    def stmt_While(self, node: ast.While):
        if node.orelse:
            raise self.diag.error(
                node.orelse[0], "while ... else is not supported", hint="use a flag local"
            )
        cond = self.scalar_expr(node.test, "a condition")
        return ir.While(cond, self.loop_body(node.body), self.line(node))

    def stmt_For(self, node: ast.For):
        if node.orelse:
            raise self.diag.error(
                node.orelse[0], "for ... else is not supported", hint="use a flag local"
            )
        if not isinstance(node.target, ast.Name):
            return self.for_enumerate(node)
        it = node.iter
        if (
            isinstance(it, ast.Call)
            and isinstance(it.func, ast.Name)
            and it.func.id
            in (
                "enumerate",
                "zip",
            )
        ):
            return self.for_enumerate(node)
        if (
            isinstance(it, ast.Call)
            and isinstance(it.func, ast.Name)
            and it.func.id == "range"
            and it.func.id not in self.local_names
            and self.resolver.lookup("range").kind == "builtin"
        ):
            return self.for_range(node, it)
        seq = self.expr(it)
        if not isinstance(seq.type, (ArrayT, ListT)):
            raise self.diag.error(
                it,
                f"for loops iterate over range(...), an Array or a List, not "
                f"{describe(seq.type)}",
            )
        if isinstance(seq.type.elem, MsgT):
            self.item_views.add(node.target.id)
        idx = self.hidden_counter()
        var = self.define_local(node.target.id, ir.Var("", seq.type.elem), node.target)
        return ir.ForEach(var, seq, idx, self.loop_body(node.body), self.line(node))

    def for_range(self, node: ast.For, call: ast.Call):
        if call.keywords or not 1 <= len(call.args) <= 3:
            raise self.diag.error(call, "range() takes 1 to 3 integer arguments")
        args = [self.int_expr(a, "a range() argument") for a in call.args]
        for a, a_node in zip(args, call.args):
            if isinstance(a.type, Scalar) and a.type.t.name == "u64":
                raise self.diag.error(
                    a_node,
                    "range() over u64 values is not supported",
                    hint="convert the bound: range(i64(n))",
                )
        from .lower_expr import const_of

        if len(args) == 1:
            args = [const_of(0)] + args
        if len(args) == 2:
            args.append(const_of(1))
        if isinstance(args[2], ir.Const) and args[2].value == 0:
            raise self.diag.error(call.args[2], "range() step must not be zero")
        start, stop, step = (a if a.type == WEAK_INT else ir.Convert(a, WEAK_INT) for a in args)
        var = self.define_local(node.target.id, ir.Var("", WEAK_INT), node.target)
        bounds = _const_range(start, stop, step)
        reassigned = node.target.id in _assigned_names_in(node.body)
        saved = self.safe_ranges.get(var.name)
        if bounds is not None and not reassigned:
            self.safe_ranges[var.name] = bounds
        else:
            self.safe_ranges.pop(var.name, None)
        body = self.loop_body(node.body)
        if saved is not None:
            self.safe_ranges[var.name] = saved
        else:
            self.safe_ranges.pop(var.name, None)
        return ir.ForRange(var, start, stop, step, body, self.line(node))

    def stmt_Break(self, node):
        if self.loop_depth == 0:
            raise self.diag.error(node, "'break' outside a loop")
        return ir.Break(self.line(node))

    def stmt_Continue(self, node):
        if self.loop_depth == 0:
            raise self.diag.error(node, "'continue' outside a loop")
        return ir.Continue(self.line(node))

    def stmt_Return(self, node: ast.Return):
        if self.kernel is None:
            return self.device_return(node)
        k = self.kernel
        is_none = node.value is None or (
            isinstance(node.value, ast.Constant) and node.value.value is None
        )
        if is_none:
            if k.output is not None and not k.may_skip:
                raise self.diag.error(
                    node,
                    f"this kernel must return a {k.output.__name__} on " "every path",
                    hint=f"annotate the return type as "
                    f"Optional[{k.output.__name__}] to allow returning None",
                )
            return ir.Return(None, self.line(node))
        if k.outbox is not None or k.output is None:
            raise self.diag.error(
                node.value,
                "this kernel returns None" + (" (it emits through its Outbox)" if k.outbox else ""),
                hint=(
                    "use out.emit(Msg(...)) and a bare return"
                    if k.outbox
                    else "annotate the return type with the message"
                ),
            )
        value = self.message_value(node.value)
        want = MsgT(k.output, k.output.__name__)
        if value.type != want:
            raise self.diag.error(
                node.value,
                f"this kernel returns {want.name}, not " f"{describe(value.type)}",
                hint=f"return {want.name}(...)",
            )
        return ir.Return(value, self.line(node))

    def device_return(self, node: ast.Return):
        rt = self.return_type
        if node.value is None or (
            isinstance(node.value, ast.Constant) and node.value.value is None
        ):
            if rt != VOID:
                raise self.diag.error(node, f"this function returns {describe(rt)}; return a value")
            return ir.Return(None, self.line(node))
        if rt == VOID:
            raise self.diag.error(node.value, "this function is annotated '-> None'")
        if isinstance(rt, TupleT):
            return self.tuple_return(node, rt)
        value = self.expr(node.value)
        return ir.Return(
            self.assignable(value, rt, node.value, "the return value"), self.line(node)
        )

    # -------------------------------------------------------------- function

    def finish(self, body: tuple) -> tuple:
        """Check that a function that must return a value does so on every path."""
        if self.return_type != VOID or (
            self.kernel is not None and self.kernel.output is not None and not self.kernel.may_skip
        ):
            if not always_returns(body):
                raise self.diag.error(
                    self.node,
                    "not every path ends with a return",
                    hint="add a return at the end of the function",
                )
        return body


def _const_range(start, stop, step):
    """(lowest, highest) value a range loop variable takes, when its bounds are constants."""
    if not all(isinstance(x, ir.Const) for x in (start, stop, step)):
        return None
    values = range(start.value, stop.value, step.value)
    if not values:
        return None
    return min(values[0], values[-1]), max(values[0], values[-1])


def _assigned_names_in(stmts: list) -> set:
    names = set()
    for s in stmts:
        for n in ast.walk(s):
            if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store):
                names.add(n.id)
    return names


def _strip_docstring(body: list) -> list:
    if (
        body
        and isinstance(body[0], ast.Expr)
        and isinstance(body[0].value, ast.Constant)
        and isinstance(body[0].value.value, str)
    ):
        return body[1:]
    return body
