"""The ``bridged.py`` emitter: one specialised Python encoder and decoder per bridged message.

The reference codec (``ringgen.wire.memorypack``) walks a schema at run time; the generated code is the
same format unrolled per class: consecutive fixed-size members become one precompiled
``struct.Struct`` (one ``pack``/``unpack_from`` call), each ``Str`` a few inline statements, and the
header one more ``pack``. Shapes without a fast spelling (an ``Array`` of arrays or of messages inside a
payload, a ``List`` of arrays) call the reference codec for that one field.

The fast functions only recognise success: on any failure they fall back to the reference codec, which
raises the precise ``EncodeError`` / ``WireFormatError``. The module text is also compiled in memory
(``ringgen.wire.compiled``) so ``rg.encode``/``rg.decode`` get the same speed without a build.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Any, Iterable, Optional

from .._version import __version__
from ..layout import MessageLayout, layout_of
from ..types import ArrayType, ListType, MessageType, ScalarType, StrType
from ..wire import header as wire_header
from ..wire.direct import type_format as _type_format
from .env import render
from .pyformat import format_python

if TYPE_CHECKING:
    from ..build import BuildUnit

__all__ = ["bridged_closure", "emit", "render_bridged"]


class _Consts:
    """Module-level constants the generated functions share (structs, field types), deduplicated."""

    def __init__(self) -> None:
        self.structs: dict[str, str] = {}
        self.types: dict[Any, str] = {}

    def struct(self, fmt: str) -> str:
        if fmt not in self.structs:
            self.structs[fmt] = f"_S{len(self.structs)}"
        return self.structs[fmt]

    def field_type(self, t: Any, text: str) -> str:
        key = (repr(t), text)
        if key not in self.types:
            self.types[key] = (f"_T{len(self.types)}", text)
        return self.types[key][0]


def _type_expr(t: Any) -> str:
    """Python source that rebuilds field type ``t`` inside the generated module."""
    if isinstance(t, ScalarType):
        return f"_types.{t.name}"
    if isinstance(t, ArrayType):
        return f"_types.ArrayType({_type_expr(t.elem)}, {t.length})"
    if isinstance(t, StrType):
        return f"_types.StrType({t.max_bytes})"
    if isinstance(t, ListType):
        return f"_types.ListType({_type_expr(t.elem)}, {t.max_len})"
    if isinstance(t, MessageType):
        return f"_types.MessageType({t.name}, {t.name!r})"
    raise TypeError(t)


def _is_flat_direct(cls: type) -> bool:
    """A direct message whose struct holds only scalars (so a row of ``unpack`` is its init args)."""
    return all(isinstance(f.type, ScalarType) for f in layout_of(cls).fields)


def _direct_args(t: Any, expr: str) -> list[str]:
    """Arguments to a struct ``pack`` that spell the unmanaged bytes of ``expr`` (of fixed type ``t``)."""
    if isinstance(t, ScalarType):
        return [_scalar_arg(t, expr)]
    if isinstance(t, ArrayType) and isinstance(t.elem, ScalarType):
        return [_items_arg(t.elem, f"_arr({expr}, {t.length})")]
    if isinstance(t, ArrayType):
        return [f"*_flat({_type_expr(t)}, {expr})"]
    if isinstance(t, MessageType):
        out = []
        for f in layout_of(t.cls).fields:
            out += _direct_args(f.type, f"{expr}.{f.name}")
        return out
    raise TypeError(t)


def _scalar_arg(t: ScalarType, expr: str) -> str:
    """A pack argument for one scalar: a ``bool_`` passes ``_bool`` (``struct`` takes any object for
    ``?``), so the fast path accepts no value that ``ringgen.values`` rejects."""
    return f"_bool({expr})" if t.struct_code == "?" else expr


def _items_arg(elem: ScalarType, expr: str) -> str:
    """Pack arguments for a sequence of scalars (``*seq``, each checked when they are bools)."""
    return f"*map(_bool, {expr})" if elem.struct_code == "?" else f"*{expr}"


def _count_values(fmt: str) -> int:
    return len(struct.unpack("<" + fmt, bytes(struct.calcsize("<" + fmt))))


class _Encoder:
    """Builds the statements and byte parts that encode one bridged object."""

    def __init__(self, consts: _Consts) -> None:
        self.c = consts
        self.stmts: list[str] = []
        self.parts: list[str] = []
        self.fmt = ""
        self.args: list[str] = []
        self.n = 0

    def _tmp(self, stem: str) -> str:
        self.n += 1
        return f"{stem}{self.n}"

    def flush(self) -> None:
        if self.fmt:
            self.parts.append(f"{self.c.struct(self.fmt)}.pack({', '.join(self.args)})")
            self.fmt, self.args = "", []

    def obj(self, cls: type, expr: str, where: str) -> None:
        lay = layout_of(cls)
        self.stmts.append(f"if type({expr}) is not {lay.name}: raise _Bad")
        self.fmt += "B"
        self.args.append(str(len(lay.fields)))
        for f in lay.fields:
            self.value(f.type, f"{expr}.{f.name}", f"{where}.{f.name}")

    def value(self, t: Any, expr: str, where: str) -> None:
        if isinstance(t, ScalarType):
            self.fmt += t.struct_code
            self.args.append(_scalar_arg(t, expr))
        elif isinstance(t, MessageType) and not layout_of(t.cls).is_bridged:
            self.stmts.append(f"if type({expr}) is not {t.name}: raise _Bad")
            self.fmt += _type_format(t)
            self.args += _direct_args(t, expr)
        elif isinstance(t, MessageType):
            self.obj(t.cls, expr, where)
        elif isinstance(t, ArrayType) and isinstance(t.elem, ScalarType):
            self.fmt += "i" + _type_format(t)
            self.args += [str(t.length), _items_arg(t.elem, f"_arr({expr}, {t.length})")]
        elif isinstance(t, StrType):
            # The string's head joins the pending fixed members in one pack: "ii" (~bytes, UTF-16
            # length) before the bytes, or a lone "i" 0 for the empty string.
            v, b, n = self._tmp("v"), self._tmp("b"), self._tmp("n")
            self.stmts += [
                f"{v} = {expr}",
                f"{b} = {v}.encode()",
                f"{n} = len({b})",
                f"if {n} > {t.max_bytes}: raise _Bad",
            ]
            full, empty = self.c.struct(self.fmt + "ii"), self.c.struct(self.fmt + "i")
            args = "".join(a + ", " for a in self.args)
            units = f"{n} if {n} == len({v}) else _utf16({v})"
            self.parts.append(
                f"({full}.pack({args}~{n}, {units}) + {b}) if {n} else {empty}.pack({args}0)"
            )
            self.fmt, self.args = "", []
        elif isinstance(t, ListType) and not isinstance(t.elem, ArrayType):
            self.flush()
            items, n = self._tmp("l"), self._tmp("c")
            self.stmts += [
                f"{items} = {expr}",
                f"{n} = len({items})",
                f"if {n} > {t.max_len}: raise _Bad",
            ]
            e = t.elem
            if isinstance(e, ScalarType):
                self.parts.append(
                    f'_pack(f"<i{{{n}}}{e.struct_code}", {n}, {_items_arg(e, items)})'
                )
            elif isinstance(e, MessageType) and not layout_of(e.cls).is_bridged:
                s = self.c.struct(_type_format(e))
                args = ", ".join(_direct_args(e, "e"))
                self.parts.append(
                    f"_I32.pack({n}) + b''.join([{s}.pack({args}) if type(e) is {e.name} else _bad() "
                    f"for e in {items}])"
                )
            else:
                self.parts.append(
                    f"_I32.pack({n}) + b''.join([_payload_{e.name}(e) for e in {items}])"
                )
        else:  # an Array of arrays/messages or a List of arrays: the reference codec, for this field
            self.flush()
            tname = self.c.field_type(t, _type_expr(t))
            self.parts.append(f"_ref_encode({tname}, {expr}, {where!r})")


class _Decoder:
    """Builds the statements that decode one bridged object at ``p`` and the constructor call."""

    def __init__(self, consts: _Consts) -> None:
        self.c = consts
        self.stmts: list[str] = []
        self.fmt = ""
        self.pending: list[tuple[str, Any]] = []  # (kind, data) resolved when the segment flushes
        self.n = 0

    def _tmp(self, stem: str) -> str:
        self.n += 1
        return f"{stem}{self.n}"

    def flush(self) -> None:
        if not self.fmt:
            return
        s = self.c.struct(self.fmt)
        v = self._tmp("t")
        self.stmts += [f"{v} = {s}.unpack_from(d, p)", f"p += {struct.calcsize('<' + self.fmt)}"]
        i = 0
        for kind, data in self.pending:
            if kind == "check":
                self.stmts.append(f"if {v}[{i}] != {data}: raise _Bad")
                i += 1
            elif kind == "scalar":
                self.stmts.append(f"{data} = {v}[{i}]")
                i += 1
            elif kind == "array":
                name, t = data
                k = t.length
                self.stmts.append(f"{name} = list({v}[{i}:{i + k}])")
                i += k
            elif kind == "direct":
                name, t = data
                k = _count_values(_type_format(t))
                if _is_flat_direct(t.cls):
                    self.stmts.append(f"{name} = {t.name}(*{v}[{i}:{i + k}])")
                else:
                    self.stmts.append(f"{name} = _unflat({t.name}, {v}[{i}:{i + k}])")
                i += k
        self.fmt, self.pending = "", []

    def obj(self, cls: type) -> str:
        """Emit the decoding of one object's members; return the constructor expression."""
        lay = layout_of(cls)
        self.fmt += "B"
        self.pending.append(("check", len(lay.fields)))
        names = [self.value(f.type, f"{lay.name}.{f.name}") for f in lay.fields]
        self.flush()
        return f"{lay.name}({', '.join(names)})"

    def value(self, t: Any, where: str) -> str:
        name = self._tmp("x")
        if isinstance(t, ScalarType):
            self.fmt += t.struct_code
            self.pending.append(("scalar", name))
        elif isinstance(t, MessageType) and not layout_of(t.cls).is_bridged:
            self.fmt += _type_format(t)
            self.pending.append(("direct", (name, t)))
        elif isinstance(t, MessageType):
            self.flush()
            self.stmts.append(f"{name}, p = _obj_{t.name}(d, p)")
        elif isinstance(t, ArrayType) and isinstance(t.elem, ScalarType):
            self.fmt += "i" + _type_format(t)
            self.pending += [("check", t.length), ("array", (name, t))]
        elif isinstance(t, StrType):
            self.flush()
            w, n, u = self._tmp("w"), self._tmp("n"), self._tmp("u")
            self.stmts += [
                f"{w} = _I32.unpack_from(d, p)[0]",
                f"if {w} == 0:",
                f"    {name} = ''",
                "    p += 4",
                f"elif {-2 - t.max_bytes} <= {w} <= -2:",
                f"    {n} = ~{w}",
                f"    {name} = str(d[p + 8 : p + 8 + {n}], 'utf-8')",
                f"    {u} = _I32.unpack_from(d, p + 4)[0]",
                f"    if {u} != -1 and {u} != ({n} if len({name}) == {n} else _utf16({name})): raise _Bad",
                f"    p += 8 + {n}",
                "else:",
                "    raise _Bad",
            ]
        elif isinstance(t, ListType) and not isinstance(t.elem, ArrayType):
            self.flush()
            c = self._tmp("c")
            self.stmts += [
                f"{c} = _I32.unpack_from(d, p)[0]",
                f"if not 0 <= {c} <= {t.max_len}: raise _Bad",
                "p += 4",
            ]
            e = t.elem
            if isinstance(e, ScalarType):
                self.stmts += [
                    f'{name} = list(_unpack_from(f"<{{{c}}}{e.struct_code}", d, p))',
                    f"p += {c} * {e.size}",
                ]
            elif isinstance(e, MessageType) and not layout_of(e.cls).is_bridged:
                s = self.c.struct(_type_format(e))
                size = layout_of(e.cls).size
                ctor = f"{e.name}(*r)" if _is_flat_direct(e.cls) else f"_unflat({e.name}, r)"
                self.stmts += [
                    f"{name} = [{ctor} for r in {s}.iter_unpack(d[p : p + {c} * {size}])]",
                    f"p += {c} * {size}",
                ]
            else:
                self.stmts += [
                    f"{name} = []",
                    f"for _ in range({c}):",
                    f"    o, p = _obj_{e.name}(d, p)",
                    f"    {name}.append(o)",
                ]
        else:
            self.flush()
            tname = self.c.field_type(t, _type_expr(t))
            self.stmts.append(f"{name}, p = _ref_decode({tname}, d, p, {where!r})")
        return name


