"""The shared C-family printer: ``ir.Program`` -> the handler text every target compiles.

``emit_body(unit)`` returns, for one build, the helper functions the handlers need (rendered from
``templates/common/body_helpers.c.j2``, only those used), every ``@rg.device`` function (callees
first) and one ``rg_handle_<kernel>`` per kernel (docs/architecture.md, "The handler ABI"). The text
is identical for every target: it uses only the prelude names listed in ``dialect.PRELUDE_NAMES``.

How Python's semantics become C:
- integers wrap without undefined behaviour: signed (and narrow) arithmetic is done in an unsigned
  type and cast back; // and % floor, and fault on a zero divisor, through ``rg_py_*`` helpers;
- faults (index out of range, division by zero, a value out of range) set ``*rg_fault`` and the
  statement's helpers return a harmless value; the handler checks ``*rg_fault`` after any statement
  that can fault, before any side effect of that statement (an atomic, a store, an emit);
- Python locals are function-scoped, so every local is declared at the top of the C function;
- ``for`` loops run on a hidden counter, so assigning the loop variable does not change the
  iteration, and ``range`` arguments are evaluated once;
- ``while`` and ``for ... in range`` loops poll the host's stop-now request at the top of every
  iteration, one in ``RG_STOP_POLL_MASK + 1`` (``rg_stop_requested(rg_stop)``, defined per target):
  a handler that loops forever must not keep ``terminate(drain=False)`` from stopping its kernel.
  A stopped handler returns the fault ``RG_STATUS_FAULT_STOPPED``, counted as ``Reason.STOPPED``.
  Every handler and ``@rg.device`` function takes the stop word as its last parameter ``rg_stop``.
"""

from __future__ import annotations

import os
from typing import Optional

from .. import protocol
from ..dsl import ir
from ..dsl.typesys import (
    VOID,
    ArrayT,
    ListT,
    MsgT,
    Scalar,
    StrT,
    TupleT,
    c_type,
    from_field_type,
    to_field_type,
)
from ..layout import array_dims
from ..schema import spec_of
from .body_expr import ExprPrinter, Helpers
from .env import render
from .options import EmitOptions

__all__ = ["emit_body", "emit_program", "debug_requested"]


def debug_requested(debug: Optional[bool] = None) -> bool:
    """True when ``#line`` directives are wanted: ``debug`` if given, else
    ``EmitOptions.from_env()`` (``RINGGEN_LINE_DIRECTIVES``; ``RINGGEN_DEBUG`` no longer changes the
    output)."""
    if debug is not None:
        return debug
    return EmitOptions.from_env().debug_line_directives


def emit_body(unit, *, debug: Optional[bool] = None, program: Optional[ir.Program] = None) -> str:
    """The handler text of a build: helpers, device functions, one ``rg_handle_<kernel>`` each.

    Args:
        unit: a ``BuildUnit`` (its ``kernels``, ``device_functions`` and ``source_file`` are read).
        program: the unit's compiled IR when the caller has it (the writer compiles once per
            build and hands it to every target); compiled here otherwise.
        debug: emit ``#line N "file.py"`` before every statement (default:
            ``RINGGEN_LINE_DIRECTIVES``, see ``EmitOptions``).

    Raises:
        HandlerError: a handler is outside the language.
    """
    if program is None:
        from ..dsl import compile_program

        program = compile_program(
            unit.kernels, unit.device_functions, source_file=getattr(unit, "source_file", None)
        )
    return emit_program(program, debug=debug_requested(debug))


