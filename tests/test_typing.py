"""Typed packages (issue 17, item 6): mypy, with ``ringgen.mypy_plugin``, passes over every module in
``examples/`` and knows what a launched kernel takes and returns, so a wrong ``send`` fails with the
expected error. mypy's run is bounded: only these files, its cache in a temporary folder shared by
the tests of this module, and follow_imports=silent (ringgen's own modules are read, not reported).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("mypy")

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted(p for p in (ROOT / "examples").glob("*.py") if p.name != "__init__.py")

pytestmark = pytest.mark.timeout(300)

WRONG_SEND = """\
import ringgen as rg
from examples.vector_add import AddRequest, AddResponse, vector_add

with rg.launch(vector_add, backend="cpu") as k:
    k.send(AddRequest(id=1, a=1.0, b=2.0))
    reply: AddResponse = k.receive(timeout=1.0)
    k.send(reply)
"""

RIGHT_TYPES = """\
from typing import Optional

import ringgen as rg
from ringgen.types import Array, Str, f32, i64
from examples.threshold_filter import Alert, threshold_filter
from examples.vector_add import AddResponse, vector_add


@rg.message
class Req:
    id: i64
    name: Str[8]
    xs: Array[f32, 4]


@rg.state
class Count:
    n: i64 = 0


@rg.ring_kernel(capacity=64)
def counted(r: Req, st: Count) -> Optional[Req]:
    st.n += 1
    return r if r.id else None


@rg.ring_kernel
def tally(r: Req, st: Count) -> None:
    st.n += r.id


def replies() -> tuple[AddResponse, Alert, Req]:
    with rg.launch(vector_add) as a, rg.launch(threshold_filter) as b, rg.launch(counted) as c:
        c.send(Req(id=1, name="x", xs=[1.0, 2.0, 3.0, 4.0]))
        return a.receive(), b.receive(), c.receive()


def nothing_to_receive() -> None:
    with rg.launch(tally) as t:
        t.send(Req(id=1, name="x", xs=[0.0] * 4))
        reply: None = t.receive()
"""


@pytest.fixture(scope="module")
def mypy(tmp_path_factory):
    """Run mypy with ringgen's plugin on some files; returns (exit status, output)."""
    folder = tmp_path_factory.mktemp("mypy")
    config = folder / "mypy.ini"
    config.write_text(
        "[mypy]\n"
        "plugins = ringgen.mypy_plugin\n"
        f"mypy_path = {ROOT}\n"
        "follow_imports = silent\n"
        "warn_unused_configs = True\n"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("MYPYPATH", None)

    def run(*files: Path) -> tuple[int, str]:
        cmd = [sys.executable, "-m", "mypy", "--config-file", str(config)]
        cmd += ["--cache-dir", str(folder / "cache"), "--no-error-summary"]
        done = subprocess.run(
            cmd + [str(f) for f in files],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
        )
        return done.returncode, done.stdout + done.stderr

    return run


def test_mypy_passes_over_the_examples(mypy):
    code, out = mypy(*EXAMPLES)
    assert code == 0, out


def test_a_launched_kernel_takes_its_request_and_returns_its_reply(mypy, tmp_path):
    good = tmp_path / "right_types.py"
    good.write_text(RIGHT_TYPES)
    code, out = mypy(good)
    assert code == 0, out


def test_a_wrong_send_fails_with_the_expected_error(mypy, tmp_path):
    wrong = tmp_path / "wrong_send.py"
    wrong.write_text(WRONG_SEND)
    code, out = mypy(wrong)
    assert code == 1, out
    errors = [line for line in out.splitlines() if ": error:" in line]
    assert errors == [
        f'{wrong}:7: error: Argument 1 to "send" of "KernelHandle" has incompatible type '
        '"AddResponse"; expected "AddRequest"  [arg-type]'
    ], out
