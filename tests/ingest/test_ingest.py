"""Ingesting documents into the paper store: on SQLite and on Postgres."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from sqlalchemy import Engine, text
from sqlmodel import Session, select

from newsletter.ingest.feed import Feed
from newsletter.ingest.paper import Paper
from newsletter.ingest.store import ingest_files
from tests.conftest import ARXIV_FIXTURES, LOCAL_FIXTURES, arxiv_fixture

COMBINED = "rss_cs.LG+cs.AI+cs.CL+stat.ML_2026-09-24.xml"


def dump(engine: Engine) -> list[tuple]:
    """Every stored column of every paper: equal dumps mean nothing was written."""
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text("SELECT * FROM papers ORDER BY key"))]


def paper(engine: Engine, key: str) -> Paper:
    with Session(engine) as session:
        found = session.exec(select(Paper).where(Paper.key == key)).one()
        session.expunge(found)
        return found


def feed_status(engine: Engine, name: str) -> Feed:
    with Session(engine) as session:
        return session.exec(select(Feed).where(Feed.label == name)).one()


def write(tmp_path: Path, name: str, content: str) -> Path:
    path = tmp_path / name
    path.write_text(content)
    return path


def test_every_real_document_lands_once(engine: Engine) -> None:
    paths = sorted(ARXIV_FIXTURES.glob("*.xml"))
    summary = ingest_files(engine, paths)
    # 20 from the API, 3+3+3 single-category listings, 4 in the combined one.
    assert summary.total("added") == 33
    assert summary.errors == 1  # api_error_400.xml
    assert len(dump(engine)) == 33
    agent = paper(engine, "2604.21936")
    assert len(agent.authors) == 18
    assert r"\textbf{adaptability}" in agent.abstract
    assert paper(engine, "2604.26951").code_url == "https://github.com/PKU-YuanGroup/TIDE"
    assert paper(engine, "2604.21952").categories == ["cs.LG", "cs.AI", "cs.AR", "cs.NE", "cs.RO"]


def test_reingesting_the_same_documents_changes_nothing(engine: Engine) -> None:
    paths = sorted(ARXIV_FIXTURES.glob("*.xml")) + sorted(LOCAL_FIXTURES.glob("*.xml"))
    ingest_files(engine, paths)
    before = dump(engine)
    again = ingest_files(engine, paths)
    assert again.total("added") == 0 and again.total("updated") == 0
    assert again.total("unchanged") == again.total("items")
    assert dump(engine) == before


def test_cross_list_after_new_adds_categories_only(engine: Engine, tmp_path: Path) -> None:
    original = arxiv_fixture("rss_cs.CL_2026-04-27.xml").read_text()
    ingest_files(engine, [arxiv_fixture("rss_cs.CL_2026-04-27.xml")])
    before = paper(engine, "2604.22002")
    cross = original.replace("Announce Type: new", "Announce Type: cross").replace(
        "<arxiv:announce_type>new", "<arxiv:announce_type>cross"
    ).replace("<category>cs.CL</category>", "<category>cs.CY</category>").replace(
        "cs.CL updates", "cs.CY updates"
    )
    summary = ingest_files(engine, [write(tmp_path, "cs.CY.xml", cross)])
    assert summary.total("added") == 0
    after = paper(engine, "2604.22002")
    assert after.categories == ["cs.CL", "cs.CY"]
    assert after.announce_type == "new"  # a cross-list never demotes a new paper
    assert (after.title, after.abstract, after.version, after.authors, after.announced_on) == (
        before.title, before.abstract, before.version, before.authors, before.announced_on
    )


def test_new_after_cross_makes_it_new(engine: Engine, tmp_path: Path) -> None:
    doc = arxiv_fixture(COMBINED).read_text()
    ingest_files(engine, [arxiv_fixture(COMBINED)])
    assert paper(engine, "2205.06398").announce_type == "cross"
    as_new = doc.replace("Announce Type: cross", "Announce Type: new").replace(
        "<arxiv:announce_type>cross", "<arxiv:announce_type>new"
    )
    ingest_files(engine, [write(tmp_path, "stat.ME.xml", as_new)])
    assert paper(engine, "2205.06398").announce_type == "new"


def test_replace_bumps_version_keeps_first_announcement(engine: Engine, tmp_path: Path) -> None:
    ingest_files(engine, [arxiv_fixture("rss_cs.LG_2026-04-27.xml")])
    doc = arxiv_fixture("rss_cs.LG_2026-04-27.xml").read_text()
    start, end = doc.index("<item>"), doc.index("</item>") + len("</item>")
    item = doc[start:end]
    replaced = (
        item.replace("2604.21952v1", "2604.21952v2")
        .replace("Announce Type: new", "Announce Type: replace")
        .replace("<arxiv:announce_type>new", "<arxiv:announce_type>replace")
        .replace("Focus Session:", "Focus Session (revised):")
    )
    later = doc[:start] + replaced + doc[doc.rindex("</item>") + len("</item>"):]
    later = later.replace("Mon, 27 Apr 2026", "Thu, 30 Apr 2026")
    summary = ingest_files(engine, [write(tmp_path, "later.xml", later)])
    assert (summary.total("added"), summary.total("updated")) == (0, 1)
    revised = paper(engine, "2604.21952")
    assert revised.version == 2
    assert revised.title.startswith("Focus Session (revised):")
    assert revised.announced_on == date(2026, 4, 27)
    assert revised.revised_on == date(2026, 4, 30)
    assert revised.announce_type == "new"  # still the paper first announced on the 27th
    assert revised.pdf_url == "https://arxiv.org/pdf/2604.21952v2"

    # The older version arriving late (a slow mirror) must not roll it back.
    ingest_files(engine, [arxiv_fixture("rss_cs.LG_2026-04-27.xml")])
    assert paper(engine, "2604.21952").version == 2


def test_replacement_of_an_unknown_paper_is_not_todays_new_paper(engine: Engine) -> None:
    ingest_files(engine, [arxiv_fixture(COMBINED)])
    replaced = paper(engine, "2009.13987")
    assert (replaced.version, replaced.announce_type) == (3, "replace")
    assert replaced.announced_on is None
    assert replaced.revised_on == date(2026, 9, 24)


def test_bad_documents_leave_the_store_unchanged_and_say_why(engine: Engine) -> None:
    ingest_files(engine, [arxiv_fixture("rss_cs.AI_2026-04-27.xml")])
    before = dump(engine)
    bad = [
        LOCAL_FIXTURES / "malformed.xml",
        LOCAL_FIXTURES / "rss_feed_error_400.xml",
        arxiv_fixture("api_error_400.xml"),
    ]
    summary = ingest_files(engine, bad)
    assert summary.errors == 3
    assert dump(engine) == before
    assert "malformed feed at line" in feed_status(engine, "malformed.xml").last_error
    assert feed_status(engine, "malformed.xml").state == "error"
    assert "cs.XX" in feed_status(engine, "rss_feed_error_400.xml").last_error
    assert "incorrect id format" in feed_status(engine, "api_error_400.xml").last_error


def test_a_partly_bad_listing_writes_none_of_its_good_items(
    engine: Engine, tmp_path: Path
) -> None:
    doc = arxiv_fixture("rss_cs.CL_2026-04-27.xml").read_text().replace(
        "</channel>",
        "<item><title>broken</title><description>no id</description></item></channel>",
    )
    summary = ingest_files(engine, [write(tmp_path, "half.xml", doc)])
    assert summary.errors == 1 and summary.total("added") == 0
    assert dump(engine) == []


def test_weekend_listing_is_recorded_as_no_announcement(engine: Engine) -> None:
    summary = ingest_files(engine, [LOCAL_FIXTURES / "rss_weekend_2026-09-26.xml"])
    assert summary.errors == 0
    assert dump(engine) == []
    status = feed_status(engine, "rss_weekend_2026-09-26.xml")
    assert status.state == "no_announcement"
    assert status.announced_on == date(2026, 9, 26)
    assert status.last_error is None
    assert "no announcement" in summary.feeds[0].line()


def test_a_feed_with_whitespace_before_its_declaration_lands_with_a_warning(
    engine: Engine, tmp_path: Path
) -> None:
    doc = b"\r\n\xef\xbb\xbf" + arxiv_fixture(COMBINED).read_bytes()
    (tmp_path / "lab.xml").write_bytes(doc)
    summary = ingest_files(engine, [tmp_path / "lab.xml"])
    assert summary.errors == 0 and summary.total("added") == 4
    status = feed_status(engine, "lab.xml")
    assert status.state == "ok" and status.last_error is None
    assert "before the XML declaration" in status.last_warning
    assert "warning: a byte-order mark and whitespace" in summary.feeds[0].line()
    # The next clean document clears the warning.
    (tmp_path / "lab.xml").write_bytes(arxiv_fixture(COMBINED).read_bytes())
    ingest_files(engine, [tmp_path / "lab.xml"])
    assert feed_status(engine, "lab.xml").last_warning is None


def test_error_then_success_clears_the_error(engine: Engine, tmp_path: Path) -> None:
    path = tmp_path / "feed.xml"
    path.write_text((LOCAL_FIXTURES / "malformed.xml").read_text())
    ingest_files(engine, [path])
    assert feed_status(engine, "feed.xml").state == "error"
    path.write_text(arxiv_fixture(COMBINED).read_text())
    ingest_files(engine, [path])
    status = feed_status(engine, "feed.xml")
    assert (status.state, status.last_error, status.papers_added) == ("ok", None, 4)


def test_source_feed_papers_carry_their_label(engine: Engine) -> None:
    ingest_files(engine, [LOCAL_FIXTURES / "lab_blog.xml"], source="example-lab")
    with Session(engine) as session:
        sources = {p.source for p in session.exec(select(Paper))}
    assert sources == {"example-lab"}
