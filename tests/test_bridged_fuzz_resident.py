"""100,000 corrupted and valid messages through a resident kernel (issue 6: validation you can see).

``examples/word_stats.py``'s ``Word`` (an ``i64`` and a ``Str[32]``) is bridged, so every input slot is
validated by the kernel before the handler runs. The messages are fed as raw slots
(``send_raw_batch``): random bytes, bad magic, sizes below the header and past the slot, truncated
payloads, string lengths past the slot, invalid UTF-8, CRC mismatches and wrong type ids, interleaved
with valid ones. The host decoder (``rg.decode``) is the oracle for every one:

* ``stats().rejected`` equals the oracle's count per Reason, and ``processed`` counts every message;
* every valid message is processed: the replies equal the cpu reference backend's for the valid ones
  (sent to it as objects), and so does the kernel state;
* the kernel is still ACTIVE afterwards and answers one more message;
* with ``dead_letters``, every rejected message comes back, in order, as its slot marked with its
  Reason (flags bit 0, reason at offset 48); a dead-letter queue too small to hold them all never
  blocks the kernel and counts the rest in ``stats().dead_letters_dropped``.

It runs on OpenCL (resident and relaunch), on CUDA (``-m gpu``; skipped without a GPU) and, with
20,000 messages, on the cpu reference backend.
"""

from __future__ import annotations

import collections
import time
import zlib

import numpy as np
import pytest

import ringgen as rg
from ringgen.layout import layout_of
from ringgen.protocol import Lifecycle, Reason
from ringgen.wire import encode_batch
from test_opencl_support import DEVICES, ROOT, build_package, device_params, open_kernel

from examples.word_stats import Word, WordStat, word_stats

LAY = layout_of(Word)
SLOT = LAY.slot_size
N_OPENCL = 100_000
N_CPU = 20_000
VALIDATION = (
    Reason.BAD_MAGIC,
    Reason.BAD_SIZE,
    Reason.BAD_TYPE,
    Reason.BAD_CRC,
    Reason.BAD_PAYLOAD,
    Reason.BAD_UTF8,
)

#: Payload offsets of a Word (docs/wire-format.md): member count, id, then the string's
#: ~byte_count, its UTF-16 length and its bytes.
P_COUNT, P_ID, P_STR, P_UTF16, P_BYTES = 256, 257, 265, 269, 273

ALPHABET = list("abcdefghijklmnopqrstuvwxyz") + ["é", "ß", "€", "中", "😀"]
STOP = ["the", "a", "an", "and", "of", "un", "non", "undo", "nonsense", ""]


def _words(rng, n: int) -> list[str]:
    out = []
    for _ in range(n):
        if rng.random() < 0.2:
            out.append(STOP[int(rng.integers(len(STOP)))])
            continue
        word, size = "", 0
        for _ in range(int(rng.integers(1, 20))):
            ch = ALPHABET[int(rng.integers(len(ALPHABET)))]
            if size + len(ch.encode()) > 32:
                break
            word, size = word + ch, size + len(ch.encode())
        out.append(word)
    return out


def _fix_crc(buf: bytearray, total: int) -> None:
    buf[40:44] = zlib.crc32(bytes(buf[256:total])).to_bytes(4, "little")


