"""The backend registry: names, auto, RINGGEN_BACKEND, and clear errors for missing backends."""

from __future__ import annotations

import importlib.util

import attrs
import pytest

from ringgen import targets as registry
from ringgen.errors import BackendUnavailableError
from ringgen.runtime import available_backends, backends, resolve_backend
from ringgen.runtime.base import KernelHandle
from ringgen.runtime.cpu import CpuKernelHandle


def test_cpu_is_always_available_and_loads_its_handle_class():
    assert "cpu" in available_backends()
    assert available_backends()[-1] == "cpu"  # auto order: cuda, opencl, cpu
    assert backends.load_backend("cpu") is CpuKernelHandle
    assert issubclass(CpuKernelHandle, KernelHandle)
    assert (CpuKernelHandle.backend, CpuKernelHandle.persistent) == ("cpu", True)


def test_explicit_names_resolve_to_themselves():
    assert resolve_backend("cpu") == "cpu"


def test_auto_picks_the_first_available(monkeypatch):
    monkeypatch.delenv("RINGGEN_BACKEND", raising=False)
    assert resolve_backend("auto") == available_backends()[0]


def test_environment_variable_replaces_auto(monkeypatch):
    monkeypatch.setenv("RINGGEN_BACKEND", "cpu")
    assert resolve_backend("auto") == "cpu"
    monkeypatch.setenv("RINGGEN_BACKEND", "tpu")
    with pytest.raises(BackendUnavailableError, match="'tpu'.*RINGGEN_BACKEND"):
        resolve_backend("auto")


def test_unknown_backend_lists_the_choices():
    with pytest.raises(BackendUnavailableError, match="unknown backend 'vulkan'") as info:
        resolve_backend("vulkan")
    assert "cpu" in str(info.value) and "cuda" in str(info.value)


def _add_row(monkeypatch, name: str, loader: str, *, first_in_auto: bool = False) -> None:
    """Register backend ``name`` as one more row of ringgen.targets (cpu's row, renamed); with
    ``first_in_auto`` the table holds only it and cpu, and ``auto`` tries it first."""
    cpu = registry.by_name("cpu")
    row = attrs.evolve(cpu, name=name, loader=loader, auto_rank=0 if first_in_auto else None)
    monkeypatch.setattr(
        registry, "TARGETS", (row, cpu) if first_in_auto else registry.TARGETS + (row,)
    )
    monkeypatch.setattr(backends, "_LOADED", {})


def test_the_tables_are_views_of_ringgen_targets():
    assert backends.BACKENDS == {t.name: t.loader for t in registry.TARGETS if t.loader}
    assert backends.AUTO_ORDER == ("cuda", "opencl", "c", "cpu")


def test_missing_backend_module_is_named(monkeypatch):
    _add_row(monkeypatch, "fake", "ringgen.runtime._no_such_backend")
    with pytest.raises(
        BackendUnavailableError, match="_no_such_backend is not part of this ringgen"
    ):
        backends.load_backend("fake")


def test_a_module_without_handle_class_is_refused(monkeypatch):
    _add_row(monkeypatch, "fake", "ringgen.runtime.stats")
    with pytest.raises(BackendUnavailableError, match="HANDLE_CLASS"):
        backends.load_backend("fake")


@pytest.mark.skipif(
    importlib.util.find_spec("pycuda") is not None, reason="PyCUDA is installed here"
)
def test_cuda_without_pycuda_says_what_to_install():
    with pytest.raises(BackendUnavailableError, match="PyCUDA is not installed") as info:
        backends.load_backend("cuda")
    assert "pip install" in str(info.value)


class _Refuses(CpuKernelHandle):
    """A backend that is present but cannot run any kernel (as OpenCL refuses rg.now())."""

    backend = "refuses"

    def _launch(self) -> None:
        raise BackendUnavailableError(f"kernel {self.name}: backend refuses cannot run it")


def _with_refusing_first(monkeypatch):
    monkeypatch.delenv("RINGGEN_BACKEND", raising=False)
    _add_row(monkeypatch, "refuses", "ringgen.runtime.cpu", first_in_auto=True)
    backends._LOADED["refuses"] = _Refuses
    assert backends.AUTO_ORDER == ("refuses", "cpu")


def test_auto_falls_back_when_the_chosen_backend_cannot_run_the_kernel(monkeypatch, caplog):
    """auto skips a backend raising BackendUnavailableError for this kernel, logging why (info)."""
    import logging

    import ringgen as rg
    from examples.vector_add import AddRequest, AddResponse, vector_add

    _with_refusing_first(monkeypatch)
    with caplog.at_level(logging.INFO, logger="ringgen"):
        with rg.launch(vector_add) as k:
            assert k.backend == "cpu"
            k.send(AddRequest(id=1, a=1.0, b=2.0))
            assert k.receive(timeout=2.0) == AddResponse(id=1, sum=3.0)
    assert any(
        "refuses cannot run kernel vector_add" in r.getMessage() and "trying cpu" in r.getMessage()
        for r in caplog.records
    )


def test_a_named_backend_is_never_replaced(monkeypatch):
    """backend='refuses' (or RINGGEN_BACKEND=refuses) raises its own error: no fallback."""
    import ringgen as rg
    from examples.vector_add import vector_add

    _with_refusing_first(monkeypatch)
    with pytest.raises(BackendUnavailableError, match="refuses cannot run it"):
        rg.launch(vector_add, backend="refuses")
    monkeypatch.setenv("RINGGEN_BACKEND", "refuses")
    with pytest.raises(BackendUnavailableError, match="refuses cannot run it"):
        rg.launch(vector_add)
