"""What the service is doing: `newsletter status` and the site's /healthz.

Reads only (a status check must never change what it reports on): /healthz's one write
is rolled back. Times are UTC; SQLite hands datetimes back without a zone, so they are
read as UTC.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, and_, func, insert, or_, text
from sqlmodel import Field, Session, SQLModel, select

from newsletter.admin.stats import sent_by_hour
from newsletter.cards.card import Card
from newsletter.delivery import Delivery, DigestEdition
from newsletter.delivery.journal import accepted_waiting
from newsletter.ingest.feed import Feed
from newsletter.ingest.paper import Paper
from newsletter.readers.tables import Suppression
from newsletter.subscriptions.signup_limits import MAIL_LIMITS, MailLimitHit

log = logging.getLogger(__name__)

# A delivery's life (see newsletter.delivery): always shown, zeros included.
DELIVERY_STATUSES = ("pending", "sending", "sent", "failed", "skipped")


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


@dataclass(frozen=True)
class FeedStatus:
    label: str
    kind: str
    state: str
    last_fetched_at: datetime | None
    last_success_at: datetime | None
    http_status: int | None
    error: str | None
    warning: str | None = None


@dataclass(frozen=True)
class EditionStatus:
    id: int
    frequency: str
    day: date
    last_sent_at: datetime | None
    deliveries: dict[str, int]


@dataclass(frozen=True)
class Status:
    now: datetime
    papers_today: int
    latest_day: date | None
    papers_latest_day: int
    cards_pending: int
    cards_failed: int
    feeds: list[FeedStatus]
    last_ingest_at: datetime | None
    last_edition: EditionStatus | None
    deliveries: dict[str, int]  # every edition, by status
    suppressed: int
    llm_cards_today: int
    llm_cost_today_usd: float
    llm_cost_unknown_today: int = 0  # LLM cards whose model has no known price
    # Confirmation mails held back in the last 24 hours, by limit (mailbox, domain, all).
    mail_limit_hits: dict[str, int] = field(default_factory=dict)
    # Of the deliveries `sending` (claimed, outcome not recorded): readers the provider
    # accepted that only the send journal knows of yet (newsletter/delivery/journal.py).
    journal_accepted: int = 0
    # Digests sent today, by UTC hour: readers get theirs at their own hour and zone.
    sent_today_by_hour: dict[int, int] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def last_ingest_age_seconds(self) -> int | None:
        if self.last_ingest_at is None:
            return None
        return int((self.now - self.last_ingest_at).total_seconds())

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("extra")
        data["last_ingest_age_seconds"] = self.last_ingest_age_seconds
        return _jsonable(data)

    def lines(self) -> list[str]:
        def when(value: datetime | None) -> str:
            return value.strftime("%Y-%m-%d %H:%M UTC") if value else "never"

        age = self.last_ingest_age_seconds
        out = [
            f"papers announced today ({self.now.date()}): {self.papers_today}; latest day "
            f"{self.latest_day or '-'}: {self.papers_latest_day}",
            f"cards: {self.cards_pending} pending, {self.cards_failed} failed",
            f"last ingest: {when(self.last_ingest_at)}"
            + (f" ({age // 3600}h {age % 3600 // 60}m ago)" if age is not None else ""),
        ]
        for feed in self.feeds:
            out.append(f"  {feed.label}: {feed.state}, last fetch {when(feed.last_fetched_at)}"
                       f", HTTP {feed.http_status or '-'}"
                       + (f", error: {feed.error}" if feed.error else "")
                       + (f", warning: {feed.warning}" if feed.warning else ""))
        if self.last_edition is None:
            out.append("last edition: none sent yet")
        else:
            e = self.last_edition
            counts = ", ".join(f"{n} {s}" for s, n in e.deliveries.items() if n)
            out.append(f"last edition: {e.frequency} {e.day} (#{e.id}), last sent "
                       f"{when(e.last_sent_at)}: {counts or 'no deliveries'}")
        hours = ", ".join(f"{hour:02d}h {n}" for hour, n in self.sent_today_by_hour.items())
        out.append(f"sent today by hour (UTC): {hours or 'none yet'}")
        totals = ", ".join(f"{self.deliveries.get(s, 0)} {s}"
                           for s in ("sent", "failed", "skipped"))
        out.append(f"deliveries, all editions: {totals}")
        in_doubt = self.deliveries.get("sending", 0)
        if in_doubt:
            out.append(f"in doubt: {in_doubt} deliveries claimed by a send that has not "
                       f"recorded their outcome (one running now, or one the database "
                       f"stopped); {self.journal_accepted} of them accepted by the provider, "
                       "kept in the send journal until the next send records them")
        out.append(f"suppressed addresses: {self.suppressed}")
        if any(self.mail_limit_hits.values()):
            held = ", ".join(f"{n} by the {limit} limit"
                             for limit, n in self.mail_limit_hits.items() if n)
            out.append(f"sign-up mails held back in the last 24 h: {held}")
        unknown = (f" (+{self.llm_cost_unknown_today} cards of unknown price)"
                   if self.llm_cost_unknown_today else "")
        out.append(f"LLM today: {self.llm_cards_today} cards, "
                   f"${self.llm_cost_today_usd:.4f}{unknown}")
        return out


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def _by_status(session: Session, *where: Any) -> dict[str, int]:
    rows = session.execute(
        select(Delivery.status, func.count()).where(*where).group_by(Delivery.status)
    ).all()
    counts = dict.fromkeys(DELIVERY_STATUSES, 0)
    counts.update({status: n for status, n in rows})
    return counts


def collect(engine: Engine, now: datetime | None = None,
            journal: Path | None = None) -> Status:
    """`journal`: the send journal's folder, read (never settled) for what it holds."""
    now = now or datetime.now(UTC)
    today = now.date()
    midnight = datetime.combine(today, time.min, tzinfo=UTC)
    with Session(engine) as session:
        papers_today = session.exec(
            select(func.count()).select_from(Paper).where(Paper.announced_on == today)).one()
        latest_day = session.exec(select(func.max(Paper.announced_on))).one()
        papers_latest = session.exec(
            select(func.count()).select_from(Paper).where(Paper.announced_on == latest_day)
        ).one() if latest_day else 0
        # Pending as the sweep sees it, without its side effects: no card yet, or a card
        # read from an older text of the paper.
        cards_pending = session.exec(
            select(func.count()).select_from(Paper)
            .outerjoin(Card, Card.paper_id == Paper.id)  # type: ignore[arg-type]
            .where(or_(Card.id.is_(None), Paper.updated_at > Card.checked_at))  # type: ignore[union-attr]
        ).one()
        cards_failed = session.exec(
            select(func.count()).select_from(Card).where(Card.status == "failed")).one()
        feeds = [
            FeedStatus(f.label, f.kind, f.state, _utc(f.last_fetched_at),
                       _utc(f.last_success_at), f.http_status, f.last_error, f.last_warning)
            for f in session.exec(select(Feed).order_by(Feed.label))
        ]
        last_ingest = max((f.last_success_at for f in feeds if f.last_success_at), default=None)

        last_sent = session.execute(
            select(Delivery.edition_id, func.max(Delivery.sent_at))
            .where(Delivery.status == "sent").group_by(Delivery.edition_id)
            .order_by(func.max(Delivery.sent_at).desc()).limit(1)
        ).first()
        edition = None
        if last_sent is not None:
            row = session.get(DigestEdition, last_sent[0])
            assert row is not None and row.id is not None
            edition = EditionStatus(row.id, row.frequency, row.day, _utc(last_sent[1]),
                                    _by_status(session, Delivery.edition_id == row.id))
        deliveries = _by_status(session)
        suppressed = session.exec(select(func.count()).select_from(Suppression)).one()
        limit_hits = dict(session.execute(
            select(MailLimitHit.limit, func.count())
            .where(MailLimitHit.at >= now - timedelta(days=1)).group_by(MailLimitHit.limit)
        ).all())
        by_hour = sent_by_hour(session, midnight)
        llm_today = and_(Card.source == "llm", Card.updated_at >= midnight)
        cards_today, cost_today, unknown = session.execute(
            select(func.count(), func.coalesce(func.sum(Card.cost_usd), 0.0),
                   func.count().filter(Card.cost_usd.is_(None)))  # type: ignore[union-attr]
            .where(llm_today)
        ).one()
    return Status(
        now=now, papers_today=papers_today, latest_day=latest_day,
        papers_latest_day=papers_latest, cards_pending=cards_pending,
        cards_failed=cards_failed, feeds=feeds, last_ingest_at=last_ingest,
        last_edition=edition, deliveries=deliveries, suppressed=suppressed,
        llm_cards_today=cards_today, llm_cost_today_usd=float(cost_today),
        llm_cost_unknown_today=unknown,
        mail_limit_hits={name: limit_hits.get(name, 0) for name in MAIL_LIMITS},
        journal_accepted=accepted_waiting(engine, journal) if journal else 0,
        sent_today_by_hour=by_hour,
    )


