"""Which client a request comes from, when reverse proxies may stand in front of the site.

`TRUSTED_PROXIES=n` says n proxies relay every request, so the client is read from their
X-Forwarded-For (and the scheme and host from X-Forwarded-Proto and -Host). Two wrong
settings are common and both fail silently: with n > 0 and the site reached directly, a
client writes its own X-Forwarded-For and picks the address the rate limits count; with 0
behind a proxy, every visitor shares the proxy's address and one bucket. So the headers are
believed only from a peer inside TRUSTED_PROXY_NETWORKS, and the first request that
contradicts the setting is logged as a warning naming the fix. From any other peer the
request keeps the peer's own address, which is then what every per-client limit counts
(sign-ups, admin sign-ins).

Only loopback is trusted by default. Trusting every private range, as before, let any host
on one of them (a neighbour container, a LAN machine reaching a published port) post
straight to gunicorn with a fresh X-Forwarded-For each time and never meet a limit.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from werkzeug.middleware.proxy_fix import ProxyFix

log = logging.getLogger(__name__)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

def networks(specs: Iterable[str]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(spec.strip(), strict=False) for spec in specs
                 if spec.strip())


def _inside(address: str | None, nets: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in net for net in nets)


class TrustedProxies:
    """WSGI middleware: ProxyFix for requests relayed by our proxies, nothing for others."""

    def __init__(self, app: Callable[..., Any], count: int, trusted: Sequence[Network]) -> None:
        self.app = app
        self.count = count
        self.trusted = tuple(trusted)
        self.fixed = ProxyFix(app, x_for=count, x_proto=count, x_host=count) if count else app
        self._warned: set[str] = set()

    def _warn_once(self, key: str, message: str, *args: object) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning(message, *args)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        peer = environ.get("REMOTE_ADDR")
        forwarded = "HTTP_X_FORWARDED_FOR" in environ
        from_proxy = _inside(peer, self.trusted)
        if self.count and from_proxy:
            return self.fixed(environ, start_response)
        if self.count and forwarded:
            self._warn_once("spoof", "TRUSTED_PROXIES=%d, but a request came straight from %s, "
                            "outside TRUSTED_PROXY_NETWORKS: its X-Forwarded-For is ignored. "
                            "Close the site's port to everyone but the proxy, or add the "
                            "proxy's network to TRUSTED_PROXY_NETWORKS.", self.count, peer)
        elif not self.count and forwarded and from_proxy:
            self._warn_once("behind", "requests arrive through a proxy at %s (they carry "
                            "X-Forwarded-For) but TRUSTED_PROXIES=0: every visitor shares the "
                            "proxy's address in the rate limits. Set TRUSTED_PROXIES=1.", peer)
        return self.app(environ, start_response)
