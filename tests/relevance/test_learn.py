"""A reader's own signals shape their model: ratings, their description, papers they like.

On SQLite and Postgres, with real arXiv documents (tests/fixtures/arxiv): ratings given,
changed and cleared; the model row following them; the description and liked papers
shaping the model before any rating; liked papers we lack fetched from a local stand-in of
the arXiv API; the `newsletter subscribers add --describe --like` and `newsletter rate`
commands; OpenAI vectors through the local OpenAI stand-in; the migration.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from alembic import command
from click.testing import CliRunner, Result
from sqlalchemy import Engine, inspect, text
from sqlmodel import Session, select

from newsletter import db
from newsletter.cli import main
from newsletter.config import Settings
from newsletter.ingest.paper import Paper
from newsletter.ingest.store import ingest_files
from newsletter.readers import reader_input
from newsletter.readers import subscriber as subs
from newsletter.readers.tables import Preferences
from newsletter.relevance import learn, liked, model, train, vectors
from newsletter.relevance.embed import embed_pending, vectors_for
from newsletter.relevance.embedders import space_for
from newsletter.relevance.tables import Rating, ReaderModelRow
from tests.conftest import arxiv_fixture
from tests.support.arxiv_server import API_DOCUMENT, ArxivAPI
from tests.support.http import ScriptedServer
from tests.support.openai_server import (
    OpenAIServer,
    error,
    good_embeddings,
    leaning_embeddings,
)

NOW = datetime(2026, 9, 24, 9, 0, tzinfo=UTC)
COMBINED = arxiv_fixture("rss_cs.LG+cs.AI+cs.CL+stat.ML_2026-09-24.xml")
# Two papers of the API document: cross-architecture distillation of diffusion language
# models, and input-convex networks for optimal transport.
TIDE, CONVEX = "2604.26951", "2604.26942"
ON_TIDE = ("distilling diffusion large language models from teachers of another "
           "architecture and tokenizer")


# ---------------------------------------------------------------- the arXiv API stand-in


@pytest.fixture
def arxiv_api() -> Iterator[ArxivAPI]:
    with ArxivAPI() as server:
        yield server


def asking(settings: Settings, server: ScriptedServer) -> Settings:
    return settings.model_copy(update={"arxiv_api_url": f"{server.url}/api/query"})


# ---------------------------------------------------------------- helpers


def reader(engine: Engine, email: str = "reader@example.org") -> int:
    with db.transaction(engine) as session:
        row = subs.ensure(session, email, NOW)
        subs.update_preferences(session, row, reader_input.parse_preferences(["llm"]), NOW)
        subs.confirm_now(session, row, "admin", reader_input.Client(), NOW)
        assert row.id is not None
        return row.id


def papers(engine: Engine, *documents: Path) -> dict[str, int]:
    """Ingest documents; arXiv id -> paper id of every stored paper."""
    ingest_files(engine, list(documents))
    with Session(engine) as session:
        return {p.arxiv_id: p.id for p in session.exec(select(Paper)) if p.arxiv_id and p.id}


def stored_model(engine: Engine, subscriber_id: int, settings: Settings) -> model.ReaderModel:
    with Session(engine) as session:
        space = space_for(settings)
        return model.decode_model(train.stored_models(session, [subscriber_id], space)[
            subscriber_id], space.name, space.dims)


def model_row(engine: Engine, subscriber_id: int) -> ReaderModelRow | None:
    with Session(engine) as session:
        return session.get(ReaderModelRow, subscriber_id)


def affinity(engine: Engine, found: model.ReaderModel, *arxiv_ids: str) -> list[float]:
    """The model's affinity for each paper, in the offline space."""
    with Session(engine) as session:
        rows = {p.arxiv_id: p for p in session.exec(select(Paper).where(
            Paper.arxiv_id.in_(arxiv_ids)))}  # type: ignore[union-attr]
    texts = [vectors.paper_text(rows[i].title, rows[i].abstract) for i in arxiv_ids]
    scores = model.affinities(found.weights, np.array([found.bias]),
                              vectors.offline_vectors(texts))
    return [float(x) for x in np.asarray(scores)[0]]


def run(database_url: str, *args: str, **env: str) -> Result:
    return CliRunner().invoke(main, list(args), env={"DATABASE_URL": database_url, **env})


# ---------------------------------------------------------------- ratings


