"""The operator's own topics (TAXONOMY_FILE): a file read and checked, a topic renamed with
its readers and cards, a removal refused while readers use it, on SQLite and Postgres."""

from __future__ import annotations

import json
import os
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine, text

from newsletter import db, i18n
from newsletter.cards.card import Card, PaperText, card_schema
from newsletter.cards.prompt import card_messages
from newsletter.cli import main
from newsletter.config import ConfigError, Settings, load_settings
from newsletter.ingest.paper import PaperEntry
from newsletter.ingest.store import store_entries
from newsletter.readers import reader_input
from newsletter.readers import subscriber as subs
from newsletter.topics import in_use, taxonomy
from newsletter.topics.taxonomy import TaxonomyError, built_in, parse
from newsletter.web import create_app
from tests.conftest import migrated_sqlite
from tests.support.celery_procs import kill_group, running, start_worker, wait_until

NOW = datetime(2026, 12, 1, 9, tzinfo=UTC)
ML = taxonomy.shipped_path("ml")


def _ml_text() -> str:
    return ML.read_text(encoding="utf-8")


def _write(tmp_path: Path, body: str, name: str = "topics.toml") -> Path:
    path = tmp_path / name
    path.write_text(body, encoding="utf-8")
    return path


def _without_federated(renamed: bool) -> str:
    """The ML file with Federated Learning gone, or renamed to a privacy topic."""
    start = _ml_text().index('[[topics]]\nslug = "federated"')
    end = _ml_text().index("[[topics]]", start + 10)
    body = _ml_text()[:start] + _ml_text()[end:]
    if renamed:
        body += ('\n[[topics]]\nslug = "private-learning"\nname = "Private and Federated '
                 'Learning"\ndescription = "Learning without pooling the data: federated '
                 'and decentralized training, differential privacy."\n'
                 'renamed_from = ["federated"]\nkeywords = ["federated", "differential '
                 'privacy"]\n')
    return body


def _reader(engine: Engine, email: str, topics: list[str]) -> int:
    with db.transaction(engine) as session:
        row = subs.ensure(session, email, NOW)
        subs.update_preferences(session, row, reader_input.parse_preferences(topics), NOW)
        subs.confirm_now(session, row, "admin", reader_input.Client(), NOW)
        assert row.id is not None
        return row.id


def _topics_of(engine: Engine, table: str) -> list[list[str]]:
    with engine.connect() as connection:
        order = "subscriber_id" if table == "preferences" else "id"
        rows = connection.execute(text(f"SELECT CAST(topics AS TEXT) FROM {table} "
                                       f"ORDER BY {order}")).scalars()
        return [json.loads(value) for value in rows]


def test_the_built_in_ml_taxonomy_is_the_default_with_its_french_names() -> None:
    ml = taxonomy.current()
    assert ml.slugs == built_in().slugs and len(ml.slugs) == 14
    assert ml.name == "machine learning" and ml.fallback_topic == "theory"
    with i18n.using("fr"):
        assert ml.topic_name("nlp") == "TAL"
        assert ml.by_slug["rl"].shown_name == "Apprentissage par renforcement"
    assert ml.topic_name("nlp") == "NLP"
    # A language the file does not translate reads English.
    with i18n.using("de"):
        assert ml.topic_name("vision") == "Computer Vision"


@pytest.mark.parametrize(("body", "said"), [
    ("topics = [", "not valid TOML"),
    ("", "no topics"),
    ('[[topics]]\nslug = "Cell Biology"\nname = "x"\ndescription = "y"', "lowercase"),
    ('[[topics]]\nslug = "a"\nname = "A"\ndescription = "d"\n'
     '[[topics]]\nslug = "a"\nname = "B"\ndescription = "d"', "two topics have the slug 'a'"),
    ('[[topics]]\nslug = "a"\nname = "A"', "`description` must be a non-empty string"),
    ('[[topics]]\nslug = "a"\nname = "A"\ndescription = "d"\nkeyword = ["x"]',
     "unknown key 'keyword'"),
    ('[[topics]]\nslug = "a"\nname = "A"\ndescription = "d"\nrenamed_from = ["b"]\n'
     '[[topics]]\nslug = "b"\nname = "B"\ndescription = "d"', "still a topic of its own"),
    ('[[topics]]\nslug = "a"\nname = "A"\ndescription = "d"\nrenamed_from = ["c"]\n'
     '[[topics]]\nslug = "b"\nname = "B"\ndescription = "d"\nrenamed_from = ["c"]',
     "can follow only one"),
    ('fallback_topic = "z"\n[[topics]]\nslug = "a"\nname = "A"\ndescription = "d"',
     "fallback_topic 'z' is not one of the topics"),
    ('[[topics]]\nslug = "a"\nname = "A"\ndescription = "d"\n[topics.translations.fr]\n'
     'name = "A"', "translations.fr: `description`"),
])
def test_a_bad_file_is_refused_with_what_to_fix(body: str, said: str) -> None:
    with pytest.raises(TaxonomyError, match=r"TAXONOMY_FILE my\.toml") as refused:
        parse(body, origin="my.toml")
    assert said in str(refused.value)


