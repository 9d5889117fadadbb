"""asyncio for a ring kernel: the ``send_async``/``receive_async``/``async for`` part of
``KernelHandle`` (a mixin of it).

The same policies as the blocking calls (docs/runtime.md), with one difference: a wait awaits
``asyncio.sleep`` (``Backoff.wait_async``) instead of sleeping, so it never blocks the event loop.
A send waiting for room still moves ready replies into the spill, so "send everything, then
receive" finishes here too.
"""

from __future__ import annotations

from typing import AsyncIterator, Generic, Optional, TypeVar

from ..errors import KernelTimeoutError, QueueClosedError
from .waiting import Backoff, deadline_after, expired

__all__ = ["AsyncMessaging"]

InT = TypeVar("InT")
OutT = TypeVar("OutT")


class AsyncMessaging(Generic[InT, OutT]):
    """``send_async``, ``receive_async`` and ``async for reply in handle`` of ``KernelHandle``.

    It relies on what ``KernelHandle`` defines: ``name``, ``backend``, ``format``, ``_try_push``,
    ``_try_pop``, ``_drain_output``, ``_full_error``, ``_require_output``, ``_released``,
    ``_watchdog`` and ``_stalled_error``.
    """

    async def send_async(self, message: InT, *, timeout: Optional[float] = None) -> None:
        """``send`` for asyncio: awaits room in the input queue without blocking the event loop.

        Raises:
            QueueFullError: ``timeout`` expired with the queue still full.
            QueueClosedError, KernelFaultError, SchemaError: as ``send``.
        """
        batch = self.format.input_batch((message,))
        deadline = deadline_after(timeout, f"kernel {self.name}.send_async")
        backoff = Backoff()
        while True:
            if self._try_push(batch, observe=True):
                return
            if expired(deadline):
                raise self._full_error(0, 1, timeout)
            if self._drain_output():  # the kernel may be waiting for room for its replies
                backoff.reset()  # then poll again at once, still yielding to the event loop
            await backoff.wait_async(deadline)

    async def receive_async(self, timeout: Optional[float] = None) -> OutT:
        """``receive`` for asyncio: awaits the next reply without blocking the event loop."""
        self._require_output()
        deadline = deadline_after(timeout, f"kernel {self.name}.receive_async")
        backoff = Backoff()
        while True:
            batch = self._try_pop(1)
            if batch is not None:
                return self.format.to_objects(batch)[0]
            if self._watchdog.stalled and not self._released:  # the watchdog (observing.py)
                raise self._stalled_error("receive_async")
            if expired(deadline):
                raise KernelTimeoutError(
                    f"kernel {self.name} ({self.backend}): no reply within {timeout:g} s"
                )
            await backoff.wait_async(deadline)

    def __aiter__(self) -> AsyncIterator[OutT]:
        """``async for reply in handle``: replies as they come, until the kernel is terminated and
        every reply has been taken."""
        return self._replies()

    async def _replies(self) -> AsyncIterator[OutT]:
        while True:
            try:
                reply = await self.receive_async()
            except QueueClosedError:
                return
            yield reply
