"""A reader's own papers: their library file and arXiv author feed teach their model.

On SQLite and Postgres, against the arXiv stand-in (tests/support/arxiv_server.py: the API
and author feeds, from a real API document): a library stored as the reader's; the sweep
reading the author feed, looking titles up on arXiv, embedding entries that stand for
themselves, and retraining; arXiv failing mid-sweep; an identifier arXiv does not know;
dropped papers staying dropped; the why-line naming a library paper; the CLI contract
(`subscribers add --library --author`, `embed`, `subscribers library`); the migration.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from alembic import command
from sqlalchemy import Engine, inspect, text
from sqlmodel import Session, select

from newsletter import db
from newsletter.config import Settings
from newsletter.ingest.paper import Paper, PaperEntry
from newsletter.readers.author_id import author_id_of
from newsletter.readers.tables import Preferences
from newsletter.relevance import learn, model, train, vectors
from newsletter.relevance.library import files, sweep
from newsletter.relevance.library import store as library_store
from newsletter.relevance.library.tables import LibraryEntry
from newsletter.relevance.tables import ReaderModelRow
from newsletter.subscriptions import privacy
from tests.conftest import REPO
from tests.relevance.test_learn import CONVEX, TIDE, reader, run
from tests.relevance.test_relevance_model import (
    DIMS,
    RATED_DAY,
    SPACE,
    Day,
    _affinity,
    _chance_on_above_off,
    _ranks,
)
from tests.support.arxiv_server import ArxivAPI

NOW = datetime(2026, 9, 24, 9, 0, tzinfo=UTC)
IMAGING = REPO / "tests" / "fixtures" / "library" / "imaging_reader_zotero.bib"
ADMM, SQUINT, ASSEMBLIES = "2604.26932", "2604.26922", "2604.26919"
NOT_ON_ARXIV = "Sparse Retrieval Models for Legal Case Search"
ABSTRACT = ("We study sparse lexical retrieval models for finding relevant legal cases, "
            "comparing learned term weighting with classical BM25 on three court corpora.")
# A Zotero-style export: an arXiv preprint (eprint), the journal version of an arXiv paper
# (no arXiv id: found by its title), a paper arXiv does not have (with its abstract), a
# book with no abstract, and an entry with no title.
LIBRARY = f"""
@misc{{tide,
  title = {{Turning the {{TIDE}}: Cross-Architecture Distillation for Diffusion Large
           Language Models}},
  eprint = {{{TIDE}}}, archiveprefix = {{arXiv}}, primaryclass = {{cs.CL}},
  year = {{2026}},
}}
@article{{convex,
  title = {{Hyper Input Convex Neural Networks for Shape Constrained Learning and
           Optimal Transport}},
  journal = {{Journal of Shape Learning}}, doi = {{10.1234/jsl.2026.42}},
  abstract = {{Input convex networks, published version.}},
  year = {{2026}},
}}
@inproceedings{{legal,
  title = {{{NOT_ON_ARXIV}}},
  abstract = {{{ABSTRACT}}},
  year = {{2025}},
}}
@book{{handbook,
  title = {{A Handbook of Things Nobody Put on arXiv}},
  year = {{2019}},
}}
@misc{{untitled,
  year = {{2020}},
}}
""".encode()


def sweep_settings(settings: Settings, api: ArxivAPI) -> Settings:
    return settings.model_copy(update={"arxiv_api_url": f"{api.url}/api/query",
                                       "arxiv_author_url": f"{api.url}/a"})


def with_library(engine: Engine, settings: Settings, author: str | None = "grapa_j_1") -> int:
    me = reader(engine)
    with db.transaction(engine) as session:
        learn.import_library(session, me, files.parse_library(LIBRARY), "My Library.bib",
                             settings=settings)
        if author:
            learn.set_author(session, me, author, settings=settings)
    return me


def entries(engine: Engine, me: int) -> dict[str, LibraryEntry]:
    with Session(engine) as session:
        return {e.title: e for e in library_store.shelf_of(session, me).entries}


# ---------------------------------------------------------------- the identifier


@pytest.mark.parametrize(("typed", "kept"), [
    ("grapa_j_1", "grapa_j_1"),
    ("Grapa_J_1", "grapa_j_1"),
    ("https://arxiv.org/a/grapa_j_1.html", "grapa_j_1"),
    ("arxiv.org/a/grapa_j_1", "grapa_j_1"),
    ("0000-0002-1825-0097", "0000-0002-1825-0097"),
    ("https://orcid.org/0000-0002-1825-0097", "0000-0002-1825-0097"),
    ("https://arxiv.org/a/0000-0002-1825-0097.atom2", "0000-0002-1825-0097"),
    ("000000021825009X".replace("X", "7"), "0000-0002-1825-0097"),
    ("  ", None),
])
def test_an_author_identifier_is_kept_as_its_feed_names_it(typed: str, kept: str | None
                                                            ) -> None:
    assert author_id_of(typed) == kept


@pytest.mark.parametrize("typed", [
    "0000-0002-1825-0098",  # a wrong check digit: ORCID's ISO 7064 catches the typo
    "grapa j",
    "https://example.org/a/grapa_j_1",
    "../../etc/passwd",
    "grapa_j_1.atom2?x=<script>",
    "a" * 300,
])
def test_what_is_no_identifier_is_refused_with_a_sentence(typed: str) -> None:
    with pytest.raises(ValueError, match=r"ORCID|arXiv author"):
        author_id_of(typed)


# ---------------------------------------------------------------- the sweep


def test_the_sweep_makes_the_readers_own_papers_count(engine: Engine,
                                                      settings: Settings) -> None:
    me = with_library(engine, settings)
    before = entries(engine, me)
    assert {t: e.state for t, e in before.items()} == {
        "Turning the TIDE: Cross-Architecture Distillation for Diffusion Large Language "
        "Models": "arxiv",
        "Hyper Input Convex Neural Networks for Shape Constrained Learning and Optimal "
        "Transport": "lookup",
        NOT_ON_ARXIV: "lookup",
        "A Handbook of Things Nobody Put on arXiv": "lookup"}
    with Session(engine) as session:
        shelf = library_store.shelf_of(session, me)
    assert shelf.upload is not None and shelf.upload.filename == "My Library.bib"
    assert [s["reason"] for s in shelf.upload.report["skipped"]] == ["no-title"]
    # Nothing counts yet: no paper of the library is ours, and nothing was embedded.
    assert ReaderModelRow.__tablename__ and _model(engine, me) is None

    with ArxivAPI(authors={"grapa_j_1": [ADMM, SQUINT]}) as api:
        _, retrained = train.embed_and_retrain(engine, sweep_settings(settings, api))
        asked = list(api.requests)
    assert retrained == 1
    # The author feed, the titles, then the library's arXiv papers we lack, by id.
    assert asked[0].path == "/a/grapa_j_1.atom2"
    assert [r.query["id_list"] for r in asked if "id_list" in r.query] == [[TIDE]]
    [search] = [r for r in asked if "search_query" in r.query]
    query = search.query["search_query"][0]
    # One call for the three titles, each a quoted phrase of its words.
    assert query.count("ti:") == 3 and " OR " in query
    assert 'ti:"hyper input convex neural networks for shape constrained learning and ' \
           'optimal transport"' in query
    after = entries(engine, me)
    convex = after["Hyper Input Convex Neural Networks for Shape Constrained Learning and "
                   "Optimal Transport"]
    assert (convex.state, convex.arxiv_id, convex.abstract) == ("arxiv", CONVEX, None)
    legal = after[NOT_ON_ARXIV]
    assert legal.state == "text" and legal.abstract == ABSTRACT
    with Session(engine) as session:
        kept = session.get(LibraryEntry, legal.id)
        assert kept is not None and kept.vector is not None
    assert legal.vector_model == vectors.OFFLINE_MODEL
    assert after["A Handbook of Things Nobody Put on arXiv"].state == "unmatched"
    # The author feed's papers, newest first as arXiv lists them.
    with Session(engine) as session:
        shelf = library_store.shelf_of(session, me)
        authored = [e.arxiv_id for e in shelf.entries if e.source == "author"]
        stored = {p.arxiv_id: p for p in session.exec(select(Paper))}
        prefs = session.get(Preferences, me)
    assert authored == [ADMM, SQUINT]
    assert shelf.counting() == 5  # 2 authored, TIDE, CONVEX, the legal paper
    assert prefs is not None and prefs.author_fetched_at is not None
    # Stored as papers we know, but listed on no day: no card, in nobody's digest.
    assert {ADMM, SQUINT, TIDE, CONVEX} <= set(stored)
    assert all(stored[i].announced_on is None for i in (ADMM, SQUINT, TIDE, CONVEX))
    assert _model(engine, me) is not None

    # The next sweep asks arXiv nothing: the feed is read weekly, the titles are settled.
    with ArxivAPI(authors={"grapa_j_1": [ADMM]}) as api:
        train.embed_and_retrain(engine, sweep_settings(settings, api))
        assert api.requests == []


def _model(engine: Engine, me: int) -> ReaderModelRow | None:
    with Session(engine) as session:
        return session.get(ReaderModelRow, me)


def test_arxiv_failing_mid_sweep_loses_nothing(engine: Engine, settings: Settings) -> None:
    me = with_library(engine, settings)
    with ArxivAPI(down=True) as api:
        train.embed_and_retrain(engine, sweep_settings(settings, api))
    assert all(e.state in ("arxiv", "lookup") for e in entries(engine, me).values())
    with Session(engine) as session:
        prefs = session.get(Preferences, me)
        assert prefs is not None and prefs.author_fetched_at is None  # asked again next time
    # arXiv back: everything is done as if it had never failed.
    with ArxivAPI(authors={"grapa_j_1": [ADMM]}) as api:
        train.embed_and_retrain(engine, sweep_settings(settings, api))
    states = {e.state for e in entries(engine, me).values()}
    assert "lookup" not in states and {"arxiv", "text", "unmatched"} == states


def test_an_identifier_arxiv_does_not_know_brings_nothing_and_is_not_asked_daily(
        engine: Engine, settings: Settings) -> None:
    me = with_library(engine, settings, author="nobody_x_9")
    with ArxivAPI(authors={}) as api:
        train.embed_and_retrain(engine, sweep_settings(settings, api))
        train.embed_and_retrain(engine, sweep_settings(settings, api))
        feeds = [r.path for r in api.requests if r.path.startswith("/a/")]
    assert feeds == ["/a/nobody_x_9.atom2"]
    with Session(engine) as session:
        shelf = library_store.shelf_of(session, me)
    assert shelf.author == "nobody_x_9" and shelf.author_read_at is not None
    assert not [e for e in shelf.entries if e.source == "author"]


def _authored(arxiv_id: str, title: str) -> PaperEntry:
    return PaperEntry(key=arxiv_id, arxiv_id=arxiv_id, version=1, title=title,
                      abstract="An abstract long enough to stand for the paper.",
                      authors=("Jan Grapa",), categories=("cs.LG",), primary_category="cs.LG",
                      announce_type="new", announced_on=None,  # the API's: never listed
                      abs_url=f"https://arxiv.org/abs/{arxiv_id}", pdf_url=None)


@pytest.mark.postgres
def test_two_sweeps_reading_one_author_feed_at_once_record_its_papers_once(
        postgres_url: str) -> None:
    settings = Settings(database_url=postgres_url)
    engine = db.make_engine(postgres_url)
    me = with_library(engine, settings)
    feed = [_authored("2609.11111", "First authored paper"),
            _authored("2609.22222", "Second authored paper")]
    now = datetime.now(UTC)
    # The first sweep is recording the feed and has not committed yet ...
    first = Session(engine)
    first.get(Preferences, me, with_for_update=True)
    library_store.store_author_papers(first, me, [(e.arxiv_id or "", e.title) for e in feed],
                                      now)
    first.flush()
    # ... when the second one, which read the same feed, records it too.
    done = threading.Event()
    second = threading.Thread(target=lambda: (
        sweep.record_author_feed(engine, me, "grapa_j_1", feed, now), done.set()))
    second.start()

    def waiting_on_a_lock() -> bool:
        with engine.connect() as conn:
            return bool(conn.execute(text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock'")).scalar())

    deadline = time.monotonic() + 30
    while not (done.is_set() or waiting_on_a_lock()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not done.is_set()  # it waits for the first
    first.commit()
    first.close()
    second.join(30)
    assert done.is_set()
    with Session(engine) as session:
        authored = [e.arxiv_id for e in library_store.shelf_of(session, me).entries
                    if e.source == "author"]
    assert sorted(authored) == ["2609.11111", "2609.22222"]
    engine.dispose()


def test_a_dropped_paper_stays_dropped_and_a_new_identifier_starts_afresh(
        engine: Engine, settings: Settings) -> None:
    me = with_library(engine, settings)
    with ArxivAPI(authors={"grapa_j_1": [ADMM, SQUINT]}) as api:
        train.embed_and_retrain(engine, sweep_settings(settings, api))
    admm = next(e for e in entries(engine, me).values() if e.arxiv_id == ADMM)
    with db.transaction(engine) as session:
        assert learn.drop_own(session, me, [admm.id or 0], settings=settings) == 1
        prefs = session.get(Preferences, me)
        assert prefs is not None
        prefs.author_fetched_at = datetime(2026, 1, 1, tzinfo=UTC)  # the feed is due again
    with ArxivAPI(authors={"grapa_j_1": [ASSEMBLIES, ADMM, SQUINT]}) as api:
        train.embed_and_retrain(engine, sweep_settings(settings, api))
    authored = {e.arxiv_id: e.dropped for e in entries(engine, me).values()
                if e.source == "author"}
    assert authored == {ASSEMBLIES: False, ADMM: True, SQUINT: False}
    with Session(engine) as session:
        assert ADMM not in library_store.counted(session, me)[0]

    # Another reader's entry cannot be dropped through this reader.
    other = reader(engine, "other@example.org")
    with db.transaction(engine) as session:
        assert learn.drop_own(session, other, [admm.id or 0], False, settings=settings) == 0

    with db.transaction(engine) as session:
        assert learn.set_author(session, me, "0000-0002-1825-0097", settings=settings)
    assert not [e for e in entries(engine, me).values() if e.source == "author"]


def test_a_new_file_replaces_the_old_and_removing_it_keeps_the_author_feed(
        engine: Engine, settings: Settings) -> None:
    me = with_library(engine, settings)
    with ArxivAPI(authors={"grapa_j_1": [ADMM]}) as api:
        train.embed_and_retrain(engine, sweep_settings(settings, api))
    second = b"@misc{a, title={Causal Learning with Neural Assemblies}, eprint={2604.26919}," \
             b" archiveprefix={arXiv}}"
    with db.transaction(engine) as session:
        learn.import_library(session, me, files.parse_library(second), "second.bib",
                             settings=settings)
    titles = {(e.source, e.arxiv_id) for e in entries(engine, me).values()}
    assert titles == {("author", ADMM), ("library", ASSEMBLIES)}
    with db.transaction(engine) as session:
        learn.remove_library(session, me, settings=settings)
    assert {(e.source, e.arxiv_id) for e in entries(engine, me).values()} == {
        ("author", ADMM)}


# ---------------------------------------------------------------- the command line


def test_the_cli_imports_a_library_and_embed_fetches_what_it_needs(
        database_url: str, tmp_path: Path, settings: Settings) -> None:
    library = tmp_path / "zotero.bib"
    library.write_bytes(LIBRARY)
    with ArxivAPI(authors={"grapa_j_1": [ADMM]}) as api:
        env = {"ARXIV_API_URL": f"{api.url}/api/query", "ARXIV_AUTHOR_URL": f"{api.url}/a",
               "ARXIV_API_DELAY": "0", "PAPERWIRE_DEV": "1"}
        added = run(database_url, "subscribers", "add", "me@example.org", "--topics", "llm",
                    "--confirmed", "--library", str(library), "--author",
                    "https://arxiv.org/a/grapa_j_1", **env)
        assert added.exit_code == 0, added.output
        assert api.requests == []  # the command asks arXiv nothing: `embed` does
        assert "4 entries kept: 1 name an arXiv paper, 3 to look up" in added.output
        assert "skipped #5 '(untitled)': " in added.output
        assert "author: grapa_j_1" in added.output
        embedded = run(database_url, "embed", **env)
        assert embedded.exit_code == 0, embedded.output
        assert "1 author feed read" in embedded.output
        assert "1 of 3 titles found on arXiv" in embedded.output
    shown = run(database_url, "subscribers", "library", "me@example.org")
    assert shown.exit_code == 0, shown.output
    assert "author: grapa_j_1 (feed: 20" in shown.output
    assert "not on arXiv: its title and abstract count" in shown.output
    assert "not on arXiv and no abstract: not used" in shown.output
    assert f"on arXiv {CONVEX}" in shown.output


@pytest.mark.parametrize(("content", "said"), [
    (b"\x89PNG\r\n\x1a\n" + b"\0" * 64, "image"),
    (b"", "empty"),
    (b"hello, this is no library", "BibTeX, RIS or CSL JSON"),
])
def test_the_cli_refuses_a_bad_file_and_changes_nothing(
        database_url: str, tmp_path: Path, content: bytes, said: str) -> None:
    bad = tmp_path / "library.bib"
    bad.write_bytes(content)
    result = run(database_url, "subscribers", "add", "me@example.org", "--topics", "llm",
                 "--confirmed", "--library", str(bad), PAPERWIRE_DEV="1")
    assert result.exit_code != 0 and said.lower() in result.output.lower(), result.output
    engine = db.make_engine(database_url)
    with Session(engine) as session:
        assert session.exec(select(LibraryEntry)).all() == []
        assert session.exec(select(Preferences)).all() == []  # no reader either
    engine.dispose()


def test_the_migration_goes_down_and_up(database_url: str) -> None:
    engine = db.make_engine(database_url)
    cfg = db._alembic_config(engine)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0019")
    shape = inspect(engine)
    assert not {"library_uploads", "library_entries"} & set(shape.get_table_names())
    assert "arxiv_author" not in {c["name"] for c in shape.get_columns("preferences")}
    db.upgrade(engine)
    shape = inspect(engine)
    assert {"library_uploads", "library_entries"} <= set(shape.get_table_names())
    assert "arxiv_author" in {c["name"] for c in shape.get_columns("preferences")}
    engine.dispose()


def test_a_file_sent_with_a_sign_up_nobody_confirmed_is_forgotten(
        engine: Engine, settings: Settings) -> None:
    me = reader(engine)
    with db.transaction(engine) as session:
        library_store.import_file(session, me, files.parse_library(LIBRARY), "theirs.bib",
                                  nonce="n" * 32, now=datetime(2026, 9, 1, tzinfo=UTC))
    with Session(engine) as session:  # waiting: not the reader's, and it teaches nothing
        assert library_store.shelf_of(session, me).entries == ()
        assert library_store.counted(session, me) == ([], [], None)
    with db.transaction(engine) as session:
        privacy.expire_pending(session, NOW)
    with Session(engine) as session:
        assert session.exec(select(LibraryEntry)).all() == []


# ---------------------------------------------------------------- the model


@pytest.fixture(scope="module")
def rated() -> Day:
    return Day(RATED_DAY)


def _imaging(count: int) -> sp.csr_matrix:
    """Earlier medical-imaging papers (the e2e fixture's), repeated to `count` rows."""
    parsed = files.parse_library(IMAGING.read_bytes())
    rows = vectors.offline_vectors([vectors.paper_text(e.title, e.abstract or "")
                                    for e in parsed.entries])
    return sp.vstack([rows] * (count // rows.shape[0] + 1), format="csr")[:count]


def test_a_library_alone_makes_a_model_that_ranks_its_field_first(rated: Day) -> None:
    reader = model.train(SPACE, DIMS, library=_imaging(30), reference=rated.vectors)
    assert reader is not None and (reader.ups, reader.downs) == (0, 0)
    scores = _affinity(reader, rated.vectors)
    field = rated.about("eess.IV")
    # A paper of their field beats one outside it most of the time (0.5: a coin toss).
    assert _chance_on_above_off(scores, field) > 0.85, _chance_on_above_off(scores, field)


def test_a_long_library_drowns_neither_the_description_nor_the_ratings(rated: Day) -> None:
    described = vectors.offline_vectors(["federated learning with differential privacy"])
    alone = model.train(SPACE, DIMS, description=described, reference=rated.vectors)
    assert alone is not None
    own_top = int(np.argmax(_affinity(alone, rated.vectors)))
    short, long = (model.train(SPACE, DIMS, description=described, library=_imaging(n),
                               reference=rated.vectors) for n in (20, 200))
    assert short is not None and long is not None
    # As a block, 200 papers weigh what 20 do: the description's best paper stays high.
    for both in (short, long):
        assert _ranks(_affinity(both, rated.vectors))[own_top] <= 10
    # Down-ratings of the library's favourite paper today cut its chance as much with 200
    # papers as with 20.
    target = int(np.argmax(_affinity(long, rated.vectors)))
    downs = sp.vstack([rated.vectors[target]] * 3, format="csr")
    drops = []
    for n in (20, 200):
        before = model.train(SPACE, DIMS, library=_imaging(n), reference=rated.vectors)
        after = model.train(SPACE, DIMS, library=_imaging(n), downs=downs,
                            reference=rated.vectors)
        assert before is not None and after is not None
        drops.append(_affinity(after, rated.vectors)[target]
                     / _affinity(before, rated.vectors)[target])
    # Each keeps less than half its chance, and within 1.5 times of each other.
    assert all(d < 0.5 for d in drops) and max(drops) / min(drops) < 1.5, drops


def test_titles_left_for_later_sweeps_count_by_their_own_words_meanwhile(
        engine: Engine, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    from newsletter.relevance.library import sweep

    monkeypatch.setattr(sweep, "TITLE_CALLS_PER_SWEEP", 0)  # a library longer than a sweep
    me = with_library(engine, settings, author=None)
    with ArxivAPI() as api:
        train.embed_and_retrain(engine, sweep_settings(settings, api))
    legal = entries(engine, me)[NOT_ON_ARXIV]
    assert legal.state == "lookup" and legal.vector_model == vectors.OFFLINE_MODEL
    with Session(engine) as session:
        _, own, _ = library_store.counted(session, me)
    assert len(own) == 2  # the two entries with an abstract, still to be looked up
    monkeypatch.setattr(sweep, "TITLE_CALLS_PER_SWEEP", 10)
    with ArxivAPI() as api:
        train.embed_and_retrain(engine, sweep_settings(settings, api))
    convex = next(e for e in entries(engine, me).values() if e.arxiv_id == CONVEX)
    # Found on arXiv: it counts as that paper now, its own vector gone.
    assert convex.state == "arxiv" and convex.vector_model is None
    assert entries(engine, me)[NOT_ON_ARXIV].state == "text"
