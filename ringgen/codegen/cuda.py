"""The CUDA emitter: ``<name>.cu``, every ring kernel of a build as CUDA C++ for nvcc (sm_90).

The source is, in order: the ``<name>_types.h`` header included textually, the CUDA prelude
(``dialect_cuda``), the shared queue protocol (``templates/common/ring.h.j2``), the device codec of
bridged messages (``bridged_c``: validate, decode, encode), the CUDA scheduler structs, each kernel's
outbox, the handler bodies (``ringgen.codegen.body``, identical for every target), then per kernel one
resident skeleton around the same handler (``templates/cuda/kernel.cu.j2``). The loader
(``ringgen.runtime.cuda``) compiles it with nvcc, caches the cubin and launches ``rg_<kernel>_ring``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

import attrs

from .._version import __version__
from .. import protocol
from ..errors import BuildError, CodegenError
from ..kernel import KernelSpec
from ..layout import layout_of
from ..protocol import OUTBOX_LIMIT
from .dialect_cuda import CUDA_DIALECT, CudaDialect
from .env import render
from .emitter import Emitter
from .kernel_context import kernel_context as shared_kernel_context
from .protocol_c import render_ring_h

if TYPE_CHECKING:
    from .options import EmitOptions
    from ..build import BuildUnit

__all__ = [
    "BLOCK",
    "FAULT_KINDS",
    "ITEMS",
    "OUTBOX_LIMIT",
    "SCHED_BYTES",
    "SIDE_BYTES",
    "TELEMETRY",
    "VECTOR_BYTES",
    "CudaEmitter",
    "FaultHook",
    "LANE_BRIDGED_IN_MAX",
    "LANE_BRIDGED_OUT_MAX",
    "LANE_IN_MAX",
    "LANE_ONE_READ",
    "LANE_OUT_MAX",
    "LaneGeometry",
    "SlotGeometry",
    "access_width",
    "check_slot_geometry",
    "compute_lane",
    "compute_outbox_slot",
    "emit",
    "entry_point",
    "kernel_context",
    "render_source",
    "slot_stride",
    "source_name",
]

#: Threads per block and messages per thread per wave; a worker claims BLOCK * ITEMS sequence numbers.
BLOCK = 256
ITEMS = 4
#: Replies an Outbox handler may emit per message (the same bound as the OpenCL target).
#: sizeof(rg_sched) and sizeof(rg_cuda_side) in the template; static assertions keep them honest.
SCHED_BYTES = 6 * protocol.CACHE_LINE
SIDE_BYTES = protocol.CACHE_LINE
#: Bytes of the widest access the kernel makes to a ring (``st.global.cg.v4``, ``ld.global.cv.v4``).
#: Such an access faults unless its address is a multiple of 16, and the fault loses the whole CUDA
#: context: every slot stride and every offset it touches must be a multiple of its width.
VECTOR_BYTES = 16
#: The device telemetry (``templates/common/telemetry.c.j2``), written into the manifest as
#: ``abi.cuda.telemetry``: the host compares it with its buffer layout (``ringgen.runtime.telemetry``)
#: before it points the kernel's ``symbol`` at a buffer and ``stamps_symbol`` (with
#: ``stamp_mask_symbol``) at its publication stamps. Buckets: one per ns below 2 * 2**sub_bits, then
#: 2**sub_bits per power of two up to 2**(max_msb + 1) ns; 1 message in ``sample_every`` is timed
#: (its handler, on %globaltimer, and its time in the queue when the host stamped it). Where things
#: are, in 64-bit words: ``depth_written`` and ``started`` in the 64-byte header, the queue histogram
#: from ``queue_word``, the handler histogram from ``handler_word``, the ``depth_slots`` sample times
#: from ``depth_t_word``, their input depths from 32-bit word ``depth_in_word32``; the poller writes
#: a depth sample every ``depth_every`` polls of the input tail.
_TELE_SUB_BITS, _TELE_MAX_MSB, _TELE_DEPTH_SLOTS = 5, 40, 256
_TELE_BUCKETS = (_TELE_MAX_MSB - _TELE_SUB_BITS + 2) << _TELE_SUB_BITS
TELEMETRY = {
    "symbol": "rg_telemetry",
    "stamps_symbol": "rg_tele_stamps",
    "stamp_mask_symbol": "rg_tele_stamp_mask",
    "clock": "globaltimer",
    "sub_bits": _TELE_SUB_BITS,
    "max_msb": _TELE_MAX_MSB,
    "buckets": _TELE_BUCKETS,
    "sample_every": 256,
    "depth_written_word": 3,
    "started_word": 4,
    "queue_word": 8,
    "handler_word": 8 + _TELE_BUCKETS,
    "depth_t_word": 8 + 2 * _TELE_BUCKETS,
    "depth_in_word32": 2 * (8 + 2 * _TELE_BUCKETS + _TELE_DEPTH_SLOTS),
    "depth_slots": _TELE_DEPTH_SLOTS,
    "depth_every": 1024,
}
#: The latency lane (docs/design.md §5): a request slot that one warp reads in one instruction (32
#: lanes x 16 bytes at most), a reply slot of at most LANE_OUT_MAX bytes, a reply count that fits the
#: low byte of the reply's stamp word. A read of at most LANE_ONE_READ bytes (one 32-byte sector)
#: returns the message and its stamp together; a longer slot is read again after its stamp is seen.
LANE_IN_MAX = 32 * 16
LANE_OUT_MAX = 4096
LANE_ONE_READ = 32
#: A bridged kernel's lane: its request (the input ring's slot, then the stamp in a 16-byte word of
#: its own) is copied by the lane warp into shared memory, which every block of the grid reserves
#: (static shared memory is per kernel), so it is bounded lower than the 64 KiB payload bound; its
#: reply slot (encoded replies at the output ring's stride, then the word) lives in mapped host
#: memory only.
LANE_BRIDGED_IN_MAX = 8192
LANE_BRIDGED_OUT_MAX = 16384
_LANE_COUNT_MAX = 255
#: What the test-only fault hook (``FaultHook``) does on the device, by name.
FAULT_KINDS = ("illegal", "misaligned", "trap")


@attrs.frozen
class SlotGeometry:
    """Where the kernel reads or writes one ring's slots (checked by ``check_slot_geometry``).

    ``stride`` is the bytes between two slots (the ring starts page-aligned), ``width`` the bytes of
    each load or store that moves a message (16, 8, 4 or 1), ``message_at`` the message's offset in
    its slot and ``stamp_at`` the u64 sequence stamp's (an Outbox output slot only, else None).
    """

    ring: str
    stride: int
    width: int
    message_at: int = 0
    stamp_at: Optional[int] = None


@attrs.frozen
class FaultHook:
    """Test-only: makes the kernel die on purpose on message number ``after`` (0-based), to test how
    the host notices a dead kernel. ``kind``: ``"illegal"`` (a store to address 8:
    CUDA_ERROR_ILLEGAL_ADDRESS), ``"misaligned"`` (an 8-byte store at an odd address:
    CUDA_ERROR_MISALIGNED_ADDRESS) or ``"trap"`` (``__trap()``). Emitted only when asked for, so
    the normal output does not change."""

    kind: str = attrs.field(validator=attrs.validators.in_(FAULT_KINDS))
    after: int = attrs.field(default=0, validator=attrs.validators.ge(0))


@attrs.frozen
class LaneGeometry:
    """The latency lane of one kernel: one stamped request slot and one stamped reply slot, in one
    mapped buffer, used by ``send`` only when nothing else is outstanding (docs/design.md §5).

    Request (host -> device) at offset 0, ``in_bytes`` long: the input struct at 0, its u64 stamp
    (the lane sequence number + 1) at ``in_stamp_at``, after the message, so a host that writes the
    slot in offset order writes the stamp last. Reply (device -> host) at ``out_at``, on its own
    cache line: up to ``out_items`` output structs ``out_item_stride`` bytes apart, then the u64 word
    at ``out_word_at`` = ``stamp << 8 | count``, stored last with a system-scope release.

    A bridged input's request is its ring slot (header + payload, ``slot_stride`` bytes), then the
    stamp at ``in_stamp_at`` = that stride, in a 16-byte word of its own; a bridged output's replies
    are encoded slots ``out_item_stride`` = the output ring's stride apart. The manifest carries the
    same seven numbers for both kinds (the loader knows from its codecs which kind it has).
    """

    in_bytes: int
    in_stamp_at: int
    out_at: int
    out_items: int
    out_item_stride: int
    out_word_at: int
    out_bytes: int

    @property
    def in_words(self) -> int:
        """16-byte words of the request slot (lanes of the warp that read it)."""
        return self.in_bytes // VECTOR_BYTES

    @property
    def stamp_word(self) -> int:
        """The 16-byte word of the request that holds the stamp (for a bridged input: the words
        before it are the ring slot the lane warp copies after the stamp is seen)."""
        return self.in_stamp_at // VECTOR_BYTES

    @property
    def one_read(self) -> bool:
        """True when one read returns the message and its stamp together (one 32-byte sector)."""
        return self.in_bytes <= LANE_ONE_READ

    @property
    def one_store(self) -> bool:
        """True when the reply slot is one 32-byte sector holding one reply and its word: the
        lane warp writes it with one instruction of two lanes instead of stores and a release."""
        return self.out_items == 1 and self.out_bytes <= LANE_ONE_READ

    @property
    def total_bytes(self) -> int:
        """Bytes of the mapped buffer holding both slots."""
        return self.out_at + self.out_bytes

    def as_abi(self) -> dict:
        """The manifest's ``abi.cuda.lane``."""
        return attrs.asdict(self)


