"""The ringgen command line: help that reads like a manual, tables, and exit status 2 on bad input."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from conftest import ROOT, have_opencl, requires_gcc

from ringgen import __version__
from ringgen.cli import format_table, main

VECTOR_ADD = str(ROOT / "examples" / "vector_add.py")

BAD_MODULE = """\
import ringgen as rg
from ringgen.types import i32


@rg.message
class Bad:
    int: i32
"""


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def run_process(*argv, cwd=ROOT):
    env = dict(os.environ, RINGGEN_DEBUG="")
    return subprocess.run(
        [sys.executable, "-m", "ringgen.cli", *argv],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_version(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"ringgen {__version__}"


def test_main_help_lists_every_command_with_an_example(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for command in ("build", "inspect", "check", "devices"):
        assert f"ringgen {command}" in out
    assert "RINGGEN_DEBUG" in out and "exit status" in out


@pytest.mark.parametrize("command", ["build", "inspect", "check", "devices"])
def test_every_subcommand_help_has_examples(capsys, command):
    with pytest.raises(SystemExit) as info:
        main([command, "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "examples:" in out
    assert out.count(f"ringgen {command}") >= 2


def test_no_command_prints_help_and_exits_2(capsys):
    code, out, _ = run(capsys)
    assert code == 2 and "commands:" in out


def test_build_then_inspect(capsys, tmp_path):
    code, out, err = run(capsys, "build", VECTOR_ADD, "-o", str(tmp_path))
    assert code == 0, err
    assert out.startswith(f"built examples.vector_add -> {tmp_path / 'vector_add'}/")
    code, out, _ = run(capsys, "inspect", str(tmp_path / "vector_add"))
    assert code == 0
    assert "message AddRequest: direct, 16 bytes, aligned to 8, queue slot 16 bytes" in out
    assert "  field  type  offset  size  align" in out
    assert "  sum    f32        8     4      4" in out
    assert "total: 2 fields, 12 bytes of data + 4 padding = 16 bytes" in out
    assert "vector_add  input   AddRequest       1024         16" in out
    assert "kernels" in out and "files" in out


def test_inspect_one_message_source_and_json(capsys, tmp_path):
    assert run(capsys, "build", VECTOR_ADD, "-o", str(tmp_path))[0] == 0
    pkg = str(tmp_path / "vector_add")
    code, out, _ = run(capsys, "inspect", pkg, "--message", "AddResponse")
    assert code == 0 and "AddResponse" in out and "AddRequest" not in out
    code, out, _ = run(capsys, "inspect", pkg, "--source", "header")
    assert code == 0 and "typedef struct AddRequest {" in out
    code, out, _ = run(capsys, "inspect", pkg, "--json")
    assert code == 0 and json.loads(out)["name"] == "vector_add"


def test_build_is_idempotent_and_removes_stale_files(capsys, tmp_path):
    assert run(capsys, "build", VECTOR_ADD, "-o", str(tmp_path))[0] == 0
    pkg = tmp_path / "vector_add"
    stale = pkg / "old_target.cu"
    stale.write_text("// from an older build\n")
    # an older build emitted it: its manifest lists it, with its hash (a file it does not list is
    # the user's, and is kept: tests/test_build_output.py)
    manifest = json.loads((pkg / "manifest.json").read_text())
    digest = hashlib.sha256(stale.read_bytes()).hexdigest()
    manifest["files"].append({"path": stale.name, "target": "old", "sha256": digest})
    (pkg / "manifest.json").write_text(json.dumps(manifest))
    before = {p.name: p.stat().st_mtime_ns for p in pkg.iterdir() if p.is_file() and p != stale}
    del before["manifest.json"]  # rewritten: this build's manifest differs from the edited one
    assert run(capsys, "build", VECTOR_ADD, "-o", str(tmp_path))[0] == 0
    assert not stale.exists()
    after = {p.name: p.stat().st_mtime_ns for p in pkg.iterdir() if p.is_file()}
    assert after.pop("manifest.json") and after == before  # nothing else rewritten


@pytest.mark.parametrize(
    "argv, message",
    [
        (["build", "no/such/file.py"], "ringgen build: error: no/such/file.py: no such file"),
        (
            ["build", "no_such_module_anywhere"],
            "ringgen build: error: no module named 'no_such_module_anywhere'",
        ),
        (["inspect", "."], "ringgen inspect: .: not a ringgen package (no manifest.json)"),
        (["inspect", "no/such/dir"], "ringgen inspect: no/such/dir: no such folder"),
        (["check", "no/such/dir"], "ringgen check: no/such/dir: no such folder"),
        (
            ["build", VECTOR_ADD, VECTOR_ADD, "--name", "x"],
            "ringgen build: --name needs a single module (got 2)",
        ),
    ],
)
def test_bad_input_exits_2_with_one_message(capsys, argv, message):
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert err.splitlines()[0].startswith(message)
    assert "Traceback" not in err


def test_bad_declaration_exits_2_naming_class_and_field(module_file, tmp_path):
    path = module_file(BAD_MODULE, name="bad_decl")
    proc = run_process("build", str(path), "-o", str(tmp_path / "out"))
    assert proc.returncode == 2
    assert f"{path}:7:5: error: Bad.int: 'int' is a reserved word in C" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""


def test_unknown_option_exits_2():
    proc = run_process("build", "--frobnicate")
    assert proc.returncode == 2
    assert "unrecognized arguments: --frobnicate" in proc.stderr or "required" in proc.stderr
    assert "Traceback" not in proc.stderr


@requires_gcc
def test_check_reports_each_file_and_toolchain(capsys, tmp_path, monkeypatch):
    assert run(capsys, "build", VECTOR_ADD, "-o", str(tmp_path))[0] == 0
    pkg = tmp_path / "vector_add"
    monkeypatch.chdir(tmp_path)  # a relative package path must work too
    code, out, _ = run(capsys, "check", "vector_add")
    assert code == 0, out
    assert "vector_add_types.h  gcc -std=c99" in out
    assert "manifest.json       json schema" in out
    assert " 0 failed" in out
    header = pkg / "vector_add_types.h"
    header.write_text(
        header.read_text().replace("sizeof(AddRequest) == 16", "sizeof(AddRequest) == 24")
    )
    code, out, _ = run(capsys, "check", "vector_add")
    assert code == 1
    assert "failed" in out and "rg_check_AddRequest_size" in out


def test_devices_lists_the_cpu_reference(capsys):
    code, out, _ = run(capsys, "devices")
    assert code == 0
    assert "cpu      yes" in out
    assert "reference backend" in out
    code, out, _ = run(capsys, "devices", "--json")
    reports = json.loads(out)
    assert [r["backend"] for r in reports] == ["cuda", "opencl", "c", "cpu"]


def test_devices_reports_opencl_mode(capsys):
    from conftest import have_opencl

    if not have_opencl():
        pytest.skip("no OpenCL platform")
    code, out, _ = run(capsys, "devices", "--json")
    (opencl,) = [r for r in json.loads(out) if r["backend"] == "opencl"]
    assert opencl["available"]
    assert all(d["mode"] in ("persistent", "relaunch") for d in opencl["devices"])


def test_format_table_aligns_columns():
    text = format_table(["name", "n"], [["a", 1], ["long", 100]])
    assert text.splitlines() == ["  name    n", "  ----  ---", "  a       1", "  long  100"]


def test_console_script_is_installed():
    script = os.path.join(os.path.dirname(sys.executable), "ringgen")
    if not os.path.exists(script):
        pytest.skip("ringgen is not installed in this environment (run make setup)")
    proc = subprocess.run([script, "--version"], capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip() == f"ringgen {__version__}"


def test_every_subpackage_is_packaged():
    """pyproject lists packages explicitly (templates/ is remapped), so a new one must be added."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    found = {
        ".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "ringgen").rglob("__init__.py")
    }
    missing = sorted(found - listed)
    assert not missing, f"add {missing} to [tool.setuptools] packages in pyproject.toml"
    assert config["package-dir"]["ringgen.templates"] == "templates"
    assert (ROOT / "templates" / "header" / "types.h.j2").is_file()


