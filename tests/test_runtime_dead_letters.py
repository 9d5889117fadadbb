"""Raw sends and the dead-letter queue on every backend that has them (cpu, OpenCL both modes, and
CUDA with ``-m gpu``: skipped where PyCUDA or a GPU is missing).

``send_raw``/``send_raw_batch`` put encoded slots in the input queue with no check beyond their size;
``dead_letters=True`` returns the bridged inputs that fail validation, marked with their Reason,
through a bounded queue that never blocks the kernel (a full one only counts). The 100,000-message
fuzz of the same features is ``test_bridged_fuzz_resident.py``.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

import ringgen as rg
from ringgen.errors import BuildError, EncodeError, QueueClosedError
from ringgen.layout import layout_of
from ringgen.protocol import Lifecycle, Reason
from ringgen.runtime.dead_letters import DeadLetter
from ringgen.wire import HeaderFlag, encode_batch
from test_opencl_support import ROOT, build_package, device_params, open_kernel, requests

from examples.vector_add import AddRequest, AddResponse, vector_add
from examples.word_stats import Word, WordStat, word_stats

pytestmark = pytest.mark.timeout(120)

SLOT = layout_of(Word).slot_size
BACKENDS = (
    [pytest.param("cpu", None, None, id="cpu")]
    + [
        pytest.param("opencl", d, m, marks=pytest.mark.opencl, id=p.id)
        for p in device_params(("persistent", "persistent-2groups", "relaunch", "relaunch-cl1.2"))
        for d, m in [p.values]
        if d is not None
    ]
    + [pytest.param("cuda", None, None, marks=pytest.mark.gpu, id="cuda")]
)


def cuda_or_skip() -> None:
    """Skip the test unless PyCUDA and a CUDA device that maps host memory are present."""
    pytest.importorskip("pycuda.driver")
    from ringgen.runtime import cuda

    try:
        cuda.probe()
    except rg.RinggenError as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def packages(tmp_path_factory):
    root = tmp_path_factory.mktemp("deadletters")
    return {
        "word_stats": build_package(root / "ws", str(ROOT / "examples/word_stats.py")),
        "vector_add": build_package(root / "va", str(ROOT / "examples/vector_add.py")),
    }


def launch(packages, which, backend, device, mode, **options):
    if backend in ("cpu", "cuda"):
        if backend == "cuda":
            cuda_or_skip()
        kernel = {"word_stats": word_stats, "vector_add": vector_add}[which]
        return rg.launch(kernel, backend=backend, **options)
    pkg, unit, codecs = packages[which]
    return open_kernel(pkg, unit, codecs, device, mode, **options)


def good(i: int, text: str = "unwise") -> bytes:
    return rg.encode(Word(id=i, text=text), sequence=i)


def bad_magic(i: int) -> bytes:
    data = bytearray(good(i))
    data[0] ^= 0xFF
    return bytes(data)


def bad_crc(i: int) -> bytes:
    data = bytearray(good(i))
    data[-1] ^= 0x01
    return bytes(data)


def wait_processed(k, n: int, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while (s := k.stats()).processed < n:
        assert time.monotonic() < deadline, s
        time.sleep(0.005)
    return s


@pytest.mark.parametrize("backend,device,mode", BACKENDS)
def test_raw_sends_are_validated_by_the_kernel(packages, backend, device, mode):
    """Valid raw slots get replies; a bad one is counted by reason, and the size is the only check
    the host makes (longer than the slot: EncodeError naming the kernel and the slot size)."""
    with launch(packages, "word_stats", backend, device, mode) as k:
        k.send_raw(good(1, "the"))  # shorter than the slot: zero-padded
        assert k.receive(timeout=5.0) == WordStat(
            id=1, text="the", length=3, is_stop_word=True, negated=False
        )
        slots = encode_batch(Word, [Word(id=i, text="non" * (i % 5)) for i in range(10)])
        assert k.send_raw_batch(slots) == 10  # a (n, slot) uint8 array
        assert k.send_raw_batch(slots.tobytes(), 10) == 10  # a flat buffer with n
        replies = [k.receive(timeout=5.0) for _ in range(20)]
        assert [r.id for r in replies] == list(range(10)) * 2
        assert replies[3].text == "nonnonnon" and replies[3].negated
        k.send_raw(bad_magic(2))
        k.send_raw(np.frombuffer(bad_crc(3), np.uint8))
        s = wait_processed(k, 23)
        assert dict(s.rejected) == {"BAD_MAGIC": 1, "BAD_CRC": 1}
        assert s.emitted == 21
        with pytest.raises(EncodeError, match=rf"word_stats.*{SLOT} bytes"):
            k.send_raw(bytes(SLOT + 1))
        with pytest.raises(EncodeError, match=rf"word_stats.*{SLOT}"):
            k.send_raw_batch(bytes(2 * SLOT - 1))
        with pytest.raises(EncodeError, match="n=3"):
            k.send_raw_batch(slots[:2], 3)
        with pytest.raises(QueueClosedError, match="without a dead-letter queue"):
            k.receive_dead_letters()
        assert k.lifecycle is Lifecycle.ACTIVE


@pytest.mark.parametrize("backend,device,mode", BACKENDS)
def test_raw_sends_of_a_direct_message(packages, backend, device, mode):
    """A direct message's raw slot is its C struct: it goes through as is."""
    with launch(packages, "vector_add", backend, device, mode) as k:
        codec = k.in_codec
        arr = np.zeros(3, dtype=codec.dtype)
        arr["id"], arr["a"], arr["b"] = [1, 2, 3], [0.5, 1.5, 2.5], 1.0
        k.send_raw(arr[:1].tobytes())
        k.send_raw_batch(arr[1:])  # an array of records of the slot size
        assert [k.receive(timeout=5.0) for _ in range(3)] == [
            AddResponse(id=i, sum=a + 1.0) for i, a in [(1, 0.5), (2, 1.5), (3, 2.5)]
        ]


