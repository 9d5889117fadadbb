"""A waiting handler split at its barrier waits into phases: the Metal rendering of ``rg.barrier_wait``,
and OpenCL relaunch mode's.

Metal promises no forward progress between the threads of a dispatch, so a wait cannot spin there.
The Metal target keeps a barrier at a *dispatch boundary* instead (docs/barriers.md, "Metal: a
dispatch per phase"): the handler of a kernel that waits is cut at each top-level
``rg.barrier_wait`` into phases ``rg_phase<j>_<kernel>``, ``j`` = 0 .. number of waits, which the
skeleton dispatches one after the other over the messages of a step, so every message's phase ``j``
has finished before any message's phase ``j + 1`` starts.

Each phase is printed by the shared printer (``body._FunctionPrinter``) from the same IR as the
unsplit handler, so its statements are the text every target compiles; what is Metal's own is the cut:

- a phase that reaches its wait saves the locals live across it (``live_across``) into the message's
  frame, ``rg_frame_<kernel>`` (a struct of those locals, in the device scratch buffer the skeleton
  passes as ``rg_frame``), and returns ``RG_STATUS_AT_WAIT``; the next phase restores them first;
- a phase that returns or faults returns what the unsplit handler would (``RG_STATUS_OUTPUT``,
  ``RG_STATUS_NONE`` or the fault): the skeleton then runs none of that message's later phases.

OpenCL's relaunch mode runs a step the same way, a launch per phase on one in-order queue
(docs/barriers.md, "OpenCL relaunch: a launch per phase"): ``emit_program_with_phases`` prints the
phases after the unsplit handler, which the persistent entry point keeps calling. CUDA and C never
call this module: their handler text is ``body.emit_program``'s, unchanged.
"""

from __future__ import annotations

import os
from typing import Iterator

import attrs

from ..dsl import ir
from ..dsl.typesys import ArrayT, c_type, to_field_type
from ..layout import array_dims, layout_of, type_align, type_size
from .body import _FunctionPrinter, _ends_in_return, emit_program

__all__ = [
    "AT_WAIT",
    "emit_program_with_phases",
    "emit_split_program",
    "frame_layout",
    "live_across",
    "split_phases",
    "step_layout",
    "waits_of",
]

#: What a phase returns when its message reached the wait that ends it (the Status values are
#: 1 = output, 0 = none, negative = fault, so 2 is free). The Metal skeleton defines the macro.
AT_WAIT = 2


def waits_of(fn: ir.Function) -> tuple[ir.BarrierWait, ...]:
    """The top-level ``rg.barrier_wait`` statements of handler ``fn``, in order (the language puts
    every wait at the top level: ``ringgen.dsl.lower``)."""
    return tuple(s for s in fn.body if isinstance(s, ir.BarrierWait))


def split_phases(fn: ir.Function) -> list[tuple]:
    """``fn.body`` cut at its top-level waits: one statement tuple per phase (waits + 1 of them)."""
    phases: list[list] = [[]]
    for s in fn.body:
        if isinstance(s, ir.BarrierWait):
            phases.append([])
        else:
            phases[-1].append(s)
    return [tuple(p) for p in phases]


def _names(node) -> Iterator[str]:
    """The name of every ``ir.Var`` in ``node`` (a statement, an expression or a tuple of them)."""
    if isinstance(node, ir.Var):
        yield node.name
    elif isinstance(node, (tuple, list)):
        for x in node:
            yield from _names(x)
    elif attrs.has(type(node)):
        for f in attrs.fields(type(node)):
            yield from _names(getattr(node, f.name))


def live_across(fn: ir.Function) -> list[list[str]]:
    """For each wait of ``fn``, the locals its frame keeps: those named both before the wait and
    after it (a local named only after a wait is assigned there before it is read, as Python's
    definite assignment, which the compiler checks, requires). Names in ``fn.locals`` order."""
    local_names = [name for name, _ in fn.locals]
    used = [set(_names(p)) for p in split_phases(fn)]
    out = []
    for k in range(len(used) - 1):
        before = set().union(*used[: k + 1])
        after = set().union(*used[k + 1 :])
        out.append([n for n in local_names if n in before and n in after])
    return out


def _round_up(n: int, a: int) -> int:
    return (n + a - 1) // a * a


@attrs.frozen
class FrameLayout:
    """``rg_frame_<kernel>``: the saved locals as struct members, with C's offsets and size."""

    members: tuple  # (name, ir type, offset)
    size: int
    align: int


