"""Fetching feeds over HTTP from a local server that serves the real arXiv documents."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from email.utils import format_datetime

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from newsletter.config import Settings
from newsletter.ingest.feed import Feed
from newsletter.ingest.fetch import Fetcher, retry_after_seconds
from newsletter.ingest.run import ingest_feeds
from newsletter.ingest.store import arxiv_feed_url, backfill
from tests.conftest import LOCAL_FIXTURES, arxiv_fixture
from tests.ingest.test_ingest import dump
from tests.support.http import Reply, Request, ScriptedServer
from tests.support.servers import free_port

COMBINED = arxiv_fixture("rss_cs.LG+cs.AI+cs.CL+stat.ML_2026-09-24.xml").read_bytes()
CATEGORIES = "cs.LG,cs.AI,cs.CL,stat.ML"


class Sleeps(list[float]):
    """Records the waits the fetcher asks for instead of waiting them."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


def fetcher(sleeps: Sleeps, **kw: float) -> Fetcher:
    options = {"timeout": 2.0, "retries": 2, "max_wait": 30.0, **kw}
    return Fetcher(sleep=sleeps, **options)  # type: ignore[arg-type]


def served(settings: Settings, server: ScriptedServer) -> Settings:
    return settings.model_copy(update={
        "arxiv_rss_url": f"{server.url}/rss/",
        "arxiv_api_url": f"{server.url}/api/query",
        "arxiv_categories": tuple(CATEGORIES.split(",")),
    })


def feed_row(engine: Engine) -> Feed:
    with Session(engine) as session:
        return session.exec(select(Feed)).one()


def script(*replies: Reply) -> Iterator[Reply]:
    yield from replies
    while True:
        yield replies[-1]


def test_combined_feed_url_names_every_category(settings: Settings) -> None:
    assert arxiv_feed_url(settings) == "https://rss.arxiv.org/rss/cs.LG+cs.CL+cs.CV+cs.AI+stat.ML"


def test_conditional_get_turns_a_repeat_into_a_304(
    engine: Engine, settings: Settings, sleeps: Sleeps
) -> None:
    def respond(request: Request) -> Reply:
        if request.headers.get("if-none-match") == '"v1"':
            return Reply(304)
        return Reply(200, COMBINED,
                     {"ETag": '"v1"', "Last-Modified": "Thu, 24 Sep 2026 08:58:05 GMT"})

    with ScriptedServer(respond) as server:
        config = served(settings, server)
        first = ingest_feeds(engine, config, fetcher=fetcher(sleeps))
        before = dump(engine)
        second = ingest_feeds(engine, config, fetcher=fetcher(sleeps))
    assert first.total("added") == 4
    assert server.requests[0].path == "/rss/cs.LG+cs.AI+cs.CL+stat.ML"
    assert server.requests[1].headers["if-none-match"] == '"v1"'
    assert server.requests[1].headers["if-modified-since"] == "Thu, 24 Sep 2026 08:58:05 GMT"
    assert second.feeds[0].state == "not_modified"
    assert dump(engine) == before
    status = feed_row(engine)
    assert (status.state, status.http_status, status.etag) == ("not_modified", 304, '"v1"')
    # The counts of the last real fetch stay visible.
    assert status.papers_added == 4


def test_requests_say_who_we_are_and_where_to_reach_the_operator(
    engine: Engine, settings: Settings
) -> None:
    config = settings.model_copy(update={"base_url": "https://papers.example-lab.org"})
    with ScriptedServer(lambda r: Reply(200, COMBINED)) as server:
        ingest_feeds(engine, served(config, server))
    agent = server.requests[0].headers["user-agent"]
    assert agent.startswith("Paperwire/") and "arXiv digest" in agent
    assert "+https://papers.example-lab.org" in agent


def test_429_waits_as_long_as_retry_after_says(
    engine: Engine, settings: Settings, sleeps: Sleeps
) -> None:
    replies = script(Reply(429, b"slow down", {"Retry-After": "7"}), Reply(200, COMBINED))
    with ScriptedServer(lambda r: next(replies)) as server:
        summary = ingest_feeds(engine, served(settings, server), fetcher=fetcher(sleeps))
    assert sleeps == [7.0]
    assert len(server.requests) == 2
    assert summary.total("added") == 4 and summary.errors == 0


def test_503_then_200_backs_off_and_succeeds(
    engine: Engine, settings: Settings, sleeps: Sleeps
) -> None:
    replies = script(Reply(503), Reply(503), Reply(200, COMBINED))
    with ScriptedServer(lambda r: next(replies)) as server:
        summary = ingest_feeds(engine, served(settings, server), fetcher=fetcher(sleeps))
    assert len(server.requests) == 3
    assert len(sleeps) == 2 and sleeps[1] > sleeps[0] > 0
    assert summary.total("added") == 4
    assert feed_row(engine).state == "ok"


