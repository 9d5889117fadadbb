"""Every error ringgen raises on purpose, under one base class.

Each error subclasses the builtin a user would naturally catch (``TypeError`` for a bad declaration,
``TimeoutError`` for a kernel that does not answer, ...), and each carries enough context to name the
thing at fault: a file, line and column for source code, a class and field for a schema.
"""

from __future__ import annotations

import linecache
from typing import Optional

__all__ = [
    "RinggenError",
    "SchemaError",
    "HandlerError",
    "LayoutError",
    "BuildError",
    "CacheError",
    "CodegenError",
    "ToolchainError",
    "BackendUnavailableError",
    "QueueFullError",
    "QueueClosedError",
    "KernelTimeoutError",
    "KernelFaultError",
    "BarrierBrokenError",
    "WireFormatError",
    "EncodeError",
    "format_diagnostic",
]


class RinggenError(Exception):
    """Raised for every error ringgen diagnoses on purpose; the base of all others here.

    ``file``, ``line`` and ``col`` (0-based) locate the fault in user source when it has one;
    ``hint`` says what to write instead.
    """

    def __init__(
        self,
        message: str,
        *,
        file: Optional[str] = None,
        line: Optional[int] = None,
        col: Optional[int] = None,
        end_col: Optional[int] = None,
        hint: Optional[str] = None,
        source_line: Optional[str] = None,
    ) -> None:
        self.message = message
        self.file = file
        self.line = line
        self.col = col
        self.end_col = end_col
        self.hint = hint
        self.source_line = source_line
        super().__init__(format_diagnostic(self))


def format_diagnostic(error: RinggenError) -> str:
    """Render ``error`` gcc-style: ``file:line:col: error: message``, the line, a caret, a hint.

    ``error.col`` is 0-based (as Python's ``ast`` reports it) and printed 1-based, as compilers do;
    the source line is read from ``error.file`` when the error does not carry it.
    """
    where = ""
    if error.file is not None:
        where = error.file
        if error.line is not None:
            where += f":{error.line}"
            if error.col is not None:
                where += f":{error.col + 1}"
        where += ": "
    text = f"{where}error: {error.message}"
    source_line = error.source_line
    if source_line is None and error.file is not None and error.line is not None:
        source_line = linecache.getline(error.file, error.line).rstrip("\n")
    if source_line:
        text += "\n    " + source_line
        col, end_col = error.col, error.end_col
        if col is not None:
            width = max(1, (end_col - col) if end_col and end_col > col else 1)
            text += "\n    " + " " * col + "^" + "~" * (width - 1)
    if error.hint:
        text += f"\n    hint: {error.hint}"
    return text


class SchemaError(RinggenError, TypeError):
    """Raised when a message or state class cannot be declared: the message names class and field."""


class LayoutError(RinggenError, ValueError):
    """Raised when a declared message cannot be laid out (too large, empty, ...)."""


class HandlerError(RinggenError, TypeError):
    """Raised when a handler or device function is outside the language; names file, line, column."""


class BuildError(RinggenError, ValueError):
    """Raised when a build as a whole is inconsistent (duplicate names, nothing to build, ...)."""


class CacheError(RinggenError, PermissionError):
    """Raised when the build cache cannot be trusted: its folder belongs to another user or is
    writable by others; the message names the folder and the fix."""


class CodegenError(RinggenError, AssertionError):
    """Raised when the generator would emit code that breaks one of its own invariants (a ringgen bug,
    not the user's): names the kernel and what is wrong, before any file is written."""


class ToolchainError(RinggenError, RuntimeError):
    """Raised when a compiler (gcc, nvcc, PoCL, PyCUDA, ...) rejects generated source."""


class BackendUnavailableError(RinggenError, RuntimeError):
    """Raised when the requested backend or device is not present on this machine."""


class QueueFullError(RinggenError, BufferError):
    """Raised by ``send(..., block=False)`` (or after its timeout) when the input queue is full."""


class QueueClosedError(RinggenError, RuntimeError):
    """Raised when a kernel that is terminating or terminated is asked to send or receive."""


class KernelTimeoutError(RinggenError, TimeoutError):
    """Raised when a kernel does not answer (a reply, a launch or a termination) within the timeout."""


class KernelStalledError(KernelTimeoutError):
    """Raised when a kernel with input waiting has handled nothing for its launch option
    ``stall_timeout`` (docs/runtime.md, "Watchdog"): names the kernel, the time and the queue depth.
    """


class KernelFaultError(RinggenError, RuntimeError):
    """Raised when a kernel reports a fault that prevents it from continuing."""


class BarrierBrokenError(KernelFaultError):
    """Raised by ``receive`` when a kernel's handler left a barrier that can never complete (a party
    terminated or faulted; docs/barriers.md): names the kernel, the barrier and the party at fault.
    """


class WireFormatError(RinggenError, ValueError):
    """Raised when bytes do not decode as a message: names the offset, the field and the reason."""


class EncodeError(RinggenError, ValueError):
    """Raised when a message cannot be encoded: names the class, the field and the bound it exceeds."""
