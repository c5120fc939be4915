"""429 with Retry-After for over-limit callers (API.md), counted per caller and minute."""

from __future__ import annotations

from tests.api.client import Api


async def _me(api: Api, headers: dict[str, str]) -> int:
    return (await api.http.get("/api/v1/riders/me", headers=headers)).status_code


async def test_a_caller_over_the_limit_gets_429_and_others_do_not(make_api) -> None:  # type: ignore[no-untyped-def]
    async with make_api(rate_limit_per_minute=0, dispatch_enabled=False) as setup:
        first, second = await setup.rider(), await setup.rider()
    # A new app on the same backend (database and Redis prefix), now with a small limit.
    async with make_api(rate_limit_per_minute=5, dispatch_enabled=False) as api:
        codes = [await _me(api, first.headers) for _ in range(7)]
        assert codes[:5] == [200] * 5 and codes[5:] == [429, 429], codes
        over = await api.http.get("/api/v1/riders/me", headers=first.headers)
        assert over.status_code == 429
        assert over.headers["content-type"].startswith("application/problem+json")
        assert 1 <= int(over.headers["retry-after"]) <= 60
        assert over.json()["status"] == 429
        # Another caller has their own count.
        assert await _me(api, second.headers) == 200


async def test_anonymous_callers_are_counted_by_address(make_api) -> None:  # type: ignore[no-untyped-def]
    async with make_api(rate_limit_per_minute=3, dispatch_enabled=False) as api:
        codes = [(await api.http.get("/api/v1/riders/me")).status_code for _ in range(4)]
        assert codes == [401, 401, 401, 429]