@requires_gcc
def test_check_compiles_c_sources_and_reports_errors_at_the_real_file(tmp_path):
    from ringgen.check import check_file

    good = tmp_path / "good.c"
    good.write_text(
        "#include <time.h>\nlong now(void) { struct timespec t; "
        "clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec; }\n"
    )
    assert [r.status for r in check_file(good)] == ["ok"]
    bad = tmp_path / "bad.c"
    bad.write_text("int f(void) { return missing; }\n")
    (res,) = check_file(bad)
    assert res.status == "failed" and f"{bad}:1:" in res.detail and "missing" in res.detail


def test_check_skips_unknown_files_with_a_reason(tmp_path):
    from ringgen.check import check_file

    other = tmp_path / "notes.txt"
    other.write_text("hello\n")
    (res,) = check_file(other)
    assert (res.status, res.detail) == ("skipped", "no checker for this kind of file")


# ---- the command line finds what the user names (issue 12) ------------------------------------

RINGGEN = str(Path(sys.executable).with_name("ringgen"))  # the venv's console script


def run_script(*argv, cwd=ROOT):
    """The installed ``ringgen`` console script (not ``python -m``, which puts the cwd on the path)."""
    env = dict(os.environ, RINGGEN_DEBUG="")
    return subprocess.run(
        [RINGGEN, *argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


def test_dotted_module_name_builds_from_the_project_root(tmp_path):
    proc = run_script("build", "examples.vector_add", "-o", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"built examples.vector_add -> {tmp_path}/vector_add/")
    assert (tmp_path / "vector_add" / "manifest.json").is_file()


SCRIPT = """\
import sys
print("a script, not kernels", file=sys.stderr)
"""

KERNELS = """\
import ringgen as rg
from ringgen.types import i64


@rg.message
class {name}Msg:
    id: i64


@rg.ring_kernel
def {name}(m: {name}Msg) -> {name}Msg:
    return {name}Msg(id=m.id + 1)
"""


def test_a_directory_builds_the_modules_in_it(tmp_path):
    src = tmp_path / "kernels_dir"
    (src / "sub").mkdir(parents=True)
    (src / "__init__.py").write_text("raise RuntimeError('__init__.py is not built')\n")
    (src / "alpha.py").write_text(KERNELS.format(name="alpha"))
    (src / "beta.py").write_text(KERNELS.format(name="beta"))
    (src / "run_me.py").write_text(SCRIPT)
    (src / "sub" / "gamma.py").write_text(KERNELS.format(name="gamma"))  # not recursive
    proc = run_script("build", str(src), "-o", str(tmp_path / "out"), cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr  # importing the package runs __init__.py
    (src / "__init__.py").write_text("")
    proc = run_script("build", str(src), "-o", str(tmp_path / "out"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert [line.split(" ->")[0] for line in proc.stdout.splitlines()] == [
        "built kernels_dir.alpha",
        "built kernels_dir.beta",
    ]
    assert f"ringgen build: {src}/run_me.py: skipped, it declares no @rg.message" in proc.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["alpha", "beta"]


def test_a_directory_without_modules_says_it_is_a_directory(tmp_path):
    (tmp_path / "empty").mkdir()
    proc = run_script("build", "empty", "-o", "out", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.startswith(
        "ringgen build: empty: is a directory with no Python module in it to build"
    )
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("command", ["check", "inspect"])
def test_check_and_inspect_on_a_file_say_what_they_expected(command):
    proc = run_script(command, "examples/orders.py")
    assert proc.returncode == 2
    assert proc.stderr.splitlines()[0] == (
        f"ringgen {command}: examples/orders.py: expected a generated package directory (with "
        "manifest.json), got a file; build it first: `ringgen build examples/orders.py -o "
        "generated`, then pass generated/orders"
    )
    proc = run_script(command, "README.md")
    assert proc.stderr.splitlines()[0] == (
        f"ringgen {command}: README.md: expected a generated package directory (with "
        "manifest.json), got a file"
    )


def test_a_kernel_left_out_of_a_target_is_reported_by_build_and_check(
    capsys, tmp_path, monkeypatch
):
    proc = run_script("build", "examples/orders.py", "-o", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.splitlines() == [
        "ringgen build: warning: kernel orders is left out of the metal source: orders.py:47: "
        "kernel orders: local 'subtotal' is f64, and Metal has no double"
    ]
    quiet = run_script("build", "examples/vector_add.py", "-o", str(tmp_path))
    assert quiet.returncode == 0 and quiet.stderr == ""
    import ringgen.check

    monkeypatch.setattr(ringgen.check, "check_file", lambda path: [])  # no compilers: just the list
    code, out, _ = run(capsys, "check", str(tmp_path / "orders"))
    assert code == 0
    assert (
        "orders.metal  kernel orders  skipped: left out of the metal source: orders.py:47: "
        "kernel orders: local 'subtotal' is f64, and Metal has no double"
    ) in out
    assert "0 ok, 0 failed, 1 skipped" in out


CLOCKY = """\
import ringgen as rg
from ringgen.types import i64, u64


@rg.message
class Ping:
    id: i64


@rg.message
class Pong:
    id: i64
    at: u64


@rg.ring_kernel
def clocky(p: Ping) -> Pong:
    return Pong(id=p.id, at=rg.now())
"""


def test_an_opencl_source_the_backend_refuses_is_reported_by_build_and_check(tmp_path):
    """rg.now() has no OpenCL spelling: build warns, check lists it and still compiles the rest."""
    (tmp_path / "clocky.py").write_text(CLOCKY)
    proc = run_script("build", "clocky.py", "-o", "out", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    from ringgen.check import NOW_NOTE, check_file

    assert proc.stderr.splitlines() == [f"ringgen build: warning: clocky.cl: {NOW_NOTE}"]
    results = check_file(tmp_path / "out" / "clocky" / "clocky.cl")
    assert [r.status for r in results][1:] == ["skipped"]
    assert results[1].toolchain == "rg.now()" and results[1].detail == NOW_NOTE
    if have_opencl():
        assert results[0].status == "ok", results[0].detail  # the rest of the file compiles
