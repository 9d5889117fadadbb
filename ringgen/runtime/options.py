"""Launch options of a ring kernel, checked before anything is allocated: the queue capacity, the
options a backend takes, and the generated codecs the kernel's messages need."""

from __future__ import annotations

import inspect
from typing import Any, Mapping, Optional

from ..errors import BuildError
from ..kernel import KernelSpec

__all__ = [
    "COMMON_OPTIONS",
    "MAX_CAPACITY",
    "check_capacity",
    "check_options",
    "check_telemetry",
    "codec_for",
]

#: The most slots a queue may have (launch option ``capacity``): 2**30 slots of even 16 bytes are
#: 16 GiB per queue, far past what a round trip needs, and far from any 32-bit slot-index overflow.
MAX_CAPACITY = 1 << 30


def check_capacity(spec: KernelSpec, capacity: Optional[int]) -> int:
    """The slots per queue of a launch: ``capacity``, or the kernel's declared one when None.

    Raises:
        BuildError: it is not a power of two >= 2, or over ``MAX_CAPACITY``; names the kernel.
    """
    cap = spec.capacity if capacity is None else capacity
    if not isinstance(cap, int) or isinstance(cap, bool) or cap < 2 or cap & (cap - 1):
        raise BuildError(
            f"kernel {spec.name}: launch option capacity={cap!r} is not a power of two >= 2",
            hint="e.g. capacity=1024",
        )
    if cap > MAX_CAPACITY:
        raise BuildError(
            f"kernel {spec.name}: launch option capacity={cap} is over the limit of "
            f"{MAX_CAPACITY} slots per queue",
            hint="a queue needs only enough slots to cover the round trip, e.g. capacity=65536",
        )
    return cap


def check_telemetry(kernel: str, telemetry: object) -> bool:
    """The launch option ``telemetry`` of the backends that record it (cpu, c): True (the default:
    latency histograms and queue-depth samples, ``stats().telemetry``) or False (nothing recorded,
    no telemetry buffer at all).

    Raises:
        BuildError: it is not a bool; names the kernel.
    """
    if not isinstance(telemetry, bool):
        raise BuildError(
            f"kernel {kernel}: launch option telemetry={telemetry!r} is not True or False",
            hint="telemetry=False turns the latency histograms and depth samples off",
        )
    return telemetry


#: Launch options every backend takes, handled by ``KernelHandle.open`` itself rather than by a
#: backend's ``__init__``: ``stall_timeout`` (the watchdog, ``ringgen.runtime.watchdog``).
COMMON_OPTIONS = ("stall_timeout",)


def check_options(cls: type, kernel: str, options: Mapping[str, Any]) -> None:
    """Reject launch options the backend does not take, listing the ones it does (its keyword-only
    ``__init__`` parameters and ``COMMON_OPTIONS``)."""
    params = inspect.signature(cls.__init__).parameters
    own = {n for n, p in params.items() if p.kind is p.KEYWORD_ONLY and n != "codecs"}
    allowed = sorted(own | set(COMMON_OPTIONS))
    unknown = sorted(set(options) - set(allowed) - {"codecs"})
    if unknown:
        raise BuildError(
            f"kernel {kernel}: backend {cls.backend} has no launch option "
            + ", ".join(repr(u) for u in unknown),
            hint="its options are: " + (", ".join(allowed) or "none"),
        )


def codec_for(codecs: Mapping[str, Any], cls: type, kernel: str) -> Any:
    """The generated codec of message class ``cls`` (``serializers.CODECS``), or a ``BuildError``
    asking for a rebuild: the package is older than the kernel's module."""
    try:
        return codecs[cls.__name__]
    except KeyError:
        raise BuildError(
            f"kernel {kernel}: the generated serializers have no codec for {cls.__qualname__}",
            hint="rebuild the package: it is older than the kernel's module",
        ) from None
