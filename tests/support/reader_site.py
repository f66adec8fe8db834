"""A reader's site as a newcomer meets it, for the browser tests of layout and accessibility
and for the README's screenshots: real arXiv listings with their offline cards, a confirmed
reader with interests and ratings, and a sign-up waiting for its confirmation.

`seed` returns the paths of every reader page that needs a token, signed with the keys
the site will use, so a test or a script can open each page as a reader would from a mail.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

from sqlalchemy import Engine
from sqlmodel import Session, select

from newsletter import db
from newsletter.cards.summarize import summarize_pending
from newsletter.config import Settings
from newsletter.db import transaction
from newsletter.ingest.paper import Paper
from newsletter.ingest.store import ingest_files
from newsletter.readers import reader_input
from newsletter.readers import subscriber as subs
from newsletter.readers.links import LinkHolder, Links
from newsletter.relevance.tables import Rating
from tests.conftest import ARXIV_FIXTURES
from tests.support.web import live_site

# The latest day of the fixtures: the front page's day.
DAY = date(2026, 9, 24)
READER = "reader@example.org"
PENDING = "newcomer@example.org"


@dataclass(frozen=True)
class ReaderPages:
    """Paths on the site, each as a reader reaches it."""

    day: str
    paper: str
    paper_to_rate: str  # as opened from a digest: with the reader's rating buttons
    manage: str
    unsubscribe: str
    rate: str
    confirm: str


def seed(engine: Engine, settings: Settings) -> ReaderPages:
    """Fill a migrated, empty database; `settings` must be the ones the site signs with
    (links made with another key are 404s)."""
    # Two days of real listings: the front page's day, and an earlier one for /days.
    ingest_files(engine, [*sorted(ARXIV_FIXTURES.glob("rss_cs.*_2026-04-27.xml")),
                          ARXIV_FIXTURES / "rss_cs.LG+cs.AI+cs.CL+stat.ML_2026-09-24.xml"])
    summarize_pending(engine, settings)  # no API key: the offline cards a demo shows
    links = Links.from_settings(settings)
    now = datetime.now(UTC)
    with Session(engine) as session:
        papers = session.exec(select(Paper).where(Paper.announced_on == DAY)
                              .order_by(Paper.id)).all()
        paper_ids = [p.id for p in papers if p.id is not None]
        first_key = papers[0].key
    with transaction(engine) as session:
        reader = subs.ensure(session, READER, now)
        subs.update_preferences(session, reader, reader_input.parse_preferences(
            ["llm", "nlp", "efficient-ml"], "weekly",
            include_keywords="sparse attention, distillation", authors="Ada Lovelace",
            description="sparse attention for long-context inference; not medical imaging"))
        subs.confirm_now(session, reader, "admin", reader_input.Client())
        assert reader.id is not None
        holder = LinkHolder(reader.id, reader.link_key)
        # Ratings, so the manage page lists them with their buttons.
        session.add(Rating(subscriber_id=reader.id, paper_id=paper_ids[0], value=1))
        session.add(Rating(subscriber_id=reader.id, paper_id=paper_ids[1], value=-1))
        pending = subs.subscribe(session, PENDING, reader_input.parse_preferences(
            ["llm", "vision"], "daily"), now).subscriber
        assert pending.id is not None and pending.confirm_nonce is not None
        confirm = links.confirm_token(pending.id, pending.confirm_nonce)
    return ReaderPages(
        day=f"/days/{DAY.isoformat()}",
        paper=f"/papers/{first_key}",
        paper_to_rate=f"/papers/{first_key}?rate={links.rate_token(holder, paper_ids[0])}",
        manage=f"/manage/{links.manage_token(holder)}",
        unsubscribe=f"/unsubscribe/{links.unsubscribe_token(holder)}",
        rate=f"/rate/{links.rate_token(holder, paper_ids[2])}/up",
        confirm=f"/confirm/{confirm}",
    )


@contextlib.contextmanager
def served(folder: Path, *, production: bool = False) -> Iterator[tuple[Settings, ReaderPages]]:
    """The seeded site in a fresh SQLite database under `folder`, on loopback: the settings
    it runs with (BASE_URL is its address) and its reader pages.

    In development mode, as `newsletter demo` shows it (the dev note, the outbox), unless
    `production`: then the pages are those a deployed site's readers get, served over http
    on loopback (which settings refuse in production, so the mode is switched after they
    are checked). A fixed SECRET_KEY, mail to files and no API key, whatever the shell has.
    """
    url = f"sqlite:///{folder / 'paperwire.db'}"
    engine = db.make_engine(url)
    try:
        db.upgrade(engine)
        settings = Settings(database_url=url, secret_key="reader-site", dev_mode=True,
                            openai_api_key=None, mail_backend="file",
                            outbox_dir=folder / "outbox", signup_rate_limit="1000/minute",
                            # Liked papers are asked of arXiv: a closed port, never the real one.
                            arxiv_api_url="http://127.0.0.1:9/api/query")
        if production:
            settings = settings.model_copy(update={"dev_mode": False})
        with live_site(settings, engine) as site:
            yield site, seed(engine, site)
    finally:
        engine.dispose()
