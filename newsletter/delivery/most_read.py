""""Most read this week": the papers readers went to, each reader counted once, naming
nobody in what it shows.

A reader counts for a paper when they clicked through to it from one of the week's
digests (`sent_papers.clicked_at`, the first click on that paper of their digest: a
reader gets each paper once, so clicking it again adds nothing) or rated it up ("more
like this") in the week. Each reader weighs 1 for a paper they went to, or
UP_RATING_WEIGHT when they rated it up (a deliberate act where a click may be a glance),
never both: one reader is one reader, however many events they make. Down-ratings do not
subtract: "most read" is about reading.

What everyone sees must come from many readers: a paper is listed only when at least
`Audience.minimum` readers count for it, the larger of MOST_READ_MIN_READERS and
MOST_READ_MIN_PERCENT of the confirmed readers. Below that, one reader (or a handful)
could put a paper in front of everybody, and "most read" would be theirs alone.

The week is the seven days up to a given day; its papers are those announced (or revised)
in it, or clicked in one of its editions. Ties go to the newer paper, then the lower id,
so the list is the same wherever it is computed. Shown on the front page and, with
DIGEST_MOST_READ, at the end of weekly digests (frozen when the edition is planned).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import func, literal, or_, union_all
from sqlalchemy import select as select_rows
from sqlmodel import Session

from newsletter.delivery.ledger import DigestEdition, deliveries, sent_papers
from newsletter.ingest.paper import Paper
from newsletter.readers.tables import Subscriber
from newsletter.relevance.tables import Rating

if TYPE_CHECKING:
    from newsletter.config import Settings

WEEK = timedelta(days=7)
UP_RATING_WEIGHT = 2
MOST_READ = 5


@dataclass(frozen=True)
class MostRead:
    key: str
    title: str
    weight: int


@dataclass(frozen=True)
class Tally:
    """A paper's week: how many readers count for it, and their weight together."""

    readers: int
    weight: int


@dataclass(frozen=True)
class Audience:
    """How many readers a paper needs before everyone is shown it."""

    min_readers: int
    min_percent: float  # of the confirmed readers

    @classmethod
    def of(cls, settings: Settings) -> Audience:
        return cls(settings.most_read_min_readers, settings.most_read_min_percent)

    @classmethod
    def default(cls) -> Audience:
        """The documented defaults (the settings' own, read from no environment)."""
        from newsletter.config import Settings

        return cls.of(Settings.model_construct())

    def minimum(self, confirmed: int) -> int:
        # Rounded first, so that 1% of 300 is 3 and not the 4 a float's last bit would make.
        return max(self.min_readers, math.ceil(round(confirmed * self.min_percent / 100, 9)))


def rank(tallies: Mapping[int, Tally], announced: Mapping[int, date | None],
         min_readers: int, limit: int = MOST_READ) -> list[tuple[int, int]]:
    """(paper id, weight), heaviest first, of the papers at least `min_readers` readers
    count for. Pure."""
    shown = [(paper, tally.weight) for paper, tally in tallies.items()
             if tally.readers >= min_readers and tally.weight > 0]
    shown.sort(key=lambda item: (-item[1], -(announced.get(item[0]) or date.min).toordinal(),
                                 item[0]))
    return shown[:limit]


def _confirmed(session: Session) -> int:
    return session.execute(select_rows(func.count()).select_from(Subscriber).where(
        Subscriber.status == "confirmed")).scalar_one()  # type: ignore[arg-type]


def tallies(session: Session, first_day: date, last_day: date) -> dict[int, Tally]:
    """Every paper some reader counts for in the week, by paper id."""
    since = datetime.combine(first_day, time(), UTC)
    until = datetime.combine(last_day + timedelta(days=1), time(), UTC)
    clicked = (
        select_rows(sent_papers.c.paper_id, sent_papers.c.subscriber_id,
                    literal(1).label("weight"))
        .join(deliveries, deliveries.c.id == sent_papers.c.delivery_id)
        .join(DigestEdition, DigestEdition.id == deliveries.c.edition_id)  # type: ignore[arg-type]
        # A click on one of the week's digests comes after it was sent, so within the
        # week: this bound lets the clicked rows' index find them among all papers sent.
        .where(sent_papers.c.clicked_at >= since,
               DigestEdition.day.between(first_day, last_day)))  # type: ignore[attr-defined]
    week_papers = or_(Paper.announced_on.between(first_day, last_day),  # type: ignore[union-attr]
                      Paper.revised_on.between(first_day, last_day),  # type: ignore[union-attr]
                      Paper.id.in_(clicked.with_only_columns(sent_papers.c.paper_id)))  # type: ignore[union-attr]
    rated_up = (
        select_rows(Rating.paper_id, Rating.subscriber_id,
                    literal(UP_RATING_WEIGHT).label("weight"))
        .join(Paper, Paper.id == Rating.paper_id)  # type: ignore[arg-type]
        .where(Rating.value == 1, Rating.rated_at >= since,  # type: ignore[arg-type]
               Rating.rated_at < until, week_papers))  # type: ignore[arg-type]
    signals = union_all(clicked, rated_up).subquery()
    # One row per reader and paper: their heaviest signal.
    readers = (select_rows(signals.c.paper_id, func.max(signals.c.weight).label("weight"))
               .group_by(signals.c.paper_id, signals.c.subscriber_id)).subquery()
    rows = session.execute(select_rows(readers.c.paper_id, func.count(),
                                       func.sum(readers.c.weight))
                           .group_by(readers.c.paper_id))
    return {paper: Tally(int(count), int(weight)) for paper, count, weight in rows}


def most_read(session: Session, last_day: date, audience: Audience,
              limit: int = MOST_READ) -> list[MostRead]:
    """The week up to `last_day` (included): its most read papers, heaviest first, each
    counted for by at least `audience.minimum` readers."""
    found = tallies(session, last_day - WEEK + timedelta(days=1), last_day)
    if not found:
        return []
    minimum = audience.minimum(_confirmed(session))
    candidates = [p for p, tally in found.items() if tally.readers >= minimum]
    if not candidates:
        return []
    papers = {p.id: p for p in session.execute(
        select_rows(Paper).where(Paper.id.in_(candidates))).scalars()}  # type: ignore[union-attr]
    ranked = rank(found, {i: p.announced_on for i, p in papers.items()}, minimum, limit)
    return [MostRead(papers[i].key, papers[i].title, weight) for i, weight in ranked
            if i in papers]
