"""Hypothesis strategies for whole kernel modules: messages, state, helpers and handlers, as source.

``kernel_modules()`` draws a ``GeneratedModule``: the Python source of a module that declares one to
a few ring kernels, each of one *shape* (``SHAPES``): 1:1, ``Optional`` output, ``rg.Outbox``
emitting 0 to ``OUTBOX_LIMIT`` (and sometimes one more, a fault), an ordered actor with plain state
writes, a parallel kernel with atomics on state, kernels calling ``@rg.device`` helpers, and bridged
(``Str``/``List``) input or output. Bodies mix locals, ``for``/``while`` loops with ``break`` and
``continue``, ``if``/``elif``/``else`` and the expressions of ``ringgen.testing.expressions``.

Every output carries the input's ``id`` (and, from an Outbox, the emit index ``k``), so outputs can be
matched whatever order a backend publishes them in. Output fields named ``approx<N>`` hold one
non-exact math function (``math.sin`` ...) and are compared within a few ULP; all other floats must
agree bit for bit.
"""

from __future__ import annotations

import itertools

import attrs
from hypothesis import strategies as st

from ..protocol import OUTBOX_LIMIT
from .expressions import APPROX_MATH, Profile, Scope, bool_expr, expr_of, literal, operand
from .schemas import FLOATS, SCALARS, MessageDecl, TypeDecl, message_decls, scalar

__all__ = ["SHAPES", "GeneratedKernel", "GeneratedModule", "kernel_modules", "render_module"]

#: The kernel shapes the generator draws.
SHAPES = (
    "one_to_one",
    "optional",
    "outbox",
    "ordered",
    "atomics",
    "device",
    "bridged_in",
    "bridged_out",
)
#: Strings for Str literals: empty, ASCII, multi-byte UTF-8.
WORDS = ("", "a", "ab", "abc", "ring", "héllo", "ünï ✓", "日本")
_ATOMIC_TYPES = ("i32", "u32", "i64", "u64")
_IMPORTS = "Array, List, Str, bool_, f32, f64, i8, i16, i32, i64, u8, u16, u32, u64"


@attrs.frozen
class GeneratedKernel:
    """One kernel of a generated module: its name, shape, and output fields compared within ULPs."""

    name: str
    shape: str
    approx_fields: tuple[str, ...] = ()


@attrs.frozen
class GeneratedModule:
    """A generated kernel module: its full source and what it declares."""

    source: str
    kernels: tuple[GeneratedKernel, ...]
    profile: Profile = Profile()

    def __str__(self) -> str:
        return self.source


def render_module(parts: list[str]) -> str:
    """Join declarations into a module with the imports every generated module uses."""
    head = (
        "import math\nfrom typing import Optional\n\nimport ringgen as rg\n"
        f"from ringgen.types import {_IMPORTS}\n"
    )
    return head + "".join("\n\n" + p.rstrip("\n") + "\n" for p in parts)


class _Body:
    """Lines of a function body under construction, with fresh local names."""

    def __init__(self, indent: str = "    ") -> None:
        self.lines: list[str] = []
        self.indent = indent
        self._names = itertools.count()

    def fresh(self, stem: str = "v") -> str:
        return f"{stem}{next(self._names)}"

    def add(self, line: str, depth: int = 0) -> None:
        self.lines.append(self.indent * (depth + 1) + line)

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def _str_literal(draw, limit: int) -> str:
    fits = [w for w in WORDS if len(w.encode()) <= limit]
    return repr(draw(st.sampled_from(fits)))


def _scope_from(draw, var: str, decl: MessageDecl, decls: dict, scope: Scope) -> None:
    """Add what ``var`` (an instance of ``decl``) offers to ``scope``: fields, elements, lengths."""
    for name, t in decl.fields:
        _scope_field(draw, f"{var}.{name}", t, decls, scope)


