"""SlotBatches for bridged messages: objects go straight into slots and slots straight back to objects,
with no view rows in between (the columnar path is for arrays), and the bytes are the codec's own.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ringgen.build import import_target
from ringgen.errors import EncodeError
from ringgen.runtime.batches import SlotBatches
from ringgen.jit import built_package

import_target(str(Path(__file__).resolve().parent.parent / "examples" / "__init__.py"))
from examples.word_stats import Word, WordStat, word_stats  # noqa: E402


@pytest.fixture(scope="module")
def codecs():
    return built_package(word_stats.spec)[1]


class _NoColumns:
    """A codec whose view-row (columnar) methods fail: what the per-object paths must not touch."""

    def __init__(self, codec, with_pack_into: bool = True) -> None:
        self._codec = codec
        self._with_pack_into = with_pack_into

    def __getattr__(self, name):
        if name in ("to_array", "from_array", "pack_array", "unpack_array", "encode_batch"):
            raise AssertionError(f"the per-object path called {name}")
        if name == "pack_into" and not self._with_pack_into:
            raise AttributeError(name)
        return getattr(self._codec, name)


@pytest.mark.parametrize("with_pack_into", [True, False])
def test_bridged_objects_go_straight_into_slots_and_back(codecs, with_pack_into):
    words = [Word(id=i, text="ab" * i) for i in range(5)]
    stats = [
        WordStat(id=i, text="w" * i, length=i, is_stop_word=i % 2 == 0, negated=False)
        for i in range(5)
    ]
    fmt = SlotBatches(
        "word_stats",
        _NoColumns(codecs["Word"], with_pack_into),
        _NoColumns(codecs["WordStat"], with_pack_into),
    )
    slots = fmt.input_batch(words)
    assert slots.dtype == fmt.in_slot and len(slots) == 5
    size = codecs["Word"].slot_size
    flat = slots.view(np.uint8)
    assert [codecs["Word"].unpack(flat, i * size) for i in range(5)] == words

    out = np.zeros(5, dtype=fmt.out_slot)
    oflat = out.view(np.uint8)
    osize = codecs["WordStat"].slot_size
    for i, s in enumerate(stats):
        data = codecs["WordStat"].pack(s)
        oflat[i * osize : i * osize + len(data)] = np.frombuffer(data, np.uint8)
    assert fmt.to_objects(out) == stats
    assert fmt.to_array(out[1:3]) == stats[1:3]


def test_bridged_object_over_its_bound_is_refused_by_name(codecs):
    fmt = SlotBatches("word_stats", codecs["Word"], codecs["WordStat"])
    with pytest.raises(EncodeError, match="text"):
        fmt.input_batch([Word(id=1, text="x" * 10_000)])
