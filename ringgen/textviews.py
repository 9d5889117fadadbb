"""The text ``ringgen`` prints for people: tables, the blocks ``ringgen inspect`` shows for a
message and a graph of the manifest, and the warnings ``ringgen build`` gives about what a target
left out. Functions of their arguments: the CLI prints what they return."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

__all__ = ["format_table", "graph_block", "left_out_warnings", "message_block", "strategy_block"]


def format_table(
    headers: Sequence[str], rows: Sequence[Sequence[object]], indent: str = "  "
) -> str:
    """A plain-text table: columns padded to their widest cell, numbers right-aligned."""
    cells = [[str(h) for h in headers]] + [["-" if v is None else str(v) for v in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    numeric = [
        all(isinstance(r[i], int) and not isinstance(r[i], bool) for r in rows) and rows
        for i in range(len(headers))
    ]

    def line(r: list[str]) -> str:
        parts = [
            c.rjust(w) if numeric[i] else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))
        ]
        return (indent + "  ".join(parts)).rstrip()

    rule = [("-" * w) for w in widths]
    return "\n".join([line(cells[0]), line(rule)] + [line(r) for r in cells[1:]])


def message_block(m: dict) -> str:
    kind = m["kind"]
    head = (
        f"{m['role']} {m['name']}: {kind}, {m['size']} bytes, aligned to {m['align']}, "
        f"queue slot {m['slot_size']} bytes, type id 0x{m['type_id']:08x}"
    )
    rows = [[f["name"], f["type"], f["offset"], f["size"], f["align"]] for f in m["fields"]]
    used = sum(f["size"] for f in m["fields"])
    totals = (
        f"  total: {len(m['fields'])} fields, {used} bytes of data + "
        f"{m['size'] - used} padding = {m['size']} bytes"
    )
    if kind == "bridged":
        totals += (
            f"\n  bridged: travels as a 256-byte header + at most {m['max_payload']} payload "
            f"bytes; the table is the view struct the device decodes into"
        )
    else:
        totals += "\n  direct: the queue slot is this C struct, byte for byte"
    table = format_table(["field", "type", "offset", "size", "align"], rows)
    return "\n".join([head, table, totals])


def graph_block(g: dict, kernels: dict) -> str:
    """A graph of the manifest: its stages (with their role and types), then its edges."""
    exits = g["exits"]
    head = f"graph {g['name']}: entry {g['entry']}, exit{'s' if len(exits) > 1 else ''} " + (
        ", ".join(exits)
    )

    def role(stage: str) -> str:
        roles = [r for r, yes in (("entry", stage == g["entry"]), ("exit", stage in exits)) if yes]
        return ", ".join(roles) or "-"

    stages = format_table(
        ["stage", "role", "input", "output", "ordered"],
        [
            [
                s,
                role(s),
                kernels.get(s, {}).get("input"),
                kernels.get(s, {}).get("output"),
                "yes" if kernels.get(s, {}).get("ordered") else "no",
            ]
            for s in g["stages"]
        ],
    )
    edges = format_table(
        ["producer", "consumer", "message"],
        [[e["producer"], e["consumer"], e["message"]] for e in g["edges"]],
    )
    return "\n".join([head, stages, "", edges] if g["edges"] else [head, stages])


def strategy_block(g: dict) -> str:
    """How a graph of the manifest runs besides ``host`` (every backend runs it so): per device
    strategy, the one kernel it is fused into and that kernel's source per target, or the reason the
    strategy refuses the graph (``graph_fusion.check_device_keeps``'s error). Empty when the build
    made no target a device strategy runs on."""
    rows = []
    for name, entry in sorted(g.get("strategies", {}).items()):
        if "refused" in entry:
            rows.append([name, "refused", entry["refused"].splitlines()[0]])
        else:
            files = ", ".join(f"{t}: {p}" for t, p in sorted(entry["sources"].items()))
            rows.append([name, entry["kernel"], files])
    if not rows:
        return ""
    return format_table(["strategy", "kernel", "sources, or why it refuses the graph"], rows)


def left_out_warnings(pkg: Path) -> list[str]:
    """The warnings ``ringgen build`` prints about ``pkg``: which emitted source a backend will
    refuse (OpenCL and ``rg.now()``) and which kernels a target left out of its source (the
    manifest records them)."""
    from .check import refused_sources

    lines = [f"ringgen build: warning: {name}: {why}" for name, why in refused_sources(pkg)]
    try:
        kernels = json.loads((pkg / "manifest.json").read_text(encoding="utf-8"))["kernels"]
    except (OSError, ValueError, KeyError):
        return lines
    for k in kernels:
        for target, why in sorted(k.get("skipped", {}).items()):
            lines.append(
                f"ringgen build: warning: kernel {k['name']} is left out of the {target} source: "
                f"{why}"
            )
    return lines
