"""The contract of a backend's emitter: compiled handlers in, the backend's source text out.

Each backend that emits source (a row of ``ringgen.targets`` with an ``emitter``) has one
``Emitter`` subclass; the writer runs it with the build's ``ir.Program``, compiled once per build
and shared by every emitter and the manifest. Every hook is abstract, so a new backend states all
of them. Emitters are pure: they return text, and only the writer touches the disk.
"""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING, Any, Optional

if TYPE_CHECKING:
    from ..build import BuildUnit
    from ..dsl import ir
    from ..kernel import KernelSpec
    from .options import EmitOptions

__all__ = ["Emitter"]


class Emitter(abc.ABC):
    """One backend's emitter (docs/architecture.md, "Emitters")."""

    @abc.abstractmethod
    def emit(
        self, unit: "BuildUnit", program: "ir.Program", options: "EmitOptions"
    ) -> dict[str, str]:
        """The backend's files of ``unit``: relative file name -> text.

        Args:
            unit: what the build contains.
            program: every handler and device function of ``unit``, compiled.
            options: what besides ``unit`` changes the text (``#line`` directives).

        Raises:
            HandlerError: a handler is outside the language.
            CodegenError: the text would break one of the generator's invariants.
        """

    @abc.abstractmethod
    def entry_points(self, kernel: str) -> dict[str, str]:
        """The functions the emitted source defines for ring kernel ``kernel``, by role (a mode
        such as ``persistent`` or ``relaunch``, or a step such as ``process``)."""

    @abc.abstractmethod
    def skipped(self, unit: "BuildUnit", program: "ir.Program") -> dict[str, str]:
        """The kernels of ``unit`` this backend leaves out of its source, each with the reason."""

    @abc.abstractmethod
    def abi(self, kernel: "KernelSpec", source: str) -> Optional[dict[str, Any]]:
        """What a loader must know about ``kernel``'s compiled code (the manifest's
        ``kernels[i].abi.<backend>``), given the emitted ``source``; None when the backend's
        loader needs nothing (docs/architecture.md, "The manifest contract")."""