def _corrupt(rng, row: np.ndarray) -> bytes:
    """One corrupted copy of the slot ``row`` (a valid message, zero-padded to the slot)."""
    buf = bytearray(row.tobytes())
    total = int.from_bytes(buf[4:12], "little")
    kind = int(rng.integers(11))
    if kind == 0:  # random bytes: no header at all (the oracle decides; almost always BAD_MAGIC)
        return rng.integers(0, 256, SLOT, dtype=np.uint8).tobytes()
    if kind == 1:  # bad magic
        buf[int(rng.integers(0, 4))] ^= int(rng.integers(1, 256))
    elif kind == 2:  # size field below the header, or past the slot
        bad = int(rng.integers(0, 256)) if rng.integers(2) else int(rng.integers(SLOT + 1, 2**40))
        buf[4:12] = bad.to_bytes(8, "little")
    elif kind == 3:  # truncated: the size says the message ends early (CRC fixed for that size)
        cut = int(rng.integers(256, total))
        buf[4:12] = cut.to_bytes(8, "little")
        buf[cut:] = bytes(SLOT - cut)
        _fix_crc(buf, cut)
    elif kind == 4:  # string length past the slot, the bound or the end (CRC fixed)
        length = int(rng.choice([33, 40, SLOT, 2**20, 2**31 - 1]))
        buf[P_STR : P_STR + 4] = (~length).to_bytes(4, "little", signed=True)
        _fix_crc(buf, total)
    elif kind == 5 and buf[P_STR : P_STR + 4] != bytes(4):  # invalid UTF-8 in a non-empty string
        n = ~int.from_bytes(buf[P_STR : P_STR + 4], "little", signed=True)
        buf[P_BYTES + int(rng.integers(n))] = int(rng.choice([0x80, 0xC0, 0xC1, 0xF5, 0xFF]))
        _fix_crc(buf, total)
    elif kind == 6:  # CRC mismatch: a payload byte flipped, the CRC left alone
        buf[int(rng.integers(256, total))] ^= int(rng.integers(1, 256))
    elif kind == 7:  # CRC mismatch: the CRC field itself
        buf[40 + int(rng.integers(4))] ^= int(rng.integers(1, 256))
    elif kind == 8:  # wrong type id
        buf[28 + int(rng.integers(4))] ^= int(rng.integers(1, 256))
    elif kind == 9:  # member count (255 is null), CRC fixed
        buf[P_COUNT] = int(rng.choice([0, 1, 3, 255]))
        _fix_crc(buf, total)
    else:  # a size one past the message: a byte after the last member (CRC fixed)
        if total >= SLOT:
            buf[int(rng.integers(0, 4))] ^= 0x10  # (a full slot cannot grow: bad magic instead)
        else:
            buf[4:12] = (total + 1).to_bytes(8, "little")
            _fix_crc(buf, total + 1)
    return bytes(buf)


def _oracle(row: np.ndarray):
    """(Reason, Word or None) from the host decoder."""
    try:
        return Reason.NONE, rg.decode(Word, row)
    except rg.WireFormatError as exc:
        return exc.reason, None


class Fuzz:
    """The message stream: slots, the oracle's Reason per slot and the valid messages in order."""

    def __init__(self, n: int, seed: int = 2026) -> None:
        rng = np.random.default_rng(seed)
        ids = np.arange(n, dtype=np.int64) * 7 - 1000
        valid = encode_batch(Word, {"id": ids, "text": _words(rng, n)}, sequence=1, timestamp=0)
        self.rows = valid.copy()
        bad = rng.random(n) < 0.75  # three bad messages for every valid one, interleaved
        for i in np.flatnonzero(bad):
            self.rows[i] = np.frombuffer(_corrupt(rng, valid[i]), np.uint8)
        self.reasons = np.zeros(n, dtype=np.uint32)
        self.valid: list[Word] = []
        for i in range(n):
            why, obj = _oracle(self.rows[i])
            self.reasons[i] = why
            if obj is not None:
                self.valid.append(obj)
        self.n = n

    def expected_rejected(self) -> dict[str, int]:
        counts = collections.Counter(int(r) for r in self.reasons if r)
        return {Reason(r).name: c for r, c in sorted(counts.items())}

    def bad_index(self) -> np.ndarray:
        return np.flatnonzero(self.reasons)


@pytest.fixture(scope="module")
def fuzz() -> Fuzz:
    f = Fuzz(N_OPENCL)
    seen = collections.Counter(Reason(int(r)) for r in f.reasons)
    # every validation Reason is exercised, plenty of each, and about a quarter are valid
    for r in VALIDATION:
        assert seen[r] > 1000, (r.name, seen)
    assert 20_000 < seen[Reason.NONE] < 30_000, seen
    return f


