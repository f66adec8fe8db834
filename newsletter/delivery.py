"""The ledger and the send: every confirmed subscriber gets each edition exactly once.

An `Edition` is one day's (or week's) digest run. Planning inserts one `Delivery` row per
(subscriber, edition) in a single set-based statement, under a unique constraint, so
planning twice plans nothing new. Senders claim rows with a conditional UPDATE (a row
moves from pending to sending under one claim token), so two workers never take the same
row; a row left in `sending` by a crashed worker is taken again after a lease. A delivery
is marked sent, with the papers it carried, right after the request that sent it: after a
crash only the recipients of the request in flight can get a second copy, and nobody is
skipped. The papers carried (`SentPaper`, unique per subscriber and paper) are why a
paper never reaches the same reader twice.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import secrets
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    Date,
    DateTime,
    ForeignKey,
    Integer,
    UniqueConstraint,
    and_,
    bindparam,
    insert,
    or_,
    text,
    update,
)
from sqlalchemy import select as select_rows
from sqlmodel import Field, Session, SQLModel, select

from newsletter import message
from newsletter.batch import Batch, SendError, personalize
from newsletter.card import Card
from newsletter.digest import Candidate, Edition, Interests, Pick, Selection, candidate
from newsletter.links import BadLink, LinkHolder, Links
from newsletter.mail import BatchSender, batch_sender_for
from newsletter.paper import Paper
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
    subscriber_id: int = Field(sa_column=Column(
        Integer, ForeignKey("subscribers.id", ondelete="CASCADE"), nullable=False))
    paper_id: int = Field(sa_column=Column(
        Integer, ForeignKey("papers.id", ondelete="CASCADE"), nullable=False))
    position: int = 0
    score: int = 0
    reasons: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))


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


_PLAN = text("""
    INSERT INTO deliveries (edition_id, subscriber_id, status, attempts, paper_count, more_count)
    SELECT :edition_id, s.id, 'pending', 0, 0, 0
    FROM subscribers s JOIN preferences p ON p.subscriber_id = s.id
    WHERE s.status = 'confirmed' AND p.frequency = :frequency
      AND NOT EXISTS (SELECT 1 FROM suppressions x WHERE x.email = s.email)
      AND NOT EXISTS (SELECT 1 FROM deliveries d
                      WHERE d.edition_id = :edition_id AND d.subscriber_id = s.id)
""")


def plan(session: Session, edition: DigestEdition) -> int:
    """One delivery row per confirmed, unsuppressed subscriber of this frequency."""
    result = session.execute(_PLAN, {"edition_id": edition.id, "frequency": edition.frequency})
    return result.rowcount or 0


def open_deliveries(session: Session, edition_id: int, now: datetime) -> list[int]:
    """Rows still to send: pending, or claimed by a worker whose lease ran out."""
    rows = session.execute(
        select_rows(deliveries.c.id).where(
            deliveries.c.edition_id == edition_id,
            or_(deliveries.c.status == "pending",
                and_(deliveries.c.status == "sending", deliveries.c.claimed_at < now - LEASE)),
        ).order_by(deliveries.c.id)
    )
    return list(rows.scalars())


def claim(session: Session, delivery_ids: Sequence[int], now: datetime) -> tuple[str, list[int]]:
    """Take rows for this worker: only rows nobody holds move, so two workers never share one."""
    token = secrets.token_hex(8)
    session.execute(
        update(deliveries)
        .where(
            deliveries.c.id.in_(delivery_ids),
            or_(deliveries.c.status == "pending",
                and_(deliveries.c.status == "sending", deliveries.c.claimed_at < now - LEASE)),
        )
        .values(status="sending", claim=token, claimed_at=now,
                attempts=deliveries.c.attempts + 1)
    )
    taken = session.execute(
        select_rows(deliveries.c.id).where(deliveries.c.claim == token).order_by(deliveries.c.id)
    ).scalars()
    return token, list(taken)


@dataclass(frozen=True)
class Reader:
    """A claimed delivery's subscriber, as the digest needs them."""

    delivery_id: int
    subscriber_id: int
    email: str
    link_key: str
    interests: Interests


