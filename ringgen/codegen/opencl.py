"""The OpenCL emitter: ``<name>.cl``, every ring kernel of a build as OpenCL C 3.0.

The source is, in order: the OpenCL prelude (``dialect_opencl``), the ``<name>_types.h`` header
included textually, the shared queue protocol (``templates/common/ring.h.j2``), each kernel's outbox,
the handler bodies (``ringgen.codegen.body``, identical for every target), then per kernel a persistent
and a relaunch skeleton around the same handler (``templates/opencl/kernel.cl.j2``). The loader
(``ringgen.runtime.opencl``) picks the entry point per device.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Optional

from .._version import __version__
from .. import protocol
from ..kernel import KernelSpec
from ..protocol import OUTBOX_LIMIT
from .dialect_opencl import NOW_UNAVAILABLE, OPENCL_DIALECT, OpenclDialect
from .env import render
from .emitter import Emitter
from .kernel_context import kernel_context as shared_kernel_context
from .protocol_c import render_ring_h

if TYPE_CHECKING:
    from .options import EmitOptions
    from ..build import BuildUnit

__all__ = [
    "OpenclEmitter",
    "OUTBOX_LIMIT",
    "emit",
    "entry_points",
    "kernel_context",
    "render_ring_h",
    "render_source",
    "source_name",
    "waited_barriers",
]

#: Output slots an Outbox handler may fill per message; one more emit is a FAULT_OUTBOX.


def source_name(unit: "BuildUnit") -> str:
    """The emitted file's name: ``<name>.cl``."""
    return f"{unit.name}.cl"


def entry_points(kernel: str) -> dict[str, str]:
    """The OpenCL kernel function names for a ring kernel, by mode ("persistent", "relaunch")."""
    return {"persistent": f"rg_{kernel}_persistent", "relaunch": f"rg_{kernel}_relaunch"}


#: Arguments each entry point of the skeleton takes, by mode (templates/opencl/); the manifest
#: records them and the loaders check the compiled kernel against them.
ENTRY_ARGS = {"persistent": 12, "relaunch": 7}


def abi(kernel: str, source: str) -> dict:
    """The manifest's ``abi.opencl`` of ``kernel``: entry points with their argument counts,
    whether ``source`` (the ``.cl`` text) calls ``rg.now()``, which OpenCL C cannot provide, and the
    barriers the kernel waits on (when any): the persistent entry point takes one storage argument
    per barrier, in this order, after the skeleton's own (docs/barriers.md)."""
    barriers = waited_barriers(kernel, source)
    out = {
        "entry_points": {
            mode: {
                "name": name,
                "args": ENTRY_ARGS[mode] + (len(barriers) if mode == "persistent" else 0),
            }
            for mode, name in entry_points(kernel).items()
        },
        "uses_now": calls_now(source),
    }
    if barriers:
        out["barriers"] = list(barriers)
    return out


def waited_barriers(kernel: str, source: str) -> tuple[str, ...]:
    """The barriers ``kernel`` waits on, in argument order, read from the ``.cl`` text: the names
    its ``RG_BARRIERS_LEAVE_<kernel>`` macro breaks (``ringgen.codegen.body``), () when none."""
    found = re.search(
        rf"^#define RG_BARRIERS_LEAVE_{re.escape(kernel)}\(\) do \{{(.*)\}} while \(0\)$",
        source,
        re.MULTILINE,
    )
    if found is None:
        return ()
    return tuple(re.findall(r"\brg_barrier_break_(\w+)\(", found.group(1)))


def calls_now(source: str) -> bool:
    """Whether an OpenCL source calls ``rg.now()``.

    The dialect maps the clock builtin to ``NOW_UNAVAILABLE()``, which no prelude defines: through the
    prelude's ``#define <builtin>() NOW_UNAVAILABLE()``, so the source uses that macro's name (or the
    token itself, were it emitted directly) anywhere outside that definition.
    """
    token = re.escape(NOW_UNAVAILABLE)
    rest = source
    for define in re.finditer(
        rf"^[ \t]*#[ \t]*define[ \t]+(\w+)\(\)[ \t]+{token}\(\)[ \t]*$", source, re.MULTILINE
    ):
        rest = rest.replace(define.group(0), "")
        if re.search(rf"\b{re.escape(define.group(1))}\s*\(", rest):
            return True
    return re.search(rf"\b{token}\b", rest) is not None