def test_retry_after_longer_than_we_wait_is_a_clear_error(
    engine: Engine, settings: Settings, sleeps: Sleeps
) -> None:
    with ScriptedServer(lambda r: Reply(429, headers={"Retry-After": "3600"})) as server:
        summary = ingest_feeds(engine, served(settings, server), fetcher=fetcher(sleeps))
    assert sleeps == []
    assert summary.errors == 1
    assert "wait 3600s" in feed_row(engine).last_error


def test_a_server_that_never_answers_times_out_and_nothing_is_written(
    engine: Engine, settings: Settings, sleeps: Sleeps
) -> None:
    with ScriptedServer(lambda r: Reply(200, COMBINED, delay=1.5)) as server:
        summary = ingest_feeds(
            engine, served(settings, server), fetcher=fetcher(sleeps, timeout=0.3, retries=1)
        )
    assert len(server.requests) == 2
    assert summary.errors == 1
    assert dump(engine) == []
    status = feed_row(engine)
    assert status.state == "error" and "timed out after 2 attempts" in status.last_error


def test_unreachable_host_is_recorded(engine: Engine, settings: Settings, sleeps: Sleeps) -> None:
    config = settings.model_copy(update={"arxiv_rss_url": f"http://127.0.0.1:{free_port()}/rss/"})
    summary = ingest_feeds(engine, config, fetcher=fetcher(sleeps, retries=0))
    assert summary.errors == 1
    assert "could not connect" in feed_row(engine).last_error


def test_bad_category_400_is_an_error_with_arxivs_words(
    engine: Engine, settings: Settings, sleeps: Sleeps
) -> None:
    body = (LOCAL_FIXTURES / "rss_feed_error_400.xml").read_bytes()
    with ScriptedServer(lambda r: Reply(400, body)) as server:
        summary = ingest_feeds(engine, served(settings, server), fetcher=fetcher(sleeps))
    assert len(server.requests) == 1  # a 400 is never retried
    status = feed_row(engine)
    assert (status.state, status.http_status) == ("error", 400)
    assert "HTTP 400" in status.last_error and "cs.XX" in status.last_error
    assert summary.feeds[0].line().startswith("arXiv cs.LG+cs.AI+cs.CL+stat.ML: ERROR")


def test_extra_source_feeds_are_fetched_too(
    engine: Engine, settings: Settings, sleeps: Sleeps
) -> None:
    lab = (LOCAL_FIXTURES / "lab_blog.xml").read_bytes()
    with ScriptedServer(lambda r: Reply(200, lab if r.path == "/lab.xml" else COMBINED)) as server:
        config = served(settings, server).model_copy(
            update={"feed_urls": (f"example-lab={server.url}/lab.xml",)}
        )
        summary = ingest_feeds(engine, config, fetcher=fetcher(sleeps))
    assert [f.label for f in summary.feeds] == ["arXiv cs.LG+cs.AI+cs.CL+stat.ML", "example-lab"]
    # The lab's second post links to an arXiv paper of the listing: the same work, once.
    assert (summary.total("added"), summary.total("merged")) == (5, 1)


def api_pages(request: Request) -> Reply:
    start = int(request.query["start"][0])
    name = "api_query_cs.LG_OR_cs.AI_20.xml" if start == 0 else "api_empty.xml"
    return Reply(200, arxiv_fixture(name).read_bytes())


def test_backfill_pages_through_the_api_politely(
    engine: Engine, settings: Settings, sleeps: Sleeps
) -> None:
    with ScriptedServer(api_pages) as server:
        summary = backfill(
            engine, served(settings, server), since=date(2026, 4, 1), until=date(2026, 4, 30),
            fetcher=fetcher(sleeps, pause=3.0), page_size=20,
        )
    assert summary.total("added") == 20
    assert [r.query["start"] for r in server.requests] == [["0"], ["20"]]
    query = server.requests[0].query["search_query"][0]
    assert "cat:cs.LG OR cat:cs.AI OR cat:cs.CL OR cat:stat.ML" in query
    assert "submittedDate:[202604010000 TO 202604302359]" in query
    assert server.requests[0].query["sortBy"] == ["submittedDate"]
    # The second call waited for the pause arXiv asks API clients to keep.
    assert len(sleeps) == 1 and 2.5 < sleeps[0] <= 3.0


def test_backfill_stops_at_an_api_error(engine: Engine, settings: Settings, sleeps: Sleeps) -> None:
    error = arxiv_fixture("api_error_400.xml").read_bytes()
    with ScriptedServer(lambda r: Reply(400, error)) as server:
        summary = backfill(engine, served(settings, server), since=date(2026, 4, 1),
                           fetcher=fetcher(sleeps))
    assert len(server.requests) == 1
    assert summary.errors == 1 and dump(engine) == []
    assert "incorrect id format" in feed_row(engine).last_error


def test_retry_after_as_an_http_date() -> None:
    now = datetime(2026, 9, 24, 12, 0, tzinfo=UTC)
    later = format_datetime(now + timedelta(seconds=90), usegmt=True)
    assert retry_after_seconds(later, now=now) == 90
    assert retry_after_seconds("12") == 12
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds(None) is None
