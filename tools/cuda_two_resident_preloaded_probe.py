"""Probe: as cuda_two_resident_probe.py, but threshold_filter's module is loaded (launched and
terminated) before vector_add becomes resident, so the second launch loads no module: does it get
past its allocations, its launch, a round trip, and its terminate (which frees memory) while the
other kernel stays resident? Bounded like the other probe (25 s). Run from the repository root:

    python3 tools/cuda_two_resident_preloaded_probe.py
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
b = rg.launch(threshold_filter, backend="cuda", workers=8)
b.terminate(timeout=5.0)
print("B's module loaded", flush=True)
a = rg.launch(vector_add, backend="cuda", workers=8)
a.send(AddRequest(id=1, a=1.0, b=2.0))
print("A reply", a.receive(timeout=5.0), flush=True)
t1 = time.perf_counter()
b = rg.launch(threshold_filter, backend="cuda", workers=8)
print("B launched in", round(time.perf_counter() - t1, 3), "s", flush=True)
b.send(Reading(sensor=1, seq=2, value=95.0))
print("B replies", b.receive(timeout=5.0), flush=True)
a.send(AddRequest(id=2, a=3.0, b=4.0))
print("A again", a.receive(timeout=5.0), flush=True)
t1 = time.perf_counter()
b.terminate(timeout=5.0)
print("B terminated in", round(time.perf_counter() - t1, 3), flush=True)
a.send(AddRequest(id=3, a=3.0, b=4.0))
print("A after B", a.receive(timeout=5.0), flush=True)
a.terminate(timeout=5.0)
print("both terminated OK", flush=True)
