"""A reader rates a paper from their digest or the site: "more like this", "less like this".

Every paper of every digest carries the reader's rating links (`Links.rate_token`): one
token per reader and paper, an up and a down address. Mail scanners fetch every link in a
mail, so opening one records nothing: the page shows the paper and one button, and only
the button's POST rates. The answer says what changed (the rating before and after) and
shows a few papers of the last week that the reader's new model ranks highest, each with
its own rating buttons, so a reader can go on tuning in a click.

The public paper page offers the same buttons when it is opened with the reader's token
for that very paper (`/papers/<key>?rate=<token>`); with any other token, or none, it is
the plain public page.

A rating link opens nothing else: not the manage page, whose address is only in the
emails. A paper page's address, with its token, is easily copied into a chat.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import numpy as np
from sqlalchemy import select
from sqlmodel import Session

from newsletter import i18n
from newsletter.cards import archive
from newsletter.cards.archive import PaperView
from newsletter.db import transaction
from newsletter.ingest.paper import Paper, latest_announcement_day
from newsletter.readers.links import BadLink, LinkHolder
from newsletter.readers.subscriber import LinkInvalid
from newsletter.readers.tables import Subscriber
from newsletter.relevance import learn, model
from newsletter.relevance.embed import vectors_for
from newsletter.relevance.embedders import space_for
from newsletter.relevance.model import ReaderModel
from newsletter.relevance.tables import Rating
from newsletter.subscriptions.services import Services

# The last week of papers, ending on the latest announcement day we hold.
SIMILAR_DAYS = 7
SIMILAR_SHOWN = 5


@dataclass(frozen=True)
class RatingOffer:
    """What a rating link's page shows before anything is recorded."""

    paper: PaperView
    direction: str  # up, down or clear: the one button the page offers
    current: int | None  # the reader's rating of this paper now: +1, -1 or none


@dataclass(frozen=True)
class Suggestion:
    """A paper of the last week the reader's model ranks high, with its rating token."""

    paper: PaperView
    token: str


@dataclass(frozen=True)
class Rated:
    """What a rating changed, for the answer page."""

    paper: PaperView
    token: str
    before: int | None
    after: int | None
    learned: bool  # the reader has a model now (nothing to go on: topics alone rank)
    similar: tuple[Suggestion, ...]
    week: int  # papers announced in the last week
    without_vectors: int  # of those, how many have no vector yet (left out of `similar`)


# The MAC of a token naming no reader is checked against this key, which no row holds (a
# link key is 22 characters of base64url): its answer then takes the same steps as a
# forged token naming a real reader, one lookup and one MAC.
_NO_READER_KEY = "!" * 22


def _rater(svc: Services, session: Session, token: str) -> tuple[LinkHolder, Paper]:
    """The reader and paper of a rating link. BadLink: not ours, or its reader is gone
    (the MAC covers the reader's link key, so a deleted reader's genuine link and a forged
    one cannot be told apart: answering them differently would tell which ids exist);
    LinkInvalid: a genuine link whose paper is gone."""
    claim = svc.links.read_rate(token)
    row = session.get(Subscriber, claim.subscriber_id)
    holder = svc.links.verify_rate(claim, row.link_key if row else _NO_READER_KEY)
    if row is None:
        raise BadLink("not a rating link")
    paper = session.get(Paper, claim.paper_id)
    if paper is None:
        raise LinkInvalid("this paper is no longer here")
    return holder, paper


def _rating(session: Session, subscriber_id: int, paper_id: int) -> int | None:
    found = session.get(Rating, (subscriber_id, paper_id))
    return found.value if found else None


def _view(session: Session, paper: Paper) -> PaperView:
    # The card in the page's language (the reader's, on their rating pages), where translated.
    found = archive.paper(session, paper.key, language=i18n.current())
    assert found is not None
    return found


def _value(direction: str) -> int | None:
    if direction not in learn.RATING_VALUES:
        raise BadLink(f"{direction!r} is not a rating")
    return learn.RATING_VALUES[direction]