# ------------------------------------------------------------------ /healthz


class WriteProbe(SQLModel, table=True):
    """Always empty: /healthz inserts a row and rolls it back."""

    __tablename__ = "write_probes"

    id: int = Field(primary_key=True)


def database_state(engine: Engine) -> str:
    """"ok", "error" (unreachable), or "cannot write": a database that answers reads but
    refuses writes (read-only, a standby, a full disk when the write needs a new page)
    fails every sign-up while SELECT 1 still succeeds (docs/SECURITY.md, issue 22
    finding 14)."""
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:
        log.error("health check: database unreachable: %s", exc)
        return "error"
    try:
        with engine.connect() as conn, conn.begin() as probe:
            conn.execute(insert(WriteProbe).values(id=1))
            probe.rollback()
    except Exception as exc:
        log.error("health check: the database cannot write: %s", exc)
        return "cannot write"
    return "ok"


def broker_ok(redis_url: str) -> bool:
    from newsletter.broker import redis_client

    client = redis_client(redis_url)
    try:
        return bool(client.ping())
    except Exception as exc:
        log.error("health check: broker unreachable: %s", exc)
        return False
    finally:
        client.close()


def last_ingest_at(engine: Engine) -> datetime | None:
    with Session(engine) as session:
        return _utc(session.exec(select(func.max(Feed.last_success_at))).one())


def health(engine: Engine, redis_url: str | None,
           now: datetime | None = None) -> tuple[dict[str, Any], int]:
    """The /healthz answer and its HTTP status.

    503 only when the database is down or cannot write: the site cannot serve a page
    without it, nor take a sign-up without writing. A broker that is down (sign-ups
    still work, digests wait) or a stale ingest reads "degraded", with 200, so a load
    balancer keeps the site in rotation while someone looks.
    """
    now = now or datetime.now(UTC)
    database = database_state(engine)
    body: dict[str, Any] = {"status": "ok", "database": database}
    if redis_url:
        body["broker"] = "ok" if broker_ok(redis_url) else "error"
    else:
        body["broker"] = "not configured"
    age = None
    if database != "error":
        last = last_ingest_at(engine)
        age = int((now - last).total_seconds()) if last else None
    body["last_ingest_age_seconds"] = age
    if database != "ok":
        body["status"] = "error"
        return body, 503
    if body["broker"] == "error":
        body["status"] = "degraded"
    return body, 200
