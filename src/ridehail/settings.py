"""Configuration from RIDEHAIL_* environment variables, read in one place.

Secrets are `SecretStr`, so they never reach a log line or a repr.
"""

from __future__ import annotations

import re
import secrets
from decimal import Decimal, InvalidOperation
from functools import cached_property
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///var/ridehail.db"
#: The prices a product may set (fare_products).
PRODUCT_PRICE_KEYS = frozenset(
    {
        "base",
        "per_km",
        "per_minute",
        "minimum",
        "booking_fee",
        "waiting_per_minute",
        "cancellation_fee",
        "no_show_fee",
    }
)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RIDEHAIL_", extra="ignore")

    database_url: str = DEFAULT_DATABASE_URL
    redis_url: str | None = None
    #: Check each pooled PostgreSQL connection before use (a round trip per transaction).
    #: Off: a connection broken by a database restart fails one transaction, then is dropped.
    database_pool_pre_ping: bool = False
    #: Requests a caller (token subject, else client address) may make per minute before
    #: 429; 0 turns the limit off. Location PUTs (the fast path) and WebSockets not counted.
    rate_limit_per_minute: int = Field(default=1200, ge=0)
    redis_key_prefix: str = "ridehail:"
    #: Connections per process (the pub/sub reader and each blocking stream read hold one).
    redis_max_connections: int = Field(default=256, ge=8)
    #: How long a request waits for a free connection before it fails.
    redis_pool_timeout_s: float = Field(default=5.0, gt=0)
    jwt_secret: SecretStr | None = None
    jwt_issuer: str = "ridehail"
    jwt_audience: str = "ridehail-api"
    access_token_ttl_s: int = Field(default=3600, gt=0)
    var_dir: Path = Path("var")

    # argon2id cost; tests lower these to keep the suite fast.
    argon2_time_cost: int = Field(default=3, ge=1)
    argon2_memory_kib: int = Field(default=65536, ge=8)

    max_body_bytes: int = Field(default=1_048_576, gt=0)
    log_level: str = "INFO"
    log_format: Literal["console", "json"] = "console"
    #: FastAPI's native OpenTelemetry (traces, metrics, logs to the global OTel providers).
    opentelemetry: bool = False

    location_stale_after_s: float = Field(default=30.0, gt=0)
    #: H3 resolution of the Redis store's regions (5: cells of about 250 km², a handful per
    #: city). Changing it re-files drivers as they next report; searches meanwhile miss
    #: those not yet re-filed, for at most one report interval.
    location_region_resolution: int = Field(default=5, ge=0, le=15)
    #: A driver who stops reporting without going offline is forgotten (by the Redis store)
    #: between half this and this long after the last live fix.
    location_driver_ttl_s: float = Field(default=86_400.0, gt=0)
    #: A fix implying a faster move from the live one is kept out of matching.
    location_max_speed_kmh: float = Field(default=250.0, gt=0)
    #: A fix reporting a worse accuracy than this is kept out of matching.
    location_max_accuracy_m: float = Field(default=100.0, gt=0)
    nearby_max_radius_m: float = Field(default=20_000.0, gt=0)
    nearby_rider_max_radius_m: float = Field(default=5_000.0, gt=0)
    nearby_rider_max_results: int = Field(default=20, gt=0)
    nearby_coarse_cell_m: float = Field(default=100.0, gt=0)

    dispatch_enabled: bool = True
    #: sequential (one driver at a time), broadcast (the best k at once, first accept wins)
    #: or batch (requests gathered for a window, then matched together optimally).
    dispatch_strategy: Literal["sequential", "broadcast", "batch"] = "sequential"
    #: Search rings: first radius, growing by the step, up to dispatch_radius_m.
    dispatch_first_radius_m: float = Field(default=1_000.0, gt=0)
    dispatch_radius_step_m: float = Field(default=1_000.0, gt=0)
    dispatch_radius_m: float = Field(default=5_000.0, gt=0)
    dispatch_candidates: int = Field(default=20, gt=0)
    #: Candidates kept in the dispatch log per search round (offered ones always).
    dispatch_log_limit: int = Field(default=10, ge=0)
    #: The dispatch log (candidates considered) is deleted this long after it was written.
    dispatch_log_retention_days: float = Field(default=30.0, gt=0)
    dispatch_broadcast_k: int = Field(default=3, gt=0, le=50)
    dispatch_batch_window_s: float = Field(default=2.0, gt=0)
    dispatch_batch_k: int = Field(default=10, gt=0, le=100)
    dispatch_batch_max_rides: int = Field(default=1_000, gt=0)
    #: Sequential and broadcast: due searches one dispatch transaction takes at most (each
    #: still offers to its own best driver; two never pick the same one).
    dispatch_round_size: int = Field(default=50, gt=0, le=1_000)
    #: Ranking: seconds of pickup time a never-accepting driver is penalised by, and the
    #: seconds of pickup time one idle second is worth (idle capped at idle_cap_s).
    dispatch_acceptance_weight_s: float = Field(default=60.0, ge=0)
    dispatch_idle_weight: float = Field(default=0.05, ge=0)
    dispatch_idle_cap_s: float = Field(default=1_800.0, ge=0)
    #: The default pickup-time estimate: straight line x detour factor / hourly speed in the
    #: city's time zone (an IANA name).
    dispatch_detour_factor: float = Field(default=1.3, ge=1.0)
    city_timezone: str = "UTC"
    #: Pickup times for ranking: "straight_line" (above) or "road_network" (routing over
    #: the street graph named by road_network).
    dispatch_eta: Literal["straight_line", "road_network"] = "straight_line"
    #: The street graph: "generated:<seed>" is the generated city of that seed (what
    #: `ridehail simulate` drives on by default); "osm:<path>" is the drivable network of
    #: an OpenStreetMap .osm.pbf extract (needs the `osm` extra: pyrosm).
    road_network: str = Field(default="generated:1", pattern=r"^(generated:\d{1,9}|osm:.+)$")
    dispatch_offer_ttl_s: float = Field(default=15.0, gt=0)
    dispatch_search_timeout_s: float = Field(default=120.0, gt=0)
    dispatch_retry_interval_s: float = Field(default=2.0, gt=0)
    dispatch_tick_s: float = Field(default=0.5, gt=0)
    relay_poll_s: float = Field(default=0.2, gt=0)
    #: A stream message read but not acknowledged this long (its consumer probably died) is
    #: taken over by another consumer of the group. Handlers are idempotent, so a slow one
    #: that is overtaken only costs a duplicate delivery.
    bus_claim_idle_s: float = Field(default=5.0, ge=0.01)
    #: Rides left 'searching' this long without an active search (an event lost, say) are
    #: picked up by the dispatcher's periodic sweep.
    dispatch_orphan_after_s: float = Field(default=15.0, gt=0)

    currency: str = "USD"
    fare_base: str = "2.50"
    fare_per_km: str = "1.20"
    fare_per_minute: str = "0.30"
    fare_minimum: str = "6.00"
    fare_booking_fee: str = "1.00"
    #: More products beside "standard" (whose prices are the fare_* settings): a JSON
    #: object of name -> the prices that differ, e.g. {"comfort": {"base": "4.00",
    #: "per_km": "1.80"}}. Keys: base, per_km, per_minute, minimum, booking_fee,
    #: waiting_per_minute, cancellation_fee, no_show_fee (decimal strings).
    fare_products: dict[str, dict[str, str]] = Field(default_factory=dict)
    fare_detour_factor: float = Field(default=1.3, ge=1.0)
    fare_assumed_speed_kmh: float = Field(default=25.0, gt=0)

    # --- Payments (charges after the ride, refunds, the ledger) ---
    #: The platform's share of a fare excluding the booking fee (which is all the
    #: platform's), and of cancellation and no-show fees; a decimal string.
    payments_commission_rate: str = Field(default="0.20", pattern=r"^(0(\.\d{1,4})?|1(\.0{1,4})?)$")
    #: Charges one worker runs at once (each is a call to the provider).
    payments_concurrency: int = Field(default=8, ge=1, le=256)
    #: A claimed payment nobody finished within this long (its worker died) is claimed again.
    payments_lease_s: float = Field(default=30.0, gt=0)
    #: How long we wait for the provider's answer before treating the outcome as unknown.
    payments_provider_timeout_s: float = Field(default=10.0, gt=0)
    #: Failed attempts (timeouts, provider errors) are retried after base * 2**n seconds,
    #: capped, with jitter; after max_attempts the payment is failed.
    payments_retry_base_s: float = Field(default=2.0, gt=0)
    payments_retry_cap_s: float = Field(default=300.0, gt=0)
    payments_max_attempts: int = Field(default=6, ge=1, le=100)
    #: The worker looks for due payments at least this often (a commit nudges it sooner).
    payments_poll_s: float = Field(default=1.0, gt=0)
    #: The sandbox card processor (the only payment provider so far): its own record, a
    #: SQLite file (default: <var_dir>/payments-sandbox.db), and how it behaves.
    payments_sandbox_path: Path | None = None
    payments_sandbox_latency_min_ms: float = Field(default=20.0, ge=0)
    payments_sandbox_latency_max_ms: float = Field(default=60.0, ge=0)
    #: tok_flaky fails this many calls per idempotency key before it succeeds.
    payments_sandbox_flaky_failures: int = Field(default=2, ge=0)

    # --- Pricing (fees, surge) ---
    #: Waiting at pickup: the time between the driver's arrival and the trip's start beyond
    #: the free period is charged per minute (not surged).
    fare_waiting_free_s: float = Field(default=120.0, ge=0)
    fare_waiting_per_minute: Decimal = Field(default=Decimal("0.30"), ge=0, max_digits=12)
    #: A rider who cancels more than the grace period after a driver accepted (while the
    #: driver is on the way or waiting) pays the cancellation fee.
    fare_cancellation_grace_s: float = Field(default=120.0, ge=0)
    fare_cancellation_fee: Decimal = Field(default=Decimal("5.00"), ge=0, max_digits=12)
    #: A driver who waited at pickup longer than this may cancel with the reason
    #: "rider_no_show": the ride ends and the rider pays the no-show fee.
    fare_no_show_wait_s: float = Field(default=300.0, ge=0)
    fare_no_show_fee: Decimal = Field(default=Decimal("5.00"), ge=0, max_digits=12)
    #: Surge: requests (demand) and free drivers with fresh positions (supply) per H3 cell of
    #: this resolution over the last window, recomputed every interval by the dispatch role.
    surge_enabled: bool = True
    surge_resolution: int = Field(default=8, ge=0, le=15)
    surge_window_s: float = Field(default=300.0, gt=0)
    surge_interval_s: float = Field(default=15.0, gt=0)
    #: multiplier = 1 + sensitivity x (smoothed demand/supply - threshold), rounded down to
    #: a step, between 1 and the cap; neighbours count with this weight; a multiplier falls
    #: only once the computed value is the hysteresis below it (see pricing/surge.py).
    surge_cap: Decimal = Field(default=Decimal("3.0"), ge=1, le=10)
    surge_step: Decimal = Field(default=Decimal("0.1"), gt=0, le=1)
    surge_hysteresis: Decimal = Field(default=Decimal("0.2"), ge=0, le=5)
    surge_sensitivity: Decimal = Field(default=Decimal("0.5"), ge=0, le=100)
    surge_threshold: Decimal = Field(default=Decimal("1.0"), ge=0, le=100)
    surge_neighbour_weight: Decimal = Field(default=Decimal("0.5"), ge=0, le=1)
    #: Each process keeps the current multipliers this long before reading them again.
    surge_cache_s: float = Field(default=5.0, ge=0)

    # --- Notifications (in-app, email, SMS, webhooks) ---
    #: The sender looks for due notifications and webhook deliveries at least this often
    #: (a commit that queued some nudges it sooner).
    notifications_poll_s: float = Field(default=1.0, gt=0)
    #: Notifications (and, separately, webhook deliveries) one claim takes.
    notifications_batch: int = Field(default=50, ge=1, le=1_000)
    #: A claimed notification or delivery not finished within this long (its sender died)
    #: is taken again; must exceed webhook_timeout_s.
    notifications_lease_s: float = Field(default=60.0, gt=0)
    #: Email/SMS/in-app: attempts (then "failed"), retried after base * 2**n s, capped, jittered.
    notifications_max_attempts: int = Field(default=5, ge=1, le=100)
    notifications_retry_base_s: float = Field(default=5.0, gt=0)
    notifications_retry_cap_s: float = Field(default=600.0, gt=0)
    #: Notifications (the in-app inbox and the record of emails and SMS sent) are deleted
    #: this long after they were created, once no longer pending.
    notifications_retention_days: float = Field(default=90.0, gt=0)
    #: The logging email/SMS adapter's record, one JSON line per call (default:
    #: <var_dir>/notifications.jsonl).
    notifications_log_path: Path | None = None
    #: Webhooks: attempts before a delivery is dead, backoff (base * 2**n s, capped,
    #: jittered) and the time one POST may take.
    webhook_max_attempts: int = Field(default=8, ge=1, le=100)
    webhook_retry_base_s: float = Field(default=5.0, gt=0)
    webhook_retry_cap_s: float = Field(default=3_600.0, gt=0)
    webhook_timeout_s: float = Field(default=10.0, gt=0)
    #: Webhooks go to public internet addresses only: a URL whose host is, or resolves to,
    #: a loopback, private, link-local (cloud metadata) or other non-public address is
    #: refused. True lifts that (a receiver on this machine or inside the network).
    webhook_allow_private_networks: bool = False
    #: Webhook deliveries no longer pending (delivered, dead, cancelled) are deleted this long
    #: after they were created.
    webhook_deliveries_retention_days: float = Field(default=30.0, gt=0)

    @field_validator("fare_products")
    @classmethod
    def _known_product_prices(cls, value: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
        for name, prices in value.items():
            if not re.fullmatch(r"[a-z][a-z0-9_-]{0,31}", name) or name == "standard":
                raise ValueError(f"product name {name!r}: lowercase, 1-32 chars, not 'standard'")
            unknown = set(prices) - PRODUCT_PRICE_KEYS
            if unknown:
                raise ValueError(f"product {name!r}: unknown prices {sorted(unknown)}")
            for key, amount in prices.items():
                try:
                    number = Decimal(amount)
                except (InvalidOperation, TypeError) as exc:
                    raise ValueError(f"product {name!r}: {key} is not a decimal") from exc
                if not number.is_finite() or number < 0:
                    raise ValueError(f"product {name!r}: {key} must be a finite amount >= 0")
        return value

    @field_validator("city_timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(
                f"unknown time zone {value!r} (an IANA name like Europe/Helsinki)"
            ) from exc
        return value

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def embedded(self) -> bool:
        """True when running on the embedded default (no Redis configured)."""
        return self.redis_url is None

    @cached_property
    def resolved_jwt_secret(self) -> str:
        """The signing secret: configured, else (embedded default only) one kept under var/."""
        if self.jwt_secret is not None:
            return self.jwt_secret.get_secret_value()
        if not self.is_sqlite:
            raise RuntimeError("RIDEHAIL_JWT_SECRET must be set when not on the embedded default")
        path = self.var_dir / "jwt_secret"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(secrets.token_urlsafe(48))
            path.chmod(0o600)
        return path.read_text().strip()