def emit_program(
    program: ir.Program, *, debug: bool = False, split_printer=None, keep_unsplit: bool = False
) -> str:
    """Print a compiled program (see ``emit_body``).

    ``split_printer`` (Metal: ``body_phases.emit_split_program``) prints each handler that waits on
    a barrier in its place, as phases cut at the waits; no barrier words are rendered then.
    ``keep_unsplit`` (OpenCL: ``body_phases.emit_program_with_phases``) prints the phases after the
    unsplit handler instead, and the barrier words as without a split printer.
    """
    helpers = Helpers()
    may_fault: set[str] = set()
    chunks = []
    for fn in program.device_functions:  # callees first, so may_fault is known at every call
        printer = _FunctionPrinter(fn, helpers, may_fault, debug)
        text, faults = printer.emit()
        if faults or any(printer.can_fault(e) for e in _expressions(fn.body)):
            may_fault.add(fn.name)
        chunks.append(text)
    for fn in program.handlers:
        split = split_printer is not None and fn.barriers
        if not split or keep_unsplit:
            chunks.append(_FunctionPrinter(fn, helpers, may_fault, debug).emit()[0])
        if split:
            chunks.append(split_printer(fn, helpers, may_fault, debug).emit()[0])
    statuses = [(s.name, int(s)) for s in protocol.Status]
    head = render(
        "common/body_helpers.c.j2",
        helpers=helpers.contexts(),
        statuses=statuses,
        stop_now=protocol.TERMINATE_STOP_NOW,
    )
    barriers = sorted({b for fn in program.handlers for b in fn.barriers})
    if barriers and (split_printer is None or keep_unsplit):
        head += "\n" + render(
            "common/barrier.c.j2",
            barriers=[{"name": n, "parties": p} for n, p in barriers],
            cache_line=protocol.CACHE_LINE,
        )
    return head + "\n" + "\n".join(chunks)


def _barrier_params(fn: ir.Function) -> str:
    """The barrier parameters of a waiting handler: ``RG_BAR_PARAM`` expands to a storage pointer
    where the target passes barriers as kernel arguments (OpenCL), to nothing elsewhere
    (``templates/common/barrier.c.j2``)."""
    return "".join(f" RG_BAR_PARAM(rg_barrier_{name})" for name, _ in fn.barriers)


def _barrier_args(fn: ir.Function) -> str:
    """The arguments matching ``_barrier_params``."""
    return "".join(f" RG_BAR_ARG(rg_barrier_{name})" for name, _ in fn.barriers)