def _message_context(lay: MessageLayout, consts: _Consts) -> dict:
    enc = _Encoder(consts)
    enc.obj(lay.spec.cls, "m", lay.name)
    enc.flush()
    dec = _Decoder(consts)
    ctor = dec.obj(lay.spec.cls)
    return {
        "name": lay.name,
        "type_id": lay.type_id,
        "max_payload": lay.max_payload,
        "slot_size": lay.slot_size,
        "enc_stmts": enc.stmts,
        "enc_parts": enc.parts,
        "dec_stmts": dec.stmts,
        "ctor": ctor,
    }


def bridged_closure(layouts: Iterable[MessageLayout]) -> list[MessageLayout]:
    """The given bridged layouts plus every message they nest, dependencies first, no repeats."""
    out: list[MessageLayout] = []
    for lay in layouts:
        for spec in lay.spec.nested() + [lay.spec]:
            nested = layout_of(spec.cls)
            if nested not in out:
                out.append(nested)
    return out


def _header_context() -> dict[str, Any]:
    """The wire header as the generated module spells it: its size, a literal in the offsets of the
    decoders (``ringgen.wire.header``); its ``struct`` is ``ringgen.wire.bridged_helpers.HEADER``.
    """
    return {"size": wire_header.HEADER_SIZE}


