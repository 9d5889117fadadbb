"""NVTX ranges (issue 17, item 5): with the ``nvtx`` package, launch, send_batch, receive_batch
and terminate each open one range named after the call and the kernel; without it ``traced``
returns the method itself, so tracing costs nothing. A fake ``nvtx`` records the ranges here."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

from ringgen.runtime import trace

pytestmark = pytest.mark.timeout(300)


class FakeNvtx(types.ModuleType):
    """Records push_range/pop_range as the nvtx package would send them to Nsight."""

    def __init__(self) -> None:
        super().__init__("nvtx")
        self.events: list[tuple[str, str]] = []

    def push_range(self, message=None, domain=None, **_):
        self.events.append(("push", f"{domain}: {message}"))

    def pop_range(self, domain=None):
        self.events.append(("pop", str(domain)))


def test_without_nvtx_traced_returns_the_method_itself(monkeypatch):
    monkeypatch.setattr(trace, "_NVTX", None)

    def method(self):
        return 1

    assert trace.traced("x")(method) is method


FAKE_NVTX = """
EVENTS = []


def push_range(message=None, domain=None, **_):
    EVENTS.append(("push", f"{domain}: {message}"))


def pop_range(domain=None):
    EVENTS.append(("pop", str(domain)))
"""

CHILD = """
import json
import numpy as np
import nvtx
import ringgen as rg
from ringgen.runtime import trace
import runtime_kernels as rk

assert trace.ENABLED
k = rg.launch(rk.echo, backend="cpu")
k.send_batch(np.zeros(4, dtype=k.in_codec.dtype))
got = 0
while got < 4:
    got += len(k.receive_batch(4, timeout=10.0))
k.terminate()
print(json.dumps(nvtx.EVENTS))
"""


def test_with_nvtx_the_host_calls_of_a_kernel_are_ranges(tmp_path):
    """In a fresh process whose ``nvtx`` is a recorder: the decorators of ``KernelHandle``."""
    (tmp_path / "nvtx.py").write_text(FAKE_NVTX)
    here = Path(__file__).resolve().parent
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), str(here.parent), str(here)]))
    env.pop("RINGGEN_NVTX", None)
    env["RINGGEN_CACHE_DIR"] = str(tmp_path / "cache")
    run = subprocess.run(
        [sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, timeout=240
    )
    assert run.returncode == 0, run.stderr
    events = json.loads(run.stdout.splitlines()[-1])
    pushed = [what for kind, what in events if kind == "push"]
    assert pushed[0] == "ringgen: ringgen echo launch"
    assert "ringgen: ringgen echo send_batch" in pushed
    assert "ringgen: ringgen echo receive_batch" in pushed
    assert pushed[-1] == "ringgen: ringgen echo terminate"
    assert sum(kind == "push" for kind, _ in events) == sum(kind == "pop" for kind, _ in events)


def test_ringgen_nvtx_off_disables_the_ranges(monkeypatch):
    monkeypatch.setitem(sys.modules, "nvtx", FakeNvtx())
    monkeypatch.setenv("RINGGEN_NVTX", "0")
    try:
        assert not importlib.reload(trace).ENABLED
    finally:
        monkeypatch.delitem(sys.modules, "nvtx")
        monkeypatch.delenv("RINGGEN_NVTX")
        importlib.reload(trace)


def test_a_range_is_closed_when_the_call_raises(monkeypatch):
    fake = FakeNvtx()
    monkeypatch.setattr(trace, "_NVTX", fake)

    class Handle:
        name = "k"

        @trace.traced("send_batch")
        def send_batch(self):
            raise ValueError("bad batch")

    with pytest.raises(ValueError):
        Handle().send_batch()
    assert fake.events == [("push", "ringgen: ringgen k send_batch"), ("pop", "ringgen")]
