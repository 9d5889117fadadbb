"""The OpenCL backend (``backend="opencl"``): generated ``<name>.cl`` launched through PyOpenCL.

Two transports behind the one ``KernelHandle`` API (``ringgen.runtime.base``):

- **persistent** (``OpenclPersistentKernel``): on a device with fine-grained SVM and atomics (PoCL on a
  CPU), the control block, both queues' counters and both rings live in fine-grained SVM that host and
  kernel share while ``rg_<k>_persistent`` stays resident on its own command queue.
- **relaunch** (``OpenclRelaunchKernel``): elsewhere (NVIDIA's OpenCL has no fine-grained SVM), the
  host keeps the queues; each launch of ``rg_<k>_relaunch`` drains what is queued from a device buffer,
  and the control block and kernel state stay in device buffers between launches.

``OpenclKernel.open(spec, package_dir, codecs=..., mode=None, device=None, ...)`` picks the transport
per device (``mode="persistent"|"relaunch"`` overrides).

The transports live in ``persistent`` and ``relaunch``; builds and devices in ``build``; what they
share in ``common``.

**Host-side atomics** (persistent mode). Python has no atomics, so the host touches the shared counters
through one-word memoryviews (format ``Q``) of the SVM memory, and the ordering argument is this: every
counter is a naturally aligned 64-bit word that only one side writes (the device's groups take turns
on theirs), and a memoryview load or store of one is a single x86-64 ``mov``, never torn. x86 TSO keeps
stores in program order and never moves a store before an earlier load, so (1) the host writes slots,
then stores ``tail``: the kernel's acquire load of ``tail`` sees the slots; (2) the host loads
``tail``, copies slots out, then stores ``head``: the copy is complete before the kernel, which
acquire-loads ``head``, may overwrite the slots. The device side uses C11 release/acquire with
``memory_scope_device`` (docs/opencl.md). Each step is a separate Python call, so no compiler can
reorder them either; a batch is one slot-sized byte copy (two at the ring's wrap).
"""

from __future__ import annotations

from .build import select_device

from .common import (  # noqa: F401  (the backend's names, re-exported)
    DEFAULT_GROUP_SIZE,
    MODES,
    TRANSPORTS,
    OpenclKernel,
    _bytes,
    _concat,
    _entry,
)
from .persistent import OpenclPersistentKernel
from .relaunch import OpenclRelaunchKernel

__all__ = [
    "HANDLE_CLASS",
    "MODES",
    "OpenclKernel",
    "OpenclPersistentKernel",
    "OpenclRelaunchKernel",
    "probe",
]

TRANSPORTS.update(persistent=OpenclPersistentKernel, relaunch=OpenclRelaunchKernel)


def probe() -> None:
    """Raise ``BackendUnavailableError`` unless an OpenCL device (after ``$RINGGEN_OPENCL_DEVICE``) is
    present; the registry calls it before choosing this backend."""
    select_device(None)


#: What ``ringgen.runtime.backends`` opens for ``backend="opencl"``.
HANDLE_CLASS = OpenclKernel
