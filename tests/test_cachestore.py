"""ringgen.cachestore: one cache root, folders only their owner can write, entries checked before use.

CI runs as root, so ``os.chown`` can hand folders to another uid (65534, ``nobody``) and the owner
checks are exercised for real; as another user those tests are skipped.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import threading
from pathlib import Path

import pytest

import ringgen as rg
from ringgen import cachestore
from ringgen.build import collect, import_target
from ringgen.errors import CacheError
from ringgen import jit
from ringgen.runtime import cache

REPO = Path(__file__).resolve().parent.parent
import_target(str(REPO / "examples" / "__init__.py"))
from examples import vector_add as va_module  # noqa: E402
from examples.vector_add import AddRequest, AddResponse, vector_add  # noqa: E402

OTHER_UID = 65534
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="os.chown to another uid needs root")


@pytest.fixture()
def root(tmp_path, monkeypatch):
    d = tmp_path / "cache"
    monkeypatch.setenv("RINGGEN_CACHE_DIR", str(d))
    return d


def _write(folder: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)


def _builder(files: dict[str, bytes], calls: list):
    def build(folder: Path) -> None:
        calls.append(folder)
        _write(folder, files)

    return build


# ---- the root ----------------------------------------------------------------------------------


def test_one_root_for_every_cache(monkeypatch, tmp_path):
    from ringgen.runtime.cuda import build as cuda_build
    from ringgen.runtime.opencl import build as opencl_build

    monkeypatch.setenv("RINGGEN_CACHE_DIR", str(tmp_path / "explicit"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cachestore.cache_root() == tmp_path / "explicit"
    monkeypatch.delenv("RINGGEN_CACHE_DIR")
    assert cachestore.cache_root() == tmp_path / "xdg" / "ringgen"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/path")  # the XDG spec: relative is ignored
    assert cachestore.cache_root() == Path.home() / ".cache" / "ringgen"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cachestore.cache_root() == Path.home() / ".cache" / "ringgen"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    root = tmp_path / "xdg" / "ringgen"
    assert cache.cache_dir() == root
    assert opencl_build.cache_dir() == root / "opencl"
    assert cuda_build.cache_dir() == root / "cuda"


def test_root_and_subfolders_are_created_0700(root):
    sub = cachestore.cache_subdir("native")
    assert sub == root / "native"
    for d in (root, sub):
        st = d.stat()
        assert stat.S_IMODE(st.st_mode) == 0o700 and st.st_uid == os.geteuid()


def test_a_root_others_can_write_is_refused(root):
    root.mkdir(mode=0o700)
    root.chmod(0o777)
    with pytest.raises(CacheError) as err:
        cachestore.cache_subdir()
    assert err.value.message == (
        f"refusing to use the ringgen cache folder {root}: group and others can write it "
        "(mode 0777), so whoever can write it could plant code that ringgen would run"
    )
    assert (
        err.value.hint
        == f"chmod 700 {root}, or set RINGGEN_CACHE_DIR to a folder only you can write"
    )
    root.chmod(0o770)
    with pytest.raises(CacheError, match=r"group can write it \(mode 0770\)"):
        cachestore.cache_subdir()
    root.chmod(0o755)  # readable by others is fine: nobody else can plant anything
    assert cachestore.cache_subdir() == root


@as_root
def test_a_root_owned_by_another_user_is_refused(root):
    root.mkdir(mode=0o700)
    os.chown(root, OTHER_UID, OTHER_UID)
    with pytest.raises(CacheError) as err:
        cachestore.cache_subdir()
    assert err.value.message == (
        f"refusing to use the ringgen cache folder {root}: it belongs to uid {OTHER_UID}, not to "
        f"you (uid {os.geteuid()}), so whoever can write it could plant code that ringgen would run"
    )
    assert err.value.hint == (
        f"remove it (as its owner or root: rm -rf {root}), or set RINGGEN_CACHE_DIR to a folder "
        "only you can write"
    )


@as_root
def test_a_subfolder_owned_by_another_user_is_refused(root):
    (root / "opencl").mkdir(parents=True, mode=0o700)
    os.chown(root / "opencl", OTHER_UID, OTHER_UID)
    with pytest.raises(CacheError, match=rf"{root / 'opencl'}: it belongs to uid {OTHER_UID}"):
        cachestore.cache_subdir("opencl")


def test_a_root_that_is_a_file_is_refused(root):
    root.write_text("not a folder")
    with pytest.raises(CacheError, match="is not a folder"):
        cachestore.cache_subdir()


@as_root
def test_rg_launch_refuses_an_untrusted_root(root):
    root.mkdir(mode=0o700)
    os.chown(root, OTHER_UID, OTHER_UID)
    with pytest.raises(CacheError, match="refusing to use the ringgen cache folder"):
        rg.launch(vector_add, backend="cpu")
    assert not list(root.iterdir())  # nothing was written into it


def test_native_code_falls_back_with_the_reason_when_the_root_is_untrusted(root, caplog):
    from ringgen.wire import native

    root.mkdir(mode=0o777)
    root.chmod(0o777)
    with caplog.at_level(logging.WARNING, logger="ringgen"):
        assert native.load() is None
    assert f"refusing to use the ringgen cache folder {root}" in caplog.text
    assert f"chmod 700 {root}" in caplog.text
    assert not list(root.iterdir())


# ---- entries -----------------------------------------------------------------------------------


def test_entries_list_every_file_with_its_hash(tmp_path):
    calls: list = []
    files = {"a.txt": b"alpha", "sub/b.bin": b"\x00\x01"}
    entry = cachestore.get_or_build(tmp_path, "thing-1", "k" * 64, _builder(files, calls), what="x")
    assert entry.path == tmp_path / "thing-1" and dict(entry.files) == files
    listing = json.loads((entry.path / "entry.json").read_text())
    assert listing == {
        "format": 1,
        "key": "k" * 64,
        "files": {
            "a.txt": "8ed3f6ad685b959ead7022518e1af76cd816f8e8ec7ccdda1ed4018e8f2223f8",
            "sub/b.bin": "b413f47d13ee2fe6c845b2ee141af81de858df4ec549a58b7970bb96645bc8d2",
        },
    }
    for p in [entry.path, entry.path / "sub"]:
        assert stat.S_IMODE(p.stat().st_mode) == 0o700
    assert stat.S_IMODE((entry.path / "a.txt").stat().st_mode) == 0o600
    again = cachestore.get_or_build(tmp_path, "thing-1", "k" * 64, _builder(files, calls), what="x")
    assert again == entry and len(calls) == 1  # checked and reused, not rebuilt
    assert sorted(p.name for p in tmp_path.iterdir()) == ["thing-1"]  # no temporary left


@pytest.mark.parametrize(
    "damage, reason",
    [
        (lambda e: (e / "a.txt").write_bytes(b"alphA"), "a.txt does not match its SHA-256"),
        (lambda e: (e / "a.txt").unlink(), "a.txt is missing"),
        (lambda e: (e / "planted.py").write_bytes(b"import os"), "planted.py is not listed"),
        (lambda e: (e / "entry.json").unlink(), "is incomplete (entry.json is missing)"),
        (lambda e: (e / "entry.json").write_bytes(b"{"), "is damaged: "),
        (lambda e: (e / "a.txt").chmod(0o666), "a.txt: group and others can write it (mode 0666)"),
        (lambda e: e.chmod(0o777), "group and others can write it (mode 0777)"),
    ],
    ids=["changed", "missing", "unlisted", "no-list", "bad-list", "file-writable", "dir-writable"],
)
def test_an_unusable_entry_is_rebuilt_under_a_fresh_name(tmp_path, caplog, damage, reason):
    calls: list = []
    build = _builder({"a.txt": b"alpha"}, calls)
    first = cachestore.get_or_build(tmp_path, "t", "k" * 64, build, what="the entry t")
    damage(first.path)
    with caplog.at_level(logging.WARNING, logger="ringgen"):
        second = cachestore.get_or_build(tmp_path, "t", "k" * 64, build, what="the entry t")
    assert second.path == tmp_path / "t.1" and dict(second.files) == {"a.txt": b"alpha"}
    assert len(calls) == 2
    assert f"ringgen cache: did not use the entry t: {first.path}" in caplog.text
    assert reason in caplog.text and f"rebuilt it as {second.path}" in caplog.text
    # the next lookup passes over the damaged entry to the fresh one, quietly
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="ringgen"):
        assert cachestore.get_or_build(tmp_path, "t", "k" * 64, build, what="t") == second
    assert len(calls) == 2 and not caplog.text


def test_an_entry_with_a_link_is_not_used(tmp_path):
    entry = cachestore.get_or_build(tmp_path, "t", "k" * 64, _builder({"a": b"1"}, []), what="t")
    (entry.path / "a").unlink()
    (entry.path / "a").symlink_to(tmp_path / "elsewhere")
    found, problem = cachestore.open_entry(entry.path, "k" * 64)
    assert found is None and problem == f"{entry.path} is damaged: a is a symbolic link"


def test_an_entry_for_another_key_is_not_used(tmp_path):
    entry = cachestore.get_or_build(tmp_path, "t", "k" * 64, _builder({"a": b"1"}, []), what="t")
    found, problem = cachestore.open_entry(entry.path, "j" * 64)
    assert (
        found is None
        and problem == f"{entry.path} is damaged: entry.json was written for another key"
    )


@as_root
def test_an_entry_owned_by_another_user_is_not_used(tmp_path, caplog):
    entry = cachestore.get_or_build(tmp_path, "t", "k" * 64, _builder({"a": b"1"}, []), what="t")
    os.chown(entry.path, OTHER_UID, OTHER_UID)
    with caplog.at_level(logging.WARNING, logger="ringgen"):
        fresh = cachestore.get_or_build(
            tmp_path, "t", "k" * 64, _builder({"a": b"1"}, []), what="t"
        )
    assert fresh.path == tmp_path / "t.1"
    assert (
        f"{entry.path}: it belongs to uid {OTHER_UID}, not to you (uid 0) (remove it: rm -rf "
        f"{entry.path})" in caplog.text
    )
    os.chown(entry.path, 0, 0)
    os.chown(entry.path / "a", OTHER_UID, OTHER_UID)  # one file of it
    found, problem = cachestore.open_entry(entry.path, "k" * 64)
    assert found is None and problem == (
        f"{entry.path} is damaged: a: it belongs to uid {OTHER_UID}, not to you (uid 0)"
    )


def test_a_stem_with_no_name_left_is_a_clear_error(tmp_path):
    for name in ["t"] + [f"t.{i}" for i in range(1, 16)]:
        (tmp_path / name).mkdir()
        (tmp_path / name / "junk").write_text("x")
    with pytest.raises(
        CacheError, match=r"all 16 names .*/t\[\.N\] hold entries that cannot be used"
    ):
        cachestore.get_or_build(tmp_path, "t", "k" * 64, _builder({"a": b"1"}, []), what="t")
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_a_failing_build_leaves_nothing(tmp_path):
    def build(folder: Path) -> None:
        (folder / "half").write_text("half")
        raise RuntimeError("compiler crashed")

    with pytest.raises(RuntimeError, match="compiler crashed"):
        cachestore.get_or_build(tmp_path, "t", "k" * 64, build, what="t")
    assert not list(tmp_path.iterdir())


@pytest.mark.timeout(60)
def test_concurrent_builders_share_one_entry(tmp_path):
    """16 threads race to build one entry, then 16 more race to replace a damaged one: every one
    gets a whole, checked entry, and only the two names are used."""
    results: list = []
    files = {"lib.so": os.urandom(4096), "x/y.py": b"Y = 1\n"}

    def race():
        barrier = threading.Barrier(16)

        def one():
            barrier.wait()
            results.append(
                cachestore.get_or_build(tmp_path, "t", "k" * 64, _builder(files, []), what="t")
            )

        threads = [threading.Thread(target=one) for _ in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    race()
    assert {r.path for r in results} == {tmp_path / "t"}
    assert all(dict(r.files) == files for r in results)
    (tmp_path / "t" / "lib.so").write_bytes(b"\0" * 10)
    results.clear()
    race()
    assert len(results) == 16 and {r.path for r in results} == {tmp_path / "t.1"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t", "t.1"]


# ---- rg.launch's package entries -------------------------------------------------------------


@pytest.mark.timeout(60)
def test_a_damaged_package_entry_is_rebuilt_and_launches(root, caplog):
    unit = collect(va_module)
    pkg = jit.ensure_built(unit)
    (pkg / "serializers.py").write_text("raise SystemExit('planted')\n")
    jit._BUILT.clear()
    with caplog.at_level(logging.WARNING, logger="ringgen"):
        with rg.launch(vector_add, backend="cpu") as k:
            k.send(AddRequest(id=1, a=5.0, b=2.0))
            assert k.receive(timeout=5) == AddResponse(id=1, sum=7.0)
            assert Path(k.package_dir).parent.name == pkg.parent.name + ".1"
    assert f"{pkg.parent} is damaged: vector_add/serializers.py does not match" in caplog.text


@as_root
@pytest.mark.timeout(60)
def test_a_planted_package_is_never_imported(root, tmp_path, caplog):
    """The attack of issue 11: the entry renamed away, a package planted in its place by another
    user, complete with a file list that matches it. It is refused for its owner, never run."""
    unit = collect(va_module)
    pkg = jit.ensure_built(unit)
    entry = pkg.parent
    entry.rename(tmp_path / "away")
    marker = tmp_path / "planted-code-ran"
    (entry / "vector_add").mkdir(parents=True)
    evil = f"open({str(marker)!r}, 'w').close()\n".encode()
    (entry / "vector_add" / "__init__.py").write_bytes(evil)
    import hashlib

    listing = {
        "format": 1,
        "key": jit.cache_key(unit.fingerprint, jit.build_targets()),
        "files": {"vector_add/__init__.py": hashlib.sha256(evil).hexdigest()},
    }
    (entry / "entry.json").write_text(json.dumps(listing))
    for p in (
        entry,
        entry / "vector_add",
        entry / "vector_add" / "__init__.py",
        entry / "entry.json",
    ):
        os.chown(p, OTHER_UID, OTHER_UID)
    jit._BUILT.clear()
    with caplog.at_level(logging.WARNING, logger="ringgen"):
        with rg.launch(vector_add, backend="cpu") as k:
            k.send(AddRequest(id=2, a=1.0, b=2.0))
            assert k.receive(timeout=5).sum == 3.0
    assert not marker.exists()
    assert f"{entry}: it belongs to uid {OTHER_UID}" in caplog.text


def test_cache_entries_are_imported_from_the_checked_bytes(root):
    """No ``__pycache__`` is written into, or read from, an entry, and only listed modules import."""
    import importlib

    spec = vector_add.spec
    jit._BUILT.clear()
    pkg, codecs = jit.built_package(spec)
    assert codecs["AddRequest"].cls is AddRequest
    assert not (pkg / "__pycache__").exists()
    package = cache.import_package(pkg)  # already imported: the same module
    assert package.__file__ == str(pkg.resolve() / "__init__.py") and package.__path__ == []
    with pytest.raises(ImportError):
        importlib.import_module(f"{package.__name__}.not_listed")


@pytest.mark.timeout(60)
def test_an_entry_without_its_init_is_rebuilt(root, caplog):
    """Issue 11: an entry without ``__init__.py`` failed with a raw ``OSError: Directory not empty``
    until deleted by hand."""
    pkg = jit.ensure_built(collect(va_module))
    (pkg / "__init__.py").unlink()
    jit._BUILT.clear()
    with caplog.at_level(logging.WARNING, logger="ringgen"):
        with rg.launch(vector_add, backend="cpu") as k:
            k.send(AddRequest(id=3, a=0.5, b=0.25))
            assert k.receive(timeout=5).sum == 0.75
    assert f"{pkg.parent} is damaged: vector_add/__init__.py is missing" in caplog.text