def readers(session: Session, delivery_ids: Sequence[int]) -> list[Reader]:
    rows = session.execute(text("""
        SELECT d.id AS delivery_id, s.id AS subscriber_id, s.email, s.link_key,
               p.topics, p.include_keywords, p.exclude_keywords, p.authors, p.max_papers,
               p.include_revised
        FROM deliveries d JOIN subscribers s ON s.id = d.subscriber_id
        JOIN preferences p ON p.subscriber_id = s.id
        WHERE d.id IN :ids AND s.status = 'confirmed'
          AND NOT EXISTS (SELECT 1 FROM suppressions x WHERE x.email = s.email)
        ORDER BY d.id
    """).bindparams(_expanding("ids")), {"ids": list(delivery_ids)}).mappings()
    return [_reader(row, delivery_id=row["delivery_id"]) for row in rows]


def _reader(row: Any, delivery_id: int) -> Reader:
    return Reader(
        delivery_id=delivery_id, subscriber_id=row["subscriber_id"], email=row["email"],
        link_key=row["link_key"],
        interests=Interests(
            topics=tuple(_json(row["topics"])),
            include_keywords=tuple(_json(row["include_keywords"])),
            exclude_keywords=tuple(_json(row["exclude_keywords"])),
            authors=tuple(_json(row["authors"])),
            max_papers=row["max_papers"], include_revised=bool(row["include_revised"]),
        ),
    )


def _expanding(name: str) -> Any:
    return bindparam(name, expanding=True)


def _json(value: Any) -> list[str]:
    # Raw SQL hands JSON columns back as text on SQLite and as lists on Postgres.
    if isinstance(value, str):
        return list(json.loads(value))
    return list(value or [])


def already_sent(
    session: Session, subscriber_ids: Sequence[int], paper_ids: Sequence[int]
) -> dict[int, frozenset[int]]:
    if not subscriber_ids or not paper_ids:
        return {}
    rows = session.execute(
        select_rows(sent_papers.c.subscriber_id, sent_papers.c.paper_id).where(
            sent_papers.c.subscriber_id.in_(subscriber_ids),
            sent_papers.c.paper_id.in_(paper_ids),
        )
    )
    found: dict[int, set[int]] = {}
    for subscriber_id, paper_id in rows:
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


Composer = Callable[[Selection, Sequence[Reader]], Batch]


def _mark_skipped(session: Session, token: str, delivery_ids: Iterable[int]) -> None:
    ids = list(delivery_ids)
    if ids:
        session.execute(update(deliveries).where(
            deliveries.c.id.in_(ids), deliveries.c.claim == token,
        ).values(status="skipped", error=None))


def _mark_sent(session: Session, token: str, selection: Selection, group: Sequence[Reader],
               now: datetime) -> None:
    ids = [r.delivery_id for r in group]
    session.execute(update(deliveries).where(
        deliveries.c.id.in_(ids), deliveries.c.claim == token,
    ).values(status="sent", sent_at=now, error=None, paper_count=len(selection.picks),
             more_count=selection.more))
    rows = [
        {"delivery_id": r.delivery_id, "subscriber_id": r.subscriber_id,
         "paper_id": pick.candidate.paper_id, "position": i, "score": pick.score,
         "reasons": list(pick.reasons)}
        for r in group for i, pick in enumerate(selection.picks)
    ]
    if rows:
        session.execute(insert(sent_papers), rows)


def _mark_failed(session: Session, token: str, readers_: Sequence[Reader], error: str,
                 *, permanent: bool) -> None:
    ids = [r.delivery_id for r in readers_]
    if permanent:
        values: dict[str, Any] = {"status": "failed", "error": error[:1000]}
        session.execute(update(deliveries).where(
            deliveries.c.id.in_(ids), deliveries.c.claim == token).values(**values))
        return
    # A passing fault: back to pending for the next run, unless it keeps failing.
    session.execute(update(deliveries).where(
        deliveries.c.id.in_(ids), deliveries.c.claim == token,
        deliveries.c.attempts >= MAX_ATTEMPTS,
    ).values(status="failed", error=error[:1000]))
    session.execute(update(deliveries).where(
        deliveries.c.id.in_(ids), deliveries.c.claim == token,
        deliveries.c.attempts < MAX_ATTEMPTS,
    ).values(status="pending", claim=None, claimed_at=None, error=error[:1000]))