def test_a_missing_file_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch,
                                                 tmp_path: Path) -> None:
    monkeypatch.setenv("TAXONOMY_FILE", str(tmp_path / "nope.toml"))
    with pytest.raises(ConfigError, match=r"TAXONOMY_FILE: .*nope\.toml is not a file"):
        load_settings()


def test_the_prompt_schema_and_form_follow_the_biology_file(settings: Settings,
                                                            engine: Engine) -> None:
    biology = settings.model_copy(update={"taxonomy_file": taxonomy.shipped_path("biology")})
    app = create_app(biology, engine=engine)
    enum = card_schema()["properties"]["topics"]["items"]["enum"]
    assert enum == list(built_in("biology").slugs) and "llm" not in enum
    system = card_messages(PaperText(1, "k", "T", "A", ("cell biology",)))[0]["content"]
    assert "one paper in genomics and cell biology" in system
    assert "- single-cell: Single-cell and Spatial Omics - " in system
    assert "Large Language Models" not in system and "machine-learning" not in system
    page = app.test_client().get("/").get_data(as_text=True)
    assert 'value="gene-regulation"' in page and "Gene Regulation and Epigenetics" in page
    assert 'value="llm"' not in page
    with pytest.raises(reader_input.InvalidInput) as refused:
        reader_input.parse_preferences(["llm"])
    assert "the topics are genomics, single-cell" in refused.value.errors["topics"]


def test_a_removed_topic_readers_use_stops_the_site_and_the_commands(
        settings: Settings, engine: Engine, database_url: str, tmp_path: Path) -> None:
    _reader(engine, "ada@example.org", ["federated", "rl"])
    _reader(engine, "bo@example.org", ["federated"])
    _reader(engine, "cy@example.org", ["vision"])
    gone = _write(tmp_path, _without_federated(renamed=False))
    with pytest.raises(TaxonomyError) as refused:
        create_app(settings.model_copy(update={"taxonomy_file": gone}), engine=engine)
    assert "'federated': 2 readers" in str(refused.value)
    assert 'renamed_from = ["federated"]' in str(refused.value)
    # Nothing was rewritten: the readers keep their choice for when the file is fixed.
    assert _topics_of(engine, "preferences") == [["federated", "rl"], ["federated"],
                                                 ["vision"]]
    result = CliRunner().invoke(main, ["subscribers"], env={
        "DATABASE_URL": database_url, "TAXONOMY_FILE": str(gone)})
    assert result.exit_code != 0 and "'federated': 2 readers" in result.output


def test_a_reader_who_left_does_not_hold_a_topic_in_place(settings: Settings,
                                                          engine: Engine,
                                                          tmp_path: Path) -> None:
    reader = _reader(engine, "ada@example.org", ["federated"])
    with db.transaction(engine) as session:
        session.execute(text("UPDATE subscribers SET status = 'unsubscribed' WHERE id = :id"),
                        {"id": reader})
    gone = _write(tmp_path, _without_federated(renamed=False))
    create_app(settings.model_copy(update={"taxonomy_file": gone}), engine=engine)


def _card(engine: Engine, key: str, title: str, topics: list[str]) -> None:
    entry = PaperEntry(key=key, arxiv_id=key, version=1, title=title,
                       abstract="We train clients without pooling their data.",
                       authors=("A. Author",), categories=("cs.LG",), primary_category="cs.LG",
                       announce_type="new", announced_on=date(2026, 12, 1),
                       abs_url=None, pdf_url=None)
    with db.transaction(engine) as session:
        store_entries(session, [entry])
        paper_id = session.execute(text("SELECT id FROM papers WHERE key = :k"),
                                   {"k": key}).scalar_one()
        session.add(Card(paper_id=paper_id, topics=topics, key_points=[], source="offline",
                         model="offline", prompt_version="offline", text_hash="h",
                         status="ok"))


