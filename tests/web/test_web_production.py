"""The site in production mode (the default): secure cookies, its headers, form origins, and
the dev outbox that answers only to a browser on this machine, and only in dev mode."""

from __future__ import annotations

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine, func
from sqlmodel import Session, select

from newsletter.config import Settings
from newsletter.readers import subscriber as subs
from newsletter.readers.tables import Subscriber
from newsletter.web import create_app
from newsletter.web.origin import foreign_post, origin_of
from tests.support import web
from tests.support.web import link, mails_in, subscribe

app, client, web_settings = web.app, web.client, web.web_settings

PUBLIC = "https://paperwire.test"
_CSRF_FIELD = 'name="csrf_token" value="'


@pytest.fixture
def production(web_settings: Settings) -> Settings:
    return web_settings.model_copy(update={"dev_mode": False, "secret_key": "p" * 40,
                                           "base_url": PUBLIC})


@pytest.fixture
def site(production: Settings, engine: Engine) -> FlaskClient:
    return create_app(production, engine=engine).test_client()


def _token(site: FlaskClient, path: str) -> str:
    page = site.get(path, base_url=PUBLIC).get_data(as_text=True)
    return page.split(_CSRF_FIELD, 1)[1].split('"', 1)[0]


def _signup(site: FlaskClient, email: str, headers: dict[str, str]):  # type: ignore[no-untyped-def]
    # The sign-up form has no token (docs/SECURITY.md, finding 10): the origin is its check.
    data = {"email": email, "topics": ["llm"], "frequency": "daily"}
    return site.post("/subscribe", data=data, headers=headers, base_url=PUBLIC)


def _count(engine: Engine) -> int:
    with Session(engine) as session:
        return session.exec(select(func.count()).select_from(Subscriber)).one()


def test_session_cookie_is_secure(site: FlaskClient, production: Settings) -> None:
    assert "Set-Cookie" not in site.get("/", base_url=PUBLIC).headers
    assert _signup(site, "reader@example.com", {"Origin": PUBLIC}).status_code == 200
    confirm = link(mails_in(production.outbox_dir)[-1], "confirm")
    # The first page with a form that acts for a reader sets the cookie its token needs.
    cookie = site.get(confirm, base_url=PUBLIC).headers["Set-Cookie"]
    assert "; Secure" in cookie and "; HttpOnly" in cookie and "SameSite=Lax" in cookie


def test_headers_and_no_dev_traces(site: FlaskClient) -> None:
    page = site.get("/", base_url=PUBLIC)
    assert page.headers["Strict-Transport-Security"] == "max-age=31536000"
    assert page.headers["Referrer-Policy"] == "same-origin"
    assert "form-action 'self'" in page.headers["Content-Security-Policy"]
    body = page.get_data(as_text=True)
    assert "Development mode" not in body and "/outbox" not in body
    # No page may weaken the header with a meta tag of its own.
    assert 'name="referrer"' not in body


@pytest.mark.parametrize(("headers", "accepted"), [
    ({"Origin": PUBLIC}, True),
    ({"Origin": "https://PAPERWIRE.test:443"}, True),
    ({"Referer": f"{PUBLIC}/days"}, True),  # a browser that sends no Origin
    ({"Origin": "null", "Referer": f"{PUBLIC}/"}, True),
    ({"Origin": "https://evil.example", "Referer": f"{PUBLIC}/"}, False),
    ({"Origin": "http://paperwire.test"}, False),  # the same host over plain http
    ({"Origin": "https://paperwire.test:8443"}, False),
    ({"Referer": "https://evil.example/paperwire.test/"}, False),
    ({"Origin": "null"}, False),
    ({}, False),
])
def test_forms_must_come_from_the_public_origin(site: FlaskClient, engine: Engine,
                                                headers: dict[str, str], accepted: bool) -> None:
    answer = _signup(site, "reader@example.com", headers)
    if accepted:
        assert answer.status_code == 200 and "Check your inbox" in answer.get_data(as_text=True)
        assert _count(engine) == 1
    else:
        assert answer.status_code == 400
        assert "This form has expired" in answer.get_data(as_text=True)
        assert _count(engine) == 0


