"""The ledger and the send: every confirmed subscriber gets each edition exactly once.

An edition (`DigestEdition`) is one day's (or week's) digest run. Planning inserts one
`Delivery` row per (subscriber, edition) in a single set-based statement, under a unique
constraint, so planning twice plans nothing new. Senders claim rows with a conditional UPDATE (a row
moves from pending to sending under one claim token), so two workers never take the same
row; a row left in `sending` by a crashed worker is taken again after a lease. A delivery
is marked sent, with the papers it carried, right after the request that sent it: after a
crash only the recipients of the request in flight can get a second copy, and nobody is
skipped. The papers carried (`SentPaper`, unique per subscriber and paper) are why a
paper never reaches the same reader twice.
"""

from __future__ import annotations

import gc
import json
import logging
import multiprocessing
import secrets
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import closing
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import (
    ARRAY,
    Column,
    Date,
    DateTime,
    ForeignKey,
    Integer,
    Text,
    UniqueConstraint,
    and_,
    any_,
    bindparam,
    literal_column,
    or_,
    text,
    update,
)
from sqlalchemy import select as select_rows
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import Field, Session, SQLModel, select

from newsletter import message
from newsletter.batch import Batch
from newsletter.card import Card
from newsletter.digest import (
    Candidate,
    Interests,
    PaperIndex,
    Pick,
    Selection,
    candidate,
    interests,
)
from newsletter.links import BadLink, LinkHolder, Links
from newsletter.mail import BatchSender, batch_sender_for
from newsletter.paper import Paper
from newsletter.render import render_digest
from newsletter.taxonomy import guess_topics

log = logging.getLogger(__name__)
Progress = Callable[[str], None]

FREQUENCIES = ("daily", "weekly")
# How far back an edition looks for papers; "never sent before" does the rest.
LOOKBACK_DAYS = {"daily": 3, "weekly": 7}
LEASE = timedelta(minutes=15)
MAX_ATTEMPTS = 5


def _utcnow() -> datetime:
    return datetime.now(UTC)


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
    created_at: datetime = Field(default_factory=_utcnow, sa_type=DateTime(timezone=True))


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
    attempts: int = 0
    paper_count: int = 0
    more_count: int = 0
    error: str | None = None


