"""The location PUT's fast path answers exactly as the documented FastAPI route does.

Two apps on the same stores: one as shipped (the PUT served by
``ridehail.locations.fast_ingest``), one with ``fast_paths=False`` (the PUT served by the
FastAPI route). Every request - well-formed, malformed, unauthorised, someone else's - is
sent to both, and the status, content type and body must be identical; what the fast path
refuses must leave the store untouched.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import REGISTRY

from ridehail.app import create_app
from tests.api.client import HELSINKI, Api, User
from tests.api.conftest import Backend


@asynccontextmanager
async def started(backend: Backend, *, fast_paths: bool) -> AsyncIterator[Api]:
    app = create_app(backend.settings(), access_log=False, fast_paths=fast_paths)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield Api(client, app)


class Pair:
    """The same request to both apps, answers compared."""

    def __init__(self, fast: Api, route: Api) -> None:
        self.fast = fast
        self.route = route

    async def put(self, path: str, *, content: bytes, headers: dict[str, str]) -> httpx.Response:
        fast = await self.fast.http.put(path, content=content, headers=headers)
        route = await self.route.http.put(path, content=content, headers=headers)
        assert fast.status_code == route.status_code, (content, headers, fast.text, route.text)
        assert fast.headers.get("content-type") == route.headers.get("content-type")
        assert fast.content == route.content, (content, headers)
        return fast


@pytest.fixture
async def pair(backend: Backend) -> AsyncIterator[tuple[Pair, User, User, User]]:
    async with AsyncExitStack() as stack:
        fast = await stack.enter_async_context(started(backend, fast_paths=True))
        route = await stack.enter_async_context(started(backend, fast_paths=False))
        driver = await fast.driver("Fast Driver")
        other = await fast.driver("Other Driver", plate="OTH-1")
        rider = await fast.rider()
        yield Pair(fast, route), driver, other, rider


def body(**fields: Any) -> bytes:
    return json.dumps({"latitude": HELSINKI[0], "longitude": HELSINKI[1], **fields}).encode()


def bearer(user: User) -> dict[str, str]:
    return {"authorization": f"Bearer {user.token}", "content-type": "application/json"}


async def live(api: Api, driver: User) -> Any:
    return await api.app.state.runtime.locations.current(driver.id)


async def test_a_good_report_is_stored_and_answered_204(
    pair: tuple[Pair, User, User, User],
) -> None:
    apps, driver, _other, _rider = pair
    reply = await apps.put(
        f"/api/v1/drivers/{driver.id}/location",
        content=body(heading=90.0, speed_mps=8.5, accuracy_m=5.0),
        headers=bearer(driver),
    )
    assert reply.status_code == 204
    stored = await live(apps.fast, driver)
    assert (stored.latitude, stored.longitude, stored.heading) == (*HELSINKI, 90.0)


async def test_the_fast_path_serves_good_reports_and_hands_over_the_rest(
    pair: tuple[Pair, User, User, User], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The comparisons above would pass if the fast path never engaged; this one would not."""
    apps, driver, other, _rider = pair
    ingest = apps.fast.app.location_ingest  # type: ignore[attr-defined]
    assert ingest is not None
    handed_over: list[str] = []
    serve = ingest.serve

    async def spy(scope: Any, receive: Any, send: Any, driver_id: str, fallback: Any) -> None:
        async def counted(scope: Any, receive: Any, send: Any) -> None:
            handed_over.append(scope["path"])
            await fallback(scope, receive, send)

        await serve(scope, receive, send, driver_id, counted)

    monkeypatch.setattr(ingest, "serve", spy)
    path = f"/api/v1/drivers/{driver.id}/location"
    good = await apps.fast.http.put(path, content=body(), headers=bearer(driver))
    assert good.status_code == 204
    assert handed_over == []
    bad = await apps.fast.http.put(path, content=body(latitude=91), headers=bearer(driver))
    not_mine = await apps.fast.http.put(path, content=body(), headers=bearer(other))
    assert (bad.status_code, not_mine.status_code) == (422, 403)
    assert handed_over == [path, path]