def compute_lane(spec: KernelSpec) -> Optional[LaneGeometry]:
    """The latency lane of ``spec``, or None where it has none: no output at all (nothing would
    tell the host that the message was handled), a request over ``LANE_IN_MAX`` bytes
    (``LANE_BRIDGED_IN_MAX`` for a bridged input), a reply slot over ``LANE_OUT_MAX``
    (``LANE_BRIDGED_OUT_MAX`` for a bridged output) or an Outbox limit over 255."""
    out_cls = spec.outbox or spec.output
    if out_cls is None:
        return None
    lin, lout = layout_of(spec.input), layout_of(out_cls)
    items = spec.outbox_limit if spec.uses_outbox else 1
    if items > _LANE_COUNT_MAX:
        return None
    if lin.is_bridged:
        in_stamp_at = slot_stride(lin.slot_size)
        in_max = LANE_BRIDGED_IN_MAX
    else:
        in_stamp_at = (lin.size + 7) // 8 * 8
        in_max = LANE_IN_MAX
    in_bytes = (in_stamp_at + 8 + VECTOR_BYTES - 1) // VECTOR_BYTES * VECTOR_BYTES
    item = slot_stride(lout.slot_size) if lout.is_bridged else lout.size
    out_max = LANE_BRIDGED_OUT_MAX if lout.is_bridged else LANE_OUT_MAX
    word_at = (items * item + VECTOR_BYTES - 1) // VECTOR_BYTES * VECTOR_BYTES
    out_bytes = word_at + VECTOR_BYTES
    if in_bytes > in_max or out_bytes > out_max:
        return None
    line = protocol.CACHE_LINE
    return LaneGeometry(
        in_bytes=in_bytes,
        in_stamp_at=in_stamp_at,
        out_at=(in_bytes + line - 1) // line * line,
        out_items=items,
        out_item_stride=item,
        out_word_at=word_at,
        out_bytes=out_bytes,
    )


