"""The host backends the graph tests run on, and the strategies each has (issue 15).

A persistent PoCL kernel holds one PoCL worker thread for its life, and a graph holds one per stage
(docs/graphs.md): persistent mode runs only the graphs that fit the threads PoCL has
(``pocl_threads()``: its device's compute units, one per core unless ``POCL_MAX_PTHREAD_COUNT``
was set before PoCL started; ``POCL_MAX_PTHREAD_COUNT=8`` runs every generated graph persistent).
"""

from __future__ import annotations

import pytest

from ringgen.runtime import available_backends
from ringgen.runtime.graph_host import STRATEGIES


def pocl_threads() -> int:
    """Persistent OpenCL kernels that can be resident at once: PoCL's worker threads (its CPU
    device's compute units); no limit on another device. 0 without OpenCL."""
    if "opencl" not in available_backends():
        return 0
    from ringgen.runtime.opencl.build import list_devices

    devices = list_devices()
    if not devices:
        return 0
    if "Portable Computing Language" in devices[0].label:
        return devices[0].compute_units
    return 1 << 30


def host_backends() -> dict:
    """label -> launch options (``backend=`` and its mode) of every host backend present."""
    present = available_backends()
    out: dict = {"cpu": {"backend": "cpu"}}
    if "c" in present:
        out["c"] = {"backend": "c"}
    if "opencl" in present:
        from ringgen.runtime.opencl.build import list_devices

        devices = list_devices()
        if devices and devices[0].persistent:
            out["opencl-persistent"] = {"backend": "opencl", "mode": "persistent"}
        out["opencl-relaunch"] = {"backend": "opencl", "mode": "relaunch"}
    return out


def backend_params(stages: int = 3) -> list:
    """``pytest.param((label, options, strategy))`` for every host backend present and every
    strategy the runtime lists; persistent OpenCL only when ``stages`` kernels fit PoCL's threads.
    A strategy a backend lacks is refused at launch (``BackendUnavailableError``): tests skip it."""
    params = []
    for label, options in host_backends().items():
        if label == "opencl-persistent" and stages > pocl_threads():
            continue
        for strategy in STRATEGIES:
            params.append(pytest.param((label, options, strategy), id=f"{label}-{strategy}"))
    return params