def _future() -> str:
    return (datetime.now(UTC) + timedelta(hours=1)).isoformat()


BAD_BODIES: list[tuple[str, Callable[[], bytes]]] = [
    ("latitude as text", lambda: body(latitude="60.1")),
    ("latitude out of range", lambda: body(latitude=91)),
    ("latitude true", lambda: body(latitude=True)),
    ("NaN literal", lambda: b'{"latitude": NaN, "longitude": 24.9}'),
    ("Infinity literal", lambda: b'{"latitude": 60.1, "longitude": Infinity}'),
    ("overflow to infinity", lambda: b'{"latitude": 1e309, "longitude": 24.9}'),
    ("missing longitude", lambda: b'{"latitude": 60.1}'),
    ("unknown field", lambda: body(altitude=12)),
    ("heading 360", lambda: body(heading=360)),
    ("negative accuracy", lambda: body(accuracy_m=-1)),
    ("naive recorded_at", lambda: body(recorded_at="2026-01-01T00:00:00")),
    ("recorded_at in the future", lambda: body(recorded_at=_future())),
    ("not JSON", lambda: b"latitude=60.1&longitude=24.9"),
    ("a JSON array", lambda: b"[60.1, 24.9]"),
    ("empty body", lambda: b""),
    ("duplicate keys", lambda: b'{"latitude": 91, "latitude": 60.1, "longitude": 24.9}'),
]


@pytest.mark.parametrize(("case", "make"), BAD_BODIES, ids=[c for c, _ in BAD_BODIES])
async def test_bad_bodies_get_the_routes_answer_and_store_nothing(
    pair: tuple[Pair, User, User, User], case: str, make: Callable[[], bytes]
) -> None:
    apps, driver, _other, _rider = pair
    reply = await apps.put(
        f"/api/v1/drivers/{driver.id}/location", content=make(), headers=bearer(driver)
    )
    if case != "duplicate keys":  # JSON's last key wins, in both paths alike
        assert reply.status_code in (400, 422), case
        assert await live(apps.fast, driver) is None


async def test_callers_who_may_not_move_the_driver_get_the_routes_answer(
    pair: tuple[Pair, User, User, User],
) -> None:
    apps, driver, other, rider = pair
    path = f"/api/v1/drivers/{driver.id}/location"
    json_type = {"content-type": "application/json"}
    callers = {
        "no token": json_type,
        "another driver": bearer(other),
        "a rider": bearer(rider),
        "basic auth": {**json_type, "authorization": "Basic ZHJpdmVyOnB3"},
        "garbage token": {**json_type, "authorization": "Bearer not.a.jwt"},
        "empty bearer": {**json_type, "authorization": "Bearer "},
        "lower-case scheme": {**json_type, "authorization": f"bearer {driver.token}"},
    }
    for name, headers in callers.items():
        reply = await apps.put(path, content=body(), headers=headers)
        if name == "lower-case scheme":
            assert reply.status_code == 204, name
        else:
            assert reply.status_code in (401, 403), name
    assert await live(apps.fast, other) is None
    # A path that is not one driver's location at all.
    await apps.put(
        f"/api/v1/drivers/{driver.id}/x/location", content=body(), headers=bearer(driver)
    )


@pytest.mark.parametrize(
    "content_type",
    [None, "application/json; charset=utf-8", "text/plain", "application/merge-patch+json"],
)
async def test_content_types_are_treated_as_the_route_treats_them(
    pair: tuple[Pair, User, User, User], content_type: str | None
) -> None:
    apps, driver, _other, _rider = pair
    headers = {"authorization": f"Bearer {driver.token}"}
    if content_type is not None:
        headers["content-type"] = content_type
    await apps.put(f"/api/v1/drivers/{driver.id}/location", content=body(), headers=headers)


