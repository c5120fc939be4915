"""Email and SMS ports, and the logging adapters the service runs with until a real
provider is configured.

Each send carries the notification id as the provider's idempotency key: a sender that
crashed after sending but before recording it sends again with the same key, and the
provider (like Stripe, SES or Twilio with their dedupe keys) delivers it once. The logging
adapter behaves the same way and keeps an append-only JSONL record, one line per call, that
tests (and operators) read to prove nothing went out twice.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any, Protocol

import structlog

from ridehail.kernel.clock import utcnow

log = structlog.get_logger("ridehail.notifications")


class EmailSender(Protocol):
    async def send_email(self, *, to: str, subject: str, body: str, idempotency_key: str) -> None:
        """Hand the message to the provider; raise if it was not accepted."""


class SmsSender(Protocol):
    async def send_sms(self, *, to: str, body: str, idempotency_key: str) -> None:
        """Hand the message to the provider; raise if it was not accepted."""


class MessageLog:
    """The logging adapter for both ports: a structlog line and a JSONL line per call.

    A key seen before (in this file, by any earlier process) is recorded with
    ``"replayed": true`` and not "delivered" again, as a provider honouring idempotency
    keys would do.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._keys: set[str] | None = None
        self._lock = asyncio.Lock()

    async def send_email(self, *, to: str, subject: str, body: str, idempotency_key: str) -> None:
        await self._record(
            {"channel": "email", "to": to, "subject": subject, "body": body}, idempotency_key
        )

    async def send_sms(self, *, to: str, body: str, idempotency_key: str) -> None:
        await self._record({"channel": "sms", "to": to, "body": body}, idempotency_key)

    async def _record(self, message: dict[str, Any], key: str) -> None:
        async with self._lock:
            keys = await asyncio.to_thread(self._load) if self._keys is None else self._keys
            self._keys = keys
            replayed = key in keys
            line = {
                **message,
                "idempotency_key": key,
                "replayed": replayed,
                "at": utcnow().isoformat(),
            }
            await asyncio.to_thread(self._append, json.dumps(line, separators=(",", ":")))
            keys.add(key)
        log.info(
            "message_sent" if not replayed else "message_replayed",
            channel=message["channel"],
            to=message["to"],
            idempotency_key=key,
        )

    def _load(self) -> set[str]:
        if not self.path.exists():
            return set()
        keys = set()
        with self.path.open(encoding="utf-8") as f:
            for raw in f:
                try:
                    keys.add(str(json.loads(raw)["idempotency_key"]))
                except (ValueError, KeyError, TypeError):
                    continue  # a torn last line from a crash
        return keys

    def _append(self, line: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as f:
            f.write(line + "\n")


def read_message_log(path: Path) -> list[dict[str, Any]]:
    """Every recorded call, oldest first (for tests and operators)."""
    if not path.exists():
        return []
    lines = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        try:
            lines.append(json.loads(raw))
        except ValueError:
            continue
    return lines
