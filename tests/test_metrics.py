"""``rg.serve_metrics`` (issue 17, item 3): a scrape in the Prometheus text format, parsed with
``prometheus_client.parser``, shows each live kernel's counters after N messages, on the cpu and c
backends; a terminated kernel leaves the page; the latency summary reads both shapes of
``stats().latency``."""

from __future__ import annotations

import sys
import time
import urllib.request
from pathlib import Path

import pytest

prometheus_client = pytest.importorskip("prometheus_client")
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

import ringgen as rg  # noqa: E402
from ringgen.runtime import available_backends  # noqa: E402
from ringgen.runtime.metrics import KernelCollector, _add_latency  # noqa: E402
from ringgen.runtime.registry import instance_id, live_kernels  # noqa: E402
from ringgen.runtime.stats import LatencySummary  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import runtime_kernels as rk  # noqa: E402

pytestmark = pytest.mark.timeout(300)

BACKENDS = [b for b in ("cpu", "c") if b in available_backends()]
N = 40


@pytest.fixture(scope="module", autouse=True)
def _cache(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("RINGGEN_CACHE_DIR", str(tmp_path_factory.mktemp("ringgen-cache")))
    yield
    mp.undo()


@pytest.fixture
def server():
    port, srv = rg.serve_metrics(port=0)
    yield port, srv
    srv.close()


def scrape(port: int) -> dict:
    """(sample name, sorted label items) -> value, from one scrape."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def labels(handle, **more) -> tuple:
    base = {"kernel": handle.name, "backend": handle.backend, "instance": str(instance_id(handle))}
    return tuple(sorted({**base, **more}.items()))


def divs(n: int, zero_every: int) -> list:
    return [
        rk.Div(seq=i, a=i, b=0 if i % zero_every == 0 else 3, index=0, values=[1, 2, 3, 4])
        for i in range(n)
    ]


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_scrape_shows_the_counts_after_n_messages(server, backend):
    port, _ = server
    with rg.launch(rk.divide, backend=backend) as k:
        messages = divs(N, zero_every=10)  # 4 divisions by zero
        k.send_batch(messages)
        got = 0
        while got < N - 4:
            got += len(k.receive_batch(N, timeout=30.0))
        # the kernel has handled every message once its stats say so
        deadline = time.monotonic() + 30.0
        while k.stats().processed < N and time.monotonic() < deadline:
            time.sleep(0.01)
        m = scrape(port)
        assert m[("ringgen_messages_sent_total", labels(k))] == N
        assert m[("ringgen_messages_received_total", labels(k))] == N - 4
        assert m[("ringgen_messages_processed_total", labels(k))] == N
        assert m[("ringgen_messages_emitted_total", labels(k))] == N - 4
        rejected = labels(k, reason="DIVISION_BY_ZERO")
        assert m[("ringgen_messages_rejected_total", rejected)] == 4
        assert m[("ringgen_handler_faults_total", labels(k))] == 4
        assert m[("ringgen_queue_depth", labels(k, queue="input"))] == 0
        assert m[("ringgen_queue_depth", labels(k, queue="output"))] == 0
        assert m[("ringgen_queue_capacity", labels(k))] == k.capacity
        assert m[("ringgen_kernel_lifecycle", labels(k, state="ACTIVE"))] == 1
        assert m[("ringgen_kernel_lifecycle", labels(k, state="FAULTED"))] == 0
    assert k not in live_kernels()
    assert not any(dict(key[1]).get("instance") == str(instance_id(k)) for key in scrape(port))


def test_two_launches_of_one_kernel_are_two_instances(server):
    port, _ = server
    with rg.launch(rk.echo, backend="cpu") as a, rg.launch(rk.echo, backend="cpu") as b:
        a.send(rk.Seq(seq=1, value=1))
        a.receive(timeout=10.0)
        m = scrape(port)
        assert instance_id(a) != instance_id(b)
        assert m[("ringgen_messages_sent_total", labels(a))] == 1
        assert m[("ringgen_messages_sent_total", labels(b))] == 0


def test_the_cpu_backends_latency_is_a_summary_in_seconds(server):
    port, _ = server
    with rg.launch(rk.echo, backend="cpu") as k:
        for i in range(N):
            k.send(rk.Seq(seq=i, value=i))
            k.receive(timeout=10.0)
        latency = k.stats().latency
        m = scrape(port)
    assert latency is not None
    assert m[("ringgen_latency_seconds_count", labels(k))] == latency.count
    p50 = m[("ringgen_latency_seconds", labels(k, quantile="0.5"))]
    assert p50 == pytest.approx(latency.p50_us * 1e-6)


def test_an_hdrhistogram_latency_gives_four_quantiles():
    hdrh = pytest.importorskip("hdrh.histogram")
    hist = hdrh.HdrHistogram(1, 10**9, 3)
    for ns in range(1000, 101000, 1000):  # 1 µs .. 100 µs, one sample each
        hist.record_value(ns)
    metric = prometheus_client.core.Metric("ringgen_latency_seconds", "doc", "summary")
    _add_latency(metric, {"kernel": "k"}, hist)
    values = {s.labels.get("quantile", s.name): s.value for s in metric.samples}
    assert values["0.5"] == pytest.approx(50e-6, rel=0.01)
    assert values["0.999"] == pytest.approx(100e-6, rel=0.01)
    assert values["ringgen_latency_seconds_count"] == 100
    summary = LatencySummary("x", count=2, mean_us=3.0, p50_us=2.0, p99_us=4.0, max_us=4.0)
    metric = prometheus_client.core.Metric("ringgen_latency_seconds", "doc", "summary")
    _add_latency(metric, {"kernel": "k"}, summary)
    assert [s.labels.get("quantile") for s in metric.samples] == ["0.5", "0.99", None, None]


def test_a_kernel_that_fails_to_report_is_left_out():
    class Broken:
        name = "broken"

        def stats(self):
            raise RuntimeError("gone")

    families = list(KernelCollector(lambda: [Broken()]).collect())
    assert all(not f.samples for f in families)


def test_close_frees_the_port():
    port, srv = rg.serve_metrics(port=0)
    assert srv.url == f"http://127.0.0.1:{port}/metrics"
    srv.close()
    srv.close()  # a second close does nothing
    again, srv2 = rg.serve_metrics(port=port)
    assert again == port
    srv2.close()