class SentPaper(SQLModel, table=True):
    __tablename__ = "sent_papers"
    __table_args__ = (
        UniqueConstraint("subscriber_id", "paper_id", name="uq_sent_papers_subscriber_paper"),
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
_MAILABLE = ("s.status = 'confirmed' "
             "AND NOT EXISTS (SELECT 1 FROM suppressions x WHERE x.email = s.email)")
# What a digest needs of a subscriber (see `_reader`).
_READER = ("s.id AS subscriber_id, s.email, s.link_key, p.frequency, p.topics, "
           "p.include_keywords, p.exclude_keywords, p.authors, p.max_papers, "
           "p.include_revised")

_PLAN = text(f"""
    INSERT INTO deliveries (edition_id, subscriber_id, status, attempts, paper_count, more_count)
    SELECT :edition_id, s.id, 'pending', 0, 0, 0
    FROM subscribers s JOIN preferences p ON p.subscriber_id = s.id
    WHERE {_MAILABLE} AND p.frequency = :frequency
      AND NOT EXISTS (SELECT 1 FROM deliveries d
                      WHERE d.edition_id = :edition_id AND d.subscriber_id = s.id)
    ORDER BY CAST(p.topics AS TEXT), CAST(p.include_keywords AS TEXT),
             CAST(p.exclude_keywords AS TEXT), CAST(p.authors AS TEXT), p.max_papers,
             p.include_revised, s.id
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


def _among(session: Session, column: Any, ids: Sequence[int]) -> ColumnElement[bool]:
    """`column IN ids` for a chunk's thousand ids, as each database takes them best.

    On Postgres one array parameter: psycopg spends longer parsing a statement with a
    thousand placeholders than Postgres spends running it. SQLite has no arrays, and binds
    an expanded IN list at C speed.
    """
    if _postgres(session):
        return column == any_(bindparam(None, list(ids), type_=ARRAY(Integer)))
    return column.in_(list(ids))


def claim(session: Session, delivery_ids: Sequence[int], now: datetime) -> tuple[str, list[int]]:
    """Take rows for this worker: only rows nobody holds move, so two workers never share one."""
    token = secrets.token_hex(8)
    taken = session.execute(
        update(deliveries)
        .where(
            _among(session, deliveries.c.id, delivery_ids),
            or_(deliveries.c.status == "pending",
                and_(deliveries.c.status == "sending", deliveries.c.claimed_at < now - lease())),
        )
        .values(status="sending", claim=token, claimed_at=now,
                attempts=deliveries.c.attempts + 1)
        # The rows this UPDATE moved are exactly the claim: no second look by token.
        .returning(deliveries.c.id)
    ).scalars()
    return token, sorted(taken)


@dataclass(frozen=True)
class Reader:
    """A claimed delivery's subscriber, as the digest needs them."""

    delivery_id: int
    subscriber_id: int
    email: str
    link_key: str
    interests: Interests


def readers(session: Session, delivery_ids: Sequence[int]) -> list[Reader]:
    rows = session.execute(
        select_rows(text(f"d.id AS delivery_id, {_READER}"))
        # CROSS JOIN makes SQLite start from the chunk's ids, not from every confirmed
        # subscriber (its planner favours the status index); Postgres plans it as a join.
        .select_from(text("deliveries d CROSS JOIN subscribers s CROSS JOIN preferences p"))
        .where(_among(session, literal_column("d.id"), delivery_ids),
               text(f"s.id = d.subscriber_id AND p.subscriber_id = s.id AND {_MAILABLE}"))
        .order_by(literal_column("d.id"))
    ).mappings()
    return [_reader(row, delivery_id=row["delivery_id"]) for row in rows]


def _reader(row: Any, delivery_id: int) -> Reader:
    return Reader(
        delivery_id=delivery_id, subscriber_id=row["subscriber_id"], email=row["email"],
        link_key=row["link_key"],
        interests=interests(
            topics=_json(row["topics"]), include_keywords=_json(row["include_keywords"]),
            exclude_keywords=_json(row["exclude_keywords"]), authors=_json(row["authors"]),
            max_papers=row["max_papers"], include_revised=bool(row["include_revised"]),
        ),
    )


def _json(value: Any) -> list[str]:
    # Raw SQL hands JSON columns back as text on SQLite and as lists on Postgres.
    if isinstance(value, str):
        return list(json.loads(value))
    return list(value or [])


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
            _among(session, sent_papers.c.subscriber_id, subscriber_ids),
            sent_papers.c.paper_id.between(min(wanted), max(wanted)),
        )
    )
    found: dict[int, set[int]] = {}
    for subscriber_id, paper_id in rows:
        if paper_id in wanted:
            found.setdefault(subscriber_id, set()).add(paper_id)
    return {k: frozenset(v) for k, v in found.items()}


def candidates(session: Session, start: date, end: date) -> list[Candidate]:
    """Papers announced (or revised) in the window, with their card's topics and points.

    A paper without a usable card still goes out with its abstract: its topics are then
    guessed from its arXiv categories and words, as the offline writer does.
    """
    rows = session.execute(
        select_rows(Paper, Card)
        .outerjoin(Card, and_(Card.paper_id == Paper.id, Card.status == "ok"))  # type: ignore[arg-type]
        .where(or_(Paper.announced_on.between(start, end),  # type: ignore[union-attr]
                   Paper.revised_on.between(start, end)))  # type: ignore[union-attr]
        .order_by(Paper.id)
    ).all()
    found = []
    for paper, card in rows:
        new_in_window = paper.announced_on is not None and start <= paper.announced_on <= end
        found.append(_as_candidate(paper, card, revised=not new_in_window))
    return found


def _as_candidate(paper: Paper, card: Any, *, revised: bool) -> Candidate:
    """A paper as a digest sees it. Without a usable card it goes out with its abstract,
    its topics guessed from its arXiv categories and words as the offline writer does."""
    topics = card.topics if card else guess_topics(paper.title, paper.abstract,
                                                   paper.categories)
    assert paper.id is not None
    return candidate(
        paper_id=paper.id, key=paper.key, title=paper.title, abstract=paper.abstract,
        authors=paper.authors, topics=topics, key_points=card.key_points if card else (),
        revised=revised, abs_url=paper.abs_url, pdf_url=paper.pdf_url,
        code_url=paper.code_url, card_source=card.source if card else None,
    )