def test_a_rating_is_given_changed_and_cleared(engine: Engine, settings: Settings) -> None:
    ids = papers(engine, API_DOCUMENT)
    me = reader(engine)
    with db.transaction(engine) as session:
        learn.rate(session, me, ids[TIDE], 1, settings=settings)
    with Session(engine) as session:
        [first] = learn.ratings_of(session, me)
    assert (first.arxiv_id, first.value) == (TIDE, 1)
    assert first.title.startswith("Turning the TIDE")
    assert first.abs_url == f"https://arxiv.org/abs/{TIDE}"

    with db.transaction(engine) as session:  # changed: one rating, the new value, a new time
        learn.rate(session, me, ids[TIDE], -1, settings=settings)
        learn.rate(session, me, ids[CONVEX], 1, settings=settings)
    with Session(engine) as session:
        listed = learn.ratings_of(session, me)
    assert [(r.arxiv_id, r.value) for r in listed] == [(CONVEX, 1), (TIDE, -1)]
    assert listed[1].rated_at > first.rated_at

    with db.transaction(engine) as session:  # the same rating again: still one
        learn.rate(session, me, ids[CONVEX], 1, settings=settings)
    with db.transaction(engine) as session:  # cleared, and clearing again changes nothing
        learn.rate(session, me, ids[TIDE], None, settings=settings)
        learn.rate(session, me, ids[TIDE], None, settings=settings)
    with Session(engine) as session:
        assert [(r.arxiv_id, r.value) for r in learn.ratings_of(session, me)] == [(CONVEX, 1)]
        assert len(session.exec(select(Rating)).all()) == 1


def test_wrong_ratings_are_refused_before_anything_is_written(engine: Engine,
                                                               settings: Settings) -> None:
    ids = papers(engine, API_DOCUMENT)
    me = reader(engine)
    with pytest.raises(ValueError, match="not 2"), db.transaction(engine) as session:
        learn.record_ratings(session, me, {ids[TIDE]: 1, ids[CONVEX]: 2}, settings=settings)
    with pytest.raises(learn.UnknownPaper), db.transaction(engine) as session:
        learn.record_ratings(session, me, {ids[TIDE]: 1, 999_999: 1}, settings=settings)
    with pytest.raises(subs.UnknownReader), db.transaction(engine) as session:
        learn.rate(session, me + 1000, ids[TIDE], 1, settings=settings)
    with Session(engine) as session:
        assert session.exec(select(Rating)).all() == []
        assert session.exec(select(ReaderModelRow)).all() == []


def test_the_model_follows_the_ratings(engine: Engine, settings: Settings) -> None:
    ids = papers(engine, API_DOCUMENT)
    me, other = reader(engine), reader(engine, "other@example.org")
    assert model_row(engine, me) is None  # nothing to go on: topics alone

    with db.transaction(engine) as session:
        learn.rate(session, me, ids[TIDE], 1, settings=settings)
    first = model_row(engine, me)
    assert first is not None and first.ratings == 1
    assert first.vector_model == vectors.OFFLINE_MODEL
    assert len(first.data) <= 4096

    with db.transaction(engine) as session:
        learn.rate(session, me, ids[CONVEX], -1, settings=settings)
    second = model_row(engine, me)
    assert second is not None and second.ratings == 2 and second.data != first.data
    assert len(second.data) <= 4096
    found = stored_model(engine, me, settings)
    assert (found.ups, found.downs) == (1, 1)
    tide, convex = affinity(engine, found, TIDE, CONVEX)
    assert tide > convex

    with Session(engine) as session:  # a send reads only the readers that have a model
        space = space_for(settings)
        assert set(train.stored_models(session, [me, other], space)) == {me}
        elsewhere = replace(space, name="openai:text-embedding-3-small:256", dims=256)
        assert train.stored_models(session, [me, other], elsewhere) == {}

    with db.transaction(engine) as session:  # every input cleared: no model at all
        learn.record_ratings(session, me, {ids[TIDE]: None, ids[CONVEX]: None},
                             settings=settings)
    assert model_row(engine, me) is None


