"""Mail-bombing through the sign-up form: per mailbox, per domain, and in all.

The attack the review found: `bomb+1@…` … `bomb+20@…` from four IPs put twenty
confirmation mails into one inbox in under a second.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis
from flask.testing import FlaskClient
from sqlalchemy import Engine

from newsletter import db
from newsletter.admin import status
from newsletter.config import Settings
from newsletter.pseudonyms import Pseudonyms
from newsletter.readers.reader_input import Client
from newsletter.subscriptions import signup
from newsletter.subscriptions.services import Services
from newsletter.subscriptions.signup_limits import (
    DatabaseCounters,
    SignupLimits,
    Window,
    client_network,
    domain,
    mailbox,
)
from newsletter.web import create_app
from tests.support import web
from tests.support.web import outbox

web_settings = web.web_settings


@pytest.mark.parametrize(("address", "inbox"), [
    ("Bomb+1@Example.com", "bomb@example.com"),
    ("bomb+a+b@example.com", "bomb@example.com"),
    ("b.o.m.b+x@gmail.com", "bomb@gmail.com"),
    ("B.O.M.B@googlemail.com", "bomb@gmail.com"),
    ("b.o.m.b@example.com", "b.o.m.b@example.com"),  # dots matter off Gmail
])
def test_aliases_of_one_inbox_fold_together(address: str, inbox: str) -> None:
    assert mailbox(address) == inbox
    assert domain(address) == address.lower().rpartition("@")[2]


@pytest.mark.parametrize(("ip", "key"), [
    ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
    ("2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"),
    ("2001:db8:1:3::1", "2001:db8:1:3::/64"),
    ("192.0.2.7", "192.0.2.7"),
    ("::ffff:192.0.2.7", "192.0.2.7"),
    ("not an ip", "not an ip"),
])
def test_ipv6_clients_count_by_their_64(ip: str, key: str) -> None:
    assert client_network(ip) == key


def _services(settings: Settings, engine: Engine, tmp_path: Path, **limits: str
              ) -> Services:
    configured = settings.model_copy(update={"outbox_dir": tmp_path / "outbox",
                                             "signup_rate_limit": "1000/minute", **limits})
    return Services.build(configured, engine)


def _sign_up(svc: Services, email: str, n: int) -> None:
    signup.sign_up(svc, email, ["llm"], "daily", "", Client(f"198.51.100.{n % 4}"))


def test_plus_addresses_cannot_flood_one_inbox(settings: Settings, engine: Engine,
                                               tmp_path: Path) -> None:
    svc = _services(settings, engine, tmp_path, signup_mailbox_limit="3/hour")
    for n in range(1, 21):
        _sign_up(svc, f"bomb+{n}@example.com", n)
    assert len(outbox(svc.settings)) == 3
    # Another inbox at the same domain is not held back by this one's limit.
    _sign_up(svc, "someone@example.com", 0)
    assert len(outbox(svc.settings)) == 4
    report = status.collect(engine)
    assert report.mail_limit_hits == {"mailbox": 17, "domain": 0, "all": 0}
    assert "17 by the mailbox limit" in "\n".join(report.lines())


def test_one_domain_and_all_mail_have_their_caps(settings: Settings, engine: Engine,
                                                 tmp_path: Path) -> None:
    svc = _services(settings, engine, tmp_path, signup_domain_limit="5/hour",
                    signup_mail_limit="8/hour")
    for n in range(10):
        _sign_up(svc, f"user{n}@victim.example", n)
    assert len(outbox(svc.settings)) == 5
    for n in range(10):
        _sign_up(svc, f"user{n}@elsewhere{n}.example", n)
    assert len(outbox(svc.settings)) == 8
    assert status.collect(engine).mail_limit_hits == {"mailbox": 0, "domain": 5, "all": 7}


def test_a_held_back_signup_stores_nothing(settings: Settings, engine: Engine,
                                           tmp_path: Path) -> None:
    svc = _services(settings, engine, tmp_path, signup_mailbox_limit="1/hour")
    _sign_up(svc, "r+1@example.com", 1)
    _sign_up(svc, "r+2@example.com", 2)
    names = [row["email"] for row in signup.listing(svc)]
    assert names == ["r+1@example.com"]


def test_limits_fall_back_to_the_database_when_redis_is_down(
    settings: Settings, engine: Engine, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    svc = _services(settings, engine, tmp_path, redis_url="redis://127.0.0.1:9/0",
                    signup_mailbox_limit="2/hour")
    with caplog.at_level(logging.ERROR):
        for n in range(4):
            _sign_up(svc, f"r+{n}@example.com", n)
    # Still limited, now in the database: two mails owed, two held back.
    assert len(signup.listing(svc)) == 2
    assert status.collect(engine).mail_limit_hits["mailbox"] == 2
    assert "counting in the database" in caplog.text


def test_operators_are_not_held_back(settings: Settings, engine: Engine,
                                     tmp_path: Path) -> None:
    svc = _services(settings, engine, tmp_path, signup_domain_limit="1/hour")
    for n in range(3):
        signup.add(svc, f"member{n}@lab.example", ["llm"])
    assert len(outbox(svc.settings)) == 3


# ---------------------------------------------------------------- through the site


def _site(web_settings: Settings, engine: Engine, **update: object) -> FlaskClient:
    return create_app(web_settings.model_copy(update=update), engine=engine).test_client()


def _post(client: FlaskClient, email: str, forwarded_for: str | None = None) -> int:
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    data = {"email": email, "topics": ["llm"], "frequency": "daily"}
    return client.post("/subscribe", data=data, headers=headers).status_code


def test_one_client_may_post_the_form_only_so_often(web_settings: Settings,
                                                    engine: Engine) -> None:
    client = _site(web_settings, engine, signup_rate_limit="3/minute", trusted_proxies=1)
    same_host = ["2001:db8:7:7::1", "2001:db8:7:7::2", "2001:db8:7:7:ffff::9"]
    assert [_post(client, f"r{n}@example.com", ip) for n, ip in enumerate(same_host)] == [
        200, 200, 200]
    # A fresh address in the same /64 is the same client.
    assert _post(client, "r9@example.com", "2001:db8:7:7::abcd") == 429
    assert _post(client, "r9@example.com", "2001:db8:7:8::1") == 200
    assert _post(client, "r10@example.com", "192.0.2.1") == 200


def test_signups_work_when_redis_is_down(web_settings: Settings, engine: Engine,
                                         caplog: pytest.LogCaptureFixture) -> None:
    client = _site(web_settings, engine, redis_url="redis://127.0.0.1:9/0",
                   signup_rate_limit="2/minute")
    with caplog.at_level(logging.ERROR):
        assert [_post(client, f"r{n}@example.com") for n in range(3)] == [200, 200, 429]
    assert len(signup.listing(Services.build(web_settings, engine))) == 2
    assert "counting in the database" in caplog.text


# ---------------------------------------------------------------- the counters


def _limits(engine: Engine, storage: str, **limits: str) -> SignupLimits:
    values = {"signup_rate_limit": "1000/minute", "signup_mailbox_limit": "3/hour",
              "signup_domain_limit": "1000/hour", "signup_mail_limit": "1000/hour", **limits}
    configured = Settings(database_url="sqlite://",
                          redis_url=None if storage == "database" else storage, **values)
    return SignupLimits.from_settings(configured, engine, Pseudonyms("test key"))


def _mail_refused(limits: SignupLimits, engine: Engine, address: str) -> str | None:
    """A sign-up's check, in its own transaction as `signup.sign_up` makes one."""
    with db.transaction(engine) as session:
        return limits.mail_refused(address, session)


