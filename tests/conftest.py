"""Shared fixtures and helpers: toolchain detection, throwaway modules, random schemas.

The hypothesis strategies here build real ``@rg.message`` classes at run time (``make_message``), so
property tests can run the whole pipeline (schema -> layout -> header/serializers -> compilers) on
schemas nobody wrote by hand.
"""

from __future__ import annotations

import itertools
import shutil
import sys
import types
from pathlib import Path

import pytest
from hypothesis import strategies as st

import ringgen as rg
from ringgen.types import SCALARS, ArrayType, MessageType, ScalarType

ROOT = Path(__file__).resolve().parent.parent

#: Module that owns the classes built at run time; generated serializers import them from here.
DYNAMIC_MODULE = "ringgen_test_dynamic"
_dynamic = types.ModuleType(DYNAMIC_MODULE)
_dynamic.__file__ = None
sys.modules.setdefault(DYNAMIC_MODULE, _dynamic)
_counter = itertools.count()


def make_message(name: str, fields: dict, kind: str = "message") -> type:
    """Declare a message (or state) class named ``name`` with ``fields`` (name -> ringgen type)."""
    module = sys.modules[DYNAMIC_MODULE]
    cls = type(
        name,
        (),
        {"__annotations__": dict(fields), "__module__": DYNAMIC_MODULE, "__qualname__": name},
    )
    cls = (rg.message if kind == "message" else rg.state)(cls)
    setattr(module, name, cls)
    return cls


def unique_name(prefix: str = "M") -> str:
    """A class name no other test uses (C struct names must be unique in one header)."""
    return f"{prefix}{next(_counter)}"


def have_opencl() -> bool:
    from ringgen.check import opencl_device

    return opencl_device()[0] is not None


requires_gcc = pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc not found")
requires_gxx = pytest.mark.skipif(shutil.which("g++") is None, reason="g++ not found")


def _nvcc():
    from ringgen.check import find_nvcc

    return find_nvcc()


requires_nvcc = pytest.mark.skipif(_nvcc() is None, reason="nvcc not found")


def device_strategy_backends(strategies=("shared_memory", "atomic_queue")) -> list:
    """``(backend, launch options)`` params that run graphs on the device strategies: PoCL's
    persistent and relaunch modes with ``shared_memory`` (a fused graph is one kernel, so persistent
    PoCL runs it on one of its worker threads), and CUDA (``gpu``) with each of ``strategies``
    (``atomic_queue`` is CUDA's only)."""
    from ringgen.runtime import available_backends

    no_opencl = pytest.mark.skipif("opencl" not in available_backends(), reason="no OpenCL")
    gpu = [
        pytest.mark.gpu,
        pytest.mark.skipif("cuda" not in available_backends(), reason="no CUDA"),
    ]
    params = [
        pytest.param(
            ("opencl", {"mode": mode, "strategy": "shared_memory"}),
            id=f"opencl-{mode}",
            marks=no_opencl,
        )
        for mode in ("persistent", "relaunch")
    ]
    params += [
        pytest.param(("cuda", {"strategy": s}), id=f"cuda-{s}", marks=gpu) for s in strategies
    ]
    return params


def nvcc_compiles(source: str, what: str) -> None:
    """Compile CUDA ``source`` to an sm_90 cubin with the runtime's own nvcc call and options
    (``runtime/cuda/build.nvcc_compile``); a rejection fails the test with nvcc's log."""
    from ringgen.runtime.cuda import build as cuda_build

    cuda_build.nvcc_compile(source, cuda_build.DEFAULT_OPTIONS, "sm_90", what=what, timeout=240)


requires_opencl = pytest.mark.skipif(not have_opencl(), reason="no OpenCL platform")


# ---- hypothesis strategies over schemas --------------------------------------------------------

scalar_types = st.sampled_from(sorted(SCALARS.values(), key=lambda t: t.name))


