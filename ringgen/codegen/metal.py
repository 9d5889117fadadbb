"""The ``metal`` target: ``<name>.metal``, the shared handler body in an event-driven Metal skeleton.

Metal promises no forward progress to a kernel that spins, so there is no resident loop: each ring
kernel becomes three compute functions (begin, process, commit) that the host dispatches whenever
messages are queued, with the queues, control block and state in device buffers (docs/metal.md).
The header is included textually and the queue protocol is ``templates/common/ring.h.j2`` with the
Metal prelude's accessors; bridged messages are decoded and encoded with the shared device codec
(``bridged_c``). A kernel that waits on a barrier is printed split at its waits
(``body_phases``): a step of ``parties`` messages per batch, one dispatch per phase between begin and
commit, the locals live across a wait in buffer 7 (docs/barriers.md, "Metal: a dispatch per phase").
Kernels Metal cannot express (f64 arithmetic, 64-bit atomics it cannot provide, barriers of different
sizes, a step larger than the queue) are left out with a comment in the file and a logged reason;
``skipped_kernels`` tells the manifest which and why.
"""

from __future__ import annotations

import logging
import os
import re
from typing import TYPE_CHECKING, Any, Optional

import numpy as np

from .. import protocol
from ..dsl import compile_program, ir
from ..errors import HandlerError
from ..protocol import OUTBOX_LIMIT  # re-exported for the Metal host driver and tests
from .bridged_c import emit_device_codec
from .dialect_metal import METAL_DIALECT, check_function
from .env import render
from .emitter import Emitter
from .body import debug_requested
from .body_phases import AT_WAIT, emit_split_program, step_layout
from .header import render_header
from .kernel_context import kernel_context as shared_kernel_context
from .protocol_c import render_ring_h

if TYPE_CHECKING:
    from .options import EmitOptions
    from ..build import BuildUnit

__all__ = [
    "DISPATCH_DTYPE",
    "MetalEmitter",
    "OUTBOX_LIMIT",
    "abi",
    "emit",
    "kernel_context",
    "max_emits",
    "metal_name",
    "render_metal",
    "scratch_layout",
    "skipped_kernels",
    "waiting_kernels",
]

log = logging.getLogger(__name__)

#: The host's view of ``rg_metal_dispatch`` (buffer 6), one per ring kernel: the host writes ``now``,
#: ``ticks`` and ``grid`` before each batch; the begin kernel writes the rest.
_DISPATCH_FIELDS = (  # name, numpy format, offset: the C struct in templates/metal/kernel.metal.j2
    ("now", "<u8", 0),
    ("ticks", "<u8", 8),
    ("grid", "<u4", 16),
    ("count", "<u4", 20),
    ("in_head", "<u8", 24),
    ("out_tail", "<u8", 32),
    ("stalled", "<u4", 40),
    ("out_reserved", "<u4", 44),
    ("processed", "<u4", 48),
    ("rejected", ("<u4", (protocol.N_REASONS,)), 52),
)
DISPATCH_DTYPE = np.dtype(
    {
        "names": [f[0] for f in _DISPATCH_FIELDS],
        "formats": [f[1] for f in _DISPATCH_FIELDS],
        "offsets": [f[2] for f in _DISPATCH_FIELDS],
        "itemsize": 120,
    }
)


def metal_name(unit: "BuildUnit") -> str:
    """The emitted file's name: ``<name>.metal``."""
    return f"{unit.name}.metal"


def max_emits(stmts) -> Optional[int]:
    """The most messages a handler body can emit, or None when an emit sits in a loop."""
    total = 0
    for s in stmts:
        if isinstance(s, ir.Emit):
            total += 1
        elif isinstance(s, ir.If):
            a, b = max_emits(s.then), max_emits(s.orelse)
            if a is None or b is None:
                return None
            total += max(a, b)
        elif isinstance(s, (ir.ForRange, ir.ForEach, ir.While)):
            if max_emits(s.body) != 0:
                return None
    return total


