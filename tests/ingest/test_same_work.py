"""One paper however many places announce it (ingest/identity.py, ingest/same_work.py): the
same work from arXiv, bioRxiv, a journal DOI or a lab's feed is one paper with all its
links, mailed once; two different papers are never made one. SQLite and Postgres."""

from __future__ import annotations

import dataclasses
from datetime import date, timedelta

import pytest
from alembic import command
from sqlalchemy import Engine, func, inspect, text
from sqlmodel import Session, select

from newsletter import db
from newsletter.cards import archive
from newsletter.config import Settings
from newsletter.delivery.sources import candidates
from newsletter.ingest.identity import arxiv_id_in, family_name, normal_doi, title_key
from newsletter.ingest.paper import Paper, PaperEntry
from newsletter.ingest.same_work import PaperAlias
from newsletter.ingest.store import ingest_files, store_entries
from newsletter.web import create_app
from tests.conftest import LOCAL_FIXTURES

DAY = date(2026, 11, 30)
TITLE = "Spatial transcriptomics of the developing mouse cortex at single-cell resolution"
ABSTRACT = "We map gene expression across the developing cortex with a new spatial assay."


def _arxiv(arxiv_id: str = "2611.01234", *, title: str = TITLE,
           authors: tuple[str, ...] = ("Jane A. Smith", "Bo Chen"), doi: str | None = None,
           day: date = DAY) -> PaperEntry:
    return PaperEntry(
        key=arxiv_id, arxiv_id=arxiv_id, version=1, title=title, abstract=ABSTRACT,
        authors=authors, categories=("q-bio.GN",), primary_category="q-bio.GN",
        announce_type="new", announced_on=day, abs_url=f"https://arxiv.org/abs/{arxiv_id}",
        pdf_url=f"https://arxiv.org/pdf/{arxiv_id}v1", doi=doi)


def _biorxiv(doi: str = "10.1101/2026.11.28.612345", *, title: str = TITLE,
             authors: tuple[str, ...] = ("Smith, J. A.", "Chen, B."), version: int = 1,
             day: date = DAY + timedelta(days=1), server: str = "biorxiv") -> PaperEntry:
    url = f"https://www.{server}.org/content/{doi}v{version}"
    return PaperEntry(
        key=f"doi:{doi}", arxiv_id=None, version=version, title=title,
        abstract=ABSTRACT + " (bioRxiv text)", authors=authors, categories=("genomics",),
        primary_category="genomics", announce_type="new" if version == 1 else "replace",
        announced_on=day, abs_url=url, pdf_url=url + ".full.pdf", doi=doi, source=server)


def _store(engine: Engine, *entries: PaperEntry):  # type: ignore[no-untyped-def]
    with db.transaction(engine) as session:
        return store_entries(session, list(entries))


def _papers(engine: Engine) -> list[Paper]:
    with Session(engine) as session:
        return list(session.exec(select(Paper).order_by(Paper.id)))


# The keys, pure.

def test_the_keys_agree_across_the_ways_sources_write_a_work() -> None:
    arxiv = title_key(r"Spatial \emph{transcriptomics} of the developing mouse cortex",
                      ["José Núñez", "B. Chen"])
    biorxiv = title_key("Spatial Transcriptomics of the Developing Mouse Cortex.",
                        ["Nunez, J.", "Chen, B."])
    assert arxiv == biorxiv == "spatial transcriptomics of the developing mouse cortex|nunez"
    assert family_name("Smith, Jane A.") == family_name("Jane A. Smith") == "smith"
    assert normal_doi("https://doi.org/10.1101/2026.11.28.612345") == \
        normal_doi("10.1101/2026.11.28.612345".upper()) == "10.1101/2026.11.28.612345"
    assert normal_doi("not a doi") is None
    assert arxiv_id_in("https://arxiv.org/abs/2609.26811v2") == "2609.26811"
    assert arxiv_id_in("https://arxiv.org/pdf/hep-th/9901001") == "hep-th/9901001"
    assert arxiv_id_in("https://lab.example.org/posts/arxiv.org") is None


def test_a_short_title_or_no_author_names_nothing() -> None:
    assert title_key("Editorial", ["Jane Smith"]) is None
    assert title_key("Reply to comments", ["Jane Smith"]) is None
    assert title_key(TITLE, []) is None


# One work, several sources.

