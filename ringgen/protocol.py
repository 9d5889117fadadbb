"""The queue protocol and control block, as data: one definition for every backend and the host.

Device templates render these constants and structs into C; host runtimes view the same bytes through
the numpy dtypes below. Nothing here knows about a particular backend (docs/design.md §5).

Queue: a power-of-two ring of slots plus a ``QueueCtl`` of two 64-bit counters that only grow, ``tail``
(written only by the producer) and ``head`` (written only by the consumer), each on its own 128-byte
line. Full is ``tail - head == capacity``. Publish = write slots, then a release store of ``tail``;
consume = acquire load of ``tail``, read, then a release store of ``head``.

Control block: the host writes only the ``host`` line (the terminate request); the device writes the
rest (lifecycle state, heartbeat, counters).
"""

from __future__ import annotations

import enum

import numpy as np

__all__ = [
    "CACHE_LINE",
    "CONTROL_DTYPE",
    "DEVICE_LIFECYCLE",
    "QUEUE_CTL_DTYPE",
    "Lifecycle",
    "Reason",
    "Status",
    "N_REASONS",
    "OUTBOX_LIMIT",
    "TERMINATE_DRAIN",
    "TERMINATE_STOP_NOW",
]

#: Counters and request words each sit on their own line so the two sides never share one.
CACHE_LINE = 128

#: Most messages one handler call may emit through an Outbox, on every backend and the reference: output
#: room is reserved per input up front, so a bound is needed; one more emit is Reason.OUTBOX_OVERFLOW.
OUTBOX_LIMIT = 8

#: Values the host writes to the control block's ``terminate`` word: drain the input queue, then stop;
#: or stop now, without draining (a dropped or abandoned handle, whose replies no one will read).
TERMINATE_DRAIN = 1
TERMINATE_STOP_NOW = 2


class Lifecycle(enum.IntEnum):
    """A kernel's lifecycle state, as the device reports it in ``ControlBlock.state``."""

    CREATED = 0  # allocated, not launched
    LAUNCHED = 1  # launch issued, the device has not reported yet
    ACTIVE = 2  # resident loop running (or, in relaunch mode, between launches)
    TERMINATING = 3  # terminate requested, draining
    TERMINATED = 4  # drained and acknowledged; the host may free memory
    FAULTED = 5  # stopped on an unrecoverable error
    STALLED = 6  # host only: ACTIVE with input waiting and nothing handled for stall_timeout


#: The states a device writes to ``ControlBlock.state`` (rendered into C); STALLED is the host's
#: verdict on an ACTIVE kernel (``ringgen.runtime.watchdog``) and never appears in device memory.
DEVICE_LIFECYCLE = tuple(s for s in Lifecycle if s is not Lifecycle.STALLED)


class Reason(enum.IntEnum):
    """Why a message was rejected: the index into ``ControlBlock.rejected``.

    1-7 come from validating a bridged message before the handler runs (docs/design.md §4);
    8-11 are handler faults raised by the generated body (see ``Status``); 12 is a handler the
    host interrupted with a stop-now request; 13 a handler that waited on a barrier which can
    never complete (a party terminated or faulted: docs/barriers.md).
    """

    NONE = 0
    BAD_MAGIC = 1
    BAD_SIZE = 2  # total size below the header, above the slot, or not matching the payload
    BAD_TYPE = 3  # type id is not the queue's message type
    BAD_CRC = 4
    BAD_PAYLOAD = 5  # payload does not decode: bad member count, length past the bound or the end
    BAD_UTF8 = 6
    RESERVED_7 = 7
    INDEX_OUT_OF_RANGE = 8
    DIVISION_BY_ZERO = 9
    OUTBOX_OVERFLOW = 10  # a handler emitted more than its per-message limit
    RANGE_ERROR = 11  # e.g. a Str/List result longer than its bound
    STOPPED = 12  # the handler was interrupted by a stop-now request (terminate(drain=False))
    BARRIER_BROKEN = 13  # rg.barrier_wait left a barrier that a party can never reach any more


