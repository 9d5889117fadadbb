"""Logging (issue 17, item 7): the runtime logs under the ``ringgen`` hierarchy, one logger per
module, every record carrying the kernel it is about; the library itself never prints."""

from __future__ import annotations

import ast
import logging
import sys
from pathlib import Path

import pytest

import ringgen as rg
from ringgen.runtime.logs import NO_KERNEL, kernel_logger

sys.path.insert(0, str(Path(__file__).resolve().parent))
import runtime_kernels as rk  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module", autouse=True)
def _cache(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("RINGGEN_CACHE_DIR", str(tmp_path_factory.mktemp("ringgen-cache")))
    yield
    mp.undo()


def test_launch_and_terminate_on_the_cpu_log_records_carrying_the_kernel(caplog):
    caplog.set_level(logging.DEBUG, logger="ringgen")
    with rg.launch(rk.echo, backend="cpu") as k:
        k.send(rk.Seq(seq=1, value=1))
        k.receive(timeout=10.0)
    runtime = [r for r in caplog.records if r.name.startswith("ringgen.runtime.")]
    launched = [r for r in runtime if r.getMessage().startswith("launched kernel echo")]
    terminated = [r for r in runtime if r.getMessage().startswith("terminated kernel echo")]
    assert len(launched) == 1 and len(terminated) == 1
    assert launched[0].name == "ringgen.runtime.base"
    assert terminated[0].name == "ringgen.runtime.termination"
    for record in launched + terminated:
        assert record.kernel == "echo"
    # every record of the runtime has the attribute, so "%(kernel)s" is always safe to format
    assert all(hasattr(r, "kernel") for r in runtime)


def test_a_handler_crash_on_the_cpu_is_an_error_record_naming_the_kernel(caplog):
    caplog.set_level(logging.ERROR, logger="ringgen")
    k = rg.launch(rk.echo, backend="cpu")

    def broken(msg, state):
        raise RuntimeError("handler bug")

    k._worker.step = (
        broken  # white box, as in test_runtime_cpu: the compiler rejects such a handler
    )
    k.send(rk.Seq(seq=0, value=0))
    with pytest.raises(rg.KernelFaultError):
        k.receive(timeout=5)
    with pytest.raises(rg.KernelFaultError):
        k.terminate()
    faults = [r for r in caplog.records if r.name == "ringgen.runtime.cpu"]
    assert faults and all(r.kernel == "echo" for r in faults)


def test_a_record_about_no_kernel_says_so():
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    logger = logging.getLogger("ringgen.runtime.test_logging")
    handler = Keep()
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        log = kernel_logger("ringgen.runtime.test_logging")
        log.info("about nothing")
        log.info("about k", extra={"kernel": "k"})
    finally:
        logger.removeHandler(handler)
    assert [r.kernel for r in records] == [NO_KERNEL, "k"]


#: Modules that may still log to "ringgen" itself: none (every module logs to its own name).
ROOT_LOGGER_LEFT: set = set()


def test_every_logger_of_the_library_is_a_child_of_ringgen():
    for path in sorted((ROOT / "ringgen").rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        text = path.read_text(encoding="utf-8")
        for call in ("getLogger(", "kernel_logger("):
            for line in text.splitlines():
                if call not in line or line.lstrip().startswith(("def ", "#", "``")):
                    continue
                arg = line.split(call, 1)[1].split(")", 1)[0]
                if arg in ("__name__", "name") or arg.startswith("``"):
                    continue
                left = rel in ROOT_LOGGER_LEFT
                assert arg == '"ringgen"' and left, f"{rel}: {line.strip()}"


def test_the_library_does_not_print():
    """Only the command line prints (and ``ringgen top``, through rich's console)."""
    allowed = {ROOT / "ringgen" / "cli.py"}
    for path in sorted((ROOT / "ringgen").rglob("*.py")):
        if path in allowed:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        calls = [
            n.lineno
            for n in ast.walk(tree)
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "print"
        ]
        assert not calls, f"{path.relative_to(ROOT)}: print() on line(s) {calls}"
