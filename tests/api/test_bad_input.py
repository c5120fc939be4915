"""Bad input is 422 (413 when too large) in problem+json, and nothing is stored."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from typing import Any

import pytest

from tests.api.client import HELSINKI, Api

GOOD_RIDE = {
    "start_latitude": 60.17,
    "start_longitude": 24.94,
    "end_latitude": 60.2,
    "end_longitude": 24.9,
}

BAD_RIDES = {
    "latitude out of range": {**GOOD_RIDE, "start_latitude": 90.0001},
    "longitude out of range": {**GOOD_RIDE, "end_longitude": -180.5},
    "string for a number": {**GOOD_RIDE, "start_latitude": "60.17"},
    "bool for a number": {**GOOD_RIDE, "start_latitude": True},
    "null for a number": {**GOOD_RIDE, "start_latitude": None},
    "unknown field": {**GOOD_RIDE, "driver_id": "drv_x"},
    "missing field": {k: v for k, v in GOOD_RIDE.items() if k != "end_latitude"},
    "list instead of object": [GOOD_RIDE],
}

RAW_BAD_RIDES = {
    "NaN": GOOD_RIDE | {"start_latitude": "__NaN__"},
    "Infinity": GOOD_RIDE | {"start_longitude": "__Infinity__"},
    "-Infinity": GOOD_RIDE | {"end_latitude": "__-Infinity__"},
    "1e309": GOOD_RIDE | {"end_longitude": "__1e309__"},
}


def _raw(body: Mapping[str, object]) -> bytes:
    """JSON with literal NaN / Infinity / 1e309 tokens, as a hostile client would send."""
    text = json.dumps(body)
    for token in ("NaN", "-Infinity", "Infinity", "1e309"):
        text = text.replace(f'"__{token}__"', token)
    return text.encode()


def _assert_validation_problem(resp, case: str = "") -> None:  # type: ignore[no-untyped-def]
    assert resp.status_code == 422, (case, resp.text)
    assert resp.headers["content-type"].startswith("application/problem+json")
    body = resp.json()
    assert body["status"] == 422 and body["type"] and body["title"] and body["detail"]
    assert isinstance(body.get("errors"), list) and body["errors"]


async def _ride_count(api: Api, rider) -> int:  # type: ignore[no-untyped-def]
    resp = await api.http.get("/api/v1/rides", headers=rider.headers)
    return len(resp.json()["rides"])


async def test_bad_ride_requests_are_422_and_store_nothing(api: Api) -> None:
    rider = await api.rider()
    for name, body in BAD_RIDES.items():
        resp = await api.http.post("/api/v1/rides", json=body, headers=rider.headers)
        _assert_validation_problem(resp, name)
    for name, body in RAW_BAD_RIDES.items():
        resp = await api.http.post(
            "/api/v1/rides",
            content=_raw(body),
            headers={**rider.headers, "content-type": "application/json"},
        )
        _assert_validation_problem(resp)
        assert "finite" in resp.text or "number" in resp.text, name
    broken = await api.http.post(
        "/api/v1/rides",
        content=b'{"start_latitude": 60.1,',
        headers={**rider.headers, "content-type": "application/json"},
    )
    _assert_validation_problem(broken)
    assert await _ride_count(api, rider) == 0


async def test_bad_locations_are_422_and_store_nothing(api: Api) -> None:
    driver, admin = await api.driver(), await api.admin()
    await api.http.put(
        f"/api/v1/drivers/{driver.id}/availability",
        json={"status": "available"},
        headers=driver.headers,
    )
    good = {"latitude": HELSINKI[0], "longitude": HELSINKI[1]}
    bad = [
        {**good, "latitude": -91},
        {**good, "longitude": 181},
        {**good, "latitude": "60.1"},
        {**good, "heading": 360},
        {**good, "speed_mps": -1},
        {**good, "accuracy_m": -5},
        {**good, "recorded_at": "yesterday"},
        {**good, "recorded_at": "2026-01-01T10:00:00"},  # no zone
        {**good, "altitude": 10},
        {"latitude": HELSINKI[0]},
    ]
    for body in bad:
        resp = await api.http.put(
            f"/api/v1/drivers/{driver.id}/location", json=body, headers=driver.headers
        )
        _assert_validation_problem(resp)
    for token in ("NaN", "Infinity", "1e309"):
        resp = await api.http.put(
            f"/api/v1/drivers/{driver.id}/location",
            content=_raw({**good, "latitude": f"__{token}__"}),
            headers={**driver.headers, "content-type": "application/json"},
        )
        _assert_validation_problem(resp)
    future = await api.http.put(
        f"/api/v1/drivers/{driver.id}/location",
        json={**good, "recorded_at": "2999-01-01T00:00:00Z"},
        headers=driver.headers,
    )
    assert future.status_code == 422
    seen = await api.http.get(
        "/api/v1/drivers/nearby",
        params={"lat": HELSINKI[0], "lon": HELSINKI[1]},
        headers=admin.headers,
    )
    assert seen.json()["drivers"] == []


async def test_bad_registrations_are_422_and_create_no_account(api: Api) -> None:
    good = {"name": "N", "email": "fresh@example.com", "password": "long-enough"}
    for body in [
        {**good, "email": "not-an-email"},
        {**good, "password": "short"},
        {**good, "name": ""},
        {**good, "role": "admin"},
        {**good, "name": 12},
        {k: v for k, v in good.items() if k != "password"},
    ]:
        _assert_validation_problem(await api.http.post("/api/v1/riders", json=body))
    driver_body = {
        **good,
        "license_number": "L1",
        "vehicle": {"make": "A", "model": "B", "plate": "C"},
    }
    for body in [
        {**driver_body, "vehicle": {"make": "A", "model": "B"}},
        {**driver_body, "vehicle": {**driver_body["vehicle"], "seats": 0}},  # type: ignore[dict-item]
        {**driver_body, "vehicle": {**driver_body["vehicle"], "wheels": 4}},  # type: ignore[dict-item]
        {**driver_body, "is_active": False},
    ]:
        _assert_validation_problem(await api.http.post("/api/v1/drivers", json=body))
    # Nothing was stored: the email is still free and cannot sign in.
    denied = await api.http.post(
        "/api/v1/auth/token", json={"email": good["email"], "password": good["password"]}
    )
    assert denied.status_code == 401
    assert (await api.http.post("/api/v1/riders", json=good)).status_code == 201


async def test_bad_query_and_availability_values(api: Api) -> None:
    rider, driver = await api.rider(), await api.driver()
    bad_params: list[dict[str, Any]] = [
        {"lat": "nan", "lon": 24},
        {"lat": 60, "lon": "inf"},
        {"lat": 91, "lon": 24},
        {"lat": 60, "lon": 24, "radius_m": 0},
        {"lat": 60, "lon": 24, "radius_m": 10_000_000},
        {"lat": 60, "lon": 24, "limit": 0},
        {"lon": 24},
    ]
    for params in bad_params:
        resp = await api.http.get("/api/v1/drivers/nearby", params=params, headers=rider.headers)
        assert resp.status_code == 422, params
    bad_pages: list[dict[str, Any]] = [
        {"page_size": 0},
        {"page_size": 101},
        {"status": "flying"},
        {"page_token": "@@@"},
    ]
    for params in bad_pages:
        resp = await api.http.get("/api/v1/rides", params=params, headers=rider.headers)
        assert resp.status_code == 422, params
    resp = await api.http.put(
        f"/api/v1/drivers/{driver.id}/availability", json={"status": "busy"}, headers=driver.headers
    )
    _assert_validation_problem(resp)
    me = await api.http.get("/api/v1/drivers/me", headers=driver.headers)
    assert me.json()["availability"] == "offline"


@pytest.mark.parametrize("chunked", [False, True])
async def test_oversized_body_is_413(make_api, chunked: bool) -> None:  # type: ignore[no-untyped-def]
    async with make_api(max_body_bytes=1024) as api:
        rider = await api.rider()
        payload = json.dumps({**GOOD_RIDE, "padding": "x" * 4096}).encode()
        if chunked:

            async def stream() -> AsyncIterator[bytes]:
                for i in range(0, len(payload), 512):
                    yield payload[i : i + 512]

            resp = await api.http.post(
                "/api/v1/rides",
                content=stream(),
                headers={**rider.headers, "content-type": "application/json"},
            )
        else:
            resp = await api.http.post(
                "/api/v1/rides",
                content=payload,
                headers={**rider.headers, "content-type": "application/json"},
            )
        assert resp.status_code == 413
        assert resp.headers["content-type"].startswith("application/problem+json")
        assert await _ride_count(api, rider) == 0


async def test_unknown_route_and_method_are_problems(api: Api) -> None:
    resp = await api.http.get("/api/v1/nothing-here")
    assert resp.status_code == 404
    assert resp.headers["content-type"].startswith("application/problem+json")
    resp = await api.http.delete("/api/v1/rides")
    assert resp.status_code == 405
    assert resp.headers["content-type"].startswith("application/problem+json")
