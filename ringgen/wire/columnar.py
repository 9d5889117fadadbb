"""Columnar batches of bridged messages: numpy columns in, a block of queue slots out.

A batch is a numpy structured array in the message's *view* dtype (``Str[N]`` as ``{len, data[N]}``,
``List[T, N]`` as ``{len, items[N]}``, the struct the device decodes into), or a dict of columns
(``columns_to_view``). ``encode_batch`` writes every slot's header and MemoryPack payload with whole-
column numpy operations: fields before the first variable-length one are copied as column slices, later
ones are scattered at per-row offsets, and the payload CRCs are computed by ``crc.crc32_rows``. When
the native helpers load (``native.py``), the same shapes go through one C call per batch instead,
driven by a small op program compiled from the layout (``native.program_for``); the numpy code stays
the fallback and the reference the tests compare against byte for byte. Only
shapes without a columnar spelling (nested bridged messages, lists of messages with strings) fall back
to one generated encoder call per message.
"""

from __future__ import annotations

import functools
import itertools
import operator
from typing import Any, Iterable, Optional

import numpy as np

from ..errors import EncodeError, WireFormatError
from ..layout import MessageLayout, layout_of, type_dtype
from ..protocol import Reason
from ..types import ArrayType, ListType, MessageType, ScalarType, StrType, describe_type
from ..values import check_message
from . import native
from .compiled import bridged_codec
from .crc import crc32_rows
from .shapes import _columnar_ok, _padding_mask
from .header import HEADER_DTYPE, HEADER_SIZE, HEADER_USED, MAGIC, check_header_values, now_ticks

#: The used part of the header as a packed record.
_HEADER_USED_DTYPE = np.dtype(
    {
        "names": list(HEADER_DTYPE.names),
        "formats": [HEADER_DTYPE.fields[k][0] for k in HEADER_DTYPE.names],
        "offsets": [HEADER_DTYPE.fields[k][1] for k in HEADER_DTYPE.names],
        "itemsize": HEADER_USED,
    }
)

__all__ = ["columns_to_view", "encode_batch", "objects_to_view", "view_to_objects"]

# Rows per chunk when scattering at per-row offsets (bounds the index arrays' memory).
_CHUNK = 1 << 15
# Rows encoded together by encode_batch.
_BATCH_CHUNK = 1 << 13


# ------------------------------------------------------------------------------------ objects <-> view


def objects_to_view(cls: type, objs: Iterable[Any]) -> np.ndarray:
    """The view rows of message objects (one Python pass over the objects).

    Raises:
        EncodeError: an item is not a ``cls``, or a value is not one its field accepts
            (``ringgen.values``, the same check as every other encoder; numpy's conversion alone
            would turn ``"5"`` into 5 and ``None`` into nan).
    """
    lay = layout_of(cls)
    objs = list(objs)
    for i, obj in enumerate(objs):
        if type(obj) is not cls:
            raise EncodeError(f"{lay.name} batch: row {i} is a {type(obj).__name__}")
        check_message(cls, obj)
    arr = np.zeros(len(objs), dtype=lay.dtype)
    if objs and set(map(type, objs)) == {cls} and _columns_from_objects(lay, objs, arr):
        return arr
    for i, obj in enumerate(objs):
        if type(obj) is not cls:
            raise EncodeError(f"{lay.name} batch: row {i} is a {type(obj).__name__}")
        for f in lay.fields:
            _put(f.type, arr[f.name], i, getattr(obj, f.name), f"{lay.name}.{f.name}")
    return arr


