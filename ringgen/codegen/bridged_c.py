"""The device codec of bridged messages: C text shared by OpenCL, CUDA, Metal and plain C.

``emit_device_codec(unit)`` returns, for every bridged message ``M`` of a build:

* ``RG_FN int rg_decode_M(RG_GLOBAL const rg_u8* slot, rg_u32 slot_size, rg_u32 expected_type_id,
  RG_PRIVATE M* out)``: validates the header (``HEADER_CHECKS``: magic, total size, type id, CRC-32) and decodes
  the MemoryPack payload into the view struct; returns 0 or a ``ringgen.protocol.Reason``;
* ``RG_FN rg_u32 rg_encode_M(RG_PRIVATE const M* in, RG_GLOBAL rg_u8* slot, rg_u64 timestamp,
  rg_u32 sender, rg_u32 receiver, rg_u64 sequence)``: writes header + payload and returns the total
  size in bytes.

The header checks run in the order of ``ringgen.wire.header.HEADER_CHECKS``, which the host's
decoders follow too, so every decoder names the same Reason for the same bytes. The text uses only prelude names (``RG_FN``,
``RG_GLOBAL``, ``RG_PRIVATE`` and the ``rg_*`` scalar typedefs) and must be included after the
``_types.h`` header and the backend's prelude. Python decides what each field needs (the "steps"
below); ``templates/common/bridged_codec.h.j2`` spells them in C.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable

from ..layout import MessageLayout, layout_of
from ..protocol import Reason
from ..types import ArrayType, ListType, MessageType, ScalarType, StrType, describe_type
from ..wire.header import HEADER_CHECKS, HEADER_FIELDS, HEADER_SIZE, MAGIC
from .bridged_py import bridged_closure
from .env import render

if TYPE_CHECKING:
    from ..build import BuildUnit

__all__ = ["emit_device_codec", "render_device_codec"]


def _fixed_size(t: Any) -> int:
    """Bytes of a fixed-size type in a view struct (and of its unmanaged wire form when raw)."""
    if isinstance(t, ScalarType):
        return t.size
    if isinstance(t, ArrayType):
        return _fixed_size(t.elem) * t.length
    if isinstance(t, MessageType):
        return layout_of(t.cls).size
    raise TypeError(t)


def _is_raw(t: Any) -> bool:
    """Whether the wire bytes of ``t`` are exactly its view bytes (a scalar or a direct struct)."""
    return isinstance(t, ScalarType) or (
        isinstance(t, MessageType) and not layout_of(t.cls).is_bridged
    )


def _padding(lay: MessageLayout, base: int = 0) -> list[tuple[int, int]]:
    """(offset, length) of every padding gap of a direct struct, nested structs included."""
    gaps, at = [], 0
    for f in lay.fields:
        if f.offset > at:
            gaps.append((base + at, f.offset - at))
        t, n = f.type, 1
        while isinstance(t, ArrayType):
            n *= t.length
            t = t.elem
        if isinstance(t, MessageType):
            inner = layout_of(t.cls)
            for k in range(n):
                gaps += _padding(inner, base + f.offset + k * inner.size)
        at = f.offset + f.size
    if lay.size > at:
        gaps.append((base + at, lay.size - at))
    return gaps


def _raw_padding(t: Any, count: int) -> list[tuple[int, int]]:
    """Padding gaps inside ``count`` consecutive raw values of type ``t`` (relative offsets)."""
    if isinstance(t, MessageType):
        lay = layout_of(t.cls)
        return [g for k in range(count) for g in _padding(lay, k * lay.size)]
    return []


class _Steps:
    """Turns field types into template steps; ``depth`` names nested loop counters uniquely."""

    def __init__(self) -> None:
        self.depth = 0

    def value(self, t: Any, lv: str, what: str) -> dict:
        """The step that decodes/encodes one value of type ``t`` held in the lvalue ``lv``."""
        ptr = f"&({lv})"
        if _is_raw(t):
            return {
                "kind": "raw",
                "what": what,
                "ptr": ptr,
                "size": _fixed_size(t),
                "count": "1u",
                "padding": _raw_padding(t, 1),
            }
        if isinstance(t, ArrayType):
            if _is_raw(t.elem):
                return {
                    "kind": "array_raw",
                    "what": what,
                    "ptr": ptr,
                    "length": t.length,
                    "size": _fixed_size(t.elem) * t.length,
                    "count": f"{t.length}u",
                    "padding": _raw_padding(t.elem, t.length),
                }
            var = self._var()
            body = self.value(t.elem, f"({lv})[{var}]", f"element of {what}")
            return {
                "kind": "array_loop",
                "what": what,
                "length": t.length,
                "var": var,
                "body": body,
            }
        if isinstance(t, StrType):
            return {"kind": "str", "what": what, "lv": lv, "bound": t.max_bytes}
        if isinstance(t, ListType):
            step = {"kind": "list", "what": what, "lv": lv, "bound": t.max_len}
            if _is_raw(t.elem):
                step.update(elems="raw", size=_fixed_size(t.elem), padding=_raw_padding(t.elem, 1))
            else:
                var = self._var()
                step.update(
                    elems="loop",
                    var=var,
                    body=self.value(t.elem, f"({lv}).items[{var}]", f"element of {what}"),
                )
            return step
        if isinstance(t, MessageType):
            return {"kind": "object", "what": what, "lv": lv, "name": t.name}
        raise TypeError(t)

    def _var(self) -> str:
        self.depth += 1
        return f"i{self.depth}"


def _message_context(lay: MessageLayout) -> dict:
    steps = _Steps()
    return {
        "name": lay.name,
        "n_fields": len(lay.fields),
        "max_payload": lay.max_payload,
        "slot_size": lay.slot_size,
        "type_id": lay.type_id,
        "steps": [
            steps.value(f.type, f"m->{f.name}", f"{f.name}: {describe_type(f.type)}")
            for f in lay.fields
        ],
    }


def _header_checks() -> list[dict]:
    """``HEADER_CHECKS`` for the template, which spells each check in C in this order."""
    fields = [field for field, _, _ in HEADER_CHECKS]
    # the CRC check covers the payload the total size delimits: that size must be read first
    assert fields.index("total_size") < fields.index("payload_crc"), fields
    return [{"field": field, "reason": reason.name} for field, reason, _ in HEADER_CHECKS]


def render_device_codec(layouts: Iterable[MessageLayout]) -> str:
    """The codec text for the given bridged layouts (and the bridged messages they nest)."""
    # direct messages nested in a bridged one travel as raw struct bytes: no codec of their own
    bridged = [lay for lay in bridged_closure(layouts) if lay.is_bridged]
    if not bridged:
        return ""
    return render(
        "common/bridged_codec.h.j2",
        magic=MAGIC,
        header_size=HEADER_SIZE,
        header_fields=[
            {"name": n, "offset": off, "size": 4 if code == "I" else 8}
            for n, code, off, _ in HEADER_FIELDS
        ],
        reasons=[(r.name, int(r)) for r in Reason],
        header_checks=_header_checks(),
        messages=[_message_context(m) for m in bridged],
    )


def emit_device_codec(unit: "BuildUnit") -> str:
    """The device codec of every bridged message of ``unit`` ("" when it has none).

    Backends include the text after the ``_types.h`` header and their prelude.
    """
    return render_device_codec(unit.bridged_messages)
