"""One runner per backend: build a generated module once, then run each of its kernels over a batch.

Every runner turns a kernel and a batch of input records into a ``KernelRun`` (outputs, faults by
reason, final state), so ``ringgen.testing.differential`` can compare any of them with the reference:

- ``ReferenceRunner``: the user's handler in Python (``ringgen.reference.interpreter``), the oracle;
- ``CRunner``: the plain-C target built with gcc in strict mode, run through ctypes;
- ``HostBackendRunner``: a host backend of ``ringgen/targets.py`` (today ``c``: the same C handlers, a resident native worker over rings);
- ``OpenclRunner``: the OpenCL backend, persistent or relaunch mode, on a PyOpenCL device;
- ``MetalRunner``: the Metal source compiled with the shim and run on CPU threads;
- ``CudaRunner``: the CUDA backend through PyCUDA.

Compile cost is paid once per module (``prepare``): one gcc, one OpenCL program per work-group size
(shared by persistent and relaunch mode), one g++ and one nvcc build serve all of its kernels. Every
device run is bounded by ``timeout`` seconds: a kernel that does not drain fails, it never hangs.
"""

from __future__ import annotations

import abc
from collections import Counter
from pathlib import Path
from typing import Optional

import numpy as np

from ..codegen import metal as metal_codegen
from ..reference import records
from ..errors import KernelTimeoutError, QueueClosedError, QueueFullError
from ..layout import layout_of
from ..protocol import Reason
from ..wire import decode, encode
from .compare import KernelRun, MismatchError
from .native import build_c, run_c, run_reference

__all__ = [
    "CRunner",
    "CudaRunner",
    "HostBackendRunner",
    "MetalRunner",
    "OpenclRunner",
    "ReferenceRunner",
    "Runner",
    "cpu_runners",
    "host_backend_runners",
]


def _records(cls: Optional[type], rows: list) -> np.ndarray:
    dtype = layout_of(cls).dtype if cls is not None else np.dtype("u1")
    return np.array(rows, dtype=dtype) if rows else np.zeros(0, dtype)


def _initial_state(spec) -> Optional[records.Record]:
    return records.new_state(spec.state) if spec.state is not None else None


class Runner(abc.ABC):
    """A backend that runs generated kernels: ``prepare`` a module once, then ``run`` its kernels."""

    #: The label used in reports ("c", "opencl-persistent", ...).
    name: str = ""

    @abc.abstractmethod
    def prepare(self, unit, workdir: Path) -> None:
        """Build what ``unit``'s kernels need into ``workdir``."""

    def skip_reason(self, spec) -> Optional[str]:
        """Why this backend cannot run kernel ``spec`` (None: it can)."""
        return None

    @abc.abstractmethod
    def run(self, spec, messages: np.ndarray) -> KernelRun:
        """Run kernel ``spec`` over ``messages`` (input view records) from its initial state."""


class ReferenceRunner(Runner):
    """The reference interpreter: the user's own handler, message by message, in order."""

    name = "reference"

    def prepare(self, unit, workdir: Path) -> None:
        pass

    def run(self, spec, messages: np.ndarray) -> KernelRun:
        state = _initial_state(spec)
        per_msg, status = run_reference(spec, messages, state)
        outs = _records(spec.output, [o for msg in per_msg for o in msg])
        rejected = Counter(-s for s in status if s < 0)
        return KernelRun(self.name, outs, dict(rejected), state.array if state else None)


class CRunner(Runner):
    """The plain-C target (gcc, strict floating point), run in process through ctypes."""

    name = "c"

    def prepare(self, unit, workdir: Path) -> None:
        self._lib = build_c(unit, Path(workdir), werror=False)

    def run(self, spec, messages: np.ndarray) -> KernelRun:
        state = _initial_state(spec)
        per_msg, status = run_c(self._lib, spec, messages, state)
        outs = _records(spec.output, [o for msg in per_msg for o in msg])
        rejected = Counter(-s for s in status if s < 0)
        return KernelRun(self.name, outs, dict(rejected), state.array if state else None)


