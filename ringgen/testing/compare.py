"""Comparing what a backend produced with what the reference produced.

Outputs are compared as a multiset of records: both sides are made canonical (padding and the bytes
past a ``Str``'s or ``List``'s length zeroed) and sorted by their non-float bytes, so a backend that
publishes in another order (an Outbox across warps, a parallel kernel) still matches; then every leaf
field is compared: integers and bools exactly, floats within a number of ULPs (0 by default: + - * /
and sqrt are correctly rounded on every strict backend; a few for ``math.sin`` and the like). Final
state and the fault counts by reason must agree too. A disagreement raises ``MismatchError`` naming
the backend, the kernel, the record and the field.
"""

from __future__ import annotations

from typing import Mapping, Optional

import attrs
import numpy as np

from ..errors import RinggenError
from ..protocol import Reason

__all__ = [
    "KernelRun",
    "MismatchError",
    "canonical",
    "compare_runs",
    "records_differ",
    "ulp_distance",
]


class MismatchError(RinggenError, AssertionError):
    """Raised when a backend's outputs, final state or fault counts differ from the reference's on the
    same messages (the message names the backend, kernel and field, and carries the kernel source).
    """


@attrs.frozen
class KernelRun:
    """What one backend produced for one kernel over one batch of messages.

    Attributes:
        backend: the backend's label ("c", "opencl-persistent", ...).
        outputs: output records (the output message's view dtype), in publication order.
        rejected: ``Reason`` value -> count of messages rejected for it (only nonzero counts).
        state: the final state as a one-record array of the state's view dtype, or None.
    """

    backend: str
    outputs: np.ndarray
    rejected: Mapping[int, int]
    state: Optional[np.ndarray] = None


def ulp_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Units in the last place between two float arrays of one dtype (NaN == NaN, +0 == -0)."""
    a, b = np.asarray(a), np.asarray(b)
    itype = np.int32 if a.dtype == np.float32 else np.int64
    ia, ib = a.view(itype).astype(np.int64), b.view(itype).astype(np.int64)
    bias = np.int64(np.iinfo(itype).min)
    ia = np.where(ia < 0, bias - ia, ia)
    ib = np.where(ib < 0, bias - ib, ib)
    with np.errstate(over="ignore"):
        dist = np.abs(ia - ib)
    same = (np.isnan(a) & np.isnan(b)) | (a == b)
    return np.where(same, 0, dist)


def _is_view(names) -> Optional[str]:
    """The payload key of a Str (``data``) or List (``items``) view dtype, else None."""
    return {("len", "data"): "data", ("len", "items"): "items"}.get(tuple(names or ()))


def _copy(src: np.ndarray, dst: np.ndarray) -> None:
    names = dst.dtype.names
    if not names:
        dst[...] = src
        return
    key = _is_view(names)
    if key is None:
        for name in names:
            _copy(src[name], dst[name])
        return
    dst["len"] = src["len"]
    bound = dst.dtype[key].shape[0]
    for idx in np.ndindex(src.shape):
        n = min(int(src["len"][idx]), bound)
        _copy(src[key][idx][:n], dst[key][idx][:n])


def canonical(arr: np.ndarray) -> np.ndarray:
    """A copy of structured ``arr`` with padding and unused Str/List bytes zeroed."""
    out = np.zeros(arr.shape, arr.dtype)
    _copy(np.asarray(arr), out)
    return out


def _leaves(arr: np.ndarray, path: str = ""):
    names = arr.dtype.names
    if not names:
        yield path, arr
        return
    for name in names:
        yield from _leaves(arr[name], f"{path}.{name}" if path else name)


def _sort_key(arr: np.ndarray) -> np.ndarray:
    """Row order by every non-float leaf (floats may differ by ULPs, so they cannot order rows)."""
    if len(arr) == 0:
        return np.arange(0)
    cols = []
    for _, leaf in _leaves(arr):
        flat = np.ascontiguousarray(leaf).reshape(len(arr), -1)
        if flat.dtype.kind != "f":
            cols.append(flat.astype(np.uint64 if flat.dtype.kind == "u" else np.int64))
    if not cols:
        return np.arange(len(arr))
    table = np.concatenate(cols, axis=1)
    return np.lexsort(table.T[::-1])


def records_differ(
    ref: np.ndarray, got: np.ndarray, ulps: Mapping[str, int] | int = 0
) -> Optional[str]:
    """Where two equally long record arrays of one dtype first differ, or None.

    Args:
        ulps: float tolerance in ULPs, one for all or per top-level field name (default 0).

    Returns:
        "record i field f: reference X, backend Y" for the first difference, or None.
    """
    for path, r in _leaves(ref):
        g = got
        for part in path.split("."):
            g = g[part] if part else g
        top = path.split(".")[0]
        tol = ulps if isinstance(ulps, int) else ulps.get(top, 0)
        r2 = np.ascontiguousarray(r).reshape(len(ref), -1)
        g2 = np.ascontiguousarray(g).reshape(len(ref), -1)
        if r2.dtype.kind == "f":
            bad = (ulp_distance(r2, g2) > tol).any(axis=1)
        else:
            bad = (r2 != g2).any(axis=1)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            return f"record {i} field {path}: reference {r[i]!r}, backend {g[i]!r}"
    return None


def _reasons(counts: Mapping[int, int]) -> dict[str, int]:
    return {Reason(r).name: int(n) for r, n in sorted(counts.items()) if n}


def compare_runs(
    ref: KernelRun, got: KernelRun, *, ulps: Mapping[str, int] | int = 0
) -> Optional[str]:
    """Why ``got`` disagrees with the reference run ``ref``, or None when they agree.

    Outputs are compared as multisets (both sorted by their non-float fields), then state, then the
    fault counts by reason.
    """
    if _reasons(ref.rejected) != _reasons(got.rejected):
        return f"faults by reason: reference {_reasons(ref.rejected)}, {got.backend} {_reasons(got.rejected)}"
    if len(ref.outputs) != len(got.outputs):
        return (
            f"{len(got.outputs)} outputs from {got.backend}, {len(ref.outputs)} from the reference"
        )
    if len(ref.outputs):
        r = canonical(ref.outputs)
        g = canonical(got.outputs.astype(ref.outputs.dtype, copy=False))
        r, g = r[_sort_key(r)], g[_sort_key(g)]
        where = records_differ(r, g, ulps)
        if where is not None:
            return f"outputs (sorted) differ at {where}"
    if ref.state is not None:
        if got.state is None:
            return f"{got.backend} returned no final state"
        where = records_differ(canonical(ref.state), canonical(got.state), ulps)
        if where is not None:
            return f"final state differs at {where}"
    return None
