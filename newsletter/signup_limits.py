"""Limits on sign-ups, so nobody can flood the form or mail-bomb an inbox through it.

A form anyone can post makes us mail any address. Two kinds of limit guard it:

- per client: sign-up posts per IP address (an IPv6 client's whole /64, which one host
  is handed), like any form's rate limit;
- per confirmation mail: per mailbox, with the aliases one inbox answers to folded
  together (case, `+tag`, Gmail's dots), per recipient domain, and a cap on all such mail
  per hour. They stop many clients aimed at one inbox.

Counters live in Redis when REDIS_URL is set, else in this process. If Redis is down they
fall back to this process and log it, because a sign-up must never depend on the broker
(Flask-Limiter's own fallback cannot be kept to one route: it would throttle every page).
A held-back mail is counted per limit in `mail_limit_hits`, without the address, for
`newsletter status`.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from limits import RateLimitItem, parse_many
from limits.storage import storage_from_string
from limits.strategies import FixedWindowRateLimiter
from sqlmodel import Field, SQLModel

from newsletter.config import Settings

log = logging.getLogger(__name__)

# Providers whose mailboxes ignore dots in the local part.
_DOTLESS = frozenset({"gmail.com", "googlemail.com"})


def mailbox(address: str) -> str:
    """The inbox an address reaches: `Bo.b+news@GMail.com` and `bob@gmail.com` are one."""
    local, _, domain = address.strip().lower().rpartition("@")
    local = local.split("+", 1)[0]
    if domain in _DOTLESS:
        local, domain = local.replace(".", ""), "gmail.com"
    return f"{local}@{domain}"


def domain(address: str) -> str:
    return address.strip().lower().rpartition("@")[2]


def client_network(ip: str | None) -> str:
    """What a per-client limit counts: an IPv4 address, or an IPv6 client's /64.

    One IPv6 host is handed a whole /64, so counting single addresses would let it
    take a fresh address for every request.
    """
    try:
        parsed = ipaddress.ip_address((ip or "").strip())
    except ValueError:
        return ip or "unknown"
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.ip_network(f"{parsed}/64", strict=False))
    return str(parsed)


class MailLimitHit(SQLModel, table=True):
    """A confirmation mail not sent because a limit was reached; the address is not kept."""

    __tablename__ = "mail_limit_hits"

    id: int | None = Field(default=None, primary_key=True)
    limit: str = Field(max_length=16)  # mailbox, domain, all
    at: datetime = Field(default_factory=lambda: datetime.now(UTC), index=True)


Rule = tuple[str, list[RateLimitItem], Callable[[str], str]]
# The limits on confirmation mail, by the name a held-back mail is counted under.
MAIL_LIMITS = ("mailbox", "domain", "all")


@dataclass
class SignupLimits:
    """Every sign-up limit, over one counter store."""

    storage_uri: str
    client_rules: list[Rule]
    mail_rules: list[Rule]
    _limiter: FixedWindowRateLimiter | None = field(default=None, init=False)

    @classmethod
    def from_settings(cls, settings: Settings) -> SignupLimits:
        per_mail = (settings.signup_mailbox_limit, settings.signup_domain_limit,
                    settings.signup_mail_limit)
        keys: tuple[Callable[[str], str], ...] = (mailbox, domain, lambda _address: "all")
        return cls(
            settings.redis_url or "memory://",
            [("client", parse_many(settings.signup_rate_limit), client_network)],
            [(name, parse_many(limit), key)
             for name, limit, key in zip(MAIL_LIMITS, per_mail, keys, strict=True)],
        )

    def client_refused(self, ip: str | None) -> bool:
        """True when this client has posted the form too often; else the post counts."""
        return self._counted(self.client_rules, ip or "") is not None

    def mail_refused(self, address: str) -> str | None:
        """The name of the limit a confirmation mail to `address` would pass, or None and
        the mail counts."""
        return self._counted(self.mail_rules, address)

    def _counter(self) -> FixedWindowRateLimiter:
        if self._limiter is None:
            self._limiter = FixedWindowRateLimiter(storage_from_string(self.storage_uri))
        return self._limiter

    def _counted(self, rules: list[Rule], subject: str) -> str | None:
        try:
            return self._count(rules, subject)
        except Exception as exc:  # the store is Redis, and it is down or refusing
            if self.storage_uri.startswith("memory://"):
                raise
            log.error("sign-up limits: %s unreachable (%s); counting in this process until "
                      "restart", self.storage_uri.split("@")[-1], exc)
            self.storage_uri, self._limiter = "memory://", None
            return self._count(rules, subject)

    def _count(self, rules: list[Rule], subject: str) -> str | None:
        limiter = self._counter()
        keys = [(name, items, key(subject)) for name, items, key in rules]
        for name, items, key in keys:
            if not all(limiter.test(item, "signup", name, key) for item in items):
                return name
        for name, items, key in keys:
            for item in items:
                limiter.hit(item, "signup", name, key)
        return None