def test_a_description_and_liked_papers_shape_the_model_before_any_rating(
        engine: Engine, settings: Settings) -> None:
    papers(engine, API_DOCUMENT)
    described, liking = reader(engine), reader(engine, "liking@example.org")
    with db.transaction(engine) as session:
        learn.set_interests(session, described, ON_TIDE, "", settings=settings)
        learn.set_interests(session, liking, None, f"https://arxiv.org/abs/{TIDE}v1",
                            settings=settings)
    for subscriber_id in (described, liking):
        found = stored_model(engine, subscriber_id, settings)
        assert (found.ups, found.downs) == (0, 0)
        tide, convex = affinity(engine, found, TIDE, CONVEX)
        assert tide > convex, subscriber_id

    with db.transaction(engine) as session:  # a rating outranks a like
        learn.set_interests(session, liking, None, TIDE, settings=settings)
        learn.rate(session, liking, session.exec(select(Paper.id).where(
            Paper.arxiv_id == TIDE)).one(), -1, settings=settings)
    found = stored_model(engine, liking, settings)
    tide, convex = affinity(engine, found, TIDE, CONVEX)
    assert tide < convex

    with db.transaction(engine) as session:  # description and likes removed: no model
        learn.set_interests(session, described, "", [], settings=settings)
    assert model_row(engine, described) is None


# ---------------------------------------------------------------- liked papers


def test_liked_papers_we_lack_are_fetched_from_the_arxiv_api_by_the_sweep(
        engine: Engine, settings: Settings, arxiv_api: ArxivAPI) -> None:
    ids = papers(engine, COMBINED)
    assert TIDE not in ids and CONVEX not in ids
    me = reader(engine)
    typed = f"2609.26811v2, arXiv:{TIDE}\nhttps://arxiv.org/pdf/{CONVEX}v1.pdf 2604.99999"
    keyed = asking(settings, arxiv_api)
    with db.transaction(engine) as session:
        stored = learn.set_interests(session, me, None, typed, settings=keyed)
    # Saving asks arXiv nothing: a web request never waits on it.
    assert arxiv_api.requests == []
    assert stored.liked == ("2609.26811", TIDE, CONVEX, "2604.99999")
    assert stored.missing == (TIDE, CONVEX, "2604.99999")
    before = model_row(engine, me)
    assert before is not None and before.ratings == 0  # trained on the one we have

    report, retrained = train.embed_and_retrain(engine, keyed)
    # One request for every id we lacked, asking for as many results as ids.
    [request] = arxiv_api.requests
    assert sorted(request.query["id_list"][0].split(",")) == sorted([TIDE, CONVEX, "2604.99999"])
    assert request.query["max_results"] == ["3"]
    assert report.embedded == len(ids) + 2 and retrained == 1  # their vectors, then the model
    with Session(engine) as session:
        fetched = {p.arxiv_id: p for p in session.exec(select(Paper).where(
            Paper.arxiv_id.in_([TIDE, CONVEX])))}  # type: ignore[union-attr]
        assert fetched[TIDE].title.startswith("Turning the TIDE")
        assert fetched[TIDE].abstract.startswith("Diffusion large language models")
        assert fetched[CONVEX].authors[0] == "Shayan Hundrieser"
        prefs = session.get(Preferences, me)
        assert prefs is not None and prefs.liked_papers == list(stored.liked)
        assert learn.interests_of(session, me) == learn.Interests(None, stored.liked,
                                                                  ("2604.99999",))
    after = model_row(engine, me)
    assert after is not None and after.data != before.data

    train.embed_and_retrain(engine, keyed)  # the next sweep asks only for the unknown id
    assert arxiv_api.requests[1].query["id_list"] == ["2604.99999"]


def test_liked_papers_are_kept_when_arxiv_cannot_be_asked(engine: Engine,
                                                          settings: Settings) -> None:
    papers(engine, COMBINED)
    me = reader(engine)
    with db.transaction(engine) as session:
        learn.set_interests(session, me, ON_TIDE, [TIDE, "2609.26811"], settings=settings)
    with ArxivAPI(down=True) as down:
        fetched = liked.fetch_wanted(engine, asking(settings, down))
    assert fetched.asked == (TIDE,) and fetched.stored == 0
    assert fetched.problem is not None and "HTTP 503" in fetched.problem
    with Session(engine) as session:
        prefs = session.get(Preferences, me)
        assert prefs is not None and prefs.liked_papers == [TIDE, "2609.26811"]
        assert learn.interests_of(session, me).missing == (TIDE,)
    assert model_row(engine, me) is not None  # trained on what we have

    with ArxivAPI() as back:  # the next sweep fetches it
        assert liked.fetch_wanted(engine, asking(settings, back)).stored == 1
    with Session(engine) as session:
        assert learn.interests_of(session, me).missing == ()


