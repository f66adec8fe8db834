"""The ingest task on a real Celery worker, through a real Redis server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from celery import Celery
from sqlalchemy import text

from newsletter import db
from tests.conftest import REPO, arxiv_fixture
from tests.support.http import Reply, ScriptedServer
from tests.support.servers import redis_server

COMBINED = arxiv_fixture("rss_cs.LG+cs.AI+cs.CL+stat.ML_2026-09-24.xml").read_bytes()


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    with redis_server() as url:
        yield url


@pytest.fixture
def arxiv() -> Iterator[ScriptedServer]:
    with ScriptedServer(lambda r: Reply(200, COMBINED)) as server:
        yield server


@pytest.fixture
def worker(
    redis_url: str, database_url: str, arxiv: ScriptedServer, tmp_path: Path
) -> Iterator[None]:
    env = {
        **os.environ,
        "REDIS_URL": redis_url,
        "DATABASE_URL": database_url,
        "ARXIV_RSS_URL": f"{arxiv.url}/rss/",
        "ARXIV_CATEGORIES": "cs.LG,cs.AI,cs.CL,stat.ML",
        "HTTP_RETRIES": "0",
    }
    log = (tmp_path / "worker.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "workers.app", "worker", "-Q", "ingest",
         "--pool", "solo", "--concurrency", "1", "--loglevel", "INFO", "--without-heartbeat",
         "--without-gossip", "--without-mingle"],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        yield
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


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
    assert entry["schedule"].hour == {0, 8, 16}