def _columns_from_objects(lay: MessageLayout, objs: list, arr: np.ndarray) -> bool:
    """Fill ``arr`` a field at a time (one list of attribute values per field, converted by numpy in
    one call) instead of a value at a time; False, with ``arr`` partly filled, when a value needs the
    per-value path (which then raises the error naming field and row, or converts it alike)."""
    for f in lay.fields:
        t = f.type
        values = list(map(operator.attrgetter(f.name), objs))
        try:
            if isinstance(t, ScalarType):
                # np.array converts element by element exactly as _as does one value
                arr[f.name] = np.array(values, dtype=arr.dtype[f.name])
                continue
            if isinstance(t, StrType):
                raw = list(map(str.encode, values))  # UTF-8; TypeError for a non-str
                lens = np.fromiter(map(len, raw), np.int64, len(raw))
                if lens.max() > t.max_bytes:
                    return False
                _scatter(arr[f.name]["data"], np.frombuffer(b"".join(raw), np.uint8), lens)
                arr[f.name]["len"] = lens
                continue
            if isinstance(t, ListType) and isinstance(t.elem, ScalarType):
                lens = np.fromiter(map(len, values), np.int64, len(values))
                if lens.max() > t.max_len:
                    return False
                items = arr[f.name]["items"]
                flat = np.array(list(itertools.chain.from_iterable(values)), dtype=items.dtype)
                if flat.ndim != 1:
                    return False
                _scatter(items, flat, lens)
                arr[f.name]["len"] = lens
                continue
        except (OverflowError, ValueError, TypeError, AttributeError, UnicodeError):
            return False
        column, where = arr[f.name], f"{lay.name}.{f.name}"
        for i, v in enumerate(values):  # Arrays, Lists, nested messages: one value at a time
            _put(t, column, i, v, where)
    return True


def _scatter(dst: np.ndarray, flat: np.ndarray, lens: np.ndarray) -> None:
    """Row i of ``dst`` (n, bound) starts with the next ``lens[i]`` elements of ``flat``."""
    if not len(flat):
        return
    rows = np.repeat(np.arange(len(lens)), lens)
    starts = np.cumsum(lens) - lens
    dst[rows, np.arange(len(flat)) - np.repeat(starts, lens)] = flat


def _put(t, arr: np.ndarray, idx: int, value: Any, where: str) -> None:
    if isinstance(t, ScalarType):
        arr[idx] = _as(value, arr.dtype, where)
    elif isinstance(t, ArrayType):
        sub = arr[idx]
        if len(value) != t.length:
            raise EncodeError(f"{where}: Array of length {t.length} got {len(value)} elements")
        if isinstance(t.elem, MessageType):
            for k, v in enumerate(value):
                _put(t.elem, sub, k, v, f"{where}[{k}]")
        else:
            sub[...] = _as(value, sub.dtype, where)
    elif isinstance(t, StrType):
        raw = value.encode("utf-8")
        if len(raw) > t.max_bytes:
            raise EncodeError(
                f"{where}: Str[{t.max_bytes}] holds at most {t.max_bytes} UTF-8 bytes, got {len(raw)}"
            )
        arr["len"][idx] = len(raw)
        arr["data"][idx][: len(raw)] = np.frombuffer(raw, np.uint8)
    elif isinstance(t, ListType):
        if len(value) > t.max_len:
            raise EncodeError(
                f"{where}: {describe_type(t)} holds at most {t.max_len} elements, got {len(value)}"
            )
        arr["len"][idx] = len(value)
        items = arr["items"][idx]
        if isinstance(t.elem, MessageType):
            for k, v in enumerate(value):
                _put(t.elem, items, k, v, f"{where}[{k}]")
        elif len(value):
            items[: len(value)] = _as(value, items.dtype, where)
    elif isinstance(t, MessageType):
        lay = layout_of(t.cls)
        if type(value) is not t.cls:
            raise EncodeError(f"{where}: expected a {lay.name}, got {type(value).__name__}")
        for f in lay.fields:
            _put(f.type, arr[f.name], idx, getattr(value, f.name), f"{where}.{f.name}")
    else:
        raise TypeError(t)


def _as(value: Any, dtype: np.dtype, where: str) -> np.ndarray:
    """``value`` as an array of ``dtype`` (never through float64, which would round big integers)."""
    try:
        return np.asarray(value, dtype=dtype)
    except (OverflowError, ValueError, TypeError) as exc:
        raise EncodeError(f"{where}: {value!r} does not fit {dtype} ({exc})") from None


def view_to_objects(cls: type, arr: np.ndarray) -> list:
    """The message objects of view rows (Arrays and Lists as Python lists).

    Raises:
        WireFormatError: a row's ``len`` exceeds its bound or a Str's bytes are not UTF-8.
    """
    lay = layout_of(cls)
    arr = np.asarray(arr)
    if arr.dtype != lay.dtype:
        raise TypeError(f"{lay.name} view rows need dtype {lay.dtype}, got {arr.dtype}")
    arr = arr.reshape(-1)
    cols = [arr[f.name] for f in lay.fields]
    return [
        cls(*[_get(f.type, c, i, f"{lay.name}.{f.name}") for f, c in zip(lay.fields, cols)])
        for i in range(len(arr))
    ]


