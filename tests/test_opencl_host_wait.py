"""How a waiting receive polls a resident PoCL kernel: plain polls, then sleeps, never a yield (a yield
on the core of the kernel's worker thread hands it the core for a whole time slice)."""

from __future__ import annotations

import pytest

from ringgen.runtime import waiting
from ringgen.runtime.waiting import Backoff


def test_free_polls_yield_only_when_asked(monkeypatch):
    calls = []
    monkeypatch.setattr(waiting, "_yield", lambda: calls.append(1))
    quiet = Backoff(spin_time=10.0, yields=False)
    for _ in range(5):
        quiet.wait()
    assert calls == []
    polite = Backoff(spin_time=10.0)
    for _ in range(5):
        polite.wait()
    assert calls == [1] * 5


def test_free_polls_end_in_sleeps_without_yields(monkeypatch):
    slept = []
    monkeypatch.setattr(waiting.time, "sleep", slept.append)
    monkeypatch.setattr(waiting, "_yield", lambda: pytest.fail("a free poll yielded"))
    backoff = Backoff(spin_time=0.0, min_sleep=20e-6, max_sleep=80e-6, yields=False)
    for _ in range(4):
        backoff.wait()
    assert slept == [20e-6, 40e-6, 80e-6, 80e-6]


def test_the_persistent_opencl_handle_polls_without_yielding():
    pytest.importorskip("pyopencl")
    from ringgen.runtime.opencl import OpenclPersistentKernel, OpenclRelaunchKernel

    assert OpenclPersistentKernel.free_poll_yields is False
    assert OpenclRelaunchKernel.free_poll_yields is True
