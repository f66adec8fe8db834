"""The ledger: editions, their deliveries, and the papers each delivery carried.

An edition (`DigestEdition`) is one day's (or week's) digest run. Planning inserts one
`Delivery` row per (subscriber, edition) in a single set-based statement, under a unique
constraint, so planning twice plans nothing new. Senders claim rows with a conditional
UPDATE (a row moves from pending to sending under one claim token), so two workers never
take the same row; a row left in `sending` by a crashed worker is taken again after a
lease. A sent delivery is marked with the papers it carried (`SentPaper`, unique per
subscriber and paper), which is why a paper never reaches the same reader twice.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Sequence
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    Text,
    UniqueConstraint,
    and_,
    bindparam,
    or_,
    text,
    update,
)
from sqlalchemy import select as select_rows
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, Session, SQLModel, select

from newsletter.db import among
from newsletter.digest.selection import Selection

FREQUENCIES = ("daily", "weekly")
# How far back an edition looks for papers; "never sent before" does the rest.
LOOKBACK_DAYS = {"daily": 3, "weekly": 7}
LEASE = timedelta(minutes=15)
MAX_ATTEMPTS = 5


def utcnow() -> datetime:
    return datetime.now(UTC)


def today_utc() -> date:
    return datetime.now(UTC).date()


def lease() -> timedelta:
    """How long a claim holds before another worker may take its rows (LEASE unless
    DELIVERY_LEASE_SECONDS says otherwise)."""
    from newsletter.config import settings

    return timedelta(seconds=settings().delivery_lease_seconds)


class DigestEdition(SQLModel, table=True):
    __tablename__ = "editions"
    __table_args__ = (UniqueConstraint("frequency", "day", name="uq_editions_frequency_day"),)

    id: int | None = Field(default=None, primary_key=True)
    frequency: str = Field(max_length=16)
    day: date = Field(sa_column=Column(Date, nullable=False))
    window_start: date = Field(sa_column=Column(Date, nullable=False))
    created_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))
    # A weekly edition's "most read this week", [key, title] each, fixed as it is planned
    # (newsletter/delivery/send.py); NULL until then, and for daily editions.
    most_read: list[list[str]] | None = Field(
        default=None, sa_column=Column(JSON(none_as_null=True), nullable=True))


class Delivery(SQLModel, table=True):
    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("subscriber_id", "edition_id", name="uq_deliveries_subscriber_edition"),
    )

    id: int | None = Field(default=None, primary_key=True)
    edition_id: int = Field(sa_column=Column(
        Integer, ForeignKey("editions.id", ondelete="CASCADE"), nullable=False, index=True))
    subscriber_id: int = Field(sa_column=Column(
        Integer, ForeignKey("subscribers.id", ondelete="CASCADE"), nullable=False, index=True))
    # pending -> sending -> sent | skipped | failed (and back to pending on a passing fault)
    status: str = Field(default="pending", max_length=16, index=True)
    claim: str | None = Field(default=None, max_length=32)
    claimed_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    sent_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    # The first provider event of each kind for this digest (newsletter/engagement/events.py).
    delivered_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    opened_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    clicked_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    bounced_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    attempts: int = 0
    paper_count: int = 0
    more_count: int = 0
    error: str | None = None


class SentPaper(SQLModel, table=True):
    __tablename__ = "sent_papers"
    __table_args__ = (
        UniqueConstraint("subscriber_id", "paper_id", name="uq_sent_papers_subscriber_paper"),
        # Only the few rows ever clicked: the week's clicks, found without the million
        # rows an edition writes (migration 0017).
        Index("ix_sent_papers_clicked_at", "clicked_at",
              postgresql_where=text("clicked_at IS NOT NULL"),
              sqlite_where=text("clicked_at IS NOT NULL")),
    )

    id: int | None = Field(default=None, primary_key=True)
    delivery_id: int = Field(sa_column=Column(
        Integer, ForeignKey("deliveries.id", ondelete="CASCADE"), nullable=False, index=True))
    # Plain columns, not foreign keys: a million rows an edition would each lock their
    # paper and subscriber to check them (migration 0008 says why that was too dear).
    # The subscriber's rows still go with their deliveries; papers are never deleted.
    subscriber_id: int = Field(nullable=False)
    paper_id: int = Field(nullable=False)
    position: int = 0
    score: int = 0
    # One reason per line ("topic: Efficient ML"): plain text, a million rows a day at scale.
    reasons: str = Field(default="", sa_type=Text)
    # The reader's first click through to this paper of their digest (provider events):
    # each reader counts once for a paper in "most read this week" (engagement/most_read.py).
    clicked_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))


deliveries = Delivery.__table__  # type: ignore[attr-defined]
sent_papers = SentPaper.__table__  # type: ignore[attr-defined]


def window(frequency: str, day: date) -> date:
    """The first announcement day an edition looks at."""
    return day - timedelta(days=LOOKBACK_DAYS[frequency] - 1)


def open_edition(session: Session, frequency: str, day: date) -> DigestEdition:
    """The edition of a day, created once: re-running a send reuses it."""
    if frequency not in FREQUENCIES:
        raise ValueError(f"frequency must be one of {FREQUENCIES}")
    found = session.exec(
        select(DigestEdition).where(DigestEdition.frequency == frequency, DigestEdition.day == day)
    ).first()
    if found:
        return found
    edition = DigestEdition(frequency=frequency, day=day, window_start=window(frequency, day))
    session.add(edition)
    session.flush()
    return edition


# Who gets digests: confirmed, and never suppressed by a bounce or complaint.
MAILABLE = ("s.status = 'confirmed' "
            "AND NOT EXISTS (SELECT 1 FROM suppressions x WHERE x.email = s.email)")

# Deliveries are numbered in chunk order: readers who opted out of tracking together (a
# SendGrid request's tracking is for all of it), then one language's readers together (a
# request carries one language's template), then alike interests (memoized ranking).
PLAN_ORDER = """p.tracking, COALESCE(p.language, 'en'), CAST(p.topics AS TEXT),
             CAST(p.include_keywords AS TEXT), CAST(p.exclude_keywords AS TEXT),
             CAST(p.authors AS TEXT), p.max_papers, p.include_revised, s.id"""
_PLAN = text(f"""
    INSERT INTO deliveries (edition_id, subscriber_id, status, attempts, paper_count, more_count)
    SELECT :edition_id, s.id, 'pending', 0, 0, 0
    FROM subscribers s JOIN preferences p ON p.subscriber_id = s.id
    WHERE {MAILABLE} AND p.frequency = :frequency
      AND NOT EXISTS (SELECT 1 FROM deliveries d
                      WHERE d.edition_id = :edition_id AND d.subscriber_id = s.id)
    ORDER BY {PLAN_ORDER}
