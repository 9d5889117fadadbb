"""The ``runtime`` emitter: ``runtime.py``, one typed launcher per kernel of the package.

Each kernel becomes a module-level object with ``launch(backend="auto", **options)`` returning a
``KernelHandle[In, Out]``, so editors complete ``k.send(...)`` with the right message class. The
launcher records the user's module twice — its import name and its file relative to the import root —
so the package works both where it was built and from a fresh clone (``ringgen.runtime.launcher``).
The decisions (names, docstrings, type hints) are made here; the template lays the text out.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

from ..types import describe_type
from .env import render

if TYPE_CHECKING:
    from ..build import BuildUnit
    from ..kernel import KernelSpec

__all__ = ["compute_kernel_context", "emit", "render_runtime"]


def _camel(name: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in name.split("_") if part)


def _signature(cls: Optional[type], unit: "BuildUnit") -> str:
    """``AddRequest(id: i64, a: f32, b: f32)``: a message as the user declared it."""
    if cls is None:
        return "None"
    lay = unit.layout(cls)
    fields = ", ".join(f"{f.name}: {describe_type(f.type)}" for f in lay.spec.fields)
    return f"{lay.name}({fields})"


def _summary(k: "KernelSpec") -> str:
    out = k.output.__name__ if k.output is not None else None
    if k.outbox is not None:
        produces = f"emits zero or more {out} messages through an Outbox"
    elif out is None:
        produces = "produces no reply (it updates its state)"
    elif k.may_skip:
        produces = f"replies with at most one {out}"
    else:
        produces = f"replies with one {out}"
    return f"each {k.input.__name__} {produces}"


def compute_kernel_context(k: "KernelSpec", unit: "BuildUnit") -> dict[str, Any]:
    """What the template needs for one kernel: names, type hints and docstring lines."""
    out_hint = k.output.__name__ if k.output is not None else "None"
    notes = []
    if k.state is not None:
        notes.append(f"State: {_signature(k.state, unit)}, read back with ``k.state()``.")
    notes.append(
        "Ordered: one message at a time in arrival order (actor semantics)."
        if k.ordered
        else "Parallel: messages may be handled in any order."
    )
    notes.append(f"Queue capacity: {k.capacity} slots (override with ``capacity=``).")
    return {
        "name": k.name,
        "class_name": f"_{_camel(k.name)}Launcher",
        "input": k.input.__name__,
        "output_hint": out_hint,
        "summary": _summary(k),
        "input_signature": _signature(k.input, unit),
        "output_signature": _signature(k.output, unit),
        "notes": notes,
    }


def render_runtime(unit: "BuildUnit") -> str:
    """The text of ``runtime.py`` for ``unit`` (unformatted; the writer runs black)."""
    kernels = [compute_kernel_context(k, unit) for k in unit.kernels]
    hinted = sorted(
        {k.input.__name__ for k in unit.kernels}
        | {k.output.__name__ for k in unit.kernels if k.output is not None}
    )
    return render(
        "python/runtime.py.j2",
        name=unit.name,
        module=unit.module,
        source_file=unit.source_file,
        version=unit.ringgen_version,
        fingerprint=unit.fingerprint,
        kernels=kernels,
        hinted=hinted,
    )


def emit(unit: "BuildUnit") -> dict[str, str]:
    """Emitter for the ``runtime`` target: ``{"runtime.py": text}``."""
    return {"runtime.py": render_runtime(unit)}