def test_one_click_unsubscribe_needs_no_origin(site: FlaskClient, production: Settings,
                                               engine: Engine) -> None:
    same_site = {"Origin": PUBLIC}
    assert _signup(site, "reader@example.com", same_site).status_code == 200
    confirm = link(mails_in(production.outbox_dir)[-1], "confirm")
    done = site.post(confirm, data={"csrf_token": _token(site, confirm)}, headers=same_site,
                     base_url=PUBLIC)
    assert done.status_code == 200, done.get_data(as_text=True)
    unsubscribe = link(mails_in(production.outbox_dir)[-1], "unsubscribe")
    # RFC 8058: the mail provider posts with no cookie, no token and no Origin of ours.
    mailbox = create_app(production, engine=engine).test_client()
    answer = mailbox.post(unsubscribe, data="List-Unsubscribe=One-Click", base_url=PUBLIC,
                          content_type="application/x-www-form-urlencoded")
    assert answer.status_code == 200 and answer.get_data(as_text=True) == "You are unsubscribed.\n"
    with Session(engine) as session:
        row = subs.find_by_email(session, "reader@example.com")
        assert row is not None and row.status == "unsubscribed"


@pytest.mark.parametrize(("url", "origin"), [
    ("https://Example.org/a/b?c#d", "https://example.org"),
    ("https://example.org:443/", "https://example.org"),
    ("http://example.org:80", "http://example.org"),
    ("https://example.org:8443/x", "https://example.org:8443"),
    ("https://[::1]:8443/", "https://[::1]:8443"),
    ("ftp://example.org/", None),
    ("https://example.org:99999/", None),
    ("/relative", None),
    ("null", None),
])
def test_origin_of(url: str, origin: str | None) -> None:
    assert origin_of(url) == origin


def test_foreign_post_names_the_reason() -> None:
    assert foreign_post(PUBLIC, PUBLIC, None) is None
    evil = "https://evil.example"
    assert foreign_post(PUBLIC, evil, f"{PUBLIC}/") == "the Origin is another site"
    assert foreign_post(PUBLIC, None, f"{evil}/") == "the Referer is another site"
    assert foreign_post(PUBLIC, "null", None) == "the request has neither Origin nor Referer"


# ---------------------------------------------------------------- the dev outbox


def test_outbox_is_closed_in_production_even_on_loopback(site: FlaskClient) -> None:
    for address in ("127.0.0.1", "::1"):
        assert site.get("/outbox", base_url=PUBLIC,
                        environ_overrides={"REMOTE_ADDR": address}).status_code == 404


def _outbox(app: Flask, address: str, headers: dict[str, str] | None = None) -> int:
    answer = app.test_client().get("/outbox", headers=headers or {},
                                   environ_overrides={"REMOTE_ADDR": address})
    return answer.status_code


def test_outbox_answers_only_to_loopback_in_dev_mode(app: Flask, client: FlaskClient,
                                                     web_settings: Settings) -> None:
    assert subscribe(client, "reader@example.com").status_code == 200
    assert _outbox(app, "127.0.0.1") == 200
    assert _outbox(app, "::1") == 200
    assert _outbox(app, "192.0.2.7") == 404
    assert _outbox(app, "10.0.0.1") == 404
    # A proxy on this machine connects from loopback for every visitor: relayed is remote.
    for relayed in ({"X-Forwarded-For": "192.0.2.7"}, {"X-Forwarded-For": "127.0.0.1"},
                    {"Forwarded": "for=192.0.2.7"}, {"X-Real-IP": "192.0.2.7"}):
        assert _outbox(app, "127.0.0.1", relayed) == 404, relayed
    assert len(mails_in(web_settings.outbox_dir)) == 1  # once the queue has sent it
    [name] = [p.name for p in web_settings.outbox_dir.glob("*.eml")]
    remote = app.test_client()
    for path in (f"/outbox/{name}", f"/outbox/{name}/html"):
        assert remote.get(path, environ_overrides={"REMOTE_ADDR": "192.0.2.7"}).status_code == 404
    # The navigation offers the outbox only where it opens.
    page = remote.get("/", environ_overrides={"REMOTE_ADDR": "192.0.2.7"}).get_data(as_text=True)
    assert 'href="/outbox"' not in page
    assert 'href="/outbox"' in client.get("/").get_data(as_text=True)


def test_outbox_behind_a_trusted_proxy_is_remote(web_settings: Settings, engine: Engine) -> None:
    proxied = create_app(web_settings.model_copy(update={"trusted_proxies": 1}), engine=engine)
    # Even a visitor claiming to be 127.0.0.1, which ProxyFix then takes as the client.
    assert _outbox(proxied, "127.0.0.1", {"X-Forwarded-For": "127.0.0.1"}) == 404
    assert _outbox(proxied, "127.0.0.1") == 200
