"""Word statistics over bridged strings: each word is classified and counted in kernel state.

``Word`` holds a ``Str[32]``, so it travels serialized (header + MemoryPack payload) and the kernel
decodes it before the handler runs; the handler uses what the language offers on strings: ``len``,
``==`` against literals and ``startswith``.
"""

import ringgen as rg
from ringgen.types import Array, Str, bool_, i64, u32, u64

MAX_WORD = 32


@rg.message
class Word:
    id: i64
    text: Str[32]


@rg.message
class WordStat:
    id: i64
    text: Str[32]  # the word, echoed back
    length: u32  # UTF-8 bytes
    is_stop_word: bool_
    negated: bool_  # starts with "un" or "non"


@rg.state
class WordTotals:
    words: u64 = 0
    total_bytes: u64 = 0
    stop_words: u64 = 0
    by_length: Array[u64, 33] = 0  # by_length[n]: words of n bytes


@rg.ring_kernel
def word_stats(w: Word, st: WordTotals) -> WordStat:
    n = len(w.text)
    stop = w.text == "the" or w.text == "a" or w.text == "an" or w.text == "and" or w.text == "of"
    rg.atomic_add(st.words, 1)
    rg.atomic_add(st.total_bytes, n)
    if stop:
        rg.atomic_add(st.stop_words, 1)
    rg.atomic_add(st.by_length[n], 1)
    negated = w.text.startswith("un") or w.text.startswith("non")
    return WordStat(id=w.id, text=w.text, length=u32(n), is_stop_word=stop, negated=negated)
