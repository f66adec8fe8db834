"""Limits on sign-ups, so nobody can flood the form or mail-bomb an inbox through it.

A form anyone can post makes us mail any address. Two kinds of limit guard it:

- per client: sign-up posts per IP address (an IPv6 client's whole /64, which one host
  is handed), like any form's rate limit;
- per confirmation mail: per mailbox, with the aliases one inbox answers to folded
  together (case, `+tag`, Gmail's dots), per recipient domain, and a cap on all such mail
  per hour. They stop many clients aimed at one inbox.

Limits are written in the `limits` library's syntax ("5/minute;100/day") and counted in
fixed windows: in Redis when REDIS_URL is set, all of one check's windows in one script
call, else in this process. If Redis is down they fall back to this process and log it,
because a sign-up must never depend on the broker (Flask-Limiter's own fallback cannot be
kept to one route: it would throttle every page).
A held-back mail is counted per limit in `mail_limit_hits`, without the address, for
`newsletter status`.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

import redis
from limits import RateLimitItem, parse_many
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


@dataclass(frozen=True)
class Window:
    """One fixed-window counter: `amount` counts allowed per `seconds` under `key`."""

    key: str
    amount: int
    seconds: int


class Counters(Protocol):
    def count_unless_full(self, windows: Sequence[Window]) -> int | None:
        """The index of the first full window, counting nothing; or None, every window
        counted once. One atomic step: concurrent sign-ups cannot both take a last place."""


# All of a sign-up's windows in one round trip: test every one, then count every one.
# It was about twelve calls per sign-up, and each waits its turn on a loaded machine
# (docs/BENCHMARKS.md, the site under load). A key's window starts at its first count.
_COUNT_UNLESS_FULL = """
for i = 1, #KEYS do
  if tonumber(redis.call('GET', KEYS[i]) or '0') >= tonumber(ARGV[2 * i - 1]) then
    return i
  end
end
for i = 1, #KEYS do
  if redis.call('INCR', KEYS[i]) == 1 then redis.call('EXPIRE', KEYS[i], ARGV[2 * i]) end
end
return 0
"""


class RedisCounters:
    """Counters every web worker shares, so a limit holds across processes and hosts."""

    def __init__(self, url: str) -> None:
        # A down Redis must not hold a sign-up for long: it falls back (SignupLimits).
        client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
        self._script = client.register_script(_COUNT_UNLESS_FULL)

    def count_unless_full(self, windows: Sequence[Window]) -> int | None:
        args = [value for w in windows for value in (w.amount, w.seconds)]
        full = int(self._script(keys=[w.key for w in windows], args=args))
        return full - 1 if full else None


class LocalCounters:
    """Counters in this process: without Redis, or while it is unreachable."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._counts: dict[str, tuple[int, float]] = {}

    def count_unless_full(self, windows: Sequence[Window]) -> int | None:
        now = self._clock()
        with self._lock:
            current = [self._current(w.key, now) for w in windows]
            for index, (window, (count, _ends)) in enumerate(zip(windows, current, strict=True)):
                if count >= window.amount:
                    return index
            for window, (count, ends) in zip(windows, current, strict=True):
                self._counts[window.key] = (count + 1, ends or now + window.seconds)
            return None

    def _current(self, key: str, now: float) -> tuple[int, float]:
        count, ends = self._counts.get(key, (0, 0.0))
        return (count, ends) if ends > now else (0, 0.0)


@dataclass
class SignupLimits:
    """Every sign-up limit, over one counter store."""

    storage_uri: str
    client_rules: list[Rule]
    mail_rules: list[Rule]
    _counters: Counters | None = field(default=None, init=False)

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

    def _store(self) -> Counters:
        if self._counters is None:
            self._counters = (LocalCounters() if self.storage_uri.startswith("memory://")
                              else RedisCounters(self.storage_uri))
        return self._counters

    def _counted(self, rules: list[Rule], subject: str) -> str | None:
        names, windows = [], []
        for name, items, key in rules:
            for item in items:
                names.append(name)
                windows.append(Window(item.key_for("signup", name, key(subject)), item.amount,
                                      item.get_expiry()))
        try:
            full = self._store().count_unless_full(windows)
        except (redis.RedisError, OSError) as exc:  # Redis is down or refusing
            log.error("sign-up limits: %s unreachable (%s); counting in this process until "
                      "restart", self.storage_uri.split("@")[-1], exc)
            self.storage_uri, self._counters = "memory://", None
            full = self._store().count_unless_full(windows)
        return None if full is None else names[full]
