"""Paper vectors: once per paper, again only when the text or the vector model changes.

Offline (no key) and through the real `openai` client against the local OpenAI stand-in
(tests/support/openai_server.py), on SQLite and Postgres; the `newsletter embed` command;
the migration; and the Celery task that follows the cards.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from alembic import command
from click.testing import CliRunner
from sqlalchemy import Engine, inspect, text
from sqlmodel import Session, select

from newsletter import db
from newsletter.cli import main
from newsletter.config import ConfigError, Settings, load_settings
from newsletter.ingest.paper import Paper, PaperEntry
from newsletter.ingest.parse import parse_feed
from newsletter.ingest.store import ingest_files, store_entries
from newsletter.relevance import vectors
from newsletter.relevance.embed import (
    EmbedReport,
    PaperToEmbed,
    batches,
    embed_pending,
    shares,
    text_hash,
    vectors_for,
)
from newsletter.relevance.embedders import OPENAI_BATCH_INPUTS, space_for
from newsletter.relevance.tables import PaperVector
from tests.conftest import arxiv_fixture
from tests.support.http import Reply
from tests.support.openai_server import EmbedCall, OpenAIServer, embeddings, error, fake_vector

COMBINED = arxiv_fixture("rss_cs.LG+cs.AI+cs.CL+stat.ML_2026-09-24.xml")
ENTRIES = {e.key: e for e in parse_feed(COMBINED.read_bytes()).entries}


@pytest.fixture
def papers(engine: Engine) -> dict[str, int]:
    """The combined listing's four papers, key -> row id."""
    ingest_files(engine, [COMBINED])
    with Session(engine) as session:
        return {p.key: p.id for p in session.exec(select(Paper)) if p.id is not None}


@pytest.fixture
def serve() -> Iterator[Any]:
    servers: list[OpenAIServer] = []

    def start(embed_script: Any = embeddings) -> OpenAIServer:
        server = OpenAIServer(embed_script=embed_script).__enter__()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.__exit__(None, None, None)


def openai_settings(settings: Settings, server: OpenAIServer, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": settings.database_url, "openai_api_key": "test-key",
        "openai_base_url": server.base_url, "llm_timeout": 0.5, "llm_backoff": 0.01,
        "llm_max_wait": 0.2, "llm_max_attempts": 3, **overrides,
    }
    return Settings(**values)


def stored(engine: Engine) -> dict[int, PaperVector]:
    with Session(engine) as session:
        return {v.paper_id: v for v in session.exec(select(PaperVector))}


def replace_entry(engine: Engine, entry: PaperEntry) -> None:
    with Session(engine) as session:
        assert store_entries(session, [entry]).updated == 1
        session.commit()


def test_offline_vectors_once_per_paper_and_a_second_run_writes_none(
    engine: Engine, settings: Settings, papers: dict[str, int]
) -> None:
    report = embed_pending(engine, settings)

    assert (report.embedded, report.current, report.failed, report.left) == (4, 0, 0, 0)
    assert (report.space, report.tokens, report.cost_usd) == (vectors.OFFLINE_MODEL, 0, 0.0)
    vectors_by_id = stored(engine)
    assert set(vectors_by_id) == set(papers.values())
    with Session(engine) as session:
        for paper in session.exec(select(Paper)):
            vector = vectors_by_id[paper.id]
            assert vector.model == vectors.OFFLINE_MODEL and vector.dims == vectors.OFFLINE_DIMS
            assert vector.text_hash == text_hash(vectors.paper_text(paper.title, paper.abstract))
            # The stored row is the offline space's vector of the paper's text.
            expected = vectors.offline_vectors([vectors.paper_text(paper.title, paper.abstract)])
            assert abs(vectors.decode(vector.data, vector.dims) - expected).max() < 1e-3

    again = embed_pending(engine, settings)

    assert (again.embedded, again.current, again.failed) == (0, 4, 0)
    assert {k: (v.created_at, v.data) for k, v in stored(engine).items()} == \
        {k: (v.created_at, v.data) for k, v in vectors_by_id.items()}