@pytest.mark.parametrize("backend,device,mode", BACKENDS)
def test_dead_letters_come_back_marked_in_order(packages, backend, device, mode):
    with launch(packages, "word_stats", backend, device, mode, dead_letters=True) as k:
        sent = [good(0), bad_magic(1), good(2), bad_crc(3), bad_crc(4), good(5)]
        for data in sent:
            k.send_raw(data)
        assert [k.receive(timeout=5.0).id for _ in range(3)] == [0, 2, 5]
        wait_processed(k, 6)
        dead = k.receive_dead_letters()
        assert [(d.reason, d.sequence) for d in dead] == [
            (Reason.BAD_MAGIC, None),
            (Reason.BAD_CRC, 3),
            (Reason.BAD_CRC, 4),
        ]
        for d, i in zip(dead, (1, 3, 4)):
            assert isinstance(d, DeadLetter) and len(d.data) == SLOT
            assert int.from_bytes(d.data[44:48], "little") == HeaderFlag.DEAD_LETTER
            assert int.from_bytes(d.data[48:52], "little") == d.reason
            original = sent[i].ljust(SLOT, b"\0")
            assert d.data[:44] + d.data[52:] == original[:44] + original[52:]
        assert k.receive_dead_letters() == []
        assert k.stats().dead_letters_dropped == 0


@pytest.mark.parametrize("backend,device,mode", BACKENDS)
def test_a_full_dead_letter_queue_counts_and_never_blocks(packages, backend, device, mode):
    """Four slots, twenty bad messages never taken: four come back, sixteen are counted as dropped,
    valid messages keep flowing; dead letters taken out while terminating stay readable."""
    with launch(packages, "word_stats", backend, device, mode, dead_letters=4) as k:
        for i in range(20):
            k.send_raw(bad_crc(i) if i % 2 else bad_magic(i))
            k.send_raw(good(100 + i))
        assert [k.receive(timeout=5.0).id for _ in range(20)] == list(range(100, 120))
        s = wait_processed(k, 40)
        assert s.rejected_total == 20 and s.dead_letters_dropped == 16
        assert [d.reason for d in k.receive_dead_letters(max_n=2)] == [
            Reason.BAD_MAGIC,
            Reason.BAD_CRC,
        ]
        k.send_raw(bad_magic(50))  # room again: this one comes back
        wait_processed(k, 41)
        final = k.terminate()
    assert final.dead_letters_dropped == 16
    assert [d.reason for d in k.receive_dead_letters()] == [
        Reason.BAD_MAGIC,
        Reason.BAD_CRC,
        Reason.BAD_MAGIC,
    ]
    assert k.receive_dead_letters() == []


@pytest.mark.parametrize("backend,device,mode", BACKENDS)
def test_dead_letters_option_is_checked(packages, backend, device, mode):
    with pytest.raises(BuildError, match="vector_add.*bridged input"):
        launch(packages, "vector_add", backend, device, mode, dead_letters=True)
    with pytest.raises(BuildError, match="dead_letters=3"):
        launch(packages, "word_stats", backend, device, mode, dead_letters=3)
