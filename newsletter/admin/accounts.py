"""Operator accounts, their sign-in, and their server-side sessions.

An account is an address and an Argon2id hash of its password (argon2-cffi's defaults,
RFC 9106's second recommended profile); the password itself is never stored. A password
has at least 12 characters, and there is no default one.

Signing in starts a session: a random token goes to the browser, and only its SHA-256 is
stored, as the session row's id, so a copy of the table signs nobody in. The row is the
session: deleting it (sign-out, `newsletter admin remove`, a timeout) ends it wherever
the cookie still is. A session ends after IDLE_TIMEOUT without a request, and LIFETIME
after sign-in whatever happens. Each session carries its own CSRF token, which every
form of the admin site must send back (newsletter/web/admin/frame.py).

Guessing is slowed by counting failed sign-ins in the database, per account and per
client network (an IPv6 client's /64, as for sign-ups): after ACCOUNT_FAILURES failures
for an account, or NETWORK_FAILURES from a network, within FAILURE_WINDOW, sign-in is
refused without looking at the password, the right one included. The database is the
counter because it is what every web process shares, with or without Redis. A refused
attempt is not counted again, so the lock lifts FAILURE_WINDOW after the last failure
that led to it; a successful sign-in clears its account's count.

An unknown address costs the same Argon2 verification as a wrong password (against a
hash of nothing), so the answer and its time do not tell which accounts exist.

What was typed as the address is kept only as a keyed hash (newsletter/pseudonyms.py): in
the failure count, and in the audit log unless it names an account. People type their
password into the address field; it must not end up on /admin/audit. Every attempt is
audited, throttled ones included.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import Enum
from functools import lru_cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Column, DateTime, ForeignKey, Integer, delete, func, or_
from sqlmodel import Field, Session, SQLModel, col, select

from newsletter.admin import audit
from newsletter.db import aware
from newsletter.pseudonyms import Pseudonyms
from newsletter.readers.reader_input import InvalidInput, parse_email
from newsletter.subscriptions.signup_limits import client_network

IDLE_TIMEOUT = timedelta(minutes=30)
LIFETIME = timedelta(hours=12)
FAILURE_WINDOW = timedelta(minutes=15)
ACCOUNT_FAILURES = 5
NETWORK_FAILURES = 20
MIN_PASSWORD = 12
# Argon2 takes any length; the cap keeps a huge "password" from being hashed at all.
MAX_PASSWORD = 1024

_hasher = PasswordHasher()


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Operator(SQLModel, table=True):
    __tablename__ = "operators"

    id: int | None = Field(default=None, primary_key=True)
    email: str = Field(max_length=254, unique=True, index=True)
    password_hash: str = Field(max_length=200)
    created_at: datetime = Field(default_factory=_utcnow, sa_type=DateTime(timezone=True))


class AdminSession(SQLModel, table=True):
    __tablename__ = "admin_sessions"

    id: str = Field(max_length=64, primary_key=True)  # SHA-256 of the cookie's token
    operator_id: int = Field(sa_column=Column(
        Integer, ForeignKey("operators.id", ondelete="CASCADE"), nullable=False, index=True))
    created_at: datetime = Field(sa_type=DateTime(timezone=True))
    last_seen_at: datetime = Field(sa_type=DateTime(timezone=True))
    csrf_token: str = Field(max_length=64)


class LoginFailure(SQLModel, table=True):
    __tablename__ = "admin_login_failures"

    id: int | None = Field(default=None, primary_key=True)
    account: str = Field(max_length=254, index=True)  # a keyed hash of what was typed
    network: str = Field(max_length=64, index=True)
    at: datetime = Field(sa_type=DateTime(timezone=True), index=True)


class AccountError(Exception):
    """An account could not be added or removed; the message says why, for the operator."""


# ---------------------------------------------------------------- accounts


def parse_password(raw: str) -> str:
    if len(raw) < MIN_PASSWORD:
        raise AccountError(f"the password must have at least {MIN_PASSWORD} characters")
    if len(raw) > MAX_PASSWORD:
        raise AccountError(f"the password must have at most {MAX_PASSWORD} characters")
    return raw


def _address(raw: str) -> str:
    try:
        return parse_email(raw)
    except InvalidInput:
        raise AccountError(f"{raw.strip()!r} is not an email address") from None


def _named(session: Session, email: str) -> Operator | None:
    return session.exec(select(Operator).where(Operator.email == email)).first()


def add(session: Session, email: str, password: str, actor: str,
        now: datetime | None = None) -> Operator:
    """A new operator account, audited as `actor`'s doing."""
    address = _address(email)
    if _named(session, address) is not None:
        raise AccountError(f"{address} already has an account")
    operator = Operator(email=address, password_hash=_hasher.hash(parse_password(password)),
                        created_at=now or _utcnow())
    session.add(operator)
    session.flush()
    audit.record(session, actor, "operator-add", f"operator:{address}", at=now)
    return operator


def remove(session: Session, email: str, actor: str, now: datetime | None = None) -> int:
    """Delete an account and end its sessions (how many it had is returned)."""
    address = _address(email)
    operator = _named(session, address)
    if operator is None:
        raise AccountError(f"{address} has no account")
    ended = _end_all(session, operator)
    session.delete(operator)
    audit.record(session, actor, "operator-remove", f"operator:{address}",
                 f"{ended} session(s) ended", at=now)
    return ended


def _end_all(session: Session, operator: Operator) -> int:
    rows = session.exec(select(AdminSession).where(AdminSession.operator_id == operator.id))
    ended = 0
    for row in rows.all():
        session.delete(row)
        ended += 1
    return ended


