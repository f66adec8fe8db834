"""A broker that is down or hung costs a request milliseconds, and loses no mail
(docs/SECURITY.md, issue 22 finding 3).

Before, `send_task(..., retry=False)` still spent about 6 s against a stopped Redis (kombu
retried the connection once a second until its 4 s connect timeout, then slept once
more), so every sign-up, an operator's queueing action and /healthz held a web worker
that long. The real redis-server is stopped (and, for a hung broker, frozen with SIGSTOP)
under the site; the mail the requests owe waits in the database and a real worker sends
it, once, when Redis is back.
"""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask.testing import FlaskClient
from sqlalchemy import Engine, MetaData, text

from newsletter.admin.status import WriteProbe
from newsletter.config import Settings
from newsletter.subscriptions.mail_queue import WaitingMail
from newsletter.web import create_app
from tests.support import web
from tests.support.admin_desk import add_operator, failed_card, sign_in, todays_papers
from tests.support.celery_procs import running, start_beat, start_worker, wait_until
from tests.support.servers import RedisServer, redis_process
from tests.support.web import link, mails_in, subscribe

web_settings = web.web_settings

FORM_TOKENS = re.compile(r'name="(csrf_token|admin_csrf)" value="([^"]+)"')
# Generous: a request that waited on the broker took 6 s or more.
PROMPT = 2.0


@pytest.fixture
def database_url(postgres_url: str) -> str:
    return postgres_url


def timed(request: Callable[[], object]) -> tuple[object, float]:
    started = time.monotonic()
    answer = request()
    return answer, time.monotonic() - started


def sign_up_promptly(site: FlaskClient, address: str) -> None:
    answer, took = timed(lambda: subscribe(site, address))
    assert answer.status_code == 200, answer.status_code  # type: ignore[attr-defined]
    assert "Check your inbox" in answer.get_data(as_text=True)  # type: ignore[attr-defined]
    assert took < PROMPT, f"the sign-up of {address} waited {took:.1f} s on the broker"


def waiting_mail(engine: Engine) -> int:
    with engine.connect() as conn:
        return conn.execute(text("SELECT count(*) FROM waiting_mail")).scalar_one()


def mails_sent_once_the_broker_is_back(settings: Settings, engine: Engine, database_url: str,
                                       redis: RedisServer, tmp_path: Path) -> list[EmailMessage]:
    """Run a mail worker and beat until no job waits; the mails the worker sent, after beat
    has handed it the waiting mail twice more (nothing may go twice)."""
    outbox, logs = tmp_path / "worker-outbox", (tmp_path / "worker.log", tmp_path / "beat.log")
    env = {**os.environ, "DATABASE_URL": database_url, "REDIS_URL": redis.url,
           "MAIL_BACKEND": "file", "OUTBOX_DIR": str(outbox), "BASE_URL": settings.base_url,
           "PAPERWIRE_DEV": "1", "WAITING_MAIL_SCHEDULE": "1s"}
    worker = start_worker(env, logs[0], queues="signup", pool="solo", concurrency=1)
    beat = start_beat(env, tmp_path)

    def sweeps() -> int:
        return logs[0].read_text().count("paperwire.send_waiting_mail")

    with running(worker, beat):
        wait_until(lambda: waiting_mail(engine) == 0, 90, "no mail waiting", logs=logs)
        runs = sweeps()
        wait_until(lambda: sweeps() >= runs + 4, 60, "two more sweeps", logs=logs)
    return mails_in(outbox)


@pytest.mark.postgres
@pytest.mark.redis
def test_signups_while_redis_is_stopped_answer_at_once_and_are_mailed_once_it_is_back(
    web_settings: Settings, engine: Engine, database_url: str, tmp_path: Path
) -> None:
    readers = [f"reader{n}@example.org" for n in range(3)]
    with redis_process() as redis:
        settings = web_settings.model_copy(update={"redis_url": redis.url})
        site = create_app(settings, engine=engine).test_client()
        redis.stop()

        for address in readers:
            sign_up_promptly(site, address)
        health, took = timed(lambda: site.get("/healthz"))
        assert took < PROMPT, f"/healthz waited {took:.1f} s on the broker"
        assert health.get_json()["broker"] == "error"  # type: ignore[attr-defined]
        assert waiting_mail(engine) == len(readers)

        redis.start()
        mails = mails_sent_once_the_broker_is_back(settings, engine, database_url, redis,
                                                   tmp_path)
    assert sorted(m["To"] for m in mails) == readers
    assert mails_in(settings.outbox_dir) == []  # the web process sent nothing itself
    page = site.get(link(mails[0], "confirm"))
    assert page.status_code == 200


@pytest.mark.postgres
@pytest.mark.redis
def test_a_hung_broker_holds_one_request_at_most_briefly_and_the_rest_not_at_all(
    web_settings: Settings, engine: Engine, database_url: str, tmp_path: Path
) -> None:
    readers = [f"reader{n}@example.org" for n in range(4)]
    with redis_process() as redis:
        settings = web_settings.model_copy(update={"redis_url": redis.url})
        site = create_app(settings, engine=engine).test_client()
        os.kill(redis.pid, signal.SIGSTOP)  # accepts connections, never answers
        try:
            for address in readers:
                sign_up_promptly(site, address)
            page, took = timed(lambda: site.get("/"))
            assert page.status_code == 200 and took < PROMPT  # type: ignore[attr-defined]
        finally:
            os.kill(redis.pid, signal.SIGCONT)
        assert waiting_mail(engine) == len(readers)
        # The first job's publish timed out, yet Redis may have taken it once thawed: the
        # worker and beat's sweep both see it, and one of them sends it.
        mails = mails_sent_once_the_broker_is_back(settings, engine, database_url, redis,
                                                   tmp_path)
    assert sorted(m["To"] for m in mails) == readers


@pytest.mark.postgres
@pytest.mark.redis
def test_an_operators_queueing_action_does_not_wait_on_a_stopped_broker(
    web_settings: Settings, engine: Engine
) -> None:
    add_operator(engine)
    [paper] = todays_papers(engine, 1)
    failed_card(engine, paper)
    with redis_process() as redis:
        site = create_app(web_settings.model_copy(update={"redis_url": redis.url}),
                          engine=engine).test_client()
        sign_in(site)
        tokens = dict(FORM_TOKENS.findall(site.get("/admin/cards").get_data(as_text=True)))
        redis.stop()
        answer, took = timed(lambda: site.post(f"/admin/cards/{paper}/rerun", data=tokens))
    assert answer.status_code == 303, answer.status_code  # type: ignore[attr-defined]
    assert took < PROMPT, f"re-running a card waited {took:.1f} s on the broker"


def test_the_migration_makes_the_waiting_mail_and_write_probe_tables_the_models_describe(
        engine: Engine) -> None:
    models = MetaData()
    for table in (WaitingMail, WriteProbe):
        table.__table__.to_metadata(models)  # type: ignore[attr-defined]

    def ours(_obj, name, type_, _reflected, _compare_to):  # type: ignore[no-untyped-def]
        return type_ != "table" or name in {"waiting_mail", "write_probes"}

    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"include_object": ours})
        assert compare_metadata(context, models) == []