@pytest.fixture
def fresh_redis(redis_url: str) -> str:
    """The module's Redis, emptied: each database's run of a test counts from zero."""
    redis.Redis.from_url(redis_url).flushdb()
    return redis_url


def test_web_workers_share_one_count_in_redis(engine: Engine, fresh_redis: str) -> None:
    # Each gunicorn worker has its own SignupLimits: the limit holds across them all.
    workers = [_limits(engine, fresh_redis) for _ in range(3)]
    refused = [_mail_refused(workers[n % 3], engine, f"bomb+{n}@shared.example")
               for n in range(9)]
    assert refused == [None, None, None] + ["mailbox"] * 6


@pytest.mark.parametrize("store", ["database", "redis"])
def test_a_last_place_is_taken_once_under_concurrent_signups(engine: Engine, store: str,
                                                              fresh_redis: str) -> None:
    limits = _limits(engine, "database" if store == "database" else fresh_redis)
    with ThreadPoolExecutor(max_workers=16) as pool:
        refused = list(pool.map(lambda address: _mail_refused(limits, engine, address),
                                [f"race+{n}@example.com" for n in range(64)]))
    assert refused.count(None) == 3
    assert set(refused) == {None, "mailbox"}


def test_a_full_window_counts_nothing_more(engine: Engine) -> None:
    # A refused mail must not use up another limit's places: the domain's stay free.
    limits = _limits(engine, "database", signup_mailbox_limit="1/hour",
                     signup_domain_limit="2/hour")
    assert _mail_refused(limits, engine, "a@lab.example") is None
    assert [_mail_refused(limits, engine, "a+x@lab.example") for _ in range(5)] == [
        "mailbox"] * 5
    assert _mail_refused(limits, engine, "b@lab.example") is None
    assert _mail_refused(limits, engine, "c@lab.example") == "domain"


def test_a_window_opens_again_when_its_time_is_up(engine: Engine) -> None:
    now = [datetime(2026, 9, 24, 9, 0, tzinfo=UTC)]
    counters = DatabaseCounters(engine, clock=lambda: now[0])
    window = [Window("signup/mailbox/a", 2, 60)]

    def count() -> int | None:
        with engine.begin() as conn:
            return counters.count_unless_full(conn, window)

    assert [count() for _ in range(3)] == [None, None, 0]
    now[0] += timedelta(seconds=59)
    assert count() == 0
    now[0] += timedelta(seconds=2)
    assert count() is None
