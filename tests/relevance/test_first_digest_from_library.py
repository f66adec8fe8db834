"""The promise of issue 25, end to end: a reader uploads their Zotero export on the sign-up
form, and their very first digest ranks their field's papers first.

One installation on SQLite and on Postgres: a whole real day of arXiv (2026-06-26, 334
papers of tests/fixtures/corpus, 91 of them computer vision) is listed; two readers sign up
on the site for the same broad topic, vision, one with their library
(tests/fixtures/library/imaging_reader_zotero.bib: 30 real medical-imaging papers from
earlier days, as Zotero exports items saved without an arXiv link) and their arXiv author
identifier, the other with neither. They confirm by the
mailed links. Then the scheduled sweep runs as it would: the author feed from the arXiv
stand-in, the library's titles looked up there (not found: they stand for themselves),
vectors from the OpenAI stand-in through the real `openai` client. The first digest each
would get (`delivery.preview`, what the send mails) is compared: the library reader's is
led by imaging papers (arXiv category eess.IV: MRI, CT, mammography, skin lesions), with a
why-line naming a paper of their library; the other reader's is not.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine
from sqlmodel import Session

from newsletter import db, delivery
from newsletter.config import Settings
from newsletter.digest import rank
from newsletter.ingest.paper import PaperEntry
from newsletter.ingest.store import store_entries
from newsletter.relevance import train
from newsletter.relevance.library import store as library_store
from newsletter.web import create_app
from tests.conftest import REPO
from tests.support.arxiv_server import ArxivAPI
from tests.support.openai_server import OpenAIServer, topical_embeddings
from tests.support.web import csrf_token, link, outbox

DAY = date(2026, 6, 26)
SAMPLE = REPO / "tests" / "fixtures" / "corpus" / "arxiv_ml_sample.jsonl.gz"
LIBRARY = REPO / "tests" / "fixtures" / "library" / "imaging_reader_zotero.bib"
FIELD = "eess.IV"
TIDE, ADMM = "2604.26951", "2604.26932"


def _the_day(engine: Engine) -> dict[str, list[str]]:
    """The day's real papers, listed; arXiv id -> categories."""
    with gzip.open(SAMPLE, "rt", encoding="utf-8") as lines:
        papers = [p for p in map(json.loads, lines) if p["date"] == DAY.isoformat()]
    entries = [PaperEntry(
        key=p["arxiv_id"], arxiv_id=p["arxiv_id"], version=1, title=p["title"],
        abstract=p["abstract"], authors=tuple(p["authors"]),
        categories=tuple(p["categories"]), primary_category=p["primary_category"],
        announce_type="new", announced_on=DAY, first_announced_on=DAY,
        abs_url=f"https://arxiv.org/abs/{p['arxiv_id']}",
        pdf_url=f"https://arxiv.org/pdf/{p['arxiv_id']}") for p in papers]
    with db.transaction(engine) as session:
        store_entries(session, entries)
    return {p["arxiv_id"]: p["categories"] for p in papers}


@pytest.fixture
def stand_ins() -> Iterator[tuple[OpenAIServer, ArxivAPI]]:
    with (OpenAIServer(embed_script=topical_embeddings) as openai,
          ArxivAPI(authors={"grapa_j_1": [TIDE, ADMM]}) as arxiv):
        yield openai, arxiv


@pytest.fixture
def site_settings(settings: Settings, tmp_path: Path,
                  stand_ins: tuple[OpenAIServer, ArxivAPI]) -> Settings:
    openai, arxiv = stand_ins
    return settings.model_copy(update={
        "outbox_dir": tmp_path / "outbox", "signup_rate_limit": "1000/minute",
        "base_url": "http://paperwire.test",
        "arxiv_api_url": f"{arxiv.url}/api/query", "arxiv_author_url": f"{arxiv.url}/a",
        "openai_api_key": "test-key", "openai_base_url": openai.base_url,
        "embedding_dimensions": 512, "llm_max_attempts": 1, "llm_backoff": 0})


@pytest.fixture
def site(site_settings: Settings, engine: Engine) -> Iterator[Flask]:
    yield create_app(site_settings, engine=engine)


def _sign_up(client: FlaskClient, settings: Settings, email: str, **own: object) -> None:
    answer = client.post("/subscribe", data={
        "email": email, "topics": ["vision"], "frequency": "daily", **own},
        content_type="multipart/form-data")
    assert answer.status_code == 200, answer.get_data(as_text=True)
    confirm = link(outbox(settings)[-1], "confirm")
    confirmed = client.post(confirm, data={"csrf_token": csrf_token(client, confirm)})
    assert confirmed.status_code == 200, confirmed.get_data(as_text=True)


def test_a_zotero_export_on_the_sign_up_form_leads_the_first_digest_with_its_field(
        site: Flask, site_settings: Settings, engine: Engine,
        stand_ins: tuple[OpenAIServer, ArxivAPI]) -> None:
    categories = _the_day(engine)
    relevant = {i for i, c in categories.items() if FIELD in c}
    assert 5 <= len(relevant) <= 12  # a niche: a few papers of the day's 334

    client = site.test_client()
    with LIBRARY.open("rb") as library:
        _sign_up(client, site_settings, "imaging@example.org", arxiv_author="grapa_j_1",
                 library=(library, "My Library.bib"))
    _sign_up(client, site_settings, "broad@example.org")

    # The sweep, as beat runs it: nothing of it happened in a web request.
    _, arxiv = stand_ins
    assert arxiv.requests == []
    report, retrained = train.embed_and_retrain(engine, site_settings)
    assert report.error is None and retrained >= 1
    assert arxiv.requests[0].path == "/a/grapa_j_1.atom2"
    with Session(engine) as session:
        reader = delivery_reader_id(session, "imaging@example.org")
        shelf = library_store.shelf_of(session, reader)
    states = [e.state for e in shelf.entries if e.source == "library"]
    assert states == ["text"] * 30  # on arXiv under no such title: each stands for itself
    assert all(e.vector_model and e.vector_model.startswith("openai:")
               for e in shelf.entries if e.source == "library")

    theirs = delivery.preview(engine, site_settings, "imaging@example.org", day=DAY)
    broad = delivery.preview(engine, site_settings, "broad@example.org", day=DAY)
    assert theirs is not None and broad is not None
    def field_papers(picks: list[dict[str, object]]) -> list[bool]:
        return [p["arxiv_id"] in relevant for p in picks
                if p["reasons"] != [rank.TUNING_REASON]][:10]

    mine, broad_reader = field_papers(theirs.picks), field_papers(broad.picks)
    shown = [(p["arxiv_id"], categories[str(p["arxiv_id"])]) for p in theirs.picks]
    assert mine[:2] == [True, True], shown  # led by their field
    assert sum(mine) >= 3, shown
    # The same topic without the library: its first field paper comes later, and fewer of
    # them make the first ten.
    assert broad_reader[:3] == [False] * 3, broad_reader
    assert sum(mine) > sum(broad_reader), (mine, broad_reader)
    # Its first pick says which of their own papers it is close to.
    assert any(r.endswith("” in your library") for r in theirs.picks[0]["reasons"])
    assert "in your library" in theirs.text


def delivery_reader_id(session: Session, email: str) -> int:
    from newsletter.readers.subscriber import find_by_email

    row = find_by_email(session, email)
    assert row is not None and row.id is not None
    return row.id
