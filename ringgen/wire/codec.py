"""Message codecs and the public ``encode``/``decode``: bytes in, messages out, for every message kind.

A *direct* message's bytes are its C struct (the queue slot, byte for byte). A *bridged* message's bytes
are the 256-byte header plus its MemoryPack payload (docs/wire-format.md). ``BridgedCodec`` implements
the codec interface of docs/architecture.md ("Codecs") for bridged classes; the generated ``bridged.py``
builds one per class around its specialised encoder and decoder.

``encode_reference``/``decode_reference`` are the readable definition of a whole message, with full
validation in the order the device codec follows: size, magic, total size, type id, CRC, payload,
trailing bytes. Every failure is a ``WireFormatError`` carrying ``offset``, ``field`` and ``reason``.
"""

from __future__ import annotations

import functools
import struct
import zlib
from typing import Any, Callable, Iterable, Optional

import numpy as np

from ..errors import EncodeError, WireFormatError
from ..layout import MessageLayout, layout_of
from ..protocol import Reason
from .compiled import bridged_codec
from .direct_codec import direct_codec
from .header import (
    HEADER_CHECKS,
    HEADER_FIELDS,
    HEADER_SIZE,
    MAGIC,
    Header,
    check_header_values,
    now_ticks,
)
from .memorypack import decode_payload, encode_payload, wire_error

__all__ = [
    "BridgedCodec",
    "codec_for",
    "decode",
    "decode_reference",
    "encode",
    "encode_reference",
    "byte_view",
    "message_bytes",
]

_TOTAL = struct.Struct("<Q")


def byte_view(data: Any, cls: Any = None) -> Any:
    """``data`` as a flat byte view: bytes-like objects and numpy arrays of any layout (a strided
    array is copied once); ``cls`` names the message in the error.

    Raises:
        WireFormatError: ``data`` is not a buffer (a list, a str, ...), naming the argument.
    """
    try:
        view = memoryview(data)
    except TypeError:
        what = f"rg.decode({cls.__name__}, data)" if cls is not None else "decode"
        raise WireFormatError(
            f"{what}: data must be bytes, bytearray, memoryview or a numpy array, "
            f"got {type(data).__qualname__}",
            hint="pass rg.encode's bytes, or a slot of a queue (a uint8 array)",
        ) from None
    if not view.c_contiguous:
        return memoryview(view.tobytes())  # a strided array (every other byte): one copy
    return view.cast("B") if view.ndim != 1 or view.format != "B" else view


def message_bytes(data: Any) -> bytes:
    """The bytes of the one message at the start of ``data`` (cut at its header's total size).

    Anything too short to say, or whose total size is below the header's, is returned whole, for the
    decoder to reject with the Reason of the first check that fails (``HEADER_CHECKS``).
    """
    if type(data) is not bytes:
        data = byte_view(data)
    if len(data) >= 12:
        total = _TOTAL.unpack_from(data, 4)[0]
        if HEADER_SIZE <= total < len(data):
            return bytes(data[:total])
    return data if type(data) is bytes else bytes(data)


def encode_reference(
    cls: type,
    obj: Any,
    *,
    sender: int = 0,
    receiver: int = 0,
    sequence: int = 0,
    timestamp: Optional[int] = None,
    flags: int = 0,
    reason: int = 0,
) -> bytes:
    """Header + payload of the bridged message ``obj``, field by field (the slow, readable path).

    Raises:
        EncodeError: a Str or List exceeds its bound (the message names class, field and bound), an
            Array has the wrong length, or a value does not fit its type.
    """
    check_header_values(
        cls.__name__,
        sender=sender,
        receiver=receiver,
        sequence=sequence,
        timestamp=timestamp,
        flags=flags,
        reason=reason,
    )
    payload = encode_payload(cls, obj)
    header = Header(
        total_size=HEADER_SIZE + len(payload),
        timestamp=now_ticks() if timestamp is None else timestamp,
        sender=sender,
        receiver=receiver,
        type_id=layout_of(cls).type_id,
        sequence=sequence,
        payload_crc=zlib.crc32(payload),
        flags=flags,
        reason=reason,
    )
    try:
        return header.pack() + payload
    except struct.error as exc:
        raise EncodeError(f"{cls.__name__}: a header field is out of range ({exc})") from None


