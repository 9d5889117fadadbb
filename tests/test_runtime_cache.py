"""rg.launch's build cache, importing generated packages, and the generated runtime.py."""

from __future__ import annotations

import importlib
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import ringgen as rg
from ringgen.build import collect, import_target
from ringgen.codegen.runtime_module import emit as emit_runtime
from ringgen.codegen.writer import format_python, write_unit
from ringgen.errors import BuildError
from ringgen import jit
from ringgen.runtime import cache
from ringgen.runtime.launcher import import_user_module

import runtime_kernels as rk

# The examples are imported as the package ``examples`` from the repository root, as a user would.
import_target(str(Path(__file__).resolve().parent.parent / "examples" / "__init__.py"))
from examples import threshold_filter as tf_module  # noqa: E402
from examples import vector_add as va_module  # noqa: E402
from examples.vector_add import AddRequest, AddResponse, vector_add  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module", autouse=True)
def _module_cache(tmp_path_factory):
    # No test may write into the user's ~/.cache; tests that inspect the cache use ``cache_dir``.
    mp = pytest.MonkeyPatch()
    mp.setenv("RINGGEN_CACHE_DIR", str(tmp_path_factory.mktemp("ringgen-cache")))
    yield
    mp.undo()


@pytest.fixture()
def cache_dir(tmp_path, monkeypatch):
    d = tmp_path / "cache"
    monkeypatch.setenv("RINGGEN_CACHE_DIR", str(d))
    return d


def test_cache_key_is_a_content_hash():
    k1 = jit.cache_key("abc")
    assert k1 == jit.cache_key("abc") and len(k1) == 64
    assert k1 != jit.cache_key("abd")


def test_entries_hold_the_host_package_plus_the_backends_device_targets(monkeypatch):
    from ringgen.codegen import targets

    monkeypatch.setitem(targets.TARGETS, "cuda", "ringgen.codegen.cuda:emit")
    host = jit.build_targets()
    assert {"serializers", "package", "runtime"} <= set(host)
    assert not set(host) & jit.DEVICE_TARGETS
    with_cuda = jit.build_targets(["cuda"])
    assert set(with_cuda) == set(host) | {"cuda"}
    assert list(with_cuda) == [t for t in targets.TARGETS if t in with_cuda]  # table order
    assert jit.cache_key("f", host) != jit.cache_key("f", with_cuda)


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("RINGGEN_CACHE_DIR", str(tmp_path / "x"))
    assert cache.cache_dir() == tmp_path / "x"
    monkeypatch.delenv("RINGGEN_CACHE_DIR")
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert cache.cache_dir() == Path.home() / ".cache" / "ringgen"


@pytest.mark.timeout(60)
def test_ensure_built_builds_once_and_reuses(cache_dir):
    unit = collect(va_module)
    pkg = jit.ensure_built(unit)
    assert pkg.parent.parent == cache_dir
    key = jit.cache_key(unit.fingerprint, jit.build_targets())
    assert pkg.name == "vector_add" and key[:24] in pkg.parent.name
    assert {"__init__.py", "serializers.py", "runtime.py", "manifest.json"} <= {
        p.name for p in pkg.iterdir()
    }
    mtime = (pkg / "serializers.py").stat().st_mtime_ns
    assert jit.ensure_built(unit) == pkg
    assert (pkg / "serializers.py").stat().st_mtime_ns == mtime
    assert not [p for p in cache_dir.iterdir() if p.name.endswith(".building")]