@dataclass
class SendReport:
    edition_id: int | None = None
    planned: int = 0
    sent: int = 0
    skipped: int = 0
    failed: int = 0
    retry_later: int = 0
    requests: int = 0
    errors: list[str] = field(default_factory=list)

    def add(self, other: SendReport) -> None:
        self.sent += other.sent
        self.skipped += other.skipped
        self.failed += other.failed
        self.retry_later += other.retry_later
        self.requests += other.requests
        self.errors += other.errors

    def line(self) -> str:
        return (f"send: {self.sent} sent, {self.skipped} skipped (nothing new), "
                f"{self.failed} failed, {self.retry_later} to retry; "
                f"{self.requests} requests")


Composer = Callable[[Sequence[tuple[Reader, Selection]]], Batch]


def _mark_skipped(session: Session, token: str, delivery_ids: Iterable[int]) -> None:
    ids = list(delivery_ids)
    if ids:
        session.execute(update(deliveries).where(
            _among(session, deliveries.c.id, ids), deliveries.c.claim == token,
        ).values(status="skipped", error=None))


def _mark_sent(session: Session, token: str, part: Sequence[tuple[Reader, Selection]],
               now: datetime) -> None:
    # One executemany for the whole part: a request's readers are recorded together.
    session.execute(
        update(deliveries)
        .where(deliveries.c.id == bindparam("row_id"), deliveries.c.claim == token)
        .values(status="sent", sent_at=now, error=None, paper_count=bindparam("papers"),
                more_count=bindparam("more")),
        [{"row_id": r.delivery_id, "papers": len(s.picks), "more": s.more} for r, s in part],
    )
    write_sent_papers(session, (
        (reader.delivery_id, reader.subscriber_id, pick.candidate.paper_id, i, pick.score,
         "\n".join(pick.reasons))
        for reader, selection in part for i, pick in enumerate(selection.picks)
    ))


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


def _mark_failed(session: Session, token: str, readers_: Sequence[Reader], error: str,
                 *, permanent: bool) -> None:
    ids = [r.delivery_id for r in readers_]
    if permanent:
        values: dict[str, Any] = {"status": "failed", "error": error[:1000]}
        session.execute(update(deliveries).where(
            _among(session, deliveries.c.id, ids), deliveries.c.claim == token).values(**values))
        return
    # A passing fault: back to pending for the next run, unless it keeps failing.
    session.execute(update(deliveries).where(
        _among(session, deliveries.c.id, ids), deliveries.c.claim == token,
        deliveries.c.attempts >= MAX_ATTEMPTS,
    ).values(status="failed", error=error[:1000]))
    session.execute(update(deliveries).where(
        _among(session, deliveries.c.id, ids), deliveries.c.claim == token,
        deliveries.c.attempts < MAX_ATTEMPTS,
    ).values(status="pending", claim=None, claimed_at=None, error=error[:1000]))


def deliver(
    engine: Any, edition_id: int, delivery_ids: Sequence[int], *, sender: BatchSender,
    compose: Composer, now: Callable[[], datetime] = _utcnow,
) -> SendReport:
    """Send one chunk of an edition: claim, select, group identical digests, send, record."""
    # A chunk makes millions of short-lived objects, and what earlier chunks built lives on
    # in this process (rendered papers, the engine's caches). The collector's defaults
    # re-scanned all of it every few hundred allocations, a third of delivery's CPU: freeze
    # what exists, and collect young objects less often (docs/BENCHMARKS.md).
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)
    report = SendReport(edition_id=edition_id)
    with Session(engine) as session:
        token, taken = claim(session, delivery_ids, now())
        session.commit()
        if not taken:
            return report
        edition = session.get(DigestEdition, edition_id)
        assert edition is not None
        day_papers = PaperIndex(candidates(session, edition.window_start, edition.day))
        people = readers(session, taken)
        sent_before = already_sent(session, [r.subscriber_id for r in people],
                                   [c.paper_id for c in day_papers.candidates])
        chosen: list[tuple[Reader, Selection]] = []
        nothing_new: list[int] = []
        for reader in people:
            selection = day_papers.select(reader.interests,
                                          sent_before.get(reader.subscriber_id, frozenset()))
            if selection.empty:
                nothing_new.append(reader.delivery_id)
            else:
                chosen.append((reader, selection))
        # Claimed rows whose subscriber left meanwhile (unsubscribed, deleted) are skipped.
        gone = set(taken) - {r.delivery_id for r in people}
        _mark_skipped(session, token, [*nothing_new, *gone])
        session.commit()
        report.skipped = len(nothing_new) + len(gone)

        # One request per part the provider allows, whatever each reader's digest holds.
        for start in range(0, len(chosen), sender.max_batch):
            part = chosen[start:start + sender.max_batch]
            _send_part(session, token, part, compose(part), sender, now, report)
    log.info("deliver edition=%s claimed=%d sent=%d skipped=%d failed=%d retry=%d requests=%d",
             edition_id, len(taken), report.sent, report.skipped, report.failed,
             report.retry_later, report.requests)
    return report


