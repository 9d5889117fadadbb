"""Named barriers for bulk-synchronous steps over resident state (docs/barriers.md).

``step = rg.barrier("step", parties=4)`` declares a barrier at module level, as a message class is
declared; a handler waits on it with ``rg.barrier_wait(step)``. A step completes when ``parties``
handler calls have reached the barrier; then every one of them passes, and every write a party made
before its wait is visible to every party after it. A barrier that can never complete (a party's
kernel terminated, or its handler faulted) is *broken*: every wait on it, now or later, leaves with
the fault ``Reason.BARRIER_BROKEN`` instead of hanging, until the host re-arms it with ``reset()``.

This module holds the declaration (``Barrier``, checked when declared) and the host implementation
(``HostBarrier``: a condition variable, shared by every kernel of the process by barrier name), which
the reference backend and the host-side backends use. Device code is ``templates/common/barrier.c.j2``.
"""

from __future__ import annotations

import inspect
import re
import threading
from typing import Callable, Optional

import attrs
import numpy as np

from .errors import BuildError
from .protocol import CACHE_LINE, Reason

__all__ = [
    "BARRIER_DTYPE",
    "Barrier",
    "BarrierBroken",
    "HostBarrier",
    "MAX_PARTIES",
    "barrier",
    "break_barriers",
    "break_shared",
    "declared",
    "declared_names",
    "host_barrier",
    "register_words",
    "shared_words",
]

#: Most parties one barrier may have (a u32 arrival counter, with room to spare).
MAX_PARTIES = 1 << 20

#: The device barrier's words, as ``templates/common/barrier.c.j2`` lays them out: the arrival
#: counter on its own line (every party writes it once per step), the generation and the broken
#: word on the next (waiters poll them; only the last arrival and a breaking party write them).
BARRIER_DTYPE = np.dtype(
    {
        "names": ["count", "generation", "broken"],
        "formats": ["<u4", "<u4", "<u4"],
        "offsets": [0, CACHE_LINE, CACHE_LINE + 4],
        "itemsize": 2 * CACHE_LINE,
    }
)

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,47}$")

#: How long a host waiter sleeps between looks at the stop request (seconds).
_POLL_S = 0.02


@attrs.frozen(eq=False)
class Barrier:
    """A declared barrier: ``name`` (a C identifier part, unique per process), ``parties`` (how many
    handler calls complete one step), and where it was declared (for messages)."""

    name: str
    parties: int
    file: Optional[str] = None
    line: Optional[int] = None

    @property
    def c_name(self) -> str:
        """The stem of every C name generated for this barrier (``rg_barrier_<name>``)."""
        return f"rg_barrier_{self.name}"

    def where(self) -> str:
        """``file:line`` of the declaration, or the name when unknown."""
        return f"{self.file}:{self.line}" if self.file else f"barrier {self.name!r}"

    def reset(self) -> None:
        """Re-arm the barrier after it broke (and start a fresh generation). Call it only while no
        party waits on it, e.g. after every participating kernel has terminated."""
        host_barrier(self).reset()

    @property
    def broken(self) -> Optional[str]:
        """Why the barrier is broken, or None."""
        why = host_barrier(self).broken
        if why is None and any(int(w["broken"][0]) for w in _native_words(self.name)):
            why = "a native party broke it"
        return why


_DECLARED: dict[str, Barrier] = {}
_DECLARED_LOCK = threading.Lock()


def barrier(name: str, *, parties: int) -> Barrier:
    """Declare the barrier ``name`` that ``parties`` handler calls reach per step.

    Declaring the same name again (a module imported twice) with the same ``parties`` returns the
    first declaration.

    Raises:
        BuildError: the name is not a short identifier, ``parties`` is not an int from 1 to
            ``MAX_PARTIES``, or the name was declared before with another ``parties``.
    """
    caller = inspect.currentframe().f_back  # the declaring module (inspect.stack reads every file)
    file, line = (caller.f_code.co_filename, caller.f_lineno) if caller else (None, None)
    if not isinstance(name, str) or not _NAME.match(name):
        raise BuildError(
            f"barrier name {name!r} must be a letter then letters, digits or '_' (at most 48)",
            file=file,
            line=line,
            hint="e.g. rg.barrier('step', parties=4)",
        )
    if isinstance(parties, bool) or not isinstance(parties, int) or not 1 <= parties <= MAX_PARTIES:
        raise BuildError(
            f"barrier {name!r}: parties must be an int from 1 to {MAX_PARTIES}, not {parties!r}",
            file=file,
            line=line,
            hint="parties = the number of kernels (or blocks) that wait on it per step",
        )
    with _DECLARED_LOCK:
        old = _DECLARED.get(name)
        if old is not None:
            if old.parties != parties:
                raise BuildError(
                    f"barrier {name!r} was declared with parties={old.parties} at {old.where()}; "
                    f"here parties={parties}",
                    file=file,
                    line=line,
                    hint="give the second barrier another name",
                )
            return old
        b = Barrier(name, parties, file, line)
        _DECLARED[name] = b
        return b