def test_a_biorxiv_preprint_of_an_arxiv_paper_joins_it(engine: Engine) -> None:
    _store(engine, _arxiv())
    counts = _store(engine, _biorxiv())
    assert (counts.added, counts.merged) == (0, 1)
    [paper] = _papers(engine)
    assert paper.key == "2611.01234" and paper.abstract == ABSTRACT  # the first source's
    assert paper.also_on == [{"source": "biorxiv", "url":
                              "https://www.biorxiv.org/content/10.1101/2026.11.28.612345v1"}]
    assert paper.doi == "10.1101/2026.11.28.612345"  # a blank filled by the newcomer
    assert paper.announced_on == DAY and paper.revised_on is None
    # Seen again: unchanged. Its version 2: the link moves, the paper is not news again.
    assert _store(engine, _biorxiv()).unchanged == 1
    counts = _store(engine, _biorxiv(version=2, day=DAY + timedelta(days=5)))
    assert (counts.added, counts.updated, counts.merged) == (0, 1, 0)
    [paper] = _papers(engine)
    assert paper.also_on[0]["url"].endswith("612345v2")
    assert paper.revised_on is None and paper.version == 1
    with Session(engine) as session:
        assert session.exec(select(func.count()).select_from(PaperAlias)).one() == 1


def test_the_arxiv_version_of_a_biorxiv_preprint_joins_it_too(engine: Engine) -> None:
    _store(engine, _biorxiv(day=DAY))
    assert _store(engine, _arxiv(day=DAY + timedelta(days=2))).merged == 1
    [paper] = _papers(engine)
    assert paper.source == "biorxiv" and paper.arxiv_id == "2611.01234"
    assert paper.also_on == [{"source": "arxiv", "url": "https://arxiv.org/abs/2611.01234"}]


def test_a_journal_doi_joins_the_preprint_that_carries_it(engine: Engine) -> None:
    _store(engine, _arxiv(doi="10.1038/S41586-026-01234-5"))
    journal = dataclasses.replace(
        _biorxiv(title="A quite different journal title for the same work"),
        key="lab:1", doi="10.1038/s41586-026-01234-5", source="lab")
    assert _store(engine, journal).merged == 1
    assert len(_papers(engine)) == 1


def test_a_preprint_the_server_says_became_a_journal_article_joins_that_article(
        engine: Engine) -> None:
    # The journal retitled it; bioRxiv's record names the article's DOI ("published").
    _store(engine, _arxiv(title="Cortical maps at single-cell resolution in the mouse",
                          doi="10.1038/s41586-026-09999-1"))
    preprint = dataclasses.replace(_biorxiv(),
                                   journal_ref="Published: 10.1038/s41586-026-09999-1")
    assert _store(engine, preprint).merged == 1
    # Without that DOI, the two titles are two works.
    _store(engine, dataclasses.replace(_biorxiv(doi="10.1101/2026.11.29.600002"),
                                       title="Another study of the mouse cortex by Smith"))
    assert len(_papers(engine)) == 2


JOURNAL_DOI = "10.1038/s41586-026-07777-7"


def _published_preprint() -> PaperEntry:
    return dataclasses.replace(_biorxiv(day=DAY), journal_ref=f"Published: {JOURNAL_DOI}")


def _article_on_arxiv() -> PaperEntry:
    """The journal's version, retitled, posted to arXiv later with the article's DOI."""
    return _arxiv(title="Cortical cell maps resolved in space and time in mice",
                  doi=JOURNAL_DOI.upper(), day=DAY + timedelta(days=3))


def test_the_arxiv_record_of_the_article_a_stored_preprint_became_joins_it(
        engine: Engine) -> None:
    _store(engine, _published_preprint())
    assert _store(engine, _article_on_arxiv()).merged == 1
    [paper] = _papers(engine)
    assert paper.source == "biorxiv" and paper.arxiv_id == "2611.01234"
    assert paper.published_doi_key == JOURNAL_DOI
    # Another article's DOI names another work.
    other = dataclasses.replace(_article_on_arxiv(), key="2611.05555", arxiv_id="2611.05555",
                                doi="10.1038/s41586-026-07777-8")
    assert _store(engine, other).added == 1


def test_a_new_version_that_says_published_lets_the_article_join(engine: Engine) -> None:
    _store(engine, _biorxiv(day=DAY))
    _store(engine, dataclasses.replace(_published_preprint(), version=2,
                                       announce_type="replace"))
    assert _store(engine, _article_on_arxiv()).merged == 1
    assert len(_papers(engine)) == 1


def test_the_migration_fills_the_published_doi_of_preprints_already_stored(
        engine: Engine) -> None:
    _store(engine, _published_preprint(), _arxiv("2611.09999", title="An unrelated paper "
                                                                      "on graph learning"))
    config = db._alembic_config(engine)
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, "0021")
    assert "published_doi_key" not in {c["name"] for c in inspect(engine).get_columns("papers")}
    db.upgrade(engine)
    with engine.connect() as conn:
        keys = dict(conn.execute(text("SELECT key, published_doi_key FROM papers")).all())
    assert keys == {"doi:10.1101/2026.11.28.612345": JOURNAL_DOI, "2611.09999": None}
    assert _store(engine, _article_on_arxiv()).merged == 1


