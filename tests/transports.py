"""Every transport the contract tests (spill, terminate) run on, with its skip marks.

Its own module, not conftest: probing the backends costs time that only these tests should pay.
"""

import pytest

from ringgen.runtime import available_backends
from ringgen.targets import host_backends


def _transports() -> list:
    """(backend, launch options) of every transport with its skip marks, for the contract tests
    every backend must pass (spill, terminate); CUDA runs with ``pytest -m gpu`` on the GPU."""
    present = available_backends()
    needs = lambda name, why: pytest.mark.skipif(name not in present, reason=why)  # noqa: E731
    opencl = needs("opencl", "no OpenCL device")
    return [
        pytest.param("cpu", {}, id="cpu"),
        pytest.param("opencl", {"mode": "persistent"}, id="opencl-persistent", marks=opencl),
        pytest.param("opencl", {"mode": "relaunch"}, id="opencl-relaunch", marks=opencl),
        pytest.param(
            "cuda", {}, id="cuda", marks=[pytest.mark.gpu, needs("cuda", "no CUDA device")]
        ),
    ] + [
        # every host backend of ringgen/targets.py (today c) joins by its row alone
        pytest.param(
            row.name, {}, id=row.name, marks=needs(row.name, f"no {row.name} backend here")
        )
        for row in host_backends()
    ]


#: See ``_transports``.
TRANSPORTS = _transports()