def render_bridged(
    layouts: Iterable[MessageLayout], *, module: Optional[str], fingerprint: str = ""
) -> str:
    """The text of a ``bridged.py`` module for ``layouts`` (bridged message layouts), formatted
    (``format_python``).

    ``module`` is the import name of the user's module the classes come from; ``None`` leaves the
    import out (for in-memory compilation, where the classes are passed in).
    """
    everything = bridged_closure(layouts)
    bridged = [m for m in everything if m.is_bridged]
    consts = _Consts()
    messages = [_message_context(m, consts) for m in bridged]
    text = render(
        "python/bridged.py.j2",
        version=__version__,
        fingerprint=fingerprint,
        module=module,
        imports=sorted(m.name for m in everything),
        messages=messages,
        structs=[(name, fmt) for fmt, name in consts.structs.items()],
        field_types=list(consts.types.values()),
        header=_header_context(),
    )
    return format_python(text, "bridged.py")


def emit(unit: "BuildUnit") -> dict[str, str]:
    """Emitter for the ``bridged`` target: ``{"bridged.py": text}``, or nothing without bridged messages."""
    bridged = unit.bridged_messages
    if not bridged:
        return {}
    return {"bridged.py": render_bridged(bridged, module=unit.module, fingerprint=unit.fingerprint)}
