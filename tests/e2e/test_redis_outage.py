"""The production API while its Redis is killed and started again: location reports are
answered 503 with Retry-After meanwhile (at once: never a hang, never a 500), and are
stored again once Redis is back, over the location store's own connection
(``ridehail.locations.redis_lane``) and the client's pool alike."""

from __future__ import annotations

import secrets
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import redis

from tests.e2e.conftest import Processes, free_port, server_env
from tests.redis_servers import running_server

pytestmark = pytest.mark.e2e

CENTRE = (60.1699, 24.9384)


def sign_up_driver(http: httpx.Client) -> tuple[str, dict[str, str]]:
    """A new driver, available: its id and the headers that carry its token."""
    tag = uuid.uuid4().hex[:8]
    email, password = f"outage-{tag}@example.com", "correct-horse-battery"
    reply = http.post(
        "/api/v1/drivers",
        json={
            "name": "Olga",
            "email": email,
            "password": password,
            "license_number": f"OUT-{tag}",
            "vehicle": {"make": "Skoda", "model": "Octavia", "plate": f"OUT-{tag[:4]}"},
        },
    )
    assert reply.status_code == 201, reply.text
    driver_id = reply.json()["driver_id"]
    token = http.post("/api/v1/auth/token", json={"email": email, "password": password})
    headers = {"authorization": f"Bearer {token.json()['access_token']}"}
    reply = http.put(
        f"/api/v1/drivers/{driver_id}/availability", json={"status": "available"}, headers=headers
    )
    assert reply.status_code == 200, reply.text
    return driver_id, headers


def test_location_reports_while_redis_is_killed_and_started_again(
    pg_db: str, processes: Processes, tmp_path: Path, quiet_httpx: None
) -> None:
    password = secrets.token_hex(8)
    redis_dir = tmp_path / "redis"
    redis_dir.mkdir()
    with running_server(redis_dir, password) as server:
        redis_url = f"redis://:{password}@127.0.0.1:{server.port}/0"
        env = server_env(
            {
                "RIDEHAIL_DATABASE_URL": pg_db,
                "RIDEHAIL_REDIS_URL": redis_url,
                "RIDEHAIL_REDIS_KEY_PREFIX": "outage:",
            }
        )
        port = free_port()
        processes.start(["serve", "--role", "api", "--port", str(port)], env, "api")
        base_url = f"http://127.0.0.1:{port}"
        processes.wait_ready(base_url)
        with httpx.Client(base_url=base_url, timeout=10) as http:
            driver_id, headers = sign_up_driver(http)
            step = [0]

            def report() -> httpx.Response:
                step[0] += 1  # 1 m further north each time: always a plausible new fix
                body = {"latitude": CENTRE[0] + step[0] * 1e-5, "longitude": CENTRE[1]}
                return http.put(f"/api/v1/drivers/{driver_id}/location", json=body, headers=headers)

            assert [report().status_code for _ in range(20)] == [204] * 20

            server.kill()
            began = time.monotonic()
            during = [report() for _ in range(10)]
            assert [r.status_code for r in during] == [503] * 10
            assert all(r.headers["retry-after"] == "1" for r in during)
            assert during[0].headers["content-type"].startswith("application/problem+json")
            # The batch endpoint goes through the FastAPI route: the same answer.
            batch = http.post(
                f"/api/v1/drivers/{driver_id}/locations",
                json={
                    "locations": [
                        {
                            "latitude": CENTRE[0],
                            "longitude": CENTRE[1],
                            "recorded_at": datetime.now(UTC).isoformat(),
                        }
                    ]
                },
                headers=headers,
            )
            assert batch.status_code == 503, batch.text
            assert batch.headers["retry-after"] == "1"
            assert time.monotonic() - began < 5  # answered at once, not after a timeout

            server.process = server.start()  # same port and password, empty
            deadline = time.monotonic() + 15
            while report().status_code != 204:
                assert time.monotonic() < deadline, "reports still refused 15 s after restart"
                time.sleep(0.2)
            assert [report().status_code for _ in range(20)] == [204] * 20

        # The new server holds the driver's newest position, written after the restart.
        check = redis.Redis.from_url(redis_url)
        try:
            assert check.exists(f"outage:loc:drv:{{{driver_id}}}") == 1
        finally:
            check.close()
        log = (tmp_path / "api.log").read_text()
        assert "backend_unreachable" in log
        assert "rate_limit_counting_locally" in log  # the limiter counted alone meanwhile
        assert "unhandled_error" not in log
