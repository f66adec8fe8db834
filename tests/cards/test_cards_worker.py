"""The summarize task: its own queue, a sweep, and a run right after each ingest, on a real
Celery worker through a real Redis server."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from celery import Celery
from sqlalchemy import text

from newsletter import db
from tests.conftest import arxiv_fixture, migrated_sqlite
from tests.support.http import Reply, ScriptedServer
from tests.support.servers import celery_worker

COMBINED = arxiv_fixture("rss_cs.LG+cs.AI+cs.CL+stat.ML_2026-09-24.xml").read_bytes()



@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """SQLite only: this tests the task chain; the card store runs on Postgres elsewhere."""
    return migrated_sqlite(tmp_path)


@pytest.fixture
def worker(redis_url: str, database_url: str, tmp_path: Path) -> Iterator[None]:
    with ScriptedServer(lambda r: Reply(200, COMBINED)) as arxiv:
        env = {"REDIS_URL": redis_url, "DATABASE_URL": database_url,
               "ARXIV_RSS_URL": f"{arxiv.url}/rss/", "HTTP_RETRIES": "0"}
        with celery_worker(env, "ingest,llm", tmp_path / "worker.log"):
            yield


def card_sources(database_url: str) -> list[str]:
    engine = db.make_engine(database_url)
    with engine.connect() as conn:
        found = list(conn.execute(text("SELECT source FROM cards WHERE status = 'ok'")).scalars())
    engine.dispose()
    return found


@pytest.mark.redis
def test_ingest_is_followed_by_summarize_on_the_llm_queue(
    worker: None, redis_url: str, database_url: str
) -> None:
    client = Celery("paperwire-test", broker=redis_url, backend=redis_url)
    assert client.send_task("paperwire.ingest", queue="ingest").get(timeout=90)["added"] == 4
    # The ingest task queued the summarize task; wait for the worker to finish it.
    deadline = time.monotonic() + 90
    while len(card_sources(database_url)) < 4 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert card_sources(database_url) == ["offline"] * 4

    again = client.send_task("paperwire.summarize", queue="llm").get(timeout=90)
    assert (again["written"], again["failed"]) == (0, 0)


def test_summarize_has_its_queue_and_a_sweep() -> None:
    from workers.app import app

    assert app.conf.task_routes["paperwire.summarize"] == {"queue": "llm"}
    sweep = app.conf.beat_schedule["summarize-sweep"]
    assert sweep["task"] == "paperwire.summarize"
    assert sweep["schedule"].minute == {20, 50}
