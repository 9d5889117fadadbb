"""Compile every emitted source of a generated package with the toolchains on this machine.

Each file is checked by every toolchain that applies to it and the result is one ``CheckResult`` per
(file, toolchain): ``ok``, ``failed`` (with the compiler's first lines of output) or ``skipped`` (with
the reason, such as "nvcc not found"). Nothing here prints; ``ringgen check`` renders the results.

The sources of a backend are checked by the ``checker`` its row of ``ringgen.targets`` names
(found by the file's suffix); the host-side files by the checkers here.

| file | toolchains |
|---|---|
| ``<name>_types.h`` | gcc ``-std=c99 -pedantic -Wall -Werror``, g++ ``-std=c++17 -pedantic -Wall -Werror``, nvcc ``-arch=sm_90``, OpenCL (PyOpenCL, first platform) |
| ``.c`` | gcc ``-std=c99 -D_POSIX_C_SOURCE=199309L -Wall -Wextra -Werror`` (POSIX for its clock) |
| ``.cu`` | nvcc ``-arch=sm_90`` |
| ``.cl`` | OpenCL (PyOpenCL; ``-cl-std=CL3.0`` on an OpenCL 3 device) |
| ``.metal`` | ``ringgen.metal_shim.check_metal(path)``, when that module is present |
| ``.py`` | Python's compiler |
| ``manifest.json`` | ``schemas/manifest.schema.json`` |

A graph's device sources (``graphs/<graph>.<strategy>.cu`` or ``.cl``, docs/graphs.md) are checked
as the ``.cu`` and ``.cl`` above and named by their path in the package; a ``.cl`` whose stages
call ``rg.now()`` is also reported as refused, as the package's own.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import logging
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Callable, Optional

import attrs

from . import targets as registry
from .codegen.dialect_opencl import NOW_UNAVAILABLE
from .errors import RinggenError
from .codegen.opencl import calls_now
from .runtime.cuda.build import find_nvcc

__all__ = [
    "CheckResult",
    "NOW_NOTE",
    "check_c_source",
    "check_cuda_source",
    "check_file",
    "check_metal_source",
    "check_opencl_source",
    "check_package",
    "find_gcc",
    "find_gxx",
    "find_nvcc",
    "left_out_kernels",
    "opencl_device",
    "refused_sources",
]

log = logging.getLogger(__name__)

#: Seconds one compiler run may take before it counts as failed.
COMPILE_TIMEOUT = 300
#: Lines of compiler output kept in a failed result.
DETAIL_LINES = 20


def _or_list(words: list[str]) -> str:
    """``a``, ``a or b``, ``a, b or c``."""
    return words[-1] if len(words) == 1 else f"{', '.join(words[:-1])} or {words[-1]}"


#: Why the opencl backend refuses an OpenCL source whose kernels call ``rg.now()``.
NOW_NOTE = (
    "a kernel in this file calls rg.now(), which OpenCL C lacks (no device clock): the opencl "
    "backend refuses the file; run its kernels with backend="
    + _or_list([repr(t.name) for t in registry.auto_order() if "now" in t.capabilities])
)


@attrs.frozen
class CheckResult:
    """One file checked by one toolchain: ``status`` is ``ok``, ``failed`` or ``skipped``."""

    file: str
    toolchain: str
    status: str
    detail: str = ""

    @property
    def failed(self) -> bool:
        return self.status == "failed"


def find_gcc() -> Optional[str]:
    """Path of gcc (``$CC`` first), or None."""
    return shutil.which(os.environ.get("CC", "gcc")) or shutil.which("gcc")


def find_gxx() -> Optional[str]:
    """Path of g++ (``$CXX`` first), or None."""
    return shutil.which(os.environ.get("CXX", "g++")) or shutil.which("g++")


def opencl_device():
    """``(device, None)`` for the first OpenCL device of the first platform, or ``(None, reason)``."""
    try:
        import pyopencl as cl
    except ImportError:
        return None, "pyopencl is not installed (pip install 'ringgen[opencl]')"
    try:
        for platform in cl.get_platforms():
            devices = platform.get_devices()
            if devices:
                return devices[0], None
    except cl.Error as exc:
        return None, f"no OpenCL platform ({exc.what if hasattr(exc, 'what') else exc})"
    return None, "no OpenCL platform (apt-get install pocl-opencl-icd)"


def _tail(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return "\n".join(lines[:DETAIL_LINES])


def _run(cmd: list[str], cwd: Path) -> tuple[bool, str]:
    log.debug("running %s", " ".join(cmd))
    try:
        proc = subprocess.run(
            cmd, cwd=cwd, capture_output=True, text=True, timeout=COMPILE_TIMEOUT, check=False
        )
    except subprocess.TimeoutExpired:
        return False, f"timed out after {COMPILE_TIMEOUT} s"
    return proc.returncode == 0, _tail(proc.stderr + proc.stdout)


def _compile(
    tool: Optional[str],
    missing: str,
    name: str,
    file: Path,
    source: Optional[str],
    suffix: str,
    flags: list[str],
) -> CheckResult:
    """Compile ``file`` itself (``source`` None) or a small unit ``source`` that includes it."""
    if tool is None:
        return CheckResult(file.name, name, "skipped", missing)
    with tempfile.TemporaryDirectory(prefix="ringgen-check-") as tmp:
        unit = file
        if source is not None:
            unit = Path(tmp) / f"check{suffix}"
            unit.write_text(source, encoding="utf-8")
        ok, out = _run(
            [tool, *flags, "-I", str(file.parent), str(unit), "-o", str(Path(tmp) / "out.o")],
            Path(tmp),
        )
    return CheckResult(file.name, name, "ok" if ok else "failed", "" if ok else out)


def _opencl(file: Path, source: str, extra: tuple[str, ...] = ()) -> CheckResult:
    device, reason = opencl_device()
    if device is None:
        return CheckResult(file.name, "opencl", "skipped", reason)
    import pyopencl as cl

    options = ["-I", str(file.parent), *extra]
    if device.version.startswith("OpenCL 3"):
        options.append("-cl-std=CL3.0")
    label = f"opencl ({device.platform.name})"
    try:
        ctx = cl.Context([device])
        cl.Program(ctx, source).build(options=options)
    except cl.Error as exc:
        return CheckResult(file.name, label, "failed", _tail(str(exc)))
    return CheckResult(file.name, label, "ok")


def _check_header(file: Path) -> list[CheckResult]:
    include = f'#include "{file.name}"\n'
    nvcc = find_nvcc()
    return [
        _compile(
            find_gcc(),
            "gcc not found",
            "gcc -std=c99",
            file,
            include + "int main(void) { return 0; }\n",
            ".c",
            ["-std=c99", "-pedantic", "-Wall", "-Wextra", "-Werror", "-c"],
        ),
        _compile(
            find_gxx(),
            "g++ not found",
            "g++ -std=c++17",
            file,
            include + "int main() { return 0; }\n",
            ".cpp",
            ["-std=c++17", "-pedantic", "-Wall", "-Wextra", "-Werror", "-c"],
        ),
        _compile(
            nvcc,
            "nvcc not found (install the CUDA toolkit)",
            "nvcc -arch=sm_90",
            file,
            include + "__global__ void rg_check_kernel(void) {}\n",
            ".cu",
            ["-arch=sm_90", "-c"],
        ),
        _opencl(
            file, include + "__kernel void rg_check_kernel(__global int* out) { out[0] = 0; }\n"
        ),
    ]


def check_c_source(file: Path) -> list[CheckResult]:
    """The ``c`` backend's ``.c``: gcc ``-std=c99`` with warnings as errors."""
    # The C target reads the clock with clock_gettime, which C99 leaves to POSIX.
    flags = ["-std=c99", "-D_POSIX_C_SOURCE=199309L", "-Wall", "-Wextra", "-Werror", "-c"]
    return [_compile(find_gcc(), "gcc not found", "gcc -std=c99", file, None, ".c", flags)]


