"""Every endpoint × {no token, wrong role, other owner, owner} (OWASP API1), and tokens that
must not authenticate (API2)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import jwt
import pytest

from ridehail.kernel.geo import offset
from tests.api.client import HELSINKI, Api, User
from tests.profiles import FAST_SETTINGS

DROPOFF = offset(*HELSINKI, north_m=2000, east_m=0)


async def _status(api: Api, method: str, path: str, user: User | None, json: object = None) -> int:
    headers = user.headers if user else {}
    resp = await api.http.request(method, path, headers=headers, json=json)
    if resp.status_code >= 400:
        assert resp.headers["content-type"].startswith("application/problem+json"), resp.text
        body = resp.json()
        assert body["status"] == resp.status_code and body["title"] and body["detail"]
    return resp.status_code


async def test_account_endpoints(api: Api) -> None:
    rider, driver = await api.rider(), await api.driver()
    assert await _status(api, "GET", "/api/v1/riders/me", None) == 401
    assert await _status(api, "GET", "/api/v1/riders/me", driver) == 403
    assert await _status(api, "GET", "/api/v1/riders/me", rider) == 200
    assert await _status(api, "GET", "/api/v1/drivers/me", None) == 401
    assert await _status(api, "GET", "/api/v1/drivers/me", rider) == 403
    assert await _status(api, "GET", "/api/v1/drivers/me", driver) == 200


@pytest.mark.parametrize(
    ("method", "suffix", "body", "ok"),
    [
        ("PUT", "availability", {"status": "available"}, 200),
        ("PUT", "location", {"latitude": 60.17, "longitude": 24.94}, 204),
        ("GET", "offers", None, 200),
    ],
)
async def test_driver_scoped_endpoints(
    api: Api, method: str, suffix: str, body: object, ok: int
) -> None:
    rider, owner, other = await api.rider(), await api.driver(), await api.driver()
    path = f"/api/v1/drivers/{owner.id}/{suffix}"
    assert await _status(api, method, path, None, body) == 401
    assert await _status(api, method, path, rider, body) == 403
    assert await _status(api, method, path, other, body) == 403
    assert await _status(api, method, path, owner, body) == ok


async def test_a_driver_cannot_move_another_driver(api: Api) -> None:
    victim, attacker = await api.driver(), await api.driver()
    admin = await api.admin()
    await api.go_online(victim, *HELSINKI)
    resp = await api.http.put(
        f"/api/v1/drivers/{victim.id}/location",
        json={"latitude": 61.0, "longitude": 25.0},
        headers=attacker.headers,
    )
    assert resp.status_code == 403
    seen = await api.http.get(
        "/api/v1/drivers/nearby",
        params={"lat": HELSINKI[0], "lon": HELSINKI[1]},
        headers=admin.headers,
    )
    assert [d["latitude"] for d in seen.json()["drivers"]] == [HELSINKI[0]]


async def test_nearby_exact_for_admin_coarse_and_anonymous_for_rider(api: Api) -> None:
    rider, driver, admin = await api.rider(), await api.driver(), await api.admin()
    spot = offset(*HELSINKI, north_m=333, east_m=77)
    await api.go_online(driver, *spot)
    params = {"lat": HELSINKI[0], "lon": HELSINKI[1], "radius_m": 1000}
    assert await _status(api, "GET", "/api/v1/drivers/nearby?lat=60&lon=24", None) == 401
    assert await _status(api, "GET", "/api/v1/drivers/nearby?lat=60&lon=24", driver) == 403
    exact = (
        await api.http.get("/api/v1/drivers/nearby", params=params, headers=admin.headers)
    ).json()
    assert exact["drivers"][0]["driver_id"] == driver.id
    assert (exact["drivers"][0]["latitude"], exact["drivers"][0]["longitude"]) == spot
    coarse = (
        await api.http.get("/api/v1/drivers/nearby", params=params, headers=rider.headers)
    ).json()
    assert len(coarse["drivers"]) == 1
    entry = coarse["drivers"][0]
    assert "driver_id" not in entry or entry["driver_id"] is None
    assert (entry["latitude"], entry["longitude"]) != spot
    from ridehail.kernel.geo import haversine_m

    assert haversine_m(entry["latitude"], entry["longitude"], *spot) < 100


async def test_ride_endpoints_matrix(api: Api) -> None:
    rider, other_rider = await api.rider(), await api.rider()
    driver, other_driver = await api.driver(), await api.driver()
    admin = await api.admin()
    await api.go_online(driver, *offset(*HELSINKI, north_m=100, east_m=0))
    create = {
        "start_latitude": HELSINKI[0],
        "start_longitude": HELSINKI[1],
        "end_latitude": DROPOFF[0],
        "end_longitude": DROPOFF[1],
    }
    assert await _status(api, "POST", "/api/v1/rides", None, create) == 401
    assert await _status(api, "POST", "/api/v1/rides", driver, create) == 403
    assert await _status(api, "POST", "/api/v1/rides", admin, create) == 403
    ride = await api.request_ride(rider, HELSINKI, DROPOFF)
    path = f"/api/v1/rides/{ride['ride_id']}"

    assert await _status(api, "GET", path, None) == 401
    assert await _status(api, "GET", path, other_rider) == 404
    assert await _status(api, "GET", path, other_driver) == 404
    assert await _status(api, "GET", path, rider) == 200
    assert await _status(api, "GET", path, admin) == 200

    await api.wait_for_offer(driver, ride["ride_id"])
    for verb in ("accept", "decline"):
        assert await _status(api, "POST", f"{path}:{verb}", None) == 401
        assert await _status(api, "POST", f"{path}:{verb}", rider) == 403
        assert await _status(api, "POST", f"{path}:{verb}", other_driver) == 404
    assert await _status(api, "POST", f"{path}:accept", driver) == 200
    assert await _status(api, "GET", path, driver) == 200

    for verb in ("arrive", "start", "complete"):
        assert await _status(api, "POST", f"{path}:{verb}", None) == 401
        assert await _status(api, "POST", f"{path}:{verb}", rider) == 403
        assert await _status(api, "POST", f"{path}:{verb}", other_driver) == 404
        assert await _status(api, "POST", f"{path}:{verb}", driver) == 200

    assert await _status(api, "POST", f"{path}:cancel", None) == 401
    assert await _status(api, "POST", f"{path}:cancel", other_rider) == 404
    assert await _status(api, "POST", f"{path}:cancel", other_driver) == 404
    assert await _status(api, "POST", f"{path}:cancel", rider) == 409  # completed already


async def test_listing_shows_only_own_rides_except_to_admin(api: Api) -> None:
    a, b, admin = await api.rider(), await api.rider(), await api.admin()
    ride_a = await api.request_ride(a, HELSINKI, DROPOFF)
    ride_b = await api.request_ride(b, HELSINKI, DROPOFF)
    mine = (await api.http.get("/api/v1/rides", headers=a.headers)).json()["rides"]
    assert [r["ride_id"] for r in mine] == [ride_a["ride_id"]]
    everyone = (await api.http.get("/api/v1/rides", headers=admin.headers)).json()["rides"]
    assert {r["ride_id"] for r in everyone} >= {ride_a["ride_id"], ride_b["ride_id"]}
    assert await _status(api, "GET", "/api/v1/rides", None) == 401


def _forge(
    claims: dict[str, object], *, secret: str = FAST_SETTINGS["jwt_secret"], alg: str = "HS256"
) -> str:
    return jwt.encode(claims, secret, algorithm=alg)


async def test_tokens_that_must_not_authenticate(api: Api) -> None:
    rider = await api.rider()
    now = datetime.now(UTC)
    good = {
        "sub": rider.id,
        "role": "rider",
        "iss": "ridehail",
        "aud": "ridehail-api",
        "iat": now,
        "exp": now + timedelta(minutes=5),
    }
    unsigned = jwt.encode({**good, "role": "admin"}, key="", algorithm="none")
    bad_tokens = {
        "garbage": "not-a-token",
        "alg none": unsigned,
        "expired": _forge(
            {**good, "iat": now - timedelta(hours=2), "exp": now - timedelta(hours=1)}
        ),
        "wrong audience": _forge({**good, "aud": "someone-else"}),
        "wrong issuer": _forge({**good, "iss": "evil"}),
        "other secret": _forge(good, secret="another-secret-entirely-0123456789abcdef"),
        "unknown role": _forge({**good, "role": "superuser"}),
        "no exp": _forge({k: v for k, v in good.items() if k != "exp"}),
    }
    for name, token in bad_tokens.items():
        resp = await api.http.get("/api/v1/riders/me", headers={"Authorization": f"Bearer {token}"})
        assert resp.status_code == 401, name
        assert resp.headers.get("www-authenticate") == "Bearer"
    ok = await api.http.get(
        "/api/v1/riders/me", headers={"Authorization": f"Bearer {_forge(good)}"}
    )
    assert ok.status_code == 200


async def test_wrong_password_and_unknown_email_look_the_same(api: Api) -> None:
    rider = await api.rider()
    wrong = await api.http.post(
        "/api/v1/auth/token", json={"email": rider.email, "password": "nope-nope"}
    )
    unknown = await api.http.post(
        "/api/v1/auth/token", json={"email": "nobody@example.com", "password": "nope-nope"}
    )
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json()["detail"] == unknown.json()["detail"]


async def test_duplicate_email_is_409(api: Api) -> None:
    rider = await api.rider()
    resp = await api.http.post(
        "/api/v1/riders",
        json={"name": "X", "email": rider.email.upper(), "password": "another-pass"},
    )
    assert resp.status_code == 409
