"""What a reader tells us: ratings, their own words, papers they like.

A reader's model learns from three signals, all the reader's own:
- their description ("sparse attention for long-context inference; not medical imaging"),
  embedded in the same vector space as the papers;
- the papers they like, as arXiv ids: one we do not have is fetched from the arXiv API
  (newsletter/relevance/liked.py) and stored as a paper like any other, so it gets a
  vector; an id arXiv cannot give us now stays on the reader's list and is asked for
  again the next time the list is saved;
- their ratings, "more like this" (+1) and "less like this" (-1); a rating outranks a like;
- their own papers: a library file they uploaded and their arXiv author feed
  (newsletter/relevance/library/), liked as a block, so that a long library does not
  drown what they said or rated.

Whenever one of them changes (`rate`, `record_ratings`, `set_interests`) the model is
trained again (newsletter/relevance/train.py), never during a send. With nothing to go
on there is no model, and the reader is ranked by topics alone.

Functions that take a Session change state; the caller owns the transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import NamedTuple

from sqlalchemy import delete, select
from sqlmodel import Session

from newsletter.config import Settings
from newsletter.db import aware, upsert
from newsletter.ingest.paper import Paper
from newsletter.readers.paper_id import claimed_arxiv_id
from newsletter.readers.reader_input import parse_interests
from newsletter.readers.subscriber import UnknownReader, preferences_of, touch
from newsletter.readers.tables import Preferences, Subscriber
from newsletter.relevance.library import store as library_store
from newsletter.relevance.library.files import ParsedLibrary
from newsletter.relevance.liked import ids_we_lack
from newsletter.relevance.model import ReaderModel
from newsletter.relevance.tables import Rating
from newsletter.relevance.train import current_settings, retrain

log = logging.getLogger(__name__)

# The words of `newsletter rate` and of rating links: up, down, or no rating at all.
RATING_VALUES: dict[str, int | None] = {"up": 1, "down": -1, "clear": None}


def _utcnow() -> datetime:
    return datetime.now(UTC)


class UnknownPaper(LookupError):
    """A rating names a paper we do not have."""


# ---------------------------------------------------------------- ratings


def rate(session: Session, subscriber_id: int, paper_id: int, value: int | None, *,
         settings: Settings | None = None) -> ReaderModel | None:
    """Rate one paper up (+1) or down (-1), or clear its rating (None); retrain.

    Rating a paper again replaces the rating and its time; clearing one that is not there
    changes nothing. Returns the reader's new model (None: nothing to go on).
    """
    return record_ratings(session, subscriber_id, {paper_id: value}, settings=settings)


def record_ratings(session: Session, subscriber_id: int, ratings: Mapping[int, int | None],
                   *, settings: Settings | None = None) -> ReaderModel | None:
    """Several ratings at once (paper id -> +1, -1 or None), then one retraining.

    Raises ValueError for another value, UnknownReader or UnknownPaper before writing.
    """
    wrong = [v for v in ratings.values() if v not in (1, -1, None)]
    if wrong:
        raise ValueError(f"a rating is +1, -1 or None, not {wrong[0]!r}")
    if session.get(Subscriber, subscriber_id) is None:
        raise UnknownReader(f"no reader with id {subscriber_id}")
    known = set(session.execute(select(Paper.id).where(
        Paper.id.in_(list(ratings)))).scalars())  # type: ignore[union-attr]
    unknown = sorted(set(ratings) - known)
    if unknown:
        raise UnknownPaper(f"no paper with id {unknown[0]}")
    now = _utcnow()
    touch(session, subscriber_id, now)  # a rating is the reader at work, tracked or not
    cleared = [paper_id for paper_id, value in ratings.items() if value is None]
    if cleared:
        session.execute(delete(Rating).where(
            Rating.subscriber_id == subscriber_id,  # type: ignore[arg-type]
            Rating.paper_id.in_(cleared)))  # type: ignore[attr-defined]
    given = [{"subscriber_id": subscriber_id, "paper_id": paper_id, "value": value,
              "rated_at": now} for paper_id, value in ratings.items() if value is not None]
    if given:
        # An upsert: two clicks on one link at once must both succeed, as one rating.
        upsert(session, Rating.__table__, given, ("subscriber_id", "paper_id"),  # type: ignore[attr-defined]
                ("value", "rated_at"))
    return retrain(session, subscriber_id, settings=settings)


def parse_ratings(items: Iterable[str]) -> dict[str, int | None]:
    """`ARXIV_ID=up|down|clear` items (an arxiv.org link works as the id) as versionless
    ids and values. ValueError names the first bad item, or an id given two values."""
    wanted: dict[str, int | None] = {}
    for item in items:
        reference, _, word = item.rpartition("=")
        arxiv_id = claimed_arxiv_id(reference) if reference else None
        if arxiv_id is None:
            raise ValueError(f"{item!r} is not ARXIV_ID=up|down|clear (e.g. 2401.12345=up)")
        value = RATING_VALUES.get(word.strip().lower(), 0)
        if value == 0:
            raise ValueError(f"{item!r}: a rating is up, down or clear, not {word!r}")
        if wanted.get(arxiv_id, value) != value:
            raise ValueError(f"{arxiv_id} is rated twice, differently")
        wanted[arxiv_id] = value
    return wanted


def papers_named(session: Session, arxiv_ids: Sequence[str]) -> dict[str, int]:
    """Our paper id for each arXiv id; UnknownPaper names every id we do not have."""
    found = dict(session.execute(select(Paper.arxiv_id, Paper.id).where(
        Paper.arxiv_id.in_(list(arxiv_ids)))).all())  # type: ignore[union-attr]
    unknown = [i for i in arxiv_ids if i not in found]
    if unknown:
        raise UnknownPaper(f"no stored paper {', '.join(unknown)} (papers arrive by "
                           "`newsletter ingest`)")
    return found


class RatedPaper(NamedTuple):
    title: str
    arxiv_id: str | None
    abs_url: str | None
    value: int
    rated_at: datetime


def ratings_of(session: Session, subscriber_id: int) -> list[RatedPaper]:
    """A reader's ratings, newest first (the manage page lists them)."""
    rows = session.execute(
        select(Paper.title, Paper.arxiv_id, Paper.abs_url, Rating.value, Rating.rated_at)
        .join(Paper, Paper.id == Rating.paper_id)  # type: ignore[arg-type]
        .where(Rating.subscriber_id == subscriber_id)  # type: ignore[arg-type]
        .order_by(Rating.rated_at.desc(), Paper.title)  # type: ignore[attr-defined]
    )
    return [RatedPaper(title, arxiv_id, abs_url, value, aware(rated_at))
            for title, arxiv_id, abs_url, value, rated_at in rows]


