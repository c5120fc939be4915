"""Keyset pagination tokens for list endpoints: an opaque (base64url) form of the last id
a page returned; the next page starts after it. Ids sort by creation time, so "after" is
"older" for newest-first lists."""

from __future__ import annotations

import base64
import binascii
from typing import Annotated

from fastapi import Query

from ridehail.kernel.errors import InvalidRequest

PageSize = Annotated[int, Query(ge=1, le=100)]
PageToken = Annotated[str | None, Query(max_length=200)]


def encode_page_token(last_id: str) -> str:
    return base64.urlsafe_b64encode(last_id.encode()).decode().rstrip("=")


def decode_page_token(token: str | None, prefix: str) -> str | None:
    """The id a ``page_token`` stands for (None for no token); 422 unless it decodes to an
    id with ``prefix`` (a token of another list is not valid here)."""
    if not token:
        return None
    try:
        value = base64.urlsafe_b64decode((token + "=" * (-len(token) % 4)).encode()).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise InvalidRequest("page_token is not valid") from exc
    if not value.startswith(prefix):
        raise InvalidRequest("page_token is not valid")
    return value
