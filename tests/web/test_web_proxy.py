"""TRUSTED_PROXIES that fail safe: X-Forwarded-For is believed only from our own proxies,
and a setting that contradicts what requests show is logged with its fix."""

from __future__ import annotations

import logging

import pytest
import yaml
from flask.testing import FlaskClient
from sqlalchemy import Engine

from newsletter import db
from newsletter.admin import accounts, audit
from newsletter.config import Settings
from newsletter.web import create_app
from tests.conftest import REPO
from tests.support import web
from tests.support.web import csrf_token

web_settings = web.web_settings


def _client(web_settings: Settings, engine: Engine, proxies: int) -> FlaskClient:
    configured = web_settings.model_copy(update={"trusted_proxies": proxies,
                                                 "signup_rate_limit": "2/minute"})
    return create_app(configured, engine=engine).test_client()


def _post(client: FlaskClient, n: int, peer: str, forwarded: str | None = None) -> int:
    headers = {"X-Forwarded-For": forwarded} if forwarded else {}
    data = {"email": f"r{n}@example.com", "topics": ["llm"], "frequency": "daily"}
    return client.post("/subscribe", data=data, headers=headers,
                       environ_base={"REMOTE_ADDR": peer}).status_code


def test_a_client_reaching_the_site_directly_cannot_pick_its_address(
    web_settings: Settings, engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    client = _client(web_settings, engine, proxies=1)
    with caplog.at_level(logging.WARNING):
        answers = [_post(client, n, "203.0.113.9", f"198.51.100.{n}") for n in range(3)]
    # Each post claims a fresh address, yet all count against the real peer.
    assert answers == [200, 200, 429]
    assert "came straight from 203.0.113.9" in caplog.text
    assert caplog.text.count("came straight from") == 1  # warned once, not per request


def test_behind_our_proxy_each_visitor_has_their_own_limit(
    web_settings: Settings, engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    client = _client(web_settings, engine, proxies=1)
    with caplog.at_level(logging.WARNING):  # nginx on the same host, as the README has it
        answers = [_post(client, n, "127.0.0.1", f"198.51.100.{n}") for n in range(4)]
    assert answers == [200, 200, 200, 200]
    assert "TRUSTED_PROXIES" not in caplog.text


def test_a_proxy_the_setting_does_not_know_about_is_named(
    web_settings: Settings, engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    client = _client(web_settings, engine, proxies=0)
    with caplog.at_level(logging.WARNING):
        answers = [_post(client, n, "127.0.0.1", f"198.51.100.{n}") for n in range(3)]
    assert answers == [200, 200, 429]  # everybody shares the proxy's bucket...
    assert "Set TRUSTED_PROXIES=1" in caplog.text  # ...and the log says how to fix it


def test_operators_can_trust_a_public_proxy_network(web_settings: Settings,
                                                    engine: Engine) -> None:
    configured = web_settings.model_copy(update={
        "trusted_proxies": 1, "signup_rate_limit": "2/minute",
        "trusted_proxy_networks": ("203.0.113.0/24",)})
    client = create_app(configured, engine=engine).test_client()
    assert [_post(client, n, "203.0.113.9", f"198.51.100.{n}") for n in range(3)] == [
        200, 200, 200]


# ---------------------------------------------------------------- safe defaults (issue 22)


def _sign_in(client: FlaskClient, n: int, peer: str, forwarded: str) -> int:
    data = {"csrf_token": csrf_token(client, "/admin/login"),
            "email": f"guess{n}@example.org", "password": "not the password at all"}
    return client.post("/admin/login", data=data, headers={"X-Forwarded-For": forwarded},
                       environ_base={"REMOTE_ADDR": peer}).status_code


def test_a_client_on_a_private_network_cannot_rotate_past_the_sign_in_limit(
    web_settings: Settings, engine: Engine
) -> None:
    """The review: straight to gunicorn from a private address, a fresh X-Forwarded-For
    each time, 25 of 25 guesses were checked. Only loopback is trusted by default, so the
    limit counts the peer itself."""
    with db.transaction(engine) as session:
        accounts.add(session, "ada@example.org", "correct horse battery staple", audit.CLI)
    client = _client(web_settings, engine, proxies=1)
    answers = [_sign_in(client, n, "10.1.2.3", f"198.51.100.{n}") for n in range(25)]
    assert answers == [403] * accounts.NETWORK_FAILURES + [429] * 5


def test_by_default_only_loopback_is_a_proxy_and_the_site_is_published_on_loopback(
) -> None:
    assert Settings.model_fields["trusted_proxy_networks"].default == ("127.0.0.0/8",
                                                                       "::1/128")
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    assert compose["services"]["web"]["ports"] == ["${WEB_PUBLISH:-127.0.0.1:8000}:8000"]
