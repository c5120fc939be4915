"""The composition root: settings -> adapters -> background components. The only place
that knows which adapter the profile uses."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Collection
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

import redis.asyncio as aioredis
import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from ridehail.accounts import Passwords, Tokens
from ridehail.db import Database
from ridehail.db.outbox import wrote_events
from ridehail.dispatch import (
    Dispatcher,
    DispatchPolicy,
    EtaProvider,
    StraightLineEta,
    Strategy,
    SurgeUpdater,
    open_searches_with_requests,
    opened_searches,
    subscribe_dispatch,
)
from ridehail.locations.ports import DriverLocationStore
from ridehail.messaging import (
    EventBus,
    InProcessEventBus,
    InProcessPubSub,
    PubSub,
    RedisPubSub,
    RedisStreamsEventBus,
)
from ridehail.messaging.ports import RetryPolicy
from ridehail.messaging.relay import OutboxRelay
from ridehail.notifications import (
    MessageLog,
    NotificationSender,
    SenderPolicy,
    queued_work,
    subscribe_notifications,
)
from ridehail.payments import (
    PROVIDER_KEY,
    PaymentsWorker,
    build_provider,
    made_work_due,
    subscribe_payments,
)
from ridehail.payments import policy_from_settings as payments_policy
from ridehail.pricing import surge_policy_from_settings
from ridehail.realtime import subscribe_realtime
from ridehail.runtime import Runtime
from ridehail.settings import Settings

log = structlog.get_logger("ridehail.bootstrap")

#: Background components a process may run: the outbox relay, the dispatcher, the
#: real-time bridge (bus events -> WebSocket clients), the notification sender (events ->
#: in-app, email, SMS, webhooks) and the payments worker (charges and refunds).
ALL_ROLES = frozenset({"relay", "dispatch", "realtime", "notifications", "payments"})
#: What an API-only process runs besides HTTP.
API_ROLES = frozenset({"relay", "realtime"})


class Component(Protocol):
    async def start(self) -> None: ...
    async def stop(self) -> None: ...


@dataclass
class Container:
    runtime: Runtime
    passwords: Passwords
    tokens: Tokens
    components: list[Component] = field(default_factory=list)
    dispatcher: Dispatcher | None = None
    relay: OutboxRelay | None = None
    notifications: NotificationSender | None = None
    payments: PaymentsWorker | None = None


def dispatch_policy(settings: Settings) -> DispatchPolicy:
    return DispatchPolicy(
        strategy=Strategy(settings.dispatch_strategy),
        first_radius_m=min(settings.dispatch_first_radius_m, settings.dispatch_radius_m),
        radius_step_m=settings.dispatch_radius_step_m,
        radius_m=settings.dispatch_radius_m,
        candidates=settings.dispatch_candidates,
        log_limit=settings.dispatch_log_limit,
        log_retention_s=settings.dispatch_log_retention_days * 86_400,
        max_candidates=max(160, settings.dispatch_candidates),
        broadcast_k=settings.dispatch_broadcast_k,
        batch_window_s=settings.dispatch_batch_window_s,
        batch_k=settings.dispatch_batch_k,
        batch_max_rides=settings.dispatch_batch_max_rides,
        round_size=settings.dispatch_round_size,
        acceptance_weight_s=settings.dispatch_acceptance_weight_s,
        idle_weight=settings.dispatch_idle_weight,
        idle_cap_s=settings.dispatch_idle_cap_s,
        orphan_after_s=settings.dispatch_orphan_after_s,
        offer_ttl_s=settings.dispatch_offer_ttl_s,
        search_timeout_s=settings.dispatch_search_timeout_s,
        retry_interval_s=settings.dispatch_retry_interval_s,
        stale_after_s=settings.location_stale_after_s,
    )


def eta_provider(settings: Settings) -> EtaProvider:
    """The dispatcher's pickup-time estimates, by RIDEHAIL_DISPATCH_ETA."""
    if settings.dispatch_eta == "road_network":
        from ridehail.streets import RoadNetworkEta, generate_city, load_osm

        if settings.road_network.startswith("osm:"):
            return RoadNetworkEta(load_osm(settings.road_network.removeprefix("osm:")))
        seed = int(settings.road_network.removeprefix("generated:"))
        return RoadNetworkEta(generate_city(seed=seed).graph)
    return StraightLineEta(
        detour_factor=settings.dispatch_detour_factor, timezone=ZoneInfo(settings.city_timezone)
    )


