"""Derive the names the C, C++ and CUDA toolchains reserve, and write ``ringgen/reserved_names.txt``.

A message, field, kernel or local name that a compiler already knows as a macro, a type, a function
or a constant breaks the generated code (``FILE``, ``time_t``, ``EOF``, ``INT_MAX``, ``M_PI``,
``linux``, ``cudaError_t``, ...). Rather than list them by hand, this script asks the compilers:

* **macros**: ``gcc -dM -E`` on every C standard header, ``g++ -dM -E`` on the C++ headers the
  generated Metal driver and shim include, and ``nvcc -E -Xcompiler -dM`` on an empty ``.cu`` (which
  includes ``cuda_runtime.h``): every macro, predefined ones included;
* **file-scope declarations**: the preprocessed C standard headers and CUDA's C headers
  (``vector_types.h``, ``driver_types.h``, ``cuda_runtime_api.h``, ...) are scanned for the names
  they declare at file scope: typedefs, functions, variables, struct/union/enum tags and enum
  constants (struct members and parameters are not global names and are left out). Names that
  are only functions (``index``, ``y1``, ``sin``) go in sections of their own: they break a
  message, kernel or local of that name, but not a struct member.

Only names ringgen would otherwise accept are written (ASCII, starting with a letter, no ``__``, no
``rg_`` prefix): the others are refused by their shape already. The OpenCL and Metal builtin types
are not derived (no compiler for them here): they are data in ``ringgen/naming.py``.

Run it after a toolchain upgrade and commit the result::

    python tools/reserved_names.py            # rewrites ringgen/reserved_names.txt
    python tools/reserved_names.py --check    # exit 1 when the file is stale
"""

from __future__ import annotations

import argparse
import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "ringgen" / "reserved_names.txt"

#: The C standard library (C11/C17 headers; threads.h and stdatomic.h where present).
C_HEADERS = (
    """assert.h complex.h ctype.h errno.h fenv.h float.h inttypes.h iso646.h limits.h locale.h
math.h setjmp.h signal.h stdalign.h stdarg.h stdatomic.h stdbool.h stddef.h stdint.h stdio.h
stdlib.h stdnoreturn.h string.h tgmath.h threads.h time.h uchar.h wchar.h wctype.h""".split()
)

#: The C++ headers generated code includes (templates/metal/driver.cpp.j2, metal_shim.h); their
#: names live in namespace std, so only their macros reach a user's names.
CXX_HEADERS = "atomic cmath cstddef cstdint cstring thread type_traits vector".split()

#: CUDA's C headers, whose file-scope names every .cu sees (nvcc includes cuda_runtime.h).
CUDA_C_HEADERS = """vector_types.h driver_types.h surface_types.h texture_types.h
cuda_runtime_api.h vector_functions.h""".split()

_SHAPE = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")
_TOKEN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|\S")
_C_KEYWORDS = set(
    """auto break case char const continue default do double else enum extern float for goto if
    inline int long register restrict return short signed sizeof static struct switch typedef union
    unsigned void volatile while""".split()
)


def _acceptable(name: str) -> bool:
    """Whether ringgen's shape rule would accept ``name`` (the only names the table needs)."""
    return bool(_SHAPE.match(name)) and "__" not in name and not name.lower().startswith("rg_")