@pytest.fixture(scope="module")
def reference(fuzz):
    """The cpu reference backend's replies and final state for the valid messages, sent as objects."""
    with rg.launch(word_stats, backend="cpu", capacity=4096) as k:
        replies = _stream(
            k,
            lambda lo, hi: k.send_batch(fuzz.valid[lo:hi], block=False),
            len(fuzz.valid),
            len(fuzz.valid),
            timeout=120,
        )
        state = k.state()
    return replies, state


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    return build_package(tmp_path_factory.mktemp("wordstats"), str(ROOT / "examples/word_stats.py"))


def _stream(k, push, n: int, n_replies: int, timeout: float, dead=None) -> list:
    """Push ``n`` messages with ``push(lo, hi) -> accepted`` (never blocking) while taking replies
    (and dead letters into ``dead``); returns the replies once all ``n_replies`` came."""
    replies: list = []
    sent = 0
    deadline = time.monotonic() + timeout
    while sent < n or len(replies) < n_replies:
        assert (
            time.monotonic() < deadline
        ), f"stuck: sent {sent}/{n}, replies {len(replies)}/{n_replies}, {k.stats()}"
        if sent < n:
            sent += push(sent, min(n, sent + 8192))
        replies.extend(k.receive_batch(timeout=0.001 if sent < n else 0.05))
        if dead is not None:
            dead.extend(k.receive_dead_letters())
    return replies