def check_cuda_source(file: Path) -> list[CheckResult]:
    """The ``cuda`` backend's ``.cu``: nvcc ``-arch=sm_90 -std=c++17``."""
    return [
        _compile(
            find_nvcc(),
            "nvcc not found (install the CUDA toolkit)",
            "nvcc -arch=sm_90",
            file,
            None,
            ".cu",
            ["-arch=sm_90", "-std=c++17", "-c"],
        )
    ]


def check_opencl_source(file: Path) -> list[CheckResult]:
    """The ``opencl`` backend's ``.cl``: built by PyOpenCL on the first device; a file calling
    ``rg.now()`` is built with the clock defined away, and reported as refused by the backend."""
    source = file.read_text()
    if not calls_now(source):
        return [_opencl(file, source)]
    # The opencl backend refuses the file (OpenCL C has no clock); the rest of it is still checked,
    # with the clock call defined away for this compile only.
    return [
        _opencl(file, source, (f"-D{NOW_UNAVAILABLE}()=0",)),
        CheckResult(file.name, "rg.now()", "skipped", NOW_NOTE),
    ]


def check_metal_source(file: Path) -> list[CheckResult]:
    """The ``metal`` backend's ``.metal``: ``ringgen.metal_shim.check_metal``, when installed."""
    if importlib.util.find_spec("ringgen.metal_shim") is None:
        return [
            CheckResult(file.name, "metal shim", "skipped", "ringgen.metal_shim is not installed")
        ]
    shim = importlib.import_module("ringgen.metal_shim")
    try:
        result = shim.check_metal(file)
    except RinggenError as exc:
        return [CheckResult(file.name, "metal shim", "failed", _tail(exc.message))]
    toolchain = f"metal shim ({result.compiler})" if result.compiler else "metal shim"
    if not result.ok:
        return [CheckResult(file.name, toolchain, "failed", _tail(result.stderr))]
    # Honest wording: "checked against the shim, not compiled by Apple's compiler".
    return [CheckResult(file.name, toolchain, "ok", result.wording)]


