"""In headless Chromium: open a mailed digest, rate a paper, and see the next preview change."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import Engine

from newsletter import delivery
from newsletter.cards.summarize import summarize_pending
from newsletter.config import Settings
from newsletter.db import transaction
from newsletter.ingest.store import ingest_files
from newsletter.readers import reader_input
from newsletter.readers import subscriber as subs
from newsletter.relevance.embed import embed_pending
from tests.conftest import ARXIV_FIXTURES
from tests.support.web import chromium, live_site, mails_in

DAY = date(2026, 4, 27)  # the digest mailed
NEXT = date(2026, 9, 24)  # the next edition, previewed before and after the rating


@pytest.fixture
def site(settings: Settings, engine: Engine, tmp_path: Path) -> Iterator[Settings]:
    with live_site(settings.model_copy(update={"mail_backend": "file",
                                                "outbox_dir": tmp_path / "outbox"}),
                   engine) as served:
        yield served


def _scores(engine: Engine, settings: Settings) -> dict[str, int]:
    found = delivery.preview(engine, settings, "reader@example.org", day=NEXT)
    assert found is not None
    return {p["arxiv_id"]: p["score"] for p in found.picks}


def test_rate_a_paper_from_the_digest_and_the_next_preview_changes(
    site: Settings, engine: Engine, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    ingest_files(engine, [*sorted(ARXIV_FIXTURES.glob("rss_cs.*_2026-04-27.xml")),
                          ARXIV_FIXTURES / "rss_cs.LG+cs.AI+cs.CL+stat.ML_2026-09-24.xml"])
    summarize_pending(engine, site)
    embed_pending(engine, site)
    with transaction(engine) as session:
        row = subs.ensure(session, "reader@example.org", subs._utcnow())
        subs.update_preferences(session, row, reader_input.parse_preferences(
            ["llm", "vision", "nlp", "theory", "optimization", "generative"]))
        subs.confirm_now(session, row, "admin", reader_input.Client())
    before = _scores(engine, site)
    assert delivery.send_edition(engine, site, day=DAY).sent == 1
    [mail] = mails_in(site.outbox_dir)
    digest = tmp_path / "digest.html"
    digest.write_text(mail.get_body(("html",)).get_content())  # type: ignore[union-attr]

    with chromium() as browser:
        page = browser.new_page()
        page.goto(digest.as_uri())
        first = page.locator("a", has_text="Less like this").first
        rated_key = first.get_attribute("href").split("/rate/")[1].split("/")[0]
        title = page.locator("a[href*='/papers/']").first.inner_text()
        first.click()
        # The link itself records nothing: a page with the paper and one button.
        expect(page.get_by_role("heading", name=title)).to_be_visible()
        assert _scores(engine, site) == before
        page.get_by_role("button", name="Less like this").click()
        expect(page.get_by_text("less like this").first).to_be_visible()

    after = _scores(engine, site)
    assert after != before
    with transaction(engine) as session:
        from newsletter.relevance.learn import ratings_of
        [rating] = ratings_of(session, row.id)  # type: ignore[arg-type]
    assert rating.value == -1 and rating.title == title and rated_key.startswith(f"{row.id}.")
