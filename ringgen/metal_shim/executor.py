"""Run generated Metal on CPU threads: the shim-compiled kernels behind a small batch API.

``build_executor`` compiles ``<name>.metal`` with the shim and a generated C++ driver
(``templates/metal/driver.cpp.j2``) into a shared library; ``MetalExecutor.run`` pushes messages
through the same queues, control block and dispatch record a Metal host would use, one
begin/process/commit batch at a time, and returns what came out. The differential tests compare that
with the reference backend, so the Metal body's meaning is tested, not only its syntax.
"""

from __future__ import annotations

import ctypes
import hashlib
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Sequence

import attrs
import numpy as np

from .._version import __version__
from ..codegen.env import render
from ..codegen.metal import DISPATCH_DTYPE, abi, kernel_context
from ..errors import KernelTimeoutError, ToolchainError
from ..layout import layout_of
from ..protocol import CONTROL_DTYPE, QUEUE_CTL_DTYPE, Lifecycle
from . import available_compilers, shim_flags

if TYPE_CHECKING:
    from ..kernel import KernelSpec

__all__ = ["MetalExecutor", "MetalRun", "build_executor", "slot_dtype"]

#: .NET ticks (100 ns since 0001-01-01 UTC) at the Unix epoch: the unit of bridged headers' timestamps.
_TICKS_AT_UNIX_EPOCH = 621_355_968_000_000_000


@attrs.frozen
class MetalRun:
    """What one ``MetalExecutor.run`` produced: outputs in publication order, the final control block
    (a record of ``CONTROL_DTYPE``), the final state (None without state), the batches it took and
    the messages it left queued.
    """

    outputs: np.ndarray
    control: np.void
    state: Optional[np.ndarray]
    batches: int
    #: messages left in the input queue: a kernel that waits on a barrier holds fewer than
    #: ``parties`` until the rest of their step arrives (docs/barriers.md, "Metal")
    held: int = 0


def slot_dtype(cls: Optional[type]) -> np.dtype:
    """The dtype of one queue slot of ``cls``: its view struct when direct, raw bytes when bridged
    (header + payload, as ``ringgen.wire.encode`` writes them); one byte for a kernel without output.
    """
    if cls is None:
        return np.dtype("u1")
    lay = layout_of(cls)
    return np.dtype((np.void, lay.slot_size)) if lay.is_bridged else lay.dtype


def _emitted_kernels(text: str, kernels: Sequence["KernelSpec"]) -> list["KernelSpec"]:
    return [k for k in kernels if f"kernel void {k.name}_begin(" in text]


def build_executor(
    metal_path,
    kernels: Sequence["KernelSpec"],
    workdir,
    compiler: Optional[str] = None,
    werror: bool = True,
) -> "MetalExecutor":
    """Compile ``metal_path`` with the shim and a driver for ``kernels`` into a shared library.

    Kernels the file does not contain (Metal skipped them) are left out.

    Args:
        metal_path: the generated ``<name>.metal``.
        kernels: the build's ``KernelSpec``s.
        workdir: where the driver source and the library go.
        compiler: g++ or clang++ (default: the first present).
        werror: warnings are errors (off for generated handlers, whose own code may leave a local
            unused, which Metal's compiler accepts).

    Raises:
        ToolchainError: no compiler, or the compiler rejected the source (its stderr attached).
    """
    metal_path = Path(metal_path).resolve()
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    present = available_compilers()
    exe = compiler or (present[0] if present else None)
    if exe is None:
        raise ToolchainError("no C++ compiler (g++ or clang++) to build the Metal shim executor")
    text = metal_path.read_text()
    emitted = _emitted_kernels(text, kernels)
    steps = {k.name: abi(k.name, text) for k in emitted}
    contexts = []
    for k in emitted:
        ctx = kernel_context(k)
        if steps[k.name] is not None:  # waits on a barrier: begin, one dispatch per phase, commit
            ctx["waits"] = len(steps[k.name]["phases"]) - 1
        contexts.append(ctx)
    driver = render(
        "metal/driver.cpp.j2",
        version=__version__,
        metal_file=metal_path.name,
        metal_path=str(metal_path),
        kernels=contexts,
    )
    lib = build_driver(driver, text, metal_path, exe, werror, workdir, "the shim executor")
    return MetalExecutor(lib, emitted, metal_path, steps)