def test_a_new_version_re_embeds_only_when_its_text_changed(
    engine: Engine, settings: Settings, papers: dict[str, int]
) -> None:
    embed_pending(engine, settings)
    first = stored(engine)

    same = dataclasses.replace(ENTRIES["2609.26811"], version=2, announce_type="replace",
                               comment="v2: typos fixed", categories=("cs.LG", "math.OC"))
    replace_entry(engine, same)
    nothing = embed_pending(engine, settings)
    assert (nothing.embedded, nothing.current) == (0, 4)
    assert stored(engine)[papers["2609.26811"]].data == first[papers["2609.26811"]].data

    changed = dataclasses.replace(same, version=3,
                                  abstract=same.abstract + " We add a proof of convergence.")
    replace_entry(engine, changed)
    once = embed_pending(engine, settings)

    assert (once.embedded, once.current) == (1, 3)
    now = stored(engine)
    paper = papers["2609.26811"]
    assert now[paper].data != first[paper].data
    assert now[paper].text_hash == text_hash(vectors.paper_text(changed.title, changed.abstract))
    assert {k: v.data for k, v in now.items() if k != paper} == \
        {k: v.data for k, v in first.items() if k != paper}
    assert embed_pending(engine, settings).embedded == 0


def test_switching_the_vector_model_re_embeds_every_paper(
    engine: Engine, settings: Settings, papers: dict[str, int], serve: Any
) -> None:
    assert embed_pending(engine, settings).embedded == 4
    server = serve()

    small = embed_pending(engine, openai_settings(settings, server))
    assert (small.embedded, small.current, small.space) == \
        (4, 0, "openai:text-embedding-3-small:256")
    large = openai_settings(settings, server, embedding_model="text-embedding-3-large")
    assert embed_pending(engine, large).embedded == 4
    assert embed_pending(engine, large).embedded == 0
    wider = openai_settings(settings, server, embedding_model="text-embedding-3-large",
                            embedding_dimensions=512)
    assert embed_pending(engine, wider).embedded == 4

    assert [(c.body["model"], c.body["dimensions"]) for c in server.embed_calls] == [
        ("text-embedding-3-small", 256), ("text-embedding-3-large", 256),
        ("text-embedding-3-large", 512)]
    assert {(v.model, v.dims) for v in stored(engine).values()} == \
        {("openai:text-embedding-3-large:512", 512)}
    # Back without a key: the offline space again.
    assert embed_pending(engine, settings).embedded == 4


def many_entries(count: int) -> list[PaperEntry]:
    """`count` distinct papers, each a variant of the listing's papers."""
    base = list(ENTRIES.values())
    return [dataclasses.replace(
        base[i % len(base)], key=f"2610.{i:05d}", arxiv_id=f"2610.{i:05d}",
        title=f"{base[i % len(base)].title} (part {i})",
        announced_on=date(2026, 10, 1 + i % 20)) for i in range(count)]