def kernel_context(spec: KernelSpec, barriers: tuple[str, ...] = ()) -> dict:
    """What the skeleton template needs to know about one ring kernel: the shared facts, the
    names of the ``barriers`` it waits on (each one more argument of the persistent entry point),
    and ``direct_out``: whether the resident loop may write each message's output straight into its
    output slot (at most one direct struct per message, so a slot's place is the message's own
    place in the claimed range, less the holes the loop closes afterwards)."""
    ctx = shared_kernel_context(spec)
    direct_out = (
        ctx["has_output"]
        and not ctx["out_bridged"]
        and not ctx["uses_outbox"]
        and ctx["limit"] == 1
    )
    return {**ctx, "barriers": list(barriers), "direct_out": direct_out}


def render_source(
    unit: "BuildUnit",
    *,
    header: str,
    body: str,
    codec: str = "",
    dialect: Optional[OpenclDialect] = None,
    barriers: Optional[dict[str, tuple[str, ...]]] = None,
) -> str:
    """The ``.cl`` text for ``unit`` around a given header and handler body (pure; no disk access).

    Args:
        unit: the build (its name, module, fingerprint and kernels are read).
        header: the text of ``<name>_types.h``.
        body: the handler text from ``ringgen.codegen.body.emit_body(unit)``.
        codec: the bridged-message device codec (``ringgen.codegen.bridged_c.emit_device_codec``),
            "" when the build has no bridged message.
        dialect: the OpenCL dialect (default: OpenCL C 3.0).
        barriers: per kernel name, the barriers its handler waits on (``ir.Function.barriers``'
            names); a kernel not in it waits on none.
    """
    barriers = barriers or {}
    dialect = dialect or OPENCL_DIALECT
    return render(
        "opencl/kernel.cl.j2",
        unit_name=unit.name,
        module=unit.module,
        version=__version__,
        fingerprint=unit.fingerprint,
        prelude=dialect.prelude(),
        header=header,
        ring_h=render_ring_h(),
        codec=codec,
        body=body,
        kernels=[kernel_context(k, barriers.get(k.name, ())) for k in unit.kernels],
        terminate_stop_now=protocol.TERMINATE_STOP_NOW,
    )


def emit(
    unit: "BuildUnit", *, options: Optional["EmitOptions"] = None, program: Any = None
) -> dict[str, str]:
    """The OpenCL target: ``{"<name>.cl": text}``."""
    debug = options.debug_line_directives if options is not None else None
    from .body import emit_body
    from .bridged_c import emit_device_codec
    from .header import render_header

    if program is None:
        from ..dsl import compile_program

        program = compile_program(
            unit.kernels, unit.device_functions, source_file=getattr(unit, "source_file", None)
        )
    text = render_source(
        unit,
        header=render_header(unit),
        body=emit_body(unit, debug=debug, program=program),
        codec=emit_device_codec(unit),
        barriers={fn.name: tuple(n for n, _ in fn.barriers) for fn in program.handlers},
    )
    return {source_name(unit): text}


class OpenclEmitter(Emitter):
    """The OpenCL target's ``Emitter`` (the ``opencl`` row of ``ringgen.targets``)."""

    def emit(self, unit: "BuildUnit", program: Any, options: "EmitOptions") -> dict[str, str]:
        return emit(unit, options=options, program=program)

    def entry_points(self, kernel: str) -> dict[str, str]:
        return entry_points(kernel)

    def skipped(self, unit: "BuildUnit", program: Any) -> dict[str, str]:
        return {}

    def abi(self, kernel: KernelSpec, source: str) -> dict:
        return abi(kernel.name, source)
