"""A thin client for the public API, used by the API tests to speak in use cases."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
from fastapi import FastAPI
from websockets.asyncio.client import ClientConnection, connect

_counter = itertools.count()

HELSINKI = (60.1699, 24.9384)


@dataclass
class User:
    id: str
    token: str
    email: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


class Api:
    def __init__(self, client: httpx.AsyncClient, app: FastAPI) -> None:
        self.http = client
        self.app = app
        self.ws_url = ""

    async def token(self, email: str, password: str) -> str:
        resp = await self.http.post(
            "/api/v1/auth/token", json={"email": email, "password": password}
        )
        assert resp.status_code == 200, resp.text
        return str(resp.json()["access_token"])

    async def rider(self, name: str = "Riley Rider") -> User:
        email = f"rider{next(_counter)}-{uuid.uuid4().hex[:6]}@example.com"
        resp = await self.http.post(
            "/api/v1/riders", json={"name": name, "email": email, "password": "s3cret-pass"}
        )
        assert resp.status_code == 201, resp.text
        return User(resp.json()["rider_id"], await self.token(email, "s3cret-pass"), email)

    async def driver(
        self, name: str = "Dana Driver", *, plate: str = "ABC-123", seats: int = 4
    ) -> User:
        email = f"driver{next(_counter)}-{uuid.uuid4().hex[:6]}@example.com"
        body = {
            "name": name,
            "email": email,
            "password": "s3cret-pass",
            "license_number": "D1234567",
            "vehicle": {
                "make": "Toyota",
                "model": "Prius",
                "plate": plate,
                "color": "white",
                "seats": seats,
            },
        }
        resp = await self.http.post("/api/v1/drivers", json=body)
        assert resp.status_code == 201, resp.text
        return User(resp.json()["driver_id"], await self.token(email, "s3cret-pass"), email)

    async def admin(self) -> User:
        """Admins are never created through the public API; tests use the accounts face."""
        from ridehail.accounts import register
        from ridehail.kernel.auth import Role

        container = self.app.state.container
        email = f"admin{next(_counter)}-{uuid.uuid4().hex[:6]}@example.com"
        password_hash = await container.passwords.hash("s3cret-pass")
        async with container.runtime.db.transaction() as session:
            account = await register(
                session, role=Role.ADMIN, name="Ops", email=email, password_hash=password_hash
            )
        return User(account.id, await self.token(email, "s3cret-pass"), email)

    async def go_online(self, driver: User, lat: float, lon: float, **fix: Any) -> None:
        resp = await self.http.put(
            f"/api/v1/drivers/{driver.id}/availability",
            json={"status": "available"},
            headers=driver.headers,
        )
        assert resp.status_code == 200, resp.text
        await self.move(driver, lat, lon, **fix)

    async def move(self, driver: User, lat: float, lon: float, **fix: Any) -> None:
        resp = await self.http.put(
            f"/api/v1/drivers/{driver.id}/location",
            json={"latitude": lat, "longitude": lon, **fix},
            headers=driver.headers,
        )
        assert resp.status_code == 204, resp.text

    async def request_ride(
        self, rider: User, start: tuple[float, float], end: tuple[float, float], **extra: Any
    ) -> dict[str, Any]:
        resp = await self.http.post(
            "/api/v1/rides",
            json={
                "start_latitude": start[0],
                "start_longitude": start[1],
                "end_latitude": end[0],
                "end_longitude": end[1],
                **extra,
            },
            headers=rider.headers,
        )
        assert resp.status_code == 202, resp.text
        return dict(resp.json())

    async def ride(self, user: User, ride_id: str) -> dict[str, Any]:
        resp = await self.http.get(f"/api/v1/rides/{ride_id}", headers=user.headers)
        assert resp.status_code == 200, resp.text
        return dict(resp.json())

    async def offers(self, driver: User) -> list[dict[str, Any]]:
        resp = await self.http.get(f"/api/v1/drivers/{driver.id}/offers", headers=driver.headers)
        assert resp.status_code == 200, resp.text
        return list(resp.json()["offers"])

    async def wait_for_offer(
        self, driver: User, ride_id: str, timeout: float = 10.0
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for offer in await self.offers(driver):
                if offer["ride_id"] == ride_id:
                    return offer
            await asyncio.sleep(0.05)
        raise AssertionError(f"no offer of {ride_id} reached {driver.id} within {timeout}s")

    async def wait_for_status(
        self, user: User, ride_id: str, status: str, timeout: float = 10.0
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        ride: dict[str, Any] = {}
        while time.monotonic() < deadline:
            ride = await self.ride(user, ride_id)
            if ride["status"] == status:
                return ride
            await asyncio.sleep(0.05)
        raise AssertionError(f"ride {ride_id} is {ride.get('status')}, not {status}")

    async def act(self, user: User, ride_id: str, verb: str, **body: Any) -> httpx.Response:
        return await self.http.post(
            f"/api/v1/rides/{ride_id}:{verb}", json=body or None, headers=user.headers
        )


async def open_socket(api: Api, path: str, user: User | None) -> ClientConnection:
    """A WebSocket to ``path`` on a live app, authenticated as ``user`` (None: not at all)."""
    ws = await connect(api.ws_url + path)
    if user is not None:
        await ws.send(json.dumps({"type": "auth", "access_token": user.token}))
    return ws


async def next_message(ws: ClientConnection, kind: str, timeout: float = 10.0) -> dict[str, Any]:
    """The next message of type ``kind`` (others are skipped)."""
    async with asyncio.timeout(timeout):
        while True:
            message = json.loads(await ws.recv())
            if message["type"] == kind:
                return dict(message)
