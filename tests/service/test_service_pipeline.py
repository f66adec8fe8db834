"""The whole pipeline on real parts, driven by beat alone: Redis and Postgres servers,
a Celery worker and beat on a short schedule, arXiv served locally, the local OpenAI and
SendGrid servers. Nobody calls a task by hand: a confirmed reader simply gets a digest
whose cards the LLM wrote."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlmodel import Session, select

from newsletter import db
from newsletter.cards.card import Card
from newsletter.ingest.paper import Paper
from newsletter.readers.reader_input import SendTime
from newsletter.subscriptions.services import Services
from tests.conftest import arxiv_fixture
from tests.support.celery_procs import running, start_beat, start_worker, wait_until
from tests.support.http import Reply, ScriptedServer
from tests.support.openai_server import OpenAIServer
from tests.support.sendgrid_server import SendGridServer

READER = "reader@example.org"
FIXTURE_DAY = "Thu, 24 Sep 2026"


def todays_listing() -> bytes:
    """The real combined listing, re-dated to today: beat sends today's edition."""
    today = datetime.now(UTC).strftime("%a, %d %b %Y")
    text = arxiv_fixture("rss_cs.LG+cs.AI+cs.CL+stat.ML_2026-09-24.xml").read_text()
    assert FIXTURE_DAY in text
    return text.replace(FIXTURE_DAY, today).encode()


@pytest.fixture
def database_url(postgres_url: str) -> str:
    return postgres_url



@pytest.mark.postgres
@pytest.mark.redis
def test_beat_drives_ingest_cards_and_digest_to_a_reader(
    database_url: str, redis_url: str, tmp_path: Path,
) -> None:
    from newsletter.config import Settings
    from newsletter.subscriptions import signup
    from newsletter.topics.taxonomy import built_in

    engine = db.make_engine(database_url)
    # The reader signed up and confirmed on the site yesterday; any topic will do. They
    # asked for their digest at this hour (UTC), so beat's next look finds it due.
    now = datetime.now(UTC)
    signup.add(Services.build(Settings(database_url=database_url,
                                       outbox_dir=tmp_path / "outbox"), engine),
               READER, list(built_in().slugs), "daily", confirmed=True,
               send_time=SendTime("UTC", now.hour))
    with engine.begin() as conn:
        conn.execute(text("UPDATE subscribers SET confirmed_at = :at"),
                     {"at": now - timedelta(days=1)})

    listing = todays_listing()
    with ScriptedServer(lambda r: Reply(200, listing)) as arxiv, \
            OpenAIServer() as llm, SendGridServer(api_key="sg-key") as sg:
        env = {
            **os.environ,
            "DATABASE_URL": database_url, "REDIS_URL": redis_url,
            "ARXIV_RSS_URL": f"{arxiv.url}/rss/", "ARXIV_CATEGORIES": "cs.LG,cs.AI,cs.CL,stat.ML",
            "HTTP_RETRIES": "0",
            "OPENAI_API_KEY": "test-key", "OPENAI_BASE_URL": llm.base_url,
            "OPENAI_MODEL": "gpt-4o-mini", "LLM_BACKOFF": "0.01",
            "MAIL_BACKEND": "sendgrid", "SENDGRID_API_KEY": "sg-key", "SENDGRID_HOST": sg.url,
            "MAIL_FROM": "Paperwire <digest@example.org>",
            # Ingest at once and often, cards on a short sweep, the digest well after both:
            # four cards take seconds, and 40 s leaves room for a slow CI machine.
            "INGEST_SCHEDULE": "3s", "SUMMARIZE_SCHEDULE": "5s", "SEND_DUE_SCHEDULE": "40s",
        }
        worker_log = tmp_path / "worker.log"
        worker = start_worker(env, worker_log, pool="threads", concurrency=4)
        beat = start_beat(env, tmp_path)
        with running(beat, worker):
            wait_until(lambda: sg.messages_for(READER), 90, "a digest reached the reader",
                       logs=(worker_log, tmp_path / "beat.log"))

    with Session(engine) as session:
        cards = {p.key: c for p, c in session.exec(
            select(Paper, Card).join(Card, Card.paper_id == Paper.id))}  # type: ignore[arg-type]
    engine.dispose()
    assert arxiv.requests and arxiv.requests[0].path == "/rss/cs.LG+cs.AI+cs.CL+stat.ML"
    assert set(cards) == {"2609.26811", "2609.26820", "2205.06398", "2009.13987"}
    assert {c.source for c in cards.values()} == {"llm"}
    assert {c.title for c in llm.calls} >= {"Random Polytope Descriptors"}

    [digest] = sg.messages_for(READER)
    assert digest.text is not None
    # The digest carries the LLM's words, not the abstract: each card's first key point.
    carried = [c for c in cards.values() if c.key_points[0] in digest.text]
    assert carried, digest.text[:2000]