def test_openai_vectors_through_the_real_client_in_batches_with_tokens_and_cost(
    engine: Engine, settings: Settings, serve: Any
) -> None:
    with Session(engine) as session:
        store_entries(session, many_entries(600))
        session.commit()
    server = serve()
    progress: list[str] = []

    report = embed_pending(engine, openai_settings(settings, server), progress=progress.append)

    assert (report.embedded, report.failed, report.left) == (600, 0, 0)
    assert [len(c.inputs) for c in server.embed_calls] == [OPENAI_BATCH_INPUTS] * 2 + [88]
    body = server.embed_calls[0].body
    # What the `openai` client sends when not told an encoding: base64, which it decodes.
    assert (body["model"], body["dimensions"], body["encoding_format"]) == \
        ("text-embedding-3-small", 256, "base64")
    assert progress[0] == "600 papers to embed (openai:text-embedding-3-small:256)"
    assert progress[1:] == ["256 papers embedded (256 of 600)",
                            "512 papers embedded (512 of 600)",
                            "600 papers embedded (600 of 600)"]

    all_vectors = stored(engine)
    billed = sum(sum(-(-len(t) // 4) for t in c.texts) for c in server.embed_calls)
    assert report.tokens == billed == sum(v.input_tokens for v in all_vectors.values())
    assert report.cost_usd == pytest.approx(billed * 0.02 / 1e6)
    assert sum(v.cost_usd or 0 for v in all_vectors.values()) == pytest.approx(report.cost_usd)
    assert all(v.input_tokens > 0 and v.dims == 256 for v in all_vectors.values())
    assert report.line() == (f"embed: 600 papers embedded, 0 current, 0 failed; {billed:,} "
                             f"tokens, ${report.cost_usd:.4f} "
                             "(openai:text-embedding-3-small:256)")

    # Each paper's stored vector is the one the server made from that paper's text.
    space = space_for(openai_settings(settings, server))
    with Session(engine) as session:
        rows = list(session.exec(select(Paper).order_by(Paper.id)))[:50]
        ids, matrix = vectors_for(session, [p.id for p in rows if p.id is not None], space)
    assert len(ids) == 50 and matrix.shape == (50, 256)
    for paper, row in zip(rows, matrix.toarray(), strict=True):
        expected = fake_vector(vectors.paper_text(paper.title, paper.abstract), 256)
        assert np.abs(row - expected).max() < 2e-3


def test_a_500_a_429_and_a_timeout_are_retried_then_the_vectors_are_stored(
    engine: Engine, settings: Settings, papers: dict[str, int], serve: Any
) -> None:
    def script(call: EmbedCall) -> Reply:
        if call.number == 1:
            return error(500, "The server had an error while processing your request")
        if call.number == 2:
            return error(429, "Rate limit reached", {"Retry-After": "0.05"})
        if call.number == 3:
            return embeddings(call, delay=1.0)  # LLM_TIMEOUT is 0.5 s
        return embeddings(call)

    server = serve(script)
    report = embed_pending(engine, openai_settings(settings, server, llm_max_attempts=4))

    assert (report.embedded, report.failed, report.error, report.calls) == (4, 0, None, 4)
    assert len(server.embed_calls) == 4
    assert len(stored(engine)) == 4


def test_a_provider_that_keeps_failing_loses_nothing_and_says_why(
    engine: Engine, settings: Settings, papers: dict[str, int], serve: Any
) -> None:
    down = serve(lambda call: error(503, "The engine is currently overloaded"))
    report = embed_pending(engine, openai_settings(settings, down))

    assert (report.embedded, report.failed) == (0, 4)
    assert report.error == ("a request for 4 papers failed after 3 calls: HTTP 503: "
                            "The engine is currently overloaded")
    assert len(down.embed_calls) == 3
    assert stored(engine) == {}

    healthy = serve()
    again = embed_pending(engine, openai_settings(settings, healthy))
    assert (again.embedded, again.failed) == (4, 0)


def test_a_failure_mid_run_keeps_the_earlier_batches_and_leaves_the_rest(
    engine: Engine, settings: Settings, serve: Any
) -> None:
    with Session(engine) as session:
        store_entries(session, many_entries(600))
        session.commit()
    server = serve(lambda c: embeddings(c) if c.number == 1 else error(500, "boom"))

    report = embed_pending(engine, openai_settings(settings, server))

    assert (report.embedded, report.failed, report.left) == (256, 256, 88)
    assert len(stored(engine)) == 256
    assert "HTTP 500: boom" in (report.error or "")


def test_a_wrong_key_is_not_retried(
    engine: Engine, settings: Settings, papers: dict[str, int], serve: Any
) -> None:
    server = serve()
    report = embed_pending(engine, openai_settings(settings, server, openai_api_key="wrong"))

    assert report.error == ("a request for 4 papers failed after 1 call: HTTP 401: "
                            "Incorrect API key provided")
    assert len(server.requests) == 1 and stored(engine) == {}


def test_a_server_that_ignores_the_dimensions_is_refused(
    engine: Engine, settings: Settings, papers: dict[str, int], serve: Any
) -> None:
    def script(call: EmbedCall) -> Reply:
        return embeddings(dataclasses.replace(call, dimensions=1536))

    report = embed_pending(engine, openai_settings(settings, serve(script)))

    assert report.error == ("a request for 4 papers failed after 1 call: the server returned "
                            "1536-dimensional vectors, EMBEDDING_DIMENSIONS is 256")
    assert stored(engine) == {}


def test_a_model_that_takes_no_dimensions_is_asked_without_them(
    engine: Engine, settings: Settings, papers: dict[str, int], serve: Any
) -> None:
    # OpenAI refuses `dimensions` for text-embedding-ada-002 (and compatible servers may for
    # their models): such a model is configured at the size it returns.
    server = serve()
    report = embed_pending(engine, openai_settings(
        settings, server, embedding_model="text-embedding-ada-002", embedding_dimensions=1536))

    assert (report.embedded, report.failed, report.error) == (4, 0, None)
    assert "dimensions" not in server.embed_calls[0].body
    assert {v.model for v in stored(engine).values()} == {"openai:text-embedding-ada-002:1536"}


def test_vectors_can_come_from_their_own_server_while_cards_use_another(
    engine: Engine, settings: Settings, papers: dict[str, int], serve: Any
) -> None:
    # e.g. cards from OpenAI, vectors from a local embeddings server with a key of its own.
    cards, vectors_server = serve(), serve()
    vectors_server.api_key = "local-key"
    chosen = openai_settings(settings, cards, embedding_base_url=vectors_server.base_url,
                             embedding_api_key="local-key")

    report = embed_pending(engine, chosen)

    assert (report.embedded, report.error) == (4, None)
    assert len(vectors_server.embed_calls) == 1 and cards.requests == []
    assert vectors_server.requests[0].headers["authorization"] == "Bearer local-key"


def test_vectors_for_returns_the_papers_with_a_vector_in_the_space(
    engine: Engine, settings: Settings, papers: dict[str, int]
) -> None:
    embed_pending(engine, settings, limit=3)
    space = space_for(settings)
    wanted = [*sorted(papers.values(), reverse=True), 10_000]
    with Session(engine) as session:
        ids, matrix = vectors_for(session, wanted, space)
        assert ids == [i for i in wanted if i in stored(engine)] and len(ids) == 3
        assert matrix.shape == (3, vectors.OFFLINE_DIMS)
        assert np.allclose(matrix.multiply(matrix).sum(axis=1), 1, atol=1e-2)
        other = dataclasses.replace(space, name="openai:text-embedding-3-small:256", dims=256)
        none, empty = vectors_for(session, wanted, other)
    assert none == [] and empty.shape == (0, 256)


def test_batches_keep_to_the_input_and_token_limits() -> None:
    def paper(n: int, chars: int) -> PaperToEmbed:
        return PaperToEmbed(n, "x" * chars, "")

    small = [paper(i, 10) for i in range(600)]
    assert [len(b) for b in batches(small, 256, 250_000)] == [256, 256, 88]
    # 6,000 characters are estimated at 2,001 tokens: 124 of them fit in 250,000.
    big = [paper(i, 6000) for i in range(200)]
    assert [len(b) for b in batches(big, 256, 250_000)] == [124, 76]
    assert [len(b) for b in batches(big, 256, None)] == [200]
    # Past 12,000 characters a text is cut, and so is its estimate.
    huge = [paper(i, 50_000) for i in range(100)]
    assert [len(b) for b in batches(huge, 256, 250_000)] == [62, 38]


def test_shares_split_a_request_s_tokens_in_whole_units() -> None:
    assert shares(10, [1, 1, 1]) == [4, 3, 3]
    assert shares(1000, [100, 300]) == [250, 750]
    assert sum(shares(12_345, [17, 400, 1900, 3])) == 12_345
    assert shares(0, [5, 5]) == [0, 0]


def test_embedding_settings_are_checked_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    assert (Settings().embedding_model, Settings().embedding_dimensions) == \
        ("text-embedding-3-small", 256)
    monkeypatch.setenv("EMBEDDING_DIMENSIONS", "2048")
    with pytest.raises(ConfigError) as raised:
        load_settings()
    assert "EMBEDDING_DIMENSIONS: text-embedding-3-small returns at most 1536 dimensions, " \
           "not 2048" in str(raised.value)
    monkeypatch.setenv("EMBEDDING_DIMENSIONS", "0")
    monkeypatch.setenv("EMBEDDING_MODEL", "text embedding")
    with pytest.raises(ConfigError) as raised:
        load_settings()
    assert "EMBEDDING_DIMENSIONS" in str(raised.value)
    assert "EMBEDDING_MODEL: 'text embedding' is not a model name" in str(raised.value)
    monkeypatch.delenv("EMBEDDING_DIMENSIONS")
    monkeypatch.delenv("EMBEDDING_MODEL")
    monkeypatch.setenv("EMBEDDING_BASE_URL", "http://localhost:11434/v1")
    with pytest.raises(ConfigError) as raised:
        load_settings()
    assert "EMBEDDING_BASE_URL needs EMBEDDING_API_KEY" in str(raised.value)
    monkeypatch.setenv("EMBEDDING_API_KEY", "unused")
    assert space_for(load_settings()).name == "openai:text-embedding-3-small:256"
    monkeypatch.setenv("EMBEDDING_BASE_URL", "localhost:11434")
    with pytest.raises(ConfigError) as raised:
        load_settings()
    assert "must start with http:// or https://" in str(raised.value)


def run_cli(database_url: str, *args: str, **env: str) -> Any:
    return CliRunner().invoke(main, list(args), env={"DATABASE_URL": database_url, **env})


def test_embed_command_shows_progress_and_a_summary(
    database_url: str, papers: dict[str, int], serve: Any
) -> None:
    first = run_cli(database_url, "embed", "--limit", "3")
    assert first.exit_code == 0, first.output
    assert first.stderr.splitlines() == ["3 papers to embed (hashing-tfidf-v1)",
                                         "3 papers embedded (3 of 3)"]
    assert first.stdout == ("embed: 3 papers embedded, 0 current, 0 failed, 1 left; 0 tokens, "
                            "$0.0000 (hashing-tfidf-v1)\n")

    rest = run_cli(database_url, "embed")
    assert rest.stdout.startswith("embed: 1 paper embedded, 3 current, 0 failed; ")
    idle = run_cli(database_url, "embed")
    assert "no paper to embed: every paper's vector is current" in idle.stderr

    down = serve(lambda call: error(500, "The server had an error"))
    failed = run_cli(database_url, "embed", OPENAI_API_KEY="test-key",
                     OPENAI_BASE_URL=down.base_url, LLM_MAX_ATTEMPTS="2", LLM_BACKOFF="0.01")
    assert failed.exit_code == 1
    assert failed.stderr.splitlines()[-1] == (
        "error: a request for 4 papers failed after 2 calls: HTTP 500: The server had an "
        "error; those papers wait for the next run")
    assert failed.stdout.startswith("embed: 0 papers embedded, 0 current, 4 failed; 0 tokens")
    assert "Traceback" not in failed.output
    assert run_cli(database_url, "embed", "--limit", "0").exit_code == 2


def test_the_migration_upgrades_and_downgrades(database_url: str) -> None:
    engine = db.make_engine(database_url)
    try:
        assert "paper_vectors" in inspect(engine).get_table_names()
        columns = {c["name"] for c in inspect(engine).get_columns("paper_vectors")}
        assert columns == {"paper_id", "model", "dims", "text_hash", "data", "input_tokens",
                           "cost_usd", "checked_at", "created_at"}
        config = db._alembic_config(engine)
        with engine.begin() as conn:
            config.attributes["connection"] = conn
            command.downgrade(config, "0008")
        assert "paper_vectors" not in inspect(engine).get_table_names()
        assert db.current_revision(engine) == "0008"
        db.upgrade(engine)
        assert "paper_vectors" in inspect(engine).get_table_names()
        # The vector goes with its paper.
        ingest_files(engine, [COMBINED])
        settings = Settings(database_url=database_url)
        assert embed_pending(engine, settings).embedded == 4
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM papers"))
            assert conn.execute(text("SELECT count(*) FROM paper_vectors")).scalar_one() == 0
    finally:
        engine.dispose()


def test_the_embed_task_runs_on_the_llm_queue() -> None:
    from workers.app import app
    from workers.tasks import embed_papers

    assert embed_papers.name == "paperwire.embed"
    assert app.conf.task_routes["paperwire.embed"] == {"queue": "llm"}


@pytest.mark.redis
def test_cards_are_followed_by_vectors_on_a_real_worker(
    redis_url: str, tmp_path: Path
) -> None:
    from celery import Celery

    from tests.support.servers import celery_worker

    url = f"sqlite:///{tmp_path / 'paperwire.db'}"
    engine = db.make_engine(url)
    db.upgrade(engine)
    ingest_files(engine, [COMBINED])
    env = {"REDIS_URL": redis_url, "DATABASE_URL": url}
    try:
        with celery_worker(env, "llm", tmp_path / "worker.log"):
            client = Celery("paperwire-test", broker=redis_url, backend=redis_url)
            assert client.send_task("paperwire.summarize", queue="llm").get(
                timeout=90)["written"] == 4
            # The summarize task queued the embed task; wait for the worker to finish it.
            deadline = time.monotonic() + 90
            while len(stored(engine)) < 4 and time.monotonic() < deadline:
                time.sleep(0.2)
            assert {v.model for v in stored(engine).values()} == {vectors.OFFLINE_MODEL}
            assert len(stored(engine)) == 4
            again = client.send_task("paperwire.embed", queue="llm").get(timeout=90)
            assert (again["embedded"], again["failed"], again["error"]) == (0, 0, None)
    finally:
        engine.dispose()


def test_report_line_says_when_the_cost_is_unknown() -> None:
    report = EmbedReport(space="openai:my-local-model:256", embedded=2, tokens=10,
                         cost_usd=None)
    assert report.line() == ("embed: 2 papers embedded, 0 current, 0 failed; 10 tokens, "
                             "cost unknown (openai:my-local-model:256)")
