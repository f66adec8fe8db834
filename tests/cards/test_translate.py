"""Cards in the readers' languages: the real `openai` client against the local stand-in.

A card is translated once per paper and language some confirmed reader reads, never per
reader; a rewritten card is translated again and its old translation never shown; a
failed translation leaves readers the English card and is retried up to the cap.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine
from sqlmodel import Session, select

from newsletter.cards import archive
from newsletter.cards.card import Card
from newsletter.cards.price import PRICES_PER_MTOK
from newsletter.cards.summarize import SummarizeReport, summarize_pending
from newsletter.cards.translate import translate_pending, translations_for
from newsletter.cards.translation import (
    TRANSLATION_PROMPT_VERSION,
    CardWords,
    TranslationDraft,
    check_translation,
    size,
    translation_source_hash,
)
from newsletter.cards.translation_table import CardTranslation
from newsletter.cli import main
from newsletter.config import Settings
from newsletter.ingest.paper import Paper
from newsletter.ingest.parse import parse_feed
from newsletter.ingest.store import ingest_files, store_entries
from newsletter.readers.subscriber import languages_in_use
from newsletter.readers.tables import Preferences, Subscriber
from tests.conftest import arxiv_fixture
from tests.support.http import Reply
from tests.support.openai_server import (
    Call,
    OpenAIServer,
    completion,
    error,
    garbage_translation,
    good_translation,
    translate_text,
    translation_dict,
)

COMBINED = arxiv_fixture("rss_cs.LG+cs.AI+cs.CL+stat.ML_2026-09-24.xml")
ENTRIES = {e.key: e for e in parse_feed(COMBINED.read_bytes()).entries}
TITLES = {key: e.title for key, e in ENTRIES.items()}
ATTEMPTS = 3
OFFERED = ("en", "fr", "de", "es", "it", "pt")
WORDS = ("summary", "methodology", "results", "implications")


@pytest.fixture
def papers(engine: Engine) -> dict[str, Paper]:
    ingest_files(engine, [COMBINED])
    with Session(engine) as session:
        return {p.key: p for p in session.exec(select(Paper))}


def add_readers(engine: Engine, *readers: tuple[str, str, str | None]) -> None:
    """(email, status, language) rows, as sign-up and manage leave them."""
    with Session(engine) as session:
        for email, status, language in readers:
            subscriber = Subscriber(email=email, status=status)
            session.add(subscriber)
            session.flush()
            assert subscriber.id is not None
            session.add(Preferences(subscriber_id=subscriber.id, topics=["llm"],
                                    language=language))
        session.commit()


@pytest.fixture
def readers(engine: Engine, papers: dict[str, Paper]) -> list[str]:
    """Two French readers and one German one; a Spanish reader who never confirmed and an
    Italian one who left: the languages in use are French and German only."""
    add_readers(engine, ("a@example.org", "confirmed", "fr"),
                ("b@example.org", "confirmed", "fr"), ("c@example.org", "confirmed", "de"),
                ("d@example.org", "confirmed", None), ("e@example.org", "pending", "es"),
                ("f@example.org", "unsubscribed", "it"))
    return in_use(engine)


def in_use(engine: Engine) -> list[str]:
    with Session(engine) as session:
        return languages_in_use(session, OFFERED)


def llm_settings(settings: Settings, server: OpenAIServer, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": settings.database_url, "openai_api_key": "test-key",
        "openai_base_url": server.base_url, "openai_model": "gpt-4o-mini",
        "llm_timeout": 0.5, "llm_backoff": 0.01, "llm_max_wait": 0.2,
        "llm_max_attempts": ATTEMPTS, "llm_concurrency": 4, "llm_max_failures": 5,
        "card_languages": OFFERED, **overrides,
    }
    return Settings(**values)


@pytest.fixture
def serve() -> Iterator[Any]:
    servers: list[OpenAIServer] = []

    def start(translate_script: Any = good_translation) -> OpenAIServer:
        server = OpenAIServer(translate_script=translate_script).__enter__()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.__exit__(None, None, None)


def sweep(engine: Engine, settings: Settings, server: OpenAIServer, languages: list[str],
          **kw: Any) -> SummarizeReport:
    return summarize_pending(engine, llm_settings(settings, server, **kw.pop("set", {})),
                             languages=languages, **kw)


def translations(engine: Engine) -> dict[tuple[str, str], CardTranslation]:
    with Session(engine) as session:
        rows = session.exec(select(Paper.key, CardTranslation)
                            .join(CardTranslation, CardTranslation.paper_id == Paper.id))
        return {(key, t.language): t for key, t in rows}


def cards(engine: Engine) -> dict[str, Card]:
    with Session(engine) as session:
        rows = session.exec(select(Paper.key, Card).join(Card, Card.paper_id == Paper.id))
        return {key: card for key, card in rows}


def shown(engine: Engine, papers: dict[str, Paper], language: str) -> dict[str, str]:
    """The translated summaries `translations_for` lets readers of `language` see."""
    with Session(engine) as session:
        found = translations_for(session, [p.id for p in papers.values()], language)
    keys = {p.id: k for k, p in papers.items()}
    return {keys[paper_id]: t.summary for paper_id, t in found.items()}


def test_each_card_is_translated_once_per_language_in_use_never_per_reader(
    engine: Engine, settings: Settings, readers: list[str], papers: dict[str, Paper],
    serve: Any,
) -> None:
    assert readers == ["fr", "de"]
    server = serve()
    report = sweep(engine, settings, server, readers)

    # 4 cards, then 4 papers x 2 languages: three readers, two languages, eight calls.
    assert len(server.card_calls) == 4
    assert sorted((c.title, c.language) for c in server.translation_calls) == sorted(
        (title, language) for title in TITLES.values() for language in ("fr", "de"))
    assert report.written == 4 and report.translations is not None
    assert (report.translations.written, report.translations.failed) == (8, 0)
    assert {lang: s.written for lang, s in report.translations.by_language.items()} == {
        "fr": 4, "de": 4}

    stored = translations(engine)
    assert set(stored) == {(key, lang) for key in papers for lang in ("fr", "de")}
    price_in, price_out = PRICES_PER_MTOK["gpt-4o-mini"]
    written = cards(engine)
    for (key, language), row in stored.items():
        card = written[key]
        assert (row.status, row.failures, row.last_error) == ("ok", 0, None)
        assert (row.model, row.prompt_version) == ("gpt-4o-mini", TRANSLATION_PROMPT_VERSION)
        assert row.source_hash == translation_source_hash(card)
        # The stand-in's rendering of this very card: the answer was stored as given.
        assert row.summary == translate_text(card.summary, language) != card.summary
        assert row.key_points == [translate_text(p, language) for p in card.key_points]
        assert row.attempts == 1 and row.input_tokens > 200 and row.output_tokens > 100
        assert row.cost_usd == pytest.approx(
            (row.input_tokens * price_in + row.output_tokens * price_out) / 1e6)
    for language in ("fr", "de"):
        spend = report.translations.by_language[language]
        rows = [r for (_, lang), r in stored.items() if lang == language]
        assert spend.input_tokens == sum(r.input_tokens for r in rows)
        assert spend.cost_usd == pytest.approx(sum(r.cost_usd or 0 for r in rows))
    line = report.translations.line()
    assert line.startswith("translate: 8 translations written (fr 4, de 4), 0 failed; ")
    assert f"${report.translations.cost_usd:.4f} (fr " in line
    assert re.search(r"\(fr \d+\+\d+ tokens \$0\.\d{4}, de \d+\+\d+ tokens \$0\.\d{4}\)", line)

    # What is asked: the card's words in a strict schema without topics or title, into
    # the language by name; the title for context only.
    call = server.translation_calls[0]
    fmt = call.body["response_format"]
    assert fmt["type"] == "json_schema" and fmt["json_schema"]["strict"] is True
    schema = fmt["json_schema"]["schema"]
    assert set(schema["required"]) == set(schema["properties"]) == {"key_points", *WORDS}
    assert schema["additionalProperties"] is False
    assert call.english is not None and "topics" not in call.english
    assert ("French" if call.language == "fr" else "German") in call.prompt

    # Topics and titles are the English card's and the authors', untouched.
    assert all(card.topics and card.status == "ok" for card in written.values())
    with Session(engine) as session:
        assert {p.title for p in session.exec(select(Paper))} == set(TITLES.values())

    again = sweep(engine, settings, server, readers)
    assert again.translations is not None and again.translations.pending == 0
    assert len(server.calls) == 12


def test_no_call_for_a_language_nobody_reads_and_none_without_a_key(
    engine: Engine, settings: Settings, papers: dict[str, Paper], serve: Any,
) -> None:
    add_readers(engine, ("a@example.org", "confirmed", None),
                ("b@example.org", "pending", "fr"), ("c@example.org", "unsubscribed", "de"))
    assert in_use(engine) == []
    server = serve()
    report = sweep(engine, settings, server, in_use(engine))
    assert len(server.card_calls) == 4 and server.translation_calls == []
    assert report.translations is None and translations(engine) == {}

    # Without a key there are offline cards and no translation at all, readers or not.
    add_readers(engine, ("d@example.org", "confirmed", "fr"))
    offline = Settings(database_url=settings.database_url, card_languages=OFFERED)
    notes: list[str] = []
    fresh = summarize_pending(engine, offline, force=True, languages=in_use(engine),
                              progress=notes.append)
    assert fresh.source == "offline" and fresh.translations is None
    assert any("translating needs OPENAI_API_KEY" in n for n in notes)
    assert translate_pending(engine, offline, ["fr"]).pending == 0
    assert server.translation_calls == [] and translations(engine) == {}


def test_offline_cards_are_not_translated(
    engine: Engine, settings: Settings, readers: list[str], serve: Any,
) -> None:
    summarize_pending(engine, settings)  # no key: offline cards
    server = serve()
    report = translate_pending(engine, llm_settings(settings, server), readers)
    assert report.pending == 0 and server.calls == []


def test_a_rewritten_card_is_translated_again_and_its_old_translation_never_shown(
    engine: Engine, settings: Settings, readers: list[str], papers: dict[str, Paper],
    serve: Any,
) -> None:
    server = serve()
    sweep(engine, settings, server, readers)
    before = shown(engine, papers, "fr")
    assert set(before) == set(papers)

    changed = dataclasses.replace(ENTRIES["2609.26811"], version=2, announce_type="replace",
                                  abstract=ENTRIES["2609.26811"].abstract + " We add a proof.")
    with Session(engine) as session:
        assert store_entries(session, [changed]).updated == 1
        session.commit()
    # The card is rewritten by a sweep that translates nothing (no language passed): the
    # French rows are still there, made from the old text, and none of them is shown.
    summarize_pending(engine, llm_settings(settings, server))
    assert translations(engine)["2609.26811", "fr"].status == "ok"
    assert "2609.26811" not in shown(engine, papers, "fr")
    with Session(engine) as session:
        view = archive.paper(session, papers["2609.26811"].key, language="fr")
    assert view is not None and view.untranslated and view.language == "en"
    assert view.summary == cards(engine)["2609.26811"].summary

    calls = len(server.translation_calls)
    report = sweep(engine, settings, server, readers)
    assert report.translations is not None and report.translations.written == 2
    assert sorted((c.title, c.language) for c in server.translation_calls[calls:]) == [
        (TITLES["2609.26811"], "de"), (TITLES["2609.26811"], "fr")]
    after = shown(engine, papers, "fr")
    assert after["2609.26811"] != before["2609.26811"]
    assert "proofe" in after["2609.26811"].lower()  # the stand-in's French for "proof"
    assert {k: v for k, v in after.items() if k != "2609.26811"} == {
        k: v for k, v in before.items() if k != "2609.26811"}


def only(key: str, bad: Any, language: str = "fr") -> Any:
    """A translation script: `bad(call)` for one paper in one language, good otherwise."""
    def script(call: Call) -> Reply:
        if call.title == TITLES[key] and call.language == language:
            return bad(call)
        return good_translation(call)
    return script


def test_a_failed_translation_leaves_the_english_card_and_is_retried_next_sweep(
    engine: Engine, settings: Settings, readers: list[str], papers: dict[str, Paper],
    serve: Any,
) -> None:
    broken = serve(only("2609.26820", garbage_translation))
    report = sweep(engine, settings, broken, readers)

    assert report.translations is not None
    assert (report.translations.written, report.translations.failed) == (7, 1)
    assert "1 failed" in report.translations.line()
    row = translations(engine)["2609.26820", "fr"]
    assert (row.status, row.failures, row.attempts) == ("failed", 1, ATTEMPTS)
    assert "invalid JSON" in (row.last_error or "")
    assert row.input_tokens > 0 and row.cost_usd and row.cost_usd > 0  # paid all the same
    assert len(broken.calls_for(TITLES["2609.26820"], "fr")) == ATTEMPTS
    # French readers get the English card, marked; the German translation is unaffected.
    assert "2609.26820" not in shown(engine, papers, "fr")
    assert "2609.26820" in shown(engine, papers, "de")
    with Session(engine) as session:
        view = archive.paper(session, papers["2609.26820"].key, language="fr")
    assert view is not None and view.untranslated
    assert view.summary == cards(engine)["2609.26820"].summary

    healthy = serve()
    retried = sweep(engine, settings, healthy, readers)
    assert [(c.title, c.language) for c in healthy.calls] == [(TITLES["2609.26820"], "fr")]
    assert retried.translations is not None and retried.translations.written == 1
    row = translations(engine)["2609.26820", "fr"]
    assert (row.status, row.failures, row.last_error) == ("ok", 0, None)
    assert row.attempts == 1
    assert "2609.26820" in shown(engine, papers, "fr")


def test_a_translation_that_keeps_failing_stops_being_retried_until_its_paper_is_named(
    engine: Engine, settings: Settings, readers: list[str], papers: dict[str, Paper],
    serve: Any,
) -> None:
    server = serve(only("2609.26820", lambda c: error(500, "boom")))
    for _ in range(2):
        sweep(engine, settings, server, readers, set={"llm_max_failures": 2})
    assert translations(engine)["2609.26820", "fr"].failures == 2
    calls = len(server.calls)

    capped = sweep(engine, settings, server, readers, set={"llm_max_failures": 2})
    assert capped.translations is not None and capped.translations.pending == 0
    assert len(server.calls) == calls
    named = sweep(engine, settings, server, readers, set={"llm_max_failures": 2},
                  paper_id=papers["2609.26820"].id)
    assert named.translations is not None and named.translations.pending == 1
    assert len(server.calls) == calls + ATTEMPTS
    assert translations(engine)["2609.26820", "fr"].failures == 3


BAD_TRANSLATIONS: dict[str, Any] = {
    "left in English": lambda c: completion(c, json.dumps(c.english)),
    "a key point short": lambda c: completion(c, json.dumps(translation_dict(
        c, key_points=translation_dict(c)["key_points"][:3]))),
    "with topics": lambda c: completion(c, json.dumps({**translation_dict(c),
                                                       "topics": ["llm"]})),
    "cut in half": lambda c: completion(c, json.dumps(translation_dict(
        c, summary=" ".join(translation_dict(c)["summary"].split()[:15])))),
    "429": lambda c: error(429, "Rate limit reached", {"Retry-After": "0.01"}),
}
EXPECTED_ERROR = {"left in English": "not translated: key_points, summary",
                  "a key point short": "3 key points instead of 4",
                  "with topics": "JSON not in the translation schema",
                  "cut in half": "summary of 15 words", "429": "HTTP 429"}


def test_each_bad_answer_is_asked_again_then_recorded(
    engine: Engine, settings: Settings, papers: dict[str, Paper], serve: Any,
) -> None:
    add_readers(engine, *((f"{i}@example.org", "confirmed", lang)
                          for i, lang in enumerate(("fr", "de", "es", "it", "pt", "en"))))
    languages = in_use(engine)
    assert languages == ["fr", "de", "es", "it", "pt"]
    kinds = dict(zip(languages, BAD_TRANSLATIONS, strict=True))
    hopeless = TITLES["2609.26811"]

    def script(call: Call) -> Reply:
        # Each kind of bad answer in its own language: once for three papers, every
        # time for the fourth.
        kind = kinds[call.language or ""]
        bad = call.title == hopeless or call.number == 1
        return BAD_TRANSLATIONS[kind](call) if bad else good_translation(call)

    server = serve(script)
    report = sweep(engine, settings, server, languages)

    assert report.translations is not None
    assert (report.translations.written, report.translations.failed) == (15, 5)
    for (key, language), row in translations(engine).items():
        kind = kinds[language]
        if key != "2609.26811":
            assert (row.status, row.attempts) == ("ok", 2), kind
            continue
        assert (row.status, row.attempts, row.failures) == ("failed", ATTEMPTS, 1), kind
        assert EXPECTED_ERROR[kind] in (row.last_error or ""), (kind, row.last_error)
        assert row.summary == "" and row.key_points == []
    assert len(server.translation_calls) == 15 * 2 + 5 * ATTEMPTS


def test_the_site_shows_a_paper_and_a_day_in_the_readers_language(
    engine: Engine, settings: Settings, readers: list[str], papers: dict[str, Paper],
    serve: Any,
) -> None:
    server = serve()
    summarize_pending(engine, llm_settings(settings, server))  # English only so far
    with Session(engine) as session:
        english = archive.paper(session, "2609.26811")
        also_english = archive.paper(session, "2609.26811", language="en")
        asked_fr = archive.paper(session, "2609.26811", language="fr")
    assert english == also_english and english is not None and asked_fr is not None
    assert (english.language, english.untranslated) == ("en", False)
    assert asked_fr.untranslated and asked_fr.summary == english.summary

    sweep(engine, settings, server, readers)
    card = cards(engine)["2609.26811"]
    with Session(engine) as session:
        fr = archive.paper(session, "2609.26811", language="fr")
        en_after = archive.paper(session, "2609.26811")
        it = archive.paper(session, "2609.26811", language="it")  # nobody reads Italian
        day_fr = archive.day(session, papers["2609.26811"].announced_on, language="fr")
        latest_de = archive.latest(session, language="de")
    assert en_after == english
    assert fr is not None and (fr.language, fr.untranslated) == ("fr", False)
    assert fr.summary == translate_text(card.summary, "fr")
    assert fr.key_points == tuple(translate_text(p, "fr") for p in card.key_points)
    assert fr.implications == translate_text(card.implications, "fr")
    assert fr.title == english.title and fr.topics == english.topics  # never translated
    assert it is not None and it.untranslated and it.summary == card.summary
    assert all(v.language == "fr" and not v.untranslated for v in day_fr.new + day_fr.revised)
    assert latest_de.day == day_fr.day
    assert all(v.language == "de" for v in latest_de.new + latest_de.revised)


def test_summarize_command_translates_for_the_readers_languages(
    engine: Engine, settings: Settings, readers: list[str], serve: Any,
) -> None:
    server = serve()
    env = {"DATABASE_URL": settings.database_url, "OPENAI_API_KEY": "test-key",
           "OPENAI_BASE_URL": server.base_url, "OPENAI_MODEL": "gpt-4o-mini",
           "CARD_LANGUAGES": "en,fr,de,es"}
    result = CliRunner().invoke(main, ["summarize"], env=env)
    assert result.exit_code == 0, result.output
    assert len(server.translation_calls) == 8
    assert "8 translations to write (fr 4, de 4)" in result.stderr
    assert re.search(r"translation 2609\.26811 fr: \d+ tokens, 1 call", result.stderr)
    out = result.stdout.splitlines()
    assert out[0].startswith("summarize: 4 cards written")
    assert re.match(r"translate: 8 translations written \(fr 4, de 4\), 0 failed; \d+ input "
                    r"\+ \d+ output tokens, \$0\.\d{4} \(fr \d+\+\d+ tokens \$0\.\d{4}, de ",
                    out[1]), out[1]

    again = CliRunner().invoke(main, ["summarize"], env=env)
    assert "every LLM card is translated (fr, de)" in again.stderr
    assert len(server.translation_calls) == 8


# The checks on their own: lengths measured across scripts, nothing left untranslated.
SOURCE = CardWords(
    key_points=("Sparse attention cuts memory by half on long inputs.",) * 4,
    summary=" ".join(["We study sparse attention for long documents."] * 8),
    methodology="We train models on three corpora and compare kernels.",
    results="Memory halves while accuracy stays within one point.",
    implications="Long-context models become cheaper to run for everyone.",
)


def draft(**changes: Any) -> TranslationDraft:
    fields = {"key_points": [translate_text(p, "fr") for p in SOURCE.key_points],
              **{name: translate_text(getattr(SOURCE, name), "fr") for name in WORDS}}
    return TranslationDraft(**{**fields, **changes})


def test_translation_checks() -> None:
    assert check_translation(draft(), SOURCE, "fr").ok
    chinese = TranslationDraft(
        key_points=[translate_text(p, "zh") for p in SOURCE.key_points],
        **{name: translate_text(getattr(SOURCE, name), "zh") for name in WORDS})
    assert " " not in chinese.methodology and check_translation(chinese, SOURCE, "zh").ok
    assert size("稀疏注意力") == 2.5 and size("two words") == 2
    # The same text is fine in English (an en-GB reader), not as French.
    same = TranslationDraft(key_points=list(SOURCE.key_points),
                            **{name: getattr(SOURCE, name) for name in WORDS})
    assert check_translation(same, SOURCE, "en-GB").ok
    assert check_translation(same, SOURCE, "fr").problems == (
        "not translated: key_points, summary, methodology, results, implications as in "
        "English",)
    assert check_translation(draft(results=""), SOURCE, "fr").problems == (
        "results of 0 words for 8 in English",)
    too_long = draft(summary=" ".join(["mot"] * 460))
    assert check_translation(too_long, SOURCE, "fr").problems == (
        "summary of 460 words for 56 in English",)
    bullets = check_translation(draft(key_points=[f"- {p}" for p in draft().key_points]),
                                SOURCE, "fr")
    assert bullets.ok and bullets.draft.key_points == draft().key_points