def check_header(cls: type, data: Any) -> tuple[Header, int]:
    """Validate the header of a bridged ``cls`` message in ``data``; return it and the payload end.

    The checks run in the order of ``ringgen.wire.header.HEADER_CHECKS``, shared with the device
    codec; bytes ``data`` lacks read as zero, as in a zero-padded queue slot.

    Raises:
        WireFormatError: BAD_MAGIC, BAD_SIZE, BAD_TYPE or BAD_CRC: the first check that fails.
    """
    lay = layout_of(cls)
    have = len(data)
    header = Header.unpack_padded(data)
    for field, reason, _ in HEADER_CHECKS:
        detail = _HEADER_CHECKERS[field](header, data, have, lay)
        if detail is not None:
            offset = _HEADER_OFFSETS[field]
            raise wire_error(offset, f"{lay.name}.header.{field}", reason, detail)
    return header, header.total_size


def _check_magic(header: Header, data: Any, have: int, lay: MessageLayout) -> Optional[str]:
    if header.magic != MAGIC:
        return f"0x{header.magic:08x}, expected 0x{MAGIC:04x}"
    return None


def _check_total_size(header: Header, data: Any, have: int, lay: MessageLayout) -> Optional[str]:
    total, top = header.total_size, min(have, lay.slot_size)
    if not HEADER_SIZE <= total <= top:
        return f"{total}: must be {HEADER_SIZE}..{top} ({have} bytes given, slot {lay.slot_size})"
    return None


def _check_type_id(header: Header, data: Any, have: int, lay: MessageLayout) -> Optional[str]:
    if header.type_id != lay.type_id:
        return f"0x{header.type_id:08x}, {lay.name} is 0x{lay.type_id:08x}"
    return None


def _check_payload_crc(header: Header, data: Any, have: int, lay: MessageLayout) -> Optional[str]:
    crc = zlib.crc32(memoryview(data)[HEADER_SIZE : header.total_size])
    if crc != header.payload_crc:
        return f"header says 0x{header.payload_crc:08x}, payload has 0x{crc:08x}"
    return None


#: One checker per entry of HEADER_CHECKS: the detail of a failure, or None.
_HEADER_CHECKERS = {
    "magic": _check_magic,
    "total_size": _check_total_size,
    "type_id": _check_type_id,
    "payload_crc": _check_payload_crc,
}
_HEADER_OFFSETS = {name: offset for name, _, offset, _ in HEADER_FIELDS}


def decode_reference(cls: type, data: Any, *, with_header: bool = False) -> Any:
    """The bridged ``cls`` message in ``data``, fully validated (the slow, readable path).

    Raises:
        WireFormatError: with ``offset``, ``field`` and ``reason`` (a ``ringgen.protocol.Reason``).
    """
    if type(data) is not bytes:
        data = bytes(byte_view(data, cls))
    header, total = check_header(cls, data)
    obj, end = decode_payload(cls, data, HEADER_SIZE, total)
    if end != total:
        raise wire_error(
            end,
            cls.__name__,
            Reason.BAD_SIZE,
            f"{total - end} bytes after the payload's last member",
        )
    return (header, obj) if with_header else obj


