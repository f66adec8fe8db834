"""The ingest task on a real Celery worker, through a real Redis server."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from celery import Celery
from sqlalchemy import text

from newsletter import db
from tests.conftest import arxiv_fixture
from tests.support.http import Reply, ScriptedServer
from tests.support.servers import celery_worker

COMBINED = arxiv_fixture("rss_cs.LG+cs.AI+cs.CL+stat.ML_2026-09-24.xml").read_bytes()



@pytest.fixture
def arxiv() -> Iterator[ScriptedServer]:
    with ScriptedServer(lambda r: Reply(200, COMBINED)) as server:
        yield server


@pytest.fixture
def worker(
    redis_url: str, database_url: str, arxiv: ScriptedServer, tmp_path: Path
) -> Iterator[None]:
    env = {
        "REDIS_URL": redis_url,
        "DATABASE_URL": database_url,
        "ARXIV_RSS_URL": f"{arxiv.url}/rss/",
        "ARXIV_CATEGORIES": "cs.LG,cs.AI,cs.CL,stat.ML",
        "HTTP_RETRIES": "0",
        "MAIL_BACKEND": "file",
        "OUTBOX_DIR": str(tmp_path / "outbox"),
    }
    with celery_worker(env, "ingest,llm,mail", tmp_path / "worker.log"):
        yield


@pytest.mark.redis
def test_ingest_task_runs_on_a_real_worker(
    worker: None, redis_url: str, database_url: str, arxiv: ScriptedServer
) -> None:
    client = Celery("paperwire-test", broker=redis_url, backend=redis_url)
    result = client.send_task("paperwire.ingest", queue="ingest").get(timeout=90)
    assert result["added"] == 4 and result["errors"] == 0
    assert arxiv.requests[0].path == "/rss/cs.LG+cs.AI+cs.CL+stat.ML"
    engine = db.make_engine(database_url)
    with engine.connect() as conn:
        keys = set(conn.execute(text("SELECT key FROM papers")).scalars())
    engine.dispose()
    assert keys == {"2609.26811", "2609.26820", "2205.06398", "2009.13987"}


def test_beat_ingests_every_eight_hours() -> None:
    from workers.app import app

    entry = app.conf.beat_schedule["ingest-every-8-hours"]
    assert entry["task"] == "paperwire.ingest"
    assert entry["schedule"].hour == {5, 13, 21}


def test_beat_looks_for_due_digests_every_quarter_hour_and_old_settings_are_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from newsletter.config import ConfigError, load_settings, settings
    from workers.app import make_celery

    settings.cache_clear()
    try:
        schedule = make_celery().conf.beat_schedule
    finally:
        settings.cache_clear()
    due = schedule["send-due-digests"]
    assert due["task"] == "paperwire.send_due"
    assert due["schedule"].minute == {0, 15, 30, 45} and due["schedule"].hour == set(range(24))
    assert not any(entry["task"] == "paperwire.send_digests" for entry in schedule.values())
    # An operator's old .env must not silently send at another hour.
    monkeypatch.setenv("DIGEST_HOUR_UTC", "9")
    with pytest.raises(ConfigError, match=r"DIGEST_HOUR_UTC is retired.*DEFAULT_SEND_HOUR"):
        load_settings()


@pytest.mark.redis
def test_digests_fan_out_to_mail_workers(
    worker: None, redis_url: str, database_url: str, tmp_path: Path
) -> None:
    from sqlmodel import Session

    from newsletter.cards.summarize import summarize_pending
    from newsletter.config import Settings
    from newsletter.ingest.store import ingest_files
    from newsletter.readers.tables import Preferences, Subscriber
    from tests.conftest import ARXIV_FIXTURES

    engine = db.make_engine(database_url)
    ingest_files(engine, sorted(ARXIV_FIXTURES.glob("rss_cs.*_2026-04-27.xml")))
    summarize_pending(engine, Settings(database_url=database_url))
    with Session(engine) as session:
        people = [Subscriber(email=f"r{i}@example.org", status="confirmed") for i in range(5)]
        session.add_all(people)
        session.flush()
        session.add_all(Preferences(subscriber_id=p.id, topics=["llm"]) for p in people)
        session.commit()

    client = Celery("paperwire-test", broker=redis_url, backend=redis_url)
    planned = client.send_task("paperwire.send_digests", args=("daily", "2026-04-27"),
                               queue="mail").get(timeout=60)
    assert planned["deliveries"] == 5
    # The chunk runs on the worker after send_digests returns: wait for its rows.
    deadline = time.monotonic() + 60
    sent = 0
    while sent < 5 and time.monotonic() < deadline:
        time.sleep(0.2)
        with engine.connect() as conn:
            sent = conn.execute(text(
                "SELECT count(*) FROM deliveries WHERE status = 'sent'")).scalar_one()
    engine.dispose()
    assert sent == 5
    assert len(list((tmp_path / "outbox").glob("*.eml"))) == 5
