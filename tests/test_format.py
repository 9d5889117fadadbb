"""The source tree is formatted with black (generated Python is checked where it is emitted)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_sources_are_black_formatted():
    dirs = [str(ROOT / d) for d in ("ringgen", "tests", "bench", "examples")]
    result = subprocess.run(
        [sys.executable, "-m", "black", "--check", "--quiet", *dirs],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, f"run `make format`:\n{result.stderr}"