""")


def plan(session: Session, edition: DigestEdition) -> int:
    """One delivery row per confirmed, unsuppressed subscriber of this frequency.

    Rows are numbered in order of preferences, so readers who will get the same digest sit
    in the same chunk and share its requests.
    """
    result = session.execute(_PLAN, {"edition_id": edition.id, "frequency": edition.frequency})
    return result.rowcount or 0


def open_deliveries(session: Session, edition_id: int, now: datetime) -> list[int]:
    """Rows still to send: pending, or claimed by a worker whose lease ran out."""
    rows = session.execute(
        select_rows(deliveries.c.id).where(
            deliveries.c.edition_id == edition_id,
            or_(deliveries.c.status == "pending",
                and_(deliveries.c.status == "sending", deliveries.c.claimed_at < now - lease())),
        ).order_by(deliveries.c.id)
    )
    return list(rows.scalars())


def _postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def new_claim() -> str:
    """A claim's token: made before the claim, so the send journal can be opened under it
    before any row is taken (newsletter/delivery/journal.py)."""
    return secrets.token_hex(8)


def claim(session: Session, delivery_ids: Sequence[int], now: datetime,
          token: str | None = None) -> tuple[str, list[int]]:
    """Take rows for this worker: only rows nobody holds move, so two workers never share one."""
    token = token or new_claim()
    taken = session.execute(
        update(deliveries)
        .where(
            among(session, deliveries.c.id, delivery_ids),
            or_(deliveries.c.status == "pending",
                and_(deliveries.c.status == "sending", deliveries.c.claimed_at < now - lease())),
        )
        .values(status="sending", claim=token, claimed_at=now,
                attempts=deliveries.c.attempts + 1)
        # The rows this UPDATE moved are exactly the claim: no second look by token.
        .returning(deliveries.c.id)
    ).scalars()
    return token, sorted(taken)


def already_sent(
    session: Session, subscriber_ids: Sequence[int], paper_ids: Sequence[int]
) -> dict[int, frozenset[int]]:
    """Which of these papers each of these subscribers has been sent before.

    SQL bounds the papers by their id range and the exact set is picked here: with the
    list itself in the condition, Postgres's cached plan probes the index once per
    (subscriber, paper) pair, 200,000 probes for a chunk, where a range is one short
    index scan per subscriber.
    """
    if not subscriber_ids or not paper_ids:
        return {}
    wanted = frozenset(paper_ids)
    rows = session.execute(
        select_rows(sent_papers.c.subscriber_id, sent_papers.c.paper_id).where(
            among(session, sent_papers.c.subscriber_id, subscriber_ids),
            sent_papers.c.paper_id.between(min(wanted), max(wanted)),
        )
    )
    found: dict[int, set[int]] = {}
    for subscriber_id, paper_id in rows:
        if paper_id in wanted:
            found.setdefault(subscriber_id, set()).add(paper_id)
    return {k: frozenset(v) for k, v in found.items()}


def mark_skipped(session: Session, token: str, delivery_ids: Iterable[int]) -> None:
    ids = list(delivery_ids)
    if ids:
        session.execute(update(deliveries).where(
            among(session, deliveries.c.id, ids), deliveries.c.claim == token,
        ).values(status="skipped", error=None))


@dataclass(frozen=True)
class SentDigest:
    """What one reader's digest carried, as the ledger records it, and as the send journal
    keeps it until then (a JSON list: `as_json`, `from_json`)."""

    delivery_id: int
    subscriber_id: int
    more: int  # matching papers left out by the reader's maximum
    papers: tuple[tuple[int, int, str], ...]  # (paper id, score, reasons), in digest order

    @classmethod
    def of(cls, delivery_id: int, subscriber_id: int, selection: Selection) -> SentDigest:
        return cls(delivery_id, subscriber_id, selection.more, tuple(
            (pick.candidate.paper_id, pick.score, "\n".join(pick.reasons))
            for pick in selection.picks))

    def as_json(self) -> list[Any]:
        return [self.delivery_id, self.subscriber_id, self.more,
                [list(paper) for paper in self.papers]]

    @classmethod
    def from_json(cls, value: list[Any]) -> SentDigest:
        delivery_id, subscriber_id, more, papers = value
        return cls(int(delivery_id), int(subscriber_id), int(more),
                   tuple((int(p), int(score), str(why)) for p, score, why in papers))


# A request's readers marked sent in one statement on Postgres: three arrays, one row
# each, where an executemany runs the UPDATE once per reader (a million statements for
# 100,000 readers would be the server's work, sharing the workers' cores).
_MARK_SENT = text("""
    UPDATE deliveries SET status = 'sent', sent_at = :now, error = NULL,
                          paper_count = v.papers, more_count = v.more
    FROM unnest(CAST(:ids AS integer[]), CAST(:papers AS integer[]),
                CAST(:more AS integer[])) AS v(id, papers, more)
    WHERE deliveries.id = v.id AND deliveries.claim = :token
