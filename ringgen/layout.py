"""The layout engine: where every field of a message lives, in C and in numpy, and how big it gets.

Offsets, alignment, padding and size follow the C ABI shared by x86-64 (System V), CUDA and OpenCL:
a scalar is aligned to its size, a struct to its most aligned member, and a struct's size is rounded up
to its alignment. The numpy dtype is built with ``align=True`` and agrees byte for byte.

Every message also has a *view* layout: for a direct message it is its slot; for a bridged message it is
the fixed-capacity struct the device decodes into (``Str[N]`` as ``{u32 len; u8 data[N]}``, ``List[T, N]``
as ``{u32 len; T items[N]}``), which is also the host's columnar batch format. The *wire* size of a
bridged message is its MemoryPack payload's upper bound (docs/wire-format.md).
"""

from __future__ import annotations

import functools
import zlib
from typing import Optional

import attrs
import numpy as np

from .errors import LayoutError
from .schema import PAYLOAD_BOUND, MessageSpec, spec_of
from .types import ArrayType, FieldType, ListType, MessageType, ScalarType, StrType, u32, u8

__all__ = [
    "BRIDGE_HEADER_SIZE",
    "AuxStruct",
    "FieldLayout",
    "MessageLayout",
    "c_type_name",
    "compute_layout",
    "compute_max_payload",
    "dtype_of",
    "layout_of",
    "type_align",
    "type_dtype",
    "type_size",
]

#: Every bridged message starts with this fixed header (docs/design.md §4).
BRIDGE_HEADER_SIZE = 256


def _round_up(n: int, a: int) -> int:
    return (n + a - 1) // a * a


def mangle(t: FieldType) -> str:
    """A short identifier for a type, used to name generated helper structs (``f32x4``, ``str64``)."""
    if isinstance(t, ScalarType):
        return t.name.rstrip("_")
    if isinstance(t, ArrayType):
        return f"{mangle(t.elem)}x{t.length}"
    if isinstance(t, StrType):
        return f"str{t.max_bytes}"
    if isinstance(t, ListType):
        return f"list_{mangle(t.elem)}_{t.max_len}"
    if isinstance(t, MessageType):
        return t.name
    raise TypeError(t)


def c_type_name(t: FieldType) -> str:
    """The C spelling of a field's element type (arrays add their dimensions separately)."""
    if isinstance(t, ScalarType):
        return t.c_name
    if isinstance(t, ArrayType):
        return c_type_name(t.elem)
    if isinstance(t, (StrType, ListType)):
        return "rg_" + mangle(t)
    if isinstance(t, MessageType):
        return t.name
    raise TypeError(t)


def array_dims(t: FieldType) -> tuple[int, ...]:
    """The C array dimensions of a field type, outermost first: ``Array[Array[f32, 3], 2]`` → (2, 3)."""
    dims = []
    while isinstance(t, ArrayType):
        dims.append(t.length)
        t = t.elem
    return tuple(dims)


def type_align(t: FieldType) -> int:
    if isinstance(t, ScalarType):
        return t.align
    if isinstance(t, ArrayType):
        return type_align(t.elem)
    if isinstance(t, StrType):
        return u32.align
    if isinstance(t, ListType):
        return max(u32.align, type_align(t.elem))
    if isinstance(t, MessageType):
        return layout_of(t.cls).align
    raise TypeError(t)


def type_size(t: FieldType) -> int:
    if isinstance(t, ScalarType):
        return t.size
    if isinstance(t, ArrayType):
        return type_size(t.elem) * t.length
    if isinstance(t, StrType):
        return _round_up(4 + t.max_bytes, type_align(t))
    if isinstance(t, ListType):
        items_off = _round_up(4, type_align(t.elem))
        return _round_up(items_off + type_size(t.elem) * t.max_len, type_align(t))
    if isinstance(t, MessageType):
        return layout_of(t.cls).size
    raise TypeError(t)