class BridgedCodec:
    """The codec of one bridged message class (docs/architecture.md, "Codecs").

    ``encode_fn(obj, sender, receiver, sequence, timestamp, flags, reason) -> bytes`` and
    ``decode_fn(data) -> obj`` are the class's generated functions. Batches use the view dtype (the
    struct the device decodes into) and the columnar encoder.

    ``decode(data)`` is the native per-message decoder (``ringgen.wire.native_ext.fast_decoder``)
    once resolved, which hands anything irregular to ``decode_fn``; ``decode_fn`` itself with no
    extension or ``RINGGEN_NO_NATIVE=1`` (set before the first decode). ``decoder()`` resolves it
    at once, for callers that keep it.
    """

    bridged = True

    def __init__(self, cls: type, encode_fn: Callable[..., bytes], decode_fn: Callable[[Any], Any]):
        self.cls = cls
        self.layout: MessageLayout = layout_of(cls)
        self.dtype: np.dtype = self.layout.dtype
        self.slot_size: int = self.layout.slot_size
        self.type_id: int = self.layout.type_id
        self.encode = encode_fn
        self._python_decode = decode_fn
        # the first decode resolves the decoder, then this attribute is the native decoder (or
        # decode_fn): later lookups of codec.decode call it with no Python frame in between
        self.decode: Callable[..., Any] = self._first_decode
        # the native per-message encoder, False without one; resolved on the first pack so that
        # creating a codec never compiles anything
        self._fast: Any = None
        self._fast_decode: Any = None

    @property
    def name(self) -> str:
        return self.layout.name

    def __repr__(self) -> str:
        return (
            f"<BridgedCodec {self.name}: slot {self.slot_size} bytes, type id 0x{self.type_id:08x}>"
        )

    def _python_pack(
        self,
        buf: Any,
        offset: int,
        obj: Any,
        sender: int = 0,
        receiver: int = 0,
        sequence: int = 0,
        timestamp: Optional[int] = None,
    ) -> Optional[bytes]:
        """The generated encoder's path: the bytes when ``buf`` is None, else written into it."""
        data = self.encode(obj, sender, receiver, sequence, timestamp)
        if buf is None:
            return data
        memoryview(buf).cast("B")[offset : offset + len(data)] = data
        return None

    def _native(self) -> Optional[Callable[..., Any]]:
        """The native per-message encoder of this class (``ringgen.wire.native_ext``), resolved
        (and built, on first use in a fresh cache) on the first pack; None without one."""
        if self._fast is None:
            from .native_ext import fast_encoder

            self._fast = fast_encoder(self.cls, self._python_pack) or False
            if self._fast:
                # later lookups of codec.pack/pack_into find these C partials: no Python frame
                self.pack_into = self._fast
                self.pack = functools.partial(self._fast, None, 0)
        return self._fast or None

    def decoder(self) -> Callable[..., Any]:
        """The decoder of one message, resolved (and the extension built, on first use in a fresh
        cache) now: the native ``fast_decoder`` of this class, called as ``(data)`` or ``(buffer,
        offset, limit)`` for a slot read in place, or the generated decoder ``(data)`` without
        one. ``codec.decode`` is the same callable from then on."""
        if self._fast_decode is None:
            from .native_ext import fast_decoder

            self._fast_decode = fast_decoder(self.cls, self._python_decode) or False
            self.decode = self._fast_decode or self._python_decode
        return self.decode

    def slot_decoder(self) -> Callable[[Any, int, int], Any]:
        """``(buffer, offset, size) -> message``: the message in the ``size``-byte slot at
        ``buffer[offset:]`` (a memoryview of a ring), what ``decode`` gives for the slot's bytes,
        object or error. The native decoder reads the slot in place; the generated decoder gets a
        copy of it. Resolved now, like ``decoder()``."""
        fast = self.decoder()
        if self._fast_decode:
            return fast
        python = self._python_decode

        def decode_slot(buffer: Any, offset: int, size: int) -> Any:
            return python(memoryview(buffer).cast("B")[offset : offset + size].tobytes())

        return decode_slot

    def _first_decode(self, data: Any) -> Any:
        """``decode`` before the decoder is resolved: resolves it, then decodes ``data``."""
        return self.decoder()(data)

    def pack(self, obj: Any) -> bytes:
        """Header + payload of one message (not padded to the slot).

        One native call when the extension covers the class and the values (``ringgen.wire.
        native_ext``); otherwise, or with ``RINGGEN_NO_NATIVE=1`` set before the first pack, the
        generated encoder, which gives the same bytes and raises the precise ``EncodeError``.
        """
        fast = self._native()
        return self.encode(obj) if fast is None else fast(None, 0, obj)

    def pack_into(self, buf: Any, offset: int, obj: Any) -> None:
        """Write one message into ``buf`` at ``offset`` (the rest of the slot is left as it is).

        Natively when it can (see ``pack``): straight into ``buf``, writing nothing unless the
        whole message encodes; else through the generated encoder.
        """
        fast = self._native()
        if fast is None:
            self._python_pack(buf, offset, obj)
        else:
            fast(buf, offset, obj)

    def unpack(self, buf: Any, offset: int = 0) -> Any:
        """The message in the slot at ``offset`` of ``buf``.

        Raises:
            WireFormatError: the slot does not hold a well-formed message of this class.
        """
        view = memoryview(buf).cast("B")
        if self._fast_decode is None:
            self.decoder()
        if self._fast_decode:  # read in place: no slice of the view per message
            return self._fast_decode(view, offset, self.slot_size)
        return self._python_decode(view[offset : offset + self.slot_size])

    def to_array(self, objs: Iterable[Any]) -> np.ndarray:
        """The view rows of ``objs`` (``Str`` as ``{len, data}``, ``List`` as ``{len, items}``)."""
        from .columnar import objects_to_view

        return objects_to_view(self.cls, objs)

    def from_array(self, arr: np.ndarray) -> list:
        """The message objects of view rows."""
        from .columnar import view_to_objects

        return view_to_objects(self.cls, arr)

    def encode_batch(self, batch: Any, **header: Any) -> np.ndarray:
        """Slots for a whole batch, shape ``(n, slot_size)``: see ``ringgen.wire.columnar.encode_batch``."""
        from .columnar import encode_batch

        return encode_batch(self.cls, batch, **header)

    def pack_array(self, arr: np.ndarray) -> bytes:
        """The slots of every view row, back to back (columnar: no Python loop per message)."""
        return self.encode_batch(arr).tobytes()

    def unpack_array(
        self, buf: Any, n: Optional[int] = None, out: Optional[np.ndarray] = None
    ) -> np.ndarray:
        """View rows decoded from ``n`` consecutive slots (default: as many as ``buf`` holds), in
        one call of the columnar decoder (``ringgen.wire.columnar_decode.decode_batch``).

        Args:
            buf: bytes holding whole slots back to back, an array of slot records
                (``np.dtype((np.void, k))``, ``k >= slot_size``), or an ``(n, k)`` uint8 array.
            n: how many slots to decode (default: all of them).
            out: ``n`` contiguous view rows to fill instead of allocating.

        Raises:
            WireFormatError: a slot is malformed, or ``buf`` is shorter than ``n`` slots.
        """
        from .columnar_decode import decode_batch

        if isinstance(buf, np.ndarray):
            slots = buf if n is None else buf[:n]
            if n is not None and len(slots) < n:
                raise WireFormatError(f"{n} {self.name} slots wanted, the array holds {len(buf)}")
        else:
            view = memoryview(buf).cast("B")
            if n is None:
                n = len(view) // self.slot_size
            if len(view) < n * self.slot_size:
                raise WireFormatError(
                    f"{n} {self.name} slots need {n * self.slot_size} bytes, got {len(view)}"
                )
            slots = np.frombuffer(view, np.uint8, n * self.slot_size).reshape(n, self.slot_size)
        return decode_batch(self.cls, slots, out=out, decode=self.decode)