def notification_sender(settings: Settings, *, db: Database, pubsub: PubSub) -> NotificationSender:
    """The sender with the logging email/SMS adapter (the only provider so far)."""
    log_path = settings.notifications_log_path or settings.var_dir / "notifications.jsonl"
    messages = MessageLog(log_path)
    policy = SenderPolicy(
        batch=settings.notifications_batch,
        lease_s=settings.notifications_lease_s,
        retry=RetryPolicy(
            max_attempts=settings.notifications_max_attempts,
            base_s=settings.notifications_retry_base_s,
            cap_s=settings.notifications_retry_cap_s,
        ),
        webhook_retry=RetryPolicy(
            max_attempts=settings.webhook_max_attempts,
            base_s=settings.webhook_retry_base_s,
            cap_s=settings.webhook_retry_cap_s,
        ),
        webhook_timeout_s=settings.webhook_timeout_s,
        webhook_allow_private_networks=settings.webhook_allow_private_networks,
        retention=timedelta(days=settings.notifications_retention_days),
        webhook_retention=timedelta(days=settings.webhook_deliveries_retention_days),
    )
    return NotificationSender(
        db=db,
        pubsub=pubsub,
        email=messages,
        sms=messages,
        policy=policy,
        poll_s=settings.notifications_poll_s,
    )


def _adapters(
    settings: Settings,
) -> tuple[DriverLocationStore, EventBus, PubSub, aioredis.Redis | None]:
    from ridehail.locations.coalesce import CoalescingStore

    max_speed_mps = settings.location_max_speed_kmh / 3.6
    if settings.redis_url is None:
        from ridehail.locations.memory import InMemoryLocationStore

        # In process the write is cheap, but batching still pays: the reports that arrive
        # together are answered in one burst (see coalesce.py).
        store = CoalescingStore(InMemoryLocationStore(max_speed_mps=max_speed_mps))
        return store, InProcessEventBus(), InProcessPubSub(), None
    from ridehail.locations.redis_store import RedisLocationStore

    # Bounded and blocking: a burst waits up to redis_pool_timeout_s for a connection
    # instead of failing with "Too many connections" (redis-py's default pool does).
    pool = aioredis.BlockingConnectionPool.from_url(
        settings.redis_url,
        max_connections=settings.redis_max_connections,
        timeout=settings.redis_pool_timeout_s,
    )
    client = aioredis.Redis.from_pool(pool)
    prefix = settings.redis_key_prefix
    redis_store = RedisLocationStore(
        client,
        key_prefix=prefix,
        max_speed_mps=max_speed_mps,
        stale_after_s=settings.location_stale_after_s,
        region_resolution=settings.location_region_resolution,
        driver_ttl_s=settings.location_driver_ttl_s,
        # The store publishes each new live position inside its write, on the channels
        # RedisPubSub subscribes to (it prefixes them with "<key prefix>rt:").
        announce_prefix=f"{prefix}rt:",
        # Ingest calls skip the client's per-command machinery (see redis_lane.py).
        ingest_lane=True,
    )
    return (
        # Location reports in flight together share one script call (see coalesce.py).
        CoalescingStore(redis_store),
        RedisStreamsEventBus(
            client, key_prefix=prefix, claim_idle_ms=int(settings.bus_claim_idle_s * 1000)
        ),
        RedisPubSub(client, key_prefix=prefix),
        client,
    )


