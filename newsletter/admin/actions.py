"""What an operator can do from the admin pages: each one a function over a session that
says what it changed. The views call one of these, record it with `act`, and commit.

Work that takes longer than a page should wait for (sending digests, writing cards) starts
after the commit, the way the rest of Paperwire runs it: on the Celery queues when a
broker is configured (tasks sent by name, as the site's mail queue does, so the web
process imports no worker code). Without one, cards are written in this process, as
`newsletter summarize --paper` does on one machine; digests are never sent from a web
process (`send_retry`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime

from sqlalchemy import Engine, delete, select, update
from sqlmodel import Session

from newsletter import broker
from newsletter.cards.card import Card
from newsletter.config import Settings
from newsletter.delivery import DigestEdition
from newsletter.delivery.ledger import deliveries
from newsletter.readers import subscriber as subs
from newsletter.readers.tables import Subscriber, Suppression
from newsletter.subscriptions import privacy
from newsletter.subscriptions.mail_queue import MailJob
from newsletter.subscriptions.signup_limits import SignupLimits

log = logging.getLogger(__name__)

# The reason an operator's suppression is recorded with.
OPERATOR = "operator"


class Refused(ValueError):
    """The action does not apply to this row as it is now; the message says why."""


def _utcnow() -> datetime:
    return datetime.now(UTC)


def subscriber(session: Session, subscriber_id: int) -> Subscriber:
    found = session.get(Subscriber, subscriber_id)
    if found is None:
        raise LookupError(f"no subscriber {subscriber_id}")
    return found


# ------------------------------------------------------------------ readers


def suppress(session: Session, subscriber_id: int, now: datetime | None = None) -> bool:
    """Never mail this reader again (until unsuppressed); False if they already were."""
    row = subscriber(session, subscriber_id)
    return subs.suppress(session, row.email, OPERATOR, now or _utcnow())


def status_after_unsuppress(row: Subscriber) -> str:
    """What a reader is once their suppression is lifted: what their consent still allows.

    A bounce (or an operator's suppression) withdrew nothing, so a reader who confirmed and
    never left gets digests again. A complaint or an unsubscribe did withdraw consent: that
    reader stays unsubscribed until they sign up again themselves. Someone who never
    confirmed is pending again, and forgotten with the other unconfirmed sign-ups.
    """
    if row.status == "complained" or row.unsubscribed_at is not None:
        return "unsubscribed"
    if row.status == "bounced":
        return "confirmed" if row.confirmed_at is not None else "pending"
    return row.status


def unsuppress(session: Session, subscriber_id: int, now: datetime | None = None) -> str:
    """Lift the reader's suppression (the address's, in either stored form); their new
    status is returned. Refused when the address is not suppressed."""
    row = subscriber(session, subscriber_id)
    if not subs.is_suppressed(session, row.email):
        raise Refused("this address is not suppressed")
    session.execute(delete(Suppression).where(
        Suppression.email.in_([row.email, subs.erased_form(row.email)])))  # type: ignore[attr-defined]
    status = status_after_unsuppress(row)
    if status != row.status:
        row.status = status
        row.updated_at = now or _utcnow()
    return status


def erase(session: Session, subscriber_id: int, limits: SignupLimits) -> None:
    """Delete everything held about the reader (newsletter/subscriptions/privacy.py), their sign-up
    counters included."""
    privacy.erase(session, subscriber(session, subscriber_id), limits)


def resend_confirmation(session: Session, subscriber_id: int,
                        now: datetime | None = None) -> MailJob:
    """A fresh confirmation mail for a reader who has not confirmed: the sign-up's own
    decision (`subscriber.subscribe`) with the choices they asked for, so the new link
    confirms exactly those and the old one stops working. Returns the job for the mail
    queue, to be put there once this is committed. Refused for a reader who is not
    pending, a suppressed address, or within ten minutes of the last mail.
    """
    row = subscriber(session, subscriber_id)
    if row.status != "pending":
        raise Refused(f"only a pending sign-up gets a confirmation mail (this reader is "
                      f"{row.status})")
    choices = subs.requested_choices(row) or subs.values_of(subs.preferences_of(session, row))
    if not choices.topics:
        raise Refused("this sign-up chose no topics: there is nothing to confirm")
    decision = subs.subscribe(session, row.email, choices, now or _utcnow())
    if decision.send != "confirmation":
        raise Refused(f"no mail sent: {decision.reason}")
    return MailJob(kind="confirmation", subscriber_id=row.id, nonce=row.confirm_nonce,
                   topics=choices.topics, frequency=choices.frequency)


# ------------------------------------------------------------------ editions


@dataclass(frozen=True)
class Retry:
    """An edition's failed deliveries, back to pending: what is left to send them."""

    edition_id: int
    frequency: str
    day: date
    delivery_ids: tuple[int, ...]


