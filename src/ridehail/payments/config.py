"""Payments' settings and adapters, as the composition root builds them."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from ridehail.payments.provider import PaymentProvider
from ridehail.payments.sandbox import SandboxProvider
from ridehail.payments.service import PaymentsPolicy
from ridehail.settings import Settings

#: Where the composition root keeps the provider in ``Runtime.extras``.
PROVIDER_KEY = "payments.provider"


def policy_from_settings(settings: Settings) -> PaymentsPolicy:
    return PaymentsPolicy(
        commission_rate=Decimal(settings.payments_commission_rate),
        lease_s=settings.payments_lease_s,
        provider_timeout_s=settings.payments_provider_timeout_s,
        retry_base_s=settings.payments_retry_base_s,
        retry_cap_s=settings.payments_retry_cap_s,
        max_attempts=settings.payments_max_attempts,
        concurrency=settings.payments_concurrency,
    )


def build_provider(settings: Settings) -> PaymentProvider:
    """The sandbox processor (its record file is opened at the first call, not here)."""
    path = settings.payments_sandbox_path or settings.var_dir / "payments-sandbox.db"
    return SandboxProvider(
        path,
        latency_ms=(
            settings.payments_sandbox_latency_min_ms,
            settings.payments_sandbox_latency_max_ms,
        ),
        flaky_failures=settings.payments_sandbox_flaky_failures,
    )


def provider_of(runtime: Any) -> PaymentProvider:
    """The provider the composition root put in ``runtime.extras``."""
    provider: PaymentProvider = runtime.extras[PROVIDER_KEY]
    return provider
