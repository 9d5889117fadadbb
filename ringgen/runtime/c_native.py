"""Backend ``"c"``: the plain-C handlers of the generated package, compiled natively, run by a resident
C worker loop over shared host rings.

What runs: the ``<name>.c`` that ``ringgen build`` emits (``sources.c`` in the manifest: the kernel's
types, the C prelude and the same handler body every device target compiles) is compiled together with
``c_worker.c`` (shipped with ringgen) by the system C compiler with the C target's strict flags
(``-O2 -std=c99 -ffp-contract=off -fno-fast-math``: results bit-identical to the reference). The
shared library goes into the build cache (``ringgen.cachestore``: a content-keyed entry whose files are
hashed and checked before the library is loaded) and is loaded with ctypes.

Threads: one worker per kernel (parallel and ``ordered=True`` kernels alike), a Python daemon thread
that calls ``rg_c_worker`` through ctypes, which releases the GIL for the whole call: the loop, the
handler and every wait are C. It polls the input ring, runs the handler, publishes replies (an Outbox's
emits in order), counts faults by ``Reason`` and honours the terminate word (drain, or
``TERMINATE_STOP_NOW``, which handler loops poll through ``rg_stop``). Idle, it spins briefly, then
``sched_yield``s for 2 ms, then sleeps 20 µs doubling to 1 ms, so it never starves the host thread.

Protocol: ``ringgen.protocol`` exactly (control block, queue counters on their own lines, publish by a
release store of ``tail``, consume by a release store of ``head``). The host's side of each queue is
``ringgen.runtime.host_ring`` over cache-line-aligned host memory, as the OpenCL persistent transport
uses it over SVM: single aligned 8-byte loads and stores of the counters, ordered by x86-64 TSO
(``ringgen.runtime.opencl`` argues it); the worker uses GCC's ``__atomic`` acquire/release builtins.

Not supported: bridged messages (the C target has no wire codec): a kernel with a bridged input or
output is refused at launch with ``BackendUnavailableError`` (``auto`` then falls back to ``cpu``).

The runtime imports nothing of the compiler: the kernel's C names come from ``ringgen.layout``, its
source file and Outbox limit from the package's ``manifest.json``.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import platform
import subprocess
import sys
import threading
import time
import weakref
from pathlib import Path
from typing import Any, ClassVar, Optional

import numpy as np

from .. import cachestore
from ..barriers import break_shared, declared_names, shared_words
from ..errors import BackendUnavailableError, BuildError, KernelTimeoutError
from ..kernel import KernelSpec
from ..layout import layout_of
from ..protocol import (
    CACHE_LINE,
    CONTROL_DTYPE,
    CONTROL_SIZE,
    QUEUE_CTL_DTYPE,
    TERMINATE_DRAIN,
    TERMINATE_STOP_NOW,
    Lifecycle,
)
from ..toolchain import C_STRICT_FLAGS, find_c_compiler
from .base import KernelHandle
from .batches import BatchFormat, SlotBatches
from .host_ring import RingConsumer, RingProducer
from .logs import kernel_logger
from .options import check_telemetry
from .probes import DeviceInfo
from .telemetry import Telemetry, new_buffer, read_telemetry, rejected_by_reason

__all__ = ["CKernelHandle", "HANDLE_CLASS", "STRICT_FLAGS", "devices", "find_compiler", "probe"]

log = kernel_logger(__name__)

#: The worker loop's source, compiled with every kernel.
WORKER_SOURCE = Path(__file__).with_name("c_worker.c")

#: The C target's strict flags (``ringgen.toolchain.C_STRICT_FLAGS``, which the emitter uses too),
#: plus what a shared library needs.
STRICT_FLAGS = C_STRICT_FLAGS + ("-D_DEFAULT_SOURCE", "-fPIC", "-shared", "-w")

#: Slots the host copies before it publishes them, so copying overlaps the worker's processing.
_PUBLISH_CHUNK = 16384

#: With the launch option ``telemetry`` on, the worker times 1 message in this many (two clock reads
#: each): the sampling keeps the cost under 3 % of a trivial handler's throughput
#: (``bench/telemetry.py``) and leaves any percentile of a steady handler where it was.
TELEMETRY_SAMPLE_EVERY = 256


def find_compiler() -> Optional[str]:
    """The C compiler (``ringgen.toolchain.find_c_compiler``): ``$CC``, else cc, gcc or clang."""
    return find_c_compiler()


def probe() -> None:
    """Raise ``BackendUnavailableError`` unless a C compiler is present (the registry calls it)."""
    if sys.byteorder != "little":
        raise BackendUnavailableError(
            "backend c: needs a little-endian host (the queue slots are little-endian structs)"
        )
    if find_compiler() is None:
        raise BackendUnavailableError(
            "backend c: no C compiler found ($CC, cc, gcc or clang)",
            hint="install gcc (apt-get install gcc) or set CC",
        )


def devices() -> tuple[DeviceInfo, ...]:
    """The backend's one probe (``ringgen/targets.py``): the host CPU, when a C compiler is present.

    Raises:
        BackendUnavailableError: no C compiler, or a big-endian host.
    """
    probe()
    return (
        DeviceInfo(
            "c",
            f"native ({find_compiler()})",
            f"host CPU ({platform.machine()})",
            "persistent",
            True,
            "host memory",
            "generated C handlers, one native worker thread",
        ),
    )


_VERSIONS: dict[str, str] = {}


def _compiler_version(cc: str) -> str:
    if cc not in _VERSIONS:
        _VERSIONS[cc] = subprocess.run(
            [cc, "--version"], capture_output=True, text=True, timeout=60, check=True
        ).stdout
    return _VERSIONS[cc]


def _aligned(nbytes: int) -> np.ndarray:
    """A zeroed uint8 array of ``nbytes`` (at least one line) starting on a cache line."""
    n = max(nbytes, CACHE_LINE)
    raw = np.zeros(n + CACHE_LINE, dtype=np.uint8)
    off = (-raw.ctypes.data) % CACHE_LINE
    return raw[off : off + n]


def _bytes(a: np.ndarray) -> np.ndarray:
    return a.reshape(-1).view(np.uint8)


def _run_worker(
    fn: Any, args: tuple, done: threading.Event, errors: list, barriers: tuple = (), name: str = ""
) -> None:
    """The worker thread's body: one ctypes call (the GIL is released for all of it). Holds the
    buffers through ``args`` until the C loop has returned, so they outlive it whatever the handle
    does; holds no reference to the handle, so a dropped handle can be collected. When the loop
    returns, the kernel can never arrive at its ``barriers`` again: they are marked broken."""
    try:
        fn(*args)
    except BaseException as exc:  # pragma: no cover - ctypes raises nothing for a plain C call
        errors.append(repr(exc))
    finally:
        if barriers:
            break_shared(barriers, f"kernel {name} (c) left its loop")
        done.set()


def _bind_barriers(lib: ctypes.CDLL) -> tuple:
    """Point each barrier the library waits on (its exported ``rg_barrier_<name>_at``) at the
    process's shared words, so every kernel of the process meets at one barrier; the names."""
    names = []
    for name in declared_names():
        try:
            at = ctypes.c_void_p.in_dll(lib, f"rg_barrier_{name}_at")
        except ValueError:  # this library does not wait on it
            continue
        at.value = shared_words(name).ctypes.data
        names.append(name)
    return tuple(names)


