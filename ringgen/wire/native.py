"""The native batch helpers (``_native.c``): compiled with the system C compiler, loaded by ctypes.

The C source ships in the package. On first use it is compiled (``cc -O2 -shared -fPIC``) into a
cache entry under ``<ringgen cache>/native`` (``ringgen.cachestore``), named by a key made of the
source's sha256, the compiler's version and the platform. The entry lists the library's SHA-256 and
is moved into place whole, and it is checked (owner, mode, hash) before ``ctypes`` loads the
library, so a truncated, damaged or planted file is never loaded: it is rebuilt under a fresh name.
With no compiler, a failed build, an untrusted cache folder, a big-endian host or
``RINGGEN_NO_NATIVE=1`` in the environment, ``lib()`` returns None and callers use their numpy code
(the reference the tests compare against byte for byte); the reason is logged once through
``logging.getLogger("ringgen")``.

Each wrapper here makes one ctypes call per batch, never one per message. ``program_for`` compiles
a bridged layout into the op program ``rg_encode_rows`` runs (mirroring
``columnar._payloads_columnar`` field by field) and ``encode_view`` is the native form of
``columnar.encode_batch``.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import platform
import struct
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Optional

import numpy as np

from .. import cachestore
from ..layout import layout_of, type_dtype
from ..toolchain import find_c_compiler
from ..types import ArrayType, MessageType, ScalarType, StrType
from .header import HEADER_DTYPE, HEADER_SIZE, HEADER_STRUCT, HEADER_USED, MAGIC
from .shapes import _columnar_ok, _padding_mask

__all__ = [
    "ENV_DISABLE",
    "NativeRowError",
    "Program",
    "crc32_rows",
    "decode_slots",
    "encode_rows",
    "encode_view",
    "lib",
    "load",
    "program_for",
]

log = logging.getLogger(__name__)

#: Set to 1 to force the numpy fallbacks.
ENV_DISABLE = "RINGGEN_NO_NATIVE"

SOURCE = Path(__file__).with_name("_native.c")
_FLAGS = ("-O2", "-shared", "-fPIC")
_P = ctypes.c_void_p
_I = ctypes.c_int64

_lock = threading.Lock()
_loaded: Optional[ctypes.CDLL] = None
_tried = False


class NativeRowError(Exception):
    """The native encoder stopped at ``row`` (``kind``: 1 bound, 2 UTF-8, 3 slot overflow)."""

    def __init__(self, row: int, kind: int):
        super().__init__(f"native encoder: row {row} (error kind {kind})")
        self.row, self.kind = row, kind


def _cache_root() -> Path:
    """``<ringgen cache>/native``, created or checked (raises ``CacheError`` when not trusted)."""
    return cachestore.cache_subdir("native")


#: Headers the native sources include: part of every build's cache key.
HEADERS = tuple(Path(__file__).with_name(h) for h in ("_wire_common.h", "_decode.h"))


def _build(
    cc: str,
    root: Path,
    source: Path = SOURCE,
    flags: tuple = _FLAGS,
    suffix: str = ".so",
    prefix: str = "wire",
) -> Path:
    """The shared library for ``cc`` and ``source``, from a checked cache entry or compiled into a
    fresh one (``root/<prefix>-<key>[.N]/<prefix><suffix>``).

    The cache key covers the source, the shared headers, the compiler's version, the flags, the
    platform and ``suffix`` (native_ext.py builds its CPython extension through here too).

    Raises:
        CacheError: ``root`` is not trusted. RuntimeError: the compiler failed.
        OSError, subprocess.SubprocessError: the compiler or the cache could not be used.
    """
    version = subprocess.run(
        [cc, "--version"], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    key = hashlib.sha256()
    parts = (source.read_bytes(), *(h.read_bytes() for h in HEADERS), version.encode())
    for part in (*parts, " ".join(flags).encode(), suffix.encode()):
        key.update(part)
        key.update(b"\0")
    key.update(f"{sys.platform}-{platform.machine()}".encode())
    digest = key.hexdigest()
    name = f"{prefix}{suffix}"

    def compile_into(folder: Path) -> None:
        res = subprocess.run(
            [cc, *flags, "-o", str(folder / name), str(source)],
            capture_output=True,
            text=True,
            timeout=300,
        )
        if res.returncode != 0:
            raise RuntimeError(f"{cc} exited with {res.returncode}: {res.stderr.strip()[:2000]}")

    entry = cachestore.get_or_build(
        Path(root), f"{prefix}-{digest[:24]}", digest, compile_into, what=f"native {name}"
    )
    return entry.path / name


def usable_compiler(cc: Optional[str], fallback: str) -> Optional[str]:
    """The C compiler native code is built with, or None, logged with what happens instead.

    Native code is only built for a little-endian host (the wire format is little-endian and the
    C writes it with plain stores) that has a compiler (``cc``, else ``$CC``, cc, gcc or clang).
    ``fallback`` says what runs instead, e.g. "batch encoding uses numpy".
    """
    if sys.byteorder != "little":
        log.info("ringgen.wire: native code needs a little-endian host; %s", fallback)
        return None
    compiler = find_c_compiler(cc)
    if compiler is None:
        log.info("ringgen.wire: no C compiler found; %s", fallback)
    return compiler


def load(cache_dir: Optional[Path] = None, cc: Optional[str] = None) -> Optional[ctypes.CDLL]:
    """Build (if needed) and load the helpers; None, with the reason logged, when that fails.

    Args:
        cache_dir: where the library is kept (default ``$RINGGEN_CACHE_DIR/native``).
        cc: the compiler (default ``$CC``, else cc, gcc or clang from PATH).
    """
    compiler = usable_compiler(cc, "batch encoding uses numpy")
    if compiler is None:
        return None
    try:
        path = _build(compiler, Path(cache_dir) if cache_dir else _cache_root())
        dll = ctypes.CDLL(str(path))
    except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
        log.warning("ringgen.wire: native helpers unavailable, using numpy (%s)", exc)
        return None
    dll.rg_init.argtypes, dll.rg_init.restype = [], None
    dll.rg_crc32_rows.argtypes = [_P, _I, _I, _I, _P, _I, _P]
    dll.rg_crc32_rows.restype = None
    dll.rg_encode_rows.argtypes = [_P, _I, _I, _P, _I, _I, _P, _I, _P, _P, _I, _I, _I, _I]
    dll.rg_encode_rows.argtypes += [ctypes.c_uint64, _I]
    dll.rg_encode_rows.restype = _I
    dll.rg_decode_rows.argtypes = [_P, _I, _I, _I, _P, _I, _I, _P, _I, _P, _I]
    dll.rg_decode_rows.argtypes += [ctypes.c_uint32, ctypes.c_uint32, _I, _I, _I]
    dll.rg_decode_rows.restype = _I
    dll.rg_init()
    log.debug("ringgen.wire: native helpers loaded from %s", path)
    return dll


def lib() -> Optional[ctypes.CDLL]:
    """The loaded helpers, or None (``RINGGEN_NO_NATIVE=1``, or they could not be built)."""
    global _loaded, _tried
    if os.environ.get(ENV_DISABLE, "") not in ("", "0"):
        return None
    if not _tried:
        with _lock:
            if not _tried:
                _loaded = load()
                _tried = True
    return _loaded


def crc32_rows(rows: np.ndarray, lengths: Optional[np.ndarray]) -> Optional[np.ndarray]:
    """``zlib.crc32`` of every row (``rows[i, :lengths[i]]``), or None when the helpers are off.

    ``rows`` is a validated 2-D uint8 array; ``lengths`` None or int64 counts within the width.
    """
    dll = lib()
    if dll is None:
        return None
    if rows.strides[1] != 1:
        rows = np.ascontiguousarray(rows)
    n, width = rows.shape
    out = np.empty(n, dtype=np.uint32)
    if n:
        lens = None if lengths is None else np.ascontiguousarray(lengths, dtype=np.int64)
        dll.rg_crc32_rows(
            rows.ctypes.data,
            n,
            rows.strides[0],
            0,
            None if lens is None else lens.ctypes.data,
            width,
            out.ctypes.data,
        )
    return out


class Program:
    """An ``rg_encode_rows`` op program: int64 ops of shape (n, 6) and the padding masks they use
    (both kept alive here, their addresses taken once)."""

    def __init__(self, ops: np.ndarray, masks: np.ndarray):
        self.ops = np.ascontiguousarray(ops, dtype=np.int64)
        self.masks = np.ascontiguousarray(masks, dtype=np.uint8)
        self.ops_ptr, self.masks_ptr = self.ops.ctypes.data, self.masks.ctypes.data


def _addr(a: np.ndarray) -> int:
    return a.__array_interface__["data"][0]


def encode_rows(
    dll: ctypes.CDLL,
    rows: np.ndarray,
    out: np.ndarray,
    prog: Program,
    header: bytes,
    hdr_offsets: tuple[int, int, int],
    sequence: int,
    zero_tail: bool,
) -> None:
    """Header, payload and CRC of every view row into its slot (see ``rg_encode_rows``).

    Args:
        rows: the view rows as bytes, shape (n, row size), rows contiguous.
        out: the slots, shape (n, slot size), uint8 with unit column stride.
        prog: the op program; header: the header template (header size bytes); hdr_offsets:
            the offsets of total_size, sequence and payload_crc in it.
        zero_tail: zero each slot after its payload when the rows' lengths differ.
    Raises:
        NativeRowError: a row cannot be encoded (the caller reruns the numpy path for the message).
    """
    rc = dll.rg_encode_rows(
        _addr(rows),
        len(rows),
        rows.strides[0],
        _addr(out),
        out.strides[0],
        out.shape[1],
        prog.ops_ptr,
        len(prog.ops),
        prog.masks_ptr,
        header,
        len(header),
        *hdr_offsets,
        sequence,
        int(zero_tail),
    )
    if rc:
        raise NativeRowError(-rc // 4, -rc % 4)


# ------------------------------------------------------------------------- columnar programs

# Op codes of rg_encode_rows (_native.c); each op is six int64s: code and up to five arguments.
_OP_U8, _OP_I32, _OP_COPY, _OP_MASKED, _OP_STR, _OP_LIST = 1, 2, 3, 4, 5, 6


@functools.lru_cache(maxsize=None)
def program_for(cls: type) -> Optional[Program]:
    """The (cached) op program of ``cls`` for ``rg_encode_rows``.

    It mirrors ``columnar._payloads_columnar`` field by field. None for shapes without a columnar
    spelling, or whose largest payload would not fit the slot (the C code then never overflows one).
    """
    lay = layout_of(cls)
    if not all(_columnar_ok(f.type) for f in lay.fields):
        return None
    ops: list = [[_OP_U8, len(lay.fields), 0, 0, 0, 0]]
    masks: list = []
    mask_len = 0
    biggest = 1

    def add_mask(m: np.ndarray) -> int:
        nonlocal mask_len
        masks.append(m.astype(np.uint8) * 0xFF)  # 0/1 multipliers -> 0x00/0xFF for C's &
        mask_len += len(m)
        return mask_len - len(m)

    for f in lay.fields:
        t = f.type
        if isinstance(t, ScalarType):
            last = ops[-1]
            if last[0] == _OP_COPY and last[1] + last[2] == f.offset:
                last[2] += t.size  # adjacent in the view and on the wire: one copy
            else:
                ops.append([_OP_COPY, f.offset, t.size, 0, 0, 0])
            biggest += t.size
        elif isinstance(t, ArrayType):
            ops.append([_OP_I32, t.length, 0, 0, 0, 0])
            ops.append([_OP_COPY, f.offset, f.size, 0, 0, 0])
            biggest += 4 + f.size
        elif isinstance(t, MessageType):
            mask = _padding_mask(layout_of(t.cls))[: f.size]
            if mask.all():
                ops.append([_OP_COPY, f.offset, f.size, 0, 0, 0])
            else:
                ops.append([_OP_MASKED, f.offset, f.size, add_mask(mask), 0, 0])
            biggest += f.size
        elif isinstance(t, StrType):
            sub = type_dtype(t).fields
            ops.append(
                [_OP_STR, f.offset + sub["len"][1], f.offset + sub["data"][1], t.max_bytes, 0, 0]
            )
            biggest += 8 + t.max_bytes
        else:  # List of scalars or of direct messages
            sub = type_dtype(t).fields
            if isinstance(t.elem, MessageType):
                esize = layout_of(t.elem.cls).size
                mask = _padding_mask(layout_of(t.elem.cls))
                moff = -1 if mask.all() else add_mask(mask)
            else:
                esize, moff = t.elem.size, -1
            ops.append(
                [
                    _OP_LIST,
                    f.offset + sub["len"][1],
                    f.offset + sub["items"][1],
                    esize,
                    t.max_len,
                    moff,
                ]
            )
            biggest += 4 + esize * t.max_len
    if HEADER_SIZE + biggest > lay.slot_size:
        return None
    mask_arr = np.concatenate(masks).astype(np.uint8) if masks else np.zeros(1, np.uint8)
    return Program(np.array(ops, dtype=np.int64), mask_arr)


_HEADER_OFFSETS = tuple(
    HEADER_DTYPE.fields[k][1] for k in ("total_size", "sequence", "payload_crc")
)
_HEADER_PAD = bytes(HEADER_SIZE - HEADER_USED)


def encode_view(cls, lay, view, out, fresh, sender, receiver, sequence, stamp) -> bool:
    """Encode the batch with one native call; False when the numpy path must do it (no helpers, a
    shape without a program, an unusual buffer or header value, or a row the C code refuses, so
    that the numpy path raises its error naming the field and row)."""
    dll = lib()
    if dll is None or out.strides[1] != 1 or not 0 <= sequence <= 2**64 - len(view):
        return False
    prog = program_for(cls)
    if prog is None:
        return False
    try:  # total size, sequence and CRC are patched in per row by the C code
        header = HEADER_STRUCT.pack(MAGIC, 0, stamp, sender, receiver, lay.type_id, 0, 0, 0, 0)
    except struct.error:
        return False  # out of range: the numpy path raises numpy's error for it
    rows = np.ascontiguousarray(view).view(np.uint8).reshape(len(view), lay.size)
    try:
        encode_rows(
            dll, rows, out, prog, header + _HEADER_PAD, _HEADER_OFFSETS, sequence, not fresh
        )
    except NativeRowError:
        return False
    return True


_DECODE_OFFSETS = tuple(HEADER_DTYPE.fields[k][1] for k in ("total_size", "type_id", "payload_crc"))


def decode_slots(cls: type, lay: Any, slots: np.ndarray, out: np.ndarray) -> Optional[int]:
    """Decode every slot of ``slots`` into the view rows ``out`` with one native call.

    Args:
        slots: shape ``(n, k)`` uint8 with unit column stride, ``k >= lay.slot_size`` (a ring's
            rows may be longer than a slot: the bytes past it are never read).
        out: ``n`` view rows of ``lay.dtype``, contiguous.

    Returns:
        None when every row was decoded; the index of the first slot that is not a well-formed
        message (the caller decodes it with the per-message decoder for the error); -1 when the
        native helpers cannot do it (none built, a shape without a program).
    """
    dll = lib()
    prog = program_for(cls) if dll is not None else None
    if prog is None or slots.strides[1] != 1 or not out.flags.c_contiguous:
        return -1
    n = len(out)
    if n == 0:
        return None
    rc = dll.rg_decode_rows(
        _addr(slots),
        n,
        slots.strides[0],
        lay.slot_size,
        _addr(out),
        out.strides[0],
        lay.size,
        prog.ops_ptr,
        len(prog.ops),
        prog.masks_ptr,
        HEADER_SIZE,
        MAGIC,
        lay.type_id,
        *_DECODE_OFFSETS,
    )
    return None if rc == 0 else -rc - 1