def _run(cmd: list[str], source: str) -> str:
    proc = subprocess.run(cmd, input=source, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    return proc.stdout


def _existing(compiler: str, lang: str, headers: list[str], flags: list[str]) -> list[str]:
    """The headers of ``headers`` that ``compiler`` finds (threads.h is missing on some libcs)."""
    found = []
    for h in headers:
        proc = subprocess.run(
            [compiler, *flags, "-x", lang, "-E", "-"],
            input=f"#include <{h}>\n",
            capture_output=True,
            text=True,
        )
        if proc.returncode == 0:
            found.append(h)
    return found


def _macros(text: str) -> tuple[set[str], set[str]]:
    """(object-like macros, function-like macros): a function-like one expands only before "(",
    so, like a function, it cannot clash with a struct member."""
    objects, functions = set(), set()
    for m in re.finditer(r"^#define ([A-Za-z_]\w*)(\(?)", text, re.M):
        (functions if m.group(2) else objects).add(m.group(1))
    return objects, functions - objects


def file_scope_names(text: str) -> tuple[set[str], set[str]]:
    """(names, function names) declared at file scope in preprocessed C.

    A token scanner, not a parser: identifiers outside any parentheses and braces are declared (or
    used as types, which are global names too), and those followed by ``(`` are functions; inside an
    ``enum { ... }`` the identifiers after ``{`` or ``,`` are constants; everything else inside braces
    or parentheses (struct members, parameters, bodies) is skipped. A name that is only ever a
    function is returned in the second set alone.
    """
    names: set[str] = set()
    functions: set[str] = set()
    braces = parens = 0
    enum_depth = None  # brace depth of the enum body being read
    pending_enum = False
    prev = ""
    candidate = None  # a file-scope identifier waiting to see whether "(" follows
    tokens = (t for ln in text.splitlines() if not ln.startswith("#") for t in _TOKEN.findall(ln))
    for tok in tokens:
        if candidate is not None:
            (functions if tok == "(" else names).add(candidate)
            candidate = None
        if tok == "(":
            parens += 1
        elif tok == ")":
            parens -= 1
        elif tok == "{":
            braces += 1
            if pending_enum:
                enum_depth, pending_enum = braces, False
        elif tok == "}":
            if enum_depth == braces:
                enum_depth = None
            braces -= 1
        elif tok == ";":
            pending_enum = False
        elif tok == "enum":
            pending_enum = True
        elif tok[0].isalpha() or tok[0] == "_":
            if tok in _C_KEYWORDS:
                pass
            elif braces == 0 and parens == 0:
                candidate = tok
            elif enum_depth == braces and parens == 0 and prev in ("{", ","):
                names.add(tok)
        prev = tok
    return names, functions - names


TEMPLATES = Path(__file__).resolve().parent.parent / "templates"


def template_names(folder: Path = TEMPLATES) -> set[str]:
    """The plain identifiers ringgen's own C-family templates use (locals and parameters such as
    ``i``, ``tid``, ``state``, ``status``, ``out``): a message type of one of these names would be
    shadowed inside the skeletons. Jinja tags, comments and string literals are left out."""
    names: set[str] = set()
    for path in sorted(folder.rglob("*.j2")):
        if path.parent.name == "python":
            continue
        text = re.sub(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", " ", path.read_text(), flags=re.S)
        text = re.sub(r"/\*.*?\*/|//[^\n]*|\"(?:\\.|[^\"\\])*\"", " ", text, flags=re.S)
        words = re.findall(r"(?<![A-Za-z0-9_])[A-Za-z_][A-Za-z0-9_]*", text)  # not 0x... tails
        names |= {t for t in words if t not in _C_KEYWORDS}
    return names


def derive() -> tuple[dict[str, set[str]], list[str]]:
    """(source -> names, the toolchains used) from the compilers on this machine."""
    out: dict[str, set[str]] = {}
    used = []
    gcc, gxx, nvcc = shutil.which("gcc"), shutil.which("g++"), shutil.which("nvcc")
    if gcc is None:
        raise SystemExit("gcc is needed to derive the C library's names")
    c_flags = ["-std=gnu11"]  # gnu mode predefines `linux` and `unix`, as a plain gcc call does
    headers = _existing(gcc, "c", C_HEADERS, c_flags)
    src = "".join(f"#include <{h}>\n" for h in headers)
    out["C"], macro_fns = _macros(_run([gcc, *c_flags, "-x", "c", "-dM", "-E", "-"], src))
    names, functions = file_scope_names(_run([gcc, *c_flags, "-x", "c", "-E", "-"], src))
    out["C"] |= names
    out["C functions"] = (functions | macro_fns) - out["C"]
    used.append(_version([gcc, "--version"]))
    if gxx is not None:
        src = "".join(f"#include <{h}>\n" for h in CXX_HEADERS)
        out["C++"], out["C++ functions"] = _macros(
            _run([gxx, "-std=gnu++17", "-x", "c++", "-dM", "-E", "-"], src)
        )
        used.append(_version([gxx, "--version"]))
    if nvcc is not None:
        probe = Path(_tmp()) / "reserved_probe.cu"
        probe.write_text("\n")
        out["CUDA"], macro_fns = _macros(_run([nvcc, "-E", "-Xcompiler", "-dM", str(probe)], ""))
        # where nvcc finds cuda_runtime.h (nvcc may be a wrapper script elsewhere)
        marks = _run([nvcc, "-E", str(probe)], "")
        found_at = re.search(r'^# \d+ "([^"]*)/cuda_runtime\.h"', marks, re.M)
        if found_at is None:
            raise SystemExit("cannot tell where nvcc finds cuda_runtime.h")
        cuda_include = Path(found_at.group(1))
        found = _existing(gcc, "c", CUDA_C_HEADERS, ["-I", str(cuda_include)])
        src = "".join(f"#include <{h}>\n" for h in found)
        names, functions = file_scope_names(
            _run([gcc, "-I", str(cuda_include), "-x", "c", "-E", "-"], src)
        )
        out["CUDA"] |= names
        out["CUDA functions"] = (functions | macro_fns) - out["CUDA"]
        used.append(_version([nvcc, "--version"]))
    out["generated code"] = template_names()
    return {k: {n for n in v if _acceptable(n)} for k, v in out.items()}, used


def _tmp() -> str:
    import tempfile

    return tempfile.mkdtemp(prefix="ringgen-reserved-")


def _version(cmd: list[str]) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    first = lines[0] if lines else cmd[0]
    return lines[-1] if "nvcc" in cmd[0] and lines else first


def render(names: dict[str, set[str]], used: list[str]) -> str:
    """The text of ``reserved_names.txt``: a header saying how it was made, then ``[source]``
    sections, one name per line, sorted."""
    head = [
        "# Names the C, C++ and CUDA toolchains reserve: macros (predefined ones included) and",
        "# file-scope declarations of the C standard headers and CUDA's C headers. ringgen refuses",
        "# them as message, field, kernel and local names (ringgen/naming.py reads this file),",
        "# except the '... functions' sections: names that are only functions or function-like",
        "# macros, refused as message, kernel and local names (a struct member may be `index`),",
        "# and '[generated code]': the plain identifiers of ringgen's own templates (`i`, `tid`,",
        "# `state`), refused as message and state class names only (a type of that name would be",
        "# shadowed inside the kernel skeletons).",
        "#",
        "# Generated by tools/reserved_names.py; do not edit by hand. It ran `gcc -dM -E` and",
        "# `gcc -E` on the C standard headers, `g++ -dM -E` on the C++ headers generated code",
        "# includes, and `nvcc -E -Xcompiler -dM` plus `gcc -E` on CUDA's C headers, with:",
        *[f"#   {u}" for u in used],
        f"#   on {platform.system()} {platform.machine()}",
        "# Only names ringgen's shape rule accepts are listed (ASCII letter first, no '__', no 'rg_').",
    ]
    body = []
    sections = ("C", "C functions", "C++", "C++ functions", "CUDA", "CUDA functions")
    for source in sections + ("generated code",):
        if source in names:
            body.append(f"[{source}]")
            body += sorted(names[source])
    return "\n".join(head + body) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if the committed file differs")
    ap.add_argument("--out", type=Path, default=OUT, help=f"where to write (default {OUT})")
    args = ap.parse_args(argv)
    names, used = derive()
    text = render(names, used)
    if args.check:
        same = args.out.exists() and args.out.read_text() == text
        print("up to date" if same else f"{args.out} is stale: run python tools/reserved_names.py")
        return 0 if same else 1
    args.out.write_text(text)
    print(f"wrote {args.out}: " + ", ".join(f"{len(v)} {k}" for k, v in names.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
