"""Run by tests/test_cuda_fault.py in a subprocess (a fault loses the process's CUDA context, so the
test process keeps its own): ``python cuda_fault_probe.py KIND`` launches ``ping`` with the test-only
fault hook (it dies on its fourth message), measures the time from the send that kills it to
``stats().lifecycle == FAULTED`` and to the driver's first report of the error on the kernel's
stream, tries send, receive, a second launch while the dead handle is
live, terminate, and a launch after it, and prints one line ``RESULT {json}``."""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import cuda_fault_kernels as fk  # noqa: E402

import ringgen as rg  # noqa: E402
from ringgen.protocol import Lifecycle  # noqa: E402
from ringgen.runtime.cuda import device as cuda_device  # noqa: E402

AFTER = 3


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def _outcome(call) -> list:
    """``["ok", value]`` or ``[exception class name, message]``."""
    try:
        return ["ok", call()]
    except Exception as exc:  # the probe reports whatever happened
        return [type(exc).__name__, str(exc)]


def main(kind: str) -> dict:
    records = _Records()
    logging.getLogger("ringgen").addHandler(records)
    result: dict = {"kind": kind}
    k = rg.launch(fk.ping, backend="cuda", capacity=1024, debug_fault=(kind, AFTER))
    for i in range(AFTER):
        k.send(fk.Ping(id=i, x=1.5, k=i))
        assert k.receive(timeout=5.0).id == i
    stream, driver_error = k._stream, cuda_device._drv().Error
    t0 = time.perf_counter()
    k.send(fk.Ping(id=AFTER, x=1.5, k=AFTER))
    driver_s = None
    while True:
        # When the driver itself first reports the error (the floor for any detection), timed on
        # the same stream the handle asks; then what the handle says.
        if driver_s is None:
            try:
                stream.is_done()
            except driver_error:
                driver_s = time.perf_counter() - t0
        stats = k.stats()
        if stats.lifecycle is Lifecycle.FAULTED or time.perf_counter() - t0 > 5.0:
            break
    result["fault_s"] = time.perf_counter() - t0
    result["driver_s"] = driver_s
    result["lifecycle"] = stats.lifecycle.name
    result["fault"] = stats.fault
    result["send"] = _outcome(lambda: k.send(fk.Ping(id=99, x=0.0, k=0), timeout=1.0))
    result["receive"] = _outcome(lambda: str(k.receive(timeout=1.0)))
    # A reply the device published before the driver stopped the grid is delivered first (an
    # illegal store does not stop its thread at once: the latency lane may answer the faulting
    # message itself); the receive after it must raise.
    result["receive_again"] = _outcome(lambda: str(k.receive(timeout=1.0)))
    result["launch_while_live"] = _outcome(
        lambda: rg.launch(fk.ping, backend="cuda", capacity=64).terminate().lifecycle.name
    )
    t0 = time.perf_counter()
    result["terminate"] = _outcome(
        lambda: [k.terminate(timeout=2.0).lifecycle.name, k.stats().fault]
    )
    result["terminate_s"] = time.perf_counter() - t0

    def relaunch():
        with rg.launch(fk.ping, backend="cuda", capacity=1024) as k2:
            k2.send(fk.Ping(id=7, x=1.5, k=1))
            reply = k2.receive(timeout=5.0)
            return [reply.id, float(reply.x), reply.k]

    t0 = time.perf_counter()
    result["relaunch"] = _outcome(relaunch)
    result["relaunch_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    result["relaunch_again"] = _outcome(relaunch)
    result["relaunch_again_s"] = time.perf_counter() - t0
    result["log"] = records.lines
    return result


if __name__ == "__main__":
    print("RESULT " + json.dumps(main(sys.argv[1])), flush=True)