def build(settings: Settings, *, roles: Collection[str] = ALL_ROLES) -> Container:
    """Wire every adapter for ``settings``; start nothing yet."""
    db = Database(settings.database_url, pre_ping=settings.database_pool_pre_ping)
    store, bus, pubsub, client = _adapters(settings)
    tokens = Tokens(
        secret=settings.resolved_jwt_secret,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        ttl_s=settings.access_token_ttl_s,
    )
    passwords = Passwords(
        time_cost=settings.argon2_time_cost, memory_kib=settings.argon2_memory_kib
    )
    runtime = Runtime(
        settings=settings,
        db=db,
        locations=store,
        bus=bus,
        pubsub=pubsub,
        verify_token=tokens.verify,
        redis=client,
    )
    container = Container(runtime=runtime, passwords=passwords, tokens=tokens)
    # Any process may call the card processor (an admin's refund is made by the API).
    provider = build_provider(settings)
    runtime.extras[PROVIDER_KEY] = provider
    if "relay" in roles:
        relay = OutboxRelay(db=db, bus=bus, poll_s=settings.relay_poll_s)
        container.relay = relay

        def nudge_relay(session: AsyncSession) -> None:
            if wrote_events(session):
                relay.nudge()

        db.on_commit(nudge_relay)
        container.components.append(relay)
    # Whichever process requests a ride opens its search in the same transaction (also one
    # that runs no dispatcher itself: the search waits for whichever does).
    db.before_commit(open_searches_with_requests(dispatch_policy(settings)))
    if "dispatch" in roles and settings.dispatch_enabled:
        dispatcher = Dispatcher(
            db=db,
            store=store,
            policy=dispatch_policy(settings),
            eta=eta_provider(settings),
            tick_s=settings.dispatch_tick_s,
            pubsub=pubsub,
        )
        subscribe_dispatch(bus, db=db, policy=dispatch_policy(settings), nudge=dispatcher.nudge)
        runtime.nudge_dispatch = dispatcher.nudge

        def nudge_dispatcher(session: AsyncSession) -> None:
            if opened_searches(session):
                dispatcher.nudge()

        db.on_commit(nudge_dispatcher)
        container.dispatcher = dispatcher
        container.components.append(dispatcher)
    if "dispatch" in roles and settings.surge_enabled:
        # Surge: the dispatch role recomputes the multipliers every process prices with.
        container.components.append(
            SurgeUpdater(
                db=db,
                store=store,
                policy=surge_policy_from_settings(settings),
                resolution=settings.surge_resolution,
                window_s=settings.surge_window_s,
                stale_after_s=settings.location_stale_after_s,
                interval_s=settings.surge_interval_s,
            )
        )
    if "realtime" in roles:
        subscribe_realtime(bus, pubsub=pubsub)
    if "notifications" in roles:
        sender = notification_sender(settings, db=db, pubsub=pubsub)
        subscribe_notifications(bus, db=db, nudge=sender.nudge)

        def nudge_sender(session: AsyncSession) -> None:
            if queued_work(session):
                sender.nudge()

        db.on_commit(nudge_sender)
        container.notifications = sender
        container.components.append(sender)
    if "payments" in roles:
        # Payments: completed rides (and fees) become charges, made by this worker.
        worker = PaymentsWorker(
            db=db,
            provider=provider,
            policy=payments_policy(settings),
            poll_s=settings.payments_poll_s,
        )
        subscribe_payments(bus, db=db, policy=payments_policy(settings))

        def nudge_payments(session: AsyncSession) -> None:
            if made_work_due(session):
                worker.nudge()

        db.on_commit(nudge_payments)
        container.payments = worker
        container.components.append(worker)
    return container


@contextlib.asynccontextmanager
async def running(
    settings: Settings, *, roles: Collection[str] = ALL_ROLES
) -> AsyncIterator[Container]:
    """Build, start the bus and the background components, and stop them in reverse."""
    container = build(settings, roles=roles)
    runtime = container.runtime
    await runtime.pubsub.start()
    await runtime.bus.start()
    started: list[Component] = []
    try:
        for component in container.components:
            await component.start()
            started.append(component)
        log.info(
            "started",
            database=runtime.db.dialect,
            redis=runtime.redis is not None,
            roles=sorted(roles),
        )
        yield container
    finally:
        for component in reversed(started):
            await component.stop()
        await runtime.bus.stop()
        await runtime.pubsub.stop()
        await runtime.locations.close()
        if runtime.redis is not None:
            await runtime.redis.aclose()
        await runtime.db.dispose()
