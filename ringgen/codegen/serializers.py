"""The ``serializers.py`` emitter: one codec class per message, specialised to its fields.

For each direct message the generated codec carries the numpy dtype (written out literally, so a reader
sees every offset), a ``struct`` format with explicit padding, and four one-line functions that move
the fields between an object, a flat tuple (``struct``) and a numpy row. The decisions live here; the
template only lays the text out. Bridged messages get their codec from the package's ``bridged.py``
(written by the wire target) through one function, ``_bridged_codec``.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import numpy as np

from ..layout import MessageLayout, array_dims, layout_of
from ..types import ArrayType, FieldType, MessageType, ScalarType, describe_type
from ..wire.direct import struct_format
from .env import render

if TYPE_CHECKING:
    from ..build import BuildUnit

__all__ = ["compute_struct_format", "dtype_source", "emit", "render_serializers"]

#: One token of a ``struct`` format: an optional repeat count and a one-letter code (ringgen's scalar
#: codes and ``x`` are all single letters, none of them ``s``/``p`` whose count means bytes).
_FORMAT_TOKEN = re.compile(r"(\d*)([a-zA-Z?])")


def dtype_source(dt: np.dtype) -> str:
    """Python source that rebuilds ``dt`` exactly: names, formats, offsets and itemsize spelled out."""
    if dt.names is not None:
        names = list(dt.names)
        formats = [dtype_source(dt.fields[n][0]) for n in names]
        offsets = [dt.fields[n][1] for n in names]
        return (
            f'np.dtype({{"names": {names!r}, "formats": [{", ".join(formats)}], '
            f'"offsets": {offsets!r}, "itemsize": {dt.itemsize}}})'
        )
    if dt.subdtype is not None:
        base, shape = dt.subdtype
        return f"({dtype_source(base)}, {tuple(shape)!r})"
    return repr(dt.str)


def _leaf_count(t: FieldType) -> int:
    if isinstance(t, ScalarType):
        return 1
    if isinstance(t, ArrayType):
        return t.length * _leaf_count(t.elem)
    return sum(_leaf_count(f.type) for f in layout_of(t.cls).fields)


def compute_struct_format(m: MessageLayout) -> str:
    """The ``struct`` format of a direct message: little-endian, padding as ``x``, runs counted.

    A pass over ``ringgen.wire.direct.struct_format`` (the one derivation of the layout's format) that
    merges neighbouring tokens with the same code, so ``ff4f2x6x`` reads ``6f8x``.
    """
    tokens: list[list] = []  # [count, code]
    for count, code in _FORMAT_TOKEN.findall(struct_format(m)):
        n = int(count) if count else 1
        if tokens and tokens[-1][1] == code:
            tokens[-1][0] += n
        else:
            tokens.append([n, code])
    return "<" + "".join(f"{n if n > 1 else ''}{c}" for n, c in tokens)


def _innermost(t: FieldType) -> FieldType:
    while isinstance(t, ArrayType):
        t = t.elem
    return t


def _codec_name(name: str) -> str:
    return f"{name}Codec"


def _field_exprs(field_name: str, t: FieldType, start: int) -> dict[str, str]:
    """The four expressions that move one field (``o.<name>`` / ``v[i + start]`` / ``r[k]``)."""
    access = f"o.{field_name}"
    inner = _innermost(t)
    dims = array_dims(t)
    depth = len(dims)
    count = _leaf_count(t)
    if isinstance(inner, MessageType):
        codec = _codec_name(inner.name)
        per = _leaf_count(inner)
        if depth == 0:
            return {
                "flat": f"*{codec}.flat({access})",
                "from_flat": f"{codec}.from_flat(v, i + {start})",
                "row": f"{codec}.row({access})",
                "from_row": f"{codec}.from_row(r[{{k}}])",
            }
        n = count // per
        items = f"[{codec}.from_flat(v, i + {start} + j * {per}) for j in range({n})]"
        return {
            "flat": f"*flatten({access}, {depth}, {codec}.flat)",
            "from_flat": items if depth == 1 else f"nest({items}, {dims!r})",
            "row": f"map_nested({codec}.row, {access}, {depth})",
            "from_row": f"map_nested({codec}.from_row, r[{{k}}].tolist(), {depth})",
        }
    if depth == 0:
        at = f"v[i + {start}]" if start else "v[i]"
        return {"flat": access, "from_flat": at, "row": access, "from_row": "r[{k}]"}
    window = f"v[i + {start} : i + {start + count}]"
    return {
        "flat": f"*{access}" if depth == 1 else f"*flatten({access}, {depth})",
        "from_flat": f"list({window})" if depth == 1 else f"nest({window}, {dims!r})",
        "row": access,
        # a sub-array inside a row from tolist() is still an ndarray; lists compare like the user's
        "from_row": "r[{k}].tolist()",
    }


def _tuple(items: list[str]) -> str:
    return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"


def _call(cls: str, fields: list[dict], key: str) -> str:
    return f"{cls}(" + ", ".join(f"{f['name']}={f[key]}" for f in fields) + ")"


def _direct_context(m: MessageLayout) -> dict:
    fields = []
    start = 0
    for k, f in enumerate(m.fields):
        ex = _field_exprs(f.name, f.type, start)
        ex["from_row"] = ex["from_row"].format(k=k)
        fields.append({"name": f.name, "type": describe_type(f.type), "offset": f.offset, **ex})
        start += _leaf_count(f.type)
    return {
        "flat": _tuple([f["flat"] for f in fields]),
        "from_flat": _call(m.name, fields, "from_flat"),
        "row": _tuple([f["row"] for f in fields]),
        "from_row": _call(m.name, fields, "from_row"),
        "name": m.name,
        "codec": _codec_name(m.name),
        "kind": m.spec.kind,
        "size": m.size,
        "align": m.align,
        "dtype": dtype_source(m.dtype),
        "struct_format": compute_struct_format(m),
        "fields": fields,
    }


def _bridged_context(m: MessageLayout) -> dict:
    return {
        "name": m.name,
        "dtype": dtype_source(m.dtype),
        "slot_size": m.slot_size,
        "max_payload": m.max_payload,
    }


def render_serializers(unit: "BuildUnit") -> str:
    """The text of ``serializers.py`` for ``unit`` (before black formats it)."""
    direct = [_direct_context(m) for m in unit.direct_messages]
    text = "".join(c["flat"] + c["from_flat"] + c["row"] + c["from_row"] for c in direct)
    helpers = [h for h in ("flatten", "map_nested", "nest") if f"{h}(" in text]
    imports: dict[str, list[str]] = {}
    for m in unit.messages:
        imports.setdefault(m.spec.cls.__module__, []).append(m.name)
    return render(
        "python/serializers.py.j2",
        module=unit.module,
        version=unit.ringgen_version,
        fingerprint=unit.fingerprint,
        imports=sorted(imports.items()),
        direct=direct,
        helpers=helpers,
        # by name: the template looks each message up, which a list would make quadratic
        bridged={m.name: _bridged_context(m) for m in unit.bridged_messages},
        order=[m.name for m in unit.messages],
    )


def emit(unit: "BuildUnit") -> dict[str, str]:
    """Emitter for the ``serializers`` target: ``{"serializers.py": text}``."""
    return {"serializers.py": render_serializers(unit)}
