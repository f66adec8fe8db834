"""A reader's liked papers shape only their own model (issue 22, finding 2).

Liked papers we lack are fetched from the arXiv API (here a local stand-in speaking its
Atom, serving three q-bio.OT papers, a category we do not follow, dated on the day our
feed announced). They get vectors and teach the reader who liked them, but our feeds did
not announce them: they are on no day, no front page and no paper page, get no card, and
are picked for nobody's digest, the liking reader's included. The day our feed announces
one of them, it becomes an ordinary paper of that day.

On SQLite and Postgres, with real arXiv documents (tests/fixtures/arxiv), `newsletter
embed` run as the CLI, the card sweep, the site through the Flask test client and the
digest preview.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import date
from pathlib import Path

from flask.testing import FlaskClient
from sqlalchemy import Engine
from sqlmodel import Session, select

from newsletter import db, delivery
from newsletter.cards.card import Card
from newsletter.cards.summarize import summarize_pending
from newsletter.config import Settings
from newsletter.delivery.sources import candidates
from newsletter.ingest.paper import Paper, PaperEntry, merge, new_row
from newsletter.ingest.store import ingest_files
from newsletter.readers import reader_input
from newsletter.readers import subscriber as subs
from newsletter.relevance import learn
from newsletter.relevance.tables import PaperVector, ReaderModelRow
from newsletter.topics.taxonomy import built_in
from newsletter.web import site
from tests.relevance.test_learn import COMBINED, NOW, ON_TIDE, asking, run
from tests.support import web
from tests.support.arxiv_server import API_DOCUMENT, ATOM, ArxivAPI

app, client, web_settings = web.app, web.client, web.web_settings

DAY = date(2026, 9, 24)  # the day of COMBINED, our feed's listing
NEXT_DAY = date(2026, 9, 25)
LIKED = ("2612.00001", "2612.00002", "2612.00003")
ARXIV = "{http://arxiv.org/schemas/atom}"


def _liked_document(folder: Path) -> Path:
    """An arXiv API answer with three papers of q-bio.OT, announced on DAY: the first three
    entries of a real answer (language-model papers, which a reader of the llm topic would
    take), under new ids and categories."""
    tree = ET.parse(API_DOCUMENT)
    feed = tree.getroot()
    entries = feed.findall(f"{{{ATOM}}}entry")
    for entry in entries[len(LIKED):]:
        feed.remove(entry)
    for arxiv_id, entry in zip(LIKED, entries, strict=False):
        entry.find(f"{{{ATOM}}}id").text = f"http://arxiv.org/abs/{arxiv_id}v1"  # type: ignore[union-attr]
        title = entry.find(f"{{{ATOM}}}title")
        title.text = f"Liked {arxiv_id}: {title.text}"  # type: ignore[union-attr]
        for stamp in ("published", "updated"):
            entry.find(f"{{{ATOM}}}{stamp}").text = f"{DAY}T17:59:01Z"  # type: ignore[union-attr]
        for link in entry.findall(f"{{{ATOM}}}link"):
            link.set("href", re.sub(r"\d{4}\.\d{5}", arxiv_id, link.get("href", "")))
        for category in entry.findall(f"{{{ATOM}}}category"):
            entry.remove(category)
        ET.SubElement(entry, f"{{{ATOM}}}category", term="q-bio.OT")
        entry.find(f"{ARXIV}primary_category").set("term", "q-bio.OT")  # type: ignore[union-attr]
    path = folder / "liked.xml"
    tree.write(path, xml_declaration=True, encoding="utf-8")
    return path


def _feed_announcing(folder: Path, arxiv_id: str) -> Path:
    """Our feed of NEXT_DAY, whose one new paper is `arxiv_id` (version 1)."""
    text = COMBINED.read_text()
    items = re.findall(r"    <item>.*?</item>\n", text, re.S)
    first = re.sub(r"\d{4}\.\d{5}", arxiv_id, items[0])
    text = text.replace("".join(items), first)
    text = text.replace("Thu, 24 Sep 2026", "Fri, 25 Sep 2026")
    path = folder / "next_day.xml"
    path.write_text(text)
    return path


def _reader(engine: Engine, email: str) -> int:
    """A confirmed reader of every topic."""
    with db.transaction(engine) as session:
        row = subs.ensure(session, email, NOW)
        every_topic = reader_input.parse_preferences(list(built_in().slugs))
        subs.update_preferences(session, row, every_topic, NOW)
        subs.confirm_now(session, row, "admin", reader_input.Client(), NOW)
        assert row.id is not None
        return row.id


def _titles(engine: Engine) -> dict[str, str]:
    with Session(engine) as session:
        return {p.arxiv_id: p.title for p in session.exec(select(Paper).where(
            Paper.arxiv_id.in_(LIKED)))}  # type: ignore[union-attr]


def _carded(engine: Engine) -> set[str]:
    with Session(engine) as session:
        return set(session.exec(select(Paper.arxiv_id).join(
            Card, Card.paper_id == Paper.id)))  # type: ignore[arg-type]


def _embedded(engine: Engine) -> set[str]:
    with Session(engine) as session:
        return set(session.exec(select(Paper.arxiv_id).join(
            PaperVector, PaperVector.paper_id == Paper.id)))  # type: ignore[arg-type]


def _candidates(engine: Engine, day: date) -> set[str]:
    with Session(engine) as session:
        return {c.key for c in candidates(session, day, day)}


def _page(client: FlaskClient, path: str) -> str:
    # The front page is rendered at most every 30 s: forget the copy made before.
    cached = client.application.extensions
    for stale in [k for k in cached if isinstance(k, tuple) and k[0] == site._TODAY]:
        del cached[stale]
    answer = client.get(path)
    assert answer.status_code == 200, path
    return answer.get_data(as_text=True)


def test_liked_papers_shape_their_readers_model_and_reach_nobody_else(
        client: FlaskClient, web_settings: Settings, engine: Engine, database_url: str,
        tmp_path: Path) -> None:
    ingest_files(engine, [COMBINED])
    summarize_pending(engine, web_settings)
    liking, other = _reader(engine, "liking@example.org"), _reader(engine, "other@example.org")
    with ArxivAPI(_liked_document(tmp_path)) as arxiv:
        settings = asking(web_settings, arxiv)
        with db.transaction(engine) as session:
            learn.set_interests(session, liking, None, " ".join(LIKED), settings=settings)
            learn.set_interests(session, other, ON_TIDE, "", settings=settings)
        embedded = run(database_url, "embed", ARXIV_API_URL=settings.arxiv_api_url)
        assert embedded.exit_code == 0, embedded.output
        assert len(arxiv.requests) == 1
    titles = _titles(engine)
    assert sorted(titles) == sorted(LIKED)  # fetched and stored,
    assert _embedded(engine) >= set(LIKED)  # with vectors,
    with Session(engine) as session:  # teaching the reader who likes them
        assert learn.interests_of(session, liking).missing == ()
        assert session.get(ReaderModelRow, liking) is not None
    summarize_pending(engine, web_settings)
    assert not _carded(engine) & set(LIKED)  # no card: they are in no day

    # The site: not among the day's papers, on no day, no page of their own.
    for path in ("/", f"/days/{DAY}", "/days"):
        page = _page(client, path)
        assert not [t for t in titles.values() if t in page], path
    assert client.get(f"/papers/{LIKED[0]}").status_code == 404
    # Nobody's digest picks them, not even their reader's.
    assert not _candidates(engine, DAY) & set(LIKED)
    for email in ("liking@example.org", "other@example.org"):
        previewed = delivery.preview(engine, web_settings, email, day=DAY)
        assert previewed is not None, email
        assert not [t for t in titles.values() if t[:40] in previewed.text], email

    # Our feed announces one of them the next day: from then on it is a paper like any.
    ingest_files(engine, [_feed_announcing(tmp_path, LIKED[0])])
    assert _candidates(engine, NEXT_DAY) == {LIKED[0]}
    summarize_pending(engine, web_settings)
    assert LIKED[0] in _carded(engine) and not _carded(engine) & set(LIKED[1:])
    front = _page(client, "/")
    assert titles[LIKED[0]] in front and titles[LIKED[1]] not in front
    assert titles[LIKED[0]] in _page(client, f"/papers/{LIKED[0]}")
    assert titles[LIKED[0]] in _page(client, f"/days/{NEXT_DAY}")


def _entry(version: int, announce_type: str, day: date | None,
           first_day: date | None = None) -> PaperEntry:
    return PaperEntry(key=LIKED[0], arxiv_id=LIKED[0], version=version, title="T",
                      abstract="A", authors=(), categories=("cs.LG",), primary_category=None,
                      announce_type=announce_type, announced_on=day, abs_url=None,
                      pdf_url=None, first_announced_on=first_day)


def test_a_paper_no_feed_listed_takes_the_day_of_the_first_feed_that_lists_it() -> None:
    liked_v2 = new_row(_entry(2, "replace", None))  # fetched for a reader: no day
    assert (liked_v2["announced_on"], liked_v2["revised_on"]) == (None, None)

    def days(entry: PaperEntry) -> tuple[date | None, date | None]:
        merged = {**liked_v2, **merge(liked_v2, entry)}
        return merged["announced_on"], merged["revised_on"]

    # As a paper first seen in that entry would be: a revision (the same version, or a
    # newer one) is revised that day; a late listing of an older version is new that day.
    assert days(_entry(2, "replace", NEXT_DAY)) == (None, NEXT_DAY)
    assert days(_entry(3, "replace-cross", NEXT_DAY)) == (None, NEXT_DAY)
    assert days(_entry(1, "new", NEXT_DAY)) == (NEXT_DAY, None)
    assert days(_entry(1, "cross", NEXT_DAY, first_day=DAY)) == (DAY, None)
    # Another fetch for a reader lists nothing.
    assert days(_entry(3, "replace", None)) == (None, None)
    # A listed paper keeps its days: only a newer version marks it revised.
    listed = new_row(_entry(1, "new", DAY))
    assert merge(listed, _entry(1, "cross", NEXT_DAY)) == {}
    assert merge(listed, _entry(2, "replace", NEXT_DAY))["revised_on"] == NEXT_DAY
