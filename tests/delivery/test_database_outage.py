"""A database that is stopped or read-only answers 503 and a short page, never a 500, and
/healthz says so (docs/SECURITY.md, issue 22 finding 14).

Before, with Postgres stopped the front page, paper pages, /days and sign-up answered 500;
with it read-only sign-up, manage, admin sign-in and the webhook answered 500 (the
webhook with an HTML body) while /healthz said {"database": "ok"}. Here a Postgres of the
test's own is stopped (`pg_ctl -m immediate stop`) and made read-only (ALTER SYSTEM SET
default_transaction_read_only, reloaded), under a site that was serving it.
"""

from __future__ import annotations

import base64
import itertools
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from flask.testing import FlaskClient
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.pool import NullPool
from sqlmodel import Session, select

from newsletter import db
from newsletter.config import Settings
from newsletter.ingest.paper import Paper
from newsletter.ingest.store import ingest_files
from newsletter.readers import subscriber as subs
from newsletter.readers.links import LinkHolder
from newsletter.subscriptions import signup
from newsletter.web import create_app
from newsletter.web import site as site_views
from newsletter.web.common import SERVICES
from tests.conftest import ARXIV_FIXTURES
from tests.support.admin_desk import OPERATOR, PASSWORD, add_operator
from tests.support.celery_procs import wait_until
from tests.support.servers import Postgres, postgres_of_its_own
from tests.support.web import csrf_token

READER = "reader@example.org"
_numbers = itertools.count()


@dataclass
class Site:
    client: FlaskClient
    engine: Engine
    key: ec.EllipticCurvePrivateKey
    paper: str
    manage: str

    def requests(self) -> dict[str, Callable[[], object]]:
        """Each page and form, as a reader, an operator or SendGrid sends it."""
        manage_token = csrf_token(self.client, self.manage) if self._up() else "stale"
        login_token = csrf_token(self.client, "/admin/login") if self._up() else "stale"
        return {
            "front page": self.front_page,
            "paper page": lambda: self.client.get(f"/papers/{self.paper}"),
            "days": lambda: self.client.get("/days"),
            "sign-up": lambda: self.client.post("/subscribe", data={
                "email": f"new{next(_numbers)}@example.org", "topics": ["llm"],
                "frequency": "daily"}),
            "manage page": lambda: self.client.get(self.manage),
            "manage save": lambda: self.client.post(self.manage, data={
                "csrf_token": manage_token, "topics": ["llm", "rl"], "frequency": "daily"}),
            "admin sign-in": lambda: self.client.post("/admin/login", data={
                "csrf_token": login_token, "email": OPERATOR, "password": PASSWORD}),
            "webhook": self.webhook,
        }

    def front_page(self) -> object:
        """As a visitor sees it once the process's rendering of it is 30 s old."""
        extensions = self.client.application.extensions
        for key in [k for k in extensions if isinstance(k, tuple) and k[0] == site_views._TODAY]:
            del extensions[key]
        return self.client.get("/")

    def webhook(self) -> object:
        body = json.dumps([{"email": READER, "event": "delivered", "timestamp": 1790000000,
                            "sg_event_id": f"event-{next(_numbers)}"}]).encode()
        stamp = str(int(time.time()))
        signature = self.key.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))
        return self.client.post("/webhooks/sendgrid", data=body, headers={
            "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
            "X-Twilio-Email-Event-Webhook-Timestamp": stamp,
            "Content-Type": "application/json"})

    def _up(self) -> bool:
        return self.client.get("/healthz").status_code == 200


@pytest.fixture
def cluster() -> Iterator[Postgres]:
    with postgres_of_its_own() as server:
        yield server


