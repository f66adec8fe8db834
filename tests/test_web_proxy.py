"""TRUSTED_PROXIES that fail safe: X-Forwarded-For is believed only from our own proxies,
and a setting that contradicts what requests show is logged with its fix."""

from __future__ import annotations

import logging

import pytest
from flask.testing import FlaskClient
from sqlalchemy import Engine

from newsletter.config import Settings
from newsletter.web import create_app
from tests.support import web

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
    with caplog.at_level(logging.WARNING):
        answers = [_post(client, n, "10.0.0.2", f"198.51.100.{n}") for n in range(4)]
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
