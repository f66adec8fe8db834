"""A database that stops recording mid-send mails nobody twice (issue 22, finding 1), and
neither does a broker that goes away under a slow, rate-limiting provider.

The send journal keeps each request's outcome on disk before the ledger is told; the send
stops at the first outcome the database cannot record; the next send records what the
journal kept and sends only the rest. Faults are real: another connection holding
SQLite's write lock, Postgres stopped with `pg_ctl -m immediate stop` under Celery mail
workers. Every reader is counted at the SendGrid stand-in.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from celery import Celery
from click.testing import CliRunner
from sqlalchemy import Engine, text
from sqlmodel import Session, create_engine

from newsletter import db, delivery
from newsletter.admin import status
from newsletter.cards.summarize import summarize_pending
from newsletter.cli import main
from newsletter.config import Settings
from newsletter.ingest.store import ingest_files
from newsletter.mail.sendgrid import SendGridSender
from newsletter.readers.tables import Preferences, Subscriber
from newsletter.web import create_app
from tests.conftest import ARXIV_FIXTURES, migrated_sqlite
from tests.support.admin_desk import add_operator, sign_in
from tests.support.celery_procs import running, start_worker, wait_until
from tests.support.sendgrid_server import Fault, Received, SendGridServer
from tests.support.servers import postgres_of_its_own, redis_process

DAY = date(2026, 4, 27)  # the three single-category listings: 9 papers
KEY = "SG.journal"
MAIL_FROM = "Paperwire <digest@example.org>"


def add_readers(engine: Engine, emails: list[str]) -> None:
    with Session(engine) as session:
        people = [Subscriber(email=e, status="confirmed") for e in emails]
        session.add_all(people)
        session.flush()
        session.add_all(Preferences(subscriber_id=p.id, topics=["llm", "nlp"]) for p in people)
        session.commit()


def store(engine: Engine, settings: Settings, emails: list[str]) -> None:
    ingest_files(engine, sorted(ARXIV_FIXTURES.glob("rss_cs.*_2026-04-27.xml")))
    summarize_pending(engine, settings)
    add_readers(engine, emails)


def statuses(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return dict(conn.execute(text(  # type: ignore[arg-type]
            "SELECT status, count(*) FROM deliveries GROUP BY status")).all())


def journal_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.jsonl")) if folder.is_dir() else []


def mail_requests(sg: SendGridServer) -> list[Received]:
    return [r for r in sg.requests if r.path.endswith("/mail/send")]


def accepted_by(sg: SendGridServer) -> set[str]:
    return {a for m in sg.messages for a in m.to}


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return migrated_sqlite(tmp_path)


@pytest.fixture
def sg() -> Iterator[SendGridServer]:
    with SendGridServer(api_key=KEY) as server:
        yield server


def sender(sg: SendGridServer) -> SendGridSender:
    """Ten readers a request, so a chunk of forty takes four requests."""
    found = SendGridSender(KEY, MAIL_FROM, host=sg.url, timeout=5.0, max_attempts=2,
                           sleep=lambda _s: None)
    found.prepare()
    found.max_batch = 10
    return found


def test_a_database_that_stops_recording_mid_send_mails_nobody_twice(
        sqlite_url: str, sg: SendGridServer, tmp_path: Path) -> None:
    readers = [f"r{i:02d}@example.org" for i in range(40)]
    settings = Settings(database_url=sqlite_url, outbox_dir=tmp_path / "outbox",
                        base_url="http://paperwire.test", mail_backend="sendgrid",
                        sendgrid_api_key=KEY, sendgrid_host=sg.url, mail_from=MAIL_FROM)
    journal = settings.send_journal
    # The sender's connection gives up on a lock after a second, not SQLite's usual 30.
    engine = create_engine(sqlite_url, connect_args={"check_same_thread": False, "timeout": 1})
    store(engine, settings, readers)

    # Another process takes SQLite's write lock (a backup, a long migration) while the
    # first request is on its way: SendGrid accepts it, the ledger cannot record it.
    blocker = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"), isolation_level=None,
                              check_same_thread=False)

    def lock_on_first_mail(request: Received) -> None:
        if request.path.endswith("/mail/send") and not blocker.in_transaction:
            blocker.execute("BEGIN IMMEDIATE")

    first = sender(sg)
    sg.on_request = lock_on_first_mail
    with pytest.raises(Exception, match="database is locked"):
        delivery.send_edition(engine, settings, day=DAY, sender=first)
    # The send stopped before its next request: one request's readers went out, and the
    # journal has every one of them.
    assert len(mail_requests(sg)) == 1
    took = accepted_by(sg)
    assert len(took) == 10
    assert len(journal_files(journal)) == 1
    blocker.rollback()
    sg.on_request = None

    # Status and the edition's page show the readers in doubt, and what the journal holds.
    found = status.collect(engine, journal=journal)
    assert found.deliveries["sending"] == 40 and found.journal_accepted == 10
    assert any(line.startswith("in doubt: 40 deliveries") and "10 of them accepted" in line
               for line in found.lines())
    app = create_app(settings, engine=engine)
    desk = app.test_client()
    add_operator(engine)
    sign_in(desk)
    with engine.connect() as conn:
        edition_id = conn.execute(text("SELECT id FROM editions")).scalar_one()
    page = desk.get(f"/admin/editions/{edition_id}").get_data(as_text=True)
    assert "40 in doubt:" in page

    # The operator sends again once the lease has run out, as after a crash: the journal
    # records the ten, and only the thirty never requested are sent.
    later = datetime.now(UTC) + delivery.LEASE + timedelta(minutes=1)
    again = delivery.send_edition(engine, settings, day=DAY, sender=sender(sg),
                                  now=lambda: later)
    assert (again.journaled, again.sent) == (10, 30)
    assert "10 sent by a send that stopped, recorded from the send journal" in again.line()
    counts = sg.recipient_counts()
    assert set(counts) == set(readers) and set(counts.values()) == {1}
    assert statuses(engine) == {"sent": 40}
    assert journal_files(journal) == []
    with engine.connect() as conn:
        # The ten were recorded with the papers they got, so none reaches them again.
        carried = set(conn.execute(text(
            "SELECT DISTINCT s.email FROM sent_papers sp "
            "JOIN subscribers s ON s.id = sp.subscriber_id")).scalars())
    assert took <= carried
    assert status.collect(engine, journal=journal).deliveries["sending"] == 0
    blocker.close()
    engine.dispose()


def test_a_send_whose_journal_cannot_be_written_claims_and_sends_nothing(
        sqlite_url: str, sg: SendGridServer, tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    env = {"DATABASE_URL": sqlite_url, "OUTBOX_DIR": str(tmp_path / "outbox"),
           "MAIL_BACKEND": "sendgrid", "SENDGRID_API_KEY": KEY, "SENDGRID_HOST": sg.url,
           "MAIL_FROM": MAIL_FROM, "SEND_JOURNAL_DIR": str(tmp_path / "a-file" / "journal")}
    engine = db.make_engine(sqlite_url)
    store(engine, Settings(database_url=sqlite_url), ["ada@example.org"])
    result = CliRunner().invoke(main, ["send", "--date", DAY.isoformat()], env=env)
    assert result.exit_code == 1
    assert "cannot write the send journal in" in result.output
    assert "Traceback" not in result.output
    assert mail_requests(sg) == []
    assert statuses(engine) == {"pending": 1}
    engine.dispose()


# ------------------------------------------------------------------ Postgres, Celery

READERS = 300
CHUNK = 100  # three mail tasks, two at a time


@pytest.mark.postgres
@pytest.mark.redis
def test_a_postgres_outage_mid_send_through_celery_mails_everyone_once(
        redis_url: str, sg: SendGridServer, tmp_path: Path) -> None:
    readers = [f"r{i:03d}@example.org" for i in range(READERS)]
    with postgres_of_its_own() as pg:
        url = pg.url("paperwire")
        engine = db.make_engine(url)
        db.upgrade(engine)
        store(engine, Settings(database_url=url), readers)
        journal = tmp_path / "send-journal"
        env = {**os.environ, "DATABASE_URL": url, "REDIS_URL": redis_url,
               "MAIL_BACKEND": "sendgrid", "SENDGRID_API_KEY": KEY, "SENDGRID_HOST": sg.url,
               "MAIL_FROM": MAIL_FROM, "DELIVERY_CHUNK_SIZE": str(CHUNK),
               "SEND_JOURNAL_DIR": str(journal)}
        # The first digest request stops Postgres on its way in; SendGrid accepts it. Every
        # digest request waits for the stop: a chunk answered while Postgres was still
        # stopping would be recorded whole, and say nothing about the journal.
        stopped: list[float] = []
        stopping = threading.Lock()

        def stop_postgres(request: Received) -> None:
            if not request.path.endswith("/mail/send"):
                return
            with stopping:
                if not stopped:
                    pg.stop()
                    stopped.append(time.monotonic())

        sg.on_request = stop_postgres
        log = tmp_path / "worker.log"
        worker = start_worker(env, log, queues="mail", concurrency=2, name="mail")
        with running(worker):
            client = Celery("paperwire-test", broker=redis_url, backend=redis_url)
            client.send_task("paperwire.send_digests", args=("daily", DAY.isoformat()),
                             queue="mail")
            wait_until(lambda: stopped, 60, "a digest request", logs=(log,))
            # Each request in flight at the stop was answered, and its answer journaled.
            wait_until(lambda: (made := mail_requests(sg)) and all(r.answered for r in made),
                       30, "every request answered", logs=(log,))
            wait_until(lambda: len(journal_files(journal)) >= len(mail_requests(sg)), 30,
                       "the journal has each request", logs=(log,))
            during = len(mail_requests(sg))
            time.sleep(3)  # the workers retry against a stopped database meanwhile
            assert 1 <= len(mail_requests(sg)) == during <= 2  # one per pool process at most
            kept = sum(f.read_text().count('"answer"') for f in journal_files(journal))
            assert kept == during  # nobody in doubt: the journal has every outcome
            pg.start()
            wait_until(lambda: statuses(engine).get("sent") == READERS, 120,
                       "every reader recorded sent", logs=(log,))
        # The operator's `newsletter send` after the lease finds nothing left to send.
        later = datetime.now(UTC) + delivery.LEASE + timedelta(minutes=1)
        settings = Settings(database_url=url, mail_backend="sendgrid", sendgrid_api_key=KEY,
                            sendgrid_host=sg.url, mail_from=MAIL_FROM, send_journal_dir=journal)
        assert delivery.send_edition(engine, settings, day=DAY, now=lambda: later).sent == 0
        counts = sg.recipient_counts()
        assert set(counts) == set(readers) and set(counts.values()) == {1}
        assert statuses(engine) == {"sent": READERS}
        assert journal_files(journal) == []
        engine.dispose()


# ------------------------------------------------------------------ Redis, a slow provider


@pytest.mark.redis
def test_a_redis_outage_mid_send_with_a_slow_rate_limiting_provider_mails_everyone_once(
        sqlite_url: str, sg: SendGridServer, tmp_path: Path) -> None:
    readers = [f"r{i:02d}@example.org" for i in range(60)]
    engine = db.make_engine(sqlite_url)
    store(engine, Settings(database_url=sqlite_url), readers)
    journal = tmp_path / "send-journal"
    with redis_process() as redis:
        env = {**os.environ, "DATABASE_URL": sqlite_url, "REDIS_URL": redis.url,
               "MAIL_BACKEND": "sendgrid", "SENDGRID_API_KEY": KEY, "SENDGRID_HOST": sg.url,
               "MAIL_FROM": MAIL_FROM, "DELIVERY_CHUNK_SIZE": "10",
               "SEND_JOURNAL_DIR": str(journal), "OUTBOX_DIR": str(tmp_path / "outbox")}
        # The provider answers every mail request late, rate-limits the first two (retry in
        # a second), and Redis goes away as the third arrives: six chunks are queued in it.
        stopped: list[float] = []

        def slow_limited_and_redis_gone(request: Received) -> Fault | None:
            if not request.path.endswith("/mail/send"):
                return None
            mail = len(mail_requests(sg))
            if mail == 3 and not stopped:
                stopped.append(time.monotonic())
                redis.stop()
            if mail <= 2:
                return Fault(status=429, headers={"X-RateLimit-Reset": str(int(time.time()) + 1)})
            return Fault(delay=1.0)

        sg.on_request = slow_limited_and_redis_gone
        log = tmp_path / "worker.log"
        worker = start_worker(env, log, queues="mail", concurrency=2, name="mail")
        with running(worker):
            client = Celery("paperwire-test", broker=redis.url, backend=redis.url)
            client.send_task("paperwire.send_digests", args=("daily", DAY.isoformat()),
                             queue="mail")
            wait_until(lambda: stopped, 60, "Redis stopped mid-send", logs=(log,))
            time.sleep(3)
            redis.start()  # empty: the chunks still queued in it are gone with it
            wait_until(lambda: statuses(engine).get("sending", 0) == 0, 60,
                       "no delivery left sending", logs=(log,))
        # What the lost chunks held is sent by the next `newsletter send` (beat's next run,
        # or the operator's): every reader once, nobody twice, nothing stuck.
        later = datetime.now(UTC) + delivery.LEASE + timedelta(minutes=1)
        settings = Settings(database_url=sqlite_url, mail_backend="sendgrid",
                            sendgrid_api_key=KEY, sendgrid_host=sg.url, mail_from=MAIL_FROM,
                            send_journal_dir=journal, outbox_dir=tmp_path / "outbox")
        sg.on_request = None
        delivery.send_edition(engine, settings, day=DAY, now=lambda: later)
    counts = sg.recipient_counts()
    assert set(counts) == set(readers) and set(counts.values()) == {1}
    assert statuses(engine) == {"sent": len(readers)}
    assert journal_files(journal) == []
    engine.dispose()
