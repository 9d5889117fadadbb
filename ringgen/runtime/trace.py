"""NVTX ranges around the host calls of a kernel, so Nsight Systems shows them beside the kernels.

``traced("send_batch")`` decorates a ``KernelHandle`` method: while the method runs, an NVTX range
named ``ringgen <kernel> send_batch`` is open (domain ``ringgen``). Ranges are recorded only when the
``nvtx`` package is importable and ``RINGGEN_NVTX`` is not off (``ringgen.envflags``: unset means
on); otherwise ``traced`` returns the method itself, unwrapped, so tracing costs nothing. Both are
decided once, when ``ringgen.runtime`` is imported. ``span`` is the same range as a context manager,
for code that is not a method.
"""

from __future__ import annotations

import contextlib
import functools
import os
from typing import Any, Callable, Iterator, Optional, TypeVar

from ..envflags import env_flag

__all__ = ["ENABLED", "span", "traced"]

F = TypeVar("F", bound=Callable[..., Any])

ENV_VAR = "RINGGEN_NVTX"
DOMAIN = "ringgen"


def _nvtx() -> Optional[Any]:
    if os.environ.get(ENV_VAR) is not None and not env_flag(ENV_VAR):
        return None
    try:
        import nvtx  # type: ignore[import-not-found]
    except ImportError:
        return None
    return nvtx


_NVTX = _nvtx()

#: True when ranges are recorded (the ``nvtx`` package is present and ``RINGGEN_NVTX`` is not off).
ENABLED = _NVTX is not None


@contextlib.contextmanager
def span(what: str, kernel: str = "") -> Iterator[None]:
    """An NVTX range ``ringgen <kernel> <what>`` around the ``with`` body (nothing when disabled)."""
    if _NVTX is None:
        yield
        return
    name = f"ringgen {kernel} {what}" if kernel else f"ringgen {what}"
    _NVTX.push_range(message=name, domain=DOMAIN)
    try:
        yield
    finally:
        _NVTX.pop_range(domain=DOMAIN)


def _kernel_name(args: tuple, kwargs: dict) -> str:
    """The kernel a handle method acts on: ``self.name``, or ``spec.name`` for ``open``."""
    first = args[0] if args else None
    name = getattr(first, "name", None)
    if isinstance(name, str):
        return name
    spec = kwargs.get("spec", args[1] if len(args) > 1 else None)
    return str(getattr(spec, "name", ""))


def traced(what: str) -> Callable[[F], F]:
    """Decorate a ``KernelHandle`` method (or the classmethod ``open``, below ``@classmethod``) so
    that an NVTX range named after ``what`` and the kernel covers each call; with NVTX off the method
    is returned as it is."""

    def decorate(func: F) -> F:
        if _NVTX is None:
            return func

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with span(what, _kernel_name(args, kwargs)):
                return func(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate
