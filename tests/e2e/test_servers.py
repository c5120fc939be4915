"""Real server processes on real sockets: the README's walk-through over HTTP."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import httpx
import pytest

from ridehail import tally
from ridehail.kernel.geo import offset
from tests.e2e.conftest import Processes, free_port, server_env

pytestmark = pytest.mark.e2e

PICKUP = (60.1699, 24.9384)
DROPOFF = offset(*PICKUP, north_m=3000, east_m=0)


def walkthrough(base_url: str) -> dict[str, object]:
    """Register, go online, request, get the offer, accept, drive, complete."""
    tag = uuid.uuid4().hex[:8]
    with httpx.Client(base_url=base_url, timeout=10) as http:
        assert (
            http.post(
                "/api/v1/riders",
                json={
                    "name": "Rita",
                    "email": f"rita-{tag}@example.com",
                    "password": "correct-horse",
                },
            ).status_code
            == 201
        )
        driver = http.post(
            "/api/v1/drivers",
            json={
                "name": "Dmitri",
                "email": f"dmitri-{tag}@example.com",
                "password": "correct-horse",
                "license_number": "L-1",
                "vehicle": {"make": "Skoda", "model": "Octavia", "plate": "ZZZ-9"},
            },
        ).json()
        rider_token = http.post(
            "/api/v1/auth/token",
            json={"email": f"rita-{tag}@example.com", "password": "correct-horse"},
        ).json()["access_token"]
        driver_token = http.post(
            "/api/v1/auth/token",
            json={"email": f"dmitri-{tag}@example.com", "password": "correct-horse"},
        ).json()["access_token"]
        rh = {"Authorization": f"Bearer {rider_token}"}
        dh = {"Authorization": f"Bearer {driver_token}"}
        did = driver["driver_id"]
        assert (
            http.put(
                f"/api/v1/drivers/{did}/availability", json={"status": "available"}, headers=dh
            ).status_code
            == 200
        )
        near = offset(*PICKUP, north_m=150, east_m=0)
        assert (
            http.put(
                f"/api/v1/drivers/{did}/location",
                json={"latitude": near[0], "longitude": near[1]},
                headers=dh,
            ).status_code
            == 204
        )
        ride = http.post(
            "/api/v1/rides",
            json={
                "start_latitude": PICKUP[0],
                "start_longitude": PICKUP[1],
                "end_latitude": DROPOFF[0],
                "end_longitude": DROPOFF[1],
            },
            headers=rh,
        )
        assert ride.status_code == 202, ride.text
        ride_id = ride.json()["ride_id"]
        deadline = time.monotonic() + 15
        offers: list[dict[str, object]] = []
        while time.monotonic() < deadline and not offers:
            offers = http.get(f"/api/v1/drivers/{did}/offers", headers=dh).json()["offers"]
            time.sleep(0.1)
        assert offers and offers[0]["ride_id"] == ride_id
        for verb, status in (
            ("accept", "driver_en_route"),
            ("arrive", "driver_arrived"),
            ("start", "in_progress"),
        ):
            if verb == "start":  # the driver is at the pickup when the trip starts
                at_pickup = {"latitude": PICKUP[0], "longitude": PICKUP[1], "accuracy_m": 5}
                http.put(f"/api/v1/drivers/{did}/location", json=at_pickup, headers=dh)
            resp = http.post(f"/api/v1/rides/{ride_id}:{verb}", headers=dh)
            assert resp.status_code == 200, resp.text
            assert resp.json()["status"] == status
        for i in range(1, 7):
            lat, lon = offset(*PICKUP, north_m=500 * i, east_m=0)
            assert (
                http.put(
                    f"/api/v1/drivers/{did}/location",
                    json={"latitude": lat, "longitude": lon, "accuracy_m": 5},
                    headers=dh,
                ).status_code
                == 204
            )
        done = http.post(f"/api/v1/rides/{ride_id}:complete", headers=dh)
        assert done.status_code == 200, done.text
        body = done.json()
        assert body["status"] == "completed"
        assert abs(body["distance_m"] - 3000) < 10
        seen = http.get(f"/api/v1/rides/{ride_id}", headers=rh).json()
        assert seen["fare"] == body["fare"]
        metrics = http.get("/metrics").text
        assert "ridehail_http_requests_total" in metrics
        return dict(body)


def test_embedded_default_serves_the_walkthrough(processes: Processes, tmp_path: Path) -> None:
    port = free_port()
    env = server_env(
        {
            "RIDEHAIL_VAR_DIR": str(tmp_path / "var"),
            "RIDEHAIL_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/var/ridehail.db",
        }
    )
    env.pop("RIDEHAIL_JWT_SECRET")  # the embedded default makes and keeps its own
    processes.start(["serve", "--port", str(port)], env, "serve")
    base = f"http://127.0.0.1:{port}"
    processes.wait_ready(base)
    walkthrough(base)
    assert (tmp_path / "var" / "jwt_secret").exists()


def start_production(
    processes: Processes, *, database_url: str, redis_url: str, key_prefix: str, apis: int
) -> list[str]:
    """``apis`` API processes (``serve --role api``) and one ``worker dispatch`` on
    PostgreSQL + Redis; returns the API base URLs once every one is ready."""
    env = server_env(
        {
            "RIDEHAIL_DATABASE_URL": database_url,
            "RIDEHAIL_REDIS_URL": redis_url,
            "RIDEHAIL_REDIS_KEY_PREFIX": key_prefix,
        }
    )
    urls = []
    for i in range(apis):
        port = free_port()
        processes.start(["serve", "--role", "api", "--port", str(port)], env, f"api{i}")
        urls.append(f"http://127.0.0.1:{port}")
    processes.start(["worker", "dispatch"], env, "dispatch")
    for url in urls:
        processes.wait_ready(url)
    return urls


def test_production_profile_api_and_dispatch_worker_processes(
    pg_db: str, redis_url: str, redis_prefix: str, processes: Processes
) -> None:
    urls = start_production(
        processes, database_url=pg_db, redis_url=redis_url, key_prefix=redis_prefix, apis=2
    )
    walkthrough(urls[0])
    walkthrough(urls[1])


async def test_rider_on_one_api_process_sees_driver_on_another(
    pg_db: str, redis_url: str, redis_prefix: str, processes: Processes
) -> None:
    """Live tracking across processes: Redis pub/sub carries status and positions."""
    import asyncio
    import contextlib
    import json

    from websockets.asyncio.client import connect

    a, b = start_production(
        processes, database_url=pg_db, redis_url=redis_url, key_prefix=redis_prefix, apis=2
    )
    tag = uuid.uuid4().hex[:8]
    async with (
        httpx.AsyncClient(base_url=a, timeout=10) as on_a,
        httpx.AsyncClient(base_url=b, timeout=10) as on_b,
    ):
        await on_a.post(
            "/api/v1/riders",
            json={"name": "R", "email": f"r-{tag}@example.com", "password": "correct-horse"},
        )
        driver = (
            await on_b.post(
                "/api/v1/drivers",
                json={
                    "name": "D",
                    "email": f"d-{tag}@example.com",
                    "password": "correct-horse",
                    "license_number": "L",
                    "vehicle": {"make": "M", "model": "X", "plate": "P"},
                },
            )
        ).json()
        rider_token = (
            await on_a.post(
                "/api/v1/auth/token",
                json={"email": f"r-{tag}@example.com", "password": "correct-horse"},
            )
        ).json()["access_token"]
        driver_token = (
            await on_b.post(
                "/api/v1/auth/token",
                json={"email": f"d-{tag}@example.com", "password": "correct-horse"},
            )
        ).json()["access_token"]
        dh = {"Authorization": f"Bearer {driver_token}"}
        did = driver["driver_id"]
        await on_b.put(
            f"/api/v1/drivers/{did}/availability", json={"status": "available"}, headers=dh
        )
        start = offset(*PICKUP, north_m=200, east_m=0)
        await on_b.put(
            f"/api/v1/drivers/{did}/location",
            json={"latitude": start[0], "longitude": start[1]},
            headers=dh,
        )
        ride = (
            await on_a.post(
                "/api/v1/rides",
                headers={"Authorization": f"Bearer {rider_token}"},
                json={
                    "start_latitude": PICKUP[0],
                    "start_longitude": PICKUP[1],
                    "end_latitude": DROPOFF[0],
                    "end_longitude": DROPOFF[1],
                },
            )
        ).json()
        ws = await connect(
            a.replace("http://", "ws://") + f"/api/v1/rides/{ride['ride_id']}/events"
        )
        await ws.send(json.dumps({"type": "auth", "access_token": rider_token}))

        async def next_of(kind: str) -> dict[str, object]:
            async with asyncio.timeout(15):
                while True:
                    message = json.loads(await ws.recv())
                    if message["type"] == kind:
                        return dict(message)

        assert (await next_of("ride.status"))["ride"]["status"] == "searching"  # type: ignore[index]
        async with asyncio.timeout(15):
            while not (await on_b.get(f"/api/v1/drivers/{did}/offers", headers=dh)).json()[
                "offers"
            ]:
                await asyncio.sleep(0.1)
        assert (
            await on_b.post(f"/api/v1/rides/{ride['ride_id']}:accept", headers=dh)
        ).status_code == 200
        async with asyncio.timeout(15):
            while (status := await next_of("ride.status"))["ride"]["status"] != "driver_en_route":  # type: ignore[index]
                pass
        assert status["ride"]["driver"]["driver_id"] == did  # type: ignore[index]
        moved = offset(*PICKUP, north_m=50, east_m=0)

        async def moved_shown(within_s: float) -> bool:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(within_s):
                    while True:
                        position = await next_of("driver.location")
                        if (position["latitude"], position["longitude"]) == moved:
                            return True
            return False

        # The driver reports every second, as an app does: process B learns within a
        # second that someone (on A) follows the driver, and announces from then on.
        async with asyncio.timeout(15):
            while True:
                await on_b.put(
                    f"/api/v1/drivers/{did}/location",
                    json={"latitude": moved[0], "longitude": moved[1]},
                    headers=dh,
                )
                if await moved_shown(1.0):
                    break
        await ws.close()


def test_metrics_of_several_workers_add_up(
    pg_db: str, redis_url: str, redis_prefix: str, processes: Processes, tmp_path: Path
) -> None:
    """`serve --workers 2`: requests spread over both workers, and /metrics - whichever
    worker answers it - counts all of them."""
    env = server_env(
        {
            "RIDEHAIL_DATABASE_URL": pg_db,
            "RIDEHAIL_REDIS_URL": redis_url,
            "RIDEHAIL_REDIS_KEY_PREFIX": redis_prefix,
        }
    )
    port = free_port()
    processes.start(["serve", "--role", "api", "--workers", "2", "--port", str(port)], env, "api")
    url = f"http://127.0.0.1:{port}"
    processes.wait_ready(url)
    sent = 60
    for _ in range(sent):  # a new connection each time, so both workers take some
        assert httpx.get(f"{url}/healthz", timeout=5).status_code == 200
    sample = 'ridehail_http_requests_total{method="GET",route="/healthz",status="200"}'
    # Each worker hands its counts over at least once a second (ridehail.tally); the
    # worker that answers a scrape hands over its own at once, the other's may lag by that.
    time.sleep(tally.FLUSH_INTERVAL_S + 0.5)
    for _ in range(5):  # several scrapes, answered by either worker
        lines = httpx.get(f"{url}/metrics", timeout=5).text.splitlines()
        counts = [float(line.rsplit(" ", 1)[1]) for line in lines if line.startswith(sample)]
        assert counts == [sent]
    assert len(list((tmp_path / "var" / "prometheus").glob("counter_*.db"))) == 2
