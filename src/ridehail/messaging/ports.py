"""The event bus port, plus the delivery rules both adapters share.

Domains publish facts ("rides.requested") and react to other domains' facts through this port
only, so the transport (in-process queues or Redis Streams) can change without touching them.

The second half of the module is plumbing for adapters, not for domains: the retry/dead-letter
loop and the graceful-stop bookkeeping live here once, so the two adapters cannot drift apart
in the semantics the tests pin down (at-least-once, bounded retries, bounded stop).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import logging
import random
from collections.abc import (
    Awaitable,
    Callable,
    Collection,
    Coroutine,
    Iterator,
    Mapping,
    Sequence,
)
from dataclasses import dataclass
from typing import Any, Protocol

logger = logging.getLogger("ridehail.messaging")


@dataclass(frozen=True, slots=True)
class Message:
    """One published fact.

    ``id`` is chosen by the publisher (not by the transport) so a redelivered message keeps its
    identity and consumers can deduplicate by it.
    """

    id: str
    topic: str
    payload: Mapping[str, Any]


Handler = Callable[[Message], Awaitable[None]]


class EventBus(Protocol):
    """Publish/subscribe with consumer groups and at-least-once delivery."""

    async def publish(self, message: Message) -> None:
        """Make ``message`` durable (per the adapter's notion of durable) and return quickly."""

    async def publish_many(self, messages: Sequence[Message]) -> None:
        """Publish several messages in one round trip where the transport allows it."""

    def subscribe(self, *, group: str, topics: Sequence[str], handler: Handler) -> None:
        """Register ``handler`` for ``group`` before :meth:`start`.

        Each group receives every message of its topics at least once; within a group, the
        consumers (across processes, where the adapter supports it) compete for messages.
        """

    async def start(self) -> None:
        """Begin consuming for the registered subscriptions."""

    async def stop(self) -> None:
        """Stop consuming; an in-flight handler may finish, but the wait is bounded."""

    async def ping(self) -> None:
        """Raise if the transport is unreachable (for readiness probes)."""


# --- Shared adapter plumbing -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how patiently a failing handler is retried before its message is dead.

    Retries happen in place, inside the consumer loop, because moving on to the next message
    would break per-topic ordering; the cap bounds how long one poison message can hold a
    (group, topic) up: roughly ``base * 2**n`` summed until the cap, then ``cap`` per attempt.
    """

    max_attempts: int = 10
    base_s: float = 0.05
    cap_s: float = 5.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.base_s < 0 or self.cap_s < 0:
            raise ValueError("retry delays must not be negative")

    def delay_s(self, failures: int) -> float:
        """Backoff after the ``failures``-th failure: exponential, capped, "equal jitter".

        Half of the delay is fixed so retries never hammer a struggling dependency; the other
        half is random so consumers that failed together do not retry in lockstep.
        """
        exponent = min(max(failures - 1, 0), 32)  # beyond 2**32 the cap has long won
        ceiling = min(self.cap_s, self.base_s * 2.0**exponent)
        return ceiling / 2 + random.uniform(0, ceiling / 2)  # noqa: S311 - jitter, not crypto


class Outcome(enum.Enum):
    HANDLED = "handled"
    """The handler returned: acknowledge."""
    DEAD = "dead"
    """Every attempt failed: dead-letter, then acknowledge so the topic moves on."""
    INTERRUPTED = "interrupted"
    """Stop was requested between attempts: do NOT acknowledge; the message comes back later."""


@dataclass(frozen=True, slots=True)
class Delivery:
    outcome: Outcome
    attempts: int
    error: Exception | None = None


def encode_payload(payload: Mapping[str, Any]) -> str:
    """The wire form of a payload; both adapters use it so they accept and reject the same.

    Raises ``TypeError``/``ValueError`` at publish time for anything that is not plain JSON,
    which is where the bug is, rather than in some consumer later.
    """
    return json.dumps(dict(payload), separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def describe_error(error: BaseException | None) -> str:
    """A one-line, human-readable error for dead-letter records."""
    if error is None:
        return ""
    return f"{type(error).__name__}: {error}"


async def sleep_unless(event: asyncio.Event, seconds: float) -> bool:
    """Sleep up to ``seconds``; return True early (and at once) if ``event`` gets set."""
    if event.is_set():
        return True
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), timeout=seconds)
    return event.is_set()


async def deliver(
    message: Message,
    handler: Handler,
    *,
    group: str,
    policy: RetryPolicy,
    stopping: asyncio.Event,
) -> Delivery:
    """Run ``handler`` on ``message`` with retries; report what the caller must do with it.

    Only ``Exception`` counts as a handler failure: cancellation propagates untouched so a
    forced stop is never mistaken for a poison message.
    """
    error: Exception | None = None
    for attempt in range(1, policy.max_attempts + 1):
        try:
            await handler(message)
        except Exception as exc:
            error = exc
            _log_failure(message, group, attempt, policy, exc)
        else:
            return Delivery(Outcome.HANDLED, attempt)
        if attempt < policy.max_attempts and await sleep_unless(stopping, policy.delay_s(attempt)):
            return Delivery(Outcome.INTERRUPTED, attempt, error)
    return Delivery(Outcome.DEAD, policy.max_attempts, error)


def _log_failure(
    message: Message, group: str, attempt: int, policy: RetryPolicy, error: Exception
) -> None:
    if attempt < policy.max_attempts:
        logger.warning(
            "handler failed, will retry: group=%s topic=%s id=%s attempt=%d/%d error=%s",
            group,
            message.topic,
            message.id,
            attempt,
            policy.max_attempts,
            describe_error(error),
        )
        return
    logger.error(
        "message is dead after %d attempts: group=%s topic=%s id=%s",
        attempt,
        group,
        message.topic,
        message.id,
        exc_info=error,
    )


def check_subscription(
    group: str, topics: Sequence[str], *, started: bool, taken: Collection[tuple[str, str]]
) -> None:
    """Reject subscriptions that could silently miss messages, never run, or compete oddly.

    Two handlers for one (group, topic) would split that topic between them, which is never
    what a caller means; a subscription added after start() would have no consumer loop.
    """
    if started:
        raise RuntimeError("subscribe() must be called before start()")
    if not group:
        raise ValueError("group must be a non-empty string")
    if isinstance(topics, str) or not topics or not all(topics):
        raise ValueError("topics must be a non-empty sequence of non-empty strings")
    if len(set(topics)) != len(topics):
        raise ValueError("topics must not repeat")
    for topic in topics:
        if (group, topic) in taken:
            raise ValueError(f"group {group!r} already subscribes to {topic!r}")


class ConsumerTasks:
    """The long-lived consumer loops of one bus, and how to stop them without losing work.

    A loop is either *idle* (waiting for the next message: safe to cancel, since an un-acked
    message is redelivered) or *in flight* (inside :meth:`in_flight`: left to finish, up to
    ``stop_timeout_s``). Cancelling idle loops at once is what makes ``stop()`` prompt even
    while a Redis ``XREADGROUP ... BLOCK`` is outstanding.
    """

    def __init__(self, *, stop_timeout_s: float) -> None:
        self.stopping = asyncio.Event()
        self._stop_timeout_s = stop_timeout_s
        self._tasks: set[asyncio.Task[None]] = set()
        self._busy: set[asyncio.Task[Any]] = set()

    @property
    def running(self) -> bool:
        return bool(self._tasks)

    def spawn(self, name: str, loop: Coroutine[Any, Any, None]) -> None:
        self.stopping.clear()
        self._tasks.add(asyncio.create_task(loop, name=name))

    @contextlib.contextmanager
    def in_flight(self) -> Iterator[None]:
        """Mark the current loop as handling a message, so stop() waits instead of cancelling."""
        task = asyncio.current_task()
        if task is None:  # pragma: no cover - always called from a consumer task
            yield
            return
        self._busy.add(task)
        try:
            yield
        finally:
            self._busy.discard(task)

    async def stop(self) -> None:
        """Signal stop, cancel idle loops, give busy ones a bounded grace period, then cancel."""
        self.stopping.set()
        tasks, self._tasks = self._tasks, set()
        if not tasks:
            return
        for task in tasks - self._busy:
            task.cancel()
        _, late = await asyncio.wait(tasks, timeout=self._stop_timeout_s)
        for task in late:
            logger.warning("consumer %s did not finish in time; cancelling", task.get_name())
            task.cancel()
        _, stuck = await asyncio.wait(tasks, timeout=self._stop_timeout_s)
        for task in stuck:
            logger.error("consumer %s ignored cancellation; abandoning it", task.get_name())
        self._report_crashes(tasks - stuck)

    @staticmethod
    def _report_crashes(tasks: set[asyncio.Task[None]]) -> None:
        for task in tasks:
            if task.cancelled():
                continue
            error = task.exception()
            if error is not None:
                logger.error("consumer %s crashed", task.get_name(), exc_info=error)