def operators(session: Session) -> list[Operator]:
    return list(session.exec(select(Operator).order_by(Operator.email)))


def any_exist(session: Session) -> bool:
    return session.exec(select(Operator.id).limit(1)).first() is not None


# ---------------------------------------------------------------- signing in


class Outcome(Enum):
    SIGNED_IN = "signed in"
    REFUSED = "refused"  # unknown address or wrong password: the visitor is not told which
    THROTTLED = "throttled"


@dataclass(frozen=True)
class SignIn:
    outcome: Outcome
    token: str | None = None  # for the cookie, when signed in


@lru_cache(maxsize=1)
def _hash_of_nothing() -> str:
    return _hasher.hash(secrets.token_urlsafe(16))


# What the text typed as an account is hashed for (newsletter/pseudonyms.py).
PURPOSE = "admin sign-in"


def _typed(email: str) -> str:
    """An address as accounts store it; any other text is still an attempt, and counts."""
    try:
        return parse_email(email)
    except InvalidInput:
        return email.strip().lower()


def _verified(session: Session, account: str, password: str) -> Operator | None:
    operator = _named(session, account)
    stored = operator.password_hash if operator else _hash_of_nothing()
    try:
        _hasher.verify(stored, password[:MAX_PASSWORD])
    except (VerificationError, InvalidHashError):
        return None
    if operator is not None and _hasher.check_needs_rehash(stored):
        operator.password_hash = _hasher.hash(password)
    return operator


def throttled(session: Session, account: str, network: str, now: datetime) -> bool:
    since = now - FAILURE_WINDOW
    recent = select(func.count()).select_from(LoginFailure).where(LoginFailure.at > since)
    by_account = session.exec(recent.where(LoginFailure.account == account)).one()
    by_network = session.exec(recent.where(LoginFailure.network == network)).one()
    return by_account >= ACCOUNT_FAILURES or by_network >= NETWORK_FAILURES


def _attempted(session: Session, account: str, pseudonyms: Pseudonyms) -> str:
    """Who an attempt is audited as: the account typed, if there is one; else a keyed
    hash of the text, so repeated tries of one text show as one, and nothing typed is kept."""
    if _named(session, account) is not None:
        return account
    return f"unknown:{pseudonyms.of(PURPOSE, account)[:16]}"


def sign_in(session: Session, email: str, password: str, ip: str | None,
            pseudonyms: Pseudonyms, now: datetime | None = None) -> SignIn:
    """Check a sign-in, count or clear its failures, audit it, and start a session."""
    now = now or _utcnow()
    account, network = _typed(email), client_network(ip)[:64]
    counted_as = pseudonyms.of(PURPOSE, account)
    if throttled(session, counted_as, network, now):
        who = _attempted(session, account, pseudonyms)
        audit.record(session, who, "login-throttled", f"operator:{who}", f"from {network}",
                     at=now)
        return SignIn(Outcome.THROTTLED)
    operator = _verified(session, account, password)
    if operator is None:
        session.execute(delete(LoginFailure).where(
            col(LoginFailure.at) <= now - FAILURE_WINDOW))
        session.add(LoginFailure(account=counted_as, network=network, at=now))
        who = _attempted(session, account, pseudonyms)
        audit.record(session, who, "login-failed", f"operator:{who}", f"from {network}",
                     at=now)
        return SignIn(Outcome.REFUSED)
    session.execute(delete(LoginFailure).where(LoginFailure.account == counted_as))
    _end_expired(session, now)
    token = secrets.token_urlsafe(32)
    session.add(AdminSession(id=_session_id(token), operator_id=operator.id, created_at=now,
                             last_seen_at=now, csrf_token=secrets.token_urlsafe(32)))
    audit.record(session, operator.email, "login", f"operator:{operator.email}",
                 f"from {network}", at=now)
    return SignIn(Outcome.SIGNED_IN, token)


# ---------------------------------------------------------------- sessions


@dataclass(frozen=True)
class Signed:
    """A live session: whose it is, and the token its forms must carry."""

    operator: str
    csrf_token: str


def _session_id(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _expired(row: AdminSession, now: datetime) -> bool:
    return (now - aware(row.last_seen_at) >= IDLE_TIMEOUT
            or now - aware(row.created_at) >= LIFETIME)


def _end_expired(session: Session, now: datetime) -> None:
    session.execute(delete(AdminSession).where(or_(
        col(AdminSession.last_seen_at) <= now - IDLE_TIMEOUT,
        col(AdminSession.created_at) <= now - LIFETIME)))


def session_for(session: Session, token: str | None,
                now: datetime | None = None) -> Signed | None:
    """The live session a cookie's token opens, now seen again; None, and an expired
    session ended, otherwise."""
    if not token or len(token) > 100:
        return None
    now = now or _utcnow()
    row = session.get(AdminSession, _session_id(token))
    if row is None:
        return None
    if _expired(row, now):
        session.delete(row)
        return None
    row.last_seen_at = now
    operator = session.get(Operator, row.operator_id)
    assert operator is not None  # the foreign key deletes sessions with their account
    return Signed(operator.email, row.csrf_token)


def sign_out(session: Session, token: str, now: datetime | None = None) -> None:
    """End the session the token opens, audited as its operator's sign-out."""
    row = session.get(AdminSession, _session_id(token))
    if row is None:
        return
    operator = session.get(Operator, row.operator_id)
    session.delete(row)
    if operator is not None:
        audit.record(session, operator.email, "logout", f"operator:{operator.email}", at=now)