def test_a_sweep_asks_for_a_sample_when_many_ids_are_wanted(
        engine: Engine, settings: Settings, arxiv_api: ArxivAPI,
        monkeypatch: pytest.MonkeyPatch) -> None:
    for n in range(3):
        with db.transaction(engine) as session:
            learn.set_interests(session, reader(engine, f"r{n}@example.org"), None,
                                [f"2604.9{n}{m:03d}" for m in range(40)], settings=settings)
    monkeypatch.setattr(liked, "SWEEP_IDS", 60)
    fetched = liked.fetch_wanted(engine, asking(settings, arxiv_api))
    assert len(fetched.asked) == 60 and len(set(fetched.asked)) == 60
    assert len(arxiv_api.requests) == 2  # 50 ids a request
    with Session(engine) as session:
        assert len(liked.wanted(session)) == 120


def test_references_to_papers_are_read_or_refused_by_name() -> None:
    assert reader_input.parse_liked_papers(
        "2401.12345v3, arXiv:2401.12345; https://arxiv.org/abs/hep-th/9901001v2\n"
        "http://export.arxiv.org/pdf/0706.0001v1.pdf math.GT/0309136 arxiv.org/abs/1501.00001/"
    ) == ("2401.12345", "hep-th/9901001", "0706.0001", "math/0309136", "1501.00001")
    for bad in ("2401.1234", "1412.12345", "2413.12345", "https://example.org/abs/2401.12345",
                "hep-th/990100", "not-a-paper"):
        with pytest.raises(reader_input.InvalidInput) as refused:
            reader_input.parse_liked_papers(f"2401.12345, {bad}")
        assert repr(bad) in refused.value.errors["liked_papers"], bad
    with pytest.raises(reader_input.InvalidInput, match="At most 50 papers"):
        reader_input.parse_liked_papers([f"2401.{n:05d}" for n in range(1, 52)])
    typed = "  sparse attention\r\nfor long-context\tinference\x00\x85 "
    assert reader_input.parse_description(typed) == "sparse attention for long-context inference"
    assert reader_input.parse_description("   ") is None
    with pytest.raises(reader_input.InvalidInput, match="At most 500 characters"):
        reader_input.parse_description("x" * 501)


def test_invalid_interests_write_nothing(engine: Engine, settings: Settings) -> None:
    me = reader(engine)
    with pytest.raises(reader_input.InvalidInput) as refused, db.transaction(engine) as session:
        learn.set_interests(session, me, "y" * 501, "2401.12345 arxiv.org/list/cs.LG",
                            settings=settings)
    assert set(refused.value.errors) == {"description", "liked_papers"}
    assert "'arxiv.org/list/cs.LG'" in refused.value.errors["liked_papers"]
    with Session(engine) as session:
        prefs = session.get(Preferences, me)
        assert prefs is not None and prefs.description is None and prefs.liked_papers == []


# ---------------------------------------------------------------- the command line


def test_subscribers_add_stores_a_description_and_liked_papers(
        database_url: str, tmp_path: Path, arxiv_api: ArxivAPI) -> None:
    env = {"ARXIV_API_URL": f"{arxiv_api.url}/api/query", "ARXIV_API_DELAY": "0",
           "OUTBOX_DIR": str(tmp_path / "outbox")}
    assert run(database_url, "ingest", "--file", str(COMBINED)).exit_code == 0
    result = run(database_url, "subscribers", "add", "Ada@Example.org", "--topics", "llm",
                 "--describe", f"  {ON_TIDE}\n", "--like", f"{TIDE}v2,2609.26811,{TIDE}",
                 "--confirmed", **env)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "ada@example.org: confirmed; described, 2 liked papers"
    engine = db.make_engine(database_url)
    with Session(engine) as session:
        ada = subs.find_by_email(session, "ada@example.org")
        assert ada is not None and ada.id is not None
        prefs = session.get(Preferences, ada.id)
        assert prefs is not None and prefs.description == ON_TIDE
        assert prefs.liked_papers == [TIDE, "2609.26811"]
        assert prefs.topics == ["llm"]
        assert session.exec(select(Paper).where(Paper.arxiv_id == TIDE)).one()
    found = stored_model(engine, ada.id, Settings(database_url=database_url))
    tide, polytopes = affinity(engine, found, TIDE, "2009.13987")
    assert found.ups == 0 and tide > polytopes

    # Given again with --like only: the description stays, the list is replaced.
    result = run(database_url, "subscribers", "add", "ada@example.org", "--topics", "llm",
                 "--like", "2609.26811", "--confirmed", **env)
    assert result.exit_code == 0, result.output
    with Session(engine) as session:
        prefs = session.get(Preferences, ada.id)
        assert prefs is not None and prefs.description == ON_TIDE
        assert prefs.liked_papers == ["2609.26811"]
    engine.dispose()


