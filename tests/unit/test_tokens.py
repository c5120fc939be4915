"""Access tokens: what the verified-token memory may and may not change."""

from __future__ import annotations

import time

import pytest

from ridehail.accounts import security
from ridehail.accounts.security import Tokens
from ridehail.kernel.auth import Principal, Role
from ridehail.kernel.errors import AuthenticationFailed

DRIVER = Principal(subject_id="drv_1", role=Role.DRIVER)


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def tokens(clock: Clock | None = None, ttl_s: int = 60) -> Tokens:
    return Tokens(
        secret="s" * 48,
        issuer="ridehail",
        audience="ridehail-api",
        ttl_s=ttl_s,
        clock=clock or time.time,
    )


def test_a_verified_token_is_accepted_again_while_valid() -> None:
    clock = Clock(time.time())
    issuer = tokens(clock)
    token = issuer.issue(DRIVER)
    assert issuer.verify(token) == DRIVER
    clock.now += 30
    assert issuer.verify(token) == DRIVER


def test_a_remembered_token_still_expires() -> None:
    clock = Clock(time.time())
    issuer = tokens(clock, ttl_s=60)
    token = issuer.issue(DRIVER)
    issuer.verify(token)
    clock.now += 60 + security.LEEWAY_S + 1
    with pytest.raises(AuthenticationFailed):
        issuer.verify(token)
    # Forgotten after the refusal, and the full check (real time) is what runs next.
    assert token not in issuer._verified


def test_a_token_altered_after_verification_is_refused() -> None:
    issuer = tokens()
    token = issuer.issue(DRIVER)
    issuer.verify(token)
    head, payload, signature = token.split(".")
    flipped = signature[:-2] + ("AA" if signature[-2:] != "AA" else "BB")
    with pytest.raises(AuthenticationFailed):
        issuer.verify(f"{head}.{payload}.{flipped}")


def test_another_key_does_not_share_the_memory() -> None:
    token = tokens().issue(DRIVER)
    other = Tokens(secret="o" * 48, issuer="ridehail", audience="ridehail-api", ttl_s=60)
    with pytest.raises(AuthenticationFailed):
        other.verify(token)


def test_the_memory_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(security, "VERIFIED_CACHE_SIZE", 3)
    issuer = tokens()
    issued = [issuer.issue(Principal(subject_id=f"drv_{n}", role=Role.DRIVER)) for n in range(5)]
    for token in issued:
        issuer.verify(token)
    assert list(issuer._verified) == issued[2:]
    # Evicted tokens still verify, by the full check.
    assert issuer.verify(issued[0]).subject_id == "drv_0"
