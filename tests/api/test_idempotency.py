"""Idempotency-Key on POST (API.md): replay, other body 422, in flight 409, per caller, 24 h."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select, update

from ridehail.db.idempotency import IdempotencyRecord
from ridehail.kernel.clock import utcnow
from ridehail.kernel.geo import offset
from ridehail.rides.models import Ride
from tests.api.client import HELSINKI, Api, User

DROPOFF = offset(*HELSINKI, north_m=2000, east_m=500)
RIDE = {
    "start_latitude": HELSINKI[0],
    "start_longitude": HELSINKI[1],
    "end_latitude": DROPOFF[0],
    "end_longitude": DROPOFF[1],
}


async def post_ride(api: Api, rider: User, key: str, body: dict[str, Any] | None = None) -> Any:
    return await api.http.post(
        "/api/v1/rides",
        json=body or RIDE,
        headers={**rider.headers, "Idempotency-Key": key},
    )


async def rides_of(api: Api, rider: User) -> int:
    async with api.app.state.runtime.db.read_only() as session:
        count = await session.scalar(
            select(func.count()).select_from(Ride).where(Ride.rider_id == rider.id)
        )
    return int(count or 0)


async def test_a_retry_gets_the_first_answer_and_creates_nothing(make_api) -> None:  # type: ignore[no-untyped-def]
    async with make_api(dispatch_enabled=False) as api:
        rider, key = await api.rider(), str(uuid.uuid4())
        first = await post_ride(api, rider, key)
        again = await post_ride(api, rider, key)
        assert first.status_code == again.status_code == 202
        assert again.json() == first.json()
        assert again.headers["idempotent-replayed"] == "true"
        assert "idempotent-replayed" not in first.headers
        assert await rides_of(api, rider) == 1


async def test_fifty_concurrent_requests_with_one_key_make_one_ride(make_api) -> None:  # type: ignore[no-untyped-def]
    async with make_api(dispatch_enabled=False) as api:
        rider, key = await api.rider(), str(uuid.uuid4())
        answers = await asyncio.gather(*(post_ride(api, rider, key) for _ in range(50)))
        codes = Counter(a.status_code for a in answers)
        assert set(codes) <= {202, 409}, codes
        assert codes[202] >= 1
        assert len({a.json()["ride_id"] for a in answers if a.status_code == 202}) == 1
        for busy in (a for a in answers if a.status_code == 409):
            assert busy.headers["retry-after"] == "1"
            assert busy.headers["content-type"].startswith("application/problem+json")
        assert await rides_of(api, rider) == 1
        # Once the first has finished, every retry is its replay.
        assert (await post_ride(api, rider, key)).status_code == 202


async def test_the_same_key_with_another_body_is_422_and_changes_nothing(make_api) -> None:  # type: ignore[no-untyped-def]
    async with make_api(dispatch_enabled=False) as api:
        rider, key = await api.rider(), str(uuid.uuid4())
        assert (await post_ride(api, rider, key)).status_code == 202
        other = await post_ride(api, rider, key, {**RIDE, "seats": 2})
        assert other.status_code == 422
        assert other.headers["content-type"].startswith("application/problem+json")
        assert "different request" in other.json()["detail"]
        assert await rides_of(api, rider) == 1


async def test_keys_belong_to_their_caller(make_api) -> None:  # type: ignore[no-untyped-def]
    async with make_api(dispatch_enabled=False) as api:
        first, second, key = await api.rider(), await api.rider(), "shared-key-1"
        a, b = await post_ride(api, first, key), await post_ride(api, second, key)
        assert a.status_code == b.status_code == 202
        assert a.json()["ride_id"] != b.json()["ride_id"]
        assert "idempotent-replayed" not in b.headers
        assert await rides_of(api, first) == await rides_of(api, second) == 1


async def test_errors_are_replayed_too_but_not_failures_of_ours(make_api) -> None:  # type: ignore[no-untyped-def]
    async with make_api(dispatch_enabled=False) as api:
        rider, key = await api.rider(), str(uuid.uuid4())
        bad = {**RIDE, "start_latitude": 91}
        first, again = await post_ride(api, rider, key, bad), await post_ride(api, rider, key, bad)
        assert first.status_code == again.status_code == 422
        assert again.json() == first.json() and again.headers["idempotent-replayed"] == "true"
        assert await rides_of(api, rider) == 0


async def test_bad_keys_and_bad_tokens(make_api) -> None:  # type: ignore[no-untyped-def]
    async with make_api(dispatch_enabled=False) as api:
        rider = await api.rider()
        for key in ("x" * 256, " padded ", "tab\tinside", "é"):
            resp = await api.http.post(
                "/api/v1/rides",
                json=RIDE,
                headers=[*rider.headers.items(), ("Idempotency-Key", key.encode())],
            )
            assert resp.status_code == 422, key
            assert "Idempotency-Key" in resp.json()["detail"]
        key = "k-" + uuid.uuid4().hex
        forged = await api.http.post(
            "/api/v1/rides",
            json=RIDE,
            headers={"Authorization": "Bearer not-a-token", "Idempotency-Key": key},
        )
        assert forged.status_code == 401
        assert await rides_of(api, rider) == 0
        # Nothing was stored under the key: the real caller's request runs.
        ok = await post_ride(api, rider, key)
        assert ok.status_code == 202 and "idempotent-replayed" not in ok.headers


async def test_anonymous_signup_is_replayed_not_refused_as_a_duplicate(make_api) -> None:  # type: ignore[no-untyped-def]
    async with make_api(dispatch_enabled=False) as api:
        body = {
            "name": "Ana",
            "email": f"ana-{uuid.uuid4().hex[:8]}@example.com",
            "password": "pw-123456",
        }
        headers = {"Idempotency-Key": str(uuid.uuid4())}
        first = await api.http.post("/api/v1/riders", json=body, headers=headers)
        again = await api.http.post("/api/v1/riders", json=body, headers=headers)
        assert first.status_code == again.status_code == 201
        assert again.json() == first.json()
        # Without the key the same request is what it is: a duplicate email.
        assert (await api.http.post("/api/v1/riders", json=body)).status_code == 409


async def test_a_key_expires_after_a_day_and_an_abandoned_claim_is_taken_over(make_api) -> None:  # type: ignore[no-untyped-def]
    async with make_api(dispatch_enabled=False) as api:
        db = api.app.state.runtime.db
        body = {
            "name": "Bo",
            "email": f"bo-{uuid.uuid4().hex[:8]}@example.com",
            "password": "pw-123456",
        }
        key = str(uuid.uuid4())
        headers = {"Idempotency-Key": key}
        assert (
            await api.http.post("/api/v1/riders", json=body, headers=headers)
        ).status_code == 201
        async with db.transaction() as session:
            await session.execute(
                update(IdempotencyRecord)
                .where(IdempotencyRecord.key == key)
                .values(expires_at=utcnow() - timedelta(seconds=1))
            )
        # Expired: the request runs again (and meets the account it made a day ago).
        rerun = await api.http.post("/api/v1/riders", json=body, headers=headers)
        assert rerun.status_code == 409 and "idempotent-replayed" not in rerun.headers

        # A claim whose request never finished (its process died) blocks for a minute...
        rider, stuck = await api.rider(), str(uuid.uuid4())
        async with db.transaction() as session:
            session.add(
                IdempotencyRecord(
                    caller=rider.id,
                    key=stuck,
                    fingerprint="0" * 64,
                    state="in_progress",
                    created_at=utcnow() - timedelta(seconds=30),
                    expires_at=utcnow() + timedelta(hours=23),
                )
            )
        assert (await post_ride(api, rider, stuck)).status_code == 422  # other fingerprint
        async with db.transaction() as session:
            await session.execute(
                update(IdempotencyRecord)
                .where(IdempotencyRecord.key == stuck)
                .values(created_at=utcnow() - timedelta(minutes=2))
            )
        # ... then it is taken over by the retry.
        taken = await post_ride(api, rider, stuck)
        assert taken.status_code == 202 and await rides_of(api, rider) == 1