class _FunctionPrinter(ExprPrinter):
    """Prints one ``ir.Function``; collects hidden temporaries and whether it can fault."""

    def __init__(self, fn: ir.Function, helpers: Helpers, may_fault: set, debug: bool) -> None:
        super().__init__(helpers, may_fault)
        self.fn = fn
        self.debug = debug
        self.hidden: list[tuple[str, str]] = []  # (C type, name) of printer temporaries
        self.n_hidden = 0
        self.faults = False
        self.polls = False  # a loop polls the stop request: declare the poll counter
        self.pointer_names = {}
        for p in fn.params:
            if fn.kind == "handler":
                self.pointer_names[p.name] = {
                    "input": "rg_in",
                    "state": "rg_state",
                    "outbox": "rg_outbox",
                }[p.role]
            elif isinstance(p.type, MsgT):
                self.pointer_names[p.name] = p.name
            elif isinstance(p.type, (StrT, ListT)):
                self.pointer_names[p.name] = f"(*{p.name})"

    # -------------------------------------------------------------- function

    def emit(self) -> tuple[str, bool]:
        fn = self.fn
        body = self.block(fn.body, 1)
        if fn.kind == "handler" and not _ends_in_return(fn.body):
            body.append("    return RG_STATUS_NONE;")
        decls = []
        for name, t in fn.locals:
            dims = "".join(f"[{n}]" for n in array_dims(to_field_type(t)))
            decls.append(f"    {c_type(t)} {name}{dims};")
        for ct, name in self.hidden:
            decls.append(f"    {ct} {name};")
        if self.polls:
            decls.append(
                "    rg_u32 rg_polls = 0u; /* loop iterations, for the stop-request poll */"
            )
        lines = [self.signature(inner=bool(fn.barriers)) + "\n{"]
        if fn.kind == "handler":
            lines.append("    int rg_fault_code = 0; /* 0, or the first fault's negative status */")
            lines.append("    RG_PRIVATE int* rg_fault = &rg_fault_code;")
            params = ("rg_fault", "rg_in", "rg_out", "rg_state", "rg_outbox", "rg_stop")
            lines.append("    " + " ".join(f"(void){p};" for p in params) + " /* may be unused */")
        else:
            lines.append("    (void)rg_fault; (void)rg_stop; /* may be unused */")
        lines.extend(decls)
        lines.extend(body)
        lines.append("}")
        comment = self.comment()
        text = comment + "\n".join(lines) + "\n"
        if fn.barriers:
            text += self.barrier_wrapper()
        return text, self.faults

    def barrier_wrapper(self) -> str:
        """The handler of a kernel that waits on barriers: its body (``rg_steps_<kernel>``), then
        every barrier it waits on marked broken when it faults, since a party that left its step
        early can never arrive (docs/barriers.md)."""
        fn = self.fn
        lines = [
            f"/* kernel {fn.name}: a fault breaks every barrier it waits on, so the other parties",
            " * leave with RG_STATUS_FAULT_BARRIER instead of waiting for it for ever. */",
            self.signature() + "\n{",
            f"    const int rg_status = rg_steps_{fn.name}(rg_in, rg_out, rg_state, rg_outbox, "
            f"rg_stop{_barrier_args(fn)});",
            "    if (rg_status < 0) {",
        ]
        breaks_each = [
            f"rg_barrier_break_{name}(RG_BAR_ARG1(rg_barrier_{name}));" for name, _ in fn.barriers
        ]
        lines += [f"        {b}" for b in breaks_each]
        lines += ["    }", "    return rg_status;", "}"]
        breaks = " ".join(breaks_each)
        lines += [
            f"/* The skeleton's exit: kernel {fn.name} will never arrive again. */",
            f"#define RG_BARRIERS_LEAVE_{fn.name}() do {{ {breaks} }} while (0)",
        ]
        return "\n".join(lines) + "\n"

    def comment(self) -> str:
        fn = self.fn
        where = f"{os.path.basename(fn.file) if fn.file else '<unknown>'}:{fn.first_line}"
        if fn.kind == "handler":
            return (
                f"/* kernel {fn.name} ({where}): returns RG_STATUS_OUTPUT when it wrote *rg_out,\n"
                f" * RG_STATUS_NONE when it produced nothing, a negative status on a fault. */\n"
            )
        return f"/* @rg.device {fn.name} ({where}) */\n"

    def signature(self, inner: bool = False) -> str:
        """The C signature; ``inner`` names a barrier kernel's body ``rg_steps_<kernel>``."""
        fn = self.fn
        if fn.kind == "handler":
            fname = f"rg_steps_{fn.name}" if inner else f"rg_handle_{fn.name}"
            in_t = c_type(fn.input)
            out_t = c_type(fn.output) if fn.output is not None and not fn.outbox else "void"
            st_t = c_type(fn.state) if fn.state is not None else "void"
            ob_t = f"rg_outbox_{fn.name}" if fn.outbox else "void"
            return (
                f"RG_FN int {fname}(RG_PRIVATE const {in_t}* rg_in, "
                f"RG_PRIVATE {out_t}* rg_out,\n    RG_GLOBAL {st_t}* rg_state, "
                f"RG_PRIVATE {ob_t}* rg_outbox, RG_GLOBAL rg_u32* rg_stop{_barrier_params(fn)})"
            )
        params = []
        for p in fn.params:
            if isinstance(p.type, (MsgT, StrT, ListT)):
                params.append(f"RG_PRIVATE const {c_type(p.type)}* {p.name}")
            elif isinstance(p.type, ArrayT):
                dims = "".join(f"[{n}]" for n in array_dims(to_field_type(p.type)))
                params.append(f"RG_PRIVATE const {c_type(p.type)} {p.name}{dims}")
            else:
                params.append(f"{c_type(p.type)} {p.name}")
        rt = fn.return_type
        if isinstance(rt, TupleT):  # several return values: written through pointers
            for i, t in enumerate(rt.elems):
                params.append(f"RG_PRIVATE {c_type(t)}* rg_ret{i}")
            rt = VOID
        params.append("RG_PRIVATE int* rg_fault")
        params.append("RG_GLOBAL rg_u32* rg_stop")
        return f"RG_FN {c_type(rt)} rg_fn_{fn.name}({', '.join(params)})"

    # -------------------------------------------------------------- helpers

    def temp(self, ctype: str, stem: str) -> str:
        self.n_hidden += 1
        name = f"rg_{stem}{self.n_hidden}"
        self.hidden.append((ctype, name))
        return name

    def fault_return(self) -> str:
        if self.fn.kind == "handler":
            return "return *rg_fault;"
        rt = self.fn.return_type
        if rt == VOID or isinstance(rt, TupleT):
            return "return;"
        return f"return ({c_type(rt)})0;"  # ignored: the caller sees *rg_fault

    def check(self, ind: str) -> list[str]:
        self.faults = True
        return [f"{ind}if (*rg_fault) {{", f"{ind}    {self.fault_return()}", f"{ind}}}"]

    def stop_poll(self, ind: str) -> list[str]:
        """The top of a loop body: leave with a STOPPED fault once the host asks to stop now (a
        counter keeps the shared word's load off all but one iteration in RG_STOP_POLL_MASK + 1)."""
        self.faults = True
        self.polls = True
        return [
            f"{ind}if ((++rg_polls & RG_STOP_POLL_MASK) == 0u && rg_stop_requested(rg_stop)) {{",
            f"{ind}    *rg_fault = RG_STATUS_FAULT_STOPPED;",
            f"{ind}    {self.fault_return()}",
            f"{ind}}}",
        ]

    def line_directive(self, line: int, ind: str) -> list[str]:
        if not self.debug or not self.fn.file:
            return []
        return [f'#line {line} "{self.fn.file}"']

    # -------------------------------------------------------------- statements

    def block(self, stmts: tuple, depth: int) -> list[str]:
        out = []
        for s in stmts:
            ind = "    " * depth
            out.extend(self.line_directive(s.line, ind))
            out.extend(getattr(self, "stmt_" + type(s).__name__)(s, depth))
        return out

    def stmt_ExprStmt(self, s: ir.ExprStmt, depth: int) -> list[str]:
        ind = "    " * depth
        e = s.expr
        if isinstance(e, ir.Atomic):
            pre, call = self.atomic(e, ind)
            return pre + [f"{ind}(void){call};"]
        lines = [f"{ind}(void){self.expr(e)};"]
        if self.can_fault(e):
            lines += self.check(ind)
        return lines

    def stmt_BarrierWait(self, s: ir.BarrierWait, depth: int) -> list[str]:
        """Arrive and wait (``templates/common/barrier.c.j2``); a broken barrier or a stop request
        while waiting is the handler's fault."""
        ind = "    " * depth
        arg = f" RG_BAR_ARG(rg_barrier_{s.name})"
        return [f"{ind}*rg_fault = rg_barrier_wait_{s.name}(rg_stop{arg});"] + self.check(ind)

    def atomic(self, e: ir.Atomic, ind: str) -> tuple[list[str], str]:
        """Evaluate an atomic's operands and target index first, so a fault happens before it."""
        pre: list[str] = []
        args = []
        for a in e.args:
            if self.can_fault(a):
                t = self.temp(c_type(a.type), "v")
                pre.append(f"{ind}{t} = {self.expr(a)};")
                args.append(t)
            else:
                args.append(self.expr(a))
        place = self.place(e.target, pre, ind)
        if any(self.can_fault(a) for a in e.args) or _has_checked_index(e.target):
            pre += self.check(ind)
        call = f"rg_atomic_{e.op}_{e.type.t.name}(&{place}, {', '.join(args)})"
        return pre, call

    def place(self, target: ir.Expr, pre: list[str], ind: str) -> str:
        """The C lvalue of ``target``, with checked indices computed into temporaries in ``pre``."""
        if isinstance(target, ir.Index) and target.checked:
            base = self.place(target.base, pre, ind)
            t = self.temp("rg_i64", "ix")
            pre.append(f"{ind}{t} = {self.index_expr(target, base)};")
            return self.index_access(target, base, t)
        if isinstance(target, ir.Index):
            base = self.place(target.base, pre, ind)
            return self.index_access(target, base, self.expr(target.index))
        if isinstance(target, ir.Field):
            return self.field_access(target, self.place(target.base, pre, ind))
        return self.expr(target)

    def stmt_Assign(self, s: ir.Assign, depth: int) -> list[str]:
        ind = "    " * depth
        v = s.value
        if isinstance(v, ir.Atomic):
            pre, call = self.atomic(v, ind)
            return pre + [f"{ind}{self.expr(s.target)} = {call};"]
        if isinstance(v.type, Scalar):
            if not self.can_fault(v) and not _has_checked_index(s.target):
                return [f"{ind}{self.expr(s.target)} = {self.expr(v)};"]
            pre = []
            t = self.temp(c_type(v.type), "v")
            pre.append(f"{ind}{t} = {self.expr(v)};")
            dst = self.place(s.target, pre, ind)
            return pre + self.check(ind) + [f"{ind}{dst} = {t};"]
        pre = []
        dst = self.place(s.target, pre, ind)
        if pre:
            pre += self.check(ind)
        return pre + self.store(dst, v, s.target.type, ind)

    def store(self, dst: str, v: ir.Expr, t, ind: str) -> list[str]:
        """Lines that store value ``v`` (any type) into the C lvalue ``dst`` of type ``t``."""
        if isinstance(v, ir.Construct):
            lines = []
            spec = spec_of(v.type.cls)
            prefix = "rg_out->" if dst == "(*rg_out)" else dst + "."
            for name, fv in v.fields:
                ft = from_field_type(spec.field(name).type)
                lines += self.store(f"{prefix}{name}", fv, ft, ind)
            return lines + (self.check(ind) if any(self.can_fault(x) for _, x in v.fields) else [])
        if isinstance(v, ir.ArrayLit):
            lines = self.store_items(dst, v, ind)
            return lines + (self.check(ind) if self.can_fault(v) else [])
        if isinstance(v, ir.FillArray):
            return self.copy_array(dst, None, self.expr(v.value), t, ind)
        if isinstance(t, ArrayT):
            return self.copy_array(dst, self.expr(v), None, t, ind)
        if isinstance(t, ListT) and isinstance(v, ir.Const):  # `[]`
            return [f"{ind}{dst}.len = 0u;"]
        if isinstance(t, StrT) and isinstance(v, ir.Const):
            lines = [f"{ind}{dst}.len = {len(v.value)}u;"]
            lines += [f"{ind}{dst}.data[{i}] = {b}u;" for i, b in enumerate(v.value)]
            return lines
        if isinstance(t, (StrT, ListT)) and v.type != t:
            return self.copy_bounded(dst, v, t, ind)
        src = self.expr(v, top=True)
        if isinstance(v, ir.Var) and v.name in self.pointer_names:
            src = f"*{src}"
        if dst == "(*rg_out)":
            dst = "*rg_out"
        return [f"{ind}{dst} = {src};"]

    def store_items(self, dst: str, v: ir.ArrayLit, ind: str) -> list[str]:
        """One store per element of a list literal (nested literals element by element)."""
        lines = []
        for i, item in enumerate(v.items):
            if isinstance(item, ir.ArrayLit):
                lines += self.store_items(f"{dst}[{i}]", item, ind)
            else:
                lines.append(f"{ind}{dst}[{i}] = {self.expr(item, top=True)};")
        return lines

    def copy_array(self, dst: str, src, fill, t: ArrayT, ind: str) -> list[str]:
        """Element loops (nested for nested Arrays) copying ``src`` or filling with ``fill``."""
        k = self.temp("rg_i64", "k")
        lines = [f"{ind}for ({k} = 0; {k} < {t.length}; ++{k}) {{"]
        inner_src = f"{src}[{k}]" if src is not None else None
        if isinstance(t.elem, ArrayT):
            lines += self.copy_array(f"{dst}[{k}]", inner_src, fill, t.elem, ind + "    ")
        else:
            lines.append(f"{ind}    {dst}[{k}] = {inner_src if src is not None else fill};")
        return lines + [f"{ind}}}"]

    def copy_bounded(self, dst: str, v: ir.Expr, t, ind: str) -> list[str]:
        """Copy a Str/List into one of another bound; longer than the destination faults."""
        src = self.expr(v)
        items, cap = ("data", t.max_bytes) if isinstance(t, StrT) else ("items", t.max_len)
        k = self.temp("rg_i64", "k")
        self.faults = True
        return [
            f"{ind}if ({src}.len > {cap}u) {{",
            f"{ind}    *rg_fault = RG_STATUS_FAULT_RANGE;",
            f"{ind}    {self.fault_return()}",
            f"{ind}}}",
            f"{ind}{dst}.len = {src}.len;",
            f"{ind}for ({k} = 0; {k} < (rg_i64){src}.len; ++{k}) {{",
            f"{ind}    {dst}.{items}[{k}] = {src}.{items}[{k}];",
            f"{ind}}}",
        ]

    def cond_lines(self, cond: ir.Expr, ind: str) -> tuple[list[str], str]:
        """(lines evaluating a condition that may fault, the C condition)."""
        if not self.can_fault(cond):
            return [], self.expr(cond, top=True)
        t = self.temp("int", "c")
        return [f"{ind}{t} = {self.expr(cond, top=True)} ? 1 : 0;"] + self.check(ind), t

    def stmt_If(self, s: ir.If, depth: int) -> list[str]:
        ind = "    " * depth
        pre, c = self.cond_lines(s.cond, ind)
        lines = pre + [f"{ind}if ({c}) {{"] + self.block(s.then, depth + 1)
        orelse = s.orelse
        while (
            len(orelse) == 1 and isinstance(orelse[0], ir.If) and not self.can_fault(orelse[0].cond)
        ):
            lines.append(f"{ind}}} else if ({self.expr(orelse[0].cond, top=True)}) {{")
            lines += self.block(orelse[0].then, depth + 1)
            orelse = orelse[0].orelse
        if orelse:
            lines.append(f"{ind}}} else {{")
            lines += self.block(orelse, depth + 1)
        lines.append(f"{ind}}}")
        return lines

    def stmt_While(self, s: ir.While, depth: int) -> list[str]:
        ind = "    " * depth
        poll = self.stop_poll(ind + "    ")
        if not self.can_fault(s.cond):
            return (
                [f"{ind}while ({self.expr(s.cond, top=True)}) {{"]
                + poll
                + self.block(s.body, depth + 1)
                + [f"{ind}}}"]
            )
        pre, c = self.cond_lines(s.cond, ind + "    ")
        return (
            [f"{ind}for (;;) {{"]
            + poll
            + pre
            + [f"{ind}    if (!{c}) {{", f"{ind}        break;", f"{ind}    }}"]
            + self.block(s.body, depth + 1)
            + [f"{ind}}}"]
        )

    def stmt_ForRange(self, s: ir.ForRange, depth: int) -> list[str]:
        ind = "    " * depth
        k = self.temp("rg_i64", "k")
        stop = self.temp("rg_i64", "stop")
        lines = [f"{ind}{k} = {self.expr(s.start)};", f"{ind}{stop} = {self.expr(s.stop)};"]
        if isinstance(s.step, ir.Const):
            step = self.expr(s.step)
            cmp = f"{k} < {stop}" if s.step.value > 0 else f"{k} > {stop}"
        else:
            step = self.temp("rg_i64", "step")
            lines.append(f"{ind}{step} = {self.expr(s.step)};")
            self.faults = True
            lines += [
                f"{ind}if ({step} == 0) {{",
                f"{ind}    *rg_fault = RG_STATUS_FAULT_RANGE;",
                f"{ind}    {self.fault_return()}",
                f"{ind}}}",
            ]
            cmp = f"({step} > 0 ? {k} < {stop} : {k} > {stop})"
        if any(self.can_fault(x) for x in (s.start, s.stop, s.step)):
            lines += self.check(ind)
        lines.append(f"{ind}for (; {cmp}; {k} += {step}) {{")
        if not _short_range(s):
            lines += self.stop_poll(ind + "    ")
        lines.append(f"{ind}    {s.var.name} = {k};")
        lines += self.block(s.body, depth + 1)
        lines.append(f"{ind}}}")
        return lines

    def stmt_ForEach(self, s: ir.ForEach, depth: int) -> list[str]:
        ind = "    " * depth
        k = s.index.name
        seq = self.expr(s.seq)
        if isinstance(s.seq.type, ArrayT):
            n, elem = str(s.seq.type.length), f"{seq}[{k}]"
        else:
            n, elem = f"(rg_i64){seq}.len", f"{seq}.items[{k}]"
        lines = [f"{ind}for ({k} = 0; {k} < {n}; ++{k}) {{"]
        lines += self.store(s.var.name, ir.Var(elem, s.var.type), s.var.type, ind + "    ")
        lines += self.block(s.body, depth + 1)
        lines.append(f"{ind}}}")
        return lines

    def stmt_Break(self, s, depth: int) -> list[str]:
        return ["    " * depth + "break;"]

    def stmt_Continue(self, s, depth: int) -> list[str]:
        return ["    " * depth + "continue;"]

    def stmt_Return(self, s: ir.Return, depth: int) -> list[str]:
        ind = "    " * depth
        if self.fn.kind == "device":
            if s.value is None:
                return [f"{ind}return;"]
            if isinstance(s.value, ir.TupleValue):
                lines = [
                    f"{ind}*rg_ret{i} = {self.expr(v, top=True)};"
                    for i, v in enumerate(s.value.items)
                ]
                if self.can_fault(s.value):
                    lines += self.check(ind)
                return lines + [f"{ind}return;"]
            return [f"{ind}return {self.expr(s.value, top=True)};"]
        if s.value is None:
            return [f"{ind}return RG_STATUS_NONE;"]
        lines = self.store("(*rg_out)", s.value, s.value.type, ind)
        return lines + [f"{ind}return RG_STATUS_OUTPUT;"]

    def stmt_Append(self, s: ir.Append, depth: int) -> list[str]:
        """Append to a List field: evaluate the value, then fault if the List is full."""
        ind = "    " * depth
        pre: list[str] = []
        dst = self.place(s.target, pre, ind)
        hoisted = bool(pre)
        v = self.temp(c_type(s.value.type), "v")
        pre += self.store(v, s.value, s.value.type, ind)
        if hoisted or self.can_fault(s.value):
            pre += self.check(ind)
        self.faults = True
        return pre + [
            f"{ind}if ({dst}.len >= {s.target.type.max_len}u) {{",
            f"{ind}    *rg_fault = RG_STATUS_FAULT_RANGE;",
            f"{ind}    {self.fault_return()}",
            f"{ind}}}",
            f"{ind}{dst}.items[{dst}.len] = {v};",
            f"{ind}{dst}.len += 1u;",
        ]

    def stmt_Unpack(self, s: ir.Unpack, depth: int) -> list[str]:
        """A call to a device function returning a tuple, into hidden locals."""
        ind = "    " * depth
        args = self.call_args(s.call) + [f"&{t.name}" for t in s.targets] + ["rg_fault", "rg_stop"]
        lines = [f"{ind}rg_fn_{s.call.fn}({', '.join(args)});"]
        return lines + (self.check(ind) if self.can_fault(s.call) else [])

    def stmt_Emit(self, s: ir.Emit, depth: int) -> list[str]:
        ind = "    " * depth
        m = self.temp(c_type(s.value.type), "m")
        lines = self.store(m, s.value, s.value.type, ind)
        lines += [
            f"{ind}if (!rg_emit_{s.kernel}(rg_outbox, &{m})) {{",
            f"{ind}    return RG_STATUS_FAULT_OUTBOX;",
            f"{ind}}}",
        ]
        return lines


def _expressions(body: tuple):
    """Every top-level expression of the statements in ``body``, nested blocks included."""
    for s in body:
        for name in ("value", "cond", "expr", "target", "start", "stop", "step", "seq", "call"):
            e = getattr(s, name, None)
            if e is not None:
                yield e
        for name in ("then", "orelse", "body"):
            yield from _expressions(getattr(s, name, ()))


def _has_checked_index(e: ir.Expr) -> bool:
    while isinstance(e, (ir.Index, ir.Field)):
        if isinstance(e, ir.Index) and e.checked:
            return True
        e = e.base
    return False


#: A ``range`` of constants with at most this many iterations needs no stop poll: it ends soon anyway.
_SHORT_RANGE = 4096


def _short_range(s: ir.ForRange) -> bool:
    """True for ``range`` over constants that runs at most ``_SHORT_RANGE`` iterations."""
    if not all(isinstance(x, ir.Const) for x in (s.start, s.stop, s.step)) or not s.step.value:
        return False
    return len(range(s.start.value, s.stop.value, s.step.value)) <= _SHORT_RANGE


def _ends_in_return(body: tuple) -> bool:
    from ..dsl.checks import always_returns

    return always_returns(body)
