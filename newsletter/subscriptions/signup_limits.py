"""Limits on sign-ups, so nobody can flood the form or mail-bomb an inbox through it.

A form anyone can post makes us mail any address. Two kinds of limit guard it:

- per client: sign-up posts per IP address (an IPv6 client's whole /64, which one host
  is handed), like any form's rate limit;
- per confirmation mail: per mailbox, with the aliases one inbox answers to folded
  together (case, `+tag`, Gmail's dots), per recipient domain, and a cap on all such mail
  per hour. They stop many clients aimed at one inbox.

Limits are written in the `limits` library's syntax ("5/minute;100/day") and counted in
fixed windows that every web process shares: in Redis when REDIS_URL is set (all of one
check's windows in one script call), else in the database. A limit must hold through a
Redis outage too, so while Redis fails the database counts, and Redis is asked again
REDIS_RETRY seconds later; what the database counted meanwhile still counts against the
windows it belongs to once Redis is back (a sign-up must never depend on the broker, and
an outage must not reopen the form to abuse: per-process counts had let each web worker
take its own share until restart).

A counter's key never holds the address or IP it counts, only its keyed hash
(newsletter/pseudonyms.py), and erasing a reader deletes their mailbox's counters
(`SignupLimits.forget`). A held-back mail is counted per limit in `mail_limit_hits`,
without the address, for `newsletter status`.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import redis
from limits import RateLimitItem, parse_many
from sqlalchemy import Connection, DateTime, Engine, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Field, Session, SQLModel, col

from newsletter import broker
from newsletter.config import Settings
from newsletter.db import aware
from newsletter.pseudonyms import Pseudonyms

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


class SignupWindow(SQLModel, table=True):
    """One fixed-window count kept in the database: without Redis, or while it fails."""

    __tablename__ = "signup_limit_windows"

    key: str = Field(primary_key=True, max_length=120)  # a pseudonym, never the address
    count: int = Field(default=0)
    ends_at: datetime = Field(sa_type=DateTime(timezone=True), index=True)


Rule = tuple[str, list[RateLimitItem], Callable[[str], str]]
# The limits on confirmation mail, by the name a held-back mail is counted under.
MAIL_LIMITS = ("mailbox", "domain", "all")
# Seconds the database alone counts after Redis failed, before Redis is asked again: a
# Redis that does not answer at all costs a sign-up its connect timeout only this often.
REDIS_RETRY = 5.0
# What a counter key's subject is hashed for (newsletter/pseudonyms.py).
PURPOSE = "sign-up limits"


@dataclass(frozen=True)
class Window:
    """One fixed-window counter: `amount` counts allowed per `seconds` under `key`."""

    key: str
    amount: int
    seconds: int


# All of a sign-up's windows in one round trip: test every one, then count every one.
# It was about twelve calls per sign-up, and each waits its turn on a loaded machine
# (docs/BENCHMARKS.md, the site under load). A key's window starts at its first count.
# ARGV per key: the count that fills it here (the amount less what the database counted
# during an outage), and its length in seconds.
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
        # A down Redis must not hold a sign-up for long: the database counts instead.
        self._client = broker.redis_client(url)
        self._script = self._client.register_script(_COUNT_UNLESS_FULL)
        self.where = url.split("@")[-1]  # for the log, without a password

    def count_unless_full(self, windows: Sequence[Window], already: Sequence[int]
                          ) -> int | None:
        """The index of the first full window, counting nothing; or None, every window
        counted once. `already`: each window's count kept elsewhere (the database)."""
        args = [value for w, before in zip(windows, already, strict=True)
                for value in (w.amount - before, w.seconds)]
        full = int(self._script(keys=[w.key for w in windows], args=args))
        return full - 1 if full else None

    def forget(self, keys: Sequence[str]) -> None:
        self._client.delete(*keys)


