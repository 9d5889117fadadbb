"""``ringgen top`` (issue 17, item 4): ``--once`` shows a kernel running in another process, read
from its ``rg.serve_metrics`` endpoint, and exits 0; an endpoint that cannot be read is exit status
1 with one message; the live view refreshes in place with messages/s from counter deltas."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("prometheus_client")
pytest.importorskip("rich")
from rich.console import Console  # noqa: E402

from ringgen import top  # noqa: E402
from ringgen.cli import main  # noqa: E402

pytestmark = pytest.mark.timeout(300)

HERE = Path(__file__).resolve().parent

SERVER = """
import sys
import ringgen as rg
import runtime_kernels as rk

port, server = rg.serve_metrics(port=0)
with rg.launch(rk.echo, backend="cpu") as k:
    for i in range(25):
        k.send(rk.Seq(seq=i, value=i))
        k.receive(timeout=30.0)
    print(port, flush=True)
    sys.stdin.read()  # serve until the test closes our stdin
server.close()
"""

PAGE = """\
# TYPE ringgen_messages_processed_total counter
ringgen_messages_processed_total{backend="c",instance="3",kernel="echo"} %d
# TYPE ringgen_messages_rejected_total counter
ringgen_messages_rejected_total{backend="c",instance="3",kernel="echo",reason="BAD_CRC"} 2
ringgen_messages_rejected_total{backend="c",instance="3",kernel="echo",reason="DIVISION_BY_ZERO"} 1
# TYPE ringgen_handler_faults_total counter
ringgen_handler_faults_total{backend="c",instance="3",kernel="echo"} 1
# TYPE ringgen_queue_depth gauge
ringgen_queue_depth{backend="c",instance="3",kernel="echo",queue="input"} 7
ringgen_queue_depth{backend="c",instance="3",kernel="echo",queue="output"} 2
# TYPE ringgen_kernel_lifecycle gauge
ringgen_kernel_lifecycle{backend="c",instance="3",kernel="echo",state="ACTIVE"} 1
ringgen_kernel_lifecycle{backend="c",instance="3",kernel="echo",state="FAULTED"} 0
# TYPE ringgen_latency_seconds summary
ringgen_latency_seconds{backend="c",instance="3",kernel="echo",quantile="0.5"} 2.5e-05
ringgen_latency_seconds{backend="c",instance="3",kernel="echo",quantile="0.99"} 0.0015
ringgen_latency_seconds_count{backend="c",instance="3",kernel="echo"} 10
ringgen_latency_seconds_sum{backend="c",instance="3",kernel="echo"} 0.001
"""


@pytest.fixture
def serving(tmp_path):
    """A process running echo on the cpu backend, serving its metrics; yields the port."""
    env = dict(os.environ, RINGGEN_CACHE_DIR=str(tmp_path / "cache"))
    env["PYTHONPATH"] = os.pathsep.join([str(HERE.parent), str(HERE)])
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVER],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        assert line.strip().isdigit(), proc.stderr.read() if proc.poll() is not None else line
        yield int(line)
    finally:
        proc.stdin.close()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_once_shows_a_running_kernel_of_another_process(serving):
    env = dict(os.environ, PYTHONPATH=str(HERE.parent), COLUMNS="160")
    run = subprocess.run(
        [sys.executable, "-m", "ringgen.cli", "top", "--once", "--url"]
        + [f"http://127.0.0.1:{serving}/metrics"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    line = next(ln for ln in run.stdout.splitlines() if "echo" in ln)
    assert "cpu" in line and "ACTIVE" in line and "25" in line


def test_once_on_an_endpoint_that_cannot_be_read_is_status_1(capsys):
    port = _closed_port()
    assert main(["top", "--once", "--port", str(port)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"ringgen top: cannot read http://127.0.0.1:{port}/metrics")
    assert err.count("\n") == 1


def test_top_needs_an_endpoint_and_a_positive_interval(capsys):
    with pytest.raises(SystemExit) as info:
        main(["top", "--once"])
    assert info.value.code == 2
    assert main(["top", "--port", "1", "--interval", "0"]) == 2
    assert "--interval" in capsys.readouterr().err


def test_a_page_becomes_one_row_per_kernel():
    (row,) = top.parse(PAGE % 100)
    assert row.key == ("echo", "c", "3")
    assert row.lifecycle == "ACTIVE" and row.processed == 100 and row.rejected == 3
    assert (row.input_depth, row.output_depth, row.faults) == (7, 2, 1)
    assert (row.p50_s, row.p99_s) == (2.5e-05, 0.0015)
    with pytest.raises(top.TopError, match="Prometheus text format"):
        top.parse("this is { not a metrics page")


def test_the_live_view_refreshes_in_place_with_messages_per_second(monkeypatch):
    pages = iter([PAGE % 100, PAGE % 300, PAGE % 300])
    monkeypatch.setattr(top, "fetch", lambda url, timeout=5.0: next(pages))
    real_render = top.render
    rendered = []

    def render(rows, per_second, **kw):
        rendered.append(dict(per_second))
        return real_render(rows, per_second, **kw)

    monkeypatch.setattr(top, "render", render)
    clock = iter([0.0, 1.0, 2.0, 4.0])
    sleeps = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) == 3:
            raise KeyboardInterrupt

    out = io.StringIO()
    console = Console(file=out, width=160, force_terminal=True)
    with pytest.raises(KeyboardInterrupt):
        top.run(
            "http://x/metrics",
            interval=0.5,
            console=console,
            clock=lambda: next(clock),
            sleep=sleep,
        )
    key = ("echo", "c", "3")
    # the first table is the placeholder, then one per read: no rate yet, 200/s over 1 s, then 0
    assert rendered == [{}, {}, {key: 200.0}, {key: 0.0}]
    assert sleeps == [0.5, 0.5, 0.5]
    assert "echo" in out.getvalue()


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_help_has_examples_and_the_main_help_lists_top(capsys):
    with pytest.raises(SystemExit) as info:
        main(["top", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "examples:" in out and out.count("ringgen top") >= 2
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "ringgen top --port" in capsys.readouterr().out
