"""`newsletter status`, /healthz, and the schedules and lease the environment sets."""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine
from sqlmodel import Session

from newsletter import delivery
from newsletter.admin import status
from newsletter.cards.summarize import summarize_pending
from newsletter.config import Settings, load_settings, settings
from newsletter.ingest.store import ingest_files
from newsletter.readers.subscriber import suppress
from newsletter.subscriptions import signup
from newsletter.subscriptions.services import Services
from tests.conftest import ARXIV_FIXTURES
from tests.support.servers import free_port

DAY = date(2026, 4, 27)


@pytest.fixture
def busy(engine: Engine, settings: Settings, tmp_path: Path) -> Settings:
    """A store after a day's work: papers, cards, one edition sent, a suppressed address."""
    local = settings.model_copy(update={"outbox_dir": tmp_path / "outbox"})
    ingest_files(engine, sorted(ARXIV_FIXTURES.glob("rss_cs.*_2026-04-27.xml")))
    summarize_pending(engine, local)
    services = Services.build(local, engine)
    for email, topics in (("a@example.org", ["llm"]), ("b@example.org", ["robotics"])):
        signup.add(services, email, topics, "daily", confirmed=True)
    delivery.send_edition(engine, local, day=DAY)
    with Session(engine) as session:
        suppress(session, "gone@example.org", "bounce")
        session.commit()
    return local


def test_status_reports_the_days_work(engine: Engine, busy: Settings) -> None:
    found = status.collect(engine)
    assert found.papers_today == 0 and found.latest_day == DAY and found.papers_latest_day == 9
    assert (found.cards_pending, found.cards_failed) == (0, 0)
    assert {f.state for f in found.feeds} == {"ok"} and len(found.feeds) == 3
    assert found.last_ingest_age_seconds is not None and found.last_ingest_age_seconds < 600
    assert found.last_edition is not None and found.last_edition.day == DAY
    assert found.last_edition.deliveries["sent"] + found.last_edition.deliveries["skipped"] == 2
    assert found.deliveries["sent"] >= 1 and found.suppressed == 1
    assert (found.llm_cards_today, found.llm_cost_today_usd) == (0, 0.0)  # offline cards


def test_status_command_prints_text_and_json(database_url: str, busy: Settings) -> None:
    from newsletter.cli import main

    env = {"DATABASE_URL": database_url}
    shown = CliRunner().invoke(main, ["status"], env=env)
    assert shown.exit_code == 0, shown.output
    assert "last edition: daily 2026-04-27" in shown.stdout
    assert "suppressed addresses: 1" in shown.stdout
    data = json.loads(CliRunner().invoke(main, ["status", "--json"], env=env).stdout)
    assert data["latest_day"] == "2026-04-27" and data["suppressed"] == 1
    assert set(data["deliveries"]) == {"pending", "sending", "sent", "failed", "skipped"}


def test_health_names_a_broker_that_is_down(engine: Engine, busy: Settings) -> None:
    body, code = status.health(engine, f"redis://127.0.0.1:{free_port()}/0")
    assert code == 200 and body["status"] == "degraded" and body["broker"] == "error"
    assert body["database"] == "ok" and isinstance(body["last_ingest_age_seconds"], int)


def test_schedules_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from celery.schedules import crontab, schedule

    from workers.app import make_celery

    monkeypatch.setenv("INGEST_SCHEDULE", "90s")
    monkeypatch.setenv("SUMMARIZE_SCHEDULE", "*/10 * * * *")
    monkeypatch.setenv("SEND_DUE_SCHEDULE", "*/5 6-20 * * 1-5")
    settings.cache_clear()
    try:
        beat = make_celery().conf.beat_schedule
    finally:
        settings.cache_clear()
    ingest = beat["ingest-every-8-hours"]["schedule"]
    assert isinstance(ingest, schedule) and ingest.run_every == timedelta(seconds=90)
    sweep = beat["summarize-sweep"]["schedule"]
    assert isinstance(sweep, crontab) and sweep.minute == set(range(0, 60, 10))
    due = beat["send-due-digests"]["schedule"]
    assert due.hour == set(range(6, 21)) and due.minute == set(range(0, 60, 5))
    assert due.day_of_week == {1, 2, 3, 4, 5}


def test_a_bad_schedule_is_refused_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    from newsletter.config import ConfigError

    monkeypatch.setenv("INGEST_SCHEDULE", "30 25 * * *")
    monkeypatch.setenv("SEND_DUE_SCHEDULE", "quarterly")
    monkeypatch.setenv("DEFAULT_TIME_ZONE", "Mars/Olympus_Mons")
    with pytest.raises(ConfigError) as refused:
        load_settings()
    assert "INGEST_SCHEDULE" in str(refused.value)
    assert "SEND_DUE_SCHEDULE" in str(refused.value)
    assert "DEFAULT_TIME_ZONE: 'Mars/Olympus_Mons' is not an IANA time zone" in str(refused.value)


def test_the_delivery_lease_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    settings.cache_clear()
    assert delivery.lease() == delivery.LEASE
    monkeypatch.setenv("DELIVERY_LEASE_SECONDS", "30")
    settings.cache_clear()
    try:
        assert delivery.lease() == timedelta(seconds=30)
    finally:
        settings.cache_clear()
