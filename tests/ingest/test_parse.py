"""Parsing every kind of feed document arXiv serves, without I/O."""

from __future__ import annotations

from datetime import date

import pytest

from newsletter.ingest.paper import find_code_url
from newsletter.ingest.parse import FeedError, parse_feed
from newsletter.ingest.text import split_authors
from tests.conftest import LOCAL_FIXTURES, arxiv_fixture


def parse(name: str, **kw: str):
    path = LOCAL_FIXTURES / name if (LOCAL_FIXTURES / name).exists() else arxiv_fixture(name)
    return parse_feed(path.read_bytes(), **kw)


def by_key(feed):
    return {e.key: e for e in feed.entries}


def test_single_category_rss_keeps_every_author_latex_and_entities() -> None:
    feed = parse("rss_cs.AI_2026-04-27.xml")
    assert feed.kind == "arxiv-rss"
    assert feed.announced_on == date(2026, 4, 27)
    assert [e.key for e in feed.entries] == ["2604.21935", "2604.21936", "2604.21937"]
    agent = by_key(feed)["2604.21936"]
    assert len(agent.authors) == 18
    assert agent.authors[:2] == ("Lianrui Zuo", "Yihao Liu")
    assert agent.categories == ("cs.AI", "cs.CV", "cs.MA")
    assert agent.primary_category == "cs.AI"
    assert r"\textbf{adaptability}" in agent.abstract
    assert agent.abstract.startswith("Medical imaging research")
    assert "Announce Type" not in agent.abstract
    assert agent.version == 1 and agent.announce_type == "new"
    assert agent.abs_url == "https://arxiv.org/abs/2604.21936"
    assert agent.pdf_url == "https://arxiv.org/pdf/2604.21936v1"
    assert agent.license == "http://arxiv.org/licenses/nonexclusive-distrib/1.0/"


def test_entities_are_decoded_once_and_five_categories_survive() -> None:
    feed = parse("rss_cs.LG_2026-04-27.xml")
    focus = by_key(feed)["2604.21952"]
    assert "visual resolution & stride" in focus.abstract
    assert "&amp;" not in focus.abstract
    assert focus.categories == ("cs.LG", "cs.AI", "cs.AR", "cs.NE", "cs.RO")
    assert "$800 per sample" in by_key(feed)["2604.21953"].abstract


def test_single_name_author_and_double_spaces_split_cleanly() -> None:
    feed = parse("rss_cs.CL_2026-04-27.xml")
    assert by_key(feed)["2604.22002"].authors == (
        "Anamta Khan", "Ratna Kandala", "Deepti", "Sheza Munir", "Joyojeet Pal",
    )


def test_combined_listing_has_new_cross_and_replace() -> None:
    feed = parse("rss_cs.LG+cs.AI+cs.CL+stat.ML_2026-09-24.xml")
    papers = by_key(feed)
    assert {k: (e.announce_type, e.version) for k, e in papers.items()} == {
        "2609.26811": ("new", 1),
        "2609.26820": ("new", 1),
        "2205.06398": ("cross", 2),
        "2009.13987": ("replace", 3),
    }
    assert papers["2205.06398"].doi == "10.1093/bioinformatics/btac431"
    assert papers["2205.06398"].categories == ("stat.ME", "stat.AP", "stat.ML")
    assert papers["2009.13987"].pdf_url == "https://arxiv.org/pdf/2009.13987v3"
    assert all(e.announced_on == date(2026, 9, 24) for e in feed.entries)