def _send_part(session: Session, token: str, part: Sequence[tuple[Reader, Selection]],
               batch: Batch, sender: BatchSender, now: Callable[[], datetime],
               report: SendReport) -> None:
    started = time.monotonic()
    readers_ = [reader for reader, _ in part]
    # Senders report every outcome in the result: accepted, refused for good, or neither.
    result = sender.send_batch(batch)
    report.requests += result.requests
    accepted, rejected = set(result.accepted), set(result.rejected)
    ok = [(r, s) for r, s in part if r.email in accepted]
    refused = [r for r in readers_ if r.email in rejected and r.email not in accepted]
    unsent = [r for r in readers_ if r.email not in accepted and r.email not in rejected]
    if ok:
        _mark_sent(session, token, ok, now())
    error = result.error or "refused by the provider"
    if refused:
        _mark_failed(session, token, refused, error, permanent=True)
    if unsent:
        _mark_failed(session, token, unsent, error, permanent=False)
    session.commit()
    report.sent += len(ok)
    report.failed += len(refused)
    report.retry_later += len(unsent)
    if result.error:
        report.errors.append(result.error)
    log.info("sent recipients=%d requests=%d ms=%d", len(ok), result.requests,
             (time.monotonic() - started) * 1000)


def today_utc() -> date:
    return datetime.now(UTC).date()


def _chunks(ids: Sequence[int], size: int) -> list[list[int]]:
    return [list(ids[i:i + size]) for i in range(0, len(ids), size)]


def prepare_edition(
    engine: Any, frequency: str, day: date, chunk_size: int = 1000,
    now: Callable[[], datetime] = _utcnow,
) -> tuple[int, int, list[list[int]]]:
    """Open the edition, plan its deliveries, and cut what is left to send into chunks.

    Returns (edition id, rows planned now, chunks of delivery ids). Safe to call again:
    it plans only subscribers not yet planned and hands out only rows not yet sent.
    """
    with Session(engine) as session:
        edition = open_edition(session, frequency, day)
        planned = plan(session, edition)
        session.commit()
        assert edition.id is not None
        ids = open_deliveries(session, edition.id, now())
    return edition.id, planned, _chunks(ids, chunk_size)


def composer_for(settings: Any, day: date, frequency: str) -> Composer:
    """Builds each batch with every reader's own signed links."""
    links = Links.from_settings(settings)

    def build(part: Sequence[tuple[Reader, Selection]]) -> Batch:
        return message.compose([_addressee(links, r, s) for r, s in part], day=day,
                               frequency=frequency, site_url=settings.base_url)

    return build


def _addressee(links: Links, reader: Reader, selection: Selection,
               view_url: str | None = None) -> message.Addressee:
    holder = LinkHolder(reader.subscriber_id, reader.link_key)
    return message.Addressee(
        email=reader.email, delivery_id=reader.delivery_id, selection=selection,
        manage_url=links.manage_url(holder), unsubscribe_url=links.unsubscribe_url(holder),
        view_url=view_url or links.digest_url(reader.delivery_id, reader.link_key),
    )


