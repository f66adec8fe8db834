"""Shared fixtures: the arXiv documents, and a migrated database on SQLite and Postgres."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from newsletter import db
from newsletter.config import Settings
from newsletter.mail import sendgrid_templates
from newsletter.topics import taxonomy
from tests.support.servers import Postgres, postgres_server, redis_server

REPO = Path(__file__).resolve().parent.parent
ARXIV_FIXTURES = Path(__file__).resolve().parent / "fixtures" / "arxiv"
LOCAL_FIXTURES = Path(__file__).resolve().parent / "fixtures"

# Variables a developer's shell may carry that would change what the tests exercise.
_ENV = ("DATABASE_URL", "REDIS_URL", "SECRET_KEY", "PAPERWIRE_DEV", "BASE_URL", "OPENAI_API_KEY",
        "OPENAI_BASE_URL", "OPENAI_MODEL", "MAIL_BACKEND", "SENDGRID_API_KEY", "SENDGRID_HOST",
        "SENDGRID_WEBHOOK_PUBLIC_KEY", "MAIL_FROM", "ARXIV_CATEGORIES", "DIGEST_HOUR_UTC",
        "DIGEST_SCHEDULE", "WEEKLY_DIGEST_SCHEDULE", "DEFAULT_TIME_ZONE", "DEFAULT_SEND_HOUR",
        "SEND_DUE_SCHEDULE", "WEEKLY_DIGEST_DAY",
        "ARXIV_RSS_URL", "ARXIV_API_URL", "FEED_URLS", "OUTBOX_DIR", "EMBEDDING_MODEL",
        "EMBEDDING_API_KEY", "EMBEDDING_BASE_URL",
        "EMBEDDING_DIMENSIONS", "SENDGRID_CLICK_TRACKING", "SENDGRID_OPEN_TRACKING",
        "ENGAGEMENT_RETENTION_DAYS", "ENGAGEMENT_CLEANUP_SCHEDULE", "DIGEST_MOST_READ",
        "TAXONOMY_FILE", "SOURCES", "BIORXIV_API_URL", "BIORXIV_CATEGORIES",
        "MEDRXIV_CATEGORIES", "BIORXIV_DAYS")


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in _ENV:
        monkeypatch.delenv(name, raising=False)
    # Each test's sends keep their journal apart (by default it is beside the outbox, which
    # many tests leave at ./outbox), and so do the workers a test starts.
    monkeypatch.setenv("SEND_JOURNAL_DIR", str(tmp_path / "send-journal"))
    # Production is the service's default; most tests exercise development mode (no
    # SECRET_KEY, http BASE_URL, the outbox viewer), and say PAPERWIRE_DEV=0 when they do not.
    monkeypatch.setenv("PAPERWIRE_DEV", "1")
    # A worker process remembers the SendGrid templates it has checked, by host. Each test's
    # SendGrid stand-in is a new account, and may get an earlier one's port: it must not
    # inherit that account's template ids.
    monkeypatch.setattr(sendgrid_templates, "_checked", {})
    # The process's taxonomy is installed by whichever app or command starts: each test
    # starts from the environment's (the built-in ML one).
    taxonomy.forget()


def arxiv_fixture(name: str) -> Path:
    path = ARXIV_FIXTURES / name
    if not path.exists():
        pytest.fail(f"{path} is missing from tests/fixtures/arxiv", pytrace=False)
    return path


@pytest.fixture(scope="session")
def pg() -> Iterator[Postgres]:
    with postgres_server() as server:
        yield server


_counter = itertools.count()


@pytest.fixture(scope="session")
def pg_template(pg: Postgres) -> str:
    """A database migrated once; each test copies it (CREATE DATABASE ... TEMPLATE)."""
    admin = db.make_engine(pg.url("postgres")).execution_options(isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text("CREATE DATABASE paperwire_template"))
    admin.dispose()
    template = db.make_engine(pg.url("paperwire_template"))
    db.upgrade(template)
    template.dispose()
    return "paperwire_template"


def _postgres_database(pg: Postgres, template: str) -> str:
    name = f"paperwire_test_{next(_counter)}"
    admin = db.make_engine(pg.url("postgres")).execution_options(isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name} TEMPLATE {template}"))
    admin.dispose()
    return pg.url(name)


def migrated_sqlite(folder: Path) -> str:
    """The URL of a migrated, empty SQLite database in `folder`."""
    url = f"sqlite:///{folder / 'paperwire.db'}"
    engine = db.make_engine(url)
    db.upgrade(engine)
    engine.dispose()
    return url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated, empty database: the test runs once on SQLite and once on Postgres."""
    if request.param == "sqlite":
        return migrated_sqlite(tmp_path)
    pg = request.getfixturevalue("pg")
    return _postgres_database(pg, request.getfixturevalue("pg_template"))


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = db.make_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(database_url=database_url, arxiv_api_delay=0, http_retries=2,
                    http_timeout=2, http_max_wait=5)


@pytest.fixture
def postgres_url(pg: Postgres, pg_template: str) -> str:
    """A migrated, empty Postgres database, for tests that only make sense on Postgres."""
    return _postgres_database(pg, pg_template)


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    """A real redis-server on a free loopback port, one per test module."""
    with redis_server() as url:
        yield url