def field_types(nested: list[type]) -> st.SearchStrategy:
    """A direct field type: a scalar, a 1-D or 2-D array, a nested message or an array of them."""
    options = [
        scalar_types,
        st.builds(ArrayType, scalar_types, st.integers(1, 5)),
        st.builds(
            lambda t, a, b: ArrayType(ArrayType(t, b), a),
            scalar_types,
            st.integers(1, 3),
            st.integers(1, 3),
        ),
    ]
    if nested:
        msgs = st.sampled_from(nested)
        options.append(msgs)
        options.append(st.builds(lambda c, n: ArrayType(c, n), msgs, st.integers(1, 3)))
    return st.one_of(*options)


@st.composite
def schemas(draw, max_classes: int = 3) -> list[type]:
    """1..max_classes message classes; each later one may nest the earlier ones."""
    classes: list[type] = []
    for _ in range(draw(st.integers(1, max_classes))):
        n = draw(st.integers(1, 6))
        fields = {f"f{i}": draw(field_types(classes)) for i in range(n)}
        classes.append(make_message(unique_name("P"), fields))
    return classes


def _scalar_values(t: ScalarType) -> st.SearchStrategy:
    if t.kind == "bool":
        return st.booleans()
    if t.kind == "float":
        return st.floats(width=t.bits, allow_nan=False)
    lo, hi = (
        (-(1 << (t.bits - 1)), (1 << (t.bits - 1)) - 1) if t.is_signed else (0, (1 << t.bits) - 1)
    )
    return st.integers(lo, hi)


def values_of(t) -> st.SearchStrategy:
    """Values a field of type ``t`` may hold, as the codecs return them (lists for arrays)."""
    if isinstance(t, ScalarType):
        return _scalar_values(t)
    if isinstance(t, ArrayType):
        return st.lists(values_of(t.elem), min_size=t.length, max_size=t.length)
    if isinstance(t, MessageType):
        return instances_of(t.cls)
    if isinstance(t, type):
        return instances_of(t)
    raise TypeError(t)


def instances_of(cls: type) -> st.SearchStrategy:
    """Instances of a direct message class, every field drawn from ``values_of``."""
    spec = rg.spec_of(cls)
    return st.builds(cls, **{f.name: values_of(f.type) for f in spec.fields})


@pytest.fixture
def module_file(tmp_path, monkeypatch):
    """Write a throwaway module: ``module_file(source, name=None) -> Path`` (a fresh name each time)."""
    monkeypatch.syspath_prepend(str(tmp_path))

    def write(source: str, name: str | None = None) -> Path:
        path = tmp_path / f"{name or unique_name('mod_')}.py"
        path.write_text(source, encoding="utf-8")
        return path

    return write


def example_paths() -> list[Path]:
    """Every example module (what `make generate` builds): examples/*.py but the marker and demo."""
    return sorted(
        p for p in (ROOT / "examples").glob("*.py") if p.name not in ("__init__.py", "demo.py")
    )


RICH_MODULE = '''\
"""Nested messages, arrays of every rank, bools, doubles, a bridged message and a state class."""
import ringgen as rg
from ringgen.types import Array, List, Str, bool_, f32, f64, i16, i32, u8, u64


@rg.message
class Vec3:
    x: f32
    y: f32
    z: f32


@rg.message
class Particle:
    id: u64
    pos: Vec3
    vel: Array[f32, 3]
    grid: Array[Array[i16, 3], 2]
    flags: Array[bool_, 3]
    neighbours: Array[Vec3, 2]
    alive: bool_
    mass: f64
    tag: u8


@rg.message
class Tagged:
    label: Str[16]
    values: List[f32, 4]
    points: List[Vec3, 2]
    id: i32


@rg.state
class Totals:
    count: u64
    total: f64
'''


@pytest.fixture
def rich_unit(module_file):
    """A build unit with nested, array, bool, f64, bridged and state layouts."""
    from ringgen.build import collect

    return collect(module_file(RICH_MODULE))