def kernel_context(k, handler=None) -> dict:
    """What the Metal templates need to know about one ring kernel (``KernelSpec`` ``k``).

    The shared context (``ringgen.codegen.kernel_context``), plus what only the event-driven skeleton
    reads: ``outputs_per_message`` (the output slots ``K_begin`` keeps free per message taken: the
    handler's static emit bound when ``handler``, its compiled IR, has one), the queue ``capacity``
    and its index ``mask``, and the phrases of the file's comments: ``out_doc`` (what the handler
    outputs) and ``outbox_doc`` (an Outbox's bound; None without one). ``waits`` is the number of
    top-level barrier waits (0 without ``handler``); a kernel that waits also gets the keys of
    ``scratch_layout``.
    """
    ctx = shared_kernel_context(k)
    out_type = ctx["out_type"]
    if k.uses_outbox:
        bound = max_emits(handler.body) if handler is not None else None
        # a handler whose emits are not in a loop needs no more slots than its static bound
        limit = k.outbox_limit
        per_message = min(max(1, bound), limit) if bound is not None else limit
        out_doc = f"Outbox[{out_type}]"
        outbox_doc = (
            f"at most {per_message} per message, the handler's static bound"
            if bound is not None
            else f"at most {per_message} per message: the handler emits in a loop"
        )
    elif ctx["has_output"]:
        per_message, outbox_doc = 1, None
        out_doc = f"Optional[{out_type}]" if k.may_skip else out_type
    else:
        per_message, out_doc, outbox_doc = 0, "no output", None
    ctx.update(
        outputs_per_message=per_message,
        out_doc=out_doc,
        outbox_doc=outbox_doc,
        capacity=k.capacity,
        mask=k.capacity - 1,
        waits=0,
    )
    if handler is not None and handler.barriers:
        ctx.update(scratch_layout(k, handler, per_message))
    return ctx


def scratch_layout(k, handler, outputs_per_message: int) -> dict:
    """The per-step scratch buffer (buffer 7) of a kernel that waits on a barrier: its header's
    second word is ``short_step``; the layout is ``body_phases.step_layout``'s, shared with OpenCL
    relaunch."""
    return step_layout(k, handler, outputs_per_message)


def _compile_program(unit: "BuildUnit") -> ir.Program:
    return compile_program(unit.kernels, unit.device_functions, unit.source_file)


def _reachable(handler, by_name: dict) -> list:
    out, todo, seen = [handler], list(handler.calls), set()
    while todo:
        name = todo.pop()
        if name in seen or name not in by_name:
            continue
        seen.add(name)
        out.append(by_name[name])
        todo.extend(by_name[name].calls)
    return out


def skipped_kernels(unit: "BuildUnit", program=None) -> dict[str, str]:
    """Kernels of ``unit`` the Metal target leaves out, each with the reason (for the manifest).

    ``program`` is the compiled IR (``ringgen.dsl``) when the caller has it already.
    """
    program = program if program is not None else _compile_program(unit)
    by_name = {f.name: f for f in program.device_functions}
    handlers = {h.name: h for h in program.handlers}
    skipped = {}
    for k in unit.kernels:
        why = _barrier_refusal(k, handlers[k.name])
        if why is not None:
            skipped[k.name] = why
            continue
        try:
            for func in _reachable(handlers[k.name], by_name):
                check_function(func, k.name)
        except HandlerError as exc:
            # file name and line, not the full path: the reason goes into deterministic output
            where = f"{os.path.basename(exc.file)}:{exc.line}: " if exc.file and exc.line else ""
            skipped[k.name] = where + exc.message
    return skipped


def _barrier_refusal(k, handler) -> Optional[str]:
    """Why the Metal skeleton cannot keep ``handler``'s barriers, or None. On Metal a dispatch is
    one step of every barrier the kernel waits on (docs/barriers.md, "Metal: a dispatch per
    phase"), so the barriers must agree on how many messages a step is, and a step must fit the
    input queue."""
    counts = sorted({p for _, p in handler.barriers})
    if len(counts) > 1:
        names = ", ".join(f"'{n}' ({p} parties)" for n, p in handler.barriers)
        return (
            f"it waits on barriers of different sizes ({names}): on Metal one dispatch is one "
            "step of every barrier the kernel waits on, so they must have the same parties "
            "(docs/barriers.md)"
        )
    if counts and counts[0] > k.capacity:
        (name, parties), *_ = handler.barriers
        return (
            f"barrier '{name}' has {parties} parties, more than the input queue's capacity "
            f"({k.capacity}): on Metal a step is {parties} messages queued together, which this "
            "queue can never hold (docs/barriers.md)"
        )
    return None


def waiting_kernels(unit: "BuildUnit", program=None) -> set[str]:
    """The kernels of ``unit`` that wait on a barrier: on Metal each runs a step in phases
    (``begin``, a dispatch per phase, ``commit``), which only its own driver encodes."""
    program = program if program is not None else _compile_program(unit)
    return {h.name for h in program.handlers if h.barriers}