def test_api_response_uses_primary_category_comment_and_separate_authors() -> None:
    feed = parse("api_query_cs.LG_OR_cs.AI_20.xml")
    assert feed.kind == "arxiv-api"
    assert len(feed.entries) == 20
    assert feed.total_results == 364218
    tide = by_key(feed)["2604.26951"]
    assert tide.primary_category == "cs.CL"
    assert tide.authors == ("Gongbo Zhang", "Wen Wang", "Ye Tian", "Li Yuan")
    assert tide.comment == "15 pages, 3 figures. Code: https://github.com/PKU-YuanGroup/TIDE"
    assert tide.code_url == "https://github.com/PKU-YuanGroup/TIDE"
    assert tide.pdf_url == "https://arxiv.org/pdf/2604.26951v1"
    assert tide.announced_on == tide.first_announced_on == date(2026, 4, 29)
    squint = by_key(feed)["2604.26926"]
    assert squint.title == r"A Note on How to Remove the $\ln\ln T$ Term from the Squint Bound"
    assert "Pál" in squint.abstract
    assert any("(p < 0.0001" in e.abstract for e in feed.entries)
    assert max(len(e.authors) for e in feed.entries) == 13


def test_api_error_entry_is_an_error_not_a_paper() -> None:
    with pytest.raises(FeedError, match="incorrect id format for abc"):
        parse("api_error_400.xml")


def test_api_with_no_results_is_empty_but_not_a_missing_announcement() -> None:
    feed = parse("api_empty.xml")
    assert feed.entries == () and feed.total_results == 0
    assert not feed.no_announcement


def test_rss_feed_error_names_the_reason() -> None:
    with pytest.raises(FeedError, match=r"Feed error for query.*cs\.XX"):
        parse("rss_feed_error_400.xml")


def test_weekend_listing_is_no_announcement() -> None:
    feed = parse("rss_weekend_2026-09-26.xml")
    assert feed.entries == ()
    assert feed.no_announcement
    assert feed.announced_on == date(2026, 9, 26)


def test_atom_variant_reads_like_the_rss_listing() -> None:
    atom = by_key(parse("atom_cs.LG_2026-04-27.xml"))
    rss = by_key(parse("rss_cs.LG_2026-04-27.xml"))
    assert atom.keys() == rss.keys()
    for key, entry in rss.items():
        assert atom[key].title == entry.title
        assert atom[key].abstract == entry.abstract
        assert atom[key].authors == entry.authors
        assert atom[key].categories == entry.categories
        assert atom[key].version == entry.version


def test_pre_2024_rss1_listing() -> None:
    feed = parse("rss1_cs.LG_2023-03-15.xml")
    assert feed.kind == "arxiv-rss1"
    papers = by_key(feed)
    moe = papers["2303.08001"]
    assert moe.title == r"Sparse Mixtures of Experts at $\mathcal{O}(1)$ Cost"
    assert moe.abstract.startswith(r"We route each token to one expert & show that \textbf{load")
    assert "$k < n$" in moe.abstract
    assert "<p>" not in moe.abstract
    assert moe.authors == ("María García", "John Smith, Jr.")
    assert moe.code_url == "https://github.com/example-lab/sparse-moe"
    assert papers["2303.08002"].announce_type == "cross"
    assert (papers["2210.00101"].announce_type, papers["2210.00101"].version) == ("replace", 3)
    old = papers["hep-th/9901001"]
    assert old.abs_url == "https://arxiv.org/abs/hep-th/9901001"
    assert old.version == 2


def test_other_sources_get_their_own_keys_and_plain_text() -> None:
    feed = parse("lab_blog.xml", source="lab")
    assert feed.kind == "source"
    first, second = feed.entries
    assert first.key.startswith("lab:") and first.source == "lab"
    assert first.title == "Our new benchmark for tool use"
    assert first.abstract.startswith("We release ToolBench-2")
    assert first.authors == ("Ada Example", "Bo Sample")
    assert first.code_url == "https://github.com/example-lab/toolbench"
    # A lab's post that links to arXiv does not pose as the arXiv paper itself (its own
    # key), but names it: the arXiv id it links to makes it the same work.
    assert second.key.startswith("lab:") and second.arxiv_id == "2609.26811"
    assert first.arxiv_id is None


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty document"),
        (b"<html><body><h1>502 Bad Gateway</h1></body></html>", "not an RSS or Atom|malformed"),
        (b"<rss version='2.0'><channel><title>x</title><item><title>a", "malformed"),
    ],
)
def test_documents_that_are_not_feeds_are_errors(content: bytes, message: str) -> None:
    with pytest.raises(FeedError, match=message):
        parse_feed(content)