def _scope_field(draw, path: str, t: TypeDecl, decls: dict, scope: Scope) -> None:
    if t.kind == "scalar":
        scope.add(t.name, path)
    elif t.kind == "message":
        _scope_from(draw, path, decls[t.name], decls, scope)
    elif t.kind == "array":
        i = draw(st.integers(-t.length, t.length - 1))  # a negative index counts from the end
        if t.elem.kind == "scalar":
            scope.arrays.append((path, t.elem.name, t.length))
        _scope_field(draw, f"{path}[{i}]", t.elem, decls, scope)
    elif t.kind == "str":
        scope.add("i32", f"i32(len({path}))")
        scope.add("bool_", f"({path} == {_str_literal(draw, t.length)})")
        scope.add("bool_", f"{path}.startswith({_str_literal(draw, t.length)})")
    else:  # a List of scalars
        scope.add("i32", f"i32(len({path}))")
        scope.arrays.append((path, t.elem.name, None))


def _types(profile: Profile, *, bool_ok: bool = True) -> list[str]:
    return [t for t in SCALARS if (profile.f64 or t != "f64") and (bool_ok or t != "bool_")]


def _value(draw, t: str, scope: Scope) -> str:
    return draw(bool_expr(scope)) if t == "bool_" else draw(expr_of(t, scope))


def _locals(draw, body: _Body, scope: Scope, depth: int = 0) -> None:
    """A few typed locals, each added to ``scope`` once assigned."""
    for _ in range(draw(st.integers(0, 2))):
        t = draw(st.sampled_from(_types(scope.profile, bool_ok=False)))
        name = body.fresh()
        body.add(f"{name} = {draw(expr_of(t, scope))}", depth)
        scope.add(t, name)


def _bound(draw, scope: Scope) -> str:
    """A loop bound between 0 and 8: a literal, or an integer expression taken modulo 9."""
    if draw(st.booleans()):
        return str(draw(st.integers(0, 6)))
    t = draw(st.sampled_from(["i8", "i32", "u16", "i64"]))
    return f"i32({draw(expr_of(t, scope, 2))}) % 9"


def _loop(draw, body: _Body, scope: Scope, locals_: list, kind: str | None = None) -> None:
    """An accumulator updated in a ``for range``, ``for x in <List>`` or ``while`` loop with optional
    continue/break."""
    t = draw(st.sampled_from(_types(scope.profile, bool_ok=False)))
    acc = body.fresh("acc")
    body.add(f"{acc} = {t}({literal(draw, t)})")
    inner = scope.copy()
    lists = [(path, elem) for path, elem, n in scope.arrays if n is None]
    kind = kind or draw(st.sampled_from(["for", "while"] + (["foreach"] if lists else [])))
    if kind == "foreach":  # over the live items of a List field
        path, elem = draw(st.sampled_from(lists))
        x = body.fresh("x")
        body.add(f"for {x} in {path}:")
        inner.add(elem, x)
    elif kind == "for":
        i = body.fresh("i")
        body.add(f"for {i} in range({_bound(draw, scope)}):")
        inner.add("i32", f"i32({i})")
        inner.add("i64", f"i64({i})")
    else:
        j = body.fresh("w")  # not "j": j0 and j1 are C library functions (reserved names)
        body.add(f"{j} = i32(0)")
        body.add(f"while {j} < {_bound(draw, scope)}:")
        body.add(f"{j} += 1", 1)
        inner.add("i32", j)
    inner.add(t, acc)
    if draw(st.booleans()):
        body.add(f"if {draw(bool_expr(inner, 1))}:", 1)
        body.add("continue", 2)
    op = draw(st.sampled_from(["+", "-", "*", "max"]))
    step = draw(expr_of(t, inner, 1))
    body.add(f"{acc} = max({acc}, {step})" if op == "max" else f"{acc} = {acc} {op} {step}", 1)
    if draw(st.booleans()):
        body.add(f"if {draw(bool_expr(inner, 1))}:", 1)
        body.add("break", 2)
    scope.add(t, acc)
    locals_.append((t, acc))


def _branch(draw, body: _Body, scope: Scope, locals_: list) -> None:
    """``if``/``elif``/``else`` reassigning a local."""
    t = draw(st.sampled_from(_types(scope.profile, bool_ok=False)))
    name = body.fresh()
    body.add(f"{name} = {draw(expr_of(t, scope, 1))}")
    body.add(f"if {draw(bool_expr(scope, 1))}:")
    body.add(f"{name} = {draw(expr_of(t, scope, 1))}", 1)
    if draw(st.booleans()):
        body.add(f"elif {draw(bool_expr(scope, 1))}:")
        body.add(f"{name} = {draw(expr_of(t, scope, 1))}", 1)
    if draw(st.booleans()):
        body.add("else:")
        body.add(f"{name} = {name} + {literal(draw, t)}", 1)
    scope.add(t, name)
    locals_.append((t, name))