N_REASONS = 16


class Status(enum.IntEnum):
    """What a generated handler returns to its skeleton.

    ``rg_handle_<kernel>(...)`` returns OUTPUT when it wrote the output message, NONE when it produced
    nothing (returned None, or emitted only through an Outbox); a negative value is a fault, and
    ``-status`` is the ``Reason`` to count.
    """

    NONE = 0
    OUTPUT = 1
    FAULT_INDEX = -Reason.INDEX_OUT_OF_RANGE
    FAULT_DIV_ZERO = -Reason.DIVISION_BY_ZERO
    FAULT_OUTBOX = -Reason.OUTBOX_OVERFLOW
    FAULT_RANGE = -Reason.RANGE_ERROR
    FAULT_STOPPED = -Reason.STOPPED
    FAULT_BARRIER = -Reason.BARRIER_BROKEN


def _line(*fields: tuple[str, str]) -> list:
    return list(fields)


#: One queue's counters: ``tail`` on line 0, ``head`` on line 1 (256 bytes in all).
QUEUE_CTL_DTYPE = np.dtype(
    {
        "names": ["tail", "head"],
        "formats": ["<u8", "<u8"],
        "offsets": [0, CACHE_LINE],
        "itemsize": 2 * CACHE_LINE,
    }
)

#: Control block fields, in C order: (name, numpy format, C type, comment). Line 0 is the host's.
CONTROL_FIELDS: list[tuple[str, str, str, str, int]] = [
    # name, numpy format, C type, comment, offset
    ("terminate", "<u4", "rg_u32", "host: nonzero asks the kernel to drain and stop", 0),
    ("state", "<u4", "rg_u32", "device: Lifecycle", CACHE_LINE),
    ("fault", "<u4", "rg_u32", "device: first unrecoverable Reason, 0 if none", CACHE_LINE + 4),
    ("heartbeat", "<u8", "rg_u64", "device: bumped every resident-loop iteration", CACHE_LINE + 8),
    ("processed", "<u8", "rg_u64", "device: messages the handler ran on", CACHE_LINE + 16),
    ("emitted", "<u8", "rg_u64", "device: output messages published", CACHE_LINE + 24),
    ("output_stalls", "<u8", "rg_u64", "device: times the output queue was full", CACHE_LINE + 32),
    ("idle_spins", "<u8", "rg_u64", "device: polls that found nothing", CACHE_LINE + 40),
    ("launches", "<u8", "rg_u64", "device: launches so far (relaunch mode)", CACHE_LINE + 48),
    (
        "rejected",
        ("<u8", (N_REASONS,)),
        "rg_u64",
        "device: rejected messages by Reason",
        2 * CACHE_LINE,
    ),
]

CONTROL_SIZE = 3 * CACHE_LINE

CONTROL_DTYPE = np.dtype(
    {
        "names": [f[0] for f in CONTROL_FIELDS],
        "formats": [f[1] for f in CONTROL_FIELDS],
        "offsets": [f[4] for f in CONTROL_FIELDS],
        "itemsize": CONTROL_SIZE,
    }
)


def render_context() -> dict:
    """Everything a template needs to declare the protocol in C (constants, fields, offsets)."""
    return {
        "cache_line": CACHE_LINE,
        "control_size": CONTROL_SIZE,
        "n_reasons": N_REASONS,
        "control_fields": [
            {
                "name": n,
                "c_type": c,
                "comment": cm,
                "offset": off,
                "dims": f"[{fmt[1][0]}]" if isinstance(fmt, tuple) else "",
            }
            for n, fmt, c, cm, off in CONTROL_FIELDS
        ],
        "lifecycle": [(s.name, int(s)) for s in DEVICE_LIFECYCLE],
        "reasons": [(r.name, int(r)) for r in Reason],
        "statuses": [(s.name, int(s)) for s in Status],
    }
