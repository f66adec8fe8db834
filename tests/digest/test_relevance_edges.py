"""The learned ranking at its edges, through the commands an operator runs: an edition with
no papers (arXiv's holidays), with one paper, with papers not yet embedded, with every
paper excluded, and an edition where nobody has a model. A reader with a model must never
turn any of them into a crash of the send, the dry run or the preview.
"""

from __future__ import annotations

import json
import os
from datetime import date, timedelta
from pathlib import Path

import pytest
from celery import Celery
from click.testing import CliRunner, Result
from sqlalchemy import Engine, delete, text
from sqlmodel import Session, select

from newsletter.cards.summarize import summarize_pending
from newsletter.cli import main
from newsletter.config import Settings
from newsletter.ingest.paper import Paper
from newsletter.ingest.store import ingest_files
from newsletter.readers import reader_input, subscriber
from newsletter.relevance.embed import embed_pending
from newsletter.relevance.tables import PaperVector
from tests.conftest import ARXIV_FIXTURES
from tests.support.celery_procs import running, start_worker, wait_until
from tests.support.web import mails_in

DAY = date(2026, 4, 27)
DESCRIBE = "anomaly detection in athletics performance data"


@pytest.fixture
def settings(settings: Settings, tmp_path: Path) -> Settings:
    return settings.model_copy(update={"mail_backend": "file", "outbox_dir": tmp_path / "out",
                                       "base_url": "http://paperwire.test"})


def run(settings: Settings, *args: str) -> Result:
    env = {"DATABASE_URL": settings.database_url, "PAPERWIRE_DEV": "1",
           "OUTBOX_DIR": str(settings.outbox_dir), "MAIL_BACKEND": "file",
           "BASE_URL": settings.base_url, "ARXIV_API_URL": "http://127.0.0.1:9/api/query"}
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


def ok(settings: Settings, *args: str) -> str:
    answer = run(settings, *args)
    assert answer.exit_code == 0, answer.output
    return answer.output


def add_reader(settings: Settings, email: str, *extra: str) -> None:
    ok(settings, "subscribers", "add", email, "--topics", "time-series", "--confirmed", *extra)


@pytest.fixture
def day(engine: Engine, settings: Settings) -> None:
    ingest_files(engine, sorted(ARXIV_FIXTURES.glob("rss_cs.*_2026-04-27.xml")))
    summarize_pending(engine, settings)
    embed_pending(engine, settings)


def edition(settings: Settings, on: date, email: str) -> tuple[list[object], str, str]:
    """The preview's picks, the dry run's line and the send's line for the daily edition."""
    picks = json.loads(ok(settings, "preview", email, "--date", on.isoformat(), "--json"))
    dry = ok(settings, "send", "--dry-run", "--date", on.isoformat())
    sent = ok(settings, "send", "--date", on.isoformat())
    return picks, dry, sent


def test_an_edition_with_no_papers_sends_nothing_and_crashes_nothing(
        settings: Settings, day: None) -> None:
    add_reader(settings, "model@example.org", "--describe", DESCRIBE)
    add_reader(settings, "rules@example.org")
    holiday = DAY + timedelta(days=3)
    picks, dry, sent = edition(settings, holiday, "model@example.org")
    assert picks == []
    assert "2 subscribers; 0 would get a digest" in dry and "2 nothing new" in dry
    assert "send: 0 sent, 2 skipped (nothing new), 0 failed, 0 to retry" in sent
    assert mails_in(settings.outbox_dir) == []
    # Run again: both readers were settled, nothing is left half-done to retry.
    again = ok(settings, "send", "--date", holiday.isoformat())
    assert "0 sent, 0 skipped (nothing new), 0 failed, 0 to retry" in again
    # The preview (files) says plainly that there is nothing to send.
    assert "nothing new" in ok(settings, "preview", "model@example.org", "--date",
                               holiday.isoformat())


@pytest.mark.redis
def test_through_celery_an_edition_with_no_papers_settles_every_reader(
        engine: Engine, settings: Settings, day: None, redis_url: str, tmp_path: Path) -> None:
    add_reader(settings, "model@example.org", "--describe", DESCRIBE)
    add_reader(settings, "rules@example.org")
    holiday = DAY + timedelta(days=3)
    env = {**os.environ, "DATABASE_URL": settings.database_url, "REDIS_URL": redis_url,
           "MAIL_BACKEND": "file", "OUTBOX_DIR": str(settings.outbox_dir),
           "BASE_URL": settings.base_url}
    log = tmp_path / "worker.log"

    def settled() -> list[tuple[str, int]]:
        with engine.connect() as conn:
            return list(conn.execute(text("SELECT status, attempts FROM deliveries")).all())

    with running(start_worker(env, log, queues="mail", concurrency=1, name="edges")):
        client = Celery("paperwire-test", broker=redis_url, backend=redis_url)
        client.send_task("paperwire.send_digests", args=("daily", holiday.isoformat()),
                         queue="mail").get(timeout=60)
        wait_until(lambda: [s for s, _ in settled()] == ["skipped", "skipped"], 60,
                   "both readers settled", logs=(log,))
    assert settled() == [("skipped", 1), ("skipped", 1)]  # one try each, no crash to retry
    assert "Traceback" not in log.read_text()
    assert mails_in(settings.outbox_dir) == []


def test_an_edition_of_one_paper_reaches_the_reader_with_a_model(
        engine: Engine, settings: Settings, day: None) -> None:
    with Session(engine) as session:
        keep = session.exec(select(Paper).where(
            Paper.title.startswith("Performance Anomaly Detection"))).one()  # type: ignore[union-attr]
        session.execute(delete(Paper).where(Paper.id != keep.id))  # type: ignore[arg-type]
        session.commit()
        key = keep.key
    add_reader(settings, "model@example.org", "--describe", DESCRIBE)
    picks, _, _ = edition(settings, DAY, "model@example.org")
    assert [p["arxiv_id"] for p in picks] == [key]  # type: ignore[index]
    [mail] = mails_in(settings.outbox_dir)
    assert "Performance Anomaly Detection" in mail.as_string()


def test_papers_not_yet_embedded_are_chosen_by_the_rules(
        engine: Engine, settings: Settings, day: None) -> None:
    add_reader(settings, "model@example.org", "--describe", DESCRIBE)
    with Session(engine) as session:
        session.execute(delete(PaperVector))
        session.commit()
    picks, _, _ = edition(settings, DAY, "model@example.org")
    assert picks, "the day's anomaly papers still match the reader's topic"
    assert len(mails_in(settings.outbox_dir)) == 1


def test_a_reader_who_excludes_every_paper_gets_nothing_and_others_their_digest(
        engine: Engine, settings: Settings, day: None) -> None:
    add_reader(settings, "nothing@example.org", "--describe", DESCRIBE)
    with Session(engine) as session:
        row = subscriber.ensure(session, "nothing@example.org", subscriber._utcnow())
        # Every one of the day's papers has "the" in its abstract.
        subscriber.update_preferences(session, row, reader_input.parse_preferences(
            ["time-series"], exclude_keywords="the"))
        session.commit()
    add_reader(settings, "model@example.org", "--describe", DESCRIBE)
    picks, _, _ = edition(settings, DAY, "nothing@example.org")
    assert picks == []
    assert [str(m["To"]) for m in mails_in(settings.outbox_dir)] == ["model@example.org"]


def test_nobody_with_a_model_is_the_rules_alone(settings: Settings, day: None) -> None:
    add_reader(settings, "rules@example.org")
    picks, _, _ = edition(settings, DAY, "rules@example.org")
    assert picks and len(mails_in(settings.outbox_dir)) == 1
