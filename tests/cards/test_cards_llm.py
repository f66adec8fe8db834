"""Cards written by the real `openai` client against a local OpenAI-compatible server.

Every answer a real endpoint can give (good, 429, 500, too slow, not JSON, a refusal, topics
outside the taxonomy, too few key points) must end in a valid card, a retry or a recorded
failure: never a crash, never a paper lost.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from newsletter.cards.card import Card, card_json, check_draft
from newsletter.cards.llm_writer import LLMWriter, Throttle
from newsletter.cards.price import PRICES_PER_MTOK
from newsletter.cards.prompt import PROMPT_VERSION
from newsletter.cards.summarize import SummarizeReport, summarize_pending
from newsletter.config import Settings
from newsletter.ingest.paper import Paper
from newsletter.ingest.parse import parse_feed
from newsletter.ingest.store import ingest_files, store_entries
from newsletter.topics.taxonomy import built_in
from tests.conftest import arxiv_fixture
from tests.support.http import Reply
from tests.support.openai_server import (
    Call,
    OpenAIServer,
    card_dict,
    completion,
    error,
    good_card,
)

COMBINED = arxiv_fixture("rss_cs.LG+cs.AI+cs.CL+stat.ML_2026-09-24.xml")
API = arxiv_fixture("api_query_cs.LG_OR_cs.AI_20.xml")
TITLES = {e.key: e.title for e in parse_feed(COMBINED.read_bytes()).entries}
ATTEMPTS = 3


@pytest.fixture
def papers(engine: Engine) -> dict[str, Paper]:
    ingest_files(engine, [COMBINED])
    with Session(engine) as session:
        return {p.key: p for p in session.exec(select(Paper))}


def llm_settings(settings: Settings, server: OpenAIServer, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": settings.database_url, "openai_api_key": "test-key",
        "openai_base_url": server.base_url, "openai_model": "gpt-4o-mini",
        "llm_timeout": 0.5, "llm_backoff": 0.01, "llm_max_wait": 0.2,
        "llm_max_attempts": ATTEMPTS, "llm_concurrency": 4, "llm_max_failures": 5,
        **overrides,
    }
    return Settings(**values)


@pytest.fixture
def serve() -> Iterator[Any]:
    servers: list[OpenAIServer] = []

    def start(script: Any = good_card) -> OpenAIServer:
        server = OpenAIServer(script).__enter__()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.__exit__(None, None, None)


def run(engine: Engine, settings: Settings, server: OpenAIServer, **kw: Any) -> SummarizeReport:
    return summarize_pending(engine, llm_settings(settings, server), **kw)


def cards(engine: Engine) -> dict[str, Card]:
    with Session(engine) as session:
        rows = session.exec(select(Paper.key, Card).join(Card, Card.paper_id == Paper.id))
        return {key: card for key, card in rows}


def only(title_key: str, bad: Any) -> Any:
    """A script: `bad(call)` for one paper, good cards for every other."""
    def script(call: Call) -> Reply:
        return bad(call) if call.title == TITLES[title_key] else good_card(call)
    return script


def assert_valid(card: Card) -> None:
    assert card.status == "ok" and card.last_error is None
    assert 1 <= len(card.topics) <= 3 and set(card.topics) <= set(built_in().slugs)
    assert len(card.key_points) == 4 and all(p.strip() for p in card.key_points)
    assert all(getattr(card, f).strip() for f in ("summary", "methodology", "results",
                                                  "implications"))


def test_good_answers_make_one_card_per_paper_and_record_the_spend(
    engine: Engine, settings: Settings, papers: dict[str, Paper], serve: Any
) -> None:
    server = serve()
    report = run(engine, settings, server)

    assert (report.written, report.failed) == (4, 0)
    assert len(server.calls) == 4
    written = cards(engine)
    assert set(written) == set(papers)
    price_in, price_out = PRICES_PER_MTOK["gpt-4o-mini"]
    for card in written.values():
        assert_valid(card)
        assert (card.source, card.model, card.prompt_version) == ("llm", "gpt-4o-mini",
                                                                  PROMPT_VERSION)
        assert card.attempts == 1 and card.input_tokens > 500 and card.output_tokens > 100
        assert card.cost_usd == pytest.approx(
            (card.input_tokens * price_in + card.output_tokens * price_out) / 1e6)
    assert report.input_tokens == sum(c.input_tokens for c in written.values())
    assert report.cost_usd == pytest.approx(sum(c.cost_usd or 0 for c in written.values()))

    # Each request asks for strict structured output, with the taxonomy in the prompt.
    body = server.calls[0].body
    assert body["model"] == "gpt-4o-mini"
    fmt = body["response_format"]
    assert fmt["type"] == "json_schema" and fmt["json_schema"]["strict"] is True
    schema = fmt["json_schema"]["schema"]
    assert schema["additionalProperties"] is False
    assert set(schema["required"]) == {"topics", "key_points", "summary", "methodology",
                                       "results", "implications"}
    assert schema["properties"]["topics"]["items"]["enum"] == list(built_in().slugs)
    system = body["messages"][0]["content"]
    assert all(t.slug in system and t.description in system for t in built_in().topics)
    for call in server.calls:
        paper = next(p for p in papers.values() if p.title == call.title)
        assert paper.abstract in call.body["messages"][1]["content"]


def test_a_second_run_writes_nothing_and_calls_nothing(
    engine: Engine, settings: Settings, papers: dict[str, Paper], serve: Any
) -> None:
    server = serve()
    run(engine, settings, server)
    before = {k: (c.updated_at, c.summary) for k, c in cards(engine).items()}

    again = run(engine, settings, server)

    assert (again.pending, again.written, again.failed) == (0, 0, 0)
    assert len(server.calls) == 4
    assert {k: (c.updated_at, c.summary) for k, c in cards(engine).items()} == before


def test_429_waits_for_retry_after_up_to_a_cap_then_writes_the_card(
    engine: Engine, settings: Settings, papers: dict[str, Paper], serve: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def script(call: Call) -> Reply:
        if call.number == 1:
            # One paper's server asks for an hour: the wait is cut to LLM_MAX_WAIT (0.2 s).
            wait = "3600" if call.title == TITLES["2609.26811"] else "0.05"
            return error(429, "Rate limit reached", {"Retry-After": wait})
        return good_card(call)

    waits: list[float] = []
    real_hold = Throttle.hold
    monkeypatch.setattr(Throttle, "hold", lambda self, s: (waits.append(s), real_hold(self, s)))
    server = serve(script)
    report = run(engine, settings, server)

    assert (report.written, report.failed) == (4, 0)
    assert sorted(waits) == [0.05, 0.05, 0.05, 0.2]
    assert all(c.attempts == 2 for c in cards(engine).values())
    assert len(server.calls) == 8


# Every way an answer can go wrong, each given to its own paper of the 20-paper API sample.
BAD_ANSWERS: dict[str, tuple[Any, str]] = {
    "500": (lambda c: error(500, "The server had an error"), "HTTP 500"),
    "timeout": (lambda c: good_card(c, delay=1.0), "no answer within 0.5s"),
    "invalid-json": (lambda c: completion(c, '{"topics": ["llm"], "key_points": ['),
                     "invalid JSON"),
    "prose": (lambda c: completion(c, "Sure! Here is the card: topics llm"), "invalid JSON"),
    "refusal": (lambda c: completion(c, None, refusal="I can't help with that."), "refused"),
    "few-points": (lambda c: completion(c, json.dumps(card_dict(
        c, key_points=["Only three points.", "Second point here.", "Third point here."]))),
        "3 key points instead of 4"),
    "truncated": (lambda c: completion(c, json.dumps(card_dict(c))[:200],
                                       finish_reason="length"), "cut off"),
    "429": (lambda c: error(429, "Rate limit reached", {"Retry-After": "0.01"}), "HTTP 429"),
}


@pytest.fixture
def many(engine: Engine) -> dict[str, str]:
    """The API sample's 20 papers, as title -> kind of bad answer (None for the good ones)."""
    ingest_files(engine, [API])
    titles = sorted(e.title for e in parse_feed(API.read_bytes()).entries)
    return dict(zip(titles, [*BAD_ANSWERS, *[""] * len(titles)], strict=False))


