"""Generated kernels, checked on every backend against the reference (issue 10).

Hypothesis strategies draw whole kernel modules as Python source (``kernel_modules``): schemas over
every scalar type, arrays, nested and bridged messages; handlers of every shape; messages with
boundary values. ``check_module`` runs a module's kernels through the reference interpreter and each
backend runner (``cpu_runners()``: plain C, OpenCL persistent and relaunch, the Metal shim;
``CudaRunner`` on a GPU) and raises ``MismatchError``, with the module's source, on any disagreement.
Use it on your own kernels too (docs/testing.md).
"""

from .compare import KernelRun, MismatchError, compare_runs, ulp_distance
from .differential import MATH_ULPS, CheckReport, check_module, module_name
from .expressions import Profile
from .handlers import SHAPES, GeneratedKernel, GeneratedModule, kernel_modules
from .messages import random_messages
from .runners import (
    CRunner,
    CudaRunner,
    MetalRunner,
    OpenclRunner,
    ReferenceRunner,
    Runner,
    cpu_runners,
)

__all__ = [
    "CRunner",
    "CheckReport",
    "CudaRunner",
    "GeneratedKernel",
    "GeneratedModule",
    "KernelRun",
    "MATH_ULPS",
    "MetalRunner",
    "MismatchError",
    "OpenclRunner",
    "Profile",
    "ReferenceRunner",
    "Runner",
    "SHAPES",
    "check_module",
    "compare_runs",
    "cpu_runners",
    "kernel_modules",
    "module_name",
    "random_messages",
    "ulp_distance",
]
