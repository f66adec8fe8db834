"""What the subscribers, editions and cards pages show: searches, one reader's history, an
edition's failures, failed cards, and a reader's next digest made safe to look at.

Reads only; the actions are in actions.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import Engine, and_, exists, func, select
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import Session

from newsletter import delivery
from newsletter.admin.stats import EditionCounts, as_date, counts_of, is_postgres
from newsletter.cards.card import Card
from newsletter.config import Settings
from newsletter.delivery import Delivery, DigestEdition
from newsletter.ingest.paper import Paper
from newsletter.mail.render import RenderedDigest
from newsletter.readers.links import LinkHolder, Links
from newsletter.readers.subscriber import erased_form
from newsletter.readers.tables import (
    STATUSES,
    Consent,
    Preferences,
    Subscriber,
    Suppression,
    WebhookEvent,
)
from newsletter.relevance.tables import Rating

# What the subscriber search filters on: a status, or "suppressed" (any status).
SEARCH_STATUSES = (*STATUSES, "suppressed")
PAGE_SIZE = 50
HISTORY_LIMIT = 100


@dataclass(frozen=True)
class ReaderRow:
    id: int
    email: str
    status: str
    suppressed: bool
    topics: tuple[str, ...]
    frequency: str
    created_at: datetime


@dataclass(frozen=True)
class ReaderPage:
    rows: list[ReaderRow]
    total: int
    number: int  # 1-based
    pages: int


def _has_topic(session: Session, slug: str) -> ColumnElement[bool]:
    if is_postgres(session):
        each = func.json_array_elements_text(Preferences.topics).table_valued("value") \
            .render_derived("t")
    else:
        each = func.json_each(Preferences.topics).table_valued("value").alias("t")
    return exists(select(1).select_from(each).where(each.c.value == slug))


def _suppressed() -> ColumnElement[bool]:
    return exists().where(Suppression.email == Subscriber.email)


def search_readers(session: Session, text: str = "", status: str = "", topic: str = "",
                   number: int = 1, size: int = PAGE_SIZE) -> ReaderPage:
    """Readers whose address contains `text`, of a status (or suppressed), following a
    topic: one page, by address. Unknown statuses and topics are the caller's to refuse."""
    where: list[ColumnElement[bool]] = []
    if text:
        pattern = "%" + text.lower().replace("\\", "\\\\").replace("%", "\\%") \
            .replace("_", "\\_") + "%"
        where.append(func.lower(Subscriber.email).like(pattern, escape="\\"))
    if status == "suppressed":
        where.append(_suppressed())
    elif status:
        where.append(Subscriber.status == status)
    if topic:
        where.append(_has_topic(session, topic))
    joined = (select(Subscriber.id).select_from(Subscriber)
              .join(Preferences, Preferences.subscriber_id == Subscriber.id,  # type: ignore[arg-type]
                    isouter=True).where(*where))
    total = session.execute(select(func.count()).select_from(joined.subquery())).scalar_one()
    pages = max(1, -(-total // size))
    number = min(max(1, number), pages)
    rows = session.execute(
        select(Subscriber.id, Subscriber.email, Subscriber.status, _suppressed(),
               Preferences.topics, Preferences.frequency, Subscriber.created_at)
        .join(Preferences, Preferences.subscriber_id == Subscriber.id,  # type: ignore[arg-type]
              isouter=True)
        .where(*where).order_by(Subscriber.email)
        .offset((number - 1) * size).limit(size)).all()
    return ReaderPage([ReaderRow(i, e, s, bool(x), tuple(t or ()), f or "daily", c)
                       for i, e, s, x, t, f, c in rows], total, number, pages)


@dataclass(frozen=True)
class DeliveryRow:
    id: int
    edition_id: int
    frequency: str
    day: date
    status: str
    attempts: int
    paper_count: int
    sent_at: datetime | None
    error: str | None
    delivered_at: datetime | None
    opened_at: datetime | None
    clicked_at: datetime | None
    bounced_at: datetime | None


@dataclass(frozen=True)
class ReaderHistory:
    reader: Subscriber
    preferences: Preferences | None
    suppression: Suppression | None
    deliveries: list[DeliveryRow]  # newest first, at most HISTORY_LIMIT
    events: list[tuple[str, datetime]]  # provider events naming the address, newest first
    ratings: list[tuple[str, str, int, datetime]]  # paper key, title, +1/-1, when
    consents: list[Consent]


def _delivery_rows(session: Session, *where: ColumnElement[bool],
                   limit: int = HISTORY_LIMIT) -> list[DeliveryRow]:
    rows = session.execute(
        select(Delivery.id, Delivery.edition_id, DigestEdition.frequency, DigestEdition.day,
               Delivery.status, Delivery.attempts, Delivery.paper_count, Delivery.sent_at,
               Delivery.error, Delivery.delivered_at, Delivery.opened_at, Delivery.clicked_at,
               Delivery.bounced_at)
        .join(DigestEdition, DigestEdition.id == Delivery.edition_id)  # type: ignore[arg-type]
        .where(*where).order_by(DigestEdition.day.desc(), Delivery.id.desc())  # type: ignore[attr-defined]
        .limit(limit)).all()
    return [DeliveryRow(*row) for row in rows]


def reader_history(session: Session, subscriber_id: int) -> ReaderHistory | None:
    """One reader's rows: what they chose, agreed to, were sent, and what came back."""
    reader = session.get(Subscriber, subscriber_id)
    if reader is None:
        return None
    suppression = session.execute(select(Suppression).where(
        Suppression.email.in_([reader.email, erased_form(reader.email)]))  # type: ignore[attr-defined]
    ).scalars().first()
    events = [(e, at) for e, at in session.execute(
        select(WebhookEvent.event, WebhookEvent.received_at)
        .where(WebhookEvent.email == reader.email)
        .order_by(WebhookEvent.received_at.desc()).limit(HISTORY_LIMIT)).all()]  # type: ignore[attr-defined]
    ratings = [(k, t, v, at) for k, t, v, at in session.execute(
        select(Paper.key, Paper.title, Rating.value, Rating.rated_at)
        .join(Paper, Paper.id == Rating.paper_id)  # type: ignore[arg-type]
        .where(Rating.subscriber_id == subscriber_id)
        .order_by(Rating.rated_at.desc()).limit(HISTORY_LIMIT)).all()]  # type: ignore[attr-defined]
    consents = list(session.execute(
        select(Consent).where(Consent.subscriber_id == subscriber_id)
        .order_by(Consent.at.desc(), Consent.id.desc())).scalars())  # type: ignore[attr-defined, union-attr]
    return ReaderHistory(reader, session.get(Preferences, subscriber_id), suppression,
                         _delivery_rows(session, Delivery.subscriber_id == subscriber_id),
                         events, ratings, consents)


def recent_editions(session: Session, limit: int = 60) -> list[EditionCounts]:
    """The latest editions, newest first, each with its deliveries counted."""
    found = session.execute(
        select(DigestEdition.id, DigestEdition.frequency, DigestEdition.day)
        .order_by(DigestEdition.day.desc(), DigestEdition.id.desc()).limit(limit)).all()  # type: ignore[attr-defined]
    return counts_of(session, [(i, f, as_date(d)) for i, f, d in found])


def _reasons_counted(session: Session, error: Any, where: ColumnElement[bool]
                     ) -> list[tuple[str, int]]:
    """The errors of the failed rows, each with how many rows failed so, most common first."""
    reason = func.coalesce(error, "")
    return [(e or "(no error recorded)", n) for e, n in session.execute(
        select(reason, func.count()).where(where).group_by(reason)
        .order_by(func.count().desc())).all()]


@dataclass(frozen=True)
class FailedDelivery:
    id: int
    subscriber_id: int
    email: str
    attempts: int
    error: str | None


@dataclass(frozen=True)
class EditionDetail:
    counts: EditionCounts
    # The failures' reasons, most common first, and the failed deliveries themselves.
    errors: list[tuple[str, int]]
    failed: list[FailedDelivery]


def edition_detail(session: Session, edition_id: int, limit: int = 500
                   ) -> EditionDetail | None:
    edition = session.get(DigestEdition, edition_id)
    if edition is None or edition.id is None:
        return None
    [counts] = counts_of(session, [(edition.id, edition.frequency, as_date(edition.day))])
    failed_here = and_(Delivery.edition_id == edition_id, Delivery.status == "failed")
    errors = _reasons_counted(session, Delivery.error, failed_here)
    rows = session.execute(
        select(Delivery.id, Delivery.subscriber_id, Subscriber.email, Delivery.attempts,
               Delivery.error)
        .join(Subscriber, Subscriber.id == Delivery.subscriber_id)  # type: ignore[arg-type]
        .where(failed_here).order_by(Delivery.id).limit(limit)).all()
    return EditionDetail(counts, errors, [FailedDelivery(*row) for row in rows])


@dataclass(frozen=True)
class CardFailure:
    paper_id: int
    key: str
    title: str
    error: str | None
    failures: int
    attempts: int
    model: str
    updated_at: datetime


@dataclass(frozen=True)
class CardFailures:
    total: int
    reasons: list[tuple[str, int]]  # most common first
    cards: list[CardFailure]  # most recent first


def card_failures(session: Session, limit: int = 200) -> CardFailures:
    """Papers whose card failed, with the last error of each, and the errors counted."""
    failed = Card.status == "failed"
    reasons = _reasons_counted(session, Card.last_error, failed)
    total = sum(n for _, n in reasons)
    rows = session.execute(
        select(Paper.id, Paper.key, Paper.title, Card.last_error, Card.failures, Card.attempts,
               Card.model, Card.updated_at)
        .join(Paper, Paper.id == Card.paper_id)  # type: ignore[arg-type]
        .where(failed).order_by(Card.updated_at.desc(), Paper.id.desc())  # type: ignore[attr-defined]
        .limit(limit)).all()
    return CardFailures(total, reasons[:20], [CardFailure(*row) for row in rows])


@dataclass(frozen=True)
class ReaderPreview:
    email: str
    status: str
    frequency: str
    day: date
    digest: RenderedDigest | None  # None: nothing new matches them today
    picks: list[dict[str, Any]]  # as `newsletter preview --json` prints them


def reader_preview(engine: Engine, settings: Settings, subscriber_id: int,
                   day: date) -> ReaderPreview:
    """The digest this reader would get in the next edition, exactly as `delivery.preview`
    renders it (the send's own choice of papers, the mail's own template), with every link
    that would act for the reader made inert: Manage and Unsubscribe lead to the page
    saying those links are in the email, and rating links carry "preview" instead of the
    reader's token. The reader's tokens are recomputed (they are deterministic) and
    replaced; if one were still there the preview is refused rather than shown.
    LookupError for an unknown reader. Writes nothing."""
    with Session(engine) as session:
        row = session.get(Subscriber, subscriber_id)
        if row is None:
            raise LookupError(f"no subscriber {subscriber_id}")
        email, status, link_key = row.email, row.status, row.link_key
        prefs = session.get(Preferences, subscriber_id)
        frequency = prefs.frequency if prefs else "daily"
    found = delivery.preview(engine, settings, email, day=day)
    if found is None:
        return ReaderPreview(email, status, frequency, day, None, [])
    links = Links.from_settings(settings)
    holder = LinkHolder(subscriber_id, link_key)
    nowhere = f"{settings.base_url.rstrip('/')}{delivery.PERSONAL_LINKS_PATH}"
    inert = {links.manage_url(holder): nowhere, links.unsubscribe_url(holder): nowhere,
             **{links.rate_token(holder, pick.candidate.paper_id): "preview"
                for pick in found.selection.picks}}

    def shown(rendered: str) -> str:
        for personal, harmless in inert.items():
            rendered = rendered.replace(personal, harmless)
        if any(personal in rendered for personal in inert):
            raise RuntimeError("a personal link survived in the preview")
        return rendered

    digest = RenderedDigest(subject=found.subject, html=shown(found.html),
                            text=shown(found.text))
    return ReaderPreview(email, status, frequency, day, digest, found.picks)