@functools.lru_cache(maxsize=None)
def codec_for(cls: type) -> Any:
    """The (cached) codec of a message class: a ``DirectCodec`` derived from the layout for a direct
    class (``direct_codec``), generated and compiled in memory for a bridged one.

    A bridged class's codec comes from ``ringgen.wire.compiled``, the one place the wire library
    reaches back into the generator (lazily).
    """
    if not layout_of(cls).is_bridged:
        return direct_codec(cls)
    return bridged_codec(cls)


# type -> encoder(message, sender, receiver, sequence, timestamp): a plain dict lookup is the fast path
_ENCODERS: dict[type, Callable[..., bytes]] = {}


def _encoder_for(cls: type) -> Callable[..., bytes]:
    codec = codec_for(cls)
    if codec.bridged:
        fast = codec._native()
        if fast is None:
            fn = codec.encode
        else:
            # the native encoder writes the same bytes, and hands anything it cannot encode (with
            # the same arguments) to the generated encoder, which raises the precise EncodeError
            def fn(message, sender, receiver, sequence, timestamp, _fast=fast):
                return _fast(None, 0, message, sender, receiver, sequence, timestamp)

    else:

        def fn(message, sender, receiver, sequence, timestamp, _encode=codec.encode):
            return _encode(
                message, sender=sender, receiver=receiver, sequence=sequence, timestamp=timestamp
            )

    _ENCODERS[cls] = fn
    return fn


def encode(
    message: Any,
    *,
    sender: int = 0,
    receiver: int = 0,
    sequence: int = 0,
    timestamp: Optional[int] = None,
) -> bytes:
    """The wire bytes of ``message``: header + MemoryPack payload when bridged, the C struct when direct.

    ``timestamp`` is in UTC ticks (``ringgen.wire.header.now_ticks()``, the default). A direct message
    has no header, so ``sender``/``receiver``/``sequence``/``timestamp`` must stay unset for it.

    Raises:
        EncodeError: a Str or List is over its bound, a value does not fit its type, or header fields
            were given for a direct message.
        SchemaError: ``message`` is not an instance of a ringgen message class.
    """
    fn = _ENCODERS.get(type(message))
    if fn is None:
        fn = _encoder_for(type(message))
    try:
        return fn(message, sender, receiver, sequence, timestamp)
    except (struct.error, OverflowError, TypeError):
        # checked only on failure, off the fast path: name the header argument at fault
        check_header_values(
            type(message).__name__,
            sender=sender,
            receiver=receiver,
            sequence=sequence,
            timestamp=timestamp,
        )
        raise


def decode(cls: type, data: Any, *, with_header: bool = False) -> Any:
    """The ``cls`` message held in ``data`` (bytes, bytearray, memoryview or a uint8 array).

    With ``with_header=True`` a bridged message comes back as ``(Header, message)``.

    Raises:
        WireFormatError: malformed bytes, with ``offset``, ``field`` and ``reason``.
    """
    codec = codec_for(cls)
    if type(data) is not bytes:
        data = byte_view(data, cls)  # a clear error for a non-buffer, one copy of a strided array
    if with_header:
        if not codec.bridged:
            raise WireFormatError(f"{cls.__name__} is a direct message: it has no header")
        obj = codec.decode(data)
        return Header.unpack(message_bytes(data)), obj
    return codec.decode(data)
