"""The zero-copy API of a graph run as one device kernel (``FusedGraphHandle.reserve``/``commit``,
``receive_view``/``release``), without a GPU: the graph's kernel is a ``CudaKernelHandle`` whose
mapped page and rings are numpy arrays (``test_cuda_queues._fake_handle``), and the test plays the
kernel's side by writing its replies and tail as the device would."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "bench")]

import graph_stages as gs  # noqa: E402
from test_cuda_queues import _fake_handle  # noqa: E402

import ringgen as rg  # noqa: E402
from ringgen.runtime.graph_device import FusedGraphHandle  # noqa: E402

pytestmark = pytest.mark.timeout(120)


def _graph(capacity=8):
    """A 3-stage pipeline's handle over a fake CUDA kernel with the entry's and exit's slots (every
    bench stage takes and returns ``Val``), as ``ringgen.jit`` builds it for a device strategy."""
    k, C = _fake_handle(gs.stage1, capacity=capacity)
    g = rg.pipeline(gs.stage1, gs.stage2, gs.stage3, name="zc3")
    return FusedGraphHandle(g, k, strategy="shared_memory"), k, C


def test_reserve_and_commit_publish_into_the_entry_ring():
    graph, k, C = _graph()
    v = graph.reserve(5)
    assert len(v) == 5 and v.flags.writeable and np.shares_memory(v, k.inq.slots)
    v["id"] = np.arange(5)
    v["v"] = np.arange(5) * 10
    assert k._words[C._INQ_OFF // 8] == 0  # nothing published before commit
    graph.commit(3)
    assert k._words[C._INQ_OFF // 8] == 3 and k._sent == 3
    assert list(k.inq.slots["v"][:3]) == [0, 10, 20]
    # room: 8 slots, 3 in flight (a reply reuses its request's slot until released)
    assert len(graph.reserve(100)) == 5


def test_receive_view_and_release_take_the_exits_replies_in_place():
    graph, k, C = _graph()
    v = graph.reserve(4)
    v["id"] = np.arange(4)
    graph.commit(4)
    k.outq.slots["id"][:4] = np.arange(4)
    k.outq.slots["v"][:4] = np.arange(4) + 3  # what three stages of v + 1 make
    assert len(graph.receive_view(4, timeout=0.01, min_n=4)) == 0  # nothing published yet
    k._words[C._OUTQ_OFF // 8] = 3  # the kernel published three replies
    view = graph.receive_view(4, timeout=0.05, min_n=1, exit="stage3")
    assert list(view["v"]) == [3, 4, 5] and np.shares_memory(view, k.outq.slots)
    graph.release(2)
    assert k.outq.head == 2 and k._received == 2
    assert k._words[C._OUTQ_OFF // 8 + 16] == 2  # the head, published to the kernel
    k._words[C._OUTQ_OFF // 8] = 4
    assert list(graph.receive_view(timeout=0.05, min_n=2)["v"]) == [5, 6]
    graph.release(2)
    assert k._received == 4
    assert len(graph.reserve(8)) == 4  # every slot free again; a view stops at the ring's end


def test_receive_view_names_a_wrong_exit():
    graph, _, _ = _graph()
    with pytest.raises(ValueError, match=r"'stage1' is not an exit \(exits: stage3\)"):
        graph.receive_view(1, exit="stage1")


def test_a_backend_without_zero_copy_is_a_type_error_naming_the_graph():
    class Copying:
        """A kernel handle with the copying API only (OpenCL's)."""

        backend = "opencl"

    g = rg.pipeline(gs.stage1, gs.stage2, name="copying")
    graph = FusedGraphHandle(g, Copying(), strategy="shared_memory")
    for call, args in (
        ("reserve", (1,)),
        ("commit", (1,)),
        ("receive_view", ()),
        ("release", (1,)),
    ):
        with pytest.raises(TypeError, match=rf"graph copying: {call}\(\) is the zero-copy API"):
            getattr(graph, call)(*args)