def test_subscribers_add_refuses_a_bad_liked_entry_by_name(database_url: str,
                                                           tmp_path: Path) -> None:
    result = run(database_url, "subscribers", "add", "bob@example.org", "--topics", "llm",
                 "--like", "2401.12345,https://arxiv.org/list/cs.LG", "--confirmed",
                 OUTBOX_DIR=str(tmp_path))
    assert result.exit_code == 1
    assert "liked_papers: 'https://arxiv.org/list/cs.LG' is not an arXiv id" in result.stderr
    result = run(database_url, "subscribers", "add", "bob@example.org", "--topics", "llm",
                 "--describe", "z" * 600, OUTBOX_DIR=str(tmp_path))
    assert result.exit_code == 1 and "description: At most 500 characters" in result.stderr
    assert not list(tmp_path.glob("*.eml"))
    engine = db.make_engine(database_url)
    with Session(engine) as session:
        assert subs.find_by_email(session, "bob@example.org") is None
    engine.dispose()


def test_rate_takes_several_ratings_in_one_call(database_url: str, tmp_path: Path) -> None:
    assert run(database_url, "ingest", "--file", str(API_DOCUMENT)).exit_code == 0
    assert run(database_url, "subscribers", "add", "cy@example.org", "--topics", "llm",
               "--confirmed").exit_code == 0
    result = run(database_url, "rate", "cy@example.org", f"{TIDE}=up",
                 f"https://arxiv.org/abs/{CONVEX}v1=down", "2604.26932=up")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "rate: cy@example.org: 2 up, 1 down; model trained on 3 ratings"
    engine = db.make_engine(database_url)

    def rated() -> dict[str | None, int]:
        with Session(engine) as session:
            cy = subs.find_by_email(session, "cy@example.org")
            assert cy is not None and cy.id is not None
            return {r.arxiv_id: r.value for r in learn.ratings_of(session, cy.id)}

    assert rated() == {TIDE: 1, CONVEX: -1, "2604.26932": 1}
    result = run(database_url, "rate", "CY@example.org", f"{TIDE}=clear", f"{CONVEX}=UP")
    assert result.exit_code == 0, result.output
    assert rated() == {CONVEX: 1, "2604.26932": 1}

    # All or nothing: one bad item and nothing of the call is written; exit status 2.
    for args, said in (
        ([f"{CONVEX}=down", f"{TIDE}=meh"], "a rating is up, down or clear, not 'meh'"),
        ([f"{CONVEX}=down", "2604.26932"], "is not ARXIV_ID=up|down|clear"),
        ([f"{CONVEX}=down", "2401.00001=up"], "no stored paper 2401.00001"),
        ([f"{CONVEX}=down", f"{CONVEX}=up"], "rated twice"),
    ):
        result = run(database_url, "rate", "cy@example.org", *args)
        assert result.exit_code == 2, (args, result.output)
        assert said in result.stderr, (args, result.stderr)
        assert rated() == {CONVEX: 1, "2604.26932": 1}
    result = run(database_url, "rate", "nobody@example.org", f"{CONVEX}=down")
    assert result.exit_code == 2 and "no reader nobody@example.org" in result.stderr
    assert run(database_url, "rate", "cy@example.org").exit_code == 2  # no rating at all
    engine.dispose()


# ---------------------------------------------------------------- OpenAI vectors