class _HandleRunner(Runner):
    """A runner over a ``KernelHandle`` backend: send everything, terminate (it drains), collect."""

    def __init__(self, timeout: float = 30.0, capacity: int = 1024) -> None:
        self.timeout = timeout
        self.capacity = capacity

    def prepare(self, unit, workdir: Path) -> None:
        from ..codegen.writer import write_unit
        from ..runtime.cache import load_codecs

        self._pkg = write_unit(unit, Path(workdir))
        self._codecs = load_codecs(self._pkg)

    @abc.abstractmethod
    def _open(self, spec):
        """Launch ``spec`` and return its handle."""

    def run(self, spec, messages: np.ndarray) -> KernelRun:
        k = self._open(spec)
        try:
            k.send_batch(messages, timeout=self.timeout)
            k.terminate(timeout=self.timeout)
        except (KernelTimeoutError, QueueFullError) as exc:
            raise MismatchError(
                f"{self.name}: kernel {spec.name} did not drain {len(messages)} messages within "
                f"{self.timeout:g} s: {exc}"
            ) from None
        parts = []
        while spec.output is not None:
            try:
                part = k.receive_batch(timeout=0.0)
            except QueueClosedError:
                break
            if isinstance(part, list):  # a bridged output comes back as objects
                part = k.out_codec.to_array(part) if part else None
            if part is None or len(part) == 0:
                break
            parts.append(np.asarray(part))
        dtype = layout_of(spec.output).dtype if spec.output is not None else np.dtype("u1")
        outs = np.concatenate([p.astype(dtype) for p in parts]) if parts else np.zeros(0, dtype)
        stats = k.stats()
        rejected = {int(Reason[name]): int(n) for name, n in stats.rejected.items() if n}
        state = None
        if spec.state is not None:
            state = self._codecs[spec.state.__name__].to_array([k.state()])
        return KernelRun(self.name, outs, rejected, state)


class OpenclRunner(_HandleRunner):
    """The OpenCL backend in one mode ("persistent" or "relaunch") on one device."""

    def __init__(self, mode: str, device=None, timeout: float = 30.0, capacity: int = 1024) -> None:
        from ..runtime.opencl.build import select_device

        super().__init__(timeout, capacity)
        self.mode = mode
        self.device = select_device(device)
        self.name = f"opencl-{mode}"

    def _open(self, spec):
        from ..runtime.opencl import OpenclKernel

        return OpenclKernel.open(
            spec,
            str(self._pkg),
            codecs=self._codecs,
            device=self.device,
            mode=self.mode,
            capacity=self.capacity,
        )


class HostBackendRunner(_HandleRunner):
    """A backend that runs kernels on the host CPU through its own loader (a row of
    ``ringgen/targets.py`` without the ``device`` capability, the reference ``cpu`` aside: today the
    ``c`` backend). Reported as ``<name>-backend``; bridged kernels are skipped where the row lacks
    the ``bridged`` capability. A new host backend joins the generator by its row alone."""

    def __init__(self, target: str, timeout: float = 30.0, capacity: int = 1024) -> None:
        from ..targets import by_name

        super().__init__(timeout, capacity)
        self.target = by_name(target)
        self.name = f"{target}-backend"

    def skip_reason(self, spec) -> Optional[str]:
        if "bridged" in self.target.capabilities:
            return None
        for cls in (spec.input, spec.output):
            if cls is not None and layout_of(cls).is_bridged:
                return (
                    f"{cls.__name__} is bridged (the {self.target.name} backend has no wire codec)"
                )
        return None

    def _open(self, spec):
        import importlib

        handle_class = importlib.import_module(self.target.loader).HANDLE_CLASS
        return handle_class.open(spec, str(self._pkg), codecs=self._codecs, capacity=self.capacity)


def host_backend_runners(timeout: float = 30.0) -> tuple[list[Runner], dict[str, str]]:
    """A ``HostBackendRunner`` for every host backend of ``ringgen/targets.py`` whose probe passes
    here, and why the others are absent."""
    from ..errors import BackendUnavailableError
    from ..targets import host_backends, resolve

    runners: list[Runner] = []
    absent: dict[str, str] = {}
    for row in host_backends():  # an accelerator has its own runner; cpu is the reference itself
        try:
            if row.probe is not None:
                resolve(row.probe)()
        except BackendUnavailableError as exc:
            absent[f"{row.name}-backend"] = exc.message
            continue
        runners.append(HostBackendRunner(row.name, timeout))
    return runners, absent