def type_dtype(t: FieldType) -> np.dtype:
    """The numpy dtype of one value of ``t`` (arrays as sub-array dtypes), little-endian, aligned."""
    if isinstance(t, ScalarType):
        return t.np_dtype
    if isinstance(t, ArrayType):
        return np.dtype((type_dtype(t.elem), (t.length,)))
    if isinstance(t, StrType):
        return np.dtype(
            {
                "names": ["len", "data"],
                "formats": ["<u4", ("u1", (t.max_bytes,))],
                "offsets": [0, 4],
                "itemsize": type_size(t),
            }
        )
    if isinstance(t, ListType):
        return np.dtype(
            {
                "names": ["len", "items"],
                "formats": ["<u4", (type_dtype(t.elem), (t.max_len,))],
                "offsets": [0, _round_up(4, type_align(t.elem))],
                "itemsize": type_size(t),
            }
        )
    if isinstance(t, MessageType):
        return layout_of(t.cls).dtype
    raise TypeError(t)


def compute_max_payload(t: FieldType) -> int:
    """Upper bound of ``t``'s MemoryPack encoding, in bytes (docs/wire-format.md).

    Scalars are raw little-endian; a nested direct message is one unmanaged block (its C struct);
    ``Array``/``List`` are a collection (int32 count, then elements); ``Str`` is the UTF-8 form
    (int32 complemented byte count, int32 UTF-16 length, bytes); a nested bridged message is an object
    (member-count byte, then its members).
    """
    if isinstance(t, ScalarType):
        return t.size
    if isinstance(t, (ArrayType, ListType)):
        n = t.length if isinstance(t, ArrayType) else t.max_len
        return 4 + n * compute_max_payload(t.elem)
    if isinstance(t, StrType):
        return 8 + t.max_bytes
    if isinstance(t, MessageType):
        lay = layout_of(t.cls)
        if not lay.is_bridged:
            return lay.size
        return 1 + sum(compute_max_payload(f.type) for f in lay.spec.fields)
    raise TypeError(t)


@attrs.frozen
class FieldLayout:
    """One field of a view struct: name, type, offset, size and alignment in bytes, C spelling."""

    name: str
    type: FieldType
    offset: int
    size: int
    align: int
    c_type: str
    c_dims: tuple[int, ...]

    @property
    def c_declarator(self) -> str:
        """``name[2][3]``: the field's declarator, with its array dimensions."""
        return self.name + "".join(f"[{d}]" for d in self.c_dims)


@attrs.frozen
class AuxStruct:
    """A helper struct the header must declare before a message (a ``Str``/``List`` view)."""

    c_name: str
    type: FieldType
    fields: tuple[FieldLayout, ...]
    size: int
    align: int


@attrs.frozen
class MessageLayout:
    """Everything the generators need to know about one message's bytes.

    ``size``/``align``/``fields``/``dtype`` describe the view struct (the slot, for a direct message).
    For a bridged message, ``max_payload`` bounds its MemoryPack payload and ``slot_size`` is
    ``256 + max_payload``; for a direct one ``slot_size == size``. ``type_id`` is a stable 32-bit id
    (CRC32 of the name and field signature) that bridged headers carry.
    """

    name: str
    spec: MessageSpec = attrs.field(eq=False)
    fields: tuple[FieldLayout, ...]
    size: int
    align: int
    dtype: np.dtype = attrs.field(eq=False)
    kind: str  # "direct" or "bridged"
    max_payload: Optional[int]
    type_id: int
    aux: tuple[AuxStruct, ...]

    @property
    def is_bridged(self) -> bool:
        return self.kind == "bridged"

    @property
    def slot_size(self) -> int:
        if self.is_bridged:
            return BRIDGE_HEADER_SIZE + self.max_payload
        return self.size

    @property
    def signature(self) -> str:
        return ";".join(f"{f.name}:{mangle(f.type)}" for f in self.fields)