def deliver(
    engine: Any, edition_id: int, delivery_ids: Sequence[int], *, sender: BatchSender,
    compose: Composer, now: Callable[[], datetime] = _utcnow,
) -> SendReport:
    """Send one chunk of an edition: claim, select, group identical digests, send, record."""
    report = SendReport(edition_id=edition_id)
    with Session(engine) as session:
        token, taken = claim(session, delivery_ids, now())
        session.commit()
        if not taken:
            return report
        edition = session.get(DigestEdition, edition_id)
        assert edition is not None
        day_papers = Edition(candidates(session, edition.window_start, edition.day))
        people = readers(session, taken)
        sent_before = already_sent(session, [r.subscriber_id for r in people],
                                   [c.paper_id for c in day_papers.candidates])
        groups: dict[tuple[object, ...], tuple[Selection, list[Reader]]] = {}
        nothing_new: list[int] = []
        for reader in people:
            selection = day_papers.select(reader.interests,
                                          sent_before.get(reader.subscriber_id, frozenset()))
            if selection.empty:
                nothing_new.append(reader.delivery_id)
                continue
            groups.setdefault(selection.signature(), (selection, []))[1].append(reader)
        # Claimed rows whose subscriber left meanwhile (unsubscribed, deleted) are skipped.
        gone = set(taken) - {r.delivery_id for r in people}
        _mark_skipped(session, token, [*nothing_new, *gone])
        session.commit()
        report.skipped = len(nothing_new) + len(gone)

        for selection, group in groups.values():
            # One render per distinct digest; one request per part the provider allows.
            batch = compose(selection, group)
            for start in range(0, len(group), sender.max_batch):
                part = group[start:start + sender.max_batch]
                recipients = batch.recipients[start:start + sender.max_batch]
                _send_part(session, token, selection, part,
                           dataclasses.replace(batch, recipients=recipients), sender, now,
                           report)
    log.info("deliver edition=%s claimed=%d sent=%d skipped=%d failed=%d retry=%d requests=%d",
             edition_id, len(taken), report.sent, report.skipped, report.failed,
             report.retry_later, report.requests)
    return report


