"""The subscription flows, end to end: sign up, confirm, the operator's additions, webhook
(a reader's manage and unsubscribe pages are in newsletter/subscriptions/reader_account.py).

Each function is one thing a reader (or the operator, or SendGrid) does. It checks the
input, changes the database in one transaction, and only then sends mail, so a failed
commit never mails a link to a row that does not exist (the mail itself is queued and
sent by `services`). Flask views and CLI commands
call exactly one of these.
"""

from __future__ import annotations

import csv
import io
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from newsletter.db import transaction
from newsletter.engagement import webhook
from newsletter.readers import reader_input
from newsletter.readers import subscriber as subs
from newsletter.readers.links import BadLink
from newsletter.readers.reader_input import (
    WEEKDAYS,
    Client,
    InvalidInput,
    PreferenceValues,
    SendTime,
)
from newsletter.readers.subscriber import LinkInvalid
from newsletter.readers.tables import Subscriber
from newsletter.relevance import learn
from newsletter.relevance.library import store as library_store
from newsletter.relevance.library.files import ParsedLibrary
from newsletter.relevance.train import retrain
from newsletter.subscriptions.mail_queue import MailJob
from newsletter.subscriptions.own_papers import LibraryFile, read_library
from newsletter.subscriptions.services import (
    SendFailed,
    Services,
    link_holder,
    send_job,
    topic_names,
    utcnow,
)
from newsletter.subscriptions.signup_limits import MailLimitHit

log = logging.getLogger(__name__)


# ---------------------------------------------------------------- sign-up and confirmation


class TooManySignups(Exception):
    """This client has posted the sign-up form more often than SIGNUP_RATE_LIMIT allows."""


def _parse_signup(email: str, topics: Sequence[str], frequency: str | None,
                  description: str | None = None, liked_papers: str = "",
                  send_time: SendTime | None = None, language: str | None = None,
                  languages: Sequence[str] = ("en",), arxiv_author: str | None = None
                  ) -> tuple[str, PreferenceValues]:
    errors: dict[str, str] = {}
    address = values = None
    try:
        address = reader_input.parse_email(email)
    except InvalidInput as exc:
        errors.update(exc.errors)
    try:
        values = reader_input.parse_preferences(topics, frequency, description=description,
                                                liked_papers=liked_papers,
                                                send_time=send_time or SendTime(),
                                                language=language, languages=languages,
                                                arxiv_author=arxiv_author)
    except InvalidInput as exc:
        errors.update(exc.errors)
    if errors or address is None or values is None:
        raise InvalidInput(errors)
    return address, values


class _LimitReached(Exception):
    def __init__(self, limit: str) -> None:
        super().__init__(limit)
        self.limit = limit


def _record_signup(svc: Services, address: str, values: PreferenceValues, now: datetime,
                   *, limited: bool, library: Library | None = None) -> MailJob:
    """Decide and store a sign-up; the mail it owes, if any, as a job. `limited`: the mail
    limits apply (the site's anonymous sign-ups; not an operator's)."""
    # Two sign-ups for one new address can race to insert it; the loser retries and then
    # finds the row, so both readers get the same answer.
    for attempt in (1, 2):
        try:
            with transaction(svc.engine) as session:
                decision = subs.subscribe(session, address, values, now)
                if decision.send and limited:
                    refused = svc.limits.mail_refused(address, session)
                    if refused:
                        raise _LimitReached(refused)  # and nothing of this attempt stays
                row = decision.subscriber
                if library is not None and decision.send == "confirmation":
                    # It waits with the choices the mail lists, for the link to apply.
                    assert row.id is not None and row.confirm_nonce is not None
                    library_store.import_file(session, row.id, library.parsed,
                                              library.filename, nonce=row.confirm_nonce, now=now)
                return MailJob(kind=decision.send, subscriber_id=row.id, limited=limited,
                               nonce=row.confirm_nonce, topics=decision.choices.topics,
                               frequency=decision.choices.frequency)
        except IntegrityError:
            if attempt == 2:
                raise
        except _LimitReached as reached:
            log.warning("sign-up mail not sent: the %s limit is reached", reached.limit)
            with transaction(svc.engine) as session:
                session.add(MailLimitHit(limit=reached.limit, at=now))
            return MailJob(kind=None)
    raise AssertionError("unreachable")


