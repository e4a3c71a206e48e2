"""Opaque, time-ordered public identifiers (ULID-style, Crockford base32, with a type prefix).

Row counters leak business volume; these do not, and they sort by creation time, which keeps
B-tree inserts local and gives keyset pagination a stable tie-breaker.
"""

from __future__ import annotations

import os
import time

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"


def _base32(value: int, length: int) -> str:
    chars = []
    for _ in range(length):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def new_id(prefix: str) -> str:
    """``prefix_`` + 10 chars of millisecond time + 16 chars of randomness."""
    millis = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    return f"{prefix}_{_base32(millis, 10)}{_base32(rand, 16)}"