def test_a_feed_item_linking_to_arxiv_gives_way_to_the_arxiv_record(engine: Engine) -> None:
    ingest_files(engine, [LOCAL_FIXTURES / "lab_blog.xml"], source="example-lab")
    blurb = next(p for p in _papers(engine) if p.arxiv_id == "2609.26811")
    record = _arxiv("2609.26811", title="Scaling laws for retrieval-augmented models",
                    day=date(2026, 9, 25))
    assert _store(engine, record).merged == 1
    paper = next(p for p in _papers(engine) if p.id == blurb.id)
    assert paper.key == "2609.26811" and paper.source == "arxiv"
    assert paper.title == "Scaling laws for retrieval-augmented models"  # the paper's own
    assert paper.abstract == ABSTRACT
    assert paper.announced_on == blurb.announced_on  # on the day it was first listed
    assert paper.also_on == [{"source": "example-lab", "url": "https://arxiv.org/abs/2609.26811"}]
    assert len(_papers(engine)) == 2
    # A link mailed with the blurb's key still opens the paper.
    with Session(engine) as session:
        page = archive.paper(session, blurb.key)
    assert page is not None and page.key == "2609.26811"
    # And the blurb read again stays what it is: an alias.
    ingest_files(engine, [LOCAL_FIXTURES / "lab_blog.xml"], source="example-lab")
    assert len(_papers(engine)) == 2


def test_an_arxiv_paper_a_feed_announces_later_keeps_its_text(engine: Engine) -> None:
    _store(engine, _arxiv("2609.26811", title="Scaling laws for retrieval-augmented models",
                          day=date(2026, 9, 23)))
    report = ingest_files(engine, [LOCAL_FIXTURES / "lab_blog.xml"], source="example-lab")
    assert report.feeds[0].merged == 1 and report.feeds[0].added == 1
    assert "1 already known from another source" in report.feeds[0].line()
    paper = next(p for p in _papers(engine) if p.key == "2609.26811")
    assert paper.abstract == ABSTRACT and paper.source == "arxiv"


def test_the_work_is_mailed_once(engine: Engine) -> None:
    _store(engine, _arxiv())
    _store(engine, _biorxiv())
    with Session(engine) as session:
        window = candidates(session, DAY, DAY + timedelta(days=1))
    assert [c.key for c in window] == ["2611.01234"]
    assert window[0].also_on == (("biorxiv", "https://www.biorxiv.org/content/"
                                              "10.1101/2026.11.28.612345v1"),)
    with Session(engine) as session:  # the next day's digest does not see it again
        assert candidates(session, DAY + timedelta(days=1), DAY + timedelta(days=1)) == []


# Two works, never one.

@pytest.mark.parametrize(("change", "why"), [
    ({"authors": ("Lee, M.", "Smith, J. A.")}, "another first author"),
    ({"title": TITLE.replace("mouse", "human")}, "a title one word apart"),
    ({"title": "Spatial transcriptomics"}, "a title too short to name a work"),
    ({"doi": "10.1101/2026.11.28.612399", "authors": ("Lee, M.",)}, "another DOI"),
])
def test_different_works_stay_apart(engine: Engine, change: dict[str, object],
                                    why: str) -> None:
    base = _arxiv(title="Spatial transcriptomics") if why.startswith("a title too") else _arxiv()
    _store(engine, base)
    counts = _store(engine, dataclasses.replace(_biorxiv(), **change))
    assert (counts.added, counts.merged) == (1, 0), why
    assert len(_papers(engine)) == 2


def test_two_records_of_one_source_are_two_papers(engine: Engine) -> None:
    _store(engine, _biorxiv())
    counts = _store(engine, _biorxiv(doi="10.1101/2026.11.29.600001"))
    assert (counts.added, counts.merged) == (1, 0)


def test_biorxiv_and_medrxiv_of_one_work_are_one(engine: Engine) -> None:
    _store(engine, _biorxiv())
    other = _biorxiv(doi="10.1101/2026.11.29.26000001", server="medrxiv")
    assert _store(engine, other).merged == 1
    [paper] = _papers(engine)
    assert paper.also_on and paper.also_on[0]["source"] == "medrxiv"


def test_the_paper_page_names_its_source_and_its_other_places(engine: Engine,
                                                              settings: Settings) -> None:
    _store(engine, _biorxiv(day=DAY))
    _store(engine, _arxiv(day=DAY + timedelta(days=2)))
    page = create_app(settings, engine=engine).test_client().get(
        "/papers/doi:10.1101/2026.11.28.612345")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert ('<a href="https://www.biorxiv.org/content/10.1101/2026.11.28.612345v1" '
            'rel="noopener noreferrer">bioRxiv page</a>') in html
    assert "from bioRxiv" in html
    assert ('Also on <a href="https://arxiv.org/abs/2611.01234" rel="noopener noreferrer">'
            'arXiv</a>') in html
