"""ringgen.fsutil.write_atomic: whole files or nothing, no temporary file left behind."""

from __future__ import annotations

import os
import stat

import pytest

from ringgen.fsutil import write_atomic


def test_writes_bytes_creating_the_folder(tmp_path):
    path = tmp_path / "a" / "b" / "out.bin"
    write_atomic(path, b"\x00\x01abc")
    assert path.read_bytes() == b"\x00\x01abc"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert os.listdir(path.parent) == ["out.bin"]


def test_replaces_an_existing_file(tmp_path):
    path = tmp_path / "out.txt"
    path.write_bytes(b"old contents, longer than the new")
    write_atomic(str(path), b"new")
    assert path.read_bytes() == b"new"
    assert os.listdir(tmp_path) == ["out.txt"]


def test_failure_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "out.txt"
    path.write_bytes(b"old")
    with pytest.raises(TypeError):
        write_atomic(path, "text is not bytes")  # the write itself fails, after mkstemp
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["out.txt"]
