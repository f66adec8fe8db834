""""Most read this week": the papers readers went to, from counts that name nobody.

A paper's weight is the clicks through to it from the week's digests (every reader's,
counted per edition in `paper_clicks`) plus its up-ratings ("more like this") in the
week, an up-rating counting as UP_RATING_WEIGHT clicks: it is a deliberate act where a
click may be a glance. Down-ratings do not subtract: "most read" is about reading. The
week is the seven days up to a given day; the papers are those announced (or revised) in
it, or sent by one of its editions. Ties go to the newer paper, then the lower id, so the
list is the same wherever it is computed. Shown on the front page and, with
DIGEST_MOST_READ, at the end of weekly digests.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import func, or_
from sqlalchemy import select as select_rows
from sqlmodel import Session

from newsletter.delivery.ledger import DigestEdition
from newsletter.engagement.tables import paper_clicks
from newsletter.paper import Paper
from newsletter.relevance.tables import Rating

WEEK = timedelta(days=7)
UP_RATING_WEIGHT = 2
MOST_READ = 5


@dataclass(frozen=True)
class MostRead:
    key: str
    title: str
    weight: int


def rank(clicks: Mapping[int, int], ups: Mapping[int, int],
         announced: Mapping[int, date | None], limit: int = MOST_READ) -> list[tuple[int, int]]:
    """(paper id, weight), heaviest first, for papers with any weight. Pure."""
    weights = {paper: clicks.get(paper, 0) + UP_RATING_WEIGHT * ups.get(paper, 0)
               for paper in {*clicks, *ups}}
    ranked = sorted(((p, w) for p, w in weights.items() if w > 0),
                    key=lambda item: (-item[1], -(announced.get(item[0]) or date.min).toordinal(),
                                      item[0]))
    return ranked[:limit]


def most_read(session: Session, last_day: date, limit: int = MOST_READ) -> list[MostRead]:
    """The week up to `last_day` (included): its most read papers, heaviest first."""
    first_day = last_day - WEEK + timedelta(days=1)
    clicks = dict(session.execute(
        select_rows(paper_clicks.c.paper_id, func.sum(paper_clicks.c.clicks))
        .join(DigestEdition, DigestEdition.id == paper_clicks.c.edition_id)  # type: ignore[arg-type]
        .where(DigestEdition.day.between(first_day, last_day))  # type: ignore[attr-defined]
        .group_by(paper_clicks.c.paper_id)).all())
    since = datetime.combine(first_day, time(), UTC)
    until = datetime.combine(last_day + timedelta(days=1), time(), UTC)
    week_papers = [Paper.announced_on.between(first_day, last_day),  # type: ignore[union-attr]
                   Paper.revised_on.between(first_day, last_day)]  # type: ignore[union-attr]
    if clicks:  # sent by the week's editions, whenever announced
        week_papers.append(Paper.id.in_(list(clicks)))  # type: ignore[union-attr]
    ups = dict(session.execute(
        select_rows(Rating.paper_id, func.count())
        .join(Paper, Paper.id == Rating.paper_id)  # type: ignore[arg-type]
        .where(Rating.value == 1, Rating.rated_at >= since,  # type: ignore[arg-type]
               Rating.rated_at < until, or_(*week_papers))  # type: ignore[arg-type]
        .group_by(Rating.paper_id)).all())
    if not clicks and not ups:
        return []
    papers = {p.id: p for p in session.execute(
        select_rows(Paper).where(Paper.id.in_([*clicks, *ups]))).scalars()}  # type: ignore[union-attr]
    ranked = rank(clicks, ups, {i: p.announced_on for i, p in papers.items()}, limit)
    return [MostRead(papers[i].key, papers[i].title, weight) for i, weight in ranked
            if i in papers]