def _send_part(session: Session, token: str, selection: Selection, part: Sequence[Reader],
               batch: Batch, sender: BatchSender, now: Callable[[], datetime],
               report: SendReport) -> None:
    started = time.monotonic()
    try:
        result = sender.send_batch(batch)
    except SendError as exc:
        report.requests += 1
        _mark_failed(session, token, part, str(exc), permanent=exc.permanent)
        session.commit()
        if exc.permanent:
            report.failed += len(part)
        else:
            report.retry_later += len(part)
        report.errors.append(str(exc))
        log.warning("send failed recipients=%d permanent=%s error=%r", len(part),
                    exc.permanent, str(exc))
        return
    report.requests += result.requests
    accepted, rejected = set(result.accepted), set(result.rejected)
    ok = [r for r in part if r.email in accepted]
    refused = [r for r in part if r.email in rejected and r.email not in accepted]
    unsent = [r for r in part if r.email not in accepted and r.email not in rejected]
    if ok:
        _mark_sent(session, token, selection, ok, now())
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
    log.info("sent recipients=%d papers=%d ms=%d", len(ok), len(selection.picks),
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

    def build(selection: Selection, group: Sequence[Reader]) -> Batch:
        addressees = []
        for r in group:
            holder = LinkHolder(r.subscriber_id, r.link_key)
            addressees.append(message.Addressee(
                email=r.email, delivery_id=r.delivery_id, manage_url=links.manage_url(holder),
                unsubscribe_url=links.unsubscribe_url(holder),
                view_url=links.digest_url(r.delivery_id, r.link_key),
            ))
        return message.compose(selection, addressees, day=day, frequency=frequency,
                       site_url=settings.base_url)

    return build


def send_edition(
    engine: Any, settings: Any, *, frequency: str = "daily", day: date | None = None,
    sender: BatchSender | None = None, chunk_size: int = 1000,
    progress: Progress = lambda _: None, now: Callable[[], datetime] = _utcnow,
) -> SendReport:
    """The whole edition in this process: what `newsletter send` runs."""
    day = day or today_utc()
    edition_id, planned, chunks = prepare_edition(engine, frequency, day, chunk_size, now)
    sender = sender or batch_sender_for(settings)
    compose = composer_for(settings, day, frequency)
    report = SendReport(edition_id=edition_id, planned=planned)
    total = sum(len(c) for c in chunks)
    done = 0
    for chunk in chunks:
        report.add(deliver(engine, edition_id, chunk, sender=sender, compose=compose, now=now))
        done += len(chunk)
        progress(f"{frequency} {day}: {done}/{total} deliveries handled, {report.sent} sent, "
                 f"{report.skipped} skipped, {report.failed} failed")
    return report


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
        ids = list(session.execute(text("""
            SELECT s.id FROM subscribers s JOIN preferences p ON p.subscriber_id = s.id
            WHERE s.status = 'confirmed' AND p.frequency = :frequency
              AND NOT EXISTS (SELECT 1 FROM suppressions x WHERE x.email = s.email)
        """), {"frequency": frequency}).scalars())
        papers = Edition(candidates(session, window(frequency, day), day))
        people = _subscribers_as_readers(session, ids)
        sent = already_sent(session, [r.subscriber_id for r in people],
                            [c.paper_id for c in papers.candidates])
    selections = [papers.select(r.interests, sent.get(r.subscriber_id, frozenset()))
                  for r in people]
    chosen = [s for s in selections if not s.empty]
    return DryRun(readers=len(people), would_send=len(chosen),
                  would_skip=len(people) - len(chosen),
                  distinct_digests=len({s.signature() for s in chosen}))


def _subscribers_as_readers(session: Session, subscriber_ids: Sequence[int]) -> list[Reader]:
    if not subscriber_ids:
        return []
    rows = session.execute(text("""
        SELECT s.id AS subscriber_id, s.email, s.link_key, p.topics, p.include_keywords,
               p.exclude_keywords, p.authors, p.max_papers, p.include_revised
        FROM subscribers s JOIN preferences p ON p.subscriber_id = s.id
        WHERE s.id IN :ids ORDER BY s.id
    """).bindparams(_expanding("ids")), {"ids": list(subscriber_ids)}).mappings()
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
    row = session.execute(text("""
        SELECT d.id AS delivery_id, d.more_count, e.day, e.frequency, s.id AS subscriber_id,
               s.email, s.link_key, p.topics, p.include_keywords, p.exclude_keywords,
               p.authors, p.max_papers, p.include_revised
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
             score=sent.score, reasons=tuple(sent.reasons))
        for sent, paper, card in carried
    )
    day = row["day"] if isinstance(row["day"], date) else date.fromisoformat(str(row["day"]))
    return DeliveredDigest(day=day, frequency=row["frequency"],
                           selection=Selection(picks=picks, more=row["more_count"]),
                           reader=_reader(row, delivery_id=row["delivery_id"]))


def digest_in_browser(engine: Any, settings: Any, links: Links, token: str) -> str:
    """The HTML of a delivered digest, with its reader's working links; BadLink otherwise."""
    delivery_id, link_key = links.read_digest(token)
    with Session(engine) as session:
        found = delivered_digest(session, delivery_id, link_key)
    if found is None:
        raise BadLink("no such digest")
    reader = found.reader
    holder = LinkHolder(reader.subscriber_id, reader.link_key)
    batch = message.compose(
        found.selection,
        [message.Addressee(email=reader.email, delivery_id=delivery_id,
                           manage_url=links.manage_url(holder),
                           unsubscribe_url=links.unsubscribe_url(holder),
                           view_url=links.digest_url(delivery_id, link_key))],
        day=found.day, frequency=found.frequency, site_url=settings.base_url,
    )
    return personalize(batch.html, batch.recipients[0].substitutions)


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
        row = session.execute(text("""
            SELECT s.id AS subscriber_id, s.email, s.link_key, p.frequency, p.topics,
                   p.include_keywords, p.exclude_keywords, p.authors, p.max_papers,
                   p.include_revised
            FROM subscribers s JOIN preferences p ON p.subscriber_id = s.id
            WHERE lower(s.email) = lower(:email)
        """), {"email": email.strip()}).mappings().first()
        if row is None:
            raise LookupError(f"no subscriber {email}")
        reader = _reader(row, delivery_id=0)
        frequency = row["frequency"]
        papers = Edition(candidates(session, window(frequency, day), day))
        sent = already_sent(session, [reader.subscriber_id],
                            [c.paper_id for c in papers.candidates])
    selection = papers.select(reader.interests, sent.get(reader.subscriber_id, frozenset()))
    if selection.empty:
        return None
    links = Links.from_settings(settings)
    holder = LinkHolder(reader.subscriber_id, reader.link_key)
    batch = message.compose(
        selection,
        [message.Addressee(email=reader.email, delivery_id=0,
                           manage_url=links.manage_url(holder),
                           unsubscribe_url=links.unsubscribe_url(holder),
                           view_url=f"{settings.base_url.rstrip('/')}/")],
        day=day, frequency=frequency, site_url=settings.base_url,
    )
    subs = batch.recipients[0].substitutions
    return Preview(subject=batch.subject, html=personalize(batch.html, subs),
                   text=personalize(batch.text, subs), papers=len(selection.picks),
                   more=selection.more)
