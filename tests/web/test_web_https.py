"""Every form over real TLS, in Chromium, with the app in production mode.

Two deployments the README documents: nginx terminating TLS in front of gunicorn (with
X-Forwarded-For/-Proto and TRUSTED_PROXIES=1), and gunicorn serving TLS itself. Both run
`gunicorn 'newsletter.web:create_app()'` with PAPERWIRE_DEV=0, a SECRET_KEY and an https
BASE_URL, behind a self-signed certificate made here. A reader signs up, confirms from the
mail, saves their settings, unsubscribes, subscribes again and deletes their data; every one
of those forms carries a CSRF token and passes the origin check. On the way, a link from a
token page to another https site must reach it with no Referer.
"""

from __future__ import annotations

import contextlib
import http.server
import ssl
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlmodel import Session

from newsletter import db
from newsletter.readers import subscriber as subs
from tests.conftest import REPO
from tests.support.celery_procs import wait_until
from tests.support.servers import free_port
from tests.support.web import (
    NGINX_LOG_FORMAT,
    chromium,
    gunicorn,
    link,
    mails_in,
    nginx,
    self_signed,
)

EMAIL = "tls-reader@example.com"


@pytest.fixture
def database(tmp_path: Path) -> Iterator[tuple[str, Engine]]:
    url = f"sqlite:///{tmp_path / 'paperwire.db'}"
    engine = db.make_engine(url)
    db.upgrade(engine)
    yield url, engine
    engine.dispose()


def production(base_url: str, database_url: str, outbox_dir: Path) -> dict[str, str]:
    return {"PAPERWIRE_DEV": "0", "SECRET_KEY": "tls-test-" + "k" * 32, "BASE_URL": base_url,
            "DATABASE_URL": database_url, "MAIL_BACKEND": "file",
            "OUTBOX_DIR": str(outbox_dir), "LOG_LEVEL": "WARNING"}


class _Recorder(http.server.BaseHTTPRequestHandler):
    referers: dict[str, str | None] = {}

    def do_GET(self) -> None:
        self.referers[self.path] = self.headers.get("Referer")
        body = b"<!doctype html><title>elsewhere</title><h1>Another site</h1>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        return None


@pytest.fixture
def other_site(tmp_path: Path) -> Iterator[tuple[str, dict[str, str | None]]]:
    """Another https origin that records the Referer each visit brings, by path."""
    folder = tmp_path / "other"
    folder.mkdir()
    cert, key = self_signed(folder)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    handler = type("Recorder", (_Recorder,), {"referers": {}})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_port}/landing", handler.referers
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def _state(engine: Engine) -> tuple[str, list[str]] | None:
    with Session(engine) as session:
        row = subs.find_by_email(session, EMAIL)
        if row is None:
            return None
        return row.status, list(subs.preferences_of(session, row).topics)


def _big_library() -> str:
    """1,500 entries with abstracts of about a kilobyte each: a 1.6 MB BibTeX export."""
    abstract = " ".join(["Retrieval models rank documents for queries."] * 24)
    return "\n".join(f"@article{{p{i}, title={{Paper {i} of a large library}}, "
                     f"abstract={{{abstract}}}, year={{2025}}}}" for i in range(1, 1501))


def walk_every_form(base: str, engine: Engine, outbox_dir: Path,
                    other: tuple[str, dict[str, str | None]]) -> None:
    from playwright.sync_api import expect

    with chromium() as browser:
        # The certificate is self-signed: trusting it is the only thing relaxed.
        context = browser.new_context(ignore_https_errors=True)
        page = context.new_page()
        response = page.goto(base + "/")
        assert response is not None and response.headers["referrer-policy"] == "same-origin"
        assert "max-age" in response.headers["strict-transport-security"]

        page.get_by_label("Email address").fill(EMAIL)
        page.get_by_label("Large Language Models").check()
        page.get_by_role("button", name="Subscribe").click()
        expect(page.get_by_role("heading", name="Check your inbox")).to_be_visible()
        assert _state(engine) == ("pending", [])  # choices apply once confirmed
        # The front page and its sign-up form need no cookie (docs/SECURITY.md, 10).
        assert context.cookies() == []

        # The confirmation leaves the server's mail queue after the answer.
        wait_until(lambda: mails_in(outbox_dir), 30, "the confirmation mail")
        [mail] = mails_in(outbox_dir)
        page.goto(base + link(mail, "confirm"))
        cookies = {c["name"]: c for c in context.cookies()}
        assert cookies["session"]["secure"] and cookies["session"]["httpOnly"]
        page.get_by_role("button", name="Yes, subscribe me").click()
        expect(page.get_by_role("heading", name="You are subscribed")).to_be_visible()
        assert _state(engine) == ("confirmed", ["llm"])

        page.get_by_role("link", name="Fine-tune your topics").click()
        page.get_by_label("Reinforcement Learning").check()
        page.get_by_label("Large Language Models").uncheck()
        page.get_by_role("button", name="Save my settings").click()
        expect(page.get_by_role("status")).to_contain_text("Saved")
        assert _state(engine) == ("confirmed", ["rl"])

        # A library over nginx's default 1 MB body, as readers' Zotero exports with
        # abstracts are: the proxy lets it through (client_max_body_size) and it is listed.
        library = outbox_dir.parent / "My Library.bib"
        library.write_text(_big_library(), encoding="utf-8")
        assert library.stat().st_size > 1_500_000
        page.locator("#own-papers").get_by_label("Your reference library").set_input_files(
            library)
        page.get_by_role("button", name="Upload my library").click()
        expect(page.locator("#own-papers").get_by_role("status")).to_contain_text(
            "Library saved")
        expect(page.get_by_text("Paper 2 of a large library", exact=True)).to_be_attached()

        # A link from this token page to another site: it must learn nothing of the URL.
        other_url, referers = other
        assert "/manage/" in page.url
        page.evaluate("url => { const a = document.createElement('a'); a.href = url; "
                      "a.textContent = 'elsewhere'; document.body.append(a); }", other_url)
        page.get_by_role("link", name="elsewhere").click()
        expect(page.get_by_role("heading", name="Another site")).to_be_visible()
        assert "/landing" in referers and referers["/landing"] is None
        page.go_back()

        page.get_by_role("link", name="Unsubscribe").last.click()
        page.get_by_role("button", name="Unsubscribe").click()
        expect(page.get_by_role("heading", name="Goodbye")).to_be_visible()
        assert _state(engine) == ("unsubscribed", ["rl"])

        page.get_by_role("link", name="Subscribe again or delete your data").click()
        page.get_by_role("button", name="Subscribe again").click()
        expect(page.get_by_text("status: confirmed")).to_be_visible()
        assert _state(engine) == ("confirmed", ["rl"])

        page.get_by_role("link", name="Delete me").click()
        page.get_by_role("button", name="Delete everything").click()
        expect(page.get_by_role("heading", name="Your data is deleted")).to_be_visible()
        assert _state(engine) is None