class BarrierBroken(Exception):
    """Raised inside a host waiter when the barrier broke; ``reason`` is ``Reason.BARRIER_BROKEN``."""

    reason = Reason.BARRIER_BROKEN


class HostBarrier:
    """The host implementation of one barrier: a generation counter under a condition variable.

    ``wait`` returns when ``parties`` calls have arrived in the current generation; it raises
    ``BarrierBroken`` when the barrier is or becomes broken, and polls ``stop`` (a callable) every
    ``_POLL_S`` so a stop request, or an asynchronous exception raised in the thread, lands.
    """

    def __init__(self, b: Barrier) -> None:
        self.declared = b
        self._cond = threading.Condition()
        self._count = 0
        self._generation = 0
        self.broken: Optional[str] = None
        self.steps = 0

    def wait(self, stop: Optional[Callable[[], bool]] = None) -> int:
        """Arrive and wait for the step to complete; returns the generation that completed."""
        with self._cond:
            if self.broken is not None:
                raise BarrierBroken(self.broken)
            gen = self._generation
            self._count += 1
            if self._count == self.declared.parties:
                self._count = 0
                self._generation += 1
                self.steps += 1
                self._cond.notify_all()
                return gen
            while self._generation == gen:
                if self.broken is not None:
                    raise BarrierBroken(self.broken)
                if stop is not None and stop():
                    self._break_locked("a waiting party was stopped")
                    raise BarrierBroken(self.broken)
                self._cond.wait(_POLL_S)
            return gen

    def break_(self, why: str) -> None:
        """Mark the barrier broken (the first reason is kept) and wake every waiter."""
        with self._cond:
            self._break_locked(why)

    def _break_locked(self, why: str) -> None:
        if self.broken is None:
            self.broken = why
        self._cond.notify_all()

    def reset(self) -> None:
        """Clear the broken mark and the arrivals of an unfinished step (here and in the native
        parties' shared words)."""
        with self._cond:
            self.broken = None
            self._count = 0
            self._generation += 1
            self._cond.notify_all()
        for words in _native_words(self.declared.name):
            words["count"] = 0
            words["broken"] = 0
            words["generation"] += 1


_HOST: dict[str, HostBarrier] = {}
_WORDS: dict[str, np.ndarray] = {}
#: Device-layout words of other backends (OpenCL's SVM, one per context), by barrier name.
_REGISTERED: dict[str, list[np.ndarray]] = {}


def _native_words(name: str) -> list[np.ndarray]:
    """Every device-layout record of barrier ``name`` in this process: the ``c`` parties' shared
    words and those registered by other backends."""
    with _DECLARED_LOCK:
        out = list(_REGISTERED.get(name, ()))
        if name in _WORDS:
            out.insert(0, _WORDS[name])
        return out


def register_words(name: str, words: np.ndarray) -> None:
    """Make ``words`` (one ``BARRIER_DTYPE`` record in memory the host can write, e.g. OpenCL's
    fine-grained SVM) part of barrier ``name``: ``reset()`` re-arms them, ``broken`` reads them."""
    with _DECLARED_LOCK:
        _REGISTERED.setdefault(name, []).append(words)


def host_barrier(b: Barrier) -> HostBarrier:
    """The process's ``HostBarrier`` of ``b`` (one per name, shared by every kernel)."""
    with _DECLARED_LOCK:
        h = _HOST.get(b.name)
        if h is None:
            h = _HOST[b.name] = HostBarrier(b)
        return h


def declared(name: str) -> Barrier:
    """The barrier declared as ``name`` in this process (``KeyError`` when none was)."""
    with _DECLARED_LOCK:
        return _DECLARED[name]


def declared_names() -> tuple[str, ...]:
    """The names of every barrier declared in this process, sorted."""
    with _DECLARED_LOCK:
        return tuple(sorted(_DECLARED))


def break_barriers(names, why: str) -> None:
    """Mark the host barriers ``names`` broken (a party of each can never arrive again)."""
    for name in names:
        host_barrier(declared(name)).break_(why)


def shared_words(name: str) -> np.ndarray:
    """The process's device-layout words of barrier ``name`` (``BARRIER_DTYPE``, one record, in
    cache-line-aligned host memory that lives as long as the process): what every native party of
    the process (the ``c`` backend's libraries) points its barrier at."""
    with _DECLARED_LOCK:
        words = _WORDS.get(name)
        if words is None:
            raw = np.zeros(BARRIER_DTYPE.itemsize + CACHE_LINE, dtype=np.uint8)
            start = -raw.ctypes.data % CACHE_LINE
            words = raw[start : start + BARRIER_DTYPE.itemsize].view(BARRIER_DTYPE)[0:1]
            _WORDS[name] = words
        return words


def break_shared(names, why: str) -> None:
    """Mark the shared words of ``names`` broken (a native party left), and the host barriers."""
    for name in names:
        shared_words(name)["broken"] = 1
    break_barriers(names, why)
