"""Checking generated Metal on Linux: compile it as C++17 against ``metal_shim.h``.

Apple's Metal compiler does not run on Linux. ``check_metal`` compiles a ``.metal`` file with g++ and
clang++ (each that is present), warnings as errors, against a shim header that maps Metal's address
spaces, atomics and math onto standard C++; it also checks every ``[[attribute]]`` against the ones
Metal defines, which a C++ compiler would only ignore. A pass means "checked against the shim, not
compiled by Apple's compiler" and the result says so in those words. ``executor`` runs the same source
on CPU threads for the differential tests.
"""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Optional, Sequence

import attrs

__all__ = [
    "HONEST_WORDING",
    "METAL_ATTRIBUTES",
    "MetalCheckResult",
    "available_compilers",
    "check_attributes",
    "check_metal",
    "check_metal_source",
    "shim_dir",
    "shim_flags",
]

#: What a passing check proves, in the words the CLI and the README use.
HONEST_WORDING = "checked against the shim, not compiled by Apple's compiler"

#: Attributes Metal defines for kernel parameters and functions (MSL 3, §5.2 and §5.7), by name; the
#: ones taking an index are listed with "(n)".
METAL_ATTRIBUTES = frozenset(
    {
        "buffer(n)",
        "threadgroup(n)",
        "texture(n)",
        "sampler(n)",
        "thread_position_in_grid",
        "thread_position_in_threadgroup",
        "thread_index_in_threadgroup",
        "threadgroup_position_in_grid",
        "threads_per_grid",
        "threads_per_threadgroup",
        "threadgroups_per_grid",
        "thread_index_in_simdgroup",
        "simdgroup_index_in_threadgroup",
        "threads_per_simdgroup",
        "dispatch_threads_per_threadgroup",
        "kernel",
    }
)

_COMPILERS = ("g++", "clang++")
#: Seconds one compiler run may take before the check counts it as failed.
COMPILE_TIMEOUT = 300
_ATTRIBUTE = re.compile(r"\[\[\s*([^\[\]]*?)\s*\]\]")
_INDEXED = re.compile(r"([A-Za-z_]+)\s*\(\s*(\d+)\s*\)\Z")
_KERNEL = re.compile(r"\bkernel\s+void\s+(\w+)\s*\((.*?)\)\s*\{", re.S)


@attrs.frozen
class MetalCheckResult:
    """The outcome of ``check_metal``.

    ``ok`` is True when every compiler accepted the file and every attribute is Metal's;
    ``compiler`` names the compilers used (``"g++ 12.2.0, clang++ 14.0.6"``); ``stderr`` holds their
    diagnostics and the attribute problems; ``wording`` is ``HONEST_WORDING``.
    """

    ok: bool
    path: str
    compiler: str
    stderr: str
    wording: str = HONEST_WORDING

    def __bool__(self) -> bool:
        return self.ok

    def __str__(self) -> str:
        verdict = "ok" if self.ok else "FAILED"
        text = (
            f"{self.path}: {verdict} ({self.wording}; {self.compiler or 'no C++ compiler found'})"
        )
        return text + ("\n" + self.stderr if self.stderr else "")


def shim_dir() -> Path:
    """The folder holding ``metal_shim.h``."""
    return Path(__file__).resolve().parent


@functools.lru_cache(maxsize=None)
def _compiler_version(exe: str) -> str:
    # gcc prints only the major version for -dumpversion; clang does not know -dumpfullversion.
    for flag in ("-dumpfullversion", "-dumpversion"):
        out = subprocess.run([exe, flag], capture_output=True, text=True, timeout=30)
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip()
    return ""


def available_compilers() -> list[str]:
    """The C++ compilers present, in the order the check uses them (g++, then clang++)."""
    return [c for c in _COMPILERS if shutil.which(c)]


def shim_flags() -> list[str]:
    """Flags that compile Metal source as C++17 against the shim, warnings as errors.

    The shim's folder goes on the include path: its ``metal_stdlib`` file stands in for Apple's."""
    return ["-std=c++17", "-x", "c++", "-Wall", "-Wextra", "-Werror", "-I", str(shim_dir())]


def check_attributes(text: str) -> list[str]:
    """Problems with the ``[[attributes]]`` of Metal source: unknown names, a buffer index reused
    within one kernel. C++ compilers ignore unknown attributes, so this is the shim's check of them.
    """
    problems = []
    for m in _ATTRIBUTE.finditer(text):
        raw = m.group(1)
        idx = _INDEXED.match(raw)
        key = f"{idx.group(1)}(n)" if idx else raw
        if key not in METAL_ATTRIBUTES:
            line = text.count("\n", 0, m.start()) + 1
            problems.append(f"line {line}: [[{raw}]] is not a Metal attribute")
    for m in _KERNEL.finditer(text):
        indices = re.findall(r"\[\[\s*buffer\s*\(\s*(\d+)\s*\)\s*\]\]", m.group(2))
        dup = sorted({i for i in indices if indices.count(i) > 1})
        if dup:
            problems.append(f"kernel {m.group(1)}: buffer index {', '.join(dup)} used twice")
    return problems


def check_metal_source(
    text: str, name: str = "<source>.metal", compilers: Optional[Sequence[str]] = None
) -> MetalCheckResult:
    """``check_metal`` on source text (written to a temporary file named ``name``)."""
    with tempfile.TemporaryDirectory(prefix="ringgen-metal-") as tmp:
        path = Path(tmp) / Path(name).name
        path.write_text(text)
        result = check_metal(path, compilers=compilers)
    return attrs.evolve(result, path=name)


def check_metal(path, compilers: Optional[Sequence[str]] = None) -> MetalCheckResult:
    """Compile the Metal source at ``path`` against the shim with every C++ compiler present.

    Args:
        path: a ``.metal`` file.
        compilers: the compilers to use (default: g++ and clang++, those present).

    Returns:
        A ``MetalCheckResult``: ``ok`` is False when a compiler rejects the file, an attribute is not
        Metal's, or no C++ compiler is present (then ``stderr`` says so).
    """
    path = Path(path)
    text = path.read_text()
    used = list(compilers) if compilers is not None else available_compilers()
    errors = check_attributes(text)
    if not used:
        errors.append("no C++ compiler (g++ or clang++) found: the Metal source was not checked")
    names = []
    for exe in used:
        names.append(f"{exe} {_compiler_version(exe)}".strip())
        cmd = [exe, *shim_flags(), "-fsyntax-only", str(path)]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=COMPILE_TIMEOUT)
        except subprocess.TimeoutExpired:
            errors.append(f"{exe}: no answer within {COMPILE_TIMEOUT} s")
            continue
        if proc.returncode != 0:
            errors.append(f"{exe}:\n{proc.stderr.strip()}")
    return MetalCheckResult(
        ok=not errors, path=str(path), compiler=", ".join(names), stderr="\n".join(errors)
    )
