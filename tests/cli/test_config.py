"""Production is the default, and a production start without what it needs is refused by
every entry point (the CLI, gunicorn's create_app, the Celery worker), naming each problem."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from newsletter.cli import main
from newsletter.config import ConfigError, Settings, load_settings
from tests.conftest import REPO
from tests.support.servers import free_port

SECRET_LINE = ("SECRET_KEY is required in production (the default mode): set it to a long "
               "random string, or PAPERWIRE_DEV=1 for development")
BASE_URL_LINE = ("BASE_URL must be https in production, not http://127.0.0.1:8000: forms, "
                 "cookies and signed links are served over TLS only (or set PAPERWIRE_DEV=1 "
                 "for development)")


@pytest.fixture
def production_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, str]:
    """The environment of an operator who set nothing: no PAPERWIRE_DEV at all."""
    monkeypatch.delenv("PAPERWIRE_DEV")
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'paperwire.db'}")
    return dict(os.environ)


def test_production_is_the_default(production_env: dict[str, str]) -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings()
    assert str(raised.value) == f"invalid configuration:\n  {SECRET_LINE}\n  {BASE_URL_LINE}"


def test_production_with_a_key_and_https_starts(production_env: dict[str, str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SECRET_KEY", "s" * 40)
    monkeypatch.setenv("BASE_URL", "https://papers.example.org")
    settings = load_settings()
    assert not settings.dev_mode and settings.base_url == "https://papers.example.org"


def test_each_missing_piece_is_named_alone(production_env: dict[str, str],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BASE_URL", "https://papers.example.org")
    with pytest.raises(ConfigError) as raised:
        load_settings()
    assert str(raised.value) == f"invalid configuration:\n  {SECRET_LINE}"
    monkeypatch.delenv("BASE_URL")
    monkeypatch.setenv("SECRET_KEY", "s" * 40)
    with pytest.raises(ConfigError) as raised:
        load_settings()
    assert str(raised.value) == f"invalid configuration:\n  {BASE_URL_LINE}"


@pytest.mark.parametrize("value", ["1", "true", "yes"])
def test_dev_mode_is_explicit(production_env: dict[str, str], monkeypatch: pytest.MonkeyPatch,
                              value: str) -> None:
    monkeypatch.setenv("PAPERWIRE_DEV", value)
    settings = Settings()
    assert settings.dev_mode and settings.secret_key is None


def test_the_cli_refuses_to_start(production_env: dict[str, str]) -> None:
    result = CliRunner().invoke(main, ["papers"])
    assert result.exit_code == 1
    assert result.output == f"Error: invalid configuration:\n  {SECRET_LINE}\n  {BASE_URL_LINE}\n"


def _run(command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=120)


def test_gunicorn_refuses_to_start(production_env: dict[str, str]) -> None:
    done = _run([sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{free_port()}",
                 "--workers", "1", "newsletter.web:create_app()"], production_env)
    assert done.returncode != 0
    assert SECRET_LINE in done.stderr and BASE_URL_LINE in done.stderr
    assert "Worker failed to boot" in done.stderr


def test_the_celery_worker_refuses_to_start(production_env: dict[str, str]) -> None:
    done = _run([sys.executable, "-m", "celery", "-A", "workers.app", "worker", "--pool",
                 "solo"], production_env)
    assert done.returncode != 0
    assert SECRET_LINE in done.stderr and BASE_URL_LINE in done.stderr


@pytest.mark.parametrize(("command", "advice"), [
    (["ingest"], "run it again once the database is back"),
    (["status"], "run it again once the database is back"),
    (["subscribers", "--json"], "run it again once the database is back"),
    (["send"], "run `newsletter send` again once the database is back"),
])
def test_a_database_that_does_not_answer_is_one_line_not_a_traceback(
        command: list[str], advice: str) -> None:
    closed = f"postgresql+psycopg://paperwire@127.0.0.1:{free_port()}/paperwire"
    result = CliRunner().invoke(main, command, env={"DATABASE_URL": closed,
                                                    "PAPERWIRE_DEV": "1"})
    assert result.exit_code == 1
    assert "Traceback" not in result.output and result.exception is not None
    said = result.output.strip().splitlines()[-1]
    assert said.startswith("Error: the database did not answer (connection failed")
    assert advice in said
