"""The subscription flows, end to end: sign up, confirm, the operator's additions, webhook
(a reader's manage and unsubscribe pages are in newsletter/subscriptions/reader_account.py).

Each function is one thing a reader (or the operator, or SendGrid) does. It checks the
input, changes the database in one transaction, and only then sends mail, so a failed
commit never mails a link to a row that does not exist. Flask views and CLI commands
call exactly one of these.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import io
import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, text
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from newsletter.config import Settings
from newsletter.db import transaction
from newsletter.engagement import webhook
from newsletter.mail.message import list_headers
from newsletter.mail.registry import sender_for
from newsletter.mail.render import render_email
from newsletter.mail.senders import MailError, Message, Sender
from newsletter.pseudonyms import Pseudonyms
from newsletter.readers import reader_input
from newsletter.readers import subscriber as subs
from newsletter.readers.links import CONFIRM_MAX_AGE, BadLink, LinkHolder, Links, signing_key
from newsletter.readers.reader_input import Client, InvalidInput, PreferenceValues
from newsletter.readers.subscriber import LinkInvalid
from newsletter.readers.tables import Preferences, Subscriber
from newsletter.relevance import learn
from newsletter.subscriptions import mail_queue
from newsletter.subscriptions.mail_queue import MailJob, MailQueue
from newsletter.subscriptions.signup_limits import MailLimitHit, SignupLimits
from newsletter.taxonomy import topic_name

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Services:
    """What the flows need from the outside world, built once per process."""

    settings: Settings
    engine: Engine
    sender: Sender
    links: Links
    limits: SignupLimits
    # Where requests put the mail they owe: sent after the answer (subscriptions/mail_queue.py).
    mail: MailQueue
    # Keyed hashes for what is counted or logged but must not be kept (an address, an IP).
    pseudonyms: Pseudonyms

    @classmethod
    def build(cls, settings: Settings, engine: Engine, sender: Sender | None = None,
              key: str | None = None) -> Services:
        """`key`: the signing key, when the caller has read it already (the site, for its
        cookies too); else read here."""
        def handle(job: MailJob) -> None:
            with contextlib.suppress(SendFailed):  # logged; nobody is waiting for it
                send_job(svc, job)

        key = key or signing_key(settings, engine)
        pseudonyms = Pseudonyms(key)
        svc = cls(settings, engine, sender or sender_for(settings),
                  Links(key, settings.base_url),
                  SignupLimits.from_settings(settings, engine, pseudonyms),
                  mail_queue.for_broker(settings.redis_url, handle, engine), pseudonyms)
        return svc


def utcnow() -> datetime:
    return datetime.now(UTC)


# ---------------------------------------------------------------- messages (pure)


def _topic_names(topics: Sequence[str]) -> list[str]:
    return [topic_name(s) for s in topics]


def link_holder(subscriber: Subscriber) -> LinkHolder:
    assert subscriber.id is not None
    return LinkHolder(subscriber.id, subscriber.link_key)


def confirmation_message(links: Links, subscriber: Subscriber, choices: PreferenceValues
                         ) -> Message:
    assert subscriber.id is not None and subscriber.confirm_nonce
    rendered = render_email("confirmation", {
        "preheader": "Confirm your address to start your Paperwire digest.",
        "email": subscriber.email,
        "topics": _topic_names(choices.topics),
        "frequency": choices.frequency,
        "confirm_url": links.confirm_url(subscriber.id, subscriber.confirm_nonce),
        "expires_days": CONFIRM_MAX_AGE.days,
        "site_url": links.base_url,
    })
    return Message(to=subscriber.email, subject="Confirm your Paperwire subscription",
                   html=rendered.html, text=rendered.text)


def welcome_message(links: Links, subscriber: Subscriber, prefs: Preferences) -> Message:
    holder = link_holder(subscriber)
    unsubscribe_url = links.unsubscribe_url(holder)
    rendered = render_email("welcome", {
        "preheader": "You are in. Here is how to change your topics at any time.",
        "email": subscriber.email,
        "topics": _topic_names(prefs.topics),
        "frequency": prefs.frequency,
        "manage_url": links.manage_url(holder),
        "unsubscribe_url": unsubscribe_url,
        "site_url": links.base_url,
    })
    return Message(to=subscriber.email, subject="Welcome to Paperwire",
                   html=rendered.html, text=rendered.text,
                   headers=list_headers(unsubscribe_url, links.base_url))


def already_subscribed_message(links: Links, subscriber: Subscriber) -> Message:
    holder = link_holder(subscriber)
    unsubscribe_url = links.unsubscribe_url(holder)
    rendered = render_email("already_subscribed", {
        "preheader": "Nothing changed: here is your link to manage your topics.",
        "email": subscriber.email,
        "manage_url": links.manage_url(holder),
        "unsubscribe_url": unsubscribe_url,
        "site_url": links.base_url,
    })
    return Message(to=subscriber.email, subject="You already subscribe to Paperwire",
                   html=rendered.html, text=rendered.text,
                   headers=list_headers(unsubscribe_url, links.base_url))


# ---------------------------------------------------------------- sign-up and confirmation


class SendFailed(Exception):
    """The mail backend kept refusing a message; the reader may ask again at once."""


class TooManySignups(Exception):
    """This client has posted the sign-up form more often than SIGNUP_RATE_LIMIT allows."""


def _parse_signup(email: str, topics: Sequence[str], frequency: str | None,
                  description: str | None = None, liked_papers: str = ""
                  ) -> tuple[str, PreferenceValues]:
    errors: dict[str, str] = {}
    address = values = None
    try:
        address = reader_input.parse_email(email)
    except InvalidInput as exc:
        errors.update(exc.errors)
    try:
        values = reader_input.parse_preferences(topics, frequency, description=description,
                                        liked_papers=liked_papers)
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
                   *, limited: bool) -> MailJob:
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


# A provider error is often over in seconds; after these the reader may simply ask again.
SEND_ATTEMPTS = (0.0, 1.0, 4.0)


def _job_message(svc: Services, job: MailJob) -> Message | None:
    with Session(svc.engine) as session:
        row = session.get(Subscriber, job.subscriber_id)
        if row is None:
            return None  # deleted since the request
        if job.kind == "confirmation":
            if row.confirm_nonce != job.nonce:
                return None  # a later sign-up's mail supersedes this one
            return confirmation_message(svc.links, row, PreferenceValues(
                topics=job.topics, frequency=job.frequency))
        if job.kind == "already_subscribed":
            return already_subscribed_message(svc.links, row)
        if job.kind == "welcome":
            return welcome_message(svc.links, row, subs.preferences_of(session, row))
    raise ValueError(f"unknown mail job kind {job.kind!r}")


def send_job(svc: Services, job: MailJob, sleep: Callable[[float], None] = time.sleep
             ) -> Message | None:
    """Render and send what a request queued; the message sent, or None when there was
    nothing to send (every request queues a job, so some say "nothing"), the reader is
    gone, or a later sign-up superseded it.

    Raises SendFailed when the provider refused every attempt; a confirmation then frees
    the 10-minute wait, so the reader can ask again at once.
    """
    if job.kind is None:
        return None
    message = _job_message(svc, job)
    if message is None:
        return None
    for pause in SEND_ATTEMPTS:
        sleep(pause)
        try:
            svc.sender.send(message)
            return message
        except MailError as exc:
            error = exc
    log.error("could not send %s to subscriber %s: %s", job.kind, job.subscriber_id, error)
    if job.kind != "welcome":
        with transaction(svc.engine) as session:
            row = session.get(Subscriber, job.subscriber_id)
            if row is not None:
                row.last_confirmation_sent_at = None
    raise SendFailed(str(error))


@functools.cache
def _configured_services() -> Services:
    from newsletter.config import settings as current_settings
    from newsletter.db import engine_for

    config = current_settings()
    return Services.build(config, engine_for(config.database_url))


def _send_quietly(svc: Services, job: MailJob) -> Message | None:
    """`send_job` for a worker: a provider that keeps refusing is logged, and the reader
    may ask again; it is not retried for hours."""
    try:
        return send_job(svc, job)
    except SendFailed:
        return None


def send_queued(data: dict[str, Any], waiting_id: int | None = None) -> str | None:
    """A mail worker's side of the queue (task paperwire.send_mail): the subject sent.
    Nothing is sent when another worker has the waiting job or had it."""
    svc = _configured_services()
    send = functools.partial(_send_quietly, svc)
    if waiting_id is None:  # put on the broker before jobs waited in the database
        message = send(MailJob.from_json(data))
    else:
        message = mail_queue.send_waiting(svc.engine, waiting_id, send)
    return message.subject if message else None


def send_waiting_configured() -> int:
    """Beat's sweep (task paperwire.send_waiting_mail): the mail no worker was handed,
    because the broker was down when it was queued; how many were sent."""
    svc = _configured_services()
    return mail_queue.sweep_waiting(svc.engine, functools.partial(_send_quietly, svc))


def sign_up(svc: Services, email: str, topics: Sequence[str], frequency: str | None,
            honeypot: str, client: Client, description: str | None = None,
            liked_papers: str = "") -> None:
    """A sign-up from the site. Same outcome, and the same path, for new, pending,
    confirmed and suppressed addresses: the mail goes out after the answer.

    The optional description and liked papers wait with the other choices until the
    mailed link is clicked (`confirm`); nothing is fetched or learned before.

    Raises TooManySignups or InvalidInput (nothing stored).
    """
    if svc.limits.client_refused(client.ip):
        log.info("sign-up refused: client %s is over the rate limit", client.ip)
        raise TooManySignups()
    if honeypot.strip():
        # A bot filled the field people cannot see: tell it all went well, do nothing.
        log.info("sign-up with the honeypot filled in ignored (ip %s)", client.ip)
        return
    address, values = _parse_signup(email, topics, frequency, description, liked_papers)
    svc.mail.put(_record_signup(svc, address, values, utcnow(), limited=True))


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
        return PendingConfirmation(row.email, tuple(_topic_names(choices.topics)),
                                   choices.frequency)


@dataclass(frozen=True)
class Confirmed:
    email: str
    manage_token: str


def confirm(svc: Services, token: str, client: Client) -> Confirmed:
    """Confirm, then send the welcome mail. Raises BadLink, ExpiredLink or LinkInvalid.

    A description or liked papers given at sign-up become the reader's interests now
    (liked papers we lack are fetched from arXiv), so they shape the first digest. A
    sign-up that gave neither keeps whatever interests the reader had.
    """
    claim = svc.links.read_confirm(token)
    with transaction(svc.engine) as session:
        pending = session.get(Subscriber, claim.subscriber_id)
        asked = subs.requested_choices(pending) if pending is not None else None
        row = subs.confirm(session, claim.subscriber_id, claim.nonce, client, utcnow())
        assert row.id is not None
        if asked is not None and (asked.description or asked.liked_papers):
            learn.set_interests(session, row.id, asked.description, asked.liked_papers,
                                settings=svc.settings)
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
        confirmed: bool = False, action: str = "admin") -> Added:
    """An operator adds a reader. Confirmed: no mail (they opted in elsewhere); otherwise
    the reader gets the usual confirmation mail. Raises InvalidInput or SendFailed."""
    address, values = _parse_signup(email, topics, frequency)
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
    with Session(svc.engine) as session:
        return subs.listing(session)


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