def test_with_openai_vectors_a_rating_waits_for_no_embedding(engine: Engine,
                                                             settings: Settings) -> None:
    ids = papers(engine, API_DOCUMENT)
    me = reader(engine)
    with OpenAIServer() as server:
        keyed = settings.model_copy(update={
            "openai_api_key": "test-key", "openai_base_url": server.base_url,
            "embedding_dimensions": 64, "llm_max_attempts": 1, "llm_backoff": 0})
        space = space_for(keyed)
        with db.transaction(engine) as session:
            learn.set_interests(session, me, ON_TIDE, "", settings=keyed)
        assert [c.texts for c in server.embed_calls] == [[ON_TIDE]]
        with db.transaction(engine) as session:  # no vector for the paper yet: left out
            learn.rate(session, me, ids[TIDE], 1, settings=keyed)
        assert len(server.embed_calls) == 1  # the description's vector was kept
        found = stored_model(engine, me, keyed)
        assert (found.vector_model, found.ups) == (space.name, 0)

        embed_pending(engine, keyed)  # the papers get their vectors ...
        calls = len(server.embed_calls)
        assert train.retrain_outdated(engine, keyed) == 1  # ... and the model catches up
        assert len(server.embed_calls) == calls
        assert stored_model(engine, me, keyed).ups == 1
        assert train.retrain_outdated(engine, keyed) == 0

        # The provider fails while a new description arrives: trained without it, then
        # the sweep embeds it.
        server.embed_script = lambda call: error(500, "overloaded")
        with db.transaction(engine) as session:
            learn.set_interests(session, me, "convex neural networks for optimal transport",
                                "", settings=keyed)
        assert model_row(engine, me).description_hash is None  # type: ignore[union-attr]
        server.embed_script = good_embeddings
        assert train.retrain_outdated(engine, keyed) == 1
        assert model_row(engine, me).description_hash is not None  # type: ignore[union-attr]

    # Switching back to the offline space: every model is trained again in it.
    assert train.retrain_outdated(engine, settings) == 1
    assert model_row(engine, me).vector_model == vectors.OFFLINE_MODEL  # type: ignore[union-attr]


def test_with_vectors_in_one_cone_a_description_still_starts_the_typical_paper_unlikely(
    engine: Engine, settings: Settings
) -> None:
    # OpenAI's and MiniLM's vectors put any two texts at a cosine of 0.2-0.5. A start
    # tuned where unrelated texts meet at 0 would find every paper likely; centred on the
    # store's papers, the typical one starts at a chance of 0.05 and the described one
    # above all the others.
    ids = papers(engine, API_DOCUMENT)
    me = reader(engine)
    with OpenAIServer() as server:
        server.embed_script = leaning_embeddings
        keyed = settings.model_copy(update={
            "openai_api_key": "test-key", "openai_base_url": server.base_url,
            "embedding_dimensions": 256, "llm_max_attempts": 1, "llm_backoff": 0})
        embed_pending(engine, keyed)
        with db.transaction(engine) as session:
            learn.set_interests(session, me, ON_TIDE, "", settings=keyed)
        found = stored_model(engine, me, keyed)
        with Session(engine) as session:
            with_vector, rows = vectors_for(session, sorted(ids.values()), space_for(keyed))
        assert len(with_vector) == len(ids) >= 10
        assert float(np.median((rows @ rows.T).toarray())) > 0.2  # one cone indeed
    chances = model.affinities(found.weights, np.array([found.bias]), rows)[0]
    assert 0.03 < float(np.median(chances)) < 0.08
    assert int(np.argmax(chances)) == with_vector.index(ids[TIDE])


# ---------------------------------------------------------------- the migration


def test_the_migration_goes_down_and_up(database_url: str) -> None:
    engine = db.make_engine(database_url)
    cfg = db._alembic_config(engine)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0009")
    shape = inspect(engine)
    assert not {"ratings", "reader_models"} & set(shape.get_table_names())
    assert not {"description", "liked_papers"} & {c["name"] for c in
                                                  shape.get_columns("preferences")}
    with engine.begin() as conn:  # a reader from before: their liked papers start empty
        conn.execute(text("INSERT INTO subscribers (id, email, status, link_key, created_at, "
                          "updated_at) VALUES (7, 'old@example.org', 'confirmed', 'k', "
                          ":now, :now)"), {"now": NOW})
        conn.execute(text("INSERT INTO preferences (subscriber_id, topics, include_keywords, "
                          "exclude_keywords, authors, frequency, max_papers, include_revised, "
                          "updated_at) VALUES (7, '[\"llm\"]', '[]', '[]', '[]', 'daily', 10, "
                          ":no, :now)"), {"now": NOW, "no": False})
    db.upgrade(engine)
    assert {"ratings", "reader_models"} <= set(inspect(engine).get_table_names())
    with Session(engine) as session:
        prefs = session.get(Preferences, 7)
        assert prefs is not None and prefs.liked_papers == [] and prefs.description is None
    engine.dispose()
