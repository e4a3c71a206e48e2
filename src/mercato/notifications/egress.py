"""Where webhooks may go: public internet addresses only, unless the operator allows more.

A webhook URL is chosen by whoever registers it, and the worker that calls it usually sits next
to things that must never be reachable from outside: the cloud's metadata service
(``169.254.169.254``), the database, Redis, an admin port on ``localhost``. So a target is
refused when it is, or resolves to, an address that is not globally routable: loopback,
private (RFC 1918, unique-local ``fc00::/7``), link-local, carrier-grade NAT (``100.64.0.0/10``),
multicast, reserved, unspecified, documentation ranges, and IPv6 addresses that carry one of
those in IPv4 form (IPv4-mapped ``::ffff:127.0.0.1``, NAT64, 6to4, Teredo).

Two checks, because DNS is not ours:

* at registration, :func:`url_host_problem` refuses an address literal (in any of the forms a
  resolver accepts, such as ``2130706433`` or ``127.1``) and the ``localhost`` names;
* at delivery, :class:`PublicOnlyTransport` resolves the host itself, refuses the connection
  if *any* address is not public, and connects to the address it checked, so that a name
  cannot resolve to a public address for the check and a private one for the connection.

``MERCATO_WEBHOOK_ALLOW_PRIVATE_TARGETS=true`` turns both off, for a shop whose integrations
run on its own network (and for tests against a receiver on 127.0.0.1).
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Iterable

import anyio
import httpcore
import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
# What inet_aton reads as an IPv4 address besides the dotted quad: 127.1, 0x7f000001, 2130706433.
_LEGACY_IPV4 = re.compile(r"^(0x[0-9a-f]+|[0-9]+)(\.(0x[0-9a-f]+|[0-9]+)){0,3}$", re.IGNORECASE)
_LOCAL_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback")


def _tunnelled_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses a 6to4 or Teredo address carries."""
    found: list[ipaddress.IPv4Address] = []
    if address.sixtofour is not None:
        found.append(address.sixtofour)
    if address.teredo is not None:
        found.extend(address.teredo)
    return found


def is_public_address(address: IPAddress) -> bool:
    """Whether ``address`` is a globally routable unicast address."""
    if isinstance(address, ipaddress.IPv6Address):
        # An IPv4 address in IPv6 clothing is judged as the IPv4 address it reaches.
        if address.ipv4_mapped is not None:
            return is_public_address(address.ipv4_mapped)
        if address in _NAT64:
            return is_public_address(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
        if any(not is_public_address(v4) for v4 in _tunnelled_ipv4(address)):
            return False
        if address.is_site_local:
            return False
    return address.is_global and not (
        address.is_multicast
        or address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_reserved
        or address.is_unspecified
    )


def parse_address(host: str) -> IPAddress | None:
    """``host`` as an IP address when it is one, in any form a resolver would accept."""
    host = host.strip("[]")
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if _LEGACY_IPV4.match(host):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def url_host_problem(host: str) -> str | None:
    """Why a webhook may not name ``host`` (checked without resolving it), or None."""
    name = host.lower().rstrip(".")
    if name in _LOCAL_NAMES or name.endswith(".localhost"):
        return "must not point at this machine (localhost)"
    address = parse_address(name)
    if address is not None and not is_public_address(address):
        return (
            f"must not point at a loopback, private, link-local or otherwise non-public "
            f"address ({address})"
        )
    return None


class TargetRefused(httpcore.ConnectError):
    """The host resolved to an address webhooks may not reach (reported as a failed attempt)."""


async def public_addresses(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to, when all of them are public; else
    :class:`TargetRefused` (one private address is enough: the resolver's order is not
    ours to trust)."""
    literal = parse_address(host)
    if literal is not None:
        candidates: Iterable[str] = [str(literal)]
    else:
        try:
            infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from exc
        candidates = dict.fromkeys(str(info[4][0]) for info in infos)
    addresses = list(candidates)
    for text in addresses:
        if not is_public_address(ipaddress.ip_address(text)):
            raise TargetRefused(f"{host} resolves to {text}, which is not a public address")
    if not addresses:
        raise httpcore.ConnectError(f"{host} resolves to no address")
    return addresses


class PublicOnlyBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend, connecting to checked public addresses only."""

    def __init__(self, inner: httpcore.AsyncNetworkBackend | None = None) -> None:
        self._inner = inner if inner is not None else httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109  (httpcore's interface)
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        last: Exception | None = None
        # The connection goes to the address that was checked; TLS still verifies the name
        # (httpcore takes the server name from the URL, not from what was dialled).
        for address in await public_addresses(host, port):
            try:
                return await self._inner.connect_tcp(
                    address,
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc
        assert last is not None
        raise last

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109  (httpcore's interface)
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise TargetRefused("webhooks are not sent to unix sockets")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class PublicOnlyTransport(httpx.AsyncHTTPTransport):
    """httpx's own transport (no proxies from the environment), over :class:`PublicOnlyBackend`."""

    def __init__(self, backend: httpcore.AsyncNetworkBackend | None = None) -> None:
        super().__init__(trust_env=False)
        # httpx has no public way to give its transport another network backend, so the pool
        # it built is replaced by one with the same defaults and ours (the SSRF tests pin it).
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            max_connections=100,
            max_keepalive_connections=20,
            keepalive_expiry=5.0,
            network_backend=backend if backend is not None else PublicOnlyBackend(),
        )


def webhook_client(*, timeout: float, allow_private_targets: bool) -> httpx.AsyncClient:
    """The client the worker sends webhooks with: no redirects followed, no proxies from the
    environment, and (unless allowed) public targets only."""
    transport = None if allow_private_targets else PublicOnlyTransport()
    return httpx.AsyncClient(
        timeout=timeout, follow_redirects=False, trust_env=False, transport=transport
    )
