"""How the CUDA backend treats a kernel that died on the device, without a GPU: the driver is played
by a fake PyCUDA whose calls fail the way a lost context makes them fail (a sticky error, as text).
The real thing runs in tests/test_cuda_fault.py (``-m gpu``)."""

from __future__ import annotations

import logging
import threading

import numpy as np
import pytest

from ringgen.codegen import cuda as cuda_codegen
from ringgen.errors import BackendUnavailableError
from ringgen.protocol import CONTROL_DTYPE, Lifecycle
from ringgen.runtime.cuda import device as cuda_device, faults as cuda_faults


class FakeError(Exception):
    """pycuda._driver.Error: only the text says which CUresult it was."""


class FakeContext:
    def __init__(self, driver):
        self.driver = driver
        self.detached = False

    def push(self):
        self.driver.calls.append("push")

    def detach(self):
        self.detached = True
        self.driver.calls.append("detach")


class FakeDriver:
    """The parts of pycuda.driver that cuda_device and cuda_faults call."""

    Error = FakeError

    def __init__(self):
        self.calls = []
        self.sticky = None  # the text every call fails with once the context is lost
        self.survives_release = False  # the error outlives releasing the primary context
        drv = self

        class Context:
            @staticmethod
            def pop():
                drv.calls.append("pop")

        class Device:
            def __init__(self, ordinal):
                self.ordinal = ordinal

            @staticmethod
            def count():
                return 1

            def retain_primary_context(self):
                drv.calls.append("retain")
                return FakeContext(drv)

        self.Context, self.Device = Context, Device

    def init(self):
        pass

    def mem_get_info(self):
        if self.sticky:
            raise FakeError(f"cuMemGetInfo failed: {self.sticky}")
        return (1 << 30, 1 << 31)


class FakeStream:
    def __init__(self, driver):
        self.driver = driver
        self.done = False

    def is_done(self):
        if self.driver.sticky:
            raise FakeError(f"cuStreamQuery failed: {self.driver.sticky}")
        return self.done


@pytest.fixture
def fake(monkeypatch):
    """A fake driver, and cuda_device's process state reset around the test."""
    driver = FakeDriver()
    monkeypatch.setattr(cuda_device, "_drv", lambda: driver)
    monkeypatch.setattr(cuda_device, "_contexts", {})
    monkeypatch.setattr(cuda_device, "_lost", {})
    monkeypatch.setattr(cuda_device, "_generations", {})
    monkeypatch.setattr(cuda_device, "_refused", {})
    monkeypatch.setattr(cuda_device, "_local", threading.local())
    monkeypatch.setattr(cuda_device, "_reset_primary_context", lambda ordinal: 0)
    monkeypatch.setattr(cuda_faults, "_live", cuda_faults._LiveHandles())
    monkeypatch.setattr(cuda_device.atexit, "register", lambda f: None)
    return driver


class Handle(cuda_faults.DeviceFaults):
    """A CUDA handle reduced to what DeviceFaults reads."""

    def __init__(self, driver, name="k"):
        self.name = name
        self.device = 0
        self._stream = FakeStream(driver)
        self._copy_stream = object()
        self._finished = object()
        self._module = object()
        self._ctl = np.zeros(1, CONTROL_DTYPE)
        self._ctl["state"] = int(Lifecycle.ACTIVE)
        self._alloc = [object(), object()]
        self._pinned = [object()]
        self._device_error = None
        self._released = False
        self.kept_dead_letters = 0

    def _keep_last_dead_letters(self):
        self.kept_dead_letters += 1


@pytest.mark.parametrize(
    "text,words",
    [
        (
            "cuStreamQuery failed: an illegal memory access was encountered",
            "CUDA_ERROR_ILLEGAL_ADDRESS: an illegal memory access was encountered",
        ),
        (
            "cuModuleLoadDataEx failed: misaligned address",
            "CUDA_ERROR_MISALIGNED_ADDRESS: misaligned address",
        ),
        (
            "cuStreamQuery failed: unspecified launch failure",
            "CUDA_ERROR_LAUNCH_FAILED: " "unspecified launch failure",
        ),
        ("cuMemAlloc failed: out of memory", "out of memory"),
    ],
)
def test_driver_errors_are_named(text, words):
    assert cuda_device.describe_error(FakeError(text)) == words
    assert cuda_device.is_sticky(FakeError(text)) == words.startswith("CUDA_ERROR_")


def test_a_running_kernel_is_no_fault(fake):
    h = Handle(fake)
    assert h._device_fault() is None
    assert cuda_device.lost(0) is None