def source_name(unit: "BuildUnit") -> str:
    """The emitted file's name: ``<name>.cu``."""
    return f"{unit.name}.cu"


def entry_point(kernel: str) -> str:
    """The ``extern "C"`` name of a ring kernel's resident grid."""
    return f"rg_{kernel}_ring"


def abi(spec: KernelSpec) -> dict:
    """The manifest's ``abi.cuda`` of one kernel: what ``ringgen.runtime.cuda`` needs to launch the
    emitted grid and lay out its rings, as numbers (the runtime never imports this module).

    ``in_stride``/``out_stride``: bytes between two slots of the input and (positional) output ring;
    ``out_slot``: an Outbox output slot's size and stamp offset (None without an Outbox);
    ``lane``: the latency lane's geometry (``LaneGeometry.as_abi``; None where it has none).
    """
    inp = layout_of(spec.input)
    out_stride = out_slot = None
    if spec.uses_outbox:
        lay = layout_of(spec.outbox or spec.output)
        size, at = compute_outbox_slot(lay.slot_size, bridged=lay.is_bridged)
        out_slot = {"size": size, "stamp_at": at}
    elif spec.output is not None:
        lay = layout_of(spec.output)
        out_stride = slot_stride(lay.slot_size) if lay.is_bridged else lay.slot_size
    return {
        "entry_point": entry_point(spec.name),
        "block": BLOCK,
        "items": ITEMS,
        "sched_bytes": SCHED_BYTES,
        "vector_bytes": VECTOR_BYTES,
        "in_stride": slot_stride(inp.slot_size) if inp.is_bridged else inp.slot_size,
        "out_stride": out_stride,
        "out_slot": out_slot,
        "telemetry": dict(TELEMETRY),
        "lane": lane.as_abi() if (lane := compute_lane(spec)) is not None else None,
    }