@pytest.mark.timeout(120)
def test_two_processes_share_the_cache(cache_dir):
    script = textwrap.dedent("""
        from ringgen.build import collect
        from ringgen.jit import ensure_built
        print(ensure_built(collect("examples/threshold_filter.py")))
        """)
    env = {"RINGGEN_CACHE_DIR": str(cache_dir), "PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=100) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    paths = {o[0].strip() for o in outs}
    assert len(paths) == 1  # both use the one entry
    entries = [p for p in cache_dir.iterdir()]
    assert len(entries) == 1 and not entries[0].name.endswith(".building")


@pytest.mark.timeout(60)
def test_import_package_by_path_and_load_codecs(cache_dir):
    pkg = jit.ensure_built(collect(va_module))
    mod = cache.import_package(pkg)
    assert mod is cache.import_package(pkg)  # once per process
    assert mod.__name__.startswith("_ringgen_pkg_vector_add_")
    codecs = cache.load_codecs(pkg)
    assert codecs["AddRequest"].cls is AddRequest
    with pytest.raises(BuildError, match="not a generated package"):
        cache.import_package(cache_dir)


@pytest.mark.timeout(60)
def test_rg_launch_builds_into_the_cache_and_runs(cache_dir):
    with rg.launch(rk.echo, backend="cpu") as k:
        k.send(rk.Seq(seq=5, value=1))
        assert k.receive(timeout=5).value == 2
        assert (Path(k.package_dir) / "runtime.py").is_file()
    with vector_add.launch(backend="cpu") as k:  # RingKernel.launch is rg.launch
        k.send(AddRequest(id=1, a=2.0, b=3.0))
        assert k.receive(timeout=5) == AddResponse(id=1, sum=5.0)
    with pytest.raises(TypeError, match="not a @rg.ring_kernel"):
        rg.launch(lambda x: x)


def test_runtime_emitter_describes_every_kernel():
    text = format_python(emit_runtime(collect(rk))["runtime.py"])  # as the writer formats it
    for k in ("echo", "busy", "divide", "evens", "tally", "in_order"):
        assert f"\n{k} = " in text
    assert "_KernelHandle[Seq, Seq]" in text
    assert "_KernelHandle[Seq, None]" in text  # tally: no output
    assert "Ordered: one message at a time" in text
    assert "State: Tally(count: u64, total: i64)" in text
    assert "from runtime_kernels import Div, Done, Named, Quot, Seq, Summary, Work" in text
    tf = format_python(emit_runtime(collect(tf_module))["runtime.py"])
    assert "emits zero or more Alert messages through an Outbox" in tf
    assert '_SOURCE_FILE = "examples/threshold_filter.py"' in tf


@pytest.mark.timeout(60)
def test_generated_runtime_launches_its_kernel(tmp_path):
    pkg = write_unit(collect(va_module), tmp_path / "generated")
    mod = cache.import_package(pkg)
    runtime = importlib.import_module(f"{mod.__name__}.runtime")
    assert repr(runtime.vector_add) == "<KernelLauncher vector_add from examples.vector_add>"
    with runtime.vector_add.launch(backend="cpu") as k:
        k.send(AddRequest(id=3, a=0.5, b=0.25))
        assert k.receive(timeout=5) == AddResponse(id=3, sum=0.75)
        assert k.package_dir == str(pkg.resolve())


def test_user_module_is_found_from_a_fresh_clone(tmp_path, monkeypatch):
    proj = tmp_path / "clone"
    (proj / "rt_fresh_examples").mkdir(parents=True)
    (proj / "rt_fresh_examples" / "__init__.py").write_text("")
    (proj / "rt_fresh_examples" / "kern.py").write_text("VALUE = 42\n")
    pkg = proj / "generated" / "kern"
    pkg.mkdir(parents=True)
    monkeypatch.setattr(sys, "path", list(sys.path))
    try:
        mod = import_user_module("rt_fresh_examples.kern", "rt_fresh_examples/kern.py", pkg)
        assert mod.VALUE == 42 and mod.__name__ == "rt_fresh_examples.kern"
    finally:
        for name in ("rt_fresh_examples.kern", "rt_fresh_examples"):
            sys.modules.pop(name, None)
    with pytest.raises(BuildError, match="rt_missing_examples/kern.py is in no folder above"):
        import_user_module("rt_missing_examples.kern", "rt_missing_examples/kern.py", pkg)


@pytest.mark.timeout(60)
@pytest.mark.skipif(
    not (REPO / "generated" / "vector_add" / "runtime.py").is_file(),
    reason="generated/ has not been built (make generate)",
)
def test_committed_generated_package_launches_by_its_import_name():
    runtime = importlib.import_module("generated.vector_add.runtime")
    with runtime.vector_add.launch(backend="cpu") as k:
        k.send(AddRequest(id=4, a=2.0, b=2.0))
        assert k.receive(timeout=5) == AddResponse(id=4, sum=4.0)


@pytest.mark.timeout(60)
def test_open_kernel_reads_the_codecs_from_the_package_dir(tmp_path):
    from ringgen.runtime import open_kernel

    pkg = write_unit(collect(va_module), tmp_path / "out")
    with open_kernel(vector_add.spec, str(pkg), "cpu") as k:
        k.send(AddRequest(id=5, a=1.5, b=1.5))
        assert k.receive(timeout=5) == AddResponse(id=5, sum=3.0)
    with pytest.raises(BuildError, match="needs its generated package"):
        open_kernel(vector_add.spec, None, "cpu")


@pytest.mark.timeout(60)
def test_rg_launch_default_backend_follows_the_environment(monkeypatch):
    monkeypatch.setenv("RINGGEN_BACKEND", "cpu")
    with rg.launch(vector_add) as k:
        assert k.backend == "cpu"
        k.send(AddRequest(id=6, a=1.0, b=0.5))
        assert k.receive(timeout=5).sum == 1.5


def test_cache_key_changes_when_the_generator_changes(monkeypatch):
    """An edited template or codegen module must not be served an entry an older generator wrote."""
    from ringgen import jit

    before = jit.cache_key("f" * 64, ("opencl",))
    assert before == jit.cache_key("f" * 64, ("opencl",))
    jit.generator_fingerprint.cache_clear()
    monkeypatch.setattr(jit, "generator_fingerprint", lambda: "0" * 64)
    assert jit.cache_key("f" * 64, ("opencl",)) != before