def _statements(draw, body: _Body, scope: Scope) -> None:
    locals_: list = []
    _locals(draw, body, scope)
    for step in draw(st.lists(st.sampled_from(["loop", "branch", "locals"]), max_size=3)):
        if step == "loop":
            _loop(draw, body, scope, locals_)
        elif step == "branch":
            _branch(draw, body, scope, locals_)
        else:
            _locals(draw, body, scope)


@st.composite
def _helpers(draw, k: int, profile: Profile, nested: MessageDecl | None, decls: dict):
    """One or two ``@rg.device`` helpers of scalar parameters, the first one sometimes taking a
    ``nested`` message first (``nested`` None: never); later helpers may call earlier scalar ones.
    """
    out = []
    for h in range(draw(st.integers(1, 2))):
        name = f"helper{k}_{h}"
        scope = Scope(profile=profile, helpers=[x[1] for x in out if x[1][1][0] in SCALARS])
        params: list[tuple[str, str]] = []
        if h == 0 and nested is not None and draw(st.booleans()):
            params.append(("p", nested.name))
            _scope_from(draw, "p", nested, decls, scope)
        for i in range(draw(st.integers(1, 2))):
            t = draw(st.sampled_from(_types(profile, bool_ok=False)))
            params.append((f"a{i}", t))
            scope.add(t, f"a{i}")
        result = draw(st.sampled_from(_types(profile, bool_ok=False)))
        body = _Body()
        _locals(draw, body, scope)
        if draw(st.booleans()):
            _loop(draw, body, scope, [])
        body.add(f"return {draw(expr_of(result, scope))}")
        sig = ", ".join(f"{n}: {t}" for n, t in params)
        text = f"@rg.device\ndef {name}({sig}) -> {result}:\n{body.text()}"
        out.append((text, (name, tuple(t for _, t in params), result)))
    return out


def _state_decl(draw, k: int, profile: Profile, atomics: bool) -> MessageDecl:
    types = list(_ATOMIC_TYPES) if atomics else _types(profile, bool_ok=False)
    fields, defaults = [], []
    for i in range(draw(st.integers(1, 4))):
        t = draw(st.sampled_from(types))
        if draw(st.integers(0, 3)) == 0:
            fields.append(
                (f"g{i}", TypeDecl("array", elem=scalar(t), length=draw(st.integers(1, 4))))
            )
        else:
            fields.append((f"g{i}", scalar(t)))
        if defaults or draw(st.booleans()):  # attrs: defaults only after fields without
            defaults.append((f"g{i}", literal(draw, t) if profile.state_defaults else "0"))
    return MessageDecl(f"State{k}", tuple(fields), state=True, defaults=tuple(defaults))


def _state_writes(draw, body: _Body, state: MessageDecl, scope: Scope, atomics: bool) -> None:
    """Plain writes (ordered actors) or atomics (parallel kernels) on every state field."""
    for name, t in state.fields:
        place = f"s.{name}"
        elem = t.name if t.kind == "scalar" else t.elem.name
        if t.kind == "array":
            idx = operand(draw, "i32", scope, 2)
            place = f"s.{name}[{idx} % {t.length}]" if draw(st.booleans()) else f"s.{name}[{idx}]"
        if not atomics:
            body.add(f"{place} = {draw(expr_of(elem, scope, 1))}")
            continue
        op = draw(st.sampled_from(["add", "min", "max", "cas"]))
        if op == "cas":  # a constant swap: the final state does not depend on the order
            body.add(f"rg.atomic_cas({place}, {elem}(0), {elem}({literal(draw, elem)}))")
        else:
            body.add(f"rg.atomic_{op}({place}, {draw(expr_of(elem, scope, 1))})")


