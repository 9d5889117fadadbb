"""The bridged wire format: a 256-byte header, a MemoryPack payload, a CRC-32 (docs/wire-format.md).

``encode(message) -> bytes`` and ``decode(MessageClass, data)`` work for every message: a direct one is
its C struct, a bridged one is header + payload. ``encode_batch`` builds the slots of a whole batch
from numpy columns without a Python loop per message.
"""

from __future__ import annotations

from .codec import BridgedCodec, codec_for, decode, encode
from .columnar import encode_batch
from .header import HEADER_SIZE, MAGIC, Header, HeaderFlag, now_ticks

__all__ = [
    "BridgedCodec",
    "HEADER_SIZE",
    "Header",
    "HeaderFlag",
    "MAGIC",
    "codec_for",
    "decode",
    "encode",
    "encode_batch",
    "now_ticks",
]