def _stop_orphan(ctl: np.ndarray) -> None:
    """Finalizer of a handle dropped while its worker runs: ask the worker to stop now (no one will
    read its output queue again). Its buffers live as long as the worker thread holds them."""
    ctl["terminate"] = TERMINATE_STOP_NOW


class CKernelHandle(KernelHandle):
    """A ring kernel on the host CPU: the generated C handler in a native worker thread.

    Options (keyword arguments of ``launch``):
        capacity: slots per queue (default: the kernel's declared capacity).
        cc: the C compiler (default ``$CC``, else cc, gcc or clang).
        telemetry: time 1 message in ``TELEMETRY_SAMPLE_EVERY`` in the worker (time in the handler,
            and from the host's publication stamp to the handler's start) and sample the queue
            depths, into a buffer ``stats().telemetry`` decodes (default True; False compiles the
            worker without any of it).
    """

    backend: ClassVar[str] = "c"
    #: A reply usually comes within microseconds: a waiting receive polls, yielding the core between
    #: polls (the worker may share it on a busy machine), for 500 µs before it sleeps.
    free_poll_s: ClassVar[float] = 500e-6
    persistent: ClassVar[bool] = True
    measures_latency: ClassVar[bool] = False
    targets: ClassVar[tuple[str, ...]] = ("c",)
    launch_timeout: ClassVar[float] = 120.0  # a cold compile of a large kernel takes seconds

    #: Worker threads per kernel (one: the worker handles messages in arrival order, which is the
    #: semantics of an ordered kernel and a valid schedule of a parallel one).
    workers: ClassVar[int] = 1

    def __init__(
        self,
        spec: KernelSpec,
        package_dir: Optional[str],
        *,
        codecs,
        capacity: Optional[int] = None,
        cc: Optional[str] = None,
        telemetry: bool = True,
    ) -> None:
        self.telemetry_on = check_telemetry(spec.name, telemetry)
        super().__init__(spec, package_dir, codecs=codecs, capacity=capacity)
        if package_dir is None:
            raise BuildError(
                f"kernel {spec.name}: the c backend needs the generated package directory "
                "(it holds the .c source)"
            )
        bridged = [
            cls.__name__
            for cls in (spec.input, spec.output)
            if cls is not None and layout_of(cls).is_bridged
        ]
        if bridged:
            raise BackendUnavailableError(
                f"kernel {spec.name}: backend c cannot run it: {', '.join(bridged)} "
                f"{'is a bridged message' if len(bridged) == 1 else 'are bridged messages'} "
                "(variable-size, wire-encoded), and the plain-C target has no wire codec",
                hint="run this kernel with backend='cpu', 'opencl' or 'cuda'",
            )
        self.cc = cc or find_compiler()
        if self.cc is None:
            probe()
        self.in_slot = self.format.in_slot
        self.out_slot = self.format.out_slot if self.format.out_slot is not None else np.dtype("u1")
        self._thread: Optional[threading.Thread] = None

    def _batch_format(self) -> BatchFormat:
        return SlotBatches(self.name, self.in_codec, self.out_codec)

    # ---- build

    def _manifest_kernel(self) -> dict:
        path = Path(self.package_dir) / "manifest.json"
        try:
            manifest = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise BuildError(
                f"kernel {self.name}: cannot read {path} ({exc})",
                hint="rebuild the package (`ringgen build`)",
            ) from None
        for k in manifest.get("kernels", ()):
            if k.get("name") == self.name:
                return k
        raise BuildError(
            f"kernel {self.name}: {path} does not list it",
            hint="rebuild the package: it is older than the kernel's module",
        )

    def _flags(self, entry: dict, source_name: str) -> list[str]:
        spec = self.spec
        flags = [
            f'-DRG_C_SOURCE="{source_name}"',
            f"-DRG_C_HANDLER=rg_handle_{self.name}",
            f"-DRG_C_IN={layout_of(spec.input).name}",
            f"-DRG_C_IN_SLOT={self.in_codec.slot_size}",
        ]
        if spec.output is not None:
            flags.append(f"-DRG_C_OUT={layout_of(spec.output).name}")
            flags.append(f"-DRG_C_OUT_SLOT={self.out_codec.slot_size}")
        if entry.get("outbox"):
            flags.append(f"-DRG_C_OUTBOX=rg_outbox_{self.name}")
            flags.append(f"-DRG_C_LIMIT={int(entry.get('outbox_limit', spec.outbox_limit))}")
        else:
            flags.append("-DRG_C_LIMIT=1")
        if self.telemetry_on:
            flags.append(f"-DRG_C_TELEMETRY={TELEMETRY_SAMPLE_EVERY}u")
        return flags

    def _library(self) -> ctypes.CDLL:
        """Compile (or find in the cache) this kernel's worker library and load it."""
        entry = self._manifest_kernel()
        src_name = (entry.get("sources") or {}).get("c")
        pkg = Path(self.package_dir)
        if not src_name or not (pkg / src_name).is_file():
            raise BuildError(
                f"kernel {self.name}: no C source in {pkg}",
                hint="build the package with the c target (`ringgen build`, or "
                "rg.launch(kernel, backend='c'), which builds it)",
            )
        source = (pkg / src_name).read_bytes()
        headers = {p.name: p.read_bytes() for p in sorted(pkg.glob("*.h"))}
        worker = WORKER_SOURCE.read_bytes()
        flags = [*STRICT_FLAGS, *self._flags(entry, src_name)]
        key = hashlib.sha256()
        for part in (
            source,
            *(n.encode() + b"\0" + d for n, d in headers.items()),
            worker,
            _compiler_version(self.cc).encode(),
            " ".join(flags).encode(),
            f"{sys.platform}-{platform.machine()}".encode(),
        ):
            key.update(part)
            key.update(b"\0")
        digest = key.hexdigest()
        lib_name = f"librg_{self.name}.so"

        def compile_into(folder: Path) -> None:
            (folder / src_name).write_bytes(source)
            for n, d in headers.items():
                (folder / n).write_bytes(d)
            (folder / "c_worker.c").write_bytes(worker)
            res = subprocess.run(
                [self.cc, *flags, "-I", str(folder), "-o", str(folder / lib_name), "c_worker.c"],
                capture_output=True,
                text=True,
                timeout=300,
                cwd=str(folder),
            )
            if res.returncode != 0:
                raise BuildError(
                    f"kernel {self.name}: {self.cc} failed to compile {src_name} with the c "
                    f"backend's worker ({res.returncode}): {res.stderr.strip()[:2000]}",
                    hint="rebuild the package: it may come from another version of ringgen",
                )
            for n in [src_name, *headers, "c_worker.c"]:
                (folder / n).unlink()

        found = cachestore.get_or_build(
            cachestore.cache_subdir("c"),
            f"{self.name}-{digest[:24]}",
            digest,
            compile_into,
            what=f"c backend library of kernel {self.name}",
        )
        # get_or_build returns only an entry whose every file matched its recorded hash.
        lib = ctypes.CDLL(str(found.path / lib_name))
        fn = lib.rg_c_worker
        p = ctypes.c_void_p
        fn.argtypes = [p, p, p, ctypes.c_uint64, p, p, ctypes.c_uint64, p, p, p]
        fn.restype = ctypes.c_int
        return lib

    # ---- launch

    def _launch(self) -> None:
        lib = self._library()
        cap = self.capacity
        ctl = _aligned(CONTROL_SIZE)
        inq = _aligned(QUEUE_CTL_DTYPE.itemsize)
        outq = _aligned(QUEUE_CTL_DTYPE.itemsize)
        in_ring = _aligned(cap * self.in_slot.itemsize)
        out_ring = _aligned(cap * self.out_slot.itemsize if self.out_codec else 1)
        state = _aligned(layout_of(self.spec.state).size if self.spec.state else 1)
        if self.spec.state is not None:
            init = _bytes(self._initial_state())
            state[: init.size] = init
        self._state_mem = state
        self._ctl = ctl.view(CONTROL_DTYPE)
        self._ctl_rec = self._ctl[0]
        self._words = [memoryview(q).cast("Q") for q in (inq, outq)]
        self._inq = RingProducer(
            in_ring, self.in_slot, cap, self._words[0], 0, publish_chunk=_PUBLISH_CHUNK
        )
        # Without an output the ring is a line, never read: the worker publishes nothing there.
        self._outq = (
            RingConsumer(out_ring, self.out_slot, cap, self._words[1], 0)
            if self.out_codec
            else None
        )
        self._ctl["state"] = int(Lifecycle.LAUNCHED)
        # Telemetry: the buffer the worker writes and the host's publication stamp of each slot.
        self._tele = new_buffer(TELEMETRY_SAMPLE_EVERY) if self.telemetry_on else None
        # Only the timed messages (sequence numbers that are multiples of the sampling period) are
        # stamped, each in the entry (slot // period); with cap < period one is in flight at a time.
        stamps = max(cap // TELEMETRY_SAMPLE_EVERY, 1)
        self._sent_at = np.zeros(stamps, dtype=np.uint64) if self.telemetry_on else None
        args = (
            ctl.ctypes.data,
            inq.ctypes.data,
            in_ring.ctypes.data,
            cap,
            outq.ctypes.data,
            out_ring.ctypes.data,
            cap,
            state.ctypes.data,
            None if self._tele is None else self._tele.ctypes.data,
            None if self._sent_at is None else self._sent_at.ctypes.data,
        )
        barriers = _bind_barriers(lib)
        self._done = threading.Event()
        self._errors: list = []
        # The thread holds the buffers (and the library) until the C loop returns.
        keep = (lib, ctl, inq, outq, in_ring, out_ring, state, self._tele, self._sent_at)
        self._thread = threading.Thread(
            target=_run_worker,
            args=(lib.rg_c_worker, args, self._done, self._errors, barriers, self.name),
            name=f"ringgen-c-{self.name}",
            daemon=True,
        )
        self._thread._ringgen_keep = keep  # type: ignore[attr-defined]
        self._thread.start()
        self._finalizer = weakref.finalize(self, _stop_orphan, self._ctl)

    # ---- transport

    def _push(self, batch: np.ndarray) -> int:
        head = self._inq.device_head()
        if self._sent_at is not None:
            # Stamp the timed messages this put may publish before it publishes them (free slots
            # are the host's); a batch published in pieces is stamped once, when its first piece is.
            tail = self._inq.tail
            end = tail + min(len(batch), self.capacity - (tail - head))
            every = TELEMETRY_SAMPLE_EVERY
            first = -(-tail // every) * every
            if first < end:
                stamps = self._sent_at
                at = (first & (self.capacity - 1)) // every
                n = (end - first + every - 1) // every
                now = time.monotonic_ns()
                stamps[at : at + n] = now  # the ring of stamps wraps at most once
                stamps[: max(at + n - len(stamps), 0)] = now
        return self._inq.put(batch, head)

    def _pop(self, max_n: int) -> np.ndarray:
        if self._outq is None:
            return self.format.empty()
        return self._outq.take(max_n)

    def _pop_into(self, dst: np.ndarray) -> Optional[int]:
        return None if self._outq is None else self._outq.take_into(dst)

    def _control(self) -> np.ndarray:
        return self._ctl_rec

    def _queue_depths(self) -> tuple[int, int]:
        out_depth = self._outq.depth() if self._outq is not None else 0
        return self._inq.tail - self._inq.device_head(), out_depth

    def _latency(self):
        return None

    def _telemetry(self, ctl: np.ndarray) -> Optional[Telemetry]:
        if self._tele is None:
            return None
        return read_telemetry(
            self._tele,
            rejected=rejected_by_reason(ctl),
            clock="host CLOCK_MONOTONIC",
            queue_what="host send (publication stamp) to handler start, one host clock",
        )

    def _read_state(self) -> Any:
        size = layout_of(self.spec.state).size
        codec = self.codecs[self.spec.state.__name__]
        raw = self._state_mem[:size].copy()
        return codec.from_array(raw.view(codec.dtype).copy())[0]

    def _request_terminate(self) -> None:
        self._ctl["terminate"] = TERMINATE_DRAIN

    def _request_stop_now(self) -> None:
        self._ctl["terminate"] = TERMINATE_STOP_NOW

    def _synchronize(self, timeout: float) -> None:
        thread = self._thread
        if thread is None:
            return
        thread.join(timeout)
        if thread.is_alive():
            raise KernelTimeoutError(
                f"kernel {self.name} (c) acknowledged termination but its worker thread did not "
                f"exit within {timeout:g} s"
            )

    def _release(self) -> None:
        self._finalizer.detach()
        for ring in (self._inq, self._outq):
            if ring is not None:
                ring.close()
        for view in self._words:
            view.release()
        self._thread = None

    def _abandon(self) -> None:
        # Ask the worker to stop now and never wait for it: its thread keeps its own references to
        # every buffer, so nothing is freed under it, and it is a daemon, so the process can exit.
        finalizer = getattr(self, "_finalizer", None)
        if finalizer is not None:
            finalizer.detach()
        ctl = getattr(self, "_ctl", None)
        if ctl is not None:
            ctl["terminate"] = TERMINATE_STOP_NOW

    def _fault_detail(self) -> str:
        return "; ".join(getattr(self, "_errors", ()))


#: What ``ringgen.runtime.backends`` opens for ``backend="c"``.
HANDLE_CLASS = CKernelHandle