@pytest.fixture
def site(cluster: Postgres, tmp_path: object) -> Iterator[Site]:
    engine = db.make_engine(cluster.url("paperwire"))
    db.upgrade(engine)
    ingest_files(engine, sorted(ARXIV_FIXTURES.glob("rss_cs.CL_2026-04-27.xml")))
    add_operator(engine)
    key = ec.generate_private_key(ec.SECP256R1())
    public = base64.b64encode(key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)).decode()
    settings = Settings(database_url=cluster.url("paperwire"), base_url="http://paperwire.test",
                        outbox_dir=tmp_path / "outbox",  # type: ignore[operator]
                        signup_rate_limit="1000/minute", sendgrid_webhook_public_key=public,
                        arxiv_api_url="http://127.0.0.1:9/api/query")
    app = create_app(settings, engine=engine)
    svc = app.extensions[SERVICES]
    signup.add(svc, READER, ["llm"], confirmed=True)
    with Session(engine) as session:
        reader = subs.find_by_email(session, READER)
        paper = session.exec(select(Paper.key).limit(1)).one()
    assert reader is not None and reader.id is not None
    manage = urlsplit(svc.links.manage_url(LinkHolder(reader.id, reader.link_key))).path
    yield Site(app.test_client(), engine, key, paper, manage)
    engine.dispose()


UP = {"front page": 200, "paper page": 200, "days": 200, "sign-up": 200, "manage page": 200,
      "manage save": 303, "admin sign-in": 303, "webhook": 200}
# What writes: refused by a read-only database. Pages that only read still serve.
WRITES = {"sign-up", "manage save", "admin sign-in", "webhook"}


def shown(engine: Engine) -> str:
    with engine.connect() as conn:
        return conn.execute(text("SHOW default_transaction_read_only")).scalar_one()


def answers(site: Site) -> dict[str, object]:
    return {name: send() for name, send in site.requests().items()}


def assert_up(site: Site) -> None:
    got = answers(site)
    assert {name: a.status_code for name, a in got.items()} == UP  # type: ignore[attr-defined]
    health = site.client.get("/healthz")
    assert health.status_code == 200 and health.get_json()["database"] == "ok"


def assert_unavailable(name: str, answer: object) -> None:
    status = answer.status_code  # type: ignore[attr-defined]
    assert status == 503, f"{name} answered {status}"
    assert answer.headers["Retry-After"]  # type: ignore[attr-defined]
    if name == "webhook":  # JSON, so SendGrid sends the batch again
        assert answer.get_json()["error"]  # type: ignore[attr-defined]
    else:
        assert "Back in a moment" in answer.get_data(as_text=True)  # type: ignore[attr-defined]


@pytest.mark.postgres
def test_a_stopped_database_answers_503_everywhere_and_the_site_comes_back(
    cluster: Postgres, site: Site
) -> None:
    assert_up(site)
    requests = site.requests()  # the form tokens of a page served before the stop

    cluster.stop()
    for name, send in requests.items():
        assert_unavailable(name, send())
    health = site.client.get("/healthz")
    assert health.status_code == 503 and health.get_json()["database"] == "error"

    cluster.start()
    assert_up(site)


@pytest.mark.postgres
def test_a_read_only_database_refuses_writes_with_503_and_healthz_notices(
    cluster: Postgres, site: Site
) -> None:
    assert_up(site)
    requests = site.requests()
    # A new connection each time: one that set the session's own value would not show
    # the server's.
    admin = create_engine(cluster.url("postgres"), poolclass=NullPool,
                          isolation_level="AUTOCOMMIT")

    def read_only(on: bool) -> None:
        with admin.connect() as conn:
            conn.execute(text("SET default_transaction_read_only = off"))
            conn.execute(text("ALTER SYSTEM SET default_transaction_read_only = "
                              + ("on" if on else "off")))
            conn.execute(text("SELECT pg_reload_conf()"))
        wanted = "on" if on else "off"
        wait_until(lambda: shown(admin) == wanted, 10, "the reloaded setting")

    read_only(True)
    try:
        got = {name: send() for name, send in requests.items()}
        for name in WRITES:
            assert_unavailable(name, got[name])
        assert {name: got[name].status_code for name in UP.keys() - WRITES} == {  # type: ignore[attr-defined]
            name: 200 for name in UP.keys() - WRITES}
        health = site.client.get("/healthz")
        assert health.status_code == 503 and health.get_json()["database"] == "cannot write"
    finally:
        read_only(False)
        admin.dispose()
    assert_up(site)