def by_key(engine: Engine) -> dict[str, tuple[str, Card]]:
    with Session(engine) as session:
        rows = session.exec(select(Paper.title, Card).join(Card, Card.paper_id == Paper.id))
        return {title: (title, card) for title, card in rows}


def test_each_kind_of_bad_first_answer_is_retried_into_a_valid_card(
    engine: Engine, settings: Settings, many: dict[str, str], serve: Any
) -> None:
    def script(call: Call) -> Reply:
        kind = many[call.title]
        return BAD_ANSWERS[kind][0](call) if kind and call.number == 1 else good_card(call)

    server = serve(script)
    report = run(engine, settings, server)

    assert (report.written, report.failed) == (20, 0)
    for title, (_, card) in by_key(engine).items():
        assert_valid(card)
        assert card.attempts == (2 if many[title] else 1), many[title]
    assert len(server.calls) == 20 + len(BAD_ANSWERS)


def test_papers_that_always_fail_are_recorded_and_never_block_the_rest(
    engine: Engine, settings: Settings, many: dict[str, str], serve: Any
) -> None:
    def script(call: Call) -> Reply:
        kind = many[call.title]
        return BAD_ANSWERS[kind][0](call) if kind else good_card(call)

    server = serve(script)
    report = run(engine, settings, server)

    assert (report.written, report.failed) == (20 - len(BAD_ANSWERS), len(BAD_ANSWERS))
    written = by_key(engine)
    assert len(written) == 20
    for title, (_, card) in written.items():
        kind = many[title]
        if not kind:
            assert_valid(card)
            continue
        assert card.status == "failed", kind
        assert BAD_ANSWERS[kind][1] in (card.last_error or ""), (kind, card.last_error)
        assert card.attempts == ATTEMPTS and card.failures == 1
        assert len(server.calls_for(title)) == ATTEMPTS
        assert card_json(card) is None
    # Failed papers are still stored, listed with their abstract and no card.
    with Session(engine) as session:
        assert len(session.exec(select(Paper)).all()) == 20