def _get(t, arr: np.ndarray, idx: int, where: str) -> Any:
    if isinstance(t, ScalarType):
        return arr[idx].item()
    if isinstance(t, ArrayType):
        sub = arr[idx]
        if isinstance(t.elem, MessageType):
            return [_get(t.elem, sub, k, f"{where}[{k}]") for k in range(t.length)]
        return sub.tolist()
    if isinstance(t, StrType):
        n = int(arr["len"][idx])
        if n > t.max_bytes:
            raise _view_error(where, idx, f"len {n} over the bound Str[{t.max_bytes}]")
        try:
            return arr["data"][idx][:n].tobytes().decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _view_error(where, idx, f"not UTF-8: {exc.reason}", Reason.BAD_UTF8) from None
    if isinstance(t, ListType):
        n = int(arr["len"][idx])
        if n > t.max_len:
            raise _view_error(where, idx, f"len {n} over the bound {t.max_len}")
        items = arr["items"][idx]
        if isinstance(t.elem, MessageType):
            return [_get(t.elem, items, k, f"{where}[{k}]") for k in range(n)]
        return items[:n].tolist()
    if isinstance(t, MessageType):
        lay = layout_of(t.cls)
        return t.cls(*[_get(f.type, arr[f.name], idx, f"{where}.{f.name}") for f in lay.fields])
    raise TypeError(t)


def _view_error(where: str, row: int, detail: str, reason: Reason = Reason.BAD_PAYLOAD):
    err = WireFormatError(f"{where} (row {row}): {reason.name}: {detail}")
    err.offset, err.field, err.reason = row, where, reason
    return err


# ------------------------------------------------------------------------------------ columns -> view


def columns_to_view(cls: type, columns: dict) -> np.ndarray:
    """A view array from a dict of columns, one per field.

    Scalars and Arrays take numeric arrays; a ``Str`` column may be a numpy ``S`` (UTF-8 bytes) or
    ``U`` array, or a list of str; a ``List`` column a ``(lengths, items)`` pair with ``items`` of
    shape ``(n, N, ...)``, or a list of sequences; a nested message column its view rows.

    Raises:
        EncodeError: a field is missing, or a value exceeds its bound (names the field and the row).
    """
    lay = layout_of(cls)
    missing = [f.name for f in lay.fields if f.name not in columns]
    if missing:
        raise EncodeError(f"{lay.name} batch: no column for {', '.join(missing)}")
    n = (
        len(columns[lay.fields[0].name])
        if not isinstance(columns[lay.fields[0].name], tuple)
        else len(columns[lay.fields[0].name][0])
    )
    view = np.zeros(n, dtype=lay.dtype)
    for f in lay.fields:
        col, where = columns[f.name], f"{lay.name}.{f.name}"
        try:
            _put_column(f, view[f.name], col, where)
        except (ValueError, TypeError, IndexError, OverflowError) as exc:
            if isinstance(exc, EncodeError):
                raise
            raise EncodeError(
                f"{where}: the column does not fit {n} rows of {describe_type(f.type)} "
                f"(column: {_describe_column(col)}; {exc})"
            ) from None
    return view


def _put_column(f: Any, dst: np.ndarray, col: Any, where: str) -> None:
    """Write one field's column into the view column ``dst`` (numpy raises on a misfit)."""
    if isinstance(f.type, StrType):
        _str_column(dst, col, f.type.max_bytes, where)
    elif isinstance(f.type, ListType) and isinstance(col, tuple):
        lens, items = np.asarray(col[0]), np.asarray(col[1])
        if items.ndim < 2:
            raise ValueError(f"List items must have shape (rows, N, ...), got {items.shape}")
        _check_lens(lens, f.type.max_len, where, "elements")
        dst["len"] = lens
        dst["items"][:, : items.shape[1]] = items
    elif isinstance(f.type, ListType):
        for i, value in enumerate(col):
            _put(f.type, dst, i, value, where)
    else:
        arr = np.asarray(col)
        # exactly one value per row: numpy would broadcast a (4,) column into every row of (4, 4)
        if arr.shape != dst.shape and arr.ndim != 0:
            raise ValueError(f"expected shape {dst.shape}")
        dst[...] = arr


