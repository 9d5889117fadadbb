"""The differential check: a kernel module through the reference and every backend, compared.

``check_module(source, runners, workdir)`` writes the module, builds it (``ringgen.build.collect``),
prepares every runner once, and for each kernel runs the same random messages (with boundary values,
``ringgen.testing.messages``) through the reference and each runner that can run it. Outputs, final
state and fault counts by reason must agree (``ringgen.testing.compare``); the first disagreement
raises ``MismatchError`` whose message holds the backend, the kernel, the field, the seed and the
whole module as Python source, ready to paste into a regression test.
"""

from __future__ import annotations

import itertools
import os
import sys
import zlib
from pathlib import Path
from typing import Mapping, Optional, Sequence, Union

import attrs

from ..build import collect
from ..errors import BuildError, HandlerError, RinggenError, SchemaError, ToolchainError
from ..layout import layout_of
from .compare import MismatchError, compare_runs
from .handlers import GeneratedModule
from .messages import random_messages
from .runners import ReferenceRunner, Runner

__all__ = ["CheckReport", "MATH_ULPS", "check_module", "module_name"]

#: ULP bound for output fields computed by a non-exact math function (glibc, numpy's SIMD kernels,
#: OpenCL's and CUDA's libraries are each within a few ULP of the correctly rounded result).
MATH_ULPS = 4
#: Where the module under test is also written before any native code runs, so that a crash (which
#: no assertion can report) still leaves the kernel behind.
LAST_MODULE_ENV = "RINGGEN_GEN_LAST"

_names = itertools.count()


@attrs.define
class CheckReport:
    """What ``check_module`` ran: kernels run per backend, and kernels skipped with the reason."""

    ran: dict[str, int] = attrs.Factory(dict)
    skipped: dict[str, list[str]] = attrs.Factory(dict)
    shapes: list[str] = attrs.Factory(list)

    def merge(self, other: "CheckReport") -> None:
        for k, v in other.ran.items():
            self.ran[k] = self.ran.get(k, 0) + v
        for k, v in other.skipped.items():
            self.skipped.setdefault(k, []).extend(v)
        self.shapes.extend(other.shapes)


def module_name(prefix: str = "rg_gen") -> str:
    """A module name no other generated module in this process has (packages are keyed by it)."""
    return f"{prefix}_{os.getpid()}_{next(_names)}"


def _failure(what: str, source: str, seed: int, kernel: str, n: int, detail: str) -> str:
    """The text of a failure: what, where, and everything needed to run it again."""
    return (
        f"{what}\n  kernel {kernel}, seed {seed}, {n} messages\n  {detail}\n"
        f"--- the module (paste it into a regression test) ---\n{source}"
        f"--- end of module ---\n"
        f"reproduce: ringgen.testing.check_module(SOURCE, runners, tmp_path, seed={seed}, "
        f"n_messages={n})"
    )


def check_module(
    module: Union[GeneratedModule, str],
    runners: Sequence[Runner],
    workdir: Union[str, os.PathLike],
    *,
    seed: int = 0,
    n_messages: int = 48,
    special: Optional[bool] = None,
    ulps: Optional[Mapping[str, Mapping[str, int]]] = None,
    name: Optional[str] = None,
) -> CheckReport:
    """Run every kernel of ``module`` on the reference and on ``runners``; raise on a disagreement.

    Args:
        module: a ``GeneratedModule`` or the source text of a kernel module.
        runners: the backends to check (``cpu_runners()``, ``CudaRunner()``, ...).
        workdir: a scratch folder (sources, libraries, packages).
        seed: seeds the random messages (each kernel adds a hash of its name).
        n_messages: messages per kernel.
        special: NaN and infinities among the float values (default: the generated module's
            ``Profile.nan``, else True).
        ulps: kernel name -> {output field: ULP bound}; by default a kernel's output fields named
            ``approx*`` (generated kernels put one non-exact math function there) get
            ``MATH_ULPS``, and every other float must agree bit for bit.
        name: the module's name (default: a fresh one).

    Returns:
        A ``CheckReport`` of what ran and what was skipped (and why).

    Raises:
        MismatchError: a backend disagreed with the reference, could not build the module, or
            failed to run a kernel (did not drain in time, faulted, could not launch).
        HandlerError, SchemaError: the module does not compile (the generator's fault, or the
            compiler's: the message has the file:line:col).
    """
    source = module.source if isinstance(module, GeneratedModule) else str(module)
    if special is None:
        special = module.profile.nan if isinstance(module, GeneratedModule) else True
    tolerances = dict(ulps or {})
    work = Path(workdir)
    name = name or module_name()
    mod_dir = work / "modules"
    mod_dir.mkdir(parents=True, exist_ok=True)
    path = mod_dir / f"{name}.py"
    path.write_text(source)
    last = os.environ.get(LAST_MODULE_ENV)
    if last:
        Path(last).write_text(source)
    report = CheckReport()
    try:
        unit = collect(str(path))
        ref = ReferenceRunner()
        for runner in runners:
            try:
                runner.prepare(unit, work / runner.name)
            except (ToolchainError, BuildError) as exc:  # a compiler rejected generated source
                raise MismatchError(
                    _failure(
                        f"{runner.name} could not build",
                        source,
                        seed,
                        "(all)",
                        n_messages,
                        exc.message,
                    )
                ) from None
        for spec in unit.kernels:
            if spec.name not in tolerances and spec.output is not None:
                names = layout_of(spec.output).dtype.names or ()
                tolerances[spec.name] = {f: MATH_ULPS for f in names if f.startswith("approx")}
            kseed = (seed + zlib.crc32(spec.name.encode())) % 2**32
            messages = random_messages(spec.input, n_messages, kseed, special=special)
            want = ref.run(spec, messages)
            for runner in runners:
                why = runner.skip_reason(spec)
                if why is not None:
                    report.skipped.setdefault(runner.name, []).append(f"{spec.name}: {why}")
                    continue
                try:
                    got = runner.run(spec, messages)
                except (HandlerError, SchemaError):
                    raise
                except RinggenError as exc:  # did not drain, faulted, could not launch
                    raise MismatchError(
                        _failure(
                            f"{runner.name} failed",
                            source,
                            seed,
                            spec.name,
                            n_messages,
                            exc.message,
                        )
                    ) from None
                detail = compare_runs(want, got, ulps=tolerances.get(spec.name, {}))
                if detail is not None:
                    raise MismatchError(
                        _failure(
                            f"{runner.name} disagrees with the reference",
                            source,
                            seed,
                            spec.name,
                            n_messages,
                            detail,
                        )
                    )
                report.ran[runner.name] = report.ran.get(runner.name, 0) + 1
    finally:
        sys.modules.pop(name, None)
    if isinstance(module, GeneratedModule):
        report.shapes.extend(k.shape for k in module.kernels)
    return report
