"""Issue 26 end to end: a Paperwire for a biology lab, on SQLite and on Postgres.

The operator points TAXONOMY_FILE at the shipped genomics and cell biology taxonomy and
SOURCES at arXiv and bioRxiv. Two readers sign up on the site for biology topics and
confirm by the mailed link. The scheduled ingest reads arXiv's listing (a stand-in serving a
real listing) and two pages of bioRxiv's details API (tests/support/biorxiv_server.py);
one preprint there is also on arXiv (the same title and first author). Cards are written
offline, filed by the tagger under the biology topics, and the day's digests go out. Each
reader gets the bioRxiv preprints of their topics, with the right topic pills and a link to
bioRxiv; the paper on both arXiv and bioRxiv is one paper, mailed once, with both links.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from sqlalchemy import Engine, func
from sqlmodel import Session, select

from newsletter import delivery
from newsletter.cards.card import Card
from newsletter.cards.summarize import summarize_pending
from newsletter.config import Settings
from newsletter.ingest import preprints
from newsletter.ingest.fetch import Fetcher
from newsletter.ingest.paper import Paper
from newsletter.ingest.run import ingest_feeds
from newsletter.topics import taxonomy
from newsletter.web import create_app
from tests.conftest import arxiv_fixture
from tests.support.biorxiv_server import BiorxivAPI
from tests.support.http import Reply, ScriptedServer
from tests.support.web import csrf_token, html_of, link, outbox, text_of

DAY = date(2026, 9, 24)
LISTING = arxiv_fixture("rss_cs.LG+cs.AI+cs.CL+stat.ML_2026-09-24.xml").read_bytes()
TWIN_TITLE = "Outlier Detection for Multi-Network Data"


@pytest.fixture
def biology(settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
            ) -> Iterator[Settings]:
    monkeypatch.setattr(preprints, "_utc_today", lambda: DAY)
    with (BiorxivAPI(page_size=10) as biorxiv,
          ScriptedServer(lambda _: Reply(200, LISTING)) as arxiv):
        yield settings.model_copy(update={
            "taxonomy_file": taxonomy.shipped_path("biology"),
            "sources": ("arxiv", "biorxiv"), "biorxiv_api_url": biorxiv.url,
            "arxiv_rss_url": f"{arxiv.url}/rss/", "outbox_dir": tmp_path / "outbox",
            "signup_rate_limit": "1000/minute", "base_url": "http://lab.test"})


def _sign_up(client: FlaskClient, settings: Settings, email: str, *topics: str) -> None:
    answer = client.post("/subscribe", data={"email": email, "topics": list(topics),
                                             "frequency": "daily"})
    assert answer.status_code == 200, answer.get_data(as_text=True)
    confirm = link(outbox(settings)[-1], "confirm")
    confirmed = client.post(confirm, data={"csrf_token": csrf_token(client, confirm)})
    assert confirmed.status_code == 200, confirmed.get_data(as_text=True)


def _digest_to(settings: Settings, email: str) -> tuple[str, str]:
    """The one digest the reader got (their confirmation and welcome mails aside)."""
    [mail] = [m for m in outbox(settings)
              if m["To"] == email and "List-Unsubscribe-Post" in m and "Welcome" not in
              (m["Subject"] or "")]
    return text_of(mail), html_of(mail)


def test_a_biology_lab_gets_biorxiv_digests_under_its_own_topics(
        biology: Settings, engine: Engine) -> None:
    site = create_app(biology, engine=engine)
    client = site.test_client()
    form = client.get("/").get_data(as_text=True)
    assert "Cell Biology" in form and "Large Language Models" not in form
    assert "Today's new papers in genomics and cell biology" in form
    assert "machine-learning" not in form
    _sign_up(client, biology, "cells@example.org", "cell-biology")
    _sign_up(client, biology, "omics@example.org", "single-cell", "genomics")
    confirmation = text_of(outbox(biology)[0])
    assert "digest of new papers in genomics and cell biology" in " ".join(confirmation.split())

    lines: list[str] = []
    summary = ingest_feeds(engine, biology, fetcher=Fetcher(timeout=2, retries=0),
                           progress=lines.append)
    assert summary.errors == 0, lines
    assert any(line.startswith("bioRxiv: 12 items, 11 new") and
               "1 already known from another source" in line for line in lines), lines
    with Session(engine) as session:
        twins = session.exec(select(Paper).where(Paper.title == TWIN_TITLE)).all()
    assert len(twins) == 1 and twins[0].source == "arxiv"
    assert [item["source"] for item in twins[0].also_on or []] == ["biorxiv"]

    report = summarize_pending(engine, biology)
    assert report.failed == 0 and report.written > 0
    with Session(engine) as session:
        filed = dict(session.exec(select(Paper.title, Card.topics).join(
            Card, Card.paper_id == Paper.id).where(Paper.source == "biorxiv")).all())
        assert session.exec(select(func.count()).select_from(Card)).one() == report.written
    slugs = set(taxonomy.built_in("biology").slugs)
    assert all(topics and set(topics) <= slugs for topics in filed.values()), filed
    fission = next(t for title, t in filed.items() if title.startswith("Mitochondrial fission"))
    long_reads = next(t for title, t in filed.items() if title.startswith("Long-read"))
    atlas = next(t for title, t in filed.items() if title.startswith("scAtlasMap"))
    assert "cell-biology" in fission and "genomics" in long_reads and "single-cell" in atlas

    delivery.send_edition(engine, biology, day=DAY)
    cells_text, cells_html = _digest_to(biology, "cells@example.org")
    omics_text, _ = _digest_to(biology, "omics@example.org")
    assert "Mitochondrial fission" in cells_text and "Cell Biology" in cells_text
    assert "Long-read sequencing" not in cells_text
    assert "scAtlasMap" in omics_text and "Long-read sequencing" in omics_text
    assert "Mitochondrial fission" not in omics_text
    # Its link is bioRxiv's, named so.
    assert "https://www.biorxiv.org/content/10.1101/2026.09.21.677450v1" in cells_html
    assert ">bioRxiv</a>" in cells_html
    # The work on both arXiv and bioRxiv: in at most one digest each, once, with both links.
    for text in (cells_text, omics_text):
        assert text.count(TWIN_TITLE) <= 1