def sign_up(svc: Services, email: str, topics: Sequence[str], frequency: str | None,
            honeypot: str, client: Client, description: str | None = None,
            liked_papers: str = "", send_time: SendTime | None = None,
            language: str | None = None, arxiv_author: str | None = None,
            library: LibraryFile | None = None) -> None:
    """A sign-up from the site. Same outcome, and the same path, for new, pending,
    confirmed and suppressed addresses: the mail goes out after the answer.

    The optional description, liked papers, author identifier and library file wait with
    the other choices until the mailed link is clicked (`confirm`); nothing is fetched or
    learned before.

    Raises TooManySignups or InvalidInput (nothing stored).
    """
    if svc.limits.client_refused(client.ip):
        log.info("sign-up refused: client %s is over the rate limit", client.ip)
        raise TooManySignups()
    if honeypot.strip():
        # A bot filled the field people cannot see: tell it all went well, do nothing.
        log.info("sign-up with the honeypot filled in ignored (ip %s)", client.ip)
        return
    errors: dict[str, str] = {}
    parsed = None
    if library is not None:
        try:
            parsed = read_library(library)
        except InvalidInput as exc:
            errors.update(exc.errors)
    try:
        address, values = _parse_signup(email, topics, frequency, description, liked_papers,
                                        send_time, language, svc.settings.card_languages,
                                        arxiv_author)
    except InvalidInput as exc:
        raise InvalidInput({**exc.errors, **errors}) from None
    if errors:
        raise InvalidInput(errors)
    held = Library(library.filename, parsed) if library is not None and parsed else None
    svc.mail.put(_record_signup(svc, address, values, utcnow(), limited=True, library=held))


@dataclass(frozen=True)
class Library:
    """A parsed library file and the name it came with."""

    filename: str | None
    parsed: ParsedLibrary


@dataclass(frozen=True)
class PendingConfirmation:
    email: str
    topics: tuple[str, ...]
    frequency: str


def _claimed(svc: Services, session: Session, token: str) -> Subscriber:
    claim = svc.links.read_confirm(token)
    row = session.get(Subscriber, claim.subscriber_id)
    if row is None or row.confirm_nonce != claim.nonce:
        raise LinkInvalid("this confirmation link was already used or is no longer valid")
    return row


def confirmation_page(svc: Services, token: str) -> PendingConfirmation:
    """What a confirmation link would confirm; changes nothing (mail scanners open links).

    Raises BadLink, ExpiredLink or LinkInvalid.
    """
    with Session(svc.engine) as session:
        row = _claimed(svc, session, token)
        choices = subs.requested_choices(row) or subs.values_of(subs.preferences_of(session, row))
        return PendingConfirmation(row.email, tuple(topic_names(choices.topics)),
                                   choices.frequency)


@dataclass(frozen=True)
class Confirmed:
    email: str
    manage_token: str


def confirm(svc: Services, token: str, client: Client) -> Confirmed:
    """Confirm, then send the welcome mail. Raises BadLink, ExpiredLink or LinkInvalid.

    A description, liked papers, author identifier or library file given at sign-up
    become the reader's now (what arXiv must give is fetched by the next sweep), so they
    shape the first digest. A sign-up that gave none keeps whatever the reader had.
    """
    claim = svc.links.read_confirm(token)
    with transaction(svc.engine) as session:
        pending = session.get(Subscriber, claim.subscriber_id)
        asked = subs.requested_choices(pending) if pending is not None else None
        row = subs.confirm(session, claim.subscriber_id, claim.nonce, client, utcnow())
        assert row.id is not None
        adopted = library_store.adopt(session, row.id, claim.nonce)
        interests = asked is not None and bool(asked.description or asked.liked_papers)
        if asked is not None and asked.arxiv_author:
            learn.set_author(session, row.id, asked.arxiv_author, settings=svc.settings,
                             retraining=not interests and not adopted)
        if asked is not None and interests:
            learn.set_interests(session, row.id, asked.description, asked.liked_papers,
                                settings=svc.settings)
        elif adopted:
            session.flush()
            retrain(session, row.id, settings=svc.settings)
        result = Confirmed(row.email, svc.links.manage_token(link_holder(row)))
    # The subscription stands whatever happens to the welcome mail, a courtesy.
    svc.mail.put(MailJob(kind="welcome", subscriber_id=claim.subscriber_id))
    return result


# ---------------------------------------------------------------- operator


@dataclass(frozen=True)
class Added:
    email: str
    status: str
    mailed: str | None


