"""Soaks: 1,000,000 messages through a topic with 4 subscribers on the `c` backend: with Block,
every subscriber gets every message once, in order; with a drop policy, what each gets is an
ordered subset and its drops are counted so that the sums hold."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

import ringgen as rg
from ringgen.runtime import available_backends

sys.path.insert(0, str(Path(__file__).resolve().parent))
import topic_kernels as tk  # noqa: E402

pytestmark = [
    pytest.mark.timeout(300),
    pytest.mark.skipif("c" not in available_backends(), reason="no C compiler"),
]

N = 1_000_000
BATCH = 65_536


def _soak(policy) -> tuple[dict, object]:
    scores = rg.topic("scores", tk.Tick, policy=policy)
    g = rg.graph(tk.source >> scores, scores >> tk.SUBSCRIBERS[:4])
    msgs = np.zeros(N, dtype=rg.dtype_of(tk.Tick))
    msgs["id"] = np.arange(N)
    msgs["x"] = np.arange(N) % 1000
    got: dict = {s.spec.name: [] for s in tk.SUBSCRIBERS[:4]}
    with rg.launch(g, backend="c", capacity=4096) as h:
        for i in range(0, N, BATCH):
            h.send_batch(msgs[i : i + BATCH], timeout=120)
            for name, parts in got.items():  # keep up as a consumer would
                parts.append(h.receive_batch(exit=name))
        h.terminate(timeout=120)
        for name, parts in got.items():
            while True:
                try:
                    parts.append(h.receive_batch(timeout=5.0, exit=name))
                except rg.QueueClosedError:
                    break
        stats = h.stats()
    return {n: np.concatenate([p for p in ps if len(p)]) for n, ps in got.items()}, stats


def test_a_million_messages_to_four_subscribers_none_lost_or_duplicated():
    got, stats = _soak(rg.Block())
    for name, out in got.items():
        assert len(out) == N, name
        np.testing.assert_array_equal(out["id"], np.arange(N))  # each once, in order
        np.testing.assert_array_equal(out["x"], (np.arange(N) % 1000 + 1) * 2 + 1)
    t = stats.topics["scores"]
    assert t.published == N
    assert all(s.delivered == N and s.dropped == 0 for s in t.subscribers.values())


def test_a_million_messages_under_drop_oldest_count_every_drop():
    got, stats = _soak(rg.DropOldest(1024))
    t = stats.topics["scores"]
    assert t.published == N
    for name, out in got.items():
        s = t.subscribers[name]
        assert s.delivered == len(out) and s.depth == 0
        assert s.delivered + s.dropped == N
        assert np.all(np.diff(out["id"]) > 0)  # an ordered subset, nothing twice