def test_truncated_listing_is_an_error() -> None:
    with pytest.raises(FeedError, match="malformed feed at line"):
        parse("malformed.xml")


COMBINED = "rss_cs.LG+cs.AI+cs.CL+stat.ML_2026-09-24.xml"


@pytest.mark.parametrize(
    ("lead", "flaw"),
    [
        (b"\n\n  ", "whitespace"),
        (b"\xef\xbb\xbf\r\n", "a byte-order mark and whitespace"),
        (b"\n\xef\xbb\xbf", "a byte-order mark and whitespace"),
    ],
)
def test_whitespace_or_a_bom_before_the_declaration_is_repaired_and_reported(
    lead: bytes, flaw: str
) -> None:
    clean = parse(COMBINED)
    repaired = parse_feed(lead + arxiv_fixture(COMBINED).read_bytes())
    assert repaired.entries == clean.entries
    assert repaired.warnings == (
        f"{flaw} before the XML declaration ({len(lead)} bytes) ignored",)
    assert clean.warnings == ()


def test_a_lone_leading_bom_is_valid_xml_and_no_warning() -> None:
    feed = parse_feed(b"\xef\xbb\xbf" + arxiv_fixture(COMBINED).read_bytes())
    assert len(feed.entries) == 4 and feed.warnings == ()


@pytest.mark.parametrize("lead", [b"x\n", b"<!-- proxy -->\n", b"\n"])
def test_a_repaired_start_does_not_excuse_a_broken_or_prefixed_document(lead: bytes) -> None:
    truncated = (LOCAL_FIXTURES / "malformed.xml").read_bytes()
    with pytest.raises(FeedError, match="malformed"):
        parse_feed(lead + truncated)
    if lead.strip():
        with pytest.raises(FeedError, match="malformed"):
            parse_feed(lead + arxiv_fixture(COMBINED).read_bytes())


def test_an_item_without_an_arxiv_id_is_an_error_not_a_guess() -> None:
    doc = (LOCAL_FIXTURES / "rss_weekend_2026-09-26.xml").read_text().replace(
        "</channel>",
        "<item><title>x</title><guid>oai:arXiv.org:2609.00001v1</guid>"
        "<description>arXiv:2609.00001v1 Announce Type: new \nAbstract: fine</description>"
        "</item><item><title>broken</title><description>no id here</description></item>"
        "</channel>",
    )
    with pytest.raises(FeedError, match="broken"):
        parse_feed(doc.encode())


def test_a_listing_that_names_a_paper_twice_keeps_one_with_both_categories() -> None:
    doc = arxiv_fixture("rss_cs.CL_2026-04-27.xml").read_text()
    start, end = doc.index("<item>"), doc.index("</item>") + len("</item>")
    twin = doc[start:end].replace("<category>cs.CL</category>", "<category>cs.HC</category>")
    feed = parse_feed(doc.replace("</channel>", twin + "</channel>").encode())
    assert len(feed.entries) == 3
    assert by_key(feed)["2604.22002"].categories == ("cs.CL", "cs.HC")


def test_split_authors() -> None:
    assert split_authors("A. One, B. Two,  C. Three, Jr., D") == (
        "A. One", "B. Two", "C. Three, Jr.", "D",
    )
    assert split_authors("") == ()


@pytest.mark.parametrize(
    ("text", "url"),
    [
        ("Code: https://github.com/org/repo.", "https://github.com/org/repo"),
        ("(see https://gitlab.com/a/b-c)", "https://gitlab.com/a/b-c"),
        ("at https://www.github.com/x/y.git, and", "https://www.github.com/x/y"),
        ("https://github.com/org only", None),
        ("https://example.org/org/repo", None),
    ],
)
def test_code_links(text: str, url: str | None) -> None:
    assert find_code_url(text) == url
