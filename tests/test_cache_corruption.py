"""The corruption matrix of issue 11: every kind of cached file, damaged four ways, in a subprocess.

One warm-up process fills a template cache (``rg.launch`` of a bridged kernel on OpenCL, the native
helpers and the native encoder, a cubin from a stand-in nvcc). Each case copies the template,
damages one file (empty, truncated, one bit flipped, 64 bytes flipped) and runs, in a fresh process,
what loads that file. Before issue 11 these ended in SIGBUS, SIGSEGV or SIGABRT (a damaged ``.so`` or
PoCL binary), in "rebuild it" on every launch (a damaged ``serializers.py``), or in every message
rejected as BAD_CRC (one bit of the CRC table in the ``.cl``). Now each must exit 0 with the right
answer, after a warning that it rebuilt the entry: never a signal.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import ROOT, have_opencl

pytestmark = pytest.mark.skipif(
    shutil.which("cc") is None and shutil.which("gcc") is None, reason="no C compiler"
)

#: What each kind of case runs: a bridged kernel on OpenCL (its package and its binary), the
#: native helpers, the native encoder, the cubin cache.
SCENARIOS = {
    "opencl": """
        import ringgen as rg
        from examples.word_stats import Word, WordStat, word_stats

        with rg.launch(word_stats, backend="opencl") as k:
            k.send(Word(id=7, text="unhappy"))
            got = k.receive(timeout=20)
        want = WordStat(id=7, text="unhappy", length=7, is_stop_word=False, negated=True)
        assert got == want, got
    """,
    "native": """
        import zlib
        import numpy as np
        from ringgen.wire import native

        assert native.lib() is not None, "the native helpers did not load"
        rows = np.frombuffer(bytes(range(256)) * 4, np.uint8).reshape(8, 128)
        crcs = native.crc32_rows(rows, None)
        assert [int(c) for c in crcs] == [zlib.crc32(r.tobytes()) for r in rows]
    """,
    "encoder": """
        import ringgen as rg
        from examples.word_stats import Word
        from ringgen.wire import codec_for, native_ext

        mod = native_ext.module()
        assert mod is not None, "the native encoder did not load"
        prog = native_ext.with_fallback(native_ext.program_for(Word), None)
        obj = Word(id=3, text="héllo")
        assert mod.encode_into(prog, None, 0, obj, 0, 0, 0, 5) == codec_for(Word).encode(
            obj, 0, 0, 0, 5
        )
    """,
    "cubin": """
        from ringgen.runtime.cuda import build as cuda_build

        data, compiled = cuda_build.compile_cubin("// kernel text\\n", "sm_90")
        assert data == b"// kernel text\\n", data
    """,
}

#: (case, scenario, the file to damage: a glob under the cache root)
KINDS = [
    ("package-init", "opencl", "word_stats-*/word_stats/__init__.py"),
    ("package-serializers", "opencl", "word_stats-*/word_stats/serializers.py"),
    ("package-runtime", "opencl", "word_stats-*/word_stats/runtime.py"),
    ("package-bridged", "opencl", "word_stats-*/word_stats/bridged.py"),
    ("package-manifest", "opencl", "word_stats-*/word_stats/manifest.json"),
    ("package-cl-source", "opencl", "word_stats-*/word_stats/word_stats.cl"),
    ("package-file-list", "opencl", "word_stats-*/entry.json"),
    ("opencl-binary", "opencl", "opencl/*/program.bin"),
    ("opencl-file-list", "opencl", "opencl/*/entry.json"),
    ("native-helpers", "native", "native/wire-*/wire.so"),
    ("native-file-list", "native", "native/wire-*/entry.json"),
    ("native-encoder", "encoder", "native/encoder-*/encoder*.so"),
    ("cuda-cubin", "cubin", "cuda/*/kernel.cubin"),
]

#: In the .cl source, one bit of the CRC-32 table (0x1DB71064 -> 0x1DB71065): silently, every
#: message would fail its CRC check.
CRC_ENTRY = b"0x1DB71064u"


def _flip_bit(data: bytes, name: str) -> bytes:
    at = data.find(CRC_ENTRY) + len(CRC_ENTRY) - 2 if name.endswith(".cl") else len(data) // 2
    assert at >= 0
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1 :]


DAMAGE = {
    "empty": lambda data, name: b"",
    "truncated": lambda data, name: data[: len(data) // 2],
    "one-bit": _flip_bit,
    "64-bytes": lambda data, name: (
        data[: len(data) // 3]
        + bytes(b ^ 0xFF for b in data[len(data) // 3 : len(data) // 3 + 64])
        + data[len(data) // 3 + 64 :]
    ),
}


def _env(cache: Path, tmp: Path) -> dict:
    nvcc = tmp / "fake-nvcc"
    if not nvcc.exists():  # writes the source back as the "cubin"
        nvcc.write_text(
            "#!/bin/sh\n"
            'out=""; src=""; prev=""\n'
            'for a in "$@"; do [ "$prev" = "-o" ] && out="$a"; src="$a"; prev="$a"; done\n'
            'cp "$src" "$out"\n'
        )
        nvcc.chmod(nvcc.stat().st_mode | stat.S_IEXEC)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RINGGEN_")}
    env.update(
        RINGGEN_CACHE_DIR=str(cache),
        RINGGEN_NVCC=str(nvcc),
        PYTHONPATH=os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]),
    )
    return env


def _run(scenario: str, cache: Path, tmp: Path) -> subprocess.CompletedProcess:
    script = textwrap.dedent(SCENARIOS[scenario]) + "\nprint('ok')\n"
    return subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=_env(cache, tmp),
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """A cache holding one entry of every kind."""
    tmp = tmp_path_factory.mktemp("corruption")
    cache = tmp / "template"
    ran = []
    for scenario in SCENARIOS:
        if scenario == "opencl" and not have_opencl():
            continue
        res = _run(scenario, cache, tmp)
        assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr
        ran.append(scenario)
    return tmp, cache, ran


@pytest.mark.timeout(180)
@pytest.mark.parametrize("how", list(DAMAGE))
@pytest.mark.parametrize("case, scenario, pattern", KINDS, ids=[k[0] for k in KINDS])
def test_a_damaged_cache_file_is_rebuilt_never_a_crash(template, case, scenario, pattern, how):
    tmp, source, ran = template
    if scenario not in ran:
        pytest.skip(f"{scenario}: no OpenCL platform")
    cache = tmp / f"{case}-{how}"
    shutil.copytree(source, cache, symlinks=True)
    (victim,) = cache.glob(pattern)
    data = victim.read_bytes()
    victim.write_bytes(DAMAGE[how](data, victim.name))
    assert victim.read_bytes() != data
    res = _run(scenario, cache, tmp)
    assert (
        res.returncode == 0
    ), f"exit status {res.returncode} (a negative one is a signal)\n{res.stderr[-3000:]}"
    assert res.stdout.strip() == "ok", res.stderr
    entry = victim.relative_to(cache).parts[0]
    entry = (
        victim.relative_to(cache).parts[:2] if entry in ("native", "opencl", "cuda") else (entry,)
    )
    assert "ringgen cache: did not use" in res.stderr and str(cache.joinpath(*entry)) in res.stderr
    assert "rebuilt it as" in res.stderr, res.stderr
    assert victim.read_bytes() == DAMAGE[how](data, victim.name)  # never written into