def _bridged_outputs(draw, inp: MessageDecl, profile: Profile):
    """One or two Str/List output fields: copies of input fields, UTF-8 literals, or Lists built by
    ``append`` (sometimes past their bound: a RANGE_ERROR fault).

    Returns:
        ([(name, TypeDecl, constructor expression)], [(List field, element type, bound)] to append).
    """
    fields, appends = [], []
    copies = [(n, t) for n, t in inp.fields if t.kind in ("str", "list")]
    for i in range(draw(st.integers(1, 2))):
        how = draw(
            st.sampled_from(["copy", "literal", "append"] if copies else ["literal", "append"])
        )
        if how == "copy":
            n, t = draw(st.sampled_from(copies))
            fields.append((f"b{i}", t, f"m.{n}"))
        elif how == "literal":
            t = TypeDecl("str", length=draw(st.integers(1, 10)))
            fields.append((f"b{i}", t, _str_literal(draw, t.length)))
        else:
            elem = draw(st.sampled_from(_types(profile, bool_ok=False)))
            t = TypeDecl("list", elem=scalar(elem), length=draw(st.integers(1, 5)))
            fields.append((f"b{i}", t, "[]"))
            appends.append((f"b{i}", elem, t.length))
    return fields, appends


@st.composite
def _kernel(draw, k: int, shape: str, profile: Profile):
    """(declarations, GeneratedKernel) of kernel ``k`` of ``shape``."""
    decls: dict[str, MessageDecl] = {}
    parts: list[str] = []
    nested = None
    if draw(st.booleans()):
        nested = draw(message_decls(f"Part{k}", max_fields=3, allow_f64=profile.f64, prefix="p"))
        decls[nested.name] = nested
        parts.append(nested.render())
    bridged_in = (
        1 if shape == "bridged_in" else (draw(st.integers(0, 1)) if shape == "bridged_out" else 0)
    )
    inp = draw(
        message_decls(
            f"In{k}",
            nested=(nested,) if nested else (),
            bridged=bridged_in + (draw(st.integers(0, 1)) if bridged_in else 0),
            allow_f64=profile.f64,
        )
    )
    at = draw(st.integers(0, len(inp.fields)))
    inp = attrs.evolve(inp, fields=inp.fields[:at] + (("id", scalar("i64")),) + inp.fields[at:])
    decls[inp.name] = inp
    parts.append(inp.render())
    scope = Scope(profile=profile)
    _scope_from(draw, "m", inp, decls, scope)

    state = None
    if shape in ("ordered", "atomics"):
        state = _state_decl(draw, k, profile, atomics=shape == "atomics")
        parts.append(state.render())
    msg_field = next((n for n, t in inp.fields if t.kind == "message"), None)
    msg_helpers = []
    if shape == "device":
        for text, sig in draw(_helpers(k, profile, nested if msg_field else None, decls)):
            parts.append(text)
            if sig[1][0] in SCALARS:
                scope.helpers.append(sig)
            else:  # called below with the input's nested message, not from expressions
                msg_helpers.append(sig)

    body = _Body()
    _statements(draw, body, scope)
    if shape == "bridged_in" and any(n is None for _, _, n in scope.arrays):
        _loop(draw, body, scope, [], kind="foreach")
    if state is not None:
        _state_writes(draw, body, state, scope, atomics=shape == "atomics")
        if shape == "ordered":  # an actor reads its own state back: order matters, and is kept
            _scope_from(draw, "s", state, decls, scope)
    if shape == "optional":
        body.add(f"if {draw(bool_expr(scope))}:")
        body.add("return None", 1)

    # the output: id (and k), computed scalars, approximate math, copies, bridged fields
    out_fields: list[tuple[str, TypeDecl, str]] = [("id", scalar("i64"), "m.id")]
    if shape == "outbox":
        out_fields.append(("k", scalar("i32"), "i32(j)"))
    inner = scope.copy()
    if shape == "outbox":
        inner.add("i32", "i32(j)")
    for i in range(draw(st.integers(1, 4))):
        t = draw(st.sampled_from(_types(profile)))
        out_fields.append((f"r{i}", scalar(t), _value(draw, t, inner)))
    approx = []
    if draw(st.integers(0, 2)) == 0:
        t = draw(st.sampled_from([f for f in FLOATS if profile.f64 or f != "f64"]))
        fn = draw(st.sampled_from(APPROX_MATH))
        args = ", ".join(
            draw(expr_of(t, inner, 2)) for _ in range(2 if fn in ("atan2", "hypot", "pow") else 1)
        )
        out_fields.append(("approx0", scalar(t), f"math.{fn}({args})"))
        approx.append("approx0")
    if shape == "device":
        for name, params, result in scope.helpers:
            args = ", ".join(draw(expr_of(p, inner, 1)) for p in params)
            out_fields.append((f"h_{name}", scalar(result), f"{name}({args})"))
        for name, params, result in msg_helpers:
            args = ", ".join([f"m.{msg_field}"] + [draw(expr_of(p, inner, 1)) for p in params[1:]])
            out_fields.append((f"h_{name}", scalar(result), f"{name}({args})"))
    aggregates = [(n, t) for n, t in inp.fields if t.kind in ("array", "message")]
    if aggregates and draw(st.booleans()):
        n, t = draw(st.sampled_from(aggregates))
        out_fields.append(("c0", t, f"m.{n}"))
    appends: list = []
    if shape == "bridged_out":
        fields, appends = _bridged_outputs(draw, inp, profile)
        out_fields += fields
    head = out_fields[:2] if shape == "outbox" else out_fields[:1]
    rest = list(draw(st.permutations(out_fields[len(head) :])))
    at = draw(st.integers(0, len(rest)))
    ordered_fields = rest[:at] + head + rest[at:]
    out = MessageDecl(
        f"Out{k}",
        tuple((n, t) for n, t, _ in ordered_fields),
        nested=(nested,) if nested else (),
    )
    parts.insert(parts.index(inp.render()) + 1, out.render())
    ctor = f"{out.name}(" + ", ".join(f"{n}={e}" for n, t, e in ordered_fields) + ")"

    name = f"kernel{k}"
    if shape == "outbox":
        count = str(draw(st.integers(0, OUTBOX_LIMIT)))
        if draw(st.booleans()):  # sometimes one past the limit: an OUTBOX_OVERFLOW fault
            count = f"i32({draw(expr_of('i64', scope, 2))}) % {OUTBOX_LIMIT + 2}"
        body.add(f"for j in range({count}):")
        body.add(f"out.emit({ctor})", 1)
        sig = f"def {name}(m: {inp.name}, out: rg.Outbox[{out.name}]) -> None:"
    else:
        if appends:
            body.add(f"res = {ctor}")
            for field, elem, limit in appends:
                body.add(f"for i in range({draw(st.integers(0, limit + 1))}):")
                body.add(f"res.{field}.append({elem}(i) + {draw(expr_of(elem, scope, 2))})", 1)
            body.add("return res")
        else:
            body.add(f"return {ctor}")
        ret = f"Optional[{out.name}]" if shape == "optional" else out.name
        args = f"m: {inp.name}" + (f", s: {state.name}" if state else "")
        sig = f"def {name}({args}) -> {ret}:"
    deco = "@rg.ring_kernel(ordered=True)" if shape == "ordered" else "@rg.ring_kernel"
    parts.append(f"{deco}\n{sig}\n{body.text()}")
    return parts, GeneratedKernel(name, shape, tuple(approx))


@st.composite
def kernel_modules(
    draw, shapes: tuple[str, ...] | None = None, kernels: tuple[int, int] = (1, 3), profile=None
) -> GeneratedModule:
    """A module of ``kernels[0]..kernels[1]`` generated kernels, each of a shape from ``shapes``.

    Args:
        shapes: the shapes to draw from (default: ``profile.shapes`` or every shape).
        kernels: how many kernels the module declares, at least and at most.
        profile: a ``Profile`` (what the generator may use); default everything.
    """
    profile = profile or Profile()
    shapes = shapes or profile.shapes or SHAPES
    parts: list[str] = []
    gen = []
    for k in range(draw(st.integers(*kernels))):
        p, g = draw(_kernel(k, draw(st.sampled_from(shapes)), profile))
        parts += p
        gen.append(g)
    return GeneratedModule(render_module(parts), tuple(gen), profile)
