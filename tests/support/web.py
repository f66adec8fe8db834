"""Helpers for the web tests: an app on a test database, form tokens, the outbox."""

from __future__ import annotations

import re
from collections.abc import Iterator
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine

from newsletter.config import Settings
from newsletter.web import create_app

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture
def web_settings(settings: Settings, tmp_path: Path) -> Settings:
    return settings.model_copy(update={"outbox_dir": tmp_path / "outbox",
                                       "signup_rate_limit": "1000/minute",
                                       "base_url": "http://paperwire.test"})


@pytest.fixture
def app(web_settings: Settings, engine: Engine) -> Iterator[Flask]:
    yield create_app(web_settings, engine=engine)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def csrf_token(client: FlaskClient, path: str = "/") -> str:
    page = client.get(path)
    assert page.status_code == 200, page.status_code
    found = _CSRF.search(page.get_data(as_text=True))
    assert found, f"no CSRF token on {path}"
    return found.group(1)


def outbox(settings: Settings) -> list[EmailMessage]:
    folder = settings.outbox_dir
    if not folder.exists():
        return []
    return [message_from_bytes(p.read_bytes(), policy=default)  # type: ignore[misc]
            for p in sorted(folder.glob("*.eml"))]


def text_of(mail: EmailMessage) -> str:
    part = mail.get_body(("plain",))
    assert part is not None
    return part.get_content()


def html_of(mail: EmailMessage) -> str:
    part = mail.get_body(("html",))
    assert part is not None
    return part.get_content()


def link(mail: EmailMessage, kind: str) -> str:
    """The path of the first /<kind>/<token> link in a mail's text part."""
    found = re.search(rf"https?://[^/\s]+(/{kind}/[A-Za-z0-9_.\-]+)", text_of(mail))
    assert found, f"no {kind} link in:\n{text_of(mail)}"
    return found.group(1)


def subscribe(client: FlaskClient, email: str, topics: tuple[str, ...] = ("llm",),
              frequency: str = "daily", **extra: str):  # type: ignore[no-untyped-def]
    data = {"email": email, "topics": list(topics), "frequency": frequency,
            "csrf_token": csrf_token(client), **extra}
    return client.post("/subscribe", data=data)