def _describe_column(col: Any) -> str:
    if isinstance(col, tuple):
        return "(" + ", ".join(_describe_column(c) for c in col) + ")"
    arr = col if isinstance(col, np.ndarray) else None
    if arr is None:
        return type(col).__name__ + (f" of {len(col)}" if hasattr(col, "__len__") else "")
    return f"{arr.dtype} array of shape {arr.shape}"


def _check_lens(lens: np.ndarray, bound: int, where: str, unit: str) -> None:
    over = np.flatnonzero(lens > bound)
    if len(over):
        i = int(over[0])
        raise EncodeError(
            f"{where}: row {i} has {int(lens[i])} {unit}, the bound is {bound} "
            f"({len(over)} rows over it)"
        )


def _str_column(dst: np.ndarray, col: Any, bound: int, where: str) -> None:
    col = np.asarray(col)
    if col.dtype.kind == "U" or col.dtype == object:
        col = np.char.encode(col.astype("U"), "utf-8")
    if col.dtype.kind != "S":
        raise EncodeError(
            f"{where}: a Str column must hold str or UTF-8 bytes, got dtype {col.dtype}"
        )
    lens = np.char.str_len(col)
    _check_lens(lens, bound, where, "UTF-8 bytes")
    k = min(col.dtype.itemsize, bound)
    if k:
        raw = col.view(np.uint8).reshape(len(col), col.dtype.itemsize)
        dst["data"][:, :k] = raw[:, :k]
    dst["len"] = lens


# ---------------------------------------------------------------------------------------- view -> slots


def _row_bytes(col: np.ndarray, n: int) -> np.ndarray:
    """The bytes of each row of a column, shape (n, itemsize)."""
    col = np.ascontiguousarray(col)
    return col.view(np.uint8).reshape(n, -1)


def _write(pay: np.ndarray, pos: Any, block: np.ndarray) -> None:
    """Write ``block`` (n, k) into each row of ``pay`` at ``pos`` (an int, or one offset per row)."""
    k = block.shape[1]
    if isinstance(pos, int):
        pay[:, pos : pos + k] = block
        return
    cols = np.arange(k, dtype=np.int64)
    for r in range(0, len(pay), _CHUNK):
        idx = pos[r : r + _CHUNK, None] + cols
        np.put_along_axis(pay[r : r + _CHUNK], idx, block[r : r + _CHUNK], axis=1)


def encode_batch(
    cls: type,
    batch: Any,
    *,
    sender: int = 0,
    receiver: int = 0,
    sequence: int = 0,
    timestamp: Optional[int] = None,
    out: Optional[np.ndarray] = None,
) -> np.ndarray:
    """The queue slots of a whole batch of bridged messages, shape ``(n, slot_size)``, uint8.

    Args:
        batch: view rows (``layout_of(cls).dtype``), a dict of columns (``columns_to_view``), or a list
            of message objects.
        sequence: the first row's sequence number; row i gets ``sequence + i``.
        timestamp: UTC ticks for every row (default: now).
        out: a preallocated ``(n, slot_size)`` uint8 array to fill (saves the allocation). Bytes of a
            slot past its message's total size are then left as they were when every row has the
            same length (decoders never read them), and zeroed otherwise.
    Returns:
        the slots: row i holds header + payload of message i, zero-padded to the slot size.
    Raises:
        EncodeError: a Str or List is over its bound or a Str is not UTF-8 (names field and row).
    """
    lay = layout_of(cls)
    if not lay.is_bridged:
        raise EncodeError(
            f"{lay.name} is a direct message: its batch is its structured array as bytes"
        )
    if isinstance(batch, dict):
        view = columns_to_view(cls, batch)
    elif isinstance(batch, np.ndarray):
        view = batch.reshape(-1)
        if view.dtype != lay.dtype:
            raise EncodeError(f"{lay.name} batch needs dtype {lay.dtype}, got {view.dtype}")
    else:
        objs = list(batch)
        # shapes without a columnar spelling encode each object directly (no trip through a view)
        view = objects_to_view(cls, objs) if _program_ok(lay) else None
    n, slot = len(view) if view is not None else len(objs), lay.slot_size
    check_header_values(
        f"{lay.name} batch",
        max(1, n),
        sender=sender,
        receiver=receiver,
        sequence=sequence,
        timestamp=timestamp,
    )
    fresh = out is None
    if out is None:
        out = np.zeros((n, slot), dtype=np.uint8)
    else:
        if out.shape != (n, slot) or out.dtype != np.uint8:
            raise ValueError(
                f"out must be a ({n}, {slot}) uint8 array, got {out.dtype} {out.shape}"
            )
    if n == 0:
        return out
    stamp = now_ticks() if timestamp is None else timestamp
    if view is None:
        _encode_objects(cls, objs, out, fresh, sender, receiver, sequence, stamp)
        return out
    # the native encoder checks bounds and UTF-8 itself; on a bad row it declines and the numpy path
    # below raises the error, naming field and row
    if native.encode_view(cls, lay, view, out, fresh, sender, receiver, sequence, stamp):
        return out
    if not fresh:
        out[:, HEADER_USED:HEADER_SIZE] = 0  # the header's reserved tail
    for f in lay.fields:  # top-level bounds first, so both paths name field and row alike
        if isinstance(f.type, (StrType, ListType)):
            bound = f.type.max_bytes if isinstance(f.type, StrType) else f.type.max_len
            unit = "UTF-8 bytes" if isinstance(f.type, StrType) else "elements"
            _check_lens(view[f.name]["len"], bound, f"{lay.name}.{f.name}", unit)
    # Chunks of rows keep every temporary in cache; a whole 1M-row batch at once runs at half speed.
    for r in range(0, n, _BATCH_CHUNK):
        _encode_rows(
            cls,
            lay,
            view[r : r + _BATCH_CHUNK],
            out[r : r + _BATCH_CHUNK],
            fresh,
            sender,
            receiver,
            sequence + r,
            stamp,
        )
    return out