def test_a_renamed_topic_keeps_its_readers_and_cards(settings: Settings, engine: Engine,
                                                      tmp_path: Path) -> None:
    ada = _reader(engine, "ada@example.org", ["federated", "rl"])
    _card(engine, "2612.00001", "Federated averaging for many clients", ["federated", "theory"])
    renamed = _write(tmp_path, _without_federated(renamed=True))
    app = create_app(settings.model_copy(update={"taxonomy_file": renamed}), engine=engine)
    assert _topics_of(engine, "preferences") == [["private-learning", "rl"]]
    assert _topics_of(engine, "cards") == [["private-learning", "theory"]]
    # Twice is the same as once (the worker starts too).
    in_use.prepare(engine, settings.model_copy(update={"taxonomy_file": renamed}))
    assert _topics_of(engine, "preferences") == [["private-learning", "rl"]]
    # An old slug still typed somewhere (a bookmarked form, a CSV) is the new topic.
    assert reader_input.parse_preferences(["federated"]).topics == ("private-learning",)
    page = app.test_client().get("/").get_data(as_text=True)
    assert "Private and Federated Learning" in page and 'value="federated"' not in page
    assert ada


def test_a_card_left_with_only_dropped_topics_is_filed_again(settings: Settings,
                                                             engine: Engine,
                                                             tmp_path: Path) -> None:
    _reader(engine, "ada@example.org", ["rl"])
    _card(engine, "2612.00002", "Federated averaging for many clients", ["federated"])
    gone = _write(tmp_path, _without_federated(renamed=False))
    create_app(settings.model_copy(update={"taxonomy_file": gone}), engine=engine)
    [topics] = _topics_of(engine, "cards")
    assert topics and "federated" not in topics
    assert set(topics) <= set(taxonomy.current().slugs)


def test_the_topics_command_counts_readers_and_prints_the_examples(
        engine: Engine, database_url: str) -> None:
    _reader(engine, "ada@example.org", ["federated", "rl"])
    _reader(engine, "bo@example.org", ["rl"])
    listing = CliRunner().invoke(main, ["topics"], env={"DATABASE_URL": database_url})
    assert listing.exit_code == 0, listing.output
    assert "machine learning (built-in ml.toml): 14 topics" in listing.output
    lines = {line.split()[0]: line for line in listing.output.splitlines()[1:]}
    assert lines["rl"].split()[1] == "2" and lines["federated"].split()[1] == "1"
    assert lines["vision"].split()[1] == "0"
    example = CliRunner().invoke(main, ["topics", "example", "biology"])
    assert example.exit_code == 0
    assert parse(example.output).slugs == built_in("biology").slugs


@pytest.mark.redis
def test_the_worker_refuses_to_start_on_a_removed_topic_and_follows_a_rename(
        redis_url: str, tmp_path: Path) -> None:
    # One database is enough here: the check and the rewrite are the same code on
    # Postgres, which the tests above run through the site and the commands.
    database_url = migrated_sqlite(tmp_path)
    engine = db.make_engine(database_url)
    _reader(engine, "ada@example.org", ["federated"])
    env = {**os.environ, "DATABASE_URL": database_url, "REDIS_URL": redis_url,
           "TAXONOMY_FILE": str(_write(tmp_path, _without_federated(renamed=False)))}
    log = tmp_path / "refused.log"
    worker = start_worker(env, log, queues="default", concurrency=1, name="topics")
    try:
        code = worker.wait(timeout=60)
    finally:
        kill_group(worker)
    assert code != 0
    assert "'federated': 1 reader" in log.read_text(errors="replace")

    env["TAXONOMY_FILE"] = str(_write(tmp_path, _without_federated(renamed=True), "new.toml"))
    log = tmp_path / "renamed.log"
    with running(start_worker(env, log, queues="default", concurrency=1, name="topics2")):
        wait_until(lambda: _topics_of(engine, "preferences") == [["private-learning"]], 60,
                   "the reader's topic renamed by the starting worker", logs=(log,))


def test_a_process_started_without_the_sites_taxonomy_file_is_refused(
        settings: Settings, engine: Engine, database_url: str) -> None:
    # The site runs with the biology file; a worker or command started without
    # TAXONOMY_FILE would write ML cards nobody reads. Its start sees the readers' topics
    # it does not know, and stops.
    biology = settings.model_copy(update={"taxonomy_file": taxonomy.shipped_path("biology")})
    create_app(biology, engine=engine)
    _reader(engine, "ada@example.org", ["cell-biology", "genomics"])
    forgot = CliRunner().invoke(main, ["summarize"], env={"DATABASE_URL": database_url})
    assert forgot.exit_code != 0
    assert "'cell-biology': 1 reader" in forgot.output and "'genomics': 1 reader" in forgot.output
    same = CliRunner().invoke(main, ["topics"], env={
        "DATABASE_URL": database_url, "TAXONOMY_FILE": str(taxonomy.shipped_path("biology"))})
    assert same.exit_code == 0, same.output