def test_a_failed_card_is_retried_on_the_next_sweep(
    engine: Engine, settings: Settings, papers: dict[str, Paper], serve: Any
) -> None:
    broken = serve(only("2609.26820", lambda c: error(503, "overloaded")))
    run(engine, settings, broken)
    assert cards(engine)["2609.26820"].status == "failed"

    healthy = serve()
    report = run(engine, settings, healthy)

    assert (report.pending, report.written) == (1, 1)
    assert [c.title for c in healthy.calls] == [TITLES["2609.26820"]]
    assert_valid(cards(engine)["2609.26820"])
    assert cards(engine)["2609.26820"].failures == 0


def test_a_card_that_keeps_failing_stops_being_retried_until_asked(
    engine: Engine, settings: Settings, papers: dict[str, Paper], serve: Any
) -> None:
    server = serve(only("2609.26820", lambda c: error(500, "boom")))
    capped = llm_settings(settings, server, llm_max_failures=2)
    for _ in range(2):
        summarize_pending(engine, capped)
    calls = len(server.calls)
    assert cards(engine)["2609.26820"].failures == 2

    assert summarize_pending(engine, capped).pending == 0
    assert len(server.calls) == calls
    # Naming the paper retries it regardless.
    named = summarize_pending(engine, capped, paper_id=papers["2609.26820"].id)
    assert named.pending == 1 and len(server.calls) == calls + ATTEMPTS


def test_topics_outside_the_taxonomy_are_dropped(
    engine: Engine, settings: Settings, papers: dict[str, Paper], serve: Any
) -> None:
    def script(call: Call) -> Reply:
        topics = ["quantum-gravity", "Large Language Models", "llm", "nlp", "vision", "rl"]
        return completion(call, json.dumps(card_dict(call, topics=topics)))

    server = serve(script)
    report = run(engine, settings, server)

    assert report.written == 4 and len(server.calls) == 4
    assert all(c.topics == ["llm", "nlp", "vision"] for c in cards(engine).values())