def _encode_rows(cls, lay, view, out, fresh, sender, receiver, sequence, stamp) -> None:
    """Header and payload of ``len(view)`` rows into ``out`` (one chunk of ``encode_batch``)."""
    n = len(view)
    pay = out[:, HEADER_SIZE:]
    if all(_columnar_ok(f.type) for f in lay.fields):
        lengths = _payloads_columnar(lay, view, pay)
        if fresh is False and not isinstance(lengths, int):
            # rows of different lengths: the CRC (and the decoder's view of the slot) need zeros
            # after each row's end, which a reused buffer may not have
            pay[np.arange(pay.shape[1]) >= np.asarray(lengths)[:, None]] = 0
    else:
        lengths = _payloads_per_message(cls, view, out)
    lengths_arr = np.broadcast_to(np.asarray(lengths, dtype=np.int64), (n,))
    # the 52 used header bytes, built as a packed array and copied into the slots in one go
    hv = np.zeros(n, dtype=_HEADER_USED_DTYPE)
    hv["magic"] = MAGIC
    hv["total_size"] = HEADER_SIZE + lengths_arr
    hv["timestamp"] = stamp
    hv["sender"] = sender
    hv["receiver"] = receiver
    hv["type_id"] = lay.type_id
    hv["sequence"] = np.arange(sequence, sequence + n, dtype=np.uint64)
    if isinstance(lengths, int):
        hv["payload_crc"] = crc32_rows(pay[:, :lengths])
    else:
        hv["payload_crc"] = crc32_rows(pay, lengths_arr)
    out[:, :HEADER_USED] = hv.view(np.uint8).reshape(n, HEADER_USED)


@functools.lru_cache(maxsize=None)
def _program_ok(lay: MessageLayout) -> bool:
    return all(_columnar_ok(f.type) for f in lay.fields)


def _encode_objects(cls, objs, out, fresh, sender, receiver, sequence, stamp) -> None:
    """Each object through the generated encoder, straight into its slot."""
    encode, name = bridged_codec(cls).encode, layout_of(cls).name
    for i, obj in enumerate(objs):
        if type(obj) is not cls:
            raise EncodeError(f"{name} batch: row {i} is a {type(obj).__name__}")
        data = encode(obj, sender=sender, receiver=receiver, sequence=sequence + i, timestamp=stamp)
        out[i, : len(data)] = np.frombuffer(data, np.uint8)
        if not fresh:
            out[i, len(data) :] = 0


def _payloads_per_message(cls: type, view: np.ndarray, out: np.ndarray) -> np.ndarray:
    codec = bridged_codec(cls)
    lengths = np.empty(len(view), dtype=np.int64)
    try:
        objs = view_to_objects(cls, view)
    except WireFormatError as exc:
        raise EncodeError(f"{layout_of(cls).name} batch: {exc.message}") from None
    for i, obj in enumerate(objs):
        data = codec.encode(obj)
        out[i, : len(data)] = np.frombuffer(data, np.uint8)
        out[i, len(data) :] = 0
        lengths[i] = len(data) - HEADER_SIZE
    return lengths


