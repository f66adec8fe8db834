"""Digests looked at, not sent: a dry run of an edition, a subscriber's preview, and a
sent digest shown in the browser. None of them writes anything."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import Engine, and_, text
from sqlalchemy import select as select_rows
from sqlmodel import Session

from newsletter.cards.card import Card
from newsletter.config import Settings
from newsletter.delivery.edition import most_read_for
from newsletter.delivery.languages import in_languages
from newsletter.delivery.ledger import SentPaper, already_sent, today_utc, window
from newsletter.delivery.send import addressee
from newsletter.delivery.sources import (
    READER_COLUMNS,
    Reader,
    as_candidate,
    candidates,
    confirmed_readers,
    reader_from_row,
)
from newsletter.digest.scores import choose
from newsletter.digest.selection import PaperIndex, Pick, Selection
from newsletter.ingest.paper import Paper
from newsletter.mail import message
from newsletter.mail.render import render_digest
from newsletter.readers.links import BadLink, Links
from newsletter.readers.subscriber import UnknownReader
from newsletter.relevance.embedders import space_for


@dataclass(frozen=True)
class DryRun:
    readers: int
    would_send: int
    would_skip: int
    distinct_digests: int

    def line(self) -> str:
        return (f"dry run: {self.readers} subscribers; {self.would_send} would get a digest "
                f"({self.distinct_digests} distinct), {self.would_skip} nothing new")


def dry_run(engine: Engine, settings: Settings, *, frequency: str = "daily", day: date | None = None
            ) -> DryRun:
    """What an edition would send, writing nothing."""
    day = day or today_utc()
    with Session(engine) as session:
        papers = PaperIndex(candidates(session, window(frequency, day), day))
        people = confirmed_readers(session, frequency)
        sent = already_sent(session, [r.subscriber_id for r in people],
                            [c.paper_id for c in papers.candidates])
        selections = choose(session, space_for(settings), papers,
                            [(r.subscriber_id, r.interests) for r in people], sent)
    chosen = [s for s in selections if not s.empty]
    return DryRun(readers=len(people), would_send=len(chosen),
                  would_skip=len(people) - len(chosen),
                  distinct_digests=len({s.signature() for s in chosen}))


@dataclass(frozen=True)
class DeliveredDigest:
    """A sent digest as its reader saw it: for the "View in browser" link."""

    day: date
    frequency: str
    selection: Selection
    reader: Reader


def delivered_digest(session: Session, delivery_id: int, link_key: str) -> DeliveredDigest | None:
    """The digest a delivery carried, if the link key is still its reader's."""
    row = session.execute(text(f"""
        SELECT d.id AS delivery_id, d.more_count, e.day, e.frequency AS edition_frequency,
               {READER_COLUMNS}
        FROM deliveries d JOIN editions e ON e.id = d.edition_id
        JOIN subscribers s ON s.id = d.subscriber_id
        JOIN preferences p ON p.subscriber_id = s.id
        WHERE d.id = :id AND d.status = 'sent'
    """), {"id": delivery_id}).mappings().first()
    if row is None or not secrets.compare_digest(row["link_key"], link_key):
        return None
    carried = session.execute(
        select_rows(SentPaper, Paper, Card)
        .join(Paper, Paper.id == SentPaper.paper_id)  # type: ignore[arg-type]
        .outerjoin(Card, and_(Card.paper_id == Paper.id, Card.status == "ok"))  # type: ignore[arg-type]
        .where(SentPaper.delivery_id == delivery_id)
        .order_by(SentPaper.position)
    ).all()
    picks = tuple(
        Pick(candidate=as_candidate(paper, card, revised="revised version" in sent.reasons),
             score=sent.score, reasons=tuple(sent.reasons.splitlines()))
        for sent, paper, card in carried
    )
    day = row["day"] if isinstance(row["day"], date) else date.fromisoformat(str(row["day"]))
    return DeliveredDigest(day=day, frequency=row["edition_frequency"],
                           selection=Selection(picks=picks, more=row["more_count"]),
                           reader=reader_from_row(row, delivery_id=row["delivery_id"]))


# Where "Manage topics" and "Unsubscribe" lead in a digest viewed in the browser.
PERSONAL_LINKS_PATH = "/digest/personal-links"


def digest_in_browser(engine: Engine, settings: Settings, links: Links, token: str) -> str:
    """The HTML of a delivered digest; BadLink otherwise.

    A "view in browser" address gets forwarded and pasted, so the page carries no key to
    the reader's subscription: its Manage and Unsubscribe lead to a page saying they are
    in the email itself.
    """
    delivery_id, link_key = links.read_digest(token)
    with Session(engine) as session:
        found = delivered_digest(session, delivery_id, link_key)
        if found is None:
            raise BadLink("no such digest")
        most_read = most_read_for(session, settings, found.frequency, found.day)
        [(reader, selection)] = in_languages(session, [(found.reader, found.selection)])
    batch = message.compose([addressee(links, reader, selection)],
                            day=found.day, frequency=found.frequency,
                            site_url=settings.base_url, most_read=most_read)
    elsewhere = f"{settings.base_url.rstrip('/')}{PERSONAL_LINKS_PATH}"
    data = {**batch.recipients[0].data, "m": elsewhere, "x": elsewhere}
    return render_digest(data, batch.recipients[0].language).html


@dataclass(frozen=True)
class Preview:
    subject: str
    html: str
    text: str
    selection: Selection

    @property
    def picks(self) -> list[dict[str, Any]]:
        """The papers in rank order, as `newsletter preview --json` prints them."""
        return [{"arxiv_id": p.candidate.key, "score": p.score, "reasons": list(p.reasons)}
                for p in self.selection.picks]


def preview(engine: Engine, settings: Settings, email: str, *, day: date | None = None
            ) -> Preview | None:
    """The digest a subscriber would get in the next edition, rendered, writing nothing.

    None when they would get none (nothing new matches); UnknownReader for an unknown address.
    """
    day = day or today_utc()
    with Session(engine) as session:
        row = session.execute(text(f"""
            SELECT {READER_COLUMNS} FROM subscribers s JOIN preferences p ON p.subscriber_id = s.id
            WHERE lower(s.email) = lower(:email)
        """), {"email": email.strip()}).mappings().first()
        if row is None:
            raise UnknownReader(f"no subscriber {email}")
        reader = reader_from_row(row, delivery_id=0)
        frequency = row["frequency"]
        papers = PaperIndex(candidates(session, window(frequency, day), day))
        sent = already_sent(session, [reader.subscriber_id],
                            [c.paper_id for c in papers.candidates])
        [selection] = choose(session, space_for(settings), papers,
                             [(reader.subscriber_id, reader.interests)], sent)
        if selection.empty:
            return None
        most_read = most_read_for(session, settings, frequency, day)
        [(reader, selection)] = in_languages(session, [(reader, selection)])
    links = Links.from_settings(settings)
    batch = message.compose(
        [addressee(links, reader, selection, view_url=f"{settings.base_url.rstrip('/')}/")],
        day=day, frequency=frequency, site_url=settings.base_url, most_read=most_read)
    digest = render_digest(batch.recipients[0].data, batch.recipients[0].language)
    return Preview(subject=digest.subject, html=digest.html, text=digest.text,
                   selection=selection)