def slot_stride(slot_size: int) -> int:
    """Bytes between two slots of a bridged ring: the slot size rounded up to 16, so that every slot
    starts 16-byte aligned and the kernel moves it with whole 16-byte loads and stores (a slot is
    ``256 + max_payload`` bytes, usually odd; PCIe writes of partial words cost several times full
    ones)."""
    return (slot_size + 15) // 16 * 16


def access_width(size: int) -> int:
    """Bytes per load or store the kernel moves a direct slot of ``size`` bytes with: the widest of
    16, 8, 4 and 1 that divides ``size`` (the template argument of ``rg__load_slot`` and
    ``rg__store_slot``; PCIe writes of partial words cost several times full ones)."""
    return next(w for w in (VECTOR_BYTES, 8, 4, 1) if size % w == 0)


def compute_outbox_slot(slot_size: int, *, bridged: bool) -> tuple[int, int]:
    """``(stride, stamp_at)`` of an Outbox output slot holding a message of ``slot_size`` bytes.

    The message sits at offset 0 and its u64 sequence stamp after it; the slot is padded to a
    multiple of 16 bytes (``__align__(16)`` in the template), so that every slot starts where a
    16-byte store may write. A direct message's stamp is at the next 8-byte boundary; a bridged
    message is stored as whole 16-byte words, so its stamp is at its stride (then 8 bytes of pad).
    """
    if bridged:
        at = slot_stride(slot_size)
        return at + VECTOR_BYTES, at
    at = (slot_size + 7) // 8 * 8
    return (at + 8 + VECTOR_BYTES - 1) // VECTOR_BYTES * VECTOR_BYTES, at


def check_slot_geometry(kernel: str, geometry: SlotGeometry) -> None:
    """Assert that every access the kernel makes to a ring's slots is aligned to its width.

    The rings start page-aligned (``cuMemHostAlloc``), so an access is aligned when the stride and
    every offset it touches are multiples of its width; an Outbox slot's stride must be a multiple
    of 16 as well (its struct is ``__align__(16)``) and its stamp 8-byte aligned.

    Raises:
        CodegenError: an access would be misaligned (a ringgen bug: the kernel would fault).
    """
    g = geometry
    bad = []
    if g.stride % g.width:
        bad.append(f"stride {g.stride} is not a multiple of the {g.width}-byte access")
    if g.message_at % g.width:
        bad.append(f"the message at offset {g.message_at} is not {g.width}-byte aligned")
    if g.stamp_at is not None:
        if g.stride % VECTOR_BYTES:
            bad.append(f"stride {g.stride} is not a multiple of {VECTOR_BYTES}")
        if g.stamp_at % 8:
            bad.append(f"the stamp at offset {g.stamp_at} is not 8-byte aligned")
    if bad:
        raise CodegenError(
            f"kernel {kernel}: {g.ring} slot (stride {g.stride}, {g.width}-byte accesses): "
            + "; ".join(bad),
            hint="this is a bug in ringgen's CUDA emitter; please report it with the message types",
        )


def _slot_geometries(spec: KernelSpec, ctx: dict) -> list[SlotGeometry]:
    """The geometry of each ring of ``spec`` the kernel touches (``ctx``: its kernel context)."""
    rings = [SlotGeometry("input", ctx["in_stride"], ctx["in_width"])]
    if ctx["uses_outbox"]:
        rings.append(
            SlotGeometry(
                "outbox output",
                ctx["out_slot_stride"],
                ctx["out_width"],
                stamp_at=ctx["out_stamp_at"],
            )
        )
    elif ctx["has_output"]:
        rings.append(SlotGeometry("output", ctx["out_slot_stride"], ctx["out_width"]))
    lane = ctx["lane"]
    if lane is not None:
        # The request is read as whole 16-byte words; each reply item is stored with the output's
        # width at a multiple of its size; the reply slot starts on its own line.
        rings.append(
            SlotGeometry("lane request", lane.in_bytes, VECTOR_BYTES, stamp_at=lane.in_stamp_at)
        )
        rings.append(SlotGeometry("lane reply item", lane.out_item_stride, ctx["out_width"]))
        rings.append(
            SlotGeometry(
                "lane reply",
                lane.out_bytes,
                VECTOR_BYTES,
                message_at=lane.out_at,
                stamp_at=lane.out_word_at,
            )
        )
    return rings