def test_a_dead_kernel_names_the_driver_error_and_marks_the_context_lost(fake, caplog):
    h = Handle(fake)
    fake.sticky = "misaligned address"
    with caplog.at_level(logging.ERROR, logger="ringgen"):
        why = h._device_fault()
    assert why == "CUDA_ERROR_MISALIGNED_ADDRESS: misaligned address"
    assert cuda_device.lost(0) == "CUDA_ERROR_MISALIGNED_ADDRESS: misaligned address (kernel k)"
    assert "cuda device 0: the context was lost" in caplog.text
    other = Handle(fake, "other")  # every kernel of the context died with it
    assert other._device_fault() == cuda_device.lost(0)


def test_a_grid_that_exits_without_terminating_is_a_fault(fake):
    h = Handle(fake)
    h._stream.done = True
    assert h._device_fault() == "the kernel's grid exited without terminating (lifecycle ACTIVE)"
    h._ctl["state"] = int(Lifecycle.TERMINATED)
    assert h._device_fault() is None


def test_later_steps_skip_the_driver_and_leak_on_purpose(fake, caplog):
    h = Handle(fake)
    fake.sticky = "an illegal memory access was encountered"
    h._driver_failed(FakeError(f"cuMemFree failed: {fake.sticky}"), "freeing its memory")
    assert h._device_error == "CUDA_ERROR_ILLEGAL_ADDRESS: an illegal memory access was encountered"
    assert h._context_lost()
    with caplog.at_level(logging.WARNING, logger="ringgen"):
        h._leak()
    assert h._alloc == [] and h._pinned == [] and h._stream is None and h.kept_dead_letters == 1
    assert "2 device and 1 pinned allocation(s) are left to the driver on purpose" in caplog.text
    with pytest.raises(BackendUnavailableError, match="freeing its memory failed: out of memory"):
        h._driver_failed(FakeError("cuMemFree failed: out of memory"), "freeing its memory")
    with pytest.raises(KeyError):
        h._driver_failed(KeyError("not a driver error"), "x")


def test_next_launch_names_live_holders_of_a_lost_context(fake):
    h = Handle(fake, "bucketize")
    cuda_faults.track(h)
    cuda_device.context(0)
    fake.sticky = "misaligned address"
    with pytest.raises(BackendUnavailableError) as info:
        cuda_faults.replace_lost_context(0)
    assert info.value.message == (
        "backend cuda: the CUDA context of device 0 was lost (CUDA_ERROR_MISALIGNED_ADDRESS: "
        "misaligned address); kernel(s) bucketize launched in it have stopped and still hold its "
        "memory"
    )
    assert "terminate them" in info.value.hint


def test_next_launch_replaces_a_lost_context(fake, caplog):
    h = Handle(fake)
    cuda_faults.track(h)
    cuda_device.context(0)
    fake.sticky = "misaligned address"
    assert h._device_fault() is not None
    h._released = True
    cuda_faults.untrack(h)
    fake.calls.clear()
    fake.sticky = None  # releasing the primary context destroys it: the fresh one works
    with caplog.at_level(logging.WARNING, logger="ringgen"):
        assert cuda_faults.replace_lost_context(0) is True
    assert fake.calls[:3] == ["pop", "detach", "retain"]
    assert cuda_device.lost(0) is None and cuda_device.generation(0) == 1
    assert "released the lost primary context and retained a fresh one" in caplog.text
    assert cuda_faults.replace_lost_context(0) is False  # healthy now: nothing to do


def test_a_context_the_driver_will_not_replace_says_so(fake):
    cuda_device.context(0)
    fake.sticky = "an illegal memory access was encountered"  # and it stays
    with pytest.raises(BackendUnavailableError) as info:
        cuda_faults.replace_lost_context(0)
    assert info.value.message.startswith(
        "backend cuda: the CUDA context of device 0 was lost earlier in this process "
        "(CUDA_ERROR_ILLEGAL_ADDRESS: an illegal memory access was encountered) and the driver did "
        "not let ringgen replace it"
    )
    assert info.value.hint == "start a new process to use this GPU again"
    assert "(a fresh context still reports: CUDA_ERROR_ILLEGAL_ADDRESS" in info.value.message
    assert cuda_device.lost(0) is not None  # still lost: the next launch says so again
    assert fake.calls.count("retain") == 3  # the first context, then one per attempt
    with pytest.raises(BackendUnavailableError, match="did not let ringgen replace it"):
        cuda_faults.replace_lost_context(0)
    assert fake.calls.count("retain") == 3  # the refusal is remembered: no third attempt


def test_debug_fault_option():
    from ringgen.jit import fault_hook

    assert fault_hook("k", None, None) is None
    assert fault_hook("k", ("trap", 5), None) == cuda_codegen.FaultHook("trap", 5)
    with pytest.raises(ValueError, match="debug_fault must be \\(kind, n\\) with kind one of"):
        fault_hook("k", ("explode", 1), None)
    with pytest.raises(ValueError, match="debug_fault and source cannot be combined"):
        fault_hook("k", ("trap", 1), "source")
