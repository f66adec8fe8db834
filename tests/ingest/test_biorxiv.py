"""bioRxiv and medRxiv beside arXiv: the details API's pages parsed without I/O, then read
through a local stand-in of api.biorxiv.org into a real database."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date
from typing import Any
from unittest.mock import patch

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine
from sqlmodel import Session, select

from newsletter.cli import main
from newsletter.config import ConfigError, Settings, load_settings
from newsletter.ingest import preprints
from newsletter.ingest.biorxiv import Refused, parse_details
from newsletter.ingest.feed import Feed
from newsletter.ingest.fetch import Fetcher
from newsletter.ingest.identity import published_doi
from newsletter.ingest.paper import Paper
from newsletter.ingest.parse import FeedError
from newsletter.ingest.run import ingest_feeds
from newsletter.ingest.store import IngestSummary
from tests.conftest import arxiv_fixture
from tests.support.biorxiv_server import BiorxivAPI, fixture, records_of
from tests.support.http import Reply, Request, ScriptedServer

PAGE_1 = "details_biorxiv_2026-09-23_2026-09-24_0.json"
PAGE_2 = "details_biorxiv_2026-09-23_2026-09-24_10.json"
LATER = "details_biorxiv_2026-09-25_2026-09-25_0.json"
MEDRXIV = "details_medrxiv_2026-09-23_2026-09-24_0.json"
FISSION = "doi:10.1101/2026.09.21.677450"  # version 1 on the 23rd, version 2 on the 25th


def page(name: str, server: str = "biorxiv"):
    return parse_details(fixture(name).read_bytes(), server=server)


def by_key(parsed) -> dict[str, Any]:
    return {e.key: e for e in parsed.entries}


# --- the parser, on every fixture -------------------------------------------------------


def test_a_page_becomes_one_paper_per_preprint_keyed_by_its_doi() -> None:
    first = page(PAGE_1)
    assert (first.status, first.cursor, first.count, first.total) == ("ok", 0, 10, 12)
    assert first.next_cursor == 10
    assert len(first.entries) == 10
    assert all(e.key == "doi:" + e.doi.lower() and e.arxiv_id is None for e in first.entries)
    genomes = first.entries[0]
    assert genomes.key == "doi:10.1101/2026.09.21.677412"
    assert genomes.title.startswith("Long-read sequencing resolves structural variation")
    assert genomes.authors == ("Okafor, C. N.", "Lindqvist, H.", "Ramachandran, S.",
                               "Whitfield, E. J.", "Moreau, L.")
    assert (genomes.version, genomes.announce_type) == (1, "new")
    assert genomes.announced_on == genomes.first_announced_on == date(2026, 9, 23)
    assert (genomes.categories, genomes.primary_category) == (("genomics",), "genomics")
    assert genomes.abs_url == "https://www.biorxiv.org/content/10.1101/2026.09.21.677412v1"
    assert genomes.pdf_url == genomes.abs_url + ".full.pdf"
    assert (genomes.license, genomes.source, genomes.journal_ref) == ("cc_by", "biorxiv", None)
    # The API's line break inside the abstract is a space, as arXiv's wrapped lines are.
    assert "inversions flanked by copy-number-variable genes" in genomes.abstract
    assert "\n" not in genomes.abstract


def test_the_second_page_with_a_string_cursor_is_the_last() -> None:
    second = page(PAGE_2)
    assert (second.cursor, second.count, second.total, second.next_cursor) == (10, 2, 12, None)
    kmers = by_key(second)["doi:10.1101/2026.09.23.677702"]
    # Authors are split on ";": the comma inside "Batista, L., Jr." stays in the name.
    assert kmers.authors == ("Sorensen, A. K.", "Batista, L., Jr.", "Oyelaran, T.")


def test_a_consortium_author_and_a_code_link_survive() -> None:
    atlas = by_key(page(PAGE_1))["doi:10.1101/2026.09.22.677518"]
    assert atlas.authors[-1] == "The Human Cell Atlas Consortium"
    assert atlas.code_url == "https://github.com/scatlasmap/scatlasmap"
    assert atlas.categories == ("bioinformatics",)


def test_a_new_version_of_an_older_preprint_is_a_revision_with_no_first_day() -> None:
    barley = by_key(page(PAGE_1))["doi:10.1101/2026.08.14.670281"]
    assert (barley.version, barley.announce_type) == (2, "replace")
    assert barley.announced_on == date(2026, 9, 24)
    assert barley.first_announced_on is None  # version 1 was posted before this listing
    assert barley.abs_url.endswith("670281v2") and barley.pdf_url.endswith("v2.full.pdf")


def test_a_published_preprint_carries_its_journal_doi() -> None:
    odin = by_key(page(PAGE_1))["doi:10.1101/2026.09.22.677503"]
    assert odin.doi == "10.1101/2026.09.22.677503"  # the preprint's own DOI
    assert odin.journal_ref == "Published: 10.1093/bioinformatics/btac431"
    assert published_doi(odin.journal_ref) == "10.1093/bioinformatics/btac431"
    assert published_doi(None) is None and published_doi("J. Mach. Learn. 3 (2024)") is None


def test_the_preprint_of_an_arxiv_paper_matches_it_by_title_and_first_author() -> None:
    # The fixture the cross-source merge will be tested on: arXiv 2205.06398 in the combined
    # listing, and its bioRxiv twin (same title and abstract, first author Dey).
    from newsletter.ingest.parse import parse_feed

    listing = parse_feed(arxiv_fixture("rss_cs.LG+cs.AI+cs.CL+stat.ML_2026-09-24.xml")
                         .read_bytes())
    arxiv = next(e for e in listing.entries if e.key == "2205.06398")
    twin = by_key(page(PAGE_1))["doi:10.1101/2026.09.22.677503"]
    assert twin.title == arxiv.title == "Outlier Detection for Multi-Network Data"
    assert twin.authors[0].split(",")[0] == arxiv.authors[0].split()[-1] == "Dey"
    assert twin.abstract == arxiv.abstract
    assert published_doi(twin.journal_ref) == arxiv.doi


def test_a_medrxiv_page_links_to_medrxiv() -> None:
    med = page(MEDRXIV, "medrxiv")
    assert len(med.entries) == 4 and med.next_cursor is None
    assert {e.source for e in med.entries} == {"medrxiv"}
    flu = med.entries[0]
    assert flu.abs_url == "https://www.medrxiv.org/content/10.1101/2026.09.21.26336512v1"
    assert flu.pdf_url == "https://www.medrxiv.org/content/10.1101/2026.09.21.26336512v1.full.pdf"
    assert flu.categories == ("epidemiology",)
    # openRxiv's newer DOI prefix is a DOI like any other.
    triage = by_key(med)["doi:10.64898/2026.09.22.26336644"]
    assert triage.categories == ("health informatics",)
    assert [e.categories[0] for e in med.entries][-1] == "psychiatry and clinical psychology"


def test_two_versions_in_one_listing_are_one_revised_paper_that_keeps_its_first_day() -> None:
    v1 = next(r for r in records_of([PAGE_1]) if r["doi"] == "10.1101/2026.09.21.677450")
    v2 = next(r for r in records_of([LATER]) if r["doi"] == "10.1101/2026.09.21.677450")
    both = {"messages": [{"status": "ok", "cursor": 0, "count": 2, "total": "2"}],
            "collection": [v1, v2]}
    [fission] = parse_details(json.dumps(both).encode(), server="biorxiv").entries
    assert (fission.version, fission.announce_type) == (2, "replace")
    assert fission.first_announced_on == date(2026, 9, 23)
    assert fission.announced_on == date(2026, 9, 25)


@pytest.mark.parametrize("body", [
    fixture("details_no_posts_found.json").read_bytes(),
    b'{"messages": [{"status": "no posts found"}]}',  # some answers leave collection out
])
def test_a_day_with_no_postings_is_no_papers_and_no_error(body: bytes) -> None:
    quiet = parse_details(body, server="biorxiv")
    assert quiet.entries == () and quiet.nothing_posted and quiet.next_cursor is None


def test_a_refusal_is_a_clear_error_quoting_the_api() -> None:
    with pytest.raises(Refused) as refused:
        page("details_error_bad_date.json")
    assert str(refused.value) == (
        "bioRxiv API refused the request: 'Both dates must be in yyyy-mm-dd'")
    assert isinstance(refused.value, FeedError)


def _page_1_with(change: Callable[[dict[str, Any]], object]) -> bytes:
    document = json.loads(fixture(PAGE_1).read_text())
    change(document)
    return json.dumps(document).encode()


GARBAGE = {
    "empty body": (b"", "empty answer"),
    "HTML error page": (b"<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head>"
                        b"<body>nginx</body></html>", "an HTML page: '502 Bad Gateway'"),
    "its database down": (fixture("details_connection_refused.txt").read_bytes(),
                          "not the API's JSON: 'Error : (2002) Connection refused'"),
    "truncated JSON": (fixture(PAGE_1).read_bytes()[:700], "malformed JSON at line"),
    "not UTF-8": (b'{"messages": [{"status": "ok\x80"}]}', "not UTF-8"),
    "a JSON list": (b"[1, 2, 3]", "a JSON list, not the object"),
    "no messages": (b'{"collection": []}', "no messages"),
    "messages not a list": (b'{"messages": {"status": "ok"}}', "no messages"),
    "a status that is a number": (b'{"messages": [{"status": 200}]}', "no status"),
    "collection not a list": (_page_1_with(lambda d: d.update(collection={"a": 1})),
                              "collection is a dict"),
    "a record that is a string": (_page_1_with(lambda d: d["collection"].append("x")),
                                  "record 11 is a str"),
    "a record without a DOI": (_page_1_with(lambda d: d["collection"][3].pop("doi")),
                               "record 4 has no DOI"),
    "a version that is a word": (
        _page_1_with(lambda d: d["collection"][0].update(version="v2")), "version 'v2'"),
    "a version that is true": (
        _page_1_with(lambda d: d["collection"][0].update(version=True)), "version True"),
    "a version of 0": (_page_1_with(lambda d: d["collection"][0].update(version="0")),
                       "version '0'"),
    "a date in another format": (
        _page_1_with(lambda d: d["collection"][0].update(date="24/09/2026")), "date '24/09"),
    "a date that is no day": (
        _page_1_with(lambda d: d["collection"][0].update(date="2026-02-30")), "'2026-02-30'"),
    "a total that is a word": (
        _page_1_with(lambda d: d["messages"][0].update(total="many")), "total is 'many'"),
    "a negative cursor": (_page_1_with(lambda d: d["messages"][0].update(cursor=-10)),
                          "cursor is -10"),
    "a title that is a list": (  # text fields are lenient: still a paper, titled as untitled
        _page_1_with(lambda d: d["collection"][0].update(title=["x"])), None),
}


@pytest.mark.parametrize("name", GARBAGE)
def test_garbage_is_a_feed_error_saying_what_came_never_another_exception(name: str) -> None:
    body, said = GARBAGE[name]
    if said is None:
        assert parse_details(body, server="biorxiv").entries[0].title == "(untitled)"
        return
    with pytest.raises(FeedError) as error:
        parse_details(body, server="biorxiv")
    assert said in str(error.value)
    assert str(error.value).startswith("bioRxiv ")


def test_the_parser_names_medrxiv_in_its_errors() -> None:
    with pytest.raises(FeedError, match=r"^medRxiv API refused the request"):
        parse_details(fixture("details_error_bad_date.json").read_bytes(), server="medrxiv")


# --- settings ----------------------------------------------------------------------------


def test_sources_default_to_arxiv_alone() -> None:
    settings = load_settings()
    assert settings.sources == ("arxiv",)
    assert (settings.biorxiv_categories, settings.medrxiv_categories) == ((), ())
    assert (settings.biorxiv_days, settings.biorxiv_api_url) == (2, "https://api.biorxiv.org")


def test_sources_and_categories_are_read_as_operators_write_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SOURCES", " arXiv, bioRxiv,medrxiv,arxiv ")
    monkeypatch.setenv("BIORXIV_CATEGORIES", "cell_biology, Neuroscience ,animal-behavior-and-"
                       "cognition,cell biology")
    monkeypatch.setenv("MEDRXIV_CATEGORIES", "Infectious_Diseases")
    monkeypatch.setenv("BIORXIV_DAYS", "3")
    settings = load_settings()
    assert settings.sources == ("arxiv", "biorxiv", "medrxiv")
    assert settings.biorxiv_categories == ("cell biology", "neuroscience",
                                           "animal behavior and cognition")
    assert settings.medrxiv_categories == ("infectious diseases",)
    assert settings.biorxiv_days == 3


@pytest.mark.parametrize(("variable", "value", "said"), [
    ("SOURCES", "arxiv,pubmed",
     "SOURCES: unknown source 'pubmed': choose among arxiv, biorxiv, medrxiv"),
    ("SOURCES", " , ", "SOURCES: name at least one source"),
    ("BIORXIV_DAYS", "0", "BIORXIV_DAYS: Input should be greater than or equal to 1"),
    ("BIORXIV_DAYS", "15", "BIORXIV_DAYS: Input should be less than or equal to 14"),
    ("BIORXIV_CATEGORIES", "cell biology;neuroscience", "BIORXIV_CATEGORIES: not category names"),
    ("BIORXIV_API_URL", "api.biorxiv.org", "BIORXIV_API_URL: must start with http"),
])
def test_a_bad_source_setting_stops_the_start_naming_it(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, said: str,
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as refused:
        load_settings()
    assert said in str(refused.value)


# --- through the stand-in, into a database ----------------------------------------------


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def quick_fetcher(sleeps: Sleeps | None = None, **options: float) -> Fetcher:
    return Fetcher(timeout=2.0, retries=2, max_wait=5.0,
                   sleep=Sleeps() if sleeps is None else sleeps, **options)  # type: ignore[arg-type]


def served(settings: Settings, api: ScriptedServer, *sources: str, **more: Any) -> Settings:
    return settings.model_copy(update={"sources": sources or ("biorxiv",),
                                       "biorxiv_api_url": api.url, **more})


@pytest.fixture
def today(monkeypatch: pytest.MonkeyPatch) -> Callable[[date], None]:
    """Sets the UTC day the ingest believes it is."""
    def set_day(day: date) -> None:
        monkeypatch.setattr(preprints, "_utc_today", lambda: day)

    set_day(date(2026, 9, 24))
    return set_day


def papers(engine: Engine) -> dict[str, Paper]:
    with Session(engine) as session:
        found = list(session.exec(select(Paper)))
        for paper in found:
            session.expunge(paper)
    return {p.key: p for p in found}


def feed_rows(engine: Engine) -> dict[str, Feed]:
    with Session(engine) as session:
        return {f.url.rsplit("/", 1)[-1]: f for f in session.exec(select(Feed))}


def ingest(engine: Engine, settings: Settings, lines: list[str] | None = None,
           fetcher: Fetcher | None = None) -> IngestSummary:
    return ingest_feeds(engine, settings, fetcher=fetcher or quick_fetcher(),
                        progress=(lines if lines is not None else []).append)


def test_two_pages_are_read_by_cursor_and_each_stored(
    engine: Engine, settings: Settings, today: Callable[[date], None],
) -> None:
    lines: list[str] = []
    with BiorxivAPI(page_size=10) as api:
        summary = ingest(engine, served(settings, api), lines)
    assert [r.path for r in api.requests] == ["/details/biorxiv/2026-09-23/2026-09-24/0",
                                              "/details/biorxiv/2026-09-23/2026-09-24/10"]
    assert "Paperwire/" in api.requests[0].headers["user-agent"]
    [report] = summary.feeds  # the arXiv listing is not in SOURCES: not fetched
    assert (report.label, report.state, report.items, report.added) == ("bioRxiv", "ok", 12, 12)
    assert "bioRxiv page 1 (cursor 0): 10 items, 10 new, 0 updated, 0 unchanged" in lines
    assert "bioRxiv page 2 (cursor 10): 2 items, 2 new, 0 updated, 0 unchanged" in lines
    assert lines[-1] == "bioRxiv: 12 items, 12 new, 0 updated, 0 unchanged"
    stored = papers(engine)
    assert len(stored) == 12 and {p.source for p in stored.values()} == {"biorxiv"}
    genomes = stored["doi:10.1101/2026.09.21.677412"]
    assert (genomes.announced_on, genomes.revised_on) == (date(2026, 9, 23), None)
    assert genomes.authors[0] == "Okafor, C. N." and genomes.doi == "10.1101/2026.09.21.677412"
    status = feed_rows(engine)["biorxiv"]
    assert (status.label, status.kind, status.state, status.http_status) == (
        "bioRxiv", "biorxiv-api", "ok", 200)
    assert (status.items_seen, status.papers_added, status.announced_on) == (
        12, 12, date(2026, 9, 24))


def test_the_stand_in_serves_the_fixture_pages() -> None:
    import httpx

    with BiorxivAPI(page_size=10) as api:
        served_pages = [httpx.get(f"{api.url}/details/biorxiv/2026-09-23/2026-09-24/{cursor}")
                        for cursor in (0, 10)]
    for reply, name in zip(served_pages, (PAGE_1, PAGE_2), strict=True):
        assert json.loads(reply.content) == json.loads(fixture(name).read_text())


def test_pages_are_fetched_a_polite_pause_apart(
    engine: Engine, settings: Settings, today: Callable[[date], None],
) -> None:
    sleeps = Sleeps()
    made: list[float] = []

    def fetcher_of(config: Settings, *, pause: float) -> Fetcher:
        made.append(pause)
        return quick_fetcher(sleeps, pause=pause)

    with BiorxivAPI(page_size=10) as api, patch.object(preprints, "make_fetcher", fetcher_of):
        config = served(settings, api, arxiv_api_delay=2.5)
        [report] = preprints.ingest_preprint_servers(engine, config)
    assert report.items == 12 and made == [2.5]
    assert len(sleeps) == 1 and 2.0 < sleeps[0] <= 2.5  # between the two pages, not before


def test_rereading_yesterday_changes_nothing_and_a_new_version_revises_its_paper(
    engine: Engine, settings: Settings, today: Callable[[date], None],
) -> None:
    with BiorxivAPI(page_size=10) as api:
        ingest(engine, served(settings, api))
        first = papers(engine)[FISSION]
        today(date(2026, 9, 25))
        lines: list[str] = []
        summary = ingest(engine, served(settings, api), lines)
    assert api.requests[-1].path == "/details/biorxiv/2026-09-24/2026-09-25/0"
    # The 24th's eight records again, version 2 of a preprint of the 23rd, one new preprint.
    [report] = summary.feeds
    assert (report.items, report.added, report.updated, report.unchanged) == (10, 1, 1, 8)
    stored = papers(engine)
    assert len(stored) == 13
    revised = stored[FISSION]
    assert revised.id == first.id and revised.version == 2
    assert revised.title.startswith("Mitochondrial fission sites are licensed by")
    assert "Lambert, D." in revised.authors
    assert revised.announced_on == date(2026, 9, 23)  # still the paper of the 23rd ...
    assert revised.revised_on == date(2026, 9, 25)  # ... revised on the 25th
    assert revised.announce_type == "new"  # never presented as new again
    assert revised.abs_url == "https://www.biorxiv.org/content/10.1101/2026.09.21.677450v2"
    assert len(feed_rows(engine)) == 1


def test_categories_are_asked_of_the_api_and_only_they_are_kept(
    engine: Engine, settings: Settings, today: Callable[[date], None],
) -> None:
    with BiorxivAPI(page_size=10) as api:
        config = served(settings, api, biorxiv_categories=("cell biology", "neuroscience"))
        [report] = ingest(engine, config).feeds
    assert [r.query["category"] for r in api.requests] == [["cell_biology"], ["neuroscience"]]
    assert report.label == "bioRxiv cell biology+neuroscience"
    stored = papers(engine).values()
    assert sorted(p.categories[0] for p in stored) == ["cell biology"] * 3 + ["neuroscience"] * 3
    assert report.items == report.added == 6


def test_what_the_api_sends_outside_the_categories_asked_for_stays_out(
    engine: Engine, settings: Settings, today: Callable[[date], None],
) -> None:
    page_1 = fixture(PAGE_1).read_bytes()
    # A server that ignores ?category= and sends the whole day, all on one page.
    whole = json.loads(page_1)
    whole["messages"][0].update(count=10, total="10")
    with ScriptedServer(lambda r: Reply(200, json.dumps(whole).encode())) as api:
        config = served(settings, api, biorxiv_categories=("genomics",))
        [report] = ingest(engine, config).feeds
    assert {p.categories[0] for p in papers(engine).values()} == {"genomics"}
    assert report.items == 2


def test_an_empty_day_is_a_good_fetch_with_nothing_in_it(
    engine: Engine, settings: Settings, today: Callable[[date], None],
) -> None:
    today(date(2026, 9, 30))
    lines: list[str] = []
    with BiorxivAPI() as api:
        summary = ingest(engine, served(settings, api), lines)
    [report] = summary.feeds
    assert (report.state, report.items, report.error, summary.errors) == ("ok", 0, None, 0)
    assert any("0 items" in line and "(nothing posted)" in line for line in lines)
    status = feed_rows(engine)["biorxiv"]
    assert (status.state, status.last_error, status.items_seen) == ("ok", None, 0)
    assert papers(engine) == {}


def test_a_server_that_is_down_is_a_clear_error_for_each_preprint_server(
    engine: Engine, settings: Settings, today: Callable[[date], None],
) -> None:
    with BiorxivAPI(down=True) as api:
        summary = ingest(engine, served(settings, api, "biorxiv", "medrxiv"))
    assert [(r.label, r.state, r.http_status) for r in summary.feeds] == [
        ("bioRxiv", "error", 503), ("medRxiv", "error", 503)]
    assert summary.errors == 2
    status = feed_rows(engine)["medrxiv"]
    assert status.state == "error"
    assert status.last_error.startswith("page 1 (cursor 0): ")
    assert "/details/medrxiv/2026-09-23/2026-09-24/0: HTTP 503 after 3 attempts" in (
        status.last_error)
    assert "bioRxiv: ERROR page 1 (cursor 0)" in summary.feeds[0].line()


def test_a_failure_on_page_two_keeps_page_one_and_the_next_run_completes_the_day(
    engine: Engine, settings: Settings, today: Callable[[date], None],
) -> None:
    with BiorxivAPI(page_size=10, fail_from_cursor=10) as failing:
        [report] = ingest(engine, served(settings, failing)).feeds
    assert report.state == "error" and report.items == 10 and report.added == 10
    assert report.error.startswith("page 2 (cursor 10): ")
    assert report.error.endswith("HTTP 503 after 3 attempts; the 10 items of the 1 page "
                                 "before it are stored")
    assert len(papers(engine)) == 10
    assert feed_rows(engine)["biorxiv"].state == "error"

    with BiorxivAPI(page_size=10) as healthy:
        [again] = ingest(engine, served(settings, healthy)).feeds
    assert (again.state, again.added, again.unchanged) == ("ok", 2, 10)
    assert len(papers(engine)) == 12
    status = feed_rows(engine)["biorxiv"]
    assert (status.state, status.last_error) == ("ok", None)


def test_a_refused_request_is_recorded_in_the_apis_words(
    engine: Engine, settings: Settings, today: Callable[[date], None],
) -> None:
    refusal = fixture("details_error_bad_date.json").read_bytes()
    with ScriptedServer(lambda r: Reply(200, refusal)) as api:
        [report] = ingest(engine, served(settings, api)).feeds
    assert report.state == "error"
    assert report.error == ("page 1 (cursor 0): bioRxiv API refused the request: "
                            "'Both dates must be in yyyy-mm-dd'")
    assert feed_rows(engine)["biorxiv"].last_error == report.error


def test_an_http_error_page_says_its_status_and_a_worded_refusal_its_words(
    engine: Engine, settings: Settings, today: Callable[[date], None],
) -> None:
    refusal = fixture("details_error_bad_date.json").read_bytes()

    def respond(request: Request) -> Reply:
        if "medrxiv" in request.path:
            return Reply(400, refusal)
        return Reply(404, b"<html><title>Not Found</title></html>")

    with ScriptedServer(respond) as api:
        bio, med = ingest(engine, served(settings, api, "biorxiv", "medrxiv")).feeds
    assert bio.error == f"page 1 (cursor 0): HTTP 404 from {api.url}/details/biorxiv/" \
                        "2026-09-23/2026-09-24/0"
    assert med.error == ("page 1 (cursor 0): HTTP 400: medRxiv API refused the request: "
                         "'Both dates must be in yyyy-mm-dd'")
    assert (bio.http_status, med.http_status) == (404, 400)
    assert len(api.requests) == 2  # a 4xx is never retried


def test_arxiv_biorxiv_and_medrxiv_side_by_side(
    engine: Engine, settings: Settings, today: Callable[[date], None],
) -> None:
    listing = arxiv_fixture("rss_cs.LG+cs.AI+cs.CL+stat.ML_2026-09-24.xml").read_bytes()
    with BiorxivAPI(page_size=10) as api, ScriptedServer(lambda r: Reply(200, listing)) as rss:
        config = served(settings, api, "arxiv", "biorxiv", "medrxiv",
                        arxiv_rss_url=f"{rss.url}/rss/")
        summary = ingest(engine, config)
    assert [(r.label.split()[0], r.state, r.items) for r in summary.feeds] == [
        ("arXiv", "ok", 4), ("bioRxiv", "ok", 12), ("medRxiv", "ok", 4)]
    assert summary.line().startswith("ingest: 3 feeds, 20 items;")
    sources = {p.source for p in papers(engine).values()}
    assert sources == {"arxiv", "biorxiv", "medrxiv"}
    assert api.requests[-1].path == "/details/medrxiv/2026-09-23/2026-09-24/0"


def test_newsletter_ingest_shows_each_page_and_server(
    database_url: str, today: Callable[[date], None],
) -> None:
    with BiorxivAPI(page_size=10) as api:
        result = CliRunner().invoke(main, ["ingest"], env={
            "DATABASE_URL": database_url, "SOURCES": "biorxiv,medrxiv",
            "BIORXIV_API_URL": api.url, "ARXIV_API_DELAY": "0", "HTTP_RETRIES": "0"})
    assert result.exit_code == 0, result.output
    assert "fetching bioRxiv 2026-09-23..2026-09-24 ..." in result.stderr
    assert "bioRxiv page 2 (cursor 10): 2 items, 2 new, 0 updated, 0 unchanged" in result.stderr
    assert "medRxiv: 4 items, 4 new, 0 updated, 0 unchanged" in result.stderr
    assert result.stdout.strip() == (
        "ingest: 2 feeds, 16 items; papers 16 new, 0 updated, 0 unchanged; 0 errors")

