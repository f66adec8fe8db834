"""What the reader flows need from outside, built once per process, and the mail a reader
asked for (confirmation, welcome, already subscribed): made here, pure, from a reader's
row, and sent after the web request's answer, from the queue (`mail_queue`).

A sign-up decides in its transaction what it owes and queues one `MailJob`; `send_job`
renders and sends it then, so the answer takes the same time whatever the address.

Each mail speaks its reader's language (`i18n.speaks` of their card language; English when
it has no catalog), read when the mail is made, not when it was queued: a pending sign-up's
is in the choices awaiting confirmation, a confirmed reader's in their preferences. Jobs
queued before languages existed need nothing new.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine
from sqlmodel import Session

from newsletter import i18n
from newsletter.config import Settings
from newsletter.db import transaction
from newsletter.mail.message import frequency_word, list_headers
from newsletter.mail.registry import sender_for
from newsletter.mail.render import render_email
from newsletter.mail.senders import MailError, Message, Sender
from newsletter.pseudonyms import Pseudonyms
from newsletter.readers import subscriber as subs
from newsletter.readers.links import CONFIRM_MAX_AGE, LinkHolder, Links, signing_key
from newsletter.readers.reader_input import PreferenceValues
from newsletter.readers.tables import Preferences, Subscriber
from newsletter.subscriptions import mail_queue
from newsletter.subscriptions.mail_queue import MailJob, MailQueue
from newsletter.subscriptions.signup_limits import SignupLimits
from newsletter.topics.taxonomy import current, topic_name

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


class SendFailed(Exception):
    """The mail backend kept refusing a message; the reader may ask again at once."""


def topic_names(topics: Sequence[str]) -> list[str]:
    return [topic_name(s) for s in topics]


def link_holder(subscriber: Subscriber) -> LinkHolder:
    assert subscriber.id is not None
    return LinkHolder(subscriber.id, subscriber.link_key)


def managed(svc: Services, session: Session, token: str) -> Subscriber:
    """The reader a manage link names. Raises BadLink or LinkInvalid."""
    holder = svc.links.read_manage(token)
    return subs.holder(session, holder.subscriber_id, holder.link_key)


def confirmation_message(links: Links, subscriber: Subscriber, choices: PreferenceValues
                         ) -> Message:
    """In the language the sign-up chose (`choices.language`)."""
    assert subscriber.id is not None and subscriber.confirm_nonce
    with i18n.using(choices.language) as language:
        rendered = render_email("confirmation", {
            "preheader": i18n.gettext("Confirm your address to start your Paperwire digest."),
            "email": subscriber.email,
            "topics": topic_names(choices.topics),
            "field": current().shown_name,
            "frequency": frequency_word(choices.frequency),
            "confirm_url": links.confirm_url(subscriber.id, subscriber.confirm_nonce),
            "expires_days": CONFIRM_MAX_AGE.days,
            "site_url": links.base_url,
        }, language)
        subject = i18n.gettext("Confirm your Paperwire subscription")
    return Message(to=subscriber.email, subject=subject, html=rendered.html,
                   text=rendered.text, headers={"Content-Language": language})


def welcome_message(links: Links, subscriber: Subscriber, prefs: Preferences) -> Message:
    """In the reader's language (`prefs.language`)."""
    holder = link_holder(subscriber)
    unsubscribe_url = links.unsubscribe_url(holder)
    with i18n.using(prefs.language) as language:
        rendered = render_email("welcome", {
            "preheader": i18n.gettext(
                "You are in. Here is how to change your topics at any time."),
            "email": subscriber.email,
            "topics": topic_names(prefs.topics),
            "frequency": frequency_word(prefs.frequency),
            "manage_url": links.manage_url(holder),
            "unsubscribe_url": unsubscribe_url,
            "site_url": links.base_url,
        }, language)
        subject = i18n.gettext("Welcome to Paperwire")
    return Message(to=subscriber.email, subject=subject, html=rendered.html,
                   text=rendered.text, headers={**list_headers(unsubscribe_url, links.base_url),
                                                "Content-Language": language})


def already_subscribed_message(links: Links, subscriber: Subscriber,
                               language: str | None = None) -> Message:
    """In the reader's language (their preferences' `language`)."""
    holder = link_holder(subscriber)
    unsubscribe_url = links.unsubscribe_url(holder)
    with i18n.using(language) as spoken:
        rendered = render_email("already_subscribed", {
            "preheader": i18n.gettext(
                "Nothing changed: here is your link to manage your topics."),
            "email": subscriber.email,
            "manage_url": links.manage_url(holder),
            "unsubscribe_url": unsubscribe_url,
            "site_url": links.base_url,
        }, spoken)
        subject = i18n.gettext("You already subscribe to Paperwire")
    return Message(to=subscriber.email, subject=subject, html=rendered.html,
                   text=rendered.text, headers={**list_headers(unsubscribe_url, links.base_url),
                                                "Content-Language": spoken})


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
            # The job carries what the mail says; the language is the sign-up's, which
            # waits with the row until it is confirmed.
            wanted = subs.requested_choices(row)
            return confirmation_message(svc.links, row, PreferenceValues(
                topics=job.topics, frequency=job.frequency,
                language=wanted.language if wanted is not None else None))
        if job.kind == "already_subscribed":
            return already_subscribed_message(
                svc.links, row, subs.preferences_of(session, row).language)
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
