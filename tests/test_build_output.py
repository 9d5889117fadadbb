"""``ringgen build`` deletes only its own files, refuses folders it did not build, never shadows the
module it builds, and writes nothing when one module of several fails (issues 11 and 12)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import ROOT

from ringgen.cli import main

VECTOR_ADD = str(ROOT / "examples" / "vector_add.py")

PING = textwrap.dedent("""\
    import ringgen as rg
    from ringgen.types import i64


    @rg.message
    class Ping:
        n: i64


    @rg.ring_kernel
    def bump(p: Ping) -> Ping:
        return Ping(n=p.n + 1)
    """)


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def run_process(*argv, cwd):
    env = dict(os.environ, RINGGEN_DEBUG="")
    return subprocess.run(
        [sys.executable, "-m", "ringgen.cli", *argv],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def snapshot(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts
    }


USER_FILES = {"docs/design.md": b"# design notes\n", "Makefile": b"all:\n\techo hi\n"}


def test_a_second_build_keeps_the_users_files(capsys, tmp_path):
    assert run(capsys, "build", VECTOR_ADD, "-o", str(tmp_path))[0] == 0
    pkg = tmp_path / "vector_add"
    for name, data in USER_FILES.items():
        (pkg / name).parent.mkdir(parents=True, exist_ok=True)
        (pkg / name).write_bytes(data)
    before = snapshot(pkg)
    assert run(capsys, "build", VECTOR_ADD, "-o", str(tmp_path))[0] == 0
    assert snapshot(pkg) == before


def test_a_rebuild_removes_only_listed_unchanged_files(capsys, tmp_path, caplog):
    assert run(capsys, "build", VECTOR_ADD, "-o", str(tmp_path))[0] == 0
    pkg = tmp_path / "vector_add"
    manifest = json.loads((pkg / "manifest.json").read_text())
    for name, text in [("gone.cl", "// old\n"), ("edited.cl", "// old\n")]:
        (pkg / name).write_text(text)
        digest = hashlib.sha256(text.encode()).hexdigest()
        manifest["files"].append({"path": name, "target": "old", "sha256": digest})
    manifest["files"].append({"path": "../outside.txt", "target": "old", "sha256": "0" * 64})
    (tmp_path / "outside.txt").write_text("not in the package\n")
    (pkg / "manifest.json").write_text(json.dumps(manifest))
    (pkg / "edited.cl").write_text("// the user's edit\n")
    assert run(capsys, "build", VECTOR_ADD, "-o", str(tmp_path))[0] == 0
    assert not (pkg / "gone.cl").exists()  # listed, unchanged, no longer emitted
    assert (pkg / "edited.cl").read_text() == "// the user's edit\n"  # changed since: kept
    assert (tmp_path / "outside.txt").exists()  # a path out of the package is never touched
    listed = {f["path"] for f in json.loads((pkg / "manifest.json").read_text())["files"]}
    assert "gone.cl" not in listed and "edited.cl" not in listed


WEB_APP = {
    "manifest.json": b'{"name": "my web app", "start_url": "/", "icons": []}\n',
    "src/main.js": b"console.log('hello');\n",
    "assets/logo.png": b"\x89PNG\r\n\x1a\n" + bytes(range(64)),
}


def _web_app(pkg: Path) -> None:
    for name, data in WEB_APP.items():
        (pkg / name).parent.mkdir(parents=True, exist_ok=True)
        (pkg / name).write_bytes(data)


def test_a_folder_ringgen_did_not_build_is_refused(capsys, tmp_path):
    pkg = tmp_path / "vector_add"
    _web_app(pkg)
    code, out, err = run(capsys, "build", VECTOR_ADD, "-o", str(tmp_path))
    assert code == 2 and out == ""
    assert err == (
        f"ringgen build: error: refusing to build examples.vector_add into {pkg}: the folder is "
        "not empty (assets, manifest.json, src) and holds a manifest.json that ringgen did not "
        "write, so it is not a package ringgen built; ringgen build writes only into an empty "
        "folder or one it built before, so that it never overwrites or deletes files it did not "
        "write\n"
        "    hint: choose another -o folder or --name, or pass --force to build into it anyway "
        "(nothing there is deleted; files with ringgen's names are overwritten)\n"
    )
    assert snapshot(pkg) == WEB_APP
    (pkg / "manifest.json").unlink()
    code, _, err = run(capsys, "build", VECTOR_ADD, "-o", str(tmp_path))
    assert code == 2 and "the folder is not empty (assets, src) and holds no manifest.json" in err
    assert snapshot(pkg) == {k: v for k, v in WEB_APP.items() if k != "manifest.json"}


def test_force_builds_into_it_and_deletes_nothing(capsys, tmp_path):
    pkg = tmp_path / "vector_add"
    _web_app(pkg)
    code, out, err = run(capsys, "build", VECTOR_ADD, "-o", str(tmp_path), "--force")
    assert code == 0 and "built examples.vector_add" in out
    after = snapshot(pkg)
    assert after["src/main.js"] == WEB_APP["src/main.js"]
    assert after["assets/logo.png"] == WEB_APP["assets/logo.png"]
    assert json.loads(after["manifest.json"])["module"] == "examples.vector_add"  # overwritten
    # from now on the folder is ringgen's: a rebuild keeps the user's files without --force
    assert run(capsys, "build", VECTOR_ADD, "-o", str(tmp_path))[0] == 0
    assert snapshot(pkg) == after


def test_a_file_ringgen_did_not_write_is_not_overwritten(capsys, tmp_path):
    assert run(capsys, "build", VECTOR_ADD, "-o", str(tmp_path))[0] == 0
    pkg = tmp_path / "vector_add"
    manifest = json.loads((pkg / "manifest.json").read_text())
    manifest["files"] = [f for f in manifest["files"] if f["path"] != "runtime.py"]
    (pkg / "manifest.json").write_text(json.dumps(manifest))  # as if runtime.py were new now
    (pkg / "runtime.py").write_text("# the user's own runtime.py\n")
    code, _, err = run(capsys, "build", VECTOR_ADD, "-o", str(tmp_path))
    assert code == 2
    assert f"it would overwrite runtime.py, which the previous build did not write" in err
    assert (pkg / "runtime.py").read_text() == "# the user's own runtime.py\n"
    assert run(capsys, "build", VECTOR_ADD, "-o", str(tmp_path), "--force")[0] == 0
    assert "launch" in (pkg / "runtime.py").read_text()


def test_a_failing_module_leaves_the_disk_untouched(capsys, tmp_path):
    bad = tmp_path / "src" / "broken_mod.py"
    bad.parent.mkdir()
    bad.write_text("import ringgen as rg\ndef broken(:\n")
    out = tmp_path / "out"
    code, stdout, err = run(capsys, "build", VECTOR_ADD, str(bad), "-o", str(out))
    assert code == 2 and stdout == "" and "syntax error" in err
    assert not out.exists()
    # the second module's folder is refused: the first is not written either
    (out / "threshold_filter" / "notes.txt").parent.mkdir(parents=True)
    (out / "threshold_filter" / "notes.txt").write_text("mine\n")
    tf = str(ROOT / "examples" / "threshold_filter.py")
    code, stdout, err = run(capsys, "build", VECTOR_ADD, tf, "-o", str(out))
    assert code == 2 and stdout == "" and "refusing to build examples.threshold_filter" in err
    assert sorted(p.name for p in out.iterdir()) == ["threshold_filter"]
    assert snapshot(out) == {"threshold_filter/notes.txt": b"mine\n"}


def test_two_modules_with_one_package_name_are_refused(capsys, tmp_path):
    other = tmp_path / "elsewhere" / "vector_add.py"
    other.parent.mkdir()
    other.write_text(PING)
    code, _, err = run(capsys, "build", VECTOR_ADD, str(other), "-o", str(tmp_path / "out"))
    assert code == 2 and "would both be written to" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.timeout(120)
def test_building_next_to_the_sources_twice_works(tmp_path):
    """The package beside its own module: refused with the fix (``import kern`` would find the
    package, and the next build would import itself), every time; under another name, twice."""
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "kern.py").write_text(PING)
    for _ in range(2):
        res = run_process("build", "kern.py", "-o", ".", cwd=proj)
        assert res.returncode == 2, res.stderr
        assert res.stderr.startswith(
            f"ringgen build: error: cannot build kern into kern: {Path('kern.py')} (the module it "
            "is built from) is beside it, and `import kern` would then find the generated package "
            "instead of that module"
        ), res.stderr
        assert (
            "hint: build into another folder (-o generated) or under another name (--name kern_gen)"
            in res.stderr
        )
        assert sorted(p.name for p in proj.iterdir()) == ["kern.py"]
    for _ in range(2):
        res = run_process("build", "kern.py", "-o", ".", "--name", "kern_gen", cwd=proj)
        assert res.returncode == 0, res.stderr
    check = "from kern_gen import runtime\nprint(runtime.bump)\n"
    res = subprocess.run([sys.executable, "-c", check], cwd=proj, capture_output=True, text=True)
    assert res.returncode == 0 and "KernelLauncher bump from kern" in res.stdout, res.stderr


@pytest.mark.timeout(120)
def test_building_into_the_package_of_the_sources_twice_works(tmp_path):
    app = tmp_path / "app"
    app.mkdir()
    (app / "__init__.py").write_text("")
    (app / "kern.py").write_text(PING)
    res = run_process("build", "app/kern.py", "-o", "app", cwd=tmp_path)
    assert (
        res.returncode == 2
        and "app/kern.py (the module it is built from) is beside it" in res.stderr
    )
    for _ in range(2):
        res = run_process("build", "app/kern.py", "-o", "app", "--name", "gen", cwd=tmp_path)
        assert res.returncode == 0, res.stderr
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "__init__.py").write_text(PING)
    res = run_process("build", "lib/__init__.py", "-o", ".", "--force", cwd=tmp_path)
    assert res.returncode == 2  # not even --force writes over the package's own __init__.py
    assert "cannot build lib into lib: that is the folder of the package it is built" in res.stderr
    assert (lib / "__init__.py").read_text() == PING
