"""What happens to a reader's rows: subscribe, confirm, change, unsubscribe, suppress, delete.

Input is checked by the pure functions of newsletter/readers/reader_input.py before anything is
written, so a bad form never leaves half a subscriber behind. The functions that take
a Session change state; the caller owns the transaction (`db.transaction`).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete as sql_delete
from sqlalchemy import func, or_, update
from sqlmodel import Session, select

from newsletter.db import aware
from newsletter.readers.reader_input import (
    DEFAULT_MAX_PAPERS,
    Client,
    PreferenceValues,
    agreement,
)
from newsletter.readers.tables import (
    CONFIRMATION_INTERVAL,
    SUPPRESSING_EVENTS,
    Consent,
    Preferences,
    Subscriber,
    Suppression,
    _key,
    _utcnow,
)


@dataclass
class SignupDecision:
    """What a sign-up should mail, decided inside the transaction, sent after it."""

    subscriber: Subscriber
    # The choices the confirmation mail lists and its link would confirm.
    choices: PreferenceValues
    send: str | None = None  # "confirmation", "already_subscribed" or None
    reason: str = ""


def find_by_email(session: Session, email: str) -> Subscriber | None:
    return session.exec(select(Subscriber).where(Subscriber.email == email)).first()


def erased_form(email: str) -> str:
    """What a suppression keeps of an erased reader's address: enough to recognise the
    address when it is typed again, and nothing to read it back from."""
    return "sha256:" + hashlib.sha256(email.encode("utf-8")).hexdigest()


def is_suppressed(session: Session, email: str) -> bool:
    forms = [email, erased_form(email)]
    return session.exec(select(Suppression.id).where(
        Suppression.email.in_(forms))).first() is not None  # type: ignore[attr-defined]


def ensure(session: Session, email: str, now: datetime) -> Subscriber:
    """The subscriber row for an address, created pending (with empty preferences)."""
    subscriber = find_by_email(session, email)
    if subscriber is None:
        subscriber = Subscriber(email=email, created_at=now, updated_at=now)
        session.add(subscriber)
        session.flush()
        session.add(Preferences(subscriber_id=subscriber.id, topics=[], updated_at=now))
    return subscriber


def preferences_of(session: Session, subscriber: Subscriber) -> Preferences:
    found = session.get(Preferences, subscriber.id)
    if found is None:
        # Every path that creates a subscriber creates preferences; this is for a row
        # made by hand in SQL.
        found = Preferences(subscriber_id=subscriber.id, topics=[])
        session.add(found)
    return found


def _apply(prefs: Preferences, values: PreferenceValues, now: datetime) -> None:
    prefs.topics = list(values.topics)
    prefs.frequency = values.frequency
    prefs.include_keywords = list(values.include_keywords)
    prefs.exclude_keywords = list(values.exclude_keywords)
    prefs.authors = list(values.authors)
    prefs.max_papers = values.max_papers
    prefs.include_revised = values.include_revised
    prefs.time_zone = values.time_zone
    prefs.send_hour = values.send_hour
    prefs.send_weekday = values.send_weekday
    prefs.language = values.language
    prefs.updated_at = now


def _may_send_confirmation(subscriber: Subscriber, now: datetime) -> bool:
    last = subscriber.last_confirmation_sent_at
    return last is None or now - aware(last) >= CONFIRMATION_INTERVAL


def _as_json(values: PreferenceValues) -> dict[str, Any]:
    return {"topics": list(values.topics), "frequency": values.frequency,
            "include_keywords": list(values.include_keywords),
            "exclude_keywords": list(values.exclude_keywords), "authors": list(values.authors),
            "max_papers": values.max_papers, "include_revised": values.include_revised,
            "description": values.description, "liked_papers": list(values.liked_papers),
            "time_zone": values.time_zone, "send_hour": values.send_hour,
            "send_weekday": values.send_weekday, "language": values.language,
            "arxiv_author": values.arxiv_author}


def _from_json(data: dict[str, Any]) -> PreferenceValues:
    # A sign-up waiting since before interests (or send times) existed has none of them.
    return PreferenceValues(tuple(data["topics"]), data["frequency"],
                            tuple(data["include_keywords"]), tuple(data["exclude_keywords"]),
                            tuple(data["authors"]), data["max_papers"], data["include_revised"],
                            data.get("description"), tuple(data.get("liked_papers", ())),
                            data.get("time_zone"), data.get("send_hour"),
                            data.get("send_weekday"), data.get("language"),
                            data.get("arxiv_author"))


def requested_choices(subscriber: Subscriber) -> PreferenceValues | None:
    """The choices a pending confirmation would apply, if one is waiting."""
    return _from_json(subscriber.requested) if subscriber.requested else None


def subscribe(session: Session, email: str, values: PreferenceValues,
              now: datetime | None = None) -> SignupDecision:
    """Decide what an anonymous sign-up mails. Never reveals the address's state.

    Anyone can type any address, so a sign-up changes nothing about an existing person:
    a new, pending or unsubscribed address gets a confirmation mail listing these
    choices, and only the link in it (clicked from that mailbox) applies them. Each mail
    gets a fresh nonce, so a link confirms exactly what its mail listed; within ten
    minutes of the last mail nothing is sent and nothing is stored. Confirmed: the reader
    gets a reminder with their manage link, at the same pace. Suppressed: nothing at all.
    """
    now = now or _utcnow()
    subscriber = ensure(session, email, now)
    decision = SignupDecision(subscriber, values)

    if is_suppressed(session, email) or subscriber.status in ("bounced", "complained"):
        decision.reason = "suppressed"
        return decision
    if not _may_send_confirmation(subscriber, now):
        decision.reason = "a mail went to this address less than 10 minutes ago"
        return decision
    subscriber.last_confirmation_sent_at = now
    if subscriber.status == "confirmed":
        decision.reason = "already confirmed"
        decision.send = "already_subscribed"
        return decision
    subscriber.requested = _as_json(values)
    subscriber.confirm_nonce = _key()
    decision.send = "confirmation"
    return decision


class UnknownReader(LookupError):
    """No subscriber has this id (or address)."""


class LinkInvalid(Exception):
    """A link that names no current subscriber, or a confirmation already used."""


def confirm(session: Session, subscriber_id: int, nonce: str, client: Client,
            now: datetime | None = None) -> Subscriber:
    """Apply the choices a confirmation mail listed; the nonce is spent, so it works once."""
    subscriber = session.get(Subscriber, subscriber_id)
    if (subscriber is None or not subscriber.confirm_nonce
            or not secrets.compare_digest(subscriber.confirm_nonce, nonce)):
        raise LinkInvalid("this confirmation link was already used or is no longer valid")
    choices = requested_choices(subscriber)
    if choices is not None:
        update_preferences(session, subscriber, choices, now)
    return confirm_now(session, subscriber, "confirm", client, now)


def confirm_now(session: Session, subscriber: Subscriber, action: str, client: Client,
                now: datetime | None = None) -> Subscriber:
    """Make a subscriber confirmed; `action` says who vouched (a link click, an operator)."""
    now = now or _utcnow()
    if subscriber.status in ("bounced", "complained") or is_suppressed(session,
                                                                        subscriber.email):
        raise LinkInvalid("this address can no longer receive mail from us")
    subscriber.status = "confirmed"
    subscriber.confirm_nonce = None
    subscriber.requested = None
    subscriber.confirmed_at = now
    subscriber.unsubscribed_at = None
    subscriber.updated_at = now
    prefs = preferences_of(session, subscriber)
    c = client.trimmed()
    session.add(Consent(subscriber_id=subscriber.id, action=action, at=now, ip=c.ip,
                        user_agent=c.user_agent, agreed_to=agreement(values_of(prefs))))
    return subscriber


def values_of(prefs: Preferences) -> PreferenceValues:
    return PreferenceValues(tuple(prefs.topics), prefs.frequency, tuple(prefs.include_keywords),
                            tuple(prefs.exclude_keywords), tuple(prefs.authors),
                            prefs.max_papers, prefs.include_revised,
                            time_zone=prefs.time_zone, send_hour=prefs.send_hour,
                            send_weekday=prefs.send_weekday, language=prefs.language,
                            arxiv_author=prefs.arxiv_author)


def holder(session: Session, subscriber_id: int, link_key: str) -> Subscriber:
    """The subscriber a manage or unsubscribe link names, if it still exists."""
    subscriber = session.get(Subscriber, subscriber_id)
    if subscriber is None or not secrets.compare_digest(subscriber.link_key, link_key):
        raise LinkInvalid("this link is no longer valid")
    return subscriber


def update_preferences(session: Session, subscriber: Subscriber, values: PreferenceValues,
                       now: datetime | None = None) -> Preferences:
    now = now or _utcnow()
    prefs = preferences_of(session, subscriber)
    _apply(prefs, values, now)
    subscriber.updated_at = now
    return prefs


WITHDRAWAL = "Withdrew consent: no more Paperwire digests."


def unsubscribe(session: Session, subscriber: Subscriber, client: Client | None = None,
                now: datetime | None = None) -> Subscriber:
    """Stop all mail to this subscriber. Idempotent; a suppressed status is kept.

    A confirmed reader's withdrawal is recorded beside their consents.
    """
    now = now or _utcnow()
    if subscriber.status in ("pending", "confirmed"):
        if subscriber.status == "confirmed":
            c = (client or Client()).trimmed()
            session.add(Consent(subscriber_id=subscriber.id, action="unsubscribe", at=now,
                                ip=c.ip, user_agent=c.user_agent, agreed_to=WITHDRAWAL))
        subscriber.status = "unsubscribed"
        subscriber.unsubscribed_at = now
        subscriber.confirm_nonce = None
        subscriber.requested = None
        subscriber.updated_at = now
    return subscriber


def resubscribe(session: Session, subscriber: Subscriber, client: Client,
                now: datetime | None = None) -> Subscriber:
    """Undo an unsubscribe from the manage page; the link proves the address is theirs."""
    now = now or _utcnow()
    if subscriber.status != "unsubscribed" or is_suppressed(session, subscriber.email):
        return subscriber
    subscriber.status = "confirmed"
    subscriber.confirmed_at = now
    subscriber.unsubscribed_at = None
    subscriber.updated_at = now
    prefs = preferences_of(session, subscriber)
    c = client.trimmed()
    session.add(Consent(subscriber_id=subscriber.id, action="resubscribe", at=now, ip=c.ip,
                        user_agent=c.user_agent, agreed_to=agreement(values_of(prefs))))
    return subscriber


def iso(value: datetime | None) -> str | None:
    return aware(value).isoformat() if value else None


def profile(session: Session, subscriber: Subscriber) -> dict[str, Any]:
    """The subscriber's own rows, as JSON-ready data (privacy.export adds the rest)."""
    prefs = preferences_of(session, subscriber)
    consents = session.exec(select(Consent).where(Consent.subscriber_id == subscriber.id)
                            .order_by(Consent.at, Consent.id))  # type: ignore[arg-type]
    return {
        "email": subscriber.email,
        "status": subscriber.status,
        "created_at": iso(subscriber.created_at),
        "confirmed_at": iso(subscriber.confirmed_at),
        "unsubscribed_at": iso(subscriber.unsubscribed_at),
        "last_confirmation_sent_at": iso(subscriber.last_confirmation_sent_at),
        "last_active_at": iso(subscriber.last_active_at),
        "preferences": {
            "topics": list(prefs.topics),
            "include_keywords": list(prefs.include_keywords),
            "exclude_keywords": list(prefs.exclude_keywords),
            "authors": list(prefs.authors),
            "frequency": prefs.frequency,
            "max_papers": prefs.max_papers,
            "include_revised": prefs.include_revised,
            "time_zone": prefs.time_zone,
            "send_hour": prefs.send_hour,
            "send_weekday": prefs.send_weekday,
            "language": prefs.language or "en",
        },
        "consents": [
            {"action": c.action, "at": iso(c.at), "ip": c.ip, "user_agent": c.user_agent,
             "agreed_to": c.agreed_to}
            for c in consents
        ],
        "awaiting_confirmation": subscriber.requested,
        "suppressed": is_suppressed(session, subscriber.email),
    }


