"""Helpers for the web tests: an app on a test database, form tokens, the outbox, and the
real pieces of an https deployment (a self-signed certificate, gunicorn, nginx, Chromium)."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine

from newsletter.config import Settings
from newsletter.subscriptions import mail_queue
from newsletter.web import create_app
from tests.conftest import REPO
from tests.support.servers import _unprivileged, free_port, missing, wait_for_port

if TYPE_CHECKING:
    from playwright.sync_api import Browser

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture
def web_settings(settings: Settings, tmp_path: Path) -> Settings:
    # Liked papers we lack are asked of the arXiv API: never the real one from a test. A
    # closed loopback port refuses at once; tests of fetching give a stand-in's address.
    return settings.model_copy(update={"outbox_dir": tmp_path / "outbox",
                                       "signup_rate_limit": "1000/minute",
                                       "base_url": "http://paperwire.test",
                                       "arxiv_api_url": "http://127.0.0.1:9/api/query"})


@pytest.fixture
def app(web_settings: Settings, engine: Engine) -> Iterator[Flask]:
    yield create_app(web_settings, engine=engine)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@contextlib.contextmanager
def chromium() -> Iterator[Browser]:
    """Debian's Chromium driven by Playwright, closed however the test ends. Without it a
    test is skipped locally and fails in CI (`servers.missing`)."""
    if not CHROMIUM.exists():
        missing("chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@contextlib.contextmanager
def live_site(settings: Settings, engine: Engine) -> Iterator[Settings]:
    """The app on a real loopback port, in a thread, for a browser: the settings it runs
    with (BASE_URL is its address)."""
    from werkzeug.serving import make_server

    port = free_port()
    served = settings.model_copy(update={"base_url": f"http://127.0.0.1:{port}"})
    server = make_server("127.0.0.1", port, create_app(served, engine=engine), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield served
    finally:
        server.shutdown()
        thread.join(10)


def csrf_token(client: FlaskClient, path: str) -> str:
    page = client.get(path)
    assert page.status_code == 200, page.status_code
    found = _CSRF.search(page.get_data(as_text=True))
    assert found, f"no CSRF token on {path}"
    return found.group(1)


def session_form_token(client: FlaskClient) -> str:
    """The form token our pages would print for this client's session, without needing a
    page: for tests whose subject is what a form posts to, not the form token."""
    from flask import session
    from flask_wtf.csrf import generate_csrf

    with client.application.test_request_context():
        token = generate_csrf()
        raw = session["csrf_token"]
    with client.session_transaction() as stored:
        stored["csrf_token"] = raw
    return token


def outbox(settings: Settings) -> list[EmailMessage]:
    return mails_in(settings.outbox_dir)


def mails_in(folder: Path) -> list[EmailMessage]:
    """The file backend's mails in `folder`, oldest first, once this process's mail queue
    has sent what the requests so far put on it."""
    mail_queue.drain_all()
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
    """Post the sign-up form as the landing page has it: no token, no cookie needed."""
    data = {"email": email, "topics": list(topics), "frequency": frequency, **extra}
    return client.post("/subscribe", data=data)


# ------------------------------------------------------------------ https, for real


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and localhost, and its key, as PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@contextlib.contextmanager
def gunicorn(env: dict[str, str], port: int, log: Path, *tls: str) -> Iterator[None]:
    """The production entry point, `gunicorn 'newsletter.web:create_app()'`, on loopback;
    `tls` adds gunicorn options such as --certfile and --keyfile."""
    command = [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}",
               "--workers", "1", "--threads", "4", *tls, "newsletter.web:create_app()"]
    with log.open("wb") as out:
        proc = subprocess.Popen(command, cwd=REPO, env={**os.environ, **env}, stdout=out,
                                stderr=subprocess.STDOUT)
    try:
        wait_for_port(port)
        yield
    finally:
        proc.terminate()
        proc.wait(20)


_NGINX_CONF = """\
worker_processes 1;
pid {root}/nginx.pid;
error_log {root}/error.log;
events {{ worker_connections 64; }}
http {{
    include {root}/paperwire-log.conf;
    access_log {root}/access.log paperwire;
    client_body_temp_path {root}/body;
    proxy_temp_path {root}/proxy;
    fastcgi_temp_path {root}/fastcgi;
    uwsgi_temp_path {root}/uwsgi;
    scgi_temp_path {root}/scgi;
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {root}/cert.pem;
        ssl_certificate_key {root}/key.pem;
        # As the README's: library files (up to 5 MB) come with two forms.
        client_max_body_size 6m;
        location / {{
            proxy_pass http://127.0.0.1:{upstream};
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-Host $http_host;
        }}
    }}
}}
"""


@contextlib.contextmanager
def nginx_process(root: Path, conf: str, port: int) -> Iterator[None]:
    """Debian's nginx with `conf` (written to `root`/nginx.conf), run as an unprivileged
    user from the prefix `root`, until the block ends."""
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    if not os.access(binary, os.X_OK):
        missing("nginx")
    (root / "nginx.conf").write_text(conf)
    user = _unprivileged()
    if user:
        for path in (root, *root.iterdir()):
            os.chown(path, user.pw_uid, user.pw_gid)

    def as_user() -> None:
        if user:
            os.setgid(user.pw_gid)
            os.setuid(user.pw_uid)

    # -e: the error log before the config is read (the default is under /var/log).
    proc = subprocess.Popen(
        [binary, "-p", str(root), "-c", str(root / "nginx.conf"), "-e", str(root / "error.log"),
         "-g", "daemon off;"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=as_user)
    try:
        wait_for_port(port)
        yield
    finally:
        proc.terminate()
        proc.wait(20)


# The access log format we ship for nginx (tokens redacted), as the README includes it.
NGINX_LOG_FORMAT = REPO / "deploy/nginx/paperwire-log.conf"


@contextlib.contextmanager
def nginx(port: int, upstream: int) -> Iterator[Path]:
    """nginx terminating TLS on 127.0.0.1:`port` for the app on `upstream`, as the README's
    deployment does, logging with the shipped format. Yields the prefix, where error.log
    and access.log are."""
    root = Path(tempfile.mkdtemp(prefix="paperwire-nginx-"))
    try:
        self_signed(root)
        # A copy in the prefix: nginx runs as an unprivileged user, who may not read the repo.
        shutil.copy(NGINX_LOG_FORMAT, root / "paperwire-log.conf")
        with nginx_process(root, _NGINX_CONF.format(root=root, port=port, upstream=upstream),
                           port):
            yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)