def test_every_form_behind_nginx_terminating_tls(
    database: tuple[str, Engine], tmp_path: Path, other_site: tuple[str, dict[str, str | None]],
) -> None:
    url, engine = database
    public, app_port = free_port(), free_port()
    base = f"https://127.0.0.1:{public}"
    env = {**production(base, url, tmp_path / "outbox"), "TRUSTED_PROXIES": "1"}
    with gunicorn(env, app_port, tmp_path / "gunicorn.log"), nginx(public, app_port) as proxy:
        walk_every_form(base, engine, tmp_path / "outbox", other_site)
        # The requests did go through the proxy, over TLS.
        assert "POST /manage/" in (proxy / "access.log").read_text()


def test_every_form_with_gunicorn_serving_tls(
    database: tuple[str, Engine], tmp_path: Path, other_site: tuple[str, dict[str, str | None]],
) -> None:
    url, engine = database
    cert, key = self_signed(tmp_path)
    port = free_port()
    base = f"https://127.0.0.1:{port}"
    with gunicorn(production(base, url, tmp_path / "outbox"), port, tmp_path / "gunicorn.log",
                  "--certfile", str(cert), "--keyfile", str(key)):
        walk_every_form(base, engine, tmp_path / "outbox", other_site)


# Made-up tokens shaped like real ones: what matters is the log, not the answer.
READER_TOKENS = {
    "/manage/{}": "MTIzLmxpbmtrZXk.c2lnbmF0dXJl-manage_1",
    "/manage/{}/export": "MTIzLmxpbmtrZXk.c2lnbmF0dXJl-export_2",
    "/unsubscribe/{}": "MTIzLmxpbmtrZXk.c2lnbmF0dXJl-unsub_3",
    "/confirm/{}": "WzEyMywibm9uY2UiXQ.aGVsbG8-confirm_4",
    "/digest/{}": "MTIzLjQ1Ng.c2lnbmF0dXJl-digest_5",
    "/rate/{}/up": "123.456.bWFjLXJhdGU-rate_6",
    "/papers/2409.00001?rate={}": "123.456.bWFjLXBhcGVy-paper_7",
}
REFERER_TOKEN = "MTIzLmxpbmtrZXk.cmVmZXJlcg-referer_8"


def test_nginx_logs_the_routes_of_readers_links_without_their_tokens(
    database: tuple[str, Engine], tmp_path: Path,
) -> None:
    url, _engine = database
    public, app_port = free_port(), free_port()
    base = f"https://127.0.0.1:{public}"
    env = {**production(base, url, tmp_path / "outbox"), "TRUSTED_PROXIES": "1"}
    unverified = ssl.create_default_context()
    unverified.check_hostname, unverified.verify_mode = False, ssl.CERT_NONE
    with gunicorn(env, app_port, tmp_path / "gunicorn.log"), nginx(public, app_port) as proxy:
        for shape, token in READER_TOKENS.items():
            request = urllib.request.Request(
                base + shape.format(token),
                headers={"Referer": f"{base}/manage/{REFERER_TOKEN}/export"})
            with contextlib.suppress(urllib.error.HTTPError):
                urllib.request.urlopen(request, timeout=10, context=unverified).read()
        log = proxy / "access.log"
        wait_until(lambda: log.read_text().count("\n") >= len(READER_TOKENS), 10,
                   "nginx's access log")
        written = log.read_text()
    for token in [*READER_TOKENS.values(), REFERER_TOKEN]:
        assert token not in written
    for shape in READER_TOKENS:
        assert f"GET {shape.format('[token]')} HTTP/1.1" in written
    assert f'"{base}/manage/[token]/export"' in written


def test_the_readmes_nginx_configuration_logs_with_the_shipped_format() -> None:
    readme = (REPO / "README.md").read_text()
    shipped = [line.strip() for line in NGINX_LOG_FORMAT.read_text().splitlines()
               if line.strip() and not line.startswith("#")]
    assert [line for line in shipped if line not in readme] == []
    assert "access_log /var/log/nginx/paperwire.log paperwire;" in readme