def delete(session: Session, subscriber: Subscriber) -> None:
    """Delete the subscriber row, preferences and consents: this module's part of
    `privacy.erase`, which is what erases a person."""
    session.exec(sql_delete(Consent).where(Consent.subscriber_id == subscriber.id))  # type: ignore[call-overload]
    session.exec(sql_delete(Preferences).where(Preferences.subscriber_id == subscriber.id))  # type: ignore[call-overload]
    session.delete(subscriber)


def suppress(session: Session, email: str, reason: str, now: datetime | None = None) -> bool:
    """Never mail this address again; its subscriber (if any) leaves the mailing list.

    True when the address was not suppressed before.
    """
    now = now or _utcnow()
    new = not is_suppressed(session, email)
    if new:
        session.add(Suppression(email=email, reason=reason[:64], at=now))
    subscriber = find_by_email(session, email)
    if subscriber is not None:
        status = SUPPRESSING_EVENTS.get(reason, "bounced")
        if subscriber.status != status:
            subscriber.status = status
            subscriber.confirm_nonce = None
            subscriber.updated_at = now
            if status == "unsubscribed":
                subscriber.unsubscribed_at = now
    return new


def listing(session: Session) -> list[dict[str, Any]]:
    """One JSON-ready object per subscriber, by address (`newsletter subscribers --json`)."""
    rows = session.exec(select(Subscriber, Preferences)
                        .join(Preferences, Preferences.subscriber_id == Subscriber.id,  # type: ignore[arg-type]
                              isouter=True)
                        .order_by(Subscriber.email))
    return [_listed(s, p) for s, p in rows]


