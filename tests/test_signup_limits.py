"""Mail-bombing through the sign-up form: per mailbox, per domain, and in all.

The attack the review found: `bomb+1@…` … `bomb+20@…` from four IPs put twenty
confirmation mails into one inbox in under a second.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from sqlalchemy import Engine

from newsletter import signup, status
from newsletter.config import Settings
from newsletter.signup_limits import client_network, domain, mailbox
from newsletter.subscriber import Client
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
              ) -> signup.Services:
    configured = settings.model_copy(update={"outbox_dir": tmp_path / "outbox",
                                             "signup_rate_limit": "1000/minute", **limits})
    return signup.Services.build(configured, engine)


def _sign_up(svc: signup.Services, email: str, n: int) -> None:
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


def test_limits_fall_back_to_this_process_when_redis_is_down(
    settings: Settings, engine: Engine, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    svc = _services(settings, engine, tmp_path, redis_url="redis://127.0.0.1:9/0",
                    signup_mailbox_limit="2/hour")
    with caplog.at_level(logging.ERROR):
        for n in range(4):
            _sign_up(svc, f"r+{n}@example.com", n)
    assert len(outbox(svc.settings)) == 2  # still limited, now in this process
    assert "counting in this process" in caplog.text


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
    assert len(outbox(web_settings)) == 2
    assert "counting in this process" in caplog.text