def kernel_context(spec: KernelSpec, fault: Optional[FaultHook] = None) -> dict:
    """What the skeleton template needs to know about one ring kernel.

    A bridged queue's ring is bytes: slot ``i`` starts at ``i * stride`` (``slot_stride``) and holds
    the 256-byte header and the payload (``layout_of(cls).slot_size`` bytes at most); the kernel
    decodes it into the view struct before the handler runs and encodes a bridged reply from it. A
    direct queue's slot is the struct, moved with ``access_width`` loads and stores; an Outbox
    output slot adds a stamp (``compute_outbox_slot``). Every ring's geometry is checked
    (``check_slot_geometry``) here, before any text is rendered.

    Raises:
        CodegenError: a slot access would be misaligned.
    """
    ctx = shared_kernel_context(spec)
    lin = layout_of(spec.input)
    ctx["in_stride"] = slot_stride(lin.slot_size) if lin.is_bridged else lin.size
    ctx["in_width"] = VECTOR_BYTES if lin.is_bridged else access_width(lin.size)
    ctx["out_stride"] = slot_stride(ctx["out_slot_size"]) if ctx["out_bridged"] else 0
    ctx["out_width"] = VECTOR_BYTES if ctx["out_bridged"] else access_width(ctx["out_slot_size"])
    if ctx["uses_outbox"]:
        stride, stamp_at = compute_outbox_slot(ctx["out_slot_size"], bridged=ctx["out_bridged"])
    else:
        stride, stamp_at = ctx["out_stride"] or ctx["out_slot_size"], None
    ctx["out_slot_stride"] = stride
    ctx["out_stamp_at"] = stamp_at
    ctx["lane"] = compute_lane(spec)
    for geometry in _slot_geometries(spec, ctx):
        check_slot_geometry(spec.name, geometry)
    ctx["fault"] = fault
    return ctx


def render_source(
    unit: "BuildUnit",
    *,
    header: str,
    body: str,
    codec: str = "",
    dialect: Optional[CudaDialect] = None,
    fault: Optional[FaultHook] = None,
) -> str:
    """The ``.cu`` text for ``unit`` around a given header and handler body (pure; no disk access).

    Args:
        unit: the build (its name, module, fingerprint and kernels are read).
        header: the text of ``<name>_types.h``.
        body: the handler text from ``ringgen.codegen.body.emit_body(unit)``.
        codec: the device codec of the build's bridged messages
            (``ringgen.codegen.bridged_c.emit_device_codec``), "" when it has none.
        dialect: the CUDA dialect (default: sm_90).
        fault: test-only: make every kernel of the unit die on purpose (``FaultHook``).

    Raises:
        CodegenError: a slot access would be misaligned (``kernel_context``).
    """
    dialect = dialect or CUDA_DIALECT
    return render(
        "cuda/kernel.cu.j2",
        unit_name=unit.name,
        module=unit.module,
        version=__version__,
        fingerprint=unit.fingerprint,
        prelude=dialect.prelude(),
        header=header,
        ring_h=render_ring_h(),
        codec=codec,
        body=body,
        block=BLOCK,
        items=ITEMS,
        sched_bytes=SCHED_BYTES,
        side_bytes=SIDE_BYTES,
        vector_bytes=VECTOR_BYTES,
        telemetry=TELEMETRY,
        kernels=[kernel_context(k, fault) for k in unit.kernels],
    )


def emit(
    unit: "BuildUnit",
    *,
    fault: Optional[FaultHook] = None,
    options: Optional["EmitOptions"] = None,
    program: Any = None,
) -> dict[str, str]:
    """The CUDA target: ``{"<name>.cu": text}`` (``fault``: test-only, see ``FaultHook``).

    Raises:
        BuildError: the handler body emitter is missing (a broken installation).
        CodegenError: a slot access would be misaligned.
    """
    try:
        from .body import emit_body
    except ImportError as exc:  # pragma: no cover - only in a partial checkout
        raise BuildError(f"the CUDA target needs ringgen.codegen.body: {exc}") from exc
    from .bridged_c import emit_device_codec
    from .header import render_header

    text = render_source(
        unit,
        header=render_header(unit),
        body=emit_body(
            unit, debug=options.debug_line_directives if options else None, program=program
        ),
        codec=emit_device_codec(unit),
        fault=fault,
    )
    return {source_name(unit): text}


class CudaEmitter(Emitter):
    """The CUDA target's ``Emitter`` (the ``cuda`` row of ``ringgen.targets``)."""

    def emit(self, unit: "BuildUnit", program: Any, options: "EmitOptions") -> dict[str, str]:
        return emit(unit, options=options, program=program)

    def entry_points(self, kernel: str) -> dict[str, str]:
        return {"persistent": entry_point(kernel)}

    def skipped(self, unit: "BuildUnit", program: Any) -> dict[str, str]:
        return {}

    def abi(self, kernel: KernelSpec, source: str) -> dict:
        return abi(kernel)
