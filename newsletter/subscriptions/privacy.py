"""What Paperwire holds about a reader: all of it in the export, none of it after erasure.

A reader's data lies all along the flow: the subscriber row, preferences (with their
description and liked papers) and consents; their ratings and the model trained from them;
their own papers (author identifier, library files, each entry kept and its vector);
the ledger (deliveries, and the papers each one carried, with the reasons); provider
events that name the address; and a suppression if the address bounced or complained.
`export` gathers every piece. `erase` removes every row that names the person, but one:
a suppression keeps a one-way digest of the address (`subscriber.erased_form`), so a
mailbox that bounced or complained is still never mailed again.

tests/subscriptions/test_privacy.py walks every table and column after an erasure, and fails for a
table nobody has reviewed, so a table added later cannot be forgotten here.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, update
from sqlmodel import Session, select

from newsletter.delivery import Delivery, DigestEdition, SentPaper
from newsletter.ingest.paper import Paper
from newsletter.readers import subscriber as subs
from newsletter.readers.tables import (
    PENDING_LIFETIME,
    Preferences,
    Subscriber,
    Suppression,
    WebhookEvent,
)
from newsletter.relevance.library import store as library_store
from newsletter.relevance.library.tables import LibraryEntry, LibraryUpload
from newsletter.relevance.tables import Rating, ReaderModelRow
from newsletter.subscriptions import mail_queue
from newsletter.subscriptions.signup_limits import SignupLimits, forget_ended_windows


def _deliveries(session: Session, subscriber_id: int) -> list[dict[str, Any]]:
    rows = session.exec(
        select(Delivery, DigestEdition).join(DigestEdition, DigestEdition.id == Delivery.edition_id)  # type: ignore[arg-type]
        .where(Delivery.subscriber_id == subscriber_id).order_by(DigestEdition.day, Delivery.id))
    papers: dict[int, list[dict[str, Any]]] = {}
    sent = session.exec(
        select(SentPaper, Paper).join(Paper, Paper.id == SentPaper.paper_id)  # type: ignore[arg-type]
        .where(SentPaper.subscriber_id == subscriber_id)
        .order_by(SentPaper.delivery_id, SentPaper.position))
    for item, paper in sent:
        papers.setdefault(item.delivery_id, []).append({
            "paper": paper.key, "title": paper.title, "position": item.position,
            "score": item.score, "reasons": [r for r in item.reasons.splitlines() if r],
            "clicked_at": subs.iso(item.clicked_at)})
    return [{"edition": {"frequency": edition.frequency, "day": edition.day.isoformat()},
             "status": delivery.status, "sent_at": subs.iso(delivery.sent_at),
             # What the provider told us of it: first delivered, opened, clicked, bounced.
             **{name: subs.iso(getattr(delivery, name)) for name in
                ("delivered_at", "opened_at", "clicked_at", "bounced_at")},
             "attempts": delivery.attempts, "error": delivery.error,
             "papers": papers.get(delivery.id or 0, []), "more_on_the_site": delivery.more_count}
            for delivery, edition in rows]


def _events(session: Session, email: str) -> list[dict[str, Any]]:
    rows = session.exec(select(WebhookEvent).where(WebhookEvent.email == email)
                        .order_by(WebhookEvent.received_at, WebhookEvent.id))  # type: ignore[arg-type]
    return [{"event": e.event, "received_at": subs.iso(e.received_at), "id": e.sg_event_id}
            for e in rows]


def _ratings(session: Session, subscriber_id: int) -> list[dict[str, Any]]:
    rows = session.exec(
        select(Rating, Paper).join(Paper, Paper.id == Rating.paper_id)  # type: ignore[arg-type]
        .where(Rating.subscriber_id == subscriber_id)
        .order_by(Rating.rated_at, Paper.key))  # type: ignore[arg-type]
    return [{"paper": paper.key, "title": paper.title,
             "rating": "up" if rating.value > 0 else "down", "rated_at": subs.iso(rating.rated_at)}
            for rating, paper in rows]


def _reader_model(session: Session, subscriber_id: int) -> dict[str, Any] | None:
    row = session.get(ReaderModelRow, subscriber_id)
    if row is None:
        return None

    def b64(data: bytes | None) -> str | None:
        return base64.b64encode(data).decode("ascii") if data is not None else None

    return {"vector_model": row.vector_model, "trained_at": subs.iso(row.trained_at),
            "ratings": row.ratings, "model_base64": b64(row.data),
            "description_vector_base64": b64(row.description_vector)}


def _own_papers(session: Session, subscriber_id: int) -> dict[str, Any]:
    """Their author identifier, library files (theirs and any waiting for a confirmation)
    and every entry kept of them, with its vector."""
    prefs = session.get(Preferences, subscriber_id)
    uploads = session.exec(select(LibraryUpload).where(
        LibraryUpload.subscriber_id == subscriber_id).order_by(LibraryUpload.id))  # type: ignore[arg-type]
    entries = session.exec(select(LibraryEntry).where(
        LibraryEntry.subscriber_id == subscriber_id).order_by(LibraryEntry.id))  # type: ignore[arg-type]
    return {
        "arxiv_author": prefs.arxiv_author if prefs else None,
        "author_feed_read_at": subs.iso(prefs.author_fetched_at) if prefs and
        prefs.author_fetched_at else None,
        "library_files": [{"id": u.id, "filename": u.filename, "format": u.format,
                           "uploaded_at": subs.iso(u.uploaded_at),
                           "waiting_for_confirmation": u.nonce is not None,
                           "report": u.report} for u in uploads],
        "entries": [{"source": e.source, "file": e.upload_id, "number": e.number,
                     "title": e.title, "arxiv_id": e.arxiv_id, "doi": e.doi,
                     "abstract": e.abstract, "state": e.state, "dropped": e.dropped,
                     "vector_model": e.vector_model,
                     "vector_base64": base64.b64encode(e.vector).decode("ascii")
                     if e.vector is not None else None} for e in entries],
    }


def export(session: Session, subscriber: Subscriber) -> dict[str, Any]:
    """Everything we hold about a reader, as JSON-ready data."""
    assert subscriber.id is not None
    profile = subs.profile(session, subscriber)
    prefs = subs.preferences_of(session, subscriber)
    profile["preferences"] |= {"description": prefs.description,
                               "liked_papers": list(prefs.liked_papers),
                               # False: the reader opted out of open and click tracking.
                               "tracking": prefs.tracking}
    return {
        **profile,
        "ratings": _ratings(session, subscriber.id),
        "reader_model": _reader_model(session, subscriber.id),
        "own_papers": _own_papers(session, subscriber.id),
        "deliveries": _deliveries(session, subscriber.id),
        "provider_events": _events(session, subscriber.email),
    }


def erase(session: Session, subscriber: Subscriber, limits: SignupLimits | None = None
          ) -> None:
    """Remove every row that names this reader; their links stop working at once.

    `limits`: the sign-up limits, whose counters for the reader's inbox go too (in Redis
    they would live up to a day). A reader's "Delete me" and the operator's erasure pass
    them; the expiry of week-old sign-ups need not, their counters ended days ago.
    """
    email = subscriber.email
    if limits is not None:
        limits.forget(email, session)
    session.exec(delete(Rating).where(Rating.subscriber_id == subscriber.id))  # type: ignore[call-overload, arg-type]
    session.exec(delete(ReaderModelRow).where(ReaderModelRow.subscriber_id == subscriber.id))  # type: ignore[call-overload, arg-type]
    session.exec(delete(LibraryEntry).where(LibraryEntry.subscriber_id == subscriber.id))  # type: ignore[call-overload, arg-type]
    session.exec(delete(LibraryUpload).where(LibraryUpload.subscriber_id == subscriber.id))  # type: ignore[call-overload, arg-type]
    session.exec(delete(SentPaper).where(SentPaper.subscriber_id == subscriber.id))  # type: ignore[call-overload, arg-type]
    session.exec(delete(Delivery).where(Delivery.subscriber_id == subscriber.id))  # type: ignore[call-overload, arg-type]
    assert subscriber.id is not None
    mail_queue.forget_reader(session, subscriber.id)
    # The event id stays, so a provider's retry of an old event is still seen as a repeat.
    session.exec(update(WebhookEvent).where(WebhookEvent.email == email)  # type: ignore[call-overload, arg-type]
                 .values(email=None))
    session.exec(update(Suppression).where(Suppression.email == email)  # type: ignore[call-overload, arg-type]
                 .values(email=subs.erased_form(email)))
    subs.delete(session, subscriber)


def expire_pending(session: Session, now: datetime | None = None,
                   lifetime: timedelta = PENDING_LIFETIME) -> int:
    """Forget sign-ups never confirmed within `lifetime`; returns how many."""
    now = now or datetime.now(UTC)
    stale = list(session.exec(select(Subscriber).where(
        Subscriber.status == "pending", Subscriber.created_at < now - lifetime,
        Subscriber.confirmed_at.is_(None))))  # type: ignore[union-attr]
    for subscriber in stale:
        erase(session, subscriber)
    # A library file sent with a sign-up of a known address that was never confirmed.
    library_store.discard_waiting(session, before=now - lifetime)
    return len(stale)


def expire_pending_configured() -> int:
    """The scheduled job: forget sign-ups nobody confirmed, and ended sign-up counters."""
    from newsletter.config import settings as current_settings
    from newsletter.db import engine_for, transaction

    with transaction(engine_for(current_settings().database_url)) as session:
        forget_ended_windows(session)  # sign-up counters, kept in the database without Redis
        return expire_pending(session)