def _payloads_columnar(lay: MessageLayout, view: np.ndarray, pay: np.ndarray) -> Any:
    """Write every payload; return the payload length (an int when every row has the same)."""
    n = len(view)
    # every field's bytes are a column slice of the view rows seen as bytes: no per-field copy
    raw = np.ascontiguousarray(view).view(np.uint8).reshape(n, lay.size)
    pay[:, 0] = len(lay.fields)
    pos: Any = 1
    run: list = (
        []
    )  # [view start, view end, payload pos]: scalars adjacent in both, written as one slice

    def flush_run() -> None:
        if run:
            _write(pay, run[2], raw[:, run[0] : run[1]])
            run.clear()

    for f in lay.fields:
        t, where = f.type, f"{lay.name}.{f.name}"
        field = raw[:, f.offset : f.offset + f.size]
        if isinstance(t, ScalarType):
            if run and run[1] == f.offset and isinstance(pos, int):
                run[1] += t.size
            else:
                flush_run()
                run[:] = [f.offset, f.offset + t.size, pos]
            pos = pos + t.size
            continue
        flush_run()
        if isinstance(t, ArrayType):
            _write(pay, pos, np.full((n, 1), t.length, dtype="<i4").view(np.uint8))
            _write(pay, pos + 4, field)
            pos = pos + 4 + f.size
        elif isinstance(t, MessageType):
            _write(pay, pos, field * _padding_mask(layout_of(t.cls)))
            pos = pos + f.size
        elif isinstance(t, StrType):
            lens = view[f.name]["len"].astype(np.int64)
            data = field[:, 4 : 4 + t.max_bytes]
            # bytes past a row's len may be garbage: keep them off the wire
            if (lens < t.max_bytes).any():
                data = data * (np.arange(t.max_bytes) < lens[:, None]).view(np.uint8)
            units = _utf16_units(data, lens, where)
            head = np.zeros((n, 2), dtype="<i4")
            nz = lens > 0
            head[:, 0] = np.where(nz, ~lens, 0)
            head[:, 1] = np.where(nz, units, 0)
            _write(pay, pos, head.view(np.uint8))
            _write(pay, pos + 8, data)
            pos = pos + np.where(nz, 8 + lens, 4)
        else:  # List of scalars or of direct messages
            lens = view[f.name]["len"].astype(np.int64)
            esize = layout_of(t.elem.cls).size if isinstance(t.elem, MessageType) else t.elem.size
            items_off = layout_of_list_items(t)
            items = field[:, items_off : items_off + esize * t.max_len]
            if isinstance(t.elem, MessageType):
                items = items * np.tile(_padding_mask(layout_of(t.elem.cls)), t.max_len)
            items = np.where(np.arange(items.shape[1]) < (lens * esize)[:, None], items, 0).astype(
                np.uint8
            )
            _write(pay, pos, lens.astype("<i4").reshape(n, 1).view(np.uint8))
            _write(pay, pos + 4, items)
            pos = pos + 4 + lens * esize
    flush_run()
    if not isinstance(pos, int) and (pos == pos[0]).all():
        return int(pos[0])
    return pos


def layout_of_list_items(t: ListType) -> int:
    """Offset of ``items`` inside a List view struct (after ``len``, aligned for the element)."""
    return type_dtype(t).fields["items"][1]


def _utf16_units(data: np.ndarray, lens: np.ndarray, where: str) -> np.ndarray:
    """UTF-16 length of each row's UTF-8 bytes, after checking the non-ASCII rows are valid UTF-8."""
    if data.size == 0 or data.max() < 0x80:  # all ASCII: one unit per byte
        return lens
    rows = np.flatnonzero((data >= 0x80).any(axis=1))
    for i in rows:
        try:
            data[i, : lens[i]].tobytes().decode("utf-8")
        except UnicodeDecodeError as exc:
            raise EncodeError(
                f"{where}: row {int(i)} is not UTF-8 ({exc.reason} at byte {exc.start})"
            ) from None
    valid = np.arange(data.shape[1]) < lens[:, None]
    starts = ((data & 0xC0) != 0x80) & valid
    astral = (data >= 0xF0) & valid
    return starts.sum(axis=1) + astral.sum(axis=1)
