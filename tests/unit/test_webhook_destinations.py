"""Where webhooks may go: the address rules, and the guarded transport over real sockets
(a plain and a TLS receiver on this machine, the name ``localhost`` really resolved)."""

from __future__ import annotations

import ipaddress
import shutil
import ssl
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from ridehail.notifications.destinations import (
    DestinationRefused,
    GuardedTransport,
    IPAddress,
    forbidden,
    refusal,
)

FORBIDDEN = {
    "127.0.0.1": "loopback",
    "127.8.9.10": "loopback",
    "::1": "loopback",
    "10.1.2.3": "private",
    "172.16.0.9": "private",
    "192.168.1.1": "private",
    "fd12:3456::1": "private",
    "169.254.169.254": "link-local",  # the cloud metadata service
    "fe80::1": "link-local",
    "0.0.0.0": "unspecified",
    "::": "unspecified",
    "224.0.0.1": "multicast",
    "ff02::1": "multicast",
    "100.64.0.1": "non-public",  # shared address space (CGNAT)
    "192.0.2.7": "private",  # documentation range
    "240.0.0.1": "reserved",
    # IPv4 spelled in IPv6: mapped, NAT64 and 6to4 forms of forbidden addresses.
    "::ffff:127.0.0.1": "loopback",
    "::ffff:169.254.169.254": "link-local",
    "64:ff9b::a00:1": "private",
    "2002:7f00:1::": "loopback",
}
PUBLIC = ["8.8.8.8", "1.1.1.1", "93.184.216.34", "2606:4700:4700::1111", "::ffff:8.8.8.8"]


@pytest.mark.parametrize(("address", "kind"), sorted(FORBIDDEN.items()))
def test_non_public_addresses_are_forbidden(address: str, kind: str) -> None:
    reason = forbidden(ipaddress.ip_address(address))
    assert reason is not None and reason.startswith(kind), reason
    assert refusal(address) == reason  # a literal in a URL is refused when created


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_are_allowed(address: str) -> None:
    assert forbidden(ipaddress.ip_address(address)) is None
    assert refusal(address) is None


@pytest.mark.parametrize(
    "host",
    [
        "localhost",
        "LOCALHOST",
        "localhost.",
        "api.localhost",
        "127.1",
        "0x7f000001",
        "2130706433",
        "0177.0.0.1",
        "[::1]",
    ],
)
def test_hosts_refused_without_resolving(host: str) -> None:
    assert refusal(host) is not None


@pytest.mark.parametrize("host", ["example.com", "hooks.example.org", "localhost.example.com"])
def test_names_are_left_to_the_delivery_check(host: str) -> None:
    assert refusal(host) is None


class _Seen:
    def __init__(self) -> None:
        self.hosts: list[str] = []


@contextmanager
def _receiver(tls: ssl.SSLContext | None = None) -> Iterator[tuple[int, _Seen]]:
    """An HTTP(S) server on 127.0.0.1 that answers 200 and records each Host header."""
    seen = _Seen()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            seen.hosts.append(self.headers["Host"])
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_args: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture(scope="module")
def localhost_cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for the name ``localhost`` only (not for 127.0.0.1)."""
    openssl = shutil.which("openssl")
    assert openssl, "the openssl command is needed to make a test certificate"
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key


async def test_a_name_resolving_to_loopback_is_refused_and_nothing_is_sent() -> None:
    with _receiver() as (port, seen):
        async with httpx.AsyncClient(transport=GuardedTransport()) as client:
            for host in ("localhost", "127.0.0.1", "127.1", "[::ffff:127.0.0.1]"):
                with pytest.raises(DestinationRefused, match="loopback address"):
                    await client.post(f"http://{host}:{port}/hook", content=b"{}")
    assert seen.hosts == []


async def test_an_allowed_name_is_sent_to_its_checked_address_with_its_name() -> None:
    judged: list[IPAddress] = []

    def allow_all(ip: IPAddress) -> None:
        judged.append(ip)

    with _receiver() as (port, seen):
        async with httpx.AsyncClient(transport=GuardedTransport(judge=allow_all)) as client:
            reply = await client.post(f"http://localhost:{port}/hook", content=b"{}")
    assert reply.status_code == 200
    assert seen.hosts == [f"localhost:{port}"]  # the name, not the address connected to
    assert ipaddress.ip_address("127.0.0.1") in judged


async def test_tls_is_verified_against_the_name_not_the_address(
    localhost_cert: tuple[Path, Path],
) -> None:
    cert, key = localhost_cert
    server_side = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_side.load_cert_chain(cert, key)
    trusting = ssl.create_default_context(cafile=str(cert))
    with _receiver(server_side) as (port, seen):
        inner = httpx.AsyncHTTPTransport(verify=trusting, trust_env=False)
        guarded = GuardedTransport(inner, judge=lambda _ip: None)
        async with httpx.AsyncClient(transport=guarded) as client:
            # Connected to 127.0.0.1, the certificate checked for "localhost": it matches.
            reply = await client.post(f"https://localhost:{port}/hook", content=b"{}")
            assert reply.status_code == 200
            # The same certificate does not name 127.0.0.1: checked against the address,
            # the handshake fails, which is what the first request would have hit had the
            # name been lost when the URL was pointed at the address.
            with pytest.raises(httpx.ConnectError, match=r"(?i)certificate"):
                await client.post(f"https://127.0.0.1:{port}/hook", content=b"{}")
    assert seen.hosts == [f"localhost:{port}"]
