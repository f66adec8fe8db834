"""kill -9 a mail worker in the middle of an edition for 2,000 readers, start another:
everyone gets exactly one digest, except the recipients of a request in flight at the
kill (who may get two), and nobody is missed."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from celery import Celery
from sqlalchemy import text
from sqlmodel import Session

from newsletter import db
from newsletter.cards.summarize import summarize_pending
from newsletter.config import Settings
from newsletter.ingest.store import ingest_files
from newsletter.readers.tables import Preferences, Subscriber
from tests.conftest import ARXIV_FIXTURES
from tests.support.celery_procs import kill_group, running, start_worker, wait_until
from tests.support.sendgrid_server import Fault, SendGridServer

READERS = 2000
CHUNK = 100  # 20 mail tasks of one SendGrid request each
LEASE = 4  # seconds before a dead worker's claimed rows may be taken again
VISIBILITY = 6  # seconds before a dead worker's unacknowledged task is handed out again


@pytest.fixture
def database_url(postgres_url: str) -> str:
    return postgres_url



def sent_emails(engine: object) -> set[str]:
    with engine.connect() as conn:  # type: ignore[attr-defined]
        return set(conn.execute(text(
            "SELECT s.email FROM deliveries d JOIN subscribers s ON s.id = d.subscriber_id "
            "WHERE d.status = 'sent'")).scalars())


@pytest.mark.postgres
@pytest.mark.redis
def test_a_killed_mail_worker_costs_nobody_their_digest(
    database_url: str, redis_url: str, tmp_path: Path,
) -> None:
    engine = db.make_engine(database_url)
    ingest_files(engine, sorted(ARXIV_FIXTURES.glob("rss_cs.*_2026-04-27.xml")))
    summarize_pending(engine, Settings(database_url=database_url))
    emails = [f"r{i:04d}@example.org" for i in range(READERS)]
    with Session(engine) as session:
        people = [Subscriber(email=e, status="confirmed") for e in emails]
        session.add_all(people)
        session.flush()
        session.add_all(Preferences(subscriber_id=p.id, topics=["llm", "nlp"]) for p in people)
        session.commit()

    with SendGridServer(api_key="sg-key") as sg:
        # Every request is accepted, and answered a little late: the kill lands mid-send.
        sg.on_request = lambda _r: Fault(delay=0.4)
        env = {
            **os.environ, "DATABASE_URL": database_url, "REDIS_URL": redis_url,
            "MAIL_BACKEND": "sendgrid", "SENDGRID_API_KEY": "sg-key", "SENDGRID_HOST": sg.url,
            "MAIL_FROM": "Paperwire <digest@example.org>",
            "DELIVERY_CHUNK_SIZE": str(CHUNK), "DELIVERY_LEASE_SECONDS": str(LEASE),
            "BROKER_VISIBILITY_TIMEOUT": str(VISIBILITY),
        }
        logs = (tmp_path / "first.log", tmp_path / "second.log")
        first = start_worker(env, logs[0], queues="mail", concurrency=2, name="first")
        with running(first):
            client = Celery("paperwire-test", broker=redis_url, backend=redis_url)
            planned = client.send_task("paperwire.send_digests", args=("daily", "2026-04-27"),
                                       queue="mail").get(timeout=60)
            assert planned == {"edition_id": planned["edition_id"], "chunks": READERS // CHUNK,
                               "deliveries": READERS}
            wait_until(lambda: len(sg.requests) >= 5, 60, "five requests sent", logs=logs)
            kill_group(first)
        killed_at = time.monotonic()
        at_kill = len(sg.requests)
        sent_before_kill = sent_emails(engine)
        assert 0 < len(sent_before_kill) < READERS, "the kill must land mid-edition"

        # The dead worker's tasks come back once their visibility timeout has passed.
        time.sleep(max(0.0, VISIBILITY + 1 - (time.monotonic() - killed_at)))
        second = start_worker(env, logs[1], queues="mail", concurrency=2, name="second")
        with running(second):
            wait_until(lambda: len(sent_emails(engine)) == READERS, 60,
                       "every delivery sent", logs=logs)
        counts = sg.recipient_counts()
        requests = list(sg.requests)

    with engine.connect() as conn:
        statuses = dict(conn.execute(text(
            "SELECT status, count(*) FROM deliveries GROUP BY status")).all())
    engine.dispose()
    assert statuses == {"sent": READERS}
    assert set(counts) == set(emails), "nobody is missed, nobody else is mailed"

    def recipients(request: object) -> set[str]:
        return {to["email"] for p in request.payload["personalizations"]  # type: ignore[attr-defined]
                for to in p["to"]}

    # In flight at the kill: requests made before it whose readers it had not marked sent.
    in_flight = [r for r in requests[:at_kill] if recipients(r) - sent_before_kill]
    twice = {e for e, n in counts.items() if n > 1}
    assert max(counts.values()) <= 2
    assert len(in_flight) <= 2  # one per pool process
    assert twice <= set().union(*(recipients(r) for r in in_flight))
