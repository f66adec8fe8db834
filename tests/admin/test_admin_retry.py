"""The admin's "Retry the failed deliveries" never sends mail from the web request
(issue 22, finding 7): it queues the deliveries for the mail workers, or says plainly why
it cannot. Before, with Redis down and SendGrid answering in 6 s, the POST sent a
thousand digests itself and gunicorn killed it after 30 s (a 500), leaving them `sending`.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from sqlalchemy import Engine, text

from newsletter.cards.summarize import summarize_pending
from newsletter.config import Settings
from newsletter.delivery import prepare_edition
from newsletter.web import create_app
from tests.support import web
from tests.support.admin_desk import add_operator, confirmed_reader, sign_in, todays_papers
from tests.support.sendgrid_server import Fault, SendGridServer
from tests.support.servers import redis_process

KEY = "SG.retry"
_TOKENS = re.compile(r'name="(csrf_token|admin_csrf)" value="([^"]+)"')
web_settings = web.web_settings


@pytest.fixture
def slow_sendgrid() -> Iterator[SendGridServer]:
    """SendGrid answering every request in 6 s, as in the review."""
    with SendGridServer(api_key=KEY) as server:
        server.on_request = lambda _r: Fault(delay=6.0)
        yield server


def failed_edition(app_engine: Engine, desk_app: object, readers: int = 3) -> int:
    emails = [f"r{i}@example.org" for i in range(readers)]
    for email in emails:
        confirmed_reader(desk_app, email)  # type: ignore[arg-type]
    todays_papers(app_engine)
    summarize_pending(app_engine, Settings(database_url=str(app_engine.url)))
    edition_id, _, _ = prepare_edition(app_engine, "daily", datetime.now(UTC).date())
    with app_engine.begin() as conn:
        conn.execute(text("UPDATE deliveries SET status = 'failed', attempts = 5, "
                          "error = 'SendGrid 503: try later'"))
    return edition_id


def retry(desk: FlaskClient, edition_id: int) -> tuple[int, float, str]:
    """Press the edition page's retry button: the answer's status, how long it took, and
    the page it leads to."""
    page = f"/admin/editions/{edition_id}"
    tokens = dict(_TOKENS.findall(desk.get(page).get_data(as_text=True)))
    started = time.monotonic()
    answer = desk.post(f"{page}/retry", data=tokens)
    took = time.monotonic() - started
    return answer.status_code, took, desk.get(page).get_data(as_text=True)


def statuses(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return dict(conn.execute(text(  # type: ignore[arg-type]
            "SELECT status, count(*) FROM deliveries GROUP BY status")).all())


def desk_for(settings: Settings, engine: Engine) -> tuple[object, FlaskClient]:
    app = create_app(settings, engine=engine)
    desk = app.test_client()
    add_operator(engine)
    sign_in(desk)
    return app, desk


@pytest.mark.redis
def test_with_redis_stopped_a_retry_answers_at_once_and_sends_nothing(
        engine: Engine, web_settings: Settings, slow_sendgrid: SendGridServer,
        tmp_path: Path) -> None:
    with redis_process() as redis:
        redis.stop()
        settings = web_settings.model_copy(update={
            "redis_url": redis.url, "mail_backend": "sendgrid", "sendgrid_api_key": KEY,
            "sendgrid_host": slow_sendgrid.url})
        app, desk = desk_for(settings, engine)
        edition_id = failed_edition(engine, app)

        status, took, page = retry(desk, edition_id)

    assert status == 303
    assert took < 2.0  # not a provider's 6 s, nor a broker's connect retries
    assert "Not retried: the mail workers&#39; queue (Redis) is not answering" in page
    assert "3 deliveries are still failed" in page
    assert statuses(engine) == {"failed": 3}  # the button is there to press again
    assert "Retry the 3 failed deliveries" in page
    assert [r for r in slow_sendgrid.requests if r.path.endswith("/mail/send")] == []


def test_without_a_broker_a_retry_leaves_the_deliveries_to_newsletter_send(
        engine: Engine, web_settings: Settings, slow_sendgrid: SendGridServer) -> None:
    settings = web_settings.model_copy(update={
        "mail_backend": "sendgrid", "sendgrid_api_key": KEY,
        "sendgrid_host": slow_sendgrid.url})
    app, desk = desk_for(settings, engine)
    edition_id = failed_edition(engine, app)

    status, took, page = retry(desk, edition_id)

    assert status == 303 and took < 2.0
    day = datetime.now(UTC).date().isoformat()
    assert "3 deliveries are pending again" in page
    assert f"newsletter send --date {day}" in page
    assert statuses(engine) == {"pending": 3}
    assert slow_sendgrid.requests == []
