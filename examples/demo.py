"""`make demo`: every example's layouts, then its kernels run on the best backend present.

For each module in examples/ this imports its generated package (generated/<name>/, rebuilt by
`make generate`, which `make demo` runs first), prints every message's C layout, and, where the
package has a runtime, launches each kernel (`generated.<name>.runtime.<kernel>.launch`), sends a few
sample messages, and prints the replies and the kernel's stats.

    python examples/demo.py                    # backend from RINGGEN_BACKEND, else auto
    python examples/demo.py --backend cpu      # cuda, opencl, cpu or auto
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import ringgen as rg  # noqa: E402
from ringgen.cli import format_table  # noqa: E402
from ringgen.errors import QueueClosedError, KernelTimeoutError  # noqa: E402
from ringgen.types import ArrayType, ListType, MessageType, ScalarType, StrType  # noqa: E402

SAMPLES = 4


def example_names() -> list[str]:
    """The example modules, in name order (what `make generate` builds)."""
    return sorted(
        p.stem for p in (ROOT / "examples").glob("*.py") if p.name not in ("__init__.py", "demo.py")
    )


def sample_value(t, i: int):
    """A small, deterministic value of field type ``t`` for sample message ``i``."""
    if isinstance(t, ScalarType):
        if t.kind == "bool":
            return i % 2 == 1
        if t.is_float:
            return 0.5 * (i + 1)
        return i + 1
    if isinstance(t, ArrayType):
        return [sample_value(t.elem, i + k) for k in range(t.length)]
    if isinstance(t, StrType):
        return f"msg{i}"[: t.max_bytes]
    if isinstance(t, ListType):
        return [sample_value(t.elem, i + k) for k in range(min(2, t.max_len))]
    if isinstance(t, MessageType):
        return sample_message(t.cls, i)
    raise TypeError(t)


def sample_message(cls: type, i: int):
    """Sample message ``i`` of ``cls``: every field filled from ``sample_value``."""
    spec = rg.spec_of(cls)
    return cls(**{f.name: sample_value(f.type, i) for f in spec.fields})


def show_layouts(manifest: dict) -> None:
    for m in manifest["messages"]:
        where = "device memory" if m["role"] == "state" else f"queue slot {m['slot_size']} bytes"
        print(
            f"\n  {m['role']} {m['name']}: {m['kind']}, {m['size']} bytes, "
            f"aligned to {m['align']}, {where}"
        )
        print(
            format_table(
                ["field", "type", "offset", "size"],
                [[f["name"], f["type"], f["offset"], f["size"]] for f in m["fields"]],
                indent="    ",
            )
        )


def run_kernel(name: str, kernel: dict, package, backend: str) -> None:
    """Launch one kernel from the package's runtime, send samples, print replies and stats."""
    if importlib.util.find_spec(f"generated.{name}.runtime") is None:
        print(f"  {kernel['name']}: this package has no runtime.py; showing layouts only")
        return
    runtime = importlib.import_module(f"generated.{name}.runtime")
    input_cls = getattr(package, kernel["input"])
    messages = [sample_message(input_cls, i) for i in range(SAMPLES)]
    replies = []
    with getattr(runtime, kernel["name"]).launch(backend=backend) as k:
        print(f"\n  kernel {kernel['name']} on {k.stats().backend}:")
        for msg in messages:
            k.send(msg, timeout=10.0)
            print(f"    sent     {msg}")
        stats = k.terminate(timeout=30.0)  # drains every message already sent
        while True:
            try:
                replies.append(k.receive(timeout=0.0))
            except (QueueClosedError, KernelTimeoutError):
                break
    for reply in replies:
        print(f"    received {reply}")
    print(
        f"    stats: processed {stats.processed}, emitted {stats.emitted}, "
        f"rejected {stats.rejected_total}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--backend",
        default=os.environ.get("RINGGEN_BACKEND", "auto"),
        help="cuda, opencl, cpu or auto (default: $RINGGEN_BACKEND or auto)",
    )
    args = parser.parse_args(argv)
    failed = []
    for name in example_names():
        try:
            package = importlib.import_module(f"generated.{name}")
        except ModuleNotFoundError:
            print(f"{name}: not generated; run `make generate`")
            failed.append(name)
            continue
        manifest = package.manifest()
        print(f"\n=== {name} ({manifest['source_file']}) " + "=" * max(0, 70 - len(name)))
        show_layouts(manifest)
        for kernel in manifest["kernels"]:
            try:
                run_kernel(name, kernel, package, args.backend)
            except rg.RinggenError as exc:
                print(f"  {kernel['name']}: {exc}")
                failed.append(f"{name}.{kernel['name']}")
            except Exception as exc:  # a bug, not a diagnosis: say where, keep demonstrating
                print(f"  {kernel['name']}: failed with {type(exc).__name__}: {str(exc)[:200]}")
                failed.append(f"{name}.{kernel['name']}")
    if failed:
        print(f"\ndemo: {len(failed)} failed: {', '.join(failed)}")
        return 1
    print("\ndemo: every example ran")
    return 0


if __name__ == "__main__":
    sys.exit(main())
