"""What a provider event changes: a delivery's first delivered, opened, clicked and bounced
times, the first click on each paper it carried, a reader's last activity. First times,
not a log.

SendGrid echoes each personalization's `custom_args` as top-level fields of its events
(Event Webhook reference,
https://www.twilio.com/docs/sendgrid/for-developers/tracking-events/event), so every event
of a digest names its delivery (`delivery_id`, set by message.compose). An event is acted
on only when that delivery still exists and belongs to the address the event names: a
deleted reader's deliveries are gone with them, and an event for them, or for a delivery we
never made, changes nothing and leaves nothing behind.

A reader who opted out of tracking (`preferences.tracking` false) is mailed with SendGrid's
tracking off, so their opens and clicks should never be reported; if some are (an older
mail, an account-wide setting), they are dropped here, and so is every other event of
theirs but what suppression needs (a bounce still stops mail to them, see webhook.py).

Apple Mail Privacy Protection fetches every mail's images, the open pixel included, when
the mail arrives: SendGrid marks those opens `sg_machine_open: true`. They say nothing
about a person reading, so they are not counted at all.

Only the first of each kind of event per delivery is kept (a unique open or click per
edition is `count(opened_at)`), and only the first click on each paper of the digest
(`sent_papers.clicked_at`): a reader who clicks a paper 200 times has gone to it once,
which is all "most read this week" counts (engagement/most_read.py). The received events
themselves (the replay guard) are forgotten after ENGAGEMENT_RETENTION_DAYS
(`forget_old_events`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, or_, update
from sqlalchemy import select as select_rows
from sqlmodel import Session

from newsletter.db import among
from newsletter.delivery.ledger import deliveries, sent_papers
from newsletter.engagement.links import paper_key
from newsletter.ingest.paper import Paper
from newsletter.readers.subscriber import touch
from newsletter.readers.tables import Preferences, Subscriber, WebhookEvent

# The delivery's column each event kind fills, once.
FIRST_SEEN = {"delivered": "delivered_at", "open": "opened_at", "click": "clicked_at",
              "bounce": "bounced_at"}
# Events that show a person at their mail.
ACTIVITY = frozenset({"open", "click"})


@dataclass(frozen=True)
class Target:
    """The delivery an event names, and whose it is."""

    delivery_id: int
    subscriber_id: int
    email: str
    tracking: bool


@dataclass(frozen=True)
class PaperLinks:
    """A paper of a delivered digest, with every address the digest linked it by."""

    paper_id: int
    key: str
    urls: frozenset[str]


def targets(session: Session, delivery_ids: Sequence[int]) -> dict[int, Target]:
    """The deliveries among these ids that still exist, with their reader."""
    if not delivery_ids:
        return {}
    subscribers = Subscriber.__table__  # type: ignore[attr-defined]
    preferences = Preferences.__table__  # type: ignore[attr-defined]
    rows = session.execute(
        select_rows(deliveries.c.id, deliveries.c.subscriber_id,
                    subscribers.c.email, preferences.c.tracking)
        .join(subscribers, subscribers.c.id == deliveries.c.subscriber_id)
        .outerjoin(preferences, preferences.c.subscriber_id == subscribers.c.id)
        .where(among(session, deliveries.c.id, sorted(set(delivery_ids))))
    )
    return {row[0]: Target(row[0], row[1], row[2], row[3] is None or bool(row[3]))
            for row in rows}


def papers_of(session: Session, delivery_id: int) -> list[PaperLinks]:
    """The papers a delivery carried, each with the links its digest gave it."""
    papers = Paper.__table__  # type: ignore[attr-defined]
    rows = session.execute(
        select_rows(papers.c.id, papers.c.key, papers.c.abs_url, papers.c.pdf_url,
                    papers.c.code_url)
        .join(sent_papers, sent_papers.c.paper_id == papers.c.id)
        .where(sent_papers.c.delivery_id == delivery_id))
    return [PaperLinks(paper_id, key, frozenset(_bare(u) for u in urls if u))
            for paper_id, key, *urls in rows]


def _bare(url: str) -> str:
    """A URL without its fragment, scheme-insensitive: how two links to one page compare."""
    return url.split("#", 1)[0].strip().removeprefix("https://").removeprefix("http://")


def clicked_paper(papers: Sequence[PaperLinks], url: str | None, site_url: str) -> int | None:
    """Which of a digest's papers a clicked URL opens, or None (a link to manage, rate,
    unsubscribe, another paper, or anywhere else). Pure."""
    if not url:
        return None
    key = paper_key(url, site_url)
    bare = _bare(url)
    for paper in papers:
        if (key is not None and key == paper.key) or bare in paper.urls:
            return paper.paper_id
    return None


def event_time(timestamp: int | None, now: datetime) -> datetime:
    """When the event happened (SendGrid's Unix `timestamp`), never later than now."""
    if timestamp is not None and timestamp > 0:
        try:
            return min(datetime.fromtimestamp(timestamp, UTC), now)
        except (OverflowError, OSError, ValueError):
            return now
    return now


def tracked_addresses(session: Session, emails: Sequence[str]) -> set[str]:
    """Which of these addresses are readers who have not opted out of tracking."""
    found: set[str] = set()
    wanted = sorted(set(emails))
    for start in range(0, len(wanted), 500):
        found.update(session.execute(
            select_rows(Subscriber.email)
            .join(Preferences, Preferences.subscriber_id == Subscriber.id,  # type: ignore[arg-type]
                  isouter=True)
            .where(Subscriber.email.in_(wanted[start:start + 500]),  # type: ignore[attr-defined]
                   or_(Preferences.tracking.is_(None), Preferences.tracking.is_(True)))  # type: ignore[union-attr, attr-defined]
        ).scalars())
    return found


class Recorder:
    """Applies the engagement events of one webhook batch; holds what it looked up.

    `delivery_ids`: the deliveries the batch's events name; `emails`: the addresses of its
    events that name none (a confirmation mail's, or a digest's sent before deliveries were
    named), kept as a record only when they are a reader's who allows tracking."""

    def __init__(self, session: Session, delivery_ids: Sequence[int], emails: Sequence[str],
                 site_url: str) -> None:
        self.session = session
        self.site_url = site_url
        self.targets = targets(session, delivery_ids)
        self.tracked = tracked_addresses(session, emails)
        self._papers: dict[int, list[PaperLinks]] = {}

    def target(self, delivery_id: int | None, email: str | None) -> Target | None:
        """The delivery an event names, if it exists and is the named address's."""
        found = self.targets.get(delivery_id) if delivery_id is not None else None
        if found is None or (email is not None and email != found.email):
            return None
        return found

    def record(self, target: Target, kind: str, at: datetime, *, url: str | None = None,
               machine_open: bool = False) -> bool:
        """Apply one event to its delivery; False when it changes nothing by design (an
        event kind we do not count, a machine open, a reader who opted out)."""
        column = FIRST_SEEN.get(kind)
        if column is None or not target.tracking or (kind == "open" and machine_open):
            return False
        session = self.session
        session.execute(update(deliveries)
                        .where(deliveries.c.id == target.delivery_id,
                               or_(deliveries.c[column].is_(None), deliveries.c[column] > at))
                        .values({column: at}))
        if kind in ACTIVITY:
            touch(session, target.subscriber_id, at)
        if kind == "click":
            if target.delivery_id not in self._papers:
                self._papers[target.delivery_id] = papers_of(session, target.delivery_id)
            paper_id = clicked_paper(self._papers[target.delivery_id], url, self.site_url)
            if paper_id is not None:
                _first_click(session, target.delivery_id, paper_id, at)
        return True


def _first_click(session: Session, delivery_id: int, paper_id: int, at: datetime) -> None:
    """The reader went to this paper of their digest: keep the earliest time, once."""
    session.execute(update(sent_papers)
                    .where(sent_papers.c.delivery_id == delivery_id,
                           sent_papers.c.paper_id == paper_id,
                           or_(sent_papers.c.clicked_at.is_(None),
                               sent_papers.c.clicked_at > at))
                    .values(clicked_at=at))


def forget_old_events(session: Session, now: datetime, days: int) -> int:
    """Delete received events older than `days`; returns how many. What they taught stays,
    as counts; a provider retrying an event that old is past any retry schedule."""
    result = session.execute(delete(WebhookEvent).where(
        WebhookEvent.received_at < now - timedelta(days=days)))  # type: ignore[arg-type]
    return result.rowcount or 0


def forget_old_events_configured() -> int:
    """The scheduled job: keep no received event past ENGAGEMENT_RETENTION_DAYS."""
    from newsletter.config import settings as current_settings
    from newsletter.db import engine_for, transaction

    config = current_settings()
    with transaction(engine_for(config.database_url)) as session:
        return forget_old_events(session, datetime.now(UTC), config.engagement_retention_days)