async def test_oversized_bodies_are_refused_before_the_fast_path(
    pair: tuple[Pair, User, User, User],
) -> None:
    apps, driver, _other, _rider = pair
    limit = apps.fast.app.state.runtime.settings.max_body_bytes
    padded = body(heading=1.0)[:-1] + b" " * limit + b"}"
    reply = await apps.put(
        f"/api/v1/drivers/{driver.id}/location", content=padded, headers=bearer(driver)
    )
    assert reply.status_code == 413
    assert await live(apps.fast, driver) is None


async def test_oversized_chunked_bodies_are_refused_too(
    pair: tuple[Pair, User, User, User],
) -> None:
    """No Content-Length: the fast path stops reading at the limit and hands over."""
    apps, driver, _other, _rider = pair
    limit = apps.fast.app.state.runtime.settings.max_body_bytes

    async def chunks() -> AsyncIterator[bytes]:
        yield body(heading=1.0)[:-1]
        for _ in range(limit // 1000 + 2):
            yield b" " * 1000
        yield b"}"

    for api in (apps.fast, apps.route):
        reply = await api.http.put(
            f"/api/v1/drivers/{driver.id}/location", content=chunks(), headers=bearer(driver)
        )
        assert reply.status_code == 413
    assert await live(apps.fast, driver) is None


async def test_a_failing_store_gets_the_same_500(
    pair: tuple[Pair, User, User, User], monkeypatch: pytest.MonkeyPatch
) -> None:
    apps, driver, _other, _rider = pair

    async def broken(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError("store down")

    for api in (apps.fast, apps.route):
        monkeypatch.setattr(type(api.app.state.runtime.locations), "record", broken)
    reply = await apps.put(
        f"/api/v1/drivers/{driver.id}/location", content=body(), headers=bearer(driver)
    )
    assert reply.status_code == 500
    assert "store down" not in reply.text


async def test_metrics_name_the_route_template(pair: tuple[Pair, User, User, User]) -> None:
    """Only the fast app serves these requests (the registry is shared by both apps)."""
    apps, driver, _other, _rider = pair
    labels = {"method": "PUT", "route": "/api/v1/drivers/{driver_id}/location", "status": "204"}

    async def served() -> float:
        """As a scrape sees it (the counts are handed over in bulk, before each scrape)."""
        metrics = (await apps.fast.http.get("/metrics")).text
        assert driver.id not in metrics
        return REGISTRY.get_sample_value("ridehail_http_requests_total", labels) or 0.0

    before = await served()
    for _ in range(3):
        reply = await apps.fast.http.put(
            f"/api/v1/drivers/{driver.id}/location", content=body(), headers=bearer(driver)
        )
        assert reply.status_code == 204
    assert await served() == before + 3


JSON_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-1000, max_value=1000),
    st.floats(allow_nan=False, allow_infinity=False, min_value=-400, max_value=400),
    st.text(max_size=8),
    st.sampled_from(["2026-01-01T00:00:00Z", "2026-01-01T00:00:00", "yesterday"]),
    # Every bound of the model, on and just past it.
    st.sampled_from(
        [
            90,
            90.000001,
            -90.0,
            -90.000001,
            180,
            180.000001,
            -180,
            -180.000001,
            0,
            -0.0,
            -0.000001,
            360,
            359.999999,
            150,
            150.000001,
            100_000,
            100_000.000001,
            1e308,
        ]
    ),
)
FIELDS = st.sampled_from(
    ["latitude", "longitude", "heading", "speed_mps", "accuracy_m", "recorded_at", "extra"]
)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(document=st.dictionaries(FIELDS, JSON_VALUES, max_size=7))
async def test_any_json_object_gets_the_same_answer_from_both(
    pair: tuple[Pair, User, User, User], document: dict[str, Any]
) -> None:
    apps, driver, _other, _rider = pair
    await apps.put(
        f"/api/v1/drivers/{driver.id}/location",
        content=json.dumps(document).encode(),
        headers=bearer(driver),
    )