def _wait_processed(k, n: int, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while True:
        s = k.stats()
        if s.processed >= n:
            return s
        assert time.monotonic() < deadline, f"only {s.processed} of {n} processed: {s}"
        time.sleep(0.01)


def _check_dead_letters(fuzz: Fuzz, dead: list, upto: int) -> None:
    """Every rejected message among the first ``upto`` came back, in order, marked with its Reason."""
    idx = fuzz.bad_index()
    idx = idx[idx < upto]
    assert len(dead) == len(idx)
    assert [int(d.reason) for d in dead] == fuzz.reasons[idx].tolist()
    got = np.frombuffer(b"".join(d.data for d in dead), np.uint8).reshape(len(dead), SLOT)
    want = fuzz.rows[idx].copy()
    want[:, 44:48] = np.frombuffer((1).to_bytes(4, "little"), np.uint8)  # flags: DEAD_LETTER
    want[:, 48:52] = fuzz.reasons[idx].astype("<u4").view(np.uint8).reshape(-1, 4)
    np.testing.assert_array_equal(got, want)
    magic_ok = fuzz.rows[idx, :4].copy().view("<u4")[:, 0] == 0xDCF1
    seqs = [d.sequence for d in dead]
    assert all((s is None) != m for s, m in zip(seqs, magic_ok))


def _check_alive(k) -> None:
    """The kernel survived: ACTIVE, and it answers one more valid message."""
    assert k.lifecycle is Lifecycle.ACTIVE
    k.send_raw(rg.encode(Word(id=424242, text="unbroken")))
    assert k.receive(timeout=10.0) == WordStat(
        id=424242, text="unbroken", length=8, is_stop_word=False, negated=True
    )


@pytest.mark.opencl
@pytest.mark.timeout(300)
@pytest.mark.parametrize(
    "device,mode", device_params(("persistent", "persistent-2groups", "relaunch"))
)
def test_100k_fuzz_opencl_with_dead_letters(fuzz, reference, package, device, mode):
    """Resident (one and two groups) and relaunch mode: counts, replies, state, dead letters."""
    pkg, unit, codecs = package
    ref_replies, ref_state = reference
    n = fuzz.n
    dead: list = []
    t0 = time.monotonic()
    with open_kernel(pkg, unit, codecs, device, mode, capacity=4096, dead_letters=1 << 17) as k:
        replies = _stream(
            k,
            lambda lo, hi: k.send_raw_batch(fuzz.rows[lo:hi], block=False),
            n,
            len(fuzz.valid),
            timeout=150,
            dead=dead,
        )
        s = _wait_processed(k, n)
        dead.extend(k.receive_dead_letters())
        elapsed = time.monotonic() - t0
        assert dict(s.rejected) == fuzz.expected_rejected()
        assert (s.processed, s.emitted, s.sent) == (n, len(fuzz.valid), n)
        assert s.dead_letters_dropped == 0
        assert replies == ref_replies
        assert k.state() == ref_state
        _check_dead_letters(fuzz, dead, n)
        _check_alive(k)
    print(f"opencl {mode}: {n} messages in {elapsed:.1f} s, {s.rejected}")


@pytest.fixture(scope="module")
def cuda_ready() -> None:
    """Skip unless PyCUDA and a CUDA device that maps host memory are present (module-scoped and
    requested first, so a machine without a GPU skips before the fuzz is built)."""
    pytest.importorskip("pycuda.driver")
    from ringgen.runtime import cuda

    try:
        cuda.probe()
    except rg.RinggenError as exc:
        pytest.skip(str(exc))


@pytest.mark.gpu
@pytest.mark.timeout(300)
def test_100k_fuzz_cuda_with_dead_letters(cuda_ready, fuzz, reference):
    """The resident CUDA kernel: counts, replies, state and dead letters (which the host copies out
    of the input ring by the kernel's marks), 100,000 raw slots fed with send_raw_batch."""
    ref_replies, ref_state = reference
    n = fuzz.n
    dead: list = []
    t0 = time.monotonic()
    with rg.launch(word_stats, backend="cuda", capacity=4096, dead_letters=1 << 17) as k:
        replies = _stream(
            k,
            lambda lo, hi: k.send_raw_batch(fuzz.rows[lo:hi], block=False),
            n,
            len(fuzz.valid),
            timeout=150,
            dead=dead,
        )
        s = _wait_processed(k, n)
        dead.extend(k.receive_dead_letters())
        elapsed = time.monotonic() - t0
        assert dict(s.rejected) == fuzz.expected_rejected()
        assert (s.processed, s.emitted, s.sent) == (n, len(fuzz.valid), n)
        assert s.dead_letters_dropped == 0
        assert replies == ref_replies
        assert k.state() == ref_state
        _check_dead_letters(fuzz, dead, n)
        _check_alive(k)
    print(f"cuda: {n} messages in {elapsed:.1f} s, {s.rejected}")


@pytest.mark.timeout(300)
def test_fuzz_cpu_reference_validates_like_the_device(fuzz, reference):
    """The cpu backend decodes raw slots with the host decoder: same counts, same replies; its small
    dead-letter queue, never drained while the messages flow, returns the first rejected ones and
    counts every other one as dropped."""
    ref_replies, _ = reference
    n = N_CPU
    n_valid = int((fuzz.reasons[:n] == 0).sum())
    with rg.launch(word_stats, backend="cpu", capacity=4096, dead_letters=1024) as k:
        replies = _stream(
            k,
            lambda lo, hi: k.send_raw_batch(fuzz.rows[lo:hi], block=False),
            n,
            n_valid,
            timeout=200,
        )
        s = _wait_processed(k, n)
        counts = collections.Counter(int(r) for r in fuzz.reasons[:n] if r)
        assert dict(s.rejected) == {Reason(r).name: c for r, c in sorted(counts.items())}
        assert (s.processed, s.emitted) == (n, n_valid)
        assert replies == ref_replies[:n_valid]
        dead = k.receive_dead_letters()
        n_bad = int((fuzz.reasons[:n] != 0).sum())
        assert len(dead) == 1024 and s.dead_letters_dropped == n_bad - 1024
        first = fuzz.bad_index()[1024]
        _check_dead_letters(fuzz, dead, int(first))
        _check_alive(k)