def build_driver(
    driver: str, text: str, metal_path: Path, exe: str, werror: bool, workdir: Path, what: str
) -> Path:
    """Compile a generated C++ driver of the Metal source ``metal_path`` (whose text is ``text``)
    into a shared library in ``workdir``, once per content (the file name carries a hash of the
    source, the driver, the compiler and ``werror``); returns its path.

    Raises:
        ToolchainError: the compiler took over 600 s or rejected the driver (``what`` names it).
    """
    tag = hashlib.sha256((text + driver + exe + str(werror)).encode()).hexdigest()[:16]
    stem = f"{metal_path.stem}_{what.split()[-1]}_{tag}"
    src = workdir / f"{stem}.cpp"
    lib = workdir / f"lib{stem}.so"
    src.write_text(driver)
    if not lib.exists():
        flags = [f for f in shim_flags() if f not in ("-x", "c++")]
        if not werror:
            flags.append("-Wno-error")
        cmd = [exe, *flags, "-O1", "-shared", "-fPIC", "-pthread", str(src), "-o", str(lib)]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        except subprocess.TimeoutExpired:
            raise ToolchainError(
                f"{exe} took over 600 s to build {what} of {metal_path.name}"
            ) from None
        if proc.returncode != 0:
            raise ToolchainError(
                f"{exe} rejected {what} of {metal_path.name}:\n{proc.stderr.strip()}"
            )
    return lib