def offer(svc: Services, token: str, direction: str) -> RatingOffer:
    """A rating link opened: the paper and the button. Records nothing.

    Raises BadLink (not our link, its reader deleted, or not up/down/clear) or LinkInvalid
    (its paper gone).
    """
    _value(direction)
    with Session(svc.engine) as session:
        holder, paper = _rater(svc, session, token)
        assert paper.id is not None
        return RatingOffer(_view(session, paper), direction,
                           _rating(session, holder.subscriber_id, paper.id))


def rate(svc: Services, token: str, direction: str) -> Rated:
    """The button pressed: record (or clear) the rating, train the reader's model again,
    and rank last week's papers with it. Pressing twice changes nothing more.

    Raises BadLink or LinkInvalid, as `offer`.
    """
    value = _value(direction)
    with transaction(svc.engine) as session:
        holder, paper = _rater(svc, session, token)
        assert paper.id is not None
        before = _rating(session, holder.subscriber_id, paper.id)
        trained = learn.rate(session, holder.subscriber_id, paper.id, value,
                             settings=svc.settings)
    # The rating is committed; what follows only reads.
    with Session(svc.engine) as session:
        week = _last_week(svc, session, holder.subscriber_id, trained)
        similar = tuple(Suggestion(_view(session, p), svc.links.rate_token(holder, p.id))
                        for p in _papers(session, week.ranked[:SIMILAR_SHOWN]) if p.id)
        return Rated(_view(session, paper), token, before, value, trained is not None,
                     similar, week.papers, week.without_vectors)


@dataclass(frozen=True)
class _Week:
    papers: int  # announced in the last week
    without_vectors: int  # of those not rated by the reader, how many have no vector
    ranked: list[int]  # the others, best first by the reader's model (none without one)


def _last_week(svc: Services, session: Session, subscriber_id: int,
               trained: ReaderModel | None) -> _Week:
    end: date = latest_announcement_day(session) or datetime.now(UTC).date()
    week = list(session.execute(select(Paper.id).where(
        Paper.announced_on >= end - timedelta(days=SIMILAR_DAYS - 1),  # type: ignore[operator]
        Paper.announced_on <= end).order_by(Paper.id)).scalars())  # type: ignore[operator]
    rated = set(session.execute(select(Rating.paper_id).where(
        Rating.subscriber_id == subscriber_id)).scalars())  # type: ignore[arg-type]
    unrated = [p for p in week if p not in rated]
    ids, rows = vectors_for(session, unrated, space_for(svc.settings))
    ranked: list[int] = []
    if trained is not None and ids:
        scores = np.asarray(model.affinities(trained.weights, np.array([trained.bias]), rows))
        ranked = [ids[i] for i in np.argsort(-scores[0], kind="stable")]
    return _Week(len(week), len(unrated) - len(ids), ranked)


def _papers(session: Session, paper_ids: list[int]) -> list[Paper]:
    found = {p.id: p for p in session.execute(select(Paper).where(
        Paper.id.in_(paper_ids))).scalars()}  # type: ignore[union-attr]
    return [found[p] for p in paper_ids if p in found]


@dataclass(frozen=True)
class PaperRating:
    """The rating buttons of a paper page opened with the reader's token."""

    token: str
    current: int | None


@dataclass(frozen=True)
class PaperPage:
    paper: PaperView
    rating: PaperRating | None  # None: the public page, without buttons


def paper_page(svc: Services, key: str, token: str | None) -> PaperPage | None:
    """The public page of the paper `key` (None: no such paper), with rating buttons when
    `token` is the reader's rating token for this very paper; any other token, or a
    deleted reader's, gives the plain page."""
    with Session(svc.engine) as session:
        found = archive.paper(session, key, language=i18n.current())
        if found is None:
            return None
        if not token:
            return PaperPage(found, None)
        try:
            holder, paper = _rater(svc, session, token)
        except (BadLink, LinkInvalid):
            return PaperPage(found, None)
        if paper.key != key or paper.id is None:
            return PaperPage(found, None)
        return PaperPage(found, PaperRating(token, _rating(session, holder.subscriber_id,
                                                            paper.id)))