""")


def mark_sent(session: Session, token: str, sent: Sequence[SentDigest], now: datetime) -> None:
    """Record a request's readers together: their deliveries in one statement (one
    executemany on SQLite, which runs it in C), the papers they carried in one bulk write."""
    if not sent:
        return
    if _postgres(session):
        session.execute(_MARK_SENT, {
            "ids": [d.delivery_id for d in sent],
            "papers": [len(d.papers) for d in sent],
            "more": [d.more for d in sent],
            "now": now, "token": token,
        })
    else:
        session.execute(
            update(deliveries)
            .where(deliveries.c.id == bindparam("row_id"), deliveries.c.claim == token)
            .values(status="sent", sent_at=now, error=None, paper_count=bindparam("papers"),
                    more_count=bindparam("more")),
            [{"row_id": d.delivery_id, "papers": len(d.papers), "more": d.more}
             for d in sent],
        )
    write_sent_papers(session, (
        (d.delivery_id, d.subscriber_id, paper_id, i, score, reasons)
        for d in sent
        for i, (paper_id, score, reasons) in enumerate(d.papers)
    ))


def take_back(session: Session, token: str, delivery_ids: Sequence[int]) -> None:
    """Put rows a claim sent back under it when nobody holds them any more: the claim
    itself was lost with the database's last transactions (a crash with asynchronous
    commit, a failover to a replica that lagged), and they are pending again."""
    if delivery_ids:
        session.execute(update(deliveries).where(
            among(session, deliveries.c.id, delivery_ids), deliveries.c.status == "pending",
        ).values(status="sending", claim=token))


def held(session: Session, token: str, *, lock: bool) -> set[int]:
    """The rows a claim still holds, unsent. `lock`: until the transaction ends (Postgres),
    so nobody takes them while the send journal settles them."""
    query = select_rows(deliveries.c.id).where(deliveries.c.claim == token,
                                               deliveries.c.status == "sending")
    return set(session.execute(query.with_for_update() if lock else query).scalars())


def mark_failed(session: Session, token: str, delivery_ids: Sequence[int], error: str,
                *, permanent: bool) -> None:
    ids = list(delivery_ids)
    if permanent:
        session.execute(update(deliveries).where(
            among(session, deliveries.c.id, ids), deliveries.c.claim == token,
        ).values(status="failed", error=error[:1000]))
        return
    # A passing fault: back to pending for the next run, unless it keeps failing.
    session.execute(update(deliveries).where(
        among(session, deliveries.c.id, ids), deliveries.c.claim == token,
        deliveries.c.attempts >= MAX_ATTEMPTS,
    ).values(status="failed", error=error[:1000]))
    session.execute(update(deliveries).where(
        among(session, deliveries.c.id, ids), deliveries.c.claim == token,
        deliveries.c.attempts < MAX_ATTEMPTS,
    ).values(status="pending", claim=None, claimed_at=None, error=error[:1000]))


# A row of `write_sent_papers`, in this column order.
SENT_PAPER_COLUMNS = ("delivery_id", "subscriber_id", "paper_id", "position", "score",
                      "reasons")
SentPaperRow = tuple[int, int, int, int, int, str]


def write_sent_papers(session: Session, rows: Iterable[SentPaperRow]) -> None:
    """Record the papers a request carried, in one bulk write.

    About ten rows a reader, a million for 100,000 readers: the ledger's biggest write.
    Postgres takes the rows by COPY, about 5x faster than psycopg's executemany; SQLite by
    the driver's executemany, which binds them in C. The rows stream to the driver and are
    never held as a list: made and dropped one at a time, a part's ten thousand tuples set
    off none of the cyclic garbage collector's passes, some of which scan the worker's
    whole heap. On both databases a (subscriber, paper) pair recorded before is refused by
    the unique constraint, and the whole write with it, as an IntegrityError.
    """
    conn = session.connection()
    driver: Any = conn.connection.driver_connection
    columns = ", ".join(SENT_PAPER_COLUMNS)
    try:
        if conn.dialect.name == "postgresql":
            statement = f"COPY sent_papers ({columns}) FROM STDIN"
            with driver.cursor() as cursor, cursor.copy(statement) as copy:
                for row in rows:
                    copy.write_row(row)
        else:
            statement = (f"INSERT INTO sent_papers ({columns}) "
                         f"VALUES ({', '.join('?' * len(SENT_PAPER_COLUMNS))})")
            with closing(driver.cursor()) as cursor:
                cursor.executemany(statement, rows)
    except conn.dialect.loaded_dbapi.IntegrityError as exc:
        # The driver is used directly: raise what SQLAlchemy would have raised.
        raise IntegrityError(statement, None, exc) from exc