def _aux_for(t: FieldType, out: dict[str, AuxStruct]) -> None:
    if isinstance(t, ArrayType):
        _aux_for(t.elem, out)
        return
    if isinstance(t, ListType):
        _aux_for(t.elem, out)
    if not isinstance(t, (StrType, ListType)):
        return
    name = c_type_name(t)
    if name in out:
        return
    if isinstance(t, StrType):
        fl = (
            FieldLayout("len", u32, 0, 4, 4, u32.c_name, ()),
            FieldLayout(
                "data", ArrayType(u8, t.max_bytes), 4, t.max_bytes, 1, u8.c_name, (t.max_bytes,)
            ),
        )
    else:
        off = _round_up(4, type_align(t.elem))
        items = ArrayType(t.elem, t.max_len)
        fl = (
            FieldLayout("len", u32, 0, 4, 4, u32.c_name, ()),
            FieldLayout(
                "items",
                items,
                off,
                type_size(items),
                type_align(t.elem),
                c_type_name(t.elem),
                array_dims(items),
            ),
        )
    out[name] = AuxStruct(name, t, fl, type_size(t), type_align(t))


@functools.lru_cache(maxsize=None)
def _layout_cached(cls: type) -> MessageLayout:
    return compute_layout(spec_of(cls))


def layout_of(cls: type) -> MessageLayout:
    """The (cached) layout of a ``@rg.message``/``@rg.state`` class."""
    return _layout_cached(cls)


def dtype_of(cls: type) -> np.dtype:
    """The numpy dtype of a message class's rows: what ``send_batch`` takes and ``receive_batch``
    returns (``np.zeros(n, dtype=rg.dtype_of(AddRequest))``).

    For a direct message it is the C struct (``align=True``); for a bridged one the view struct the
    device decodes into (``Str`` as ``{len, data}``, ``List`` as ``{len, items}``).

    Raises:
        SchemaError: ``cls`` is not a ``@rg.message``/``@rg.state`` class.
    """
    return layout_of(cls).dtype


def compute_layout(spec: MessageSpec) -> MessageLayout:
    """Lay out one message: offsets, padding, size, numpy dtype, kind and wire bound.

    Raises:
        LayoutError: the struct or the bridged payload bound exceeds 65,536 bytes.
    """
    offset = 0
    align = 1
    fields = []
    aux: dict[str, AuxStruct] = {}
    for f in spec.fields:
        _aux_for(f.type, aux)
        fa, fs = type_align(f.type), type_size(f.type)
        offset = _round_up(offset, fa)
        fields.append(
            FieldLayout(f.name, f.type, offset, fs, fa, c_type_name(f.type), array_dims(f.type))
        )
        offset += fs
        align = max(align, fa)
    size = _round_up(offset, align)
    dtype = np.dtype(
        {
            "names": [f.name for f in fields],
            "formats": [type_dtype(f.type) for f in fields],
            "offsets": [f.offset for f in fields],
            "itemsize": size,
        },
        align=True,
    )
    bridged = spec.is_bridged
    max_payload = None
    if bridged:
        max_payload = 1 + sum(compute_max_payload(f.type) for f in spec.fields)
        if max_payload > PAYLOAD_BOUND:
            worst = max(spec.fields, key=lambda f: compute_max_payload(f.type))
            raise LayoutError(
                f"{spec.name}: bridged payload bound is {max_payload} bytes, over the "
                f"{PAYLOAD_BOUND}-byte limit (largest field: {spec.name}.{worst.name}, "
                f"{compute_max_payload(worst.type)} bytes)",
                file=worst.pos.file,
                line=worst.pos.line,
                col=worst.pos.col,
                end_col=worst.pos.end_col,
                hint="lower the Str/List bounds",
            )
    elif size > PAYLOAD_BOUND:
        worst = max(fields, key=lambda f: f.size)
        pos = spec.field(worst.name).pos
        raise LayoutError(
            f"{spec.name}: struct size is {size} bytes, over the {PAYLOAD_BOUND}-byte limit "
            f"(largest field: {spec.name}.{worst.name}, {worst.size} bytes)",
            file=pos.file,
            line=pos.line,
            col=pos.col,
            end_col=pos.end_col,
            hint="split the message, or use smaller arrays",
        )
    lay = MessageLayout(
        name=spec.name,
        spec=spec,
        fields=tuple(fields),
        size=size,
        align=align,
        dtype=dtype,
        kind="bridged" if bridged else "direct",
        max_payload=max_payload,
        type_id=0,
        aux=tuple(aux.values()),
    )
    type_id = zlib.crc32(f"{spec.name}|{lay.signature}".encode()) & 0xFFFFFFFF
    return attrs.evolve(lay, type_id=type_id)