def render_metal(
    unit: "BuildUnit",
    *,
    header_text: str,
    body_text: str,
    kernels,
    skipped: dict,
    handlers: Optional[dict] = None,
) -> str:
    """Render ``<name>.metal`` from its parts (pure: the emitter and the tests both call it).

    Args:
        unit: the build unit (name, module, fingerprint).
        header_text: the ``<name>_types.h`` text, included textually.
        body_text: ``emit_body`` of the kernels to emit, as for every target.
        kernels: the ``KernelSpec`` of each kernel to emit, in declaration order.
        skipped: kernel name -> why Metal leaves it out (written into the file's opening comment).
        handlers: kernel name -> compiled handler (``ir.Function``), for the Outbox bounds.
    """
    handlers = handlers or {}
    return render(
        "metal/kernel.metal.j2",
        name=unit.name,
        module=unit.module,
        version=unit.ringgen_version,
        fingerprint=unit.fingerprint,
        skipped=[{"name": n, "reason": r} for n, r in skipped.items()],
        header_text=header_text.rstrip("\n"),
        prelude_text=METAL_DIALECT.render_prelude().rstrip("\n"),
        thread_id=METAL_DIALECT.thread_id_expr(),
        now=METAL_DIALECT.now_expr(),
        ring_text=render_ring_h().rstrip("\n"),
        codec_text=emit_device_codec(unit).rstrip("\n") if unit.bridged_messages else "",
        body_text=body_text.rstrip("\n"),
        dispatch_size=DISPATCH_DTYPE.itemsize,
        dispatch_rejected_offset=DISPATCH_DTYPE.fields["rejected"][1],
        dispatch_grid_offset=DISPATCH_DTYPE.fields["grid"][1],
        kernels=[kernel_context(k, handlers.get(k.name)) for k in kernels],
        at_wait=AT_WAIT,
    )


def emit(
    unit: "BuildUnit", *, options: Optional["EmitOptions"] = None, program: Any = None
) -> dict[str, str]:
    """Emitter for the ``metal`` target: ``{"<name>.metal": text}``.

    Raises:
        HandlerError: a handler is outside the language (for every target, not only Metal).
    """
    program = program if program is not None else _compile_program(unit)
    skipped = skipped_kernels(unit, program)
    for name, reason in skipped.items():
        log.info("metal: kernel %s not emitted: %s", name, reason)
    kept = tuple(k for k in unit.kernels if k.name not in skipped)
    # Only the kept handlers and the device functions they reach: an f64 helper that only a skipped
    # kernel calls would not compile (Metal has no f64 math).
    by_name = {f.name: f for f in program.device_functions}
    handlers = [h for h in program.handlers if h.name not in skipped]
    reached = {f.name for h in handlers for f in _reachable(h, by_name)}
    subset = ir.Program(
        tuple(f for f in program.device_functions if f.name in reached),
        tuple(handlers),
        program.source_file,
    )
    debug = debug_requested(options.debug_line_directives if options is not None else None)
    body = emit_split_program(subset, debug=debug) if kept else ""
    return {
        metal_name(unit): render_metal(
            unit,
            header_text=render_header(unit),
            body_text=body,
            kernels=kept,
            skipped=skipped,
            handlers={h.name: h for h in handlers},
        )
    }


class MetalEmitter(Emitter):
    """The Metal target's ``Emitter`` (the ``metal`` row of ``ringgen.targets``)."""

    def emit(self, unit: "BuildUnit", program: Any, options: "EmitOptions") -> dict[str, str]:
        return emit(unit, options=options, program=program)

    def entry_points(self, kernel: str) -> dict[str, str]:
        return {step: f"{kernel}_{step}" for step in ("begin", "process", "commit")}

    def skipped(self, unit: "BuildUnit", program: Any) -> dict[str, str]:
        return skipped_kernels(unit, program)

    def abi(self, kernel: Any, source: str) -> Optional[dict]:
        return abi(kernel.name, source)


def abi(kernel: str, source: str) -> Optional[dict]:
    """The manifest's ``abi.metal`` of a kernel that waits on a barrier, read back from the
    emitted source's ``RG_<kernel>_PARTIES``, ``RG_<kernel>_SCRATCH_BYTES`` and its phase entry
    points; None for a kernel that does not wait (its loader needs nothing beyond the three
    dispatches). A Metal host encodes, per step: ``<kernel>_begin``, each of ``phases`` in order,
    ``<kernel>_commit``, with buffer 7 of ``scratch_bytes`` bytes."""
    facts = {}
    for key in ("PARTIES", "SCRATCH_BYTES"):
        m = re.search(rf"^#define RG_{re.escape(kernel)}_{key} (\d+)u?$", source, re.M)
        if m is None:
            return None
        facts[key] = int(m.group(1))
    phases = [f"{kernel}_process"] + sorted(
        set(re.findall(rf"^kernel void ({re.escape(kernel)}_phase\d+)\(", source, re.M)),
        key=lambda n: int(n.rsplit("phase", 1)[1]),
    )
    return {
        "phases": phases,
        "parties": facts["PARTIES"],
        "scratch_buffer": 7,
        "scratch_bytes": facts["SCRATCH_BYTES"],
    }
