"""Pure parts of cards: answer parsing, validation, Retry-After, prices, the taxonomy."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from newsletter.cards.card import AnswerError, CardDraft, check_draft, parse_answer, text_hash
from newsletter.cards.llm_writer import retry_after
from newsletter.cards.price import cost_usd, price_of
from newsletter.config import Settings
from newsletter.topics.tagger import guess_topics
from newsletter.topics.taxonomy import built_in, known_topics

GOOD = {
    "topics": ["llm", "nlp"],
    "key_points": [f"Point number {i} says one clear thing about the paper." for i in range(4)],
    "summary": " ".join(["word"] * 150),
    "methodology": " ".join(["method"] * 55),
    "results": " ".join(["result"] * 45),
    "implications": " ".join(["impact"] * 45),
}


def draft(**changes: object) -> CardDraft:
    return CardDraft.model_validate({**GOOD, **changes})


def test_the_taxonomy_has_the_fourteen_designed_topics() -> None:
    assert built_in().slugs == ("optimization", "theory", "llm", "efficient-ml", "nlp", "rl",
                     "interpretability", "graphs", "robotics", "generative", "time-series",
                     "federated", "vision", "multimodal")
    assert all(t.name and len(t.description) > 30 for t in built_in().topics)


def test_a_good_draft_passes_unchanged() -> None:
    checked = check_draft(draft())
    assert checked.ok and checked.draft == draft()


def test_unknown_topics_are_dropped_and_known_ones_normalized() -> None:
    checked = check_draft(draft(topics=["Quantum", "LLM", "efficient_ml", "llm", "rl", "nlp"]))
    assert checked.ok and checked.draft.topics == ["llm", "efficient-ml", "rl"]


def test_no_known_topic_is_a_topic_problem_only() -> None:
    checked = check_draft(draft(topics=["astro-ph"]))
    assert not checked.ok and checked.only_topics
    assert "no topic from the taxonomy" in checked.problems[0]


def test_key_points_must_be_four() -> None:
    few = check_draft(draft(key_points=GOOD["key_points"][:3]))
    assert few.problems == ("3 key points instead of 4",) and not few.only_topics
    many = check_draft(draft(key_points=[*GOOD["key_points"], "A fifth point, extra."]))
    assert many.ok and many.draft.key_points == GOOD["key_points"]


def test_lengths_must_be_sane() -> None:
    assert check_draft(draft(summary="Too short.")).problems == ("summary of 2 words",)
    assert check_draft(draft(results=" ".join(["x"] * 400))).problems == ("results of 400 words",)
    assert not check_draft(draft(key_points=["Fine point here.", "x", "y z", "a b c"])).ok


def test_parse_answer_accepts_the_schema_and_rejects_the_rest() -> None:
    import json

    assert parse_answer(json.dumps(GOOD)) == draft()
    assert parse_answer("```json\n" + json.dumps(GOOD) + "\n```") == draft()
    for bad in ("", "not json", '{"topics": []}', json.dumps({**GOOD, "extra": 1}),
                json.dumps({**GOOD, "key_points": "one string"})):
        with pytest.raises(AnswerError):
            parse_answer(bad)


def test_text_hash_ignores_whitespace_only() -> None:
    assert text_hash("A  title", "An\nabstract.") == text_hash("A title", "An abstract.")
    assert text_hash("A title", "An abstract.") != text_hash("A title", "An abstract!")


def test_retry_after_forms() -> None:
    assert retry_after({"Retry-After": "2"}) == 2
    assert retry_after({"retry-after": "0.25"}) == 0.25
    assert retry_after({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    now = datetime(2026, 9, 24, 12, tzinfo=UTC)
    later = format_datetime(now + timedelta(seconds=30), usegmt=True)
    assert retry_after({"Retry-After": later}, now=now.timestamp()) == 30
    assert retry_after({"Retry-After": "soon"}) is None and retry_after({}) is None


def test_prices_turn_tokens_into_dollars() -> None:
    assert price_of("gpt-4o-mini-2024-07-18") == (0.15, 0.60)
    assert price_of("gpt-4o") == (2.50, 10.00)
    assert price_of("openai/gpt-4.1-mini") == (0.40, 1.60)
    assert price_of("llama-3.1-8b") is None
    assert price_of("llama-3.1-8b", (0.0, 0.0)) == (0.0, 0.0)
    assert cost_usd((0.15, 0.60), 1_000_000, 100_000) == pytest.approx(0.21)
    assert cost_usd(None, 10, 10) is None


def test_guess_topics_never_leaves_a_card_topicless() -> None:
    assert guess_topics("Untitled", "Nothing to see.", ()) == ["theory"]
    assert guess_topics("Diffusion models for video", "", ("cs.CV",)) == ["vision", "generative"]
    assert known_topics(["vision", "Vision", "nope"]) == ["vision"]


def test_llm_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="http"):
        Settings(openai_base_url="localhost:8000/v1")
    with pytest.raises(ValueError):
        Settings(llm_concurrency=0)
    assert Settings(llm_concurrency=16).llm_concurrency == 16
