"""Opaque, time-ordered identifiers.

An id is ``<prefix>_<26 chars>``: 48 bits of milliseconds since the epoch followed by 80
random bits, in Crockford base32 (the ULID layout). Sorting ids sorts by creation time, which
keyset pagination relies on; the random part makes them unguessable.
"""

from __future__ import annotations

import secrets
import time
from datetime import datetime

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def _encode(value: int, length: int) -> str:
    chars = []
    for _ in range(length):
        value, rem = divmod(value, 32)
        chars.append(_ALPHABET[rem])
    return "".join(reversed(chars))


def first_id_at(prefix: str, when: datetime) -> str:
    """The lowest id ``new_id(prefix)`` could return at ``when``: every id made earlier sorts
    before it, so ``id < first_id_at(prefix, t)`` selects by creation time on the primary
    key's index."""
    millis = int(when.timestamp() * 1000)
    return f"{prefix}_{_encode(millis << 80, 26).lower()}"


def new_id(prefix: str) -> str:
    """A new id such as ``ride_01JD3X...``; ids made later sort after ids made earlier."""
    millis = time.time_ns() // 1_000_000
    body = (millis << 80) | secrets.randbits(80)
    return f"{prefix}_{_encode(body, 26).lower()}"
