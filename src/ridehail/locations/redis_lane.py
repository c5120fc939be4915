"""One Redis connection of its own for one hot script, spoken to without the client's
per-command machinery.

Every location report ends in one call of the ingest script (batched by
:mod:`~ridehail.locations.coalesce`), and through redis-py's asyncio client each call costs
the API process about twice what the socket work itself does: a connection taken from the
pool and given back, the retry wrapper, argument encoding in Python, the parser's buffer
juggling (measured in docs/benchmarks.md, "Profiling the ingest path"). A
:class:`ScriptLane` keeps one connection open and sends ``EVALSHA`` on it directly: the
command is packed by hiredis (C), replies are read by hiredis's reader (C), and calls are
pipelined, answered in the order sent, so any number of callers share the connection
without waiting for one another.

It connects as the client's pool would (host and port or Unix socket, username and
password, database, client name, connect and socket timeouts); :meth:`ScriptLane.for_client`
returns None for what it does not speak (TLS, a credential provider, a custom connection
class, a cluster), and the caller keeps using the client. A call is never retried after it
was sent: the ingest script appends to trip traces, so running it twice would not be the
same as once. A lost connection fails the calls in flight with ``ConnectionError`` and the
next call opens a new one; a script Redis does not know (after a restart or ``SCRIPT
FLUSH``) is loaded and the call sent again, which is safe because Redis ran nothing.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import deque
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, cast

import hiredis
import redis.asyncio as aioredis
from redis.asyncio.connection import Connection, UnixDomainSocketConnection
from redis.exceptions import (
    AuthenticationError,
    ConnectionError,
    NoScriptError,
    ResponseError,
)
from redis.exceptions import TimeoutError as RedisTimeout

Arg = bytes | str | int | float

#: hiredis's stub types the argument as a one-element tuple; it takes any number.
_pack: Callable[[tuple[Arg, ...]], bytes] = hiredis.pack_command  # type: ignore[assignment]


#: Told the reply to a command (an error reply is a ``hiredis.ReplyError``), or the
#: exception that ended the wait for it (the connection lost or dropped).
Answer = Callable[[Any], None]


class _Replies(asyncio.Protocol):
    """The connection: writes commands, hands each reply to the oldest waiting call."""

    def __init__(self) -> None:
        self._reader = hiredis.Reader()
        self._waiting: deque[Answer] = deque()
        self._transport: asyncio.Transport | None = None
        self.loop = asyncio.get_running_loop()
        self.open = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses; both write and close.
        self._transport = cast(asyncio.Transport, transport)
        self.open = True

    def data_received(self, data: bytes) -> None:
        reader = self._reader
        waiting = self._waiting
        reader.feed(data)
        try:
            # An answer may drop the connection (a lost script): then the rest is moot.
            while self.open and (reply := reader.gets()) is not False:
                self._tell(waiting.popleft(), reply)
        except (hiredis.ProtocolError, IndexError) as exc:
            self.abort(ConnectionError(f"Redis sent what no call asked for: {exc!r}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.open = False
        self._fail(ConnectionError(f"Connection to Redis lost: {exc or 'closed'}"))

    def expect(self, packed: bytes, answer: Answer) -> None:
        """Send ``packed`` (one RESP command); ``answer`` is told its reply when it comes."""
        if not self.open or self._transport is None:
            raise ConnectionError("Connection to Redis is closed")
        self._waiting.append(answer)
        self._transport.write(packed)

    def send(self, packed: bytes) -> asyncio.Future[Any]:
        """The reply to ``packed``, when it comes (an error reply as a value)."""
        future: asyncio.Future[Any] = self.loop.create_future()
        self.expect(packed, partial(_resolve, future))
        return future

    def abort(self, error: Exception) -> None:
        self.open = False
        self._fail(error)
        if self._transport is not None:
            self._transport.abort()

    def close(self) -> None:
        self.open = False
        if self._transport is not None:
            self._transport.close()

    def _fail(self, error: Exception) -> None:
        while self._waiting:
            self._tell(self._waiting.popleft(), error)

    def _tell(self, answer: Answer, reply: Any) -> None:
        try:
            answer(reply)
        except Exception as exc:  # one caller's bug must not lose the others' replies
            self.loop.call_exception_handler(
                {"message": "a Redis reply's receiver failed", "exception": exc}
            )


def _resolve(future: asyncio.Future[Any], reply: Any) -> None:
    if future.done():  # a caller that gave up still owned this reply
        return
    if isinstance(reply, Exception) and not isinstance(reply, hiredis.ReplyError):
        future.set_exception(reply)
    else:
        future.set_result(reply)


class ScriptLane:
    """``EVALSHA`` of one script, with no keys, on a connection of its own."""

    def __init__(
        self,
        script: str,
        *,
        host: str = "localhost",
        port: int = 6379,
        path: str | None = None,
        db: int = 0,
        username: str | None = None,
        password: str | None = None,
        client_name: str | None = None,
        connect_timeout_s: float | None = None,
        timeout_s: float | None = None,
    ) -> None:
        self._script = script
        # Redis names scripts by SHA-1; not a security use.
        self._sha = hashlib.sha1(script.encode(), usedforsecurity=False).hexdigest()
        self._host, self._port, self._path = host, port, path
        self._handshake: list[tuple[Arg, ...]] = []
        if password is not None:
            self._handshake.append(
                ("AUTH", password) if username is None else ("AUTH", username, password)
            )
        if db:
            self._handshake.append(("SELECT", db))
        if client_name:
            self._handshake.append(("CLIENT", "SETNAME", client_name))
        # Every connection loads the script, so that submit() never meets NOSCRIPT after
        # a restart of Redis (which drops the connection).
        self._handshake.append(("SCRIPT", "LOAD", script))
        self._connect_timeout_s = connect_timeout_s
        self._timeout_s = timeout_s
        self._replies: _Replies | None = None
        self._opening = asyncio.Lock()

    @classmethod
    def for_client(cls, client: Any, script: str) -> ScriptLane | None:
        """A lane to the server ``client`` talks to, as its pool would connect; None if
        the client is a cluster or connects in a way the lane does not (TLS, say)."""
        if not isinstance(client, aioredis.Redis):
            return None
        pool = client.connection_pool
        kwargs = pool.connection_kwargs
        if kwargs.get("credential_provider") is not None:
            return None
        options: dict[str, Any] = {
            "db": int(kwargs.get("db") or 0),
            "username": kwargs.get("username"),
            "password": kwargs.get("password"),
            "client_name": kwargs.get("client_name"),
            "connect_timeout_s": kwargs.get("socket_connect_timeout"),
            "timeout_s": kwargs.get("socket_timeout"),
        }
        if pool.connection_class is Connection:
            options["host"] = kwargs.get("host") or "localhost"
            options["port"] = int(kwargs.get("port") or 6379)
        elif pool.connection_class is UnixDomainSocketConnection:
            options["path"] = kwargs["path"]
        else:
            return None
        return cls(script, **options)

    @property
    def ready(self) -> bool:
        """Whether :meth:`submit` can send at once (the connection is open)."""
        return self._replies is not None and self._replies.open

    def submit(self, args: Sequence[Arg], answer: Answer) -> None:
        """Send ``EVALSHA`` now, without waiting: ``answer`` is told the reply, or the
        exception (an error reply raised as by :meth:`evalsha`). Only when :attr:`ready`.
        The call is on the wire when this returns, so calls submitted one after another
        run in that order, and ``answer`` is called from the connection's callback.

        Not retried when Redis has lost the script (loaded with every connection, so only
        after a ``SCRIPT FLUSH``): calls submitted after it are already on the wire and
        would overtake a resend. The call fails instead, and so do the ones behind it, as
        the connection is dropped; the next call reconnects and loads the script again."""
        replies = self._replies
        if replies is None:
            raise ConnectionError("Connection to Redis is not open")
        told: Answer = partial(_checked, replies, answer)
        if self._timeout_s is not None:  # as _call: a reply too late drops the connection
            timer = replies.loop.call_later(
                self._timeout_s, replies.abort, RedisTimeout("Timeout reading from Redis")
            )
            told = partial(_cancel_then, timer, told)
        replies.expect(self._evalsha(args), told)

    async def evalsha(self, args: Sequence[Arg]) -> Any:
        """The script's reply for ``args`` (ARGV; the script takes no KEYS)."""
        packed = self._evalsha(args)
        reply = await self._call(packed)
        if isinstance(reply, hiredis.ReplyError) and str(reply).startswith("NOSCRIPT"):
            loaded = await self._call(_pack(("SCRIPT", "LOAD", self._script)))
            raise_if_error(loaded)
            reply = await self._call(packed)
        raise_if_error(reply)
        return reply

    def _evalsha(self, args: Sequence[Arg]) -> bytes:
        return _pack(("EVALSHA", self._sha, 0, *args))

    async def close(self) -> None:
        if self._replies is not None:
            self._replies.close()
            self._replies = None

    async def _call(self, packed: bytes) -> Any:
        replies = self._replies
        if replies is None or not replies.open:
            replies = await self._open()
        reply = replies.send(packed)
        if self._timeout_s is None:
            return await reply
        try:
            async with asyncio.timeout(self._timeout_s):
                return await reply
        except TimeoutError:  # the builtin one, asyncio's
            # Replies come in order, so a late one would answer the next call: drop the
            # connection rather than wait for it.
            error = RedisTimeout("Timeout reading from Redis")
            replies.abort(error)
            raise error from None

    async def _open(self) -> _Replies:
        async with self._opening:
            if self._replies is not None and self._replies.open:
                return self._replies
            loop = asyncio.get_running_loop()
            try:
                async with asyncio.timeout(self._connect_timeout_s):
                    if self._path is not None:
                        _, replies = await loop.create_unix_connection(_Replies, self._path)
                    else:
                        _, replies = await loop.create_connection(_Replies, self._host, self._port)
                    for command in self._handshake:
                        answer = await replies.send(_pack(command))
                        if isinstance(answer, hiredis.ReplyError):
                            replies.close()
                            kind = AuthenticationError if command[0] == "AUTH" else ResponseError
                            raise kind(str(answer))
            except (OSError, TimeoutError) as exc:
                where = self._path or f"{self._host}:{self._port}"
                raise ConnectionError(f"Error connecting to Redis at {where}: {exc!r}") from exc
            self._replies = replies
            return replies


def _cancel_then(timer: asyncio.TimerHandle, answer: Answer, reply: Any) -> None:
    timer.cancel()
    answer(reply)


def _checked(replies: _Replies, answer: Answer, reply: Any) -> None:
    """Pass ``reply`` on to ``answer``, an error reply as the exception redis-py raises."""
    if isinstance(reply, hiredis.ReplyError):
        error = _error(reply)
        if isinstance(error, NoScriptError):
            replies.abort(ConnectionError(f"Redis lost the script: {reply}"))
        reply = error
    answer(reply)


def _error(reply: hiredis.ReplyError) -> ResponseError:
    """An error reply as redis-py raises it (``NoScriptError`` for an unknown script)."""
    message = str(reply)
    return (NoScriptError if message.startswith("NOSCRIPT") else ResponseError)(message)


def raise_if_error(reply: Any) -> None:
    """Raise ``reply`` if it is an error reply (see :func:`_error`)."""
    if isinstance(reply, hiredis.ReplyError):
        raise _error(reply)
