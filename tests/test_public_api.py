"""The public API is exactly ringgen.__all__: sorted, every name importable, nothing else exported."""

import importlib

import pytest

import ringgen as rg


def test_all_is_sorted_and_complete():
    names = [n for n in rg.__all__ if n != "__version__"]
    assert names == sorted(names)
    assert set(dir(rg)) == set(rg.__all__)


@pytest.mark.parametrize("name", [n for n in rg.__all__ if n != "__version__"])
def test_every_public_name_resolves_to_its_module(name):
    obj = getattr(rg, name)
    module = importlib.import_module(rg._EXPORTS[name])
    assert getattr(module, name) is obj


def test_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        rg.nope  # noqa: B018


def test_importing_ringgen_does_not_load_gpu_drivers():
    import subprocess
    import sys

    code = "import sys, ringgen; print(any(m in sys.modules for m in ('pycuda', 'pyopencl')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