def frame_layout(fn: ir.Function) -> FrameLayout:
    """The frame of handler ``fn``: every local some wait keeps, in ``fn.locals`` order, laid out as
    a C struct (an empty frame is one byte, ``rg_unused``, as C has no empty struct)."""
    kept = {n for names in live_across(fn) for n in names}
    members, offset, align = [], 0, 1
    for name, t in fn.locals:
        if name not in kept:
            continue
        ft = to_field_type(t)
        a = type_align(ft)
        offset = _round_up(offset, a)
        members.append((name, t, offset))
        offset += type_size(ft)
        align = max(align, a)
    if not members:
        return FrameLayout((), 1, 1)
    return FrameLayout(tuple(members), _round_up(offset, align), align)


def step_layout(spec, handler: ir.Function, outputs_per_message: int) -> dict:
    """The per-step scratch buffer of kernel ``spec`` whose ``handler`` waits on a barrier, as both
    skeletons that run the phases declare it (Metal's ``rg_metal_steps_<kernel>``, OpenCL
    relaunch's ``rg_relaunch_steps_<kernel>``) and assert it: a header of two 32-bit words
    (``broken`` and a word of the skeleton's), then one step record per party, laid out as C does:
    the message's ``int`` status, its Outbox when it has one (a count, then ``outputs_per_message``
    items), its frame of the locals live across a wait (``frame_layout``).

    Returns the template keys ``waits`` (top-level waits: the kernel has ``waits + 1`` phases),
    ``parties``, ``barrier`` (its name), ``frame_bytes``, ``step_bytes`` (one record) and
    ``scratch_bytes`` (the whole buffer).
    """
    frame = frame_layout(handler)
    (name, parties), *_ = handler.barriers
    end, align = 4, 4  # int status
    if spec.uses_outbox:
        out = layout_of(spec.outbox)
        ob_align = max(4, out.align)
        ob_size = _round_up(_round_up(4, out.align) + outputs_per_message * out.size, ob_align)
        end = _round_up(end, ob_align) + ob_size
        align = max(align, ob_align)
    end = _round_up(end, frame.align) + frame.size
    align = max(align, frame.align)
    step = _round_up(end, align)
    return {
        "waits": len(waits_of(handler)),
        "parties": parties,
        "barrier": name,
        "frame_bytes": frame.size,
        "step_bytes": step,
        "scratch_bytes": _round_up(_round_up(8, align) + parties * step, align),
    }


