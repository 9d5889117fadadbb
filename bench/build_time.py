"""How long ``ringgen build`` takes as a module grows: 125-1,000 classes, 1,000-10,000 fields.

Each case writes a generated user module into a temporary folder and runs ``ringgen build`` on it in
a fresh interpreter (as a user would), measuring wall time and the CPU time of that process. Build
time should grow linearly (issue 11: 1,000 classes <= 10 s and one 10,000-field message <= 5 s on
the 2-core machine); the JSON under ``bench/results/`` records date, commit and machine.

    python bench/build_time.py                 # every case
    python bench/build_time.py --classes 250   # one case (repeatable option)
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS_DIR, git_commit  # noqa: E402

CLASS_COUNTS = (125, 250, 500, 1000)
FIELD_COUNTS = (1000, 10000)


def module_with_classes(n: int) -> str:
    """A user module with ``n`` message classes (every other one bridged) and a kernel per 25."""
    out = ["import ringgen as rg", "from ringgen.types import Str, f32, i32, i64", ""]
    for i in range(n):
        out += ["", "@rg.message", f"class M{i}:", "    id: i64", "    a: f32", "    b: i32"]
        if i % 2:
            out.append("    s: Str[16]")
    for k in range(0, n, 25):
        out += ["", "@rg.ring_kernel", f"def k{k}(req: M{k}) -> M{k}:", "    return req"]
    return "\n".join(out) + "\n"


def module_with_fields(n: int) -> str:
    """A user module with one direct message of ``n`` i32 fields and an echo kernel."""
    out = [
        "import ringgen as rg",
        "from ringgen.types import i32",
        "",
        "",
        "@rg.message",
        "class Big:",
    ]
    out += [f"    f{i}: i32" for i in range(n)]
    out += ["", "", "@rg.ring_kernel", "def echo(req: Big) -> Big:", "    return req", ""]
    return "\n".join(out)


def time_build(text: str, name: str) -> dict:
    """Write ``text`` as ``<name>.py``, run ``ringgen build`` on it; wall and CPU seconds."""
    with tempfile.TemporaryDirectory(prefix="ringgen-bench-") as tmp:
        src = Path(tmp) / f"{name}.py"
        src.write_text(text)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "ringgen.cli", "build", str(src), "-o", str(Path(tmp) / "out")],
            capture_output=True,
            text=True,
            cwd=tmp,
        )
        wall = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if proc.returncode:
            raise RuntimeError(f"ringgen build {name} failed:\n{proc.stderr}")
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        return {"wall_s": round(wall, 3), "cpu_s": round(cpu, 3), "source_bytes": len(text)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--classes", type=int, action="append", help="a class count (repeatable)")
    ap.add_argument("--fields", type=int, action="append", help="a field count (repeatable)")
    ap.add_argument("--no-json", action="store_true", help="print only; write no result file")
    args = ap.parse_args(argv)
    picked = args.classes or args.fields
    classes = args.classes or ([] if picked else list(CLASS_COUNTS))
    fields = args.fields or ([] if picked else list(FIELD_COUNTS))
    rows = []
    for n in classes:
        row = {"case": "classes", "n": n, **time_build(module_with_classes(n), f"classes{n}")}
        rows.append(row)
        print(f"{n:>6} classes: {row['wall_s']:7.2f} s wall, {row['cpu_s']:7.2f} s CPU", flush=True)
    for n in fields:
        row = {"case": "fields", "n": n, **time_build(module_with_fields(n), f"fields{n}")}
        rows.append(row)
        print(f"{n:>6} fields:  {row['wall_s']:7.2f} s wall, {row['cpu_s']:7.2f} s CPU", flush=True)
    if not args.no_json:
        now = _dt.datetime.now(_dt.timezone.utc)
        doc = {
            "benchmark": "build_time",
            "date": now.isoformat(timespec="seconds"),
            "commit": git_commit(),
            "machine": {
                "platform": platform.platform(),
                "python": platform.python_version(),
                "cpus": os.cpu_count(),
                "load_avg_1min": os.getloadavg()[0],
            },
            "rows": rows,
        }
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        path = RESULTS_DIR / f"build_time-{now:%Y%m%d-%H%M%S}.json"
        path.write_text(json.dumps(doc, indent=2) + "\n")
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