def send_edition(
    engine: Any, settings: Any, *, frequency: str = "daily", day: date | None = None,
    sender: BatchSender | None = None, chunk_size: int = 1000, workers: int = 1,
    progress: Progress = lambda _: None, now: Callable[[], datetime] = _utcnow,
) -> SendReport:
    """A whole edition: what `newsletter send` runs.

    With `workers` > 1 the chunks go to that many processes, as they would to that many
    Celery mail workers: each claims its rows, so none is sent twice.
    """
    day = day or today_utc()
    if workers > 1 and sender is not None:
        raise ValueError("a given sender cannot be shared across processes")
    local = sender or batch_sender_for(settings)
    # The provider must be able to render the digest (SendGrid: its template is this
    # release's) before anyone is planned or claimed; MailError says what to fix.
    local.prepare()
    edition_id, planned, chunks = prepare_edition(engine, frequency, day, chunk_size, now)
    report = SendReport(edition_id=edition_id, planned=planned)
    total, done = sum(len(c) for c in chunks), 0

    def handled(part: SendReport, size: int) -> None:
        nonlocal done
        report.add(part)
        done += size
        progress(f"{frequency} {day}: {done}/{total} deliveries handled, {report.sent} sent, "
                 f"{report.skipped} skipped, {report.failed} failed")

    if workers > 1 and len(chunks) > 1:
        with ProcessPoolExecutor(max_workers=workers,
                                 mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = {pool.submit(_deliver_in_worker, settings, edition_id, chunk): len(chunk)
                       for chunk in chunks}
            for future in as_completed(futures):
                handled(future.result(), futures[future])
        return report

    compose = composer_for(settings, day, frequency)
    for chunk in chunks:
        handled(deliver(engine, edition_id, chunk, sender=local, compose=compose, now=now),
                len(chunk))
    return report


def _deliver_in_worker(settings: Any, edition_id: int, chunk: Sequence[int]) -> SendReport:
    """One chunk in a worker process: its own engine, sender and composer, as a Celery
    worker would have."""
    from newsletter.db import make_engine

    engine = make_engine(settings.database_url)
    try:
        with Session(engine) as session:
            edition = session.get(DigestEdition, edition_id)
            assert edition is not None
            day, frequency = edition.day, edition.frequency
        sender = batch_sender_for(settings)
        sender.prepare()  # before claiming: a missing template leaves the chunk pending
        return deliver(engine, edition_id, chunk, sender=sender,
                       compose=composer_for(settings, day, frequency))
    finally:
        engine.dispose()


@dataclass(frozen=True)
class DryRun:
    readers: int
    would_send: int
    would_skip: int
    distinct_digests: int

    def line(self) -> str:
        return (f"dry run: {self.readers} subscribers; {self.would_send} would get a digest "
                f"({self.distinct_digests} distinct), {self.would_skip} nothing new")


def dry_run(engine: Any, *, frequency: str = "daily", day: date | None = None) -> DryRun:
    """What an edition would send, writing nothing."""
    day = day or today_utc()
    with Session(engine) as session:
        papers = PaperIndex(candidates(session, window(frequency, day), day))
        people = confirmed_readers(session, frequency)
        sent = already_sent(session, [r.subscriber_id for r in people],
                            [c.paper_id for c in papers.candidates])
    selections = [papers.select(r.interests, sent.get(r.subscriber_id, frozenset()))
                  for r in people]
    chosen = [s for s in selections if not s.empty]
    return DryRun(readers=len(people), would_send=len(chosen),
                  would_skip=len(people) - len(chosen),
                  distinct_digests=len({s.signature() for s in chosen}))


def confirmed_readers(session: Session, frequency: str, limit: int | None = None) -> list[Reader]:
    """The subscribers an edition of this frequency would mail, by id."""
    rows = session.execute(text(f"""
        SELECT {_READER} FROM subscribers s JOIN preferences p ON p.subscriber_id = s.id
        WHERE {_MAILABLE} AND p.frequency = :frequency ORDER BY s.id
        {"LIMIT :limit" if limit else ""}
    """), {"frequency": frequency, "limit": limit}).mappings()
    return [_reader(row, delivery_id=0) for row in rows]


@dataclass(frozen=True)
class DeliveredDigest:
    """A sent digest as its reader saw it: for the "View in browser" link."""

    day: date
    frequency: str
    selection: Selection
    reader: Reader


def delivered_digest(session: Session, delivery_id: int, link_key: str) -> DeliveredDigest | None:
    """The digest a delivery carried, if the link key is still its reader's."""
    row = session.execute(text(f"""
        SELECT d.id AS delivery_id, d.more_count, e.day, e.frequency AS edition_frequency,
               {_READER}
        FROM deliveries d JOIN editions e ON e.id = d.edition_id
        JOIN subscribers s ON s.id = d.subscriber_id
        JOIN preferences p ON p.subscriber_id = s.id
        WHERE d.id = :id AND d.status = 'sent'
    """), {"id": delivery_id}).mappings().first()
    if row is None or not secrets.compare_digest(row["link_key"], link_key):
        return None
    carried = session.execute(
        select_rows(SentPaper, Paper, Card)
        .join(Paper, Paper.id == SentPaper.paper_id)  # type: ignore[arg-type]
        .outerjoin(Card, and_(Card.paper_id == Paper.id, Card.status == "ok"))  # type: ignore[arg-type]
        .where(SentPaper.delivery_id == delivery_id)
        .order_by(SentPaper.position)
    ).all()
    picks = tuple(
        Pick(candidate=_as_candidate(paper, card, revised="revised version" in sent.reasons),
             score=sent.score, reasons=tuple(sent.reasons.splitlines()))
        for sent, paper, card in carried
    )
    day = row["day"] if isinstance(row["day"], date) else date.fromisoformat(str(row["day"]))
    return DeliveredDigest(day=day, frequency=row["edition_frequency"],
                           selection=Selection(picks=picks, more=row["more_count"]),
                           reader=_reader(row, delivery_id=row["delivery_id"]))


# Where "Manage topics" and "Unsubscribe" lead in a digest viewed in the browser.
PERSONAL_LINKS_PATH = "/digest/personal-links"


def digest_in_browser(engine: Any, settings: Any, links: Links, token: str) -> str:
    """The HTML of a delivered digest; BadLink otherwise.

    A "view in browser" address gets forwarded and pasted, so the page carries no key to
    the reader's subscription: its Manage and Unsubscribe lead to a page saying they are
    in the email itself.
    """
    delivery_id, link_key = links.read_digest(token)
    with Session(engine) as session:
        found = delivered_digest(session, delivery_id, link_key)
    if found is None:
        raise BadLink("no such digest")
    batch = message.compose([_addressee(links, found.reader, found.selection)],
                            day=found.day, frequency=found.frequency,
                            site_url=settings.base_url)
    elsewhere = f"{settings.base_url.rstrip('/')}{PERSONAL_LINKS_PATH}"
    data = {**batch.recipients[0].data, "m": elsewhere, "x": elsewhere}
    return render_digest(data).html


@dataclass(frozen=True)
class Preview:
    subject: str
    html: str
    text: str
    papers: int
    more: int


def preview(engine: Any, settings: Any, email: str, *, day: date | None = None) -> Preview | None:
    """The digest a subscriber would get in the next edition, rendered, writing nothing.

    None when they would get none (nothing new matches); LookupError for an unknown address.
    """
    day = day or today_utc()
    with Session(engine) as session:
        row = session.execute(text(f"""
            SELECT {_READER} FROM subscribers s JOIN preferences p ON p.subscriber_id = s.id
            WHERE lower(s.email) = lower(:email)
        """), {"email": email.strip()}).mappings().first()
        if row is None:
            raise LookupError(f"no subscriber {email}")
        reader = _reader(row, delivery_id=0)
        frequency = row["frequency"]
        papers = PaperIndex(candidates(session, window(frequency, day), day))
        sent = already_sent(session, [reader.subscriber_id],
                            [c.paper_id for c in papers.candidates])
    selection = papers.select(reader.interests, sent.get(reader.subscriber_id, frozenset()))
    if selection.empty:
        return None
    links = Links.from_settings(settings)
    batch = message.compose(
        [_addressee(links, reader, selection, view_url=f"{settings.base_url.rstrip('/')}/")],
        day=day, frequency=frequency, site_url=settings.base_url)
    digest = render_digest(batch.recipients[0].data)
    return Preview(subject=digest.subject, html=digest.html, text=digest.text,
                   papers=len(selection.picks), more=selection.more)


# ------------------------------------------------------------------ scheduled (workers)


def prepare_configured(frequency: str, day: date | None = None) -> tuple[int, list[list[int]]]:
    """The scheduled job's first half: plan today's edition, return its chunks to fan out."""
    from newsletter.config import settings as current_settings
    from newsletter.db import engine_for

    settings = current_settings()
    # Checked (SendGrid: synced) once here, so the mail workers find the template current.
    batch_sender_for(settings).prepare()
    edition_id, planned, chunks = prepare_edition(
        engine_for(settings.database_url), frequency, day or today_utc(),
        chunk_size=settings.delivery_chunk_size)
    log.info("edition=%s frequency=%s planned=%d chunks=%d", edition_id, frequency, planned,
             len(chunks))
    return edition_id, chunks


def deliver_configured(edition_id: int, delivery_ids: Sequence[int]) -> SendReport:
    """The scheduled job's second half: one chunk, on whichever worker takes it."""
    from newsletter.config import settings as current_settings

    return _deliver_in_worker(current_settings(), edition_id, delivery_ids)
