"""Outbox kernels whose replies are every size from 1 to 80 bytes, at every alignment a C struct of
that size can have, and the two held-out kernels of issue 10 that faulted on the H200: generated
as Python source (handlers must live in a file: the compiler reads them)."""

from __future__ import annotations

from pathlib import Path

#: The issue's kernels (tests/outbox_alignment_kernels.py), without its docstring and imports.
ISSUE_KERNELS = (
    Path(__file__)
    .with_name("outbox_alignment_kernels.py")
    .read_text()
    .split("# ---- kernels ----\n", 1)[1]
)

_SCALARS = {8: "u64", 4: "u32", 2: "u16", 1: "u8"}


def sized_messages() -> list[tuple[str, int, int]]:
    """``(class name, size, alignment)`` of every message of ``sized_source``: each size 1..80 at
    its largest alignment, and the multiples of 16 also at alignments 4 and 1."""
    out = []
    for size in range(1, 81):
        align = next(a for a in (8, 4, 2, 1) if size % a == 0)
        out.append((f"S{size}a{align}", size, align))
        if size % 16 == 0:
            out += [(f"S{size}a4", size, 4), (f"S{size}a1", size, 1)]
    return out


def sized_source(*, issue: bool = True) -> str:
    """A module of one echo Outbox kernel per ``sized_messages`` entry (``echo_<name>``), a
    one-reply echo (``same_<name>``, a positional output ring) for each whose size is a multiple of
    16, and the issue's kernels with ``issue``."""
    lines = [
        "import ringgen as rg",
        "from ringgen.types import Array, f32, f64, i32, i64, u8, u16, u32, u64",
        "",
    ]
    for name, size, align in sized_messages():
        lines += ["", "@rg.message", f"class {name}:", f"    head: {_SCALARS[align]}"]
        if size > align:
            lines.append(f"    rest: Array[u8, {size - align}]")
        lines += [
            "",
            "",
            "@rg.ring_kernel(capacity=64)",
            f"def echo_{name.lower()}(m: {name}, out: rg.Outbox[{name}]) -> None:",
            "    out.emit(m)",
            "",
        ]
        if size % 16 == 0:
            lines += [
                "",
                "@rg.ring_kernel(capacity=64)",
                f"def same_{name.lower()}(m: {name}) -> {name}:",
                "    return m",
                "",
            ]
    if issue:
        lines.append(ISSUE_KERNELS)
    return "\n".join(lines) + "\n"
