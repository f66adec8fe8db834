"""Sign-up limits through a real Redis outage, and what they keep of a reader after erasure.

The review's attack (issue 22, finding 4): with Redis stopped and started again, each web
process had fallen back to counting on its own until restart, so 15 of 20 sign-ups from
one IP passed a 5/minute limit and one inbox got 9 confirmation mails under a 3/hour limit.
Here two web processes (two sets of services, each with its own limiter state) share one
database and one real redis-server, which the test shuts down and starts again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from pathlib import Path

import pytest
import redis
from sqlalchemy import Engine, text

from newsletter.config import Settings
from newsletter.pseudonyms import Pseudonyms
from newsletter.readers.reader_input import Client
from newsletter.subscriptions import mail_queue, reader_account, signup, signup_limits
from newsletter.subscriptions.services import Services, send_job
from tests.support.servers import redis_process
from tests.support.web import link, outbox

VICTIM = "bomb.example.org"


def _web_process(settings: Settings, engine: Engine) -> Services:
    """One web process's services. Its mail goes out from this process (the file outbox),
    so the test counts mails without a Celery worker; the limits are what is tested."""
    svc = Services.build(settings, engine)
    return dataclasses.replace(
        svc, mail=mail_queue.InProcessQueue(lambda job: send_job(svc, job)))


def _sign_up(svc: Services, email: str, ip: str) -> str:
    try:
        signup.sign_up(svc, email, ["llm"], "daily", "", Client(ip))
    except signup.TooManySignups:
        return "too many"
    return "accepted"


def _mails_to(settings: Settings, domain: str) -> int:
    return sum(1 for mail in outbox(settings) if str(mail["To"]).endswith("@" + domain))


@pytest.fixture
def no_retry_pause(monkeypatch: pytest.MonkeyPatch) -> None:
    # Each check asks Redis again at once, as it would REDIS_RETRY seconds into an outage.
    monkeypatch.setattr(signup_limits, "REDIS_RETRY", 0.0, raising=False)


@pytest.mark.usefixtures("no_retry_pause")
def test_limits_hold_across_web_processes_through_a_redis_outage(
        settings: Settings, engine: Engine, tmp_path: Path) -> None:
    with redis_process() as server:
        configured = settings.model_copy(update={
            "outbox_dir": tmp_path / "outbox", "redis_url": server.url,
            "signup_rate_limit": "5/minute", "signup_mailbox_limit": "3/hour"})
        first, second = _web_process(configured, engine), _web_process(configured, engine)
        server.stop()

        # One client, its posts spread over both processes: five pass, in all.
        answers = [_sign_up(svc, f"reader{n}@site{n}.example", "198.51.100.1")
                   for n, svc in enumerate([first, second] * 4)]
        assert answers == ["accepted"] * 5 + ["too many"] * 3
        for n, svc in enumerate([first, second]):
            _sign_up(svc, f"victim+{n}@{VICTIM}", f"203.0.113.{n}")
        assert _mails_to(configured, VICTIM) == 2

        server.start()
        for n in range(2, 12):
            _sign_up([first, second][n % 2], f"victim+{n}@{VICTIM}", f"203.0.113.{n}")
        # Three per hour, the outage's two included; Redis counts again.
        assert _mails_to(configured, VICTIM) == 3
        assert _sign_up(first, "late@site.example", "198.51.100.1") == "too many"
        assert redis.Redis.from_url(server.url).keys("LIMITER/signup/*")


def test_deleting_a_reader_leaves_nothing_of_the_address_in_redis(
        settings: Settings, engine: Engine, tmp_path: Path) -> None:
    address = "Erased.Reader+news@example.org"
    with redis_process() as server:
        configured = settings.model_copy(update={"outbox_dir": tmp_path / "outbox",
                                                 "redis_url": server.url})
        svc = _web_process(configured, engine)
        _sign_up(svc, address, "198.51.100.20")
        confirmed = signup.confirm(svc, link(outbox(configured)[-1], "confirm").rsplit("/", 1)[1],
                                   Client("198.51.100.20"))
        store = redis.Redis.from_url(server.url)
        assert store.keys("LIMITER/signup/mailbox/*")  # the inbox is being counted

        reader_account.delete(svc, confirmed.manage_token)

        keys = [key.decode() for key in store.keys("*")]
        named = {address, address.lower(), signup_limits.mailbox(address)}
        named |= {hashlib.sha256(form.encode()).hexdigest() for form in set(named)}
        assert not [key for key in keys if any(form in key for form in named)]
        assert not store.keys("LIMITER/signup/mailbox/*")


def test_without_redis_the_inbox_counts_in_the_database_go_with_the_reader(
        settings: Settings, engine: Engine, tmp_path: Path) -> None:
    configured = settings.model_copy(update={"outbox_dir": tmp_path / "outbox"})
    svc = _web_process(configured, engine)
    _sign_up(svc, "gone@example.org", "198.51.100.21")
    _sign_up(svc, "stays@example.org", "198.51.100.22")
    [mail] = [m for m in outbox(configured) if m["To"] == "gone@example.org"]
    token = link(mail, "confirm").rsplit("/", 1)[1]
    confirmed = signup.confirm(svc, token, Client("198.51.100.21"))

    def inbox_counters() -> int:
        with engine.connect() as conn:
            return conn.execute(text("SELECT count(*) FROM signup_limit_windows "
                                     "WHERE key LIKE 'LIMITER/signup/mailbox/%'")).scalar_one()

    assert inbox_counters() == 4  # two windows (3/hour, 6/day) for each inbox
    reader_account.delete(svc, confirmed.manage_token)
    assert inbox_counters() == 2


def test_redis_is_asked_again_once_the_retry_pause_is_over(
        settings: Settings, engine: Engine, caplog: pytest.LogCaptureFixture) -> None:
    now = [1000.0]
    with redis_process() as server:
        limits = signup_limits.SignupLimits.from_settings(
            settings.model_copy(update={"redis_url": server.url}), engine,
            Pseudonyms("test key"))
        limits.clock = lambda: now[0]
        store = redis.Redis.from_url(server.url)
        server.stop()
        with caplog.at_level(logging.WARNING):
            assert not limits.client_refused("192.0.2.1")
            server.start()
            # Within the pause the database counts alone: a Redis that hangs would cost
            # each sign-up its connect timeout.
            now[0] += signup_limits.REDIS_RETRY - 0.1
            assert not limits.client_refused("192.0.2.2")
            assert store.keys("LIMITER/*") == []
            now[0] += 0.2
            assert not limits.client_refused("192.0.2.3")
        assert len(store.keys("LIMITER/signup/client/*")) == 2  # 5/minute;30/hour
    assert "counting in the database until it answers" in caplog.text
    assert "answers again; counting there" in caplog.text