class MetalExecutor:
    """A compiled Metal source: ``run`` drives one of its kernels over a batch of messages."""

    def __init__(
        self, lib_path, kernels: Sequence["KernelSpec"], metal_path=None, steps=None
    ) -> None:
        self.lib_path = Path(lib_path)
        self.metal_path = Path(metal_path) if metal_path is not None else None
        self._lib = ctypes.CDLL(str(self.lib_path))
        self.kernels = {k.name: k for k in kernels}
        #: kernel -> its ``abi.metal`` (phases, parties, scratch_bytes) when it waits on a barrier
        self.steps = {name: s for name, s in (steps or {}).items() if s is not None}
        for name, facts in self.steps.items():
            for fn, want in (
                (f"rg_metal_parties_{name}", facts["parties"]),
                (f"rg_metal_steps_size_{name}", facts["scratch_bytes"]),
            ):
                got = getattr(self._lib, fn)()
                if got != want:
                    raise ToolchainError(
                        f"{fn}() = {got} in {self.lib_path.name}, but the source says {want}"
                    )
        for fn, dtype in (
            ("rg_metal_dispatch_size", DISPATCH_DTYPE),
            ("rg_metal_control_size", CONTROL_DTYPE),
            ("rg_metal_queue_ctl_size", QUEUE_CTL_DTYPE),
        ):
            size = getattr(self._lib, fn)()
            if size != dtype.itemsize:
                raise ToolchainError(
                    f"{fn}() = {size} in {self.lib_path.name}, but Python's view is "
                    f"{dtype.itemsize} bytes: the layouts disagree"
                )

    def run(
        self,
        kernel: str,
        messages: np.ndarray,
        *,
        state: Optional[np.ndarray] = None,
        workers: int = 1,
        batch: Optional[int] = None,
        drain_every: int = 1,
        terminate: bool = False,
        max_batches: int = 100000,
    ) -> MetalRun:
        """Send ``messages`` through ``kernel`` and collect the output slots.

        ``messages`` is an array of ``slot_dtype(input)``: the view struct of a direct message, the
        encoded bytes (``ringgen.wire.encode``) of a bridged one; the outputs come back the same way.

        Each batch publishes as many messages as the input queue takes (at most ``batch``), runs one
        begin/process/commit command buffer on ``workers`` threads, and, every ``drain_every``
        batches, consumes the output queue (so a full output queue can hold messages back, as on a
        device). With ``terminate`` the request is set before the last batch.

        A kernel that waits on a barrier runs one step (``parties`` messages: begin, a dispatch per
        phase, commit) per batch; when every message is sent and fewer than ``parties`` are left,
        they stay queued (``MetalRun.held``) unless ``terminate`` makes them a short step, whose
        waits fault with ``BARRIER_BROKEN`` (docs/barriers.md, "Metal").

        Raises:
            KeyError: the file has no such kernel (Metal skipped it).
            KernelTimeoutError: ``max_batches`` batches made no progress through the messages.
        """
        spec = self.kernels[kernel]
        cap = spec.capacity
        in_dtype, out_dtype = slot_dtype(spec.input), slot_dtype(spec.output)
        in_slots = np.zeros(cap, in_dtype)
        out_slots = np.zeros(cap, out_dtype)
        in_q = np.zeros(1, QUEUE_CTL_DTYPE)
        out_q = np.zeros(1, QUEUE_CTL_DTYPE)
        control = np.zeros(1, CONTROL_DTYPE)
        dispatch = np.zeros(1, DISPATCH_DTYPE)
        if spec.state is not None:
            st_dtype = layout_of(spec.state).dtype
            state = (
                np.zeros(1, st_dtype)
                if state is None
                else np.array(state, dtype=st_dtype).reshape(1)
            )
        messages = np.asarray(messages, dtype=in_dtype)
        fn = getattr(self._lib, f"rg_metal_run_{kernel}")
        step = self.steps.get(kernel)
        scratch = np.zeros(step["scratch_bytes"], np.uint8) if step is not None else None
        extra = (_ptr(scratch),) if step is not None else ()
        ptr = _ptr
        outputs = []
        sent = batches = 0
        limit = batch or cap
        while True:
            tail, head = int(in_q["tail"][0]), int(in_q["head"][0])
            n = min(len(messages) - sent, cap - (tail - head), limit)
            in_slots[(tail + np.arange(n)) % cap] = messages[sent : sent + n]
            sent += n
            in_q["tail"] = tail + n
            pending = tail + n - head
            if terminate and sent == len(messages):
                control["terminate"] = 1
            dispatch["now"] = time.monotonic_ns()  # what rg.now() returns in this batch
            dispatch["ticks"] = _TICKS_AT_UNIX_EPOCH + time.time_ns() // 100
            dispatch["grid"] = min(pending, limit) if step is None else step["parties"]
            grid = 1 if spec.ordered else int(dispatch["grid"][0])
            head_before = head
            fn(
                ptr(in_slots),
                ptr(in_q),
                ptr(out_slots),
                ptr(out_q),
                ptr(control),
                ptr(state if spec.state is not None else None),
                ptr(dispatch),
                grid,
                workers,
                *extra,
            )
            batches += 1
            if batches % drain_every == 0 or pending == 0:
                o_tail, o_head = int(out_q["tail"][0]), int(out_q["head"][0])
                outputs.append(out_slots[(o_head + np.arange(o_tail - o_head)) % cap])  # a copy
                out_q["head"] = o_tail
            held = int(in_q["tail"][0]) - int(in_q["head"][0])
            if (
                step is not None
                and sent == len(messages)
                and 0 < held < step["parties"]
                and int(in_q["head"][0]) == head_before
                and not terminate
                and int(out_q["head"][0]) == int(out_q["tail"][0])
            ):
                break  # the rest of their step never comes: they stay queued, nothing hangs
            done = sent == len(messages) and int(in_q["head"][0]) == int(in_q["tail"][0])
            if done and int(out_q["head"][0]) == int(out_q["tail"][0]):
                if not terminate or int(control["state"][0]) == Lifecycle.TERMINATED:
                    break
            if batches >= max_batches:
                raise KernelTimeoutError(
                    f"{kernel}: {batches} Metal batches did not drain {len(messages)} messages "
                    f"(sent {sent}, consumed {int(in_q['head'][0])})"
                )
        out = np.concatenate(outputs) if outputs else np.zeros(0, out_dtype)
        held = int(in_q["tail"][0]) - int(in_q["head"][0])
        return MetalRun(out, control[0], state if spec.state is not None else None, batches, held)


def _ptr(a: Optional[np.ndarray]) -> ctypes.c_void_p:
    """The address of ``a``'s data for the driver (a null pointer for None)."""
    return ctypes.c_void_p(a.ctypes.data) if a is not None else ctypes.c_void_p(0)