class DatabaseCounters:
    """Counters in the database every web process shares: one row per window, locked
    while a sign-up tests and counts it, so concurrent sign-ups cannot both take a last
    place."""

    def __init__(self, engine: Engine,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.engine = engine
        self._clock = clock

    @contextlib.contextmanager
    def connection(self, session: Session | None) -> Iterator[Connection]:
        """The sign-up's own transaction when it has one (on SQLite a second connection
        would wait for its write lock), else a short one of our own."""
        if session is not None:
            yield session.connection()
            return
        with self.engine.begin() as conn:
            yield conn

    def live(self, conn: Connection, windows: Sequence[Window]) -> list[int]:
        """Each window's count here, 0 for one that is not running."""
        rows = conn.execute(select(SignupWindow.key, SignupWindow.count).where(
            col(SignupWindow.key).in_([w.key for w in windows]),
            col(SignupWindow.ends_at) > self._clock()))
        counts = {key: count for key, count in rows}
        return [counts.get(w.key, 0) for w in windows]

    def count_unless_full(self, conn: Connection, windows: Sequence[Window]) -> int | None:
        now = self._clock()
        table = SignupWindow.__table__  # type: ignore[attr-defined]
        dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
        # Every row exists before any is locked, and rows are locked in key order: two
        # sign-ups sharing windows wait for each other instead of deadlocking.
        keys = sorted({w.key for w in windows})
        conn.execute(dialect.insert(table).values(
            [{"key": key, "count": 0, "ends_at": now} for key in keys]
        ).on_conflict_do_nothing(index_elements=["key"]))
        rows = conn.execute(select(table.c.key, table.c.count, table.c.ends_at)
                            .where(table.c.key.in_(keys)).order_by(table.c.key)
                            .with_for_update())
        running = {key: (count, aware(ends)) for key, count, ends in rows
                   if aware(ends) > now}
        for index, window in enumerate(windows):
            if running.get(window.key, (0, now))[0] >= window.amount:
                return index
        for window in windows:
            count, ends = running.get(window.key, (0, now + timedelta(seconds=window.seconds)))
            conn.execute(update(table).where(table.c.key == window.key)
                         .values(count=count + 1, ends_at=ends))
        return None

    def forget(self, conn: Connection, keys: Sequence[str]) -> None:
        conn.execute(delete(SignupWindow).where(col(SignupWindow.key).in_(keys)))


def forget_ended_windows(session: Session, now: datetime | None = None) -> int:
    """Delete the database's counters whose window is over (a scheduled job); how many."""
    result = session.execute(delete(SignupWindow).where(
        col(SignupWindow.ends_at) <= (now or datetime.now(UTC))))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


@dataclass
class SignupLimits:
    """Every sign-up limit, over Redis when configured and the database always."""

    client_rules: list[Rule]
    mail_rules: list[Rule]
    pseudonyms: Pseudonyms
    database: DatabaseCounters
    redis_counters: RedisCounters | None = None
    clock: Callable[[], float] = time.monotonic
    # While Redis is failing: when it is asked again.
    _outage: broker.Outage = field(default_factory=broker.Outage, init=False)

    @classmethod
    def from_settings(cls, settings: Settings, engine: Engine, pseudonyms: Pseudonyms
                      ) -> SignupLimits:
        per_mail = (settings.signup_mailbox_limit, settings.signup_domain_limit,
                    settings.signup_mail_limit)
        keys: tuple[Callable[[str], str], ...] = (mailbox, domain, lambda _address: "all")
        return cls(
            [("client", parse_many(settings.signup_rate_limit), client_network)],
            [(name, parse_many(limit), key)
             for name, limit, key in zip(MAIL_LIMITS, per_mail, keys, strict=True)],
            pseudonyms, DatabaseCounters(engine),
            RedisCounters(settings.redis_url) if settings.redis_url else None,
        )

    def client_refused(self, ip: str | None) -> bool:
        """True when this client has posted the form too often; else the post counts."""
        return self._counted(self.client_rules, ip or "", None) is not None

    def mail_refused(self, address: str, session: Session) -> str | None:
        """The name of the limit a confirmation mail to `address` would pass, or None and
        the mail counts (in the sign-up's transaction `session`, where the database
        counts)."""
        return self._counted(self.mail_rules, address, session)

    def forget(self, address: str, session: Session) -> None:
        """Delete the counters that name this address's inbox, for its erasure. Those in
        Redis would end with their window anyway (a day at most): a Redis that fails now
        is logged, not a reason to keep the reader's data."""
        keys = [w.key for name, w in self._windows(self.mail_rules, address)
                if name == "mailbox"]
        self.database.forget(session.connection(), keys)
        if self.redis_counters is not None:
            try:
                self.redis_counters.forget(keys)
            except (redis.RedisError, OSError) as exc:
                log.warning("erasure: sign-up counters in Redis not deleted (%s); they end "
                            "with their window", exc)

    def _windows(self, rules: list[Rule], subject: str) -> list[tuple[str, Window]]:
        return [(name, Window(item.key_for("signup", name,
                                           self.pseudonyms.of(PURPOSE, key(subject))),
                              item.amount, item.get_expiry()))
                for name, items, key in rules for item in items]

    def _counted(self, rules: list[Rule], subject: str, session: Session | None
                 ) -> str | None:
        named = self._windows(rules, subject)
        windows = [window for _name, window in named]
        with self.database.connection(session) as conn:
            full = self._count(conn, windows)
        return None if full is None else named[full][0]

    def _count(self, conn: Connection, windows: list[Window]) -> int | None:
        counters = self.redis_counters
        if counters is not None and not self._outage.known(self.clock()):
            try:
                full = counters.count_unless_full(windows, self.database.live(conn, windows))
            except (redis.RedisError, OSError) as exc:  # Redis is down or refusing
                if self._outage.began(self.clock(), REDIS_RETRY):
                    log.error("sign-up limits: Redis at %s unreachable (%s); counting in the "
                              "database until it answers", counters.where, exc)
            else:
                if self._outage.ended():
                    log.warning("sign-up limits: Redis at %s answers again; counting there",
                                counters.where)
                return full
        return self.database.count_unless_full(conn, windows)
