"""The ``<name>_types.h`` emitter: every message as a C struct, checked against the layout engine.

The header is valid C99, C++17, CUDA, OpenCL C and Metal. Each struct is followed by static assertions
on its ``sizeof`` and every field's ``offsetof``, with the numbers taken from ``ringgen.layout``: if any
compiler lays a struct out differently from Python, the build of that source fails right there.
"""

from __future__ import annotations

import textwrap
from typing import TYPE_CHECKING

from ..layout import AuxStruct, FieldLayout, MessageLayout
from ..types import StrType, describe_type
from .env import render

if TYPE_CHECKING:
    from ..build import BuildUnit

__all__ = ["emit", "header_name", "render_header"]


def header_name(unit: "BuildUnit") -> str:
    """The header's file name: ``<name>_types.h``."""
    return f"{unit.name}_types.h"


def _bytes(n: int) -> str:
    return f"{n} byte" if n == 1 else f"{n} bytes"


def _field_note(type_name: str, offset: int, size: int, before: int, after: int) -> str:
    note = f"{type_name}: offset {offset}, {_bytes(size)}"
    if before:
        note += f", after {_bytes(before)} of padding"
    if after:
        note += f"; then {_bytes(after)} of padding"
    return note


def _field_context(struct: str, fields: tuple[FieldLayout, ...], size: int) -> list[dict]:
    out = []
    end = 0
    for f in fields:
        out.append(
            {
                "decl": f"{f.c_type} {f.c_declarator};",
                "name": f.name,
                "offset": f.offset,
                "size": f.size,
                "type": describe_type(f.type),
                "padding_before": f.offset - end,
                "check": f"rg_check_{struct}_{f.name}_offset",
            }
        )
        end = f.offset + f.size
    for i, f in enumerate(out):
        after = size - end if i == len(out) - 1 else 0
        f["note"] = _field_note(f["type"], f["offset"], f["size"], f["padding_before"], after)
    return out


def _struct_context(name: str, fields, size: int, align: int, comment: list[str]) -> dict:
    fctx = _field_context(name, fields, size)
    return {
        "name": name,
        "size": size,
        "align": align,
        "fields": fctx,
        "comment": [line for c in comment for line in textwrap.wrap(c, 96)],
        "size_check": f"rg_check_{name}_size",
    }


def _aux_context(aux: AuxStruct) -> dict:
    what = "Str" if isinstance(aux.type, StrType) else "List"
    comment = [
        f"{describe_type(aux.type)}: the fixed-capacity view of a {what} field.",
        "len counts the bytes in use" if what == "Str" else "len counts the items in use",
    ]
    return _struct_context(aux.c_name, aux.fields, aux.size, aux.align, comment)


def _message_context(m: MessageLayout) -> dict:
    spec = m.spec
    where = (
        f"{spec.pos.file.rsplit('/', 1)[-1]}:{spec.pos.line}"
        if spec.pos.file
        else spec.cls.__module__
    )
    kind = "state" if spec.kind == "state" else f"{m.kind} message"
    comment = [f"{m.name}: {kind}, {m.size} bytes, aligned to {m.align} (declared at {where})."]
    if m.is_bridged:
        comment.append(
            f"Bridged: this is the view the device decodes into; on the wire a {m.name} is the "
            f"256-byte header plus at most {m.max_payload} payload bytes (queue slot {m.slot_size} bytes)."
        )
    elif spec.kind == "state":
        comment.append("Held in device memory for the kernel's lifetime; the host initialises it.")
    else:
        comment.append(
            f"Direct: this struct is the queue slot, byte for byte ({m.slot_size} bytes)."
        )
    ctx = _struct_context(m.name, m.fields, m.size, m.align, comment)
    ctx.update(
        {
            "kind": m.kind,
            "slot_size": m.slot_size,
            "type_id": m.type_id,
            "max_payload": m.max_payload or 0,
        }
    )
    return ctx


def render_header(unit: "BuildUnit") -> str:
    """The header text for ``unit``."""
    structs: list[dict] = []
    seen: set[str] = set()
    for m in unit.messages:
        # A Str/List view may hold a message, so it goes after that message and before its user.
        for a in m.aux:
            if a.c_name not in seen:
                seen.add(a.c_name)
                structs.append({**_aux_context(a), "aux": True})
        structs.append({**_message_context(m), "aux": False})
    return render(
        "header/types.h.j2",
        name=unit.name,
        guard=f"RG_{unit.name.upper()}_TYPES_H",
        module=unit.module,
        source_file=unit.source_file,
        version=unit.ringgen_version,
        fingerprint=unit.fingerprint,
        structs=structs,
    )


def emit(unit: "BuildUnit") -> dict[str, str]:
    """Emitter for the ``header`` target: ``{"<name>_types.h": text}``."""
    return {header_name(unit): render_header(unit)}
