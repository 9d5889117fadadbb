"""A backend that exists only in the tests: every piece one row of ``ringgen.targets`` names.

``tests/test_targets.py`` adds ``ROW`` to the table and checks that the writer, the manifest,
``ringgen check``, ``ringgen devices``, the CLI help and ``auto`` all pick it up from that one row.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from ringgen.check import CheckResult
from ringgen.codegen.emitter import Emitter
from ringgen.runtime.cpu import CpuKernelHandle
from ringgen.runtime.probes import DeviceInfo
from ringgen.targets import Target

NAME = "fake"


class FakeEmitter(Emitter):
    """Writes one line per kernel naming its entry point (and nothing a compiler reads)."""

    def emit(self, unit: Any, program: Any, options: Any) -> dict[str, str]:
        lines = [f"// {unit.name}: {len(program.handlers)} handlers"]
        lines += [f"// {k.name}: {self.entry_points(k.name)['run']}" for k in unit.kernels]
        return {f"{unit.name}.fake": "\n".join(lines) + "\n"}

    def entry_points(self, kernel: str) -> dict[str, str]:
        return {"run": f"fake_{kernel}"}

    def skipped(self, unit: Any, program: Any) -> dict[str, str]:
        return {}

    def abi(self, kernel: Any, source: str) -> None:
        return None


class FakeKernelHandle(CpuKernelHandle):
    """The reference backend under another name."""

    backend: ClassVar[str] = NAME


HANDLE_CLASS = FakeKernelHandle


def probe() -> tuple[DeviceInfo, ...]:
    return (DeviceInfo(NAME, "tests", "fake device", "reference", True, "-", "tests only"),)


def check(file: Path) -> list[CheckResult]:
    return [CheckResult(file.name, "fake checker", "ok")]


ROW = Target(
    name=NAME,
    suffix=".fake",
    dialect="Fake C",
    emitter=f"{__name__}:FakeEmitter",
    loader=__name__,
    probe=f"{__name__}:probe",
    install_hint="nothing to install: it is the tests' own",
    auto_rank=99,
    checker=f"{__name__}:check",
    capabilities={"resident", "now"},
)
