"""What the CUDA handle does about a kernel that died on the device (issue 10; docs/cuda.md).

A kernel that faults (an illegal or misaligned address, a trap) kills its grid and loses the whole
CUDA context: it never writes its control block again, and every later driver call in the context
fails with the same *sticky* error. So:

- ``DeviceFaults._device_fault`` (the hook ``base.KernelHandle`` polls) asks the driver about the
  kernel's stream and names the error in words; the handle turns FAULTED.
- Every later step of the handle that would call the driver (``DeviceFaults._driver_failed``) skips
  it once the context is lost, and ``DeviceFaults._leak`` leaves the launch's allocations to the
  driver on purpose (freeing them fails; the driver frees them with the context).
- ``replace_lost_context`` runs before each launch: it replaces a lost context with a fresh one
  (``cuda_device.retire_context``) once no live handle uses its memory, or raises a
  ``BackendUnavailableError`` that says the context was lost, why, and what to do.
- ``fault_hook`` reads the test-only launch option ``debug_fault`` that makes a kernel die on purpose.
"""

from __future__ import annotations

import weakref
from typing import Any, Optional

from ..logs import kernel_logger
from ...errors import BackendUnavailableError
from ...protocol import Lifecycle
from . import device as cuda_device

__all__ = ["DeviceFaults", "fault_hook", "replace_lost_context", "track", "untrack"]

log = kernel_logger(__name__)

#: Allocations of lost contexts, kept referenced until the context is replaced: freeing them fails,
#: and collecting them would try.
_leaked: list[Any] = []


class _LiveHandles(dict):
    """Per device: the handles launched and not yet released (they use the context's memory, so a
    lost context is not replaced under them). Weak: a handle dropped without terminate goes too."""

    def __missing__(self, device: int) -> "weakref.WeakSet[Any]":
        live = self[device] = weakref.WeakSet()
        return live


_live = _LiveHandles()


def track(handle: Any) -> None:
    """Record a launched handle as a user of its device's context."""
    _live[handle.device].add(handle)


def untrack(handle: Any) -> None:
    """Forget a released handle."""
    _live[handle.device].discard(handle)


def resident(device: int) -> list[str]:
    """Names of the kernels launched on ``device`` by this process and not yet released."""
    return sorted(h.name for h in list(_live[device]) if not h._released)


def replace_lost_context(device: int) -> bool:
    """Before a launch: if ``device``'s context was lost (a kernel faulted), replace it.

    Returns True when it was replaced (the caller then forgets what it loaded into the old one).

    Raises:
        BackendUnavailableError: the lost context is still used by live handles (named), or the
            driver did not let it be replaced; both say that the context was lost, and why.
    """
    why = cuda_device.check_context(device)
    if why is None:
        return False
    holders = resident(device)
    if holders:
        raise BackendUnavailableError(
            f"backend cuda: the CUDA context of device {device} was lost ({why}); kernel(s) "
            f"{', '.join(holders)} launched in it have stopped and still hold its memory",
            hint="terminate them (their replies and state are lost), then launch again: the "
            "context is replaced then",
        )
    cuda_device.retire_context(device)
    _leaked.clear()
    return True


class DeviceFaults:
    """Mixed into ``CudaKernelHandle``: its answers once the kernel died on the device.

    Reads the handle's ``name``, ``device``, ``_stream``, ``_copy_stream``, ``_finished``, ``_ctl``,
    ``_alloc``, ``_pinned``, ``_device_error`` and calls its ``_keep_last_dead_letters``.
    """

    def _device_fault(self) -> Optional[str]:
        """The driver's error once the kernel died on the device (its stream reports it), else None.

        One ``cuStreamQuery`` on the kernel's stream: NOT_READY while the grid runs; a sticky error
        (illegal or misaligned address, trap, ...) once a fault killed it and the context. A grid
        that exited without writing TERMINATED counts as a fault too. Never raises."""
        stream = self._stream
        if stream is None:
            return None
        if self._context_lost():
            return self._lost_why()
        try:
            cuda_device.context(self.device)
            if not stream.is_done():
                return None
        except Exception as exc:  # never raise from here (base.KernelHandle._device_died)
            if cuda_device.is_driver_error(exc) or isinstance(exc, BackendUnavailableError):
                why = cuda_device.describe_error(exc)
                cuda_device.mark_lost(self.device, f"{why} (kernel {self.name})")
                return why
            return f"{type(exc).__name__}: {exc}"
        state = int(self._ctl[0]["state"])  # re-read: the grid may have finished since
        if state in (int(Lifecycle.TERMINATED), int(Lifecycle.FAULTED)):
            return None
        return f"the kernel's grid exited without terminating (lifecycle {Lifecycle(state).name})"

    def _context_lost(self) -> bool:
        return self._device_error is not None or cuda_device.lost(self.device) is not None

    def _lost_why(self) -> str:
        return self._device_error or cuda_device.lost(self.device) or "the context was lost"

    def _driver_failed(self, exc: Exception, doing: str) -> None:
        """A driver call of a later step failed: a sticky error means the context was lost (then
        the step is skipped, and logged).

        Raises:
            exc: itself, when it is no driver error.
            BackendUnavailableError: any other driver error, in words.
        """
        if not cuda_device.is_driver_error(exc):
            raise exc
        why = cuda_device.describe_error(exc)
        if not cuda_device.is_sticky(exc):
            raise BackendUnavailableError(
                f"backend cuda: kernel {self.name}: {doing} failed: {why}"
            ) from exc
        cuda_device.mark_lost(self.device, f"{why} (kernel {self.name})")
        if self._device_error is None:
            self._device_error = why
        log.warning("kernel %s (cuda): %s skipped: the context is lost (%s)", self.name, doing, why)

    def _leak(self) -> None:
        """Forget this launch's allocations without freeing them: a lost context cannot free (every
        call fails), and the driver frees them all when the context is retired."""
        self._keep_last_dead_letters()  # host memory: still readable
        n_dev, n_pinned = len(self._alloc), len(self._pinned)
        _leaked.extend(self._alloc + self._pinned)
        _leaked.extend(
            x for x in (self._stream, self._copy_stream, self._finished) if x is not None
        )
        self._alloc.clear()
        self._pinned.clear()
        self._stream = self._copy_stream = self._finished = None
        self._module = None
        if n_dev or n_pinned:
            log.warning(
                "kernel %s (cuda): the CUDA context of device %d is lost (%s); %d device and %d "
                "pinned allocation(s) are left to the driver on purpose (freed when the next launch "
                "replaces the context)",
                self.name,
                self.device,
                self._lost_why(),
                n_dev,
                n_pinned,
            )