def _listed(subscriber: Subscriber, prefs: Preferences | None) -> dict[str, Any]:
    # A pending reader has no preferences yet: show what they asked for.
    wanted = (requested_choices(subscriber) if subscriber.status == "pending" else None) \
        or (values_of(prefs) if prefs else None)
    return {"email": subscriber.email, "status": subscriber.status,
            "topics": list(wanted.topics) if wanted else [],
            "frequency": wanted.frequency if wanted else "daily",
            "max_papers": wanted.max_papers if wanted else DEFAULT_MAX_PAPERS,
            # None: the operator's default, which the caller knows (signup.listing).
            "time_zone": wanted.time_zone if wanted else None,
            "hour": wanted.send_hour if wanted else None,
            "weekday": wanted.send_weekday if wanted else None,
            "language": wanted.language if wanted else None,
            "created_at": iso(subscriber.created_at),
            "confirmed_at": iso(subscriber.confirmed_at)}


def languages_in_use(session: Session, offered: tuple[str, ...]) -> list[str]:
    """The languages other than English that some confirmed reader reads, among those the
    operator offers: what cards are translated into (cards/translate.py). A language
    nobody reads costs nothing; one the operator withdrew is not translated any more."""
    rows = session.exec(select(Preferences.language).distinct()
                        .join(Subscriber, Subscriber.id == Preferences.subscriber_id)  # type: ignore[arg-type]
                        .where(Subscriber.status == "confirmed",
                               Preferences.language.is_not(None)))  # type: ignore[union-attr]
    used = {language for language in rows if language}
    return [language for language in offered if language in used and language != "en"]


def counts(session: Session) -> dict[str, int]:
    rows = session.exec(select(Subscriber.status, func.count()).group_by(Subscriber.status))
    return {status: n for status, n in rows}


def touch(session: Session, subscriber_id: int, at: datetime) -> None:
    """A reader was active at `at` (an open, a click, a rating): keep the latest time."""
    subscribers = Subscriber.__table__  # type: ignore[attr-defined]
    session.execute(update(subscribers)
                    .where(subscribers.c.id == subscriber_id,
                           or_(subscribers.c.last_active_at.is_(None),
                               subscribers.c.last_active_at < at))
                    .values(last_active_at=at))