# ---------------------------------------------------------------- interests


@dataclass(frozen=True)
class Interests:
    """What `set_interests` stored, and which liked papers are still not ours."""

    description: str | None
    liked: tuple[str, ...]  # versionless arXiv ids, in the reader's order
    # Liked ids with no paper here: not asked for yet (liked.fetch_wanted), or arXiv did
    # not return them.
    missing: tuple[str, ...] = ()


def interests_of(session: Session, subscriber_id: int) -> Interests:
    """A reader's description and liked papers as stored (for the manage page's form)."""
    prefs = session.get(Preferences, subscriber_id)
    if prefs is None:
        return Interests(None, ())
    liked = tuple(prefs.liked_papers)
    return Interests(prefs.description, liked, ids_we_lack(session, liked))


def set_interests(session: Session, subscriber_id: int, description: str | None,
                  liked: str | Sequence[str], *, settings: Settings | None = None
                  ) -> Interests:
    """Store a reader's description and liked papers and retrain; the liked papers we
    lack count once the sweep has fetched them (newsletter/relevance/liked.py).

    Input as typed is fine: raises InvalidInput naming every bad field (the first bad
    liked entry by its text) before anything is written.
    """
    settings = settings or current_settings()
    text, ids = parse_interests(description, liked)
    subscriber = session.get(Subscriber, subscriber_id)
    if subscriber is None:
        raise UnknownReader(f"no reader with id {subscriber_id}")

    prefs = preferences_of(session, subscriber)
    prefs.description = text
    prefs.liked_papers = list(ids)
    prefs.updated_at = _utcnow()
    session.flush()
    retrain(session, subscriber_id, settings=settings)
    return Interests(text, ids, ids_we_lack(session, ids))


# ---------------------------------------------------------------- their own papers


def set_author(session: Session, subscriber_id: int, author: str | None, *,
               settings: Settings | None = None, retraining: bool = True) -> bool:
    """Store the reader's arXiv author identifier or ORCID iD (checked: readers.author_id)
    and retrain when it changed (unless the caller retrains next anyway, `retraining`
    False); its feed is read by the next sweep, never here."""
    subscriber = session.get(Subscriber, subscriber_id)
    if subscriber is None:
        raise UnknownReader(f"no reader with id {subscriber_id}")
    changed = library_store.set_author(session, preferences_of(session, subscriber), author)
    if changed and retraining:
        session.flush()
        retrain(session, subscriber_id, settings=settings)
    return changed


def import_library(session: Session, subscriber_id: int, parsed: ParsedLibrary,
                   filename: str | None, *, settings: Settings | None = None) -> None:
    """The reader's library file, replacing the one they had, and their model retrained
    on what of it counts already (arXiv papers we have); the sweep does the rest."""
    if session.get(Subscriber, subscriber_id) is None:
        raise UnknownReader(f"no reader with id {subscriber_id}")
    library_store.import_file(session, subscriber_id, parsed, filename)
    session.flush()
    retrain(session, subscriber_id, settings=settings)


def remove_library(session: Session, subscriber_id: int, *,
                   settings: Settings | None = None) -> None:
    if library_store.remove_library(session, subscriber_id):
        session.flush()
        retrain(session, subscriber_id, settings=settings)


def drop_own(session: Session, subscriber_id: int, entry_ids: Sequence[int],
             dropped: bool = True, *, settings: Settings | None = None) -> int:
    """Drop some of the reader's own papers (or take them back); retrain when any changed."""
    changed = library_store.drop(session, subscriber_id, entry_ids, dropped)
    if changed:
        session.flush()
        retrain(session, subscriber_id, settings=settings)
    return changed
