"""Mail a request owes leaves after the answer, through a queue (docs/SECURITY.md, finding 5).

Before, a sign-up for a new address sent its confirmation inside the request and answered
later than one for a suppressed address, which sends nothing: the answer's timing told a
stranger which addresses we know. These tests hold the mail provider still and show that
every sign-up answers without waiting for it, and that nothing is lost on the way.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlmodel import Session

from newsletter.config import Settings
from newsletter.db import transaction
from newsletter.mail.senders import MailError, Message
from newsletter.readers import reader_input
from newsletter.readers import subscriber as subs
from newsletter.subscriptions import mail_queue, services, signup
from newsletter.subscriptions.services import Services, send_job, utcnow
from newsletter.web import create_app
from tests.support import web
from tests.support.celery_procs import wait_until
from tests.support.servers import celery_worker
from tests.support.web import link, mails_in, subscribe

web_settings = web.web_settings


class HeldProvider:
    """A mail provider that takes each message only when the test lets it, or refuses."""

    def __init__(self) -> None:
        self.open = threading.Event()
        self.refuse = False
        self.sent: list[Message] = []

    def send(self, message: Message) -> str:
        assert self.open.wait(30), "the test never let the provider go"
        if self.refuse:
            raise MailError("550 try again later")
        self.sent.append(message)
        return "queued"


def _status(engine: Engine, email: str) -> str | None:
    with Session(engine) as session:
        row = subs.find_by_email(session, email)
        return row.status if row else None


def test_every_signup_answers_before_any_mail_goes(web_settings: Settings,
                                                   engine: Engine) -> None:
    provider = HeldProvider()
    client = create_app(web_settings, engine=engine, sender=provider).test_client()
    with transaction(engine) as session:
        subs.suppress(session, "bounced@example.com", "bounce")

    # The provider is stuck: had the requests sent mail themselves, the first would hang.
    for address in ("new@example.com", "bounced@example.com", "new@example.com"):
        answer = subscribe(client, address)
        assert answer.status_code == 200 and "Check your inbox" in answer.get_data(as_text=True)
    assert provider.sent == []

    provider.open.set()
    mail_queue.drain_all()
    # One confirmation: none to the suppressed address, none again within ten minutes.
    assert [m.to for m in provider.sent] == ["new@example.com"]
    assert "/confirm/" in provider.sent[0].text
    assert _status(engine, "new@example.com") == "pending"


def test_a_refused_confirmation_lets_the_reader_ask_again_at_once(
    web_settings: Settings, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(services, "SEND_ATTEMPTS", (0.0, 0.0, 0.0))
    provider = HeldProvider()
    provider.open.set()
    provider.refuse = True
    client = create_app(web_settings, engine=engine, sender=provider).test_client()
    assert subscribe(client, "reader@example.com").status_code == 200
    mail_queue.drain_all()
    assert provider.sent == []

    # Not "a mail went out less than 10 minutes ago": none did.
    provider.refuse = False
    assert subscribe(client, "reader@example.com").status_code == 200
    mail_queue.drain_all()
    assert [m.to for m in provider.sent] == ["reader@example.com"]


def test_a_confirmation_superseded_before_it_leaves_is_not_sent(
    web_settings: Settings, engine: Engine
) -> None:
    """Each mail's link confirms what that mail lists; an older one would only fail."""
    svc = Services.build(web_settings, engine, HeldProvider())
    now = utcnow()
    values = reader_input.parse_preferences(["llm"], "daily")
    first = signup._record_signup(svc, "reader@example.com", values, now, limited=False)
    with transaction(engine) as session:
        row = subs.find_by_email(session, "reader@example.com")
        assert row is not None
        row.last_confirmation_sent_at = None  # let a second sign-up mail again
    second = signup._record_signup(svc, "reader@example.com",
                                   reader_input.parse_preferences(["rl"], "weekly"), now,
                                   limited=False)
    svc.sender.open.set()  # type: ignore[attr-defined]
    assert send_job(svc, first) is None
    sent = send_job(svc, second)
    assert sent is not None and "Reinforcement Learning" in sent.text


def test_jobs_survive_the_broker_as_json() -> None:
    job = mail_queue.MailJob(kind="confirmation", subscriber_id=7, limited=True,
                             nonce="n", topics=("llm", "rl"), frequency="weekly")
    assert mail_queue.MailJob.from_json(job.to_json()) == job


@pytest.mark.redis
def test_with_a_broker_a_mail_worker_sends_it(
    web_settings: Settings, engine: Engine, database_url: str, redis_url: str,
    tmp_path: Path
) -> None:
    worker_outbox = tmp_path / "worker-outbox"
    env = {"REDIS_URL": redis_url, "DATABASE_URL": database_url, "MAIL_BACKEND": "file",
           "OUTBOX_DIR": str(worker_outbox), "BASE_URL": web_settings.base_url,
           "PAPERWIRE_DEV": "1"}
    site = create_app(web_settings.model_copy(update={"redis_url": redis_url}),
                      engine=engine).test_client()
    with celery_worker(env, "signup", tmp_path / "worker.log"):
        assert subscribe(site, "reader@example.com").status_code == 200
        wait_until(lambda: mails_in(worker_outbox), 60, "the confirmation from the worker",
                   logs=(tmp_path / "worker.log",))
    [mail] = mails_in(worker_outbox)
    assert mail["To"] == "reader@example.com"
    assert mails_in(web_settings.outbox_dir) == []  # the web process sent nothing itself
    confirm = link(mail, "confirm")
    page = site.get(confirm)
    assert page.status_code == 200 and "reader@example.com" in page.get_data(as_text=True)
