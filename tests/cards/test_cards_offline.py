"""The offline writer on every real arXiv sample, and `newsletter summarize` without a key."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import Engine
from sqlmodel import Session, select

from newsletter.cards.card import Card, check_draft
from newsletter.cards.offline_writer import extract_card, split_sentences
from newsletter.cards.summarize import summarize_pending
from newsletter.cli import main
from newsletter.config import Settings
from newsletter.ingest.paper import PaperEntry
from newsletter.ingest.parse import FeedError, parse_feed
from newsletter.ingest.store import ingest_files
from newsletter.topics.taxonomy import built_in
from tests.conftest import ARXIV_FIXTURES
from tests.support.openai_server import OpenAIServer

FIELDS = ("summary", "methodology", "results", "implications")


def every_entry() -> list[PaperEntry]:
    entries: list[PaperEntry] = []
    for path in sorted(ARXIV_FIXTURES.glob("*.xml")):
        try:
            entries += parse_feed(path.read_bytes()).entries
        except FeedError:
            continue  # the error samples hold no paper
    return entries


ENTRIES = every_entry()


def test_the_samples_hold_papers() -> None:
    assert len(ENTRIES) >= 30


def _tidy(text: str) -> str:
    return " ".join(text.split())


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: e.key)
def test_offline_card_is_valid_extractive_and_stable(entry: PaperEntry) -> None:
    card = extract_card(entry.title, entry.abstract, entry.categories)

    checked = check_draft(card, llm=False)
    assert checked.ok, checked.problems
    assert checked.draft == card  # nothing to repair
    assert 1 <= len(card.topics) <= 3 and set(card.topics) <= set(built_in().slugs)
    assert len(card.key_points) == 4 and len(set(card.key_points)) == 4
    # Extractive: every field is the abstract's own words (a long sentence may be cut "…").
    # Key points beyond the abstract's sentences state facts about the paper, and only when
    # the abstract has fewer than four sentences.
    abstract = _tidy(entry.abstract)
    facts = [p for p in card.key_points if p.startswith(("The paper is titled", "It is listed"))]
    assert not facts or len(split_sentences(abstract)) < 4
    for text in [*(getattr(card, f) for f in FIELDS), *card.key_points]:
        if text in facts:
            continue
        for piece in split_sentences(text):
            assert piece.removesuffix("…") in abstract, piece
    # Stable: the same paper gives the same card, also from an equal copy of its text.
    again = extract_card(str(entry.title), "".join(entry.abstract), tuple(entry.categories))
    assert again == card


def test_topics_follow_categories_and_keywords() -> None:
    by_key = {e.key: e for e in ENTRIES}
    topics = {key: extract_card(e.title, e.abstract, e.categories).topics
              for key, e in by_key.items()}
    assert "vision" in topics["2604.26869"]  # cs.CV
    assert "optimization" in topics["2604.26932"]  # math.OC
    assert topics["2604.21952"][0] == "efficient-ml"  # "Accelerating ... Foundation Models"
    assert "llm" in topics["2604.22002"]  # an LLM paper in cs.CL


def test_sentences_do_not_end_at_abbreviations_or_decimals() -> None:
    text = ("We follow Smith et al. and use e.g. transformers. Accuracy rose by 3.5 points "
            "on ImageNet. Is it robust? Yes: see Fig. 2 for details.")
    assert split_sentences(text) == [
        "We follow Smith et al. and use e.g. transformers.",
        "Accuracy rose by 3.5 points on ImageNet.",
        "Is it robust?",
        "Yes: see Fig. 2 for details.",
    ]


def test_a_short_or_empty_abstract_still_makes_a_card() -> None:
    for abstract in ("", "We study graphs."):
        card = extract_card("On graphs", abstract, ("cs.LG",))
        assert check_draft(card, llm=False).ok
        assert card.topics == ["graphs"]
        assert len(card.key_points) == 4


def test_offline_summarize_writes_every_card_once(engine: Engine, settings: Settings) -> None:
    ingest_files(engine, sorted(ARXIV_FIXTURES.glob("rss_*.xml")))
    report = summarize_pending(engine, settings)

    assert (report.written, report.failed, report.cost_usd) == (13, 0, 0.0)
    with Session(engine) as session:
        written = list(session.exec(select(Card)))
    assert len(written) == 13
    assert {(c.source, c.model, c.status) for c in written} == {("offline", "offline", "ok")}
    assert summarize_pending(engine, settings).pending == 0


def cli(database_url: str, *args: str, **env: str) -> Result:
    return CliRunner().invoke(main, list(args), env={"DATABASE_URL": database_url, **env})


def test_summarize_command_and_cards_in_papers_json(database_url: str, tmp_path: Path) -> None:
    sample = str(ARXIV_FIXTURES / "rss_cs.LG+cs.AI+cs.CL+stat.ML_2026-09-24.xml")
    assert cli(database_url, "ingest", "--file", sample).exit_code == 0
    before = json.loads(cli(database_url, "papers", "--json").stdout)
    assert [p["card"] for p in before] == [None] * 4

    one = cli(database_url, "summarize", "--paper", "2009.13987v3")
    assert one.exit_code == 0, one.output
    assert re.search(r"card 2009\.13987: [a-z-]+", one.stderr)
    assert one.stdout.strip().startswith("summarize: 1 card written, 0 failed; 0 input + 0 "
                                         "output tokens, $0.0000 (offline writer")

    rest = cli(database_url, "summarize", "--limit", "2")
    assert rest.stdout.startswith("summarize: 2 cards written, 0 failed")
    rest = cli(database_url, "summarize")
    assert rest.stdout.startswith("summarize: 1 card written, 0 failed")
    none = cli(database_url, "summarize")
    assert none.stdout.startswith("summarize: 0 cards written")
    assert "every paper's card is up to date" in none.stderr
    forced = cli(database_url, "summarize", "--force", "--paper", "2609.26811")
    assert forced.stdout.startswith("summarize: 1 card written")

    listed = json.loads(cli(database_url, "papers", "--json").stdout)
    assert len(listed) == 4
    for paper in listed:
        assert {"key", "title", "abstract", "categories"} <= paper.keys()
        card = paper["card"]
        assert set(card) == {"topics", "key_points", "summary", "methodology", "results",
                             "implications", "source", "model"}
        assert card["source"] == "offline" and card["model"] == "offline"
        assert len(card["key_points"]) == 4 and set(card["topics"]) <= set(built_in().slugs)

    missing = cli(database_url, "summarize", "--paper", "9999.99999")
    assert missing.exit_code != 0 and "no stored paper" in missing.output


def test_summarize_command_with_a_key_uses_the_llm(database_url: str) -> None:
    sample = str(ARXIV_FIXTURES / "rss_cs.CL_2026-04-27.xml")
    assert cli(database_url, "ingest", "--file", sample).exit_code == 0
    with OpenAIServer() as server:
        env = {"OPENAI_API_KEY": "test-key", "OPENAI_BASE_URL": server.base_url,
               "OPENAI_MODEL": "gpt-4o-mini", "LLM_CONCURRENCY": "3"}
        result = cli(database_url, "summarize", **env)
    assert result.exit_code == 0, result.output
    assert len(server.calls) == 3
    assert "llm writer, gpt-4o-mini" in result.stdout
    assert re.match(r"summarize: 3 cards written, 0 failed; \d+ input \+ \d+ output tokens, "
                    r"\$0\.0\d{3}", result.stdout)
    listed = json.loads(cli(database_url, "papers", "--json").stdout)
    assert {p["card"]["source"] for p in listed} == {"llm"}