def add(svc: Services, email: str, topics: Sequence[str], frequency: str | None = None,
        confirmed: bool = False, action: str = "admin", send_time: SendTime | None = None,
        language: str | None = None) -> Added:
    """An operator adds a reader. Confirmed: no mail (they opted in elsewhere); otherwise
    the reader gets the usual confirmation mail. Raises InvalidInput or SendFailed."""
    address, values = _parse_signup(email, topics, frequency, send_time=send_time,
                                    language=language, languages=svc.settings.card_languages)
    client = Client(user_agent=f"newsletter CLI ({action})")
    with Session(svc.engine) as session:
        existing = subs.find_by_email(session, address)
        if existing is not None and existing.status == "confirmed" and not confirmed:
            # Already a reader: an operator's list must not mail them "someone signed you up".
            return Added(address, existing.status, None)
    if not confirmed:
        # The operator waits for the mail at the terminal, and hears if it failed.
        message = send_job(svc, _record_signup(svc, address, values, utcnow(), limited=False))
        with Session(svc.engine) as session:
            row = subs.find_by_email(session, address)
            status = row.status if row else "pending"
        return Added(address, status, message.subject if message else None)
    now = utcnow()
    with transaction(svc.engine) as session:
        row = subs.ensure(session, address, now)
        subs.update_preferences(session, row, values, now)
        if row.status != "confirmed":
            subs.confirm_now(session, row, action, client, now)
        return Added(address, row.status, None)


@dataclass(frozen=True)
class ImportRow:
    line: int
    email: str
    topics: tuple[str, ...]
    frequency: str | None


def split_topics(value: str) -> tuple[str, ...]:
    """`llm, nlp` or `llm;nlp` or `llm nlp`."""
    return tuple(t for t in re.split(r"[\s,;|]+", value.strip().lower()) if t)


def read_csv(text: str) -> list[ImportRow]:
    """Rows of a CSV with a header naming `email`, `topics` and optionally `frequency`.

    Raises InvalidInput naming every bad line (by its line number), so an import either
    takes the whole file or nothing.
    """
    reader = csv.DictReader(io.StringIO(text))
    columns = {(c or "").strip().lower(): c for c in reader.fieldnames or []}
    if "email" not in columns or "topics" not in columns:
        raise InvalidInput({"header": "the first line must name the columns email and "
                                      "topics (and optionally frequency)"})
    rows: list[ImportRow] = []
    problems: dict[str, str] = {}
    for record in reader:
        line = reader.line_num
        email = (record.get(columns["email"]) or "").strip()
        topics = split_topics(record.get(columns["topics"]) or "")
        frequency = None
        if "frequency" in columns:
            frequency = (record.get(columns["frequency"]) or "").strip() or None
        if not email and not topics:
            continue
        try:
            _parse_signup(email, topics, frequency)
        except InvalidInput as exc:
            problems[f"line {line}"] = "; ".join(exc.errors.values())
            continue
        rows.append(ImportRow(line, email, topics, frequency))
    if problems:
        raise InvalidInput(problems)
    return rows


def listing(svc: Services) -> list[dict[str, Any]]:
    """Every reader, with the hour their digest comes: theirs, or the operator's default."""
    settings = svc.settings
    with Session(svc.engine) as session:
        rows = subs.listing(session)
    for row in rows:
        row["language"] = row["language"] or "en"
        row["time_zone"] = row["time_zone"] or settings.default_time_zone
        row["hour"] = settings.default_send_hour if row["hour"] is None else row["hour"]
        weekday = row["weekday"]
        row["weekday"] = None if row["frequency"] != "weekly" else (
            settings.default_weekday if weekday is None else WEEKDAYS[weekday])
    return rows


# ---------------------------------------------------------------- SendGrid


class WebhookRejected(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


def receive_events(svc: Services, signature: str | None, timestamp: str | None,
                   body: bytes) -> webhook.EventReport:
    """Verify and apply a batch of SendGrid events. Raises WebhookRejected."""
    if not svc.settings.sendgrid_webhook_public_key:
        raise WebhookRejected(503, "SENDGRID_WEBHOOK_PUBLIC_KEY is not set")
    try:
        key = webhook.load_public_key(svc.settings.sendgrid_webhook_public_key)
    except webhook.WebhookError as exc:
        log.error("%s", exc)
        raise WebhookRejected(503, "webhook key misconfigured") from None
    if not webhook.signature_valid(key, signature, timestamp, body):
        raise WebhookRejected(403, "bad signature")
    if not webhook.timestamp_fresh(timestamp, utcnow()):
        raise WebhookRejected(
            403, f"timestamp is not within {webhook.MAX_SKEW} of now: a replayed request?")
    try:
        events = webhook.parse_events(body)
    except webhook.WebhookError as exc:
        raise WebhookRejected(400, str(exc)) from None
    try:
        with transaction(svc.engine) as session:
            return webhook.apply_events(session, events, utcnow(), svc.settings.base_url)
    except IntegrityError:
        # A retry of the same batch raced us and committed first: this pass sees its rows.
        with transaction(svc.engine) as session:
            return webhook.apply_events(session, events, utcnow(), svc.settings.base_url)


def database_ok(svc: Services) -> bool:
    try:
        with svc.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:
        log.error("health check: database unreachable: %s", exc)
        return False
    return True


__all__ = ["BadLink", "InvalidInput", "LinkInvalid", "SendFailed", "Services"]