def retry_failed(session: Session, edition_id: int) -> Retry:
    """Move the edition's failed deliveries back to pending, with their attempts counted
    afresh, so a send claims them again (their last error stays until then). Refused when
    none failed."""
    edition = session.get(DigestEdition, edition_id)
    if edition is None:
        raise LookupError(f"no edition {edition_id}")
    moved = session.execute(
        update(deliveries)
        .where(deliveries.c.edition_id == edition_id, deliveries.c.status == "failed")
        .values(status="pending", claim=None, claimed_at=None, attempts=0)
        .returning(deliveries.c.id)).scalars().all()
    if not moved:
        raise Refused("this edition has no failed deliveries")
    return Retry(edition_id, edition.frequency, edition.day, tuple(sorted(moved)))


def chunks(ids: Sequence[int], size: int) -> list[list[int]]:
    return [list(ids[i:i + size]) for i in range(0, len(ids), size)]


class NotQueued(Exception):
    """The mail workers' queue did not take a retry: nothing was sent, and the deliveries
    it did not take are failed again (the message says so)."""


def send_retry(settings: Settings, engine: Engine, retry: Retry) -> str:
    """Hand what `retry_failed` put back to the mail workers: one `paperwire.deliver_chunk`
    task a chunk on the mail queue, as `paperwire.send_digests` fans an edition out. A line
    saying what happened.

    Never sent from here: a retry sent inside the web request held a gunicorn worker past
    its timeout (a 500 after 30 s, a thousand digests accepted and left `sending`; issue 22
    finding 7). Without a broker the deliveries stay pending for `newsletter send`; with a
    broker that does not take a chunk, that chunk and the rest are failed again and
    NotQueued says so.
    """
    parts = chunks(retry.delivery_ids, settings.delivery_chunk_size)
    count = len(retry.delivery_ids)
    if not settings.redis_url:
        weekly = " --weekly" if retry.frequency == "weekly" else ""
        return (f"{count} deliveries are pending again. With no mail workers (REDIS_URL is "
                f"unset) this site sends nothing itself: `newsletter send --date "
                f"{retry.day.isoformat()}{weekly}` sends them.")
    for queued, part in enumerate(parts):
        if not _enqueue(settings.redis_url, "paperwire.deliver_chunk", "mail",
                        [retry.edition_id, part]):
            _fail_again(engine, [i for rest in parts[queued:] for i in rest])
            left = count - sum(len(p) for p in parts[:queued])
            raise NotQueued(f"the mail workers' queue (Redis) is not answering, so nothing "
                            f"was sent from here: {left} deliveries are still failed. "
                            "Retry once it is back.")
    return (f"{count} deliveries queued for the mail workers "
            f"({len(parts)} task{'s' * (len(parts) != 1)}).")


def _fail_again(engine: Engine, delivery_ids: Sequence[int]) -> None:
    """Rows a retry could not queue go back to failed, their last error kept: the button
    to retry them is there again, and nobody sends them behind the operator's back."""
    with Session(engine) as session:
        session.execute(update(deliveries).where(
            deliveries.c.id.in_(list(delivery_ids)), deliveries.c.status == "pending",
        ).values(status="failed"))
        session.commit()


# ------------------------------------------------------------------ cards


def rerun_cards(session: Session, paper_id: int | None = None) -> list[int]:
    """Make failed cards due again: their count of failed runs starts over, so the next
    sweep (or this re-run) writes them even past LLM_MAX_FAILURES. One paper's card, or
    every failed one; the papers' ids are returned. Refused when there is nothing failed."""
    query = select(Card.paper_id).where(Card.status == "failed")
    if paper_id is not None:
        query = query.where(Card.paper_id == paper_id)
    papers = list(session.execute(query).scalars())
    if not papers:
        raise Refused("no failed card" + (" for this paper" if paper_id is not None else ""))
    session.execute(update(Card).where(Card.status == "failed",
                                       Card.paper_id.in_(papers))  # type: ignore[attr-defined]
                    .values(failures=0))
    return papers


def write_cards(settings: Settings, engine: Engine, paper_id: int | None = None) -> str:
    """Run the card sweep now: `paperwire.summarize` on the llm queue with a broker, in this
    process without (one paper: as `newsletter summarize --paper` does)."""
    if settings.redis_url and _enqueue(settings.redis_url, "paperwire.summarize", "llm",
                                       kwargs={"paper_id": paper_id}):
        return "Queued for the card writers."
    from newsletter.cards.summarize import summarize_pending
    from newsletter.readers.subscriber import languages_in_use

    with Session(engine) as session:
        languages = languages_in_use(session, settings.card_languages)
    report = summarize_pending(engine, settings, paper_id=paper_id, languages=languages)
    return " ".join(report.lines())


def _enqueue(broker_url: str, task: str, queue: str, args: Sequence[object] = (),
             kwargs: dict[str, object] | None = None) -> bool:
    """Hand a task to the workers; False when the broker would not take it, and the caller
    says what then (cards are written here; a retry of deliveries is refused, never sent
    here). A broker that is down costs the operator's request milliseconds
    (newsletter/broker.py)."""
    try:
        broker.publisher(broker_url).publish(task, queue, args, kwargs)
    except broker.BrokerDown as exc:
        log.error("admin: the broker refused %s (%s)", task, exc)
        return False
    return True