class _PhasePrinter(_FunctionPrinter):
    """Prints a waiting handler as its frame struct and one function per phase."""

    #: The docs/barriers.md section on the skeleton that runs the phases.
    skeleton_doc = "Metal: a dispatch per phase"
    #: How each phase runs over the messages of a step.
    runs_as = "dispatched"
    #: C (OpenCL) names a struct type only through a typedef; C++ (Metal) needs none, and allows
    #: a typedef of the tag's own name at namespace scope only (the handlers are members of
    #: rg_context there).
    typedef_frame = False

    def emit(self) -> tuple[str, bool]:
        fn = self.fn
        phases = split_phases(fn)
        live = live_across(fn)
        frame = frame_layout(fn)
        where = f"{os.path.basename(fn.file) if fn.file else '<unknown>'}:{fn.first_line}"
        waits = waits_of(fn)
        names = ", ".join(f"{w.name} (line {w.line})" for w in waits)
        head = [
            f"/* kernel {fn.name} ({where}), split at its barrier waits ({names}) into "
            f"{len(phases)} phases,",
            f" * {self.runs_as} one after the other over the messages of a step (docs/barriers.md,",
            f' * "{self.skeleton_doc}"). rg_frame_{fn.name} keeps, per message, the locals',
            " * live across a wait. Each phase returns RG_STATUS_AT_WAIT when its message reached"
            " the wait,",
            " * else what the handler returns (RG_STATUS_OUTPUT, RG_STATUS_NONE or a fault). */",
            f"struct rg_frame_{fn.name} {{",
        ]
        for name, t, offset in frame.members:
            dims = "".join(f"[{n}]" for n in array_dims(to_field_type(t)))
            head.append(f"    {c_type(t)} {name}{dims}; /* offset {offset} */")
        if not frame.members:
            head.append("    rg_u8 rg_unused; /* no local lives across a wait */")
        head.append("};")
        if self.typedef_frame:
            head.append(f"typedef struct rg_frame_{fn.name} rg_frame_{fn.name};")
        chunks = ["\n".join(head) + "\n"]
        faults = False
        for j, stmts in enumerate(phases):
            restore = live[j - 1] if j > 0 else []
            save = live[j] if j < len(live) else None
            chunks.append(self.phase(j, stmts, restore, save))
            faults = faults or self.faults
        return "".join(chunks), faults

    def phase(self, j: int, stmts: tuple, restore: list, save) -> str:
        """``rg_phase<j>_<kernel>``: restore, the phase's statements, then (``save`` is None only
        for the last phase) save and report the wait."""
        fn = self.fn
        self.hidden, self.polls = [], False
        types = dict(fn.locals)
        body = []
        for name in restore:
            body += self.copy(name, f"rg_frame->{name}", types[name], "    ")
        body += self.block(stmts, 1)
        if save is None:
            if not _ends_in_return(stmts):
                body.append("    return RG_STATUS_NONE;")
        else:
            for name in save:
                body += self.copy(f"rg_frame->{name}", name, types[name], "    ")
            body.append("    return RG_STATUS_AT_WAIT;")
        named = set(_names(stmts)) | set(restore) | set(save or ())
        decls = []
        for name, t in fn.locals:
            if name in named:
                dims = "".join(f"[{n}]" for n in array_dims(to_field_type(t)))
                decls.append(f"    {c_type(t)} {name}{dims};")
        decls += [f"    {ct} {name};" for ct, name in self.hidden]
        if self.polls:
            decls.append(
                "    rg_u32 rg_polls = 0u; /* loop iterations, for the stop-request poll */"
            )
        lines = [f"/* kernel {fn.name}, phase {j} */", self.phase_signature(j), "{"]
        lines.append("    int rg_fault_code = 0; /* 0, or the first fault's negative status */")
        lines.append("    RG_PRIVATE int* rg_fault = &rg_fault_code;")
        params = ("rg_fault", "rg_in", "rg_out", "rg_state", "rg_outbox", "rg_stop", "rg_frame")
        lines.append("    " + " ".join(f"(void){p};" for p in params) + " /* may be unused */")
        return "\n".join(lines + decls + body + ["}"]) + "\n"

    def phase_signature(self, j: int) -> str:
        """The handler's signature (docs/architecture.md, "The handler ABI") under the phase's
        name, without barrier parameters (nothing spins) and with the message's frame."""
        fn = self.fn
        in_t = c_type(fn.input)
        out_t = c_type(fn.output) if fn.output is not None and not fn.outbox else "void"
        st_t = c_type(fn.state) if fn.state is not None else "void"
        ob_t = f"rg_outbox_{fn.name}" if fn.outbox else "void"
        return (
            f"RG_FN int rg_phase{j}_{fn.name}(RG_PRIVATE const {in_t}* rg_in, "
            f"RG_PRIVATE {out_t}* rg_out,\n    RG_GLOBAL {st_t}* rg_state, "
            f"RG_PRIVATE {ob_t}* rg_outbox, RG_GLOBAL rg_u32* rg_stop,\n"
            f"    RG_GLOBAL rg_frame_{fn.name}* rg_frame)"
        )

    def copy(self, dst: str, src: str, t, ind: str) -> list[str]:
        """Lines copying local or frame member ``src`` of type ``t`` into ``dst`` (arrays element
        by element: C cannot assign them)."""
        if isinstance(t, ArrayT):
            return self.copy_array(dst, src, None, t, ind)
        return [f"{ind}{dst} = {src};"]


class _LaunchPhasePrinter(_PhasePrinter):
    """The OpenCL rendering of the phases: each is a launch of the relaunch entry point."""

    skeleton_doc = "OpenCL relaunch: a launch per phase"
    runs_as = "launched"
    typedef_frame = True


def _split_printer(fn, helpers, may_fault, debug) -> _FunctionPrinter:
    return _PhasePrinter(fn, helpers, may_fault, debug)


def _launch_printer(fn, helpers, may_fault, debug) -> _FunctionPrinter:
    return _LaunchPhasePrinter(fn, helpers, may_fault, debug)


def emit_split_program(program: ir.Program, *, debug: bool = False) -> str:
    """``body.emit_program`` with every waiting handler split into phases (see the module doc):
    the Metal target's handler text. Handlers that do not wait are printed as on every target, and
    no barrier words are rendered (nothing spins)."""
    return emit_program(program, debug=debug, split_printer=_split_printer)


def emit_program_with_phases(program: ir.Program, *, debug: bool = False) -> str:
    """``body.emit_program`` with every waiting handler printed twice: unsplit, as on every target
    (OpenCL's persistent entry point spins at its waits), then as its frame and phases (OpenCL's
    relaunch entry point runs a step as a launch per phase: docs/barriers.md, "OpenCL relaunch: a
    launch per phase"). The barrier words are rendered for the unsplit handler."""
    return emit_program(program, debug=debug, split_printer=_launch_printer, keep_unsplit=True)