def _check_python(file: Path) -> list[CheckResult]:
    try:
        compile(file.read_text(encoding="utf-8"), str(file), "exec")
    except SyntaxError as exc:
        return [CheckResult(file.name, "python", "failed", f"line {exc.lineno}: {exc.msg}")]
    return [CheckResult(file.name, "python", "ok")]


def _check_manifest(file: Path) -> list[CheckResult]:
    from .codegen.manifest import load_schema, validate

    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        return [CheckResult(file.name, "json schema", "failed", f"not JSON: {exc}")]
    problems = validate(data, load_schema())
    status = "failed" if problems else "ok"
    return [CheckResult(file.name, "json schema", status, "\n".join(problems[:DETAIL_LINES]))]


def _checker(file: Path) -> Optional[Callable[[Path], list[CheckResult]]]:
    if file.name.endswith("_types.h"):
        return _check_header
    if file.name == "manifest.json":
        return _check_manifest
    if file.suffix == ".py":
        return _check_python
    for target in registry.TARGETS:
        if target.suffix == file.suffix and target.checker is not None:
            return registry.resolve(target.checker)
    return None


def check_file(file: os.PathLike | str) -> list[CheckResult]:
    """Check one emitted file with every toolchain that applies to it."""
    path = Path(
        file
    ).resolve()  # compilers run in a temporary folder: include paths must be absolute
    checker = _checker(path)
    if checker is None:
        return [CheckResult(path.name, "-", "skipped", "no checker for this kind of file")]
    return checker(path)


def check_package(pkg_dir: os.PathLike | str) -> list[CheckResult]:
    """Check every file of a generated package (the files its manifest lists, then the manifest).

    Raises:
        RinggenError: ``pkg_dir`` is not a generated package (no manifest.json).
    """
    pkg = Path(pkg_dir)
    manifest = pkg / "manifest.json"
    if not manifest.is_file():
        raise RinggenError(
            f"{pkg}: not a ringgen package (no manifest.json)",
            hint="pass the folder `ringgen build` wrote, e.g. generated/vector_add",
        )
    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
        files = [f["path"] for f in data["files"]]
    except (json.JSONDecodeError, KeyError, TypeError):
        data, files = {}, sorted(
            p.relative_to(pkg).as_posix()
            for p in [*pkg.iterdir(), *pkg.glob("graphs/*")]
            if p.is_file() and p.name != "manifest.json"
        )
    results: list[CheckResult] = []
    for name in files:
        path = pkg / name
        if not path.is_file():
            results.append(CheckResult(name, "-", "failed", "listed in manifest.json but missing"))
            continue
        # Named by the path in the package: graphs/<graph>.<strategy>.cu, not its last part.
        results += [attrs.evolve(r, file=name) for r in check_file(path)]
    results += check_file(manifest)
    return results + left_out_kernels(data)


def left_out_kernels(manifest: dict) -> list[CheckResult]:
    """One ``skipped`` result per kernel a target left out of its source (Metal without f64, ...),
    read from the manifest's ``kernels[].skipped``; the file is the target's source file."""
    try:
        by_target = {f["target"]: f["path"] for f in manifest.get("files", [])}
        return [
            CheckResult(
                by_target.get(target, f"({target})"),
                f"kernel {k['name']}",
                "skipped",
                f"left out of the {target} source: {why}",
            )
            for k in manifest.get("kernels", [])
            for target, why in sorted(k.get("skipped", {}).items())
        ]
    except (AttributeError, KeyError, TypeError):
        return []  # a malformed manifest fails its schema check above


def refused_sources(pkg_dir: os.PathLike | str) -> list[tuple[str, str]]:
    """``(file, why)`` for each emitted source a backend will refuse to load although it was built:
    today an OpenCL file whose kernels call ``rg.now()`` (the package's, or a graph's under
    ``graphs/``, named by its path in the package)."""
    pkg = Path(pkg_dir)
    sources = [*sorted(pkg.glob("*.cl")), *sorted(pkg.glob("graphs/*.cl"))]
    return [(p.relative_to(pkg).as_posix(), NOW_NOTE) for p in sources if calls_now(p.read_text())]