def test_no_topic_in_the_taxonomy_retries_then_takes_the_offline_topics(
    engine: Engine, settings: Settings, papers: dict[str, Paper], serve: Any
) -> None:
    def script(call: Call) -> Reply:
        return completion(call, json.dumps(card_dict(call, topics=["astrophysics"])))

    server = serve(script)
    report = run(engine, settings, server)

    assert (report.written, report.failed) == (4, 0)
    assert len(server.calls) == 4 * ATTEMPTS
    for card in cards(engine).values():
        assert_valid(card)
        assert card.source == "llm"
    # 2609.26811 is a cs.LG paper about optimization; the offline guess says so.
    assert "optimization" in cards(engine)["2609.26811"].topics


def test_a_replacement_with_the_same_text_writes_nothing_and_a_changed_abstract_one_card(
    engine: Engine, settings: Settings, papers: dict[str, Paper], serve: Any
) -> None:
    server = serve()
    run(engine, settings, server)
    entries = {e.key: e for e in parse_feed(COMBINED.read_bytes()).entries}
    first = cards(engine)

    same = dataclasses.replace(entries["2609.26811"], version=2, announce_type="replace",
                               comment="v2: typos fixed", categories=("cs.LG", "math.OC"))
    with Session(engine) as session:
        assert store_entries(session, [same]).updated == 1
        session.commit()
    nothing = run(engine, settings, server)
    assert (nothing.pending, nothing.written) == (0, 0) and len(server.calls) == 4
    assert cards(engine)["2609.26811"].summary == first["2609.26811"].summary

    changed = dataclasses.replace(same, version=3, abstract=same.abstract + " We add a proof.")
    with Session(engine) as session:
        assert store_entries(session, [changed]).updated == 1
        session.commit()
    once = run(engine, settings, server)

    assert (once.pending, once.written) == (1, 1)
    assert [c.title for c in server.calls[4:]] == [TITLES["2609.26811"]]
    assert "We add a proof." in server.calls[4].abstract
    rewritten = cards(engine)["2609.26811"]
    assert rewritten.id == first["2609.26811"].id
    assert rewritten.text_hash != first["2609.26811"].text_hash
    assert rewritten.summary != first["2609.26811"].summary
    assert "proof" in rewritten.summary
    assert run(engine, settings, server).written == 0


def test_a_forced_rewrite_that_fails_keeps_the_good_card(
    engine: Engine, settings: Settings, papers: dict[str, Paper], serve: Any
) -> None:
    run(engine, settings, serve())
    good = cards(engine)["2609.26811"]

    down = serve(lambda c: error(500, "down"))
    report = run(engine, settings, down, force=True, paper_id=papers["2609.26811"].id)

    assert report.failed == 1
    kept = cards(engine)["2609.26811"]
    assert kept.status == "ok" and kept.summary == good.summary
    assert "HTTP 500" in (kept.last_error or "")


def test_offline_cards_are_upgraded_once_a_key_is_set(
    engine: Engine, settings: Settings, papers: dict[str, Paper], serve: Any
) -> None:
    offline = summarize_pending(engine, settings)
    assert offline.written == 4
    assert {c.source for c in cards(engine).values()} == {"offline"}

    server = serve()
    upgraded = run(engine, settings, server)

    assert upgraded.written == 4 and len(server.calls) == 4
    assert {c.source for c in cards(engine).values()} == {"llm"}
    assert run(engine, settings, server).written == 0


def test_a_wrong_api_key_fails_each_paper_once_without_retrying(
    engine: Engine, settings: Settings, papers: dict[str, Paper], serve: Any
) -> None:
    server = serve()
    report = summarize_pending(engine, llm_settings(settings, server, openai_api_key="wrong"))

    assert (report.written, report.failed) == (0, 4)
    assert len(server.calls) == 0 and len(server.requests) == 4
    assert all("HTTP 401" in (c.last_error or "") for c in cards(engine).values())


def test_the_llm_writer_output_passes_the_card_checks(serve: Any) -> None:
    from newsletter.cards.card import PaperText

    server = serve()
    with LLMWriter(llm_settings(Settings(), server)) as writer:
        result = writer.write(PaperText(id=1, key="x", title="A title", abstract="We study "
                                        "sparse transformers for long contexts."))
    assert result.ok and result.draft is not None
    assert check_draft(result.draft).ok
