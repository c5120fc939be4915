"""Access tokens: what the verified-token memory may and may not change."""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ridehail.accounts import security
from ridehail.accounts.security import Tokens
from ridehail.kernel.auth import Principal, Role
from ridehail.kernel.errors import AuthenticationFailed

DRIVER = Principal(subject_id="drv_1", role=Role.DRIVER)
#: 64 bytes: PyJWT warns of shorter keys for HS512, which one test signs with.
SECRET = "s" * 64


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def tokens(clock: Clock | None = None, ttl_s: int = 60) -> Tokens:
    return Tokens(
        secret=SECRET,
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
    other = Tokens(secret="o" * 64, issuer="ridehail", audience="ridehail-api", ttl_s=60)
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


# --- the check of our own tokens against PyJWT's ------------------------------------------


def pyjwt_only(issuer: Tokens, token: str) -> Principal | None:
    """What PyJWT alone decides (None: refused), at the real time."""
    try:
        principal, not_before, expires = issuer._check(token)
    except AuthenticationFailed:
        return None
    return principal if not_before <= time.time() < expires else None


def fast_verify(issuer: Tokens, token: str) -> Principal | None:
    """What :meth:`Tokens.verify` decides, from a fresh memory (None: refused)."""
    issuer._verified.clear()
    try:
        return issuer.verify(token)
    except AuthenticationFailed:
        return None


def claims(changes: dict[str, Any]) -> dict[str, object]:
    """The claims :meth:`Tokens.issue` writes, with ``changes`` (None drops a claim; ``iat``,
    ``nbf`` and ``exp`` are given as whole seconds from now; ``at``: ``exp`` as a float,
    that many seconds from now)."""
    now = int(time.time())
    base: dict[str, object] = {
        "sub": "drv_1",
        "role": "driver",
        "iss": "ridehail",
        "aud": "ridehail-api",
        "iat": now,
        "nbf": now,
        "exp": now + 60,
        "jti": "tok_1",
    }
    for name, value in changes.items():
        if name == "at":
            base["exp"] = time.time() + value
        elif name in ("iat", "nbf", "exp") and value is not None:
            base[name] = now + value
        else:
            base[name] = value
    return {k: v for k, v in base.items() if v is not None}


def test_an_issued_token_takes_the_own_check_and_agrees_with_pyjwt() -> None:
    issuer = tokens()
    token = issuer.issue(DRIVER)
    own = issuer._check_own(token)
    assert own is not None
    principal, not_before, expires = issuer._check(token)
    assert own == (principal, not_before, expires)


@pytest.mark.parametrize(
    ("label", "changes", "headers", "key", "algorithm", "accepted"),
    [
        ("expired beyond the leeway", {"exp": -10}, None, SECRET, "HS256", False),
        ("expired within the leeway", {"exp": -2}, None, SECRET, "HS256", True),
        ("not yet valid", {"nbf": 60}, None, SECRET, "HS256", False),
        ("issued in the future", {"iat": 60}, None, SECRET, "HS256", False),
        ("nbf within the leeway", {"nbf": 2}, None, SECRET, "HS256", True),
        ("another issuer", {"iss": "someone-else"}, None, SECRET, "HS256", False),
        ("another audience", {"aud": "another-api"}, None, SECRET, "HS256", False),
        ("audience as a list", {"aud": ["ridehail-api"]}, None, SECRET, "HS256", True),
        ("unknown role", {"role": "superuser"}, None, SECRET, "HS256", False),
        ("subject not a string", {"sub": 42}, None, SECRET, "HS256", False),
        ("float times", {"at": 60.5}, None, SECRET, "HS256", True),
        ("an extra claim", {"extra": "x"}, None, SECRET, "HS256", True),
        ("no jti", {"jti": None}, None, SECRET, "HS256", True),
        ("no exp", {"exp": None}, None, SECRET, "HS256", False),
        ("another key", {}, None, "o" * 48, "HS256", False),
        ("another algorithm, same key", {}, None, SECRET, "HS512", False),
        ("a header of another shape", {}, {"kid": "1"}, SECRET, "HS256", True),
    ],
)
def test_tokens_of_every_shape_get_the_answer_pyjwt_gives(
    label: str,
    changes: dict[str, Any],
    headers: dict[str, str] | None,
    key: str,
    algorithm: str,
    accepted: bool,
) -> None:
    issuer = tokens()
    token = jwt.encode(claims(changes), key, algorithm=algorithm, headers=headers)
    answer = fast_verify(issuer, token)
    assert answer == pyjwt_only(issuer, token), label
    assert (answer is not None) is accepted, label


def test_an_unsigned_token_is_refused() -> None:
    issuer = tokens()
    token = jwt.encode(claims({}), None, algorithm="none")
    assert fast_verify(issuer, token) is None
    # Our header glued to the unsigned payload, with no signature or a wrong one.
    own_header = issuer.issue(DRIVER).split(".")[0]
    payload = token.split(".")[1]
    for signature in ("", "AAAA", payload):
        assert fast_verify(issuer, f"{own_header}.{payload}.{signature}") is None


@given(
    position=st.integers(min_value=0, max_value=400),
    replacement=st.sampled_from([*"AaZz09-_+/=.", "é", " ", ""]),
)
@settings(max_examples=300, deadline=None)
def test_an_altered_token_gets_the_answer_pyjwt_gives(position: int, replacement: str) -> None:
    issuer = tokens()
    token = issuer.issue(DRIVER)
    at = position % len(token)
    altered = token[:at] + replacement + token[at + 1 :]
    assert fast_verify(issuer, altered) == pyjwt_only(issuer, altered)
