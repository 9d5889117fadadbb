"""Probe: can two ring kernels be resident on one GPU in one process?

Launches vector_add, then threshold_filter with ringgen's one-resident refusal bypassed; the
whole probe is bounded (faulthandler dumps the stacks and exits after 25 s), so a hang shows where
it waits. Prints one line per step. Run from the repository root on a CUDA machine, once per module
loading mode (docs/cuda.md, "Limits"):

    python3 tools/cuda_two_resident_probe.py
    CUDA_MODULE_LOADING=EAGER python3 tools/cuda_two_resident_probe.py
"""

import faulthandler
import os
import sys
import time

sys.path.insert(0, os.getcwd())
faulthandler.dump_traceback_later(25, exit=True)
import ringgen as rg  # noqa: E402
import ringgen.runtime.cuda as rc  # noqa: E402
from examples.threshold_filter import Reading, threshold_filter  # noqa: E402
from examples.vector_add import AddRequest, vector_add  # noqa: E402

rc.resident = lambda device: []  # bypass the refusal: this probe asks what it prevents
mode = os.environ.get("CUDA_MODULE_LOADING", "(default)")
t0 = time.perf_counter()
a = rg.launch(vector_add, backend="cuda", workers=8)
a.send(AddRequest(id=1, a=1.0, b=2.0))
print(mode, "A reply", a.receive(timeout=5.0), round(time.perf_counter() - t0, 2), flush=True)
t1 = time.perf_counter()
b = rg.launch(threshold_filter, backend="cuda", workers=8)
print(mode, "B launched in", round(time.perf_counter() - t1, 2), "s", flush=True)
b.send(Reading(sensor=1, seq=2, value=95.0))
print(mode, "B replies", b.receive(timeout=5.0), flush=True)
a.send(AddRequest(id=2, a=3.0, b=4.0))
print(mode, "A again", a.receive(timeout=5.0), flush=True)
b.terminate(timeout=5.0)
a.terminate(timeout=5.0)
print(mode, "both terminated OK", round(time.perf_counter() - t0, 2), flush=True)
