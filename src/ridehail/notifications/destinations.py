"""Where webhooks may be sent: public internet addresses only, unless told otherwise.

A webhook URL is chosen by an admin, and the worker that POSTs to it runs inside our
network, next to PostgreSQL, Redis, the metrics port and the cloud's metadata service
(169.254.169.254 hands out credentials to whoever asks). Without a guard, a URL that names
one of those turns the webhook sender into a way in (server-side request forgery).

Two checks, both refusing any address that is not globally routable (loopback, private,
link-local, CGNAT, unspecified, multicast, reserved, documentation ranges, and IPv4 in
IPv6 forms of those):

- :func:`refusal` when an endpoint is created: an IP literal or a ``localhost`` name is
  refused at once with a clear 422;
- :class:`GuardedTransport` at every delivery: the host is resolved, every address it
  resolves to is checked, and the request is sent to the checked addresses, each in turn
  until one connects (the URL's host
  kept in the ``Host`` header and, for https, as the TLS server name, so the certificate is
  verified against the name). Checking the address actually connected to is what defeats a
  name that resolves to a public address when created and to a private one later (DNS
  rebinding); the resolution is not repeated between check and connect.

``webhook_allow_private_networks`` turns both off (a receiver on the same host in
development, an internal consumer behind a private load balancer).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Callable

import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

#: IPv6 prefixes that carry an IPv4 address in their last 32 bits (NAT64, RFC 6052).
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def _embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    if isinstance(ip, ipaddress.IPv4Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def forbidden(ip: IPAddress) -> str | None:
    """Why a webhook must not be sent to ``ip`` ('loopback address 127.0.0.1'), or None."""
    inner = _embedded_ipv4(ip)
    if inner is not None:
        reason = forbidden(inner)
        return f"{reason} (as {ip})" if reason else None
    for reason, flagged in (
        ("loopback", ip.is_loopback),
        ("unspecified", ip.is_unspecified),
        ("link-local", ip.is_link_local),
        ("multicast", ip.is_multicast),
        ("reserved", ip.is_reserved),
        ("private", ip.is_private),
    ):
        if flagged:
            return f"{reason} address {ip}"
    if not ip.is_global:  # e.g. 100.64.0.0/10, shared address space (CGNAT)
        return f"non-public address {ip}"
    return None


def _literal(host: str) -> IPAddress | None:
    """The address ``host`` spells, in any form the resolver would take as one: standard,
    bracketed IPv6, or the legacy IPv4 forms ``127.1``, ``0x7f000001``, ``2130706433``."""
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        pass
    if host and all(c in "0123456789abcdefxABCDEFX." for c in host):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def refusal(host: str) -> str | None:
    """Why a URL naming ``host`` is refused when created, judged without resolving it (an
    IP literal or a ``localhost`` name), or None. Names are checked at each delivery."""
    name = host.lower().rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        return f"name of this machine ({host})"
    ip = _literal(name)
    return forbidden(ip) if ip is not None else None


class DestinationRefused(httpx.ConnectError):
    """The URL's host is, or resolves to, an address webhooks are not sent to."""


class GuardedTransport(httpx.AsyncBaseTransport):
    """Sends each request to an address of its host checked by :func:`forbidden`."""

    def __init__(
        self,
        inner: httpx.AsyncBaseTransport | None = None,
        *,
        judge: Callable[[IPAddress], str | None] = forbidden,
    ) -> None:
        self._inner = inner or httpx.AsyncHTTPTransport(trust_env=False)
        self._judge = judge

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host
        port = request.url.port or (443 if request.url.scheme == "https" else 80)
        addresses = await _resolve(host, port, request)
        for ip in addresses:
            reason = self._judge(ip)
            if reason is not None:
                raise DestinationRefused(
                    f"{host} is or resolves to the {reason}; webhooks are sent to public "
                    "addresses only (RIDEHAIL_WEBHOOK_ALLOW_PRIVATE_NETWORKS)",
                    request=request,
                )
        # The Host header was set from the URL when the request was built and stays.
        if request.url.scheme == "https":
            request.extensions = {**request.extensions, "sni_hostname": host}
        url = request.url
        for n, ip in enumerate(addresses, start=1):
            request.url = url.copy_with(host=str(ip))
            try:
                return await self._inner.handle_async_request(request)
            except httpx.ConnectError:  # nothing was sent: the next address, if any
                if n == len(addresses):
                    raise
        raise AssertionError("unreachable: _resolve returns at least one address")

    async def aclose(self) -> None:
        await self._inner.aclose()


async def _resolve(host: str, port: int, request: httpx.Request) -> list[IPAddress]:
    literal = _literal(host)
    if literal is not None:
        return [literal]
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise httpx.ConnectError(f"cannot resolve {host}: {exc}", request=request) from exc
    addresses: list[IPAddress] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        ip = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if ip not in addresses:
            addresses.append(ip)
    if not addresses:
        raise httpx.ConnectError(f"{host} resolves to no address", request=request)
    return addresses


def webhook_client(*, timeout_s: float, allow_private_networks: bool) -> httpx.AsyncClient:
    """The HTTP client webhooks are sent with: no redirects followed (a redirect could
    lead anywhere), no proxy from the environment, and the guard unless allowed."""
    transport = (
        httpx.AsyncHTTPTransport(trust_env=False) if allow_private_networks else GuardedTransport()
    )
    return httpx.AsyncClient(
        timeout=timeout_s, follow_redirects=False, trust_env=False, transport=transport
    )
