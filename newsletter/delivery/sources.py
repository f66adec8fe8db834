"""What a digest is made from, as the database holds it: its readers (subscribers with
their interests) and its candidates (the window's papers with their cards)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from typing import Any

from sqlalchemy import and_, literal_column, or_, text
from sqlalchemy import select as select_rows
from sqlmodel import Session

from newsletter.cards.card import Card
from newsletter.db import among
from newsletter.delivery.ledger import MAILABLE
from newsletter.digest.selection import Candidate, Interests, candidate, interests
from newsletter.ingest.paper import Paper
from newsletter.topics.tagger import guess_topics

# What a digest needs of a subscriber (see `reader_from_row`). Preferences come as their
# JSON text: most readers share their choices with many others, and each distinct text is
# parsed once.
READER_COLUMNS = ("s.id AS subscriber_id, s.email, s.link_key, p.frequency, "
                  "CAST(p.topics AS TEXT) AS topics, "
                  "CAST(p.include_keywords AS TEXT) AS include_keywords, "
                  "CAST(p.exclude_keywords AS TEXT) AS exclude_keywords, "
                  "CAST(p.authors AS TEXT) AS authors, p.max_papers, p.include_revised, "
                  "p.tracking, p.language")


@dataclass(frozen=True)
class Reader:
    """A claimed delivery's subscriber, as the digest needs them."""

    delivery_id: int
    subscriber_id: int
    email: str
    link_key: str
    interests: Interests
    # False: the reader opted out of open and click tracking (their mail goes without).
    tracking: bool = True
    # The language of their cards and mail (CARD_LANGUAGES).
    language: str = "en"


def readers(session: Session, delivery_ids: Sequence[int]) -> list[Reader]:
    """The subscribers of these deliveries who may still be mailed, by delivery."""
    rows = session.execute(
        select_rows(text(f"d.id AS delivery_id, {READER_COLUMNS}"))
        # CROSS JOIN makes SQLite start from the chunk's ids, not from every confirmed
        # subscriber (its planner favours the status index); Postgres plans it as a join.
        .select_from(text("deliveries d CROSS JOIN subscribers s CROSS JOIN preferences p"))
        .where(among(session, literal_column("d.id"), delivery_ids),
               text(f"s.id = d.subscriber_id AND p.subscriber_id = s.id AND {MAILABLE}"))
        .order_by(literal_column("d.id"))
    ).mappings()
    return [reader_from_row(row, delivery_id=row["delivery_id"]) for row in rows]


def confirmed_readers(session: Session, frequency: str, limit: int | None = None) -> list[Reader]:
    """The subscribers an edition of this frequency would mail, by id."""
    rows = session.execute(text(f"""
        SELECT {READER_COLUMNS} FROM subscribers s JOIN preferences p ON p.subscriber_id = s.id
        WHERE {MAILABLE} AND p.frequency = :frequency ORDER BY s.id
        {"LIMIT :limit" if limit else ""}
    """), {"frequency": frequency, "limit": limit}).mappings()
    return [reader_from_row(row, delivery_id=0) for row in rows]


def reader_from_row(row: Any, delivery_id: int) -> Reader:
    """A Reader from a row holding READER_COLUMNS."""
    return Reader(
        delivery_id=delivery_id, subscriber_id=row["subscriber_id"], email=row["email"],
        link_key=row["link_key"],
        interests=_interests(row["topics"], row["include_keywords"], row["exclude_keywords"],
                             row["authors"], row["max_papers"], bool(row["include_revised"])),
        tracking=bool(row["tracking"]),
        language=row["language"] or "en",
    )


@lru_cache(maxsize=65536)
def _interests(topics: str, include_keywords: str, exclude_keywords: str, authors: str,
               max_papers: int, include_revised: bool) -> Interests:
    return interests(
        topics=json.loads(topics), include_keywords=json.loads(include_keywords),
        exclude_keywords=json.loads(exclude_keywords), authors=json.loads(authors),
        max_papers=max_papers, include_revised=include_revised,
    )


def candidates(session: Session, start: date, end: date) -> list[Candidate]:
    """Papers announced (or revised) in the window, with their card's topics and points."""
    rows = session.execute(
        select_rows(Paper, Card)
        .outerjoin(Card, and_(Card.paper_id == Paper.id, Card.status == "ok"))  # type: ignore[arg-type]
        .where(or_(Paper.announced_on.between(start, end),  # type: ignore[union-attr]
                   Paper.revised_on.between(start, end)))  # type: ignore[union-attr]
        .order_by(Paper.id)
    ).all()
    found = []
    for paper, card in rows:
        new_in_window = paper.announced_on is not None and start <= paper.announced_on <= end
        found.append(as_candidate(paper, card, revised=not new_in_window))
    return found


def as_candidate(paper: Paper, card: Any, *, revised: bool) -> Candidate:
    """A paper as a digest sees it. Without a usable card it goes out with its abstract,
    its topics guessed from its arXiv categories and words as the offline writer does."""
    topics = card.topics if card else guess_topics(paper.title, paper.abstract,
                                                   paper.categories)
    assert paper.id is not None
    return candidate(
        paper_id=paper.id, key=paper.key, title=paper.title, abstract=paper.abstract,
        authors=paper.authors, topics=topics, key_points=card.key_points if card else (),
        revised=revised, abs_url=paper.abs_url, pdf_url=paper.pdf_url,
        code_url=paper.code_url, card_source=card.source if card else None,
        source=paper.source,
        also_on=[(item["source"], item["url"]) for item in paper.also_on or ()
                 if item.get("url")],
    )