class CudaRunner(_HandleRunner):
    """The CUDA backend (PyCUDA) on device 0."""

    name = "cuda"

    def _open(self, spec):
        from ..runtime.cuda import CudaKernelHandle

        return CudaKernelHandle.open(
            spec, str(self._pkg), codecs=self._codecs, capacity=self.capacity
        )


class MetalRunner(Runner):
    """The Metal source compiled as C++ against the shim, dispatched on ``workers`` CPU threads.

    Kernels Metal cannot express (f64 anywhere) are not emitted: ``skip_reason`` says why.
    """

    name = "metal-shim"

    def __init__(self, workers: int = 2) -> None:
        self.workers = workers

    def prepare(self, unit, workdir: Path) -> None:
        from ..metal_shim.executor import build_executor

        workdir = Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        self._skipped = metal_codegen.skipped_kernels(unit)
        self._ex = None
        if len(self._skipped) < len(unit.kernels):
            path = workdir / f"{unit.name}.metal"
            path.write_text(metal_codegen.emit(unit)[path.name])
            self._ex = build_executor(path, unit.kernels, workdir / "build", werror=False)

    def skip_reason(self, spec) -> Optional[str]:
        return self._skipped.get(spec.name)

    def run(self, spec, messages: np.ndarray) -> KernelRun:
        from ..metal_shim.executor import slot_dtype

        state = _initial_state(spec)
        slots = to_slots(spec.input, messages, slot_dtype(spec.input))
        run = self._ex.run(
            spec.name,
            slots,
            state=state.array if state is not None else None,
            workers=self.workers,
        )
        outs = run.outputs
        if spec.output is not None and layout_of(spec.output).is_bridged:
            outs = _records(
                spec.output,
                [
                    records.to_numpy_message(decode(spec.output, row.tobytes())).array[0]
                    for row in outs
                ],
            )
        ctl = run.control
        rejected = {r: int(n) for r, n in enumerate(ctl["rejected"]) if n}
        return KernelRun(self.name, outs, rejected, run.state)


def to_slots(cls: type, views: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Queue slots (``dtype``) of view records: the records themselves, or, for a bridged message,
    each one's wire bytes (``ringgen.wire.encode``) padded to the slot."""
    if not layout_of(cls).is_bridged:
        return views
    slots = np.zeros(len(views), dtype)
    for i, row in enumerate(views):
        data = encode(records.to_object(records.from_array(cls, row)))
        slots[i] = np.frombuffer(data.ljust(dtype.itemsize, b"\0"), dtype=dtype)[0]
    return slots


def cpu_runners(timeout: float = 30.0) -> tuple[list[Runner], dict[str, str]]:
    """Runners for every CPU backend present: C (batch driver and the ``c`` backend), OpenCL
    persistent and relaunch, the Metal shim.

    Returns:
        (runners, absent): ``absent`` maps a backend left out to why.
    """
    import shutil

    from ..metal_shim import available_compilers

    runners: list[Runner] = []
    absent: dict[str, str] = {}
    if shutil.which("gcc"):
        runners.append(CRunner())
    else:
        absent["c"] = "no gcc"
    hosted, missing = host_backend_runners(timeout)
    runners += hosted
    absent.update(missing)
    try:
        from ..runtime.opencl.build import list_devices

        devices = list_devices()
    except Exception as exc:  # no PyOpenCL or no ICD loader
        devices, why = [], f"no OpenCL: {exc}"
    else:
        why = "no OpenCL device (or none matches $RINGGEN_OPENCL_DEVICE)"
    if devices:
        if devices[0].persistent:
            runners.append(OpenclRunner("persistent", devices[0].index, timeout))
        else:
            absent["opencl-persistent"] = f"{devices[0].label} has no fine-grained SVM atomics"
        runners.append(OpenclRunner("relaunch", devices[0].index, timeout))
    else:
        absent["opencl"] = why
    if available_compilers():
        runners.append(MetalRunner())
    else:
        absent["metal-shim"] = "no g++ or clang++"
    return runners, absent
