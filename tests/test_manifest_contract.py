"""The manifest is the runtime's contract: the loaders read entry points, argument counts, the
clock intrinsic and CUDA's ABI numbers from ``abi`` in manifest.json, and refuse a package without
them (never re-emitting source themselves)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ringgen.build import collect
from ringgen.codegen import cuda as cuda_codegen
from ringgen.codegen import opencl as opencl_codegen
from ringgen.codegen.writer import write_unit
from ringgen.errors import BuildError
from ringgen.layout import layout_of
from ringgen.runtime.cache import load_codecs

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def threshold_pkg(tmp_path_factory):
    unit = collect(str(ROOT / "examples" / "threshold_filter.py"))
    pkg = write_unit(unit, tmp_path_factory.mktemp("contract"))
    return pkg, unit


def _kernel(pkg: Path, name: str) -> dict:
    manifest = json.loads((pkg / "manifest.json").read_text())
    return next(k for k in manifest["kernels"] if k["name"] == name)


def test_abi_is_what_the_emitters_use(threshold_pkg):
    pkg, unit = threshold_pkg
    (spec,) = unit.kernels
    abi = _kernel(pkg, spec.name)["abi"]
    assert abi["opencl"]["entry_points"] == {
        mode: {"name": name, "args": opencl_codegen.ENTRY_ARGS[mode]}
        for mode, name in opencl_codegen.entry_points(spec.name).items()
    }
    assert abi["opencl"]["uses_now"] is False
    cuda = abi["cuda"]
    assert cuda["entry_point"] == cuda_codegen.entry_point(spec.name)
    assert (cuda["block"], cuda["items"]) == (cuda_codegen.BLOCK, cuda_codegen.ITEMS)
    assert cuda["sched_bytes"] == cuda_codegen.SCHED_BYTES
    assert cuda["in_stride"] == layout_of(spec.input).slot_size
    size, at = cuda_codegen.compute_outbox_slot(layout_of(spec.output).slot_size, bridged=False)
    assert cuda["out_slot"] == {"size": size, "stamp_at": at} and cuda["out_stride"] is None
    text = (pkg / cuda_codegen.source_name(unit)).read_text()
    assert f"rg_{spec.name}_ring" in text


def test_cuda_loader_reads_the_manifest_and_refuses_a_package_without_abi(threshold_pkg, tmp_path):
    from ringgen.runtime.cuda import CudaKernelHandle

    pkg, unit = threshold_pkg
    (spec,) = unit.kernels
    codecs = load_codecs(pkg)
    handle = CudaKernelHandle(spec, str(pkg), codecs=codecs)
    assert handle._abi() == _kernel(pkg, spec.name)["abi"]["cuda"]
    old = tmp_path / pkg.name
    old.mkdir()
    manifest = json.loads((pkg / "manifest.json").read_text())
    for k in manifest["kernels"]:
        del k["abi"]
    (old / "manifest.json").write_text(json.dumps(manifest))
    stale = CudaKernelHandle(spec, str(old), codecs=codecs)
    with pytest.raises(BuildError, match="does not describe its CUDA entry point"):
        stale._abi()
    with pytest.raises(BuildError, match="is missing"):
        stale._read_source()  # no .cu: a rebuild, not a re-emit inside the runtime
