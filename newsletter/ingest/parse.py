"""Feed documents in, paper entries out. Pure: bytes to values, no I/O.

Understands the arXiv RSS 2.0 listing (single and combined categories), its Atom
variant, the pre-2024 RSS 1.0 listing, arXiv API Atom responses, and any other RSS or
Atom feed. Errors arXiv reports inside a document ("Feed error for query", the API's
"Error" entry) and malformed documents raise `FeedError`: never silently zero papers.
"""

from __future__ import annotations

import hashlib
import html
import re
from dataclasses import dataclass
from datetime import date, datetime
from email.utils import parsedate_to_datetime
from functools import lru_cache
from typing import Any

import feedparser

from newsletter.ingest.identity import arxiv_id_in
from newsletter.ingest.paper import PaperEntry
from newsletter.ingest.text import clean, html_to_text, split_authors

# Version 1: arXiv's new listing. The kinds a document can be.
KINDS = ("arxiv-rss", "arxiv-atom", "arxiv-rss1", "arxiv-api", "source")


class FeedError(Exception):
    """The document is not a usable feed, or arXiv says the request was wrong."""


@dataclass(frozen=True)
class ParsedFeed:
    kind: str
    title: str
    announced_on: date | None
    entries: tuple[PaperEntry, ...]
    # An arXiv listing with no items: weekends and holidays, not an error.
    no_announcement: bool = False
    total_results: int | None = None  # the API's opensearch:totalResults
    # Flaws we repaired without losing anything, for the feed's status.
    warnings: tuple[str, ...] = ()


_ANNOUNCE = re.compile(
    r"^\s*arXiv:(?P<id>\S+?)v(?P<version>\d+)\s+Announce Type:\s*(?P<type>[\w-]+)\s*"
    r"(?:Abstract:\s*)?(?P<abstract>.*)$",
    re.DOTALL,
)
_OAI_ID = re.compile(r"^oai:arXiv\.org:(?P<id>.+?)v(?P<version>\d+)$")
_ABS_ID = re.compile(r"arxiv\.org/abs/(?P<id>.+?)(?:v(?P<version>\d+))?/?$")
_RSS1_TITLE = re.compile(
    r"^(?P<title>.*?)\.?\s*\(arXiv:(?P<id>\S+?)v(?P<version>\d+)\s+\[(?P<cat>[^\]]+)\]"
    r"(?:\s+(?P<flag>UPDATED|CROSS LISTED))?\)\s*$",
    re.DOTALL,
)
_RSS1_TYPES = {None: "new", "UPDATED": "replace", "CROSS LISTED": "cross"}



def _text(entry: Any, field: str) -> str:
    """A field as plain text, whatever content type feedparser decided it had."""
    detail = entry.get(f"{field}_detail")
    value = entry.get(field, "") or ""
    if detail is not None and detail.get("type") in ("text/html", "application/xhtml+xml"):
        value = html_to_text(value)
    return value


@lru_cache(maxsize=256)
def _date_of(raw: str | None) -> date | None:
    """The calendar date a feed's timestamp names, in the feed's own time zone.

    arXiv dates its listings at midnight New York time; converting to UTC first would
    not change the day, but a source in another zone might, so keep the local day.
    """
    if not raw:
        return None
    raw = raw.strip()
    try:
        return parsedate_to_datetime(raw).date()
    except (TypeError, ValueError, IndexError):
        pass
    try:
        return datetime.fromisoformat(raw.replace("Z", "+00:00")).date()
    except ValueError:
        return None


def _check_well_formed(parsed: Any) -> None:
    if not parsed.get("bozo"):
        return
    exc = parsed.get("bozo_exception")
    # An encoding the server mislabelled is harmless: feedparser recovered the text.
    if isinstance(exc, feedparser.CharacterEncodingOverride | feedparser.NonXMLContentType):
        return
    where = ""
    if hasattr(exc, "getLineNumber"):
        where = f" at line {exc.getLineNumber()}, column {exc.getColumnNumber()}"
    raise FeedError(f"malformed feed{where}: {getattr(exc, 'getMessage', lambda: exc)()}")


def _arxiv_links(arxiv_id: str, version: int | None) -> tuple[str, str]:
    suffix = f"v{version}" if version else ""
    return f"https://arxiv.org/abs/{arxiv_id}", f"https://arxiv.org/pdf/{arxiv_id}{suffix}"


def _categories(entry: Any) -> tuple[str, ...]:
    seen: list[str] = []
    for tag in entry.get("tags", []) or []:
        term = (tag.get("term") or "").strip()
        if term and term not in seen:
            seen.append(term)
    return tuple(seen)


def _authors(entry: Any) -> tuple[str, ...]:
    people = [html_to_text(a.get("name", "")) for a in entry.get("authors", []) or []]
    people = [p for p in people if p.strip()]
    if len(people) > 1:
        return tuple(clean(p) for p in people)
    return split_authors(html_to_text(entry.get("author", "") or (people[0] if people else "")))


def _announced(entry: Any, feed_day: date | None) -> date | None:
    return _date_of(entry.get("published")) or feed_day


def _arxiv_listing_entry(entry: Any, feed_day: date | None) -> PaperEntry:
    """An item of rss.arxiv.org, RSS 2.0 or Atom: the description starts with the id.

    Its text is plain text (with raw LaTeX) even where the feed calls it HTML, so it is
    kept as written: "$a<b$" must survive, and escaping happens where it is shown.
    """
    body = entry.get("summary", "") or ""
    match = _ANNOUNCE.match(body)
    guid = _OAI_ID.match(entry.get("id", "") or "")
    if not match and not guid:
        raise FeedError(f"item {entry.get('title', '?')!r} has no arXiv id")
    arxiv_id = match.group("id") if match else guid.group("id")  # type: ignore[union-attr]
    version = int(match.group("version") if match else guid.group("version"))  # type: ignore[union-attr]
    announce_type = (
        entry.get("arxiv_announce_type") or (match.group("type") if match else "new")
    ).strip()
    abstract = match.group("abstract") if match else body
    categories = _categories(entry)
    abs_url, pdf_url = _arxiv_links(arxiv_id, version)
    return PaperEntry(
        key=arxiv_id,
        arxiv_id=arxiv_id,
        version=version,
        title=clean(entry.get("title", "")),
        abstract=clean(abstract),
        authors=_authors(entry),
        categories=categories,
        primary_category=categories[0] if categories else None,
        announce_type=announce_type,
        announced_on=_announced(entry, feed_day),
        abs_url=abs_url,
        pdf_url=pdf_url,
        doi=clean(entry.get("arxiv_doi")) or None,
        journal_ref=clean(entry.get("arxiv_journal_reference")) or None,
        license=clean(entry.get("rights")) or None,
    )


def _rss1_entry(entry: Any, feed_day: date | None) -> PaperEntry:
    """An item of the pre-2024 listing: `Title. (arXiv:ID vN [cat] UPDATED)`."""
    raw_title = clean(_text(entry, "title"))
    match = _RSS1_TITLE.match(raw_title)
    if not match:
        raise FeedError(f"item {raw_title!r} has no arXiv id in its title")
    arxiv_id, version = match.group("id"), int(match.group("version"))
    abs_url, pdf_url = _arxiv_links(arxiv_id, version)
    category = match.group("cat").strip()
    return PaperEntry(
        key=arxiv_id,
        arxiv_id=arxiv_id,
        version=version,
        title=clean(match.group("title")),
        abstract=clean(html_to_text(entry.get("summary", "") or "")),
        authors=split_authors(html_to_text(entry.get("author", "") or "")),
        categories=(category,),
        primary_category=category,
        announce_type=_RSS1_TYPES[match.group("flag")],
        announced_on=feed_day,
        abs_url=abs_url,
        pdf_url=pdf_url,
    )


def _api_entry(entry: Any) -> PaperEntry:
    """An entry of export.arxiv.org/api/query: a versioned abs URL as its id."""
    match = _ABS_ID.search(entry.get("id", "") or "")
    if not match:
        raise FeedError(f"API entry {entry.get('id')!r} is not an arXiv abs URL")
    arxiv_id = match.group("id")
    version = int(match.group("version") or 1)
    abs_url, pdf_url = _arxiv_links(arxiv_id, version)
    for link in entry.get("links", []) or []:
        if link.get("title") == "pdf" and link.get("href"):
            pdf_url = link["href"].replace("http://", "https://", 1)
    categories = _categories(entry)
    primary = (entry.get("arxiv_primary_category") or {}).get("term") or (
        categories[0] if categories else None
    )
    if primary and primary not in categories:
        categories = (primary, *categories)
    published = _date_of(entry.get("published"))
    updated = _date_of(entry.get("updated"))
    return PaperEntry(
        key=arxiv_id,
        arxiv_id=arxiv_id,
        version=version,
        title=clean(_text(entry, "title")),
        abstract=clean(_text(entry, "summary")),
        authors=_authors(entry),
        categories=categories,
        primary_category=primary,
        announce_type="new" if version == 1 else "replace",
        announced_on=published if version == 1 else (updated or published),
        first_announced_on=published,
        abs_url=abs_url,
        pdf_url=pdf_url,
        doi=clean(entry.get("arxiv_doi")) or None,
        journal_ref=clean(entry.get("arxiv_journal_ref")) or None,
        comment=clean(entry.get("arxiv_comment")) or None,
    )


def _source_entry(entry: Any, source: str, feed_day: date | None) -> PaperEntry:
    """An item of any other feed: a lab's publications, a blog."""
    ident = entry.get("id") or entry.get("link") or entry.get("title")
    if not ident:
        raise FeedError("item with neither id, link nor title")
    link = entry.get("link")
    # Keyed by source and item, even when it links to arXiv: a lab's blurb must never
    # overwrite the title and abstract of the arXiv paper it points to. The arXiv id it
    # links to makes it the same work as that paper (same_work.py).
    key = f"{source}:{hashlib.sha1(ident.encode()).hexdigest()[:16]}"
    abstract = clean(html_to_text(entry.get("summary", "") or ""))
    return PaperEntry(
        key=key,
        arxiv_id=arxiv_id_in(link),
        version=1,
        title=clean(_text(entry, "title")) or "(untitled)",
        abstract=abstract,
        authors=_authors(entry),
        categories=_categories(entry),
        primary_category=None,
        announce_type="new",
        announced_on=_date_of(entry.get("published") or entry.get("updated")) or feed_day,
        abs_url=link,
        pdf_url=None,
        license=clean(entry.get("rights")) or None,
        source=source,
    )


def _kind(parsed: Any) -> str:
    version = parsed.get("version", "")
    entries = parsed.get("entries", [])
    feed = parsed.get("feed", {})
    if version == "atom10" and (
        "opensearch_totalresults" in feed or any(_ABS_ID.search(e.get("id", "")) for e in entries)
    ):
        return "arxiv-api"
    if any(_OAI_ID.match(e.get("id", "") or "") for e in entries):
        return "arxiv-atom" if version.startswith("atom") else "arxiv-rss"
    if version in ("rss10", "rss090") and any(
        _RSS1_TITLE.match(clean(e.get("title", ""))) for e in entries
    ):
        return "arxiv-rss1"
    # An empty listing has no items to recognize it by: its address or title says.
    marker = " ".join(str(feed.get(k, "")) for k in ("link", "title", "id"))
    if not entries and "arxiv.org" in marker and "api" not in marker:
        return "arxiv-rss"
    return "source"


def _raise_reported_errors(parsed: Any) -> None:
    title = clean(parsed.get("feed", {}).get("title", ""))
    if title.lower().startswith("feed error"):
        reason = clean(parsed["feed"].get("description") or parsed["feed"].get("subtitle"))
        raise FeedError(f"arXiv answered {title!r}" + (f": {reason}" if reason else ""))
    for entry in parsed.get("entries", []):
        if clean(entry.get("title")) == "Error" and "api/errors" in (entry.get("id") or ""):
            raise FeedError(f"arXiv API error: {clean(entry.get('summary')) or entry['id']}")


_UTF8_BOM = b"\xef\xbb\xbf"
_XML_SPACE = b" \t\r\n"


def _before_declaration(content: bytes) -> tuple[bytes, str | None]:
    """Drop whitespace or byte-order marks in front of `<?xml`, saying what was dropped.

    XML allows nothing before the declaration but one BOM, yet lab sites and CMS templates
    emit a blank line or a stray BOM there; refusing the whole feed for it would lose every
    paper in it. Anything else in front (text, a truncated tag) is still malformed.
    """
    start = 0
    while True:
        if content.startswith(_UTF8_BOM, start):
            start += len(_UTF8_BOM)
        elif start < len(content) and content[start] in _XML_SPACE:
            start += 1
        else:
            break
    lead = content[:start]
    if lead in (b"", _UTF8_BOM) or not content.startswith(b"<?xml", start):
        return content, None
    # `lead` holds only BOMs and whitespace: whatever is not a BOM is whitespace.
    found = [name for name, present in (("a byte-order mark", _UTF8_BOM in lead),
                                        ("whitespace", bool(lead.replace(_UTF8_BOM, b""))))
             if present]
    what = " and ".join(found)
    return content[start:], f"{what} before the XML declaration ({len(lead)} bytes) ignored"


def parse_feed(content: bytes, *, source: str = "arxiv") -> ParsedFeed:
    """Parse one document. `source` labels the papers of a non-arXiv feed."""
    if not content or not content.strip():
        raise FeedError("empty document")
    content, repaired = _before_declaration(content)
    parsed = feedparser.parse(content, sanitize_html=False, resolve_relative_uris=False)
    _check_well_formed(parsed)
    _raise_reported_errors(parsed)
    if not parsed.get("version"):
        raise FeedError("not an RSS or Atom document")

    feed = parsed.get("feed", {})
    feed_day = _date_of(feed.get("published") or feed.get("updated") or feed.get("dc_date"))
    kind = _kind(parsed)
    raw_entries = parsed.get("entries", [])
    if kind in ("arxiv-rss", "arxiv-atom"):
        entries = [_arxiv_listing_entry(e, feed_day) for e in raw_entries]
    elif kind == "arxiv-rss1":
        entries = [_rss1_entry(e, feed_day) for e in raw_entries]
    elif kind == "arxiv-api":
        entries = [_api_entry(e) for e in raw_entries]
    else:
        entries = [_source_entry(e, source, feed_day) for e in raw_entries]

    total = feed.get("opensearch_totalresults")
    return ParsedFeed(
        kind=kind,
        title=clean(html.unescape(feed.get("title", ""))),
        announced_on=feed_day,
        entries=tuple(_dedupe(entries)),
        no_announcement=kind.startswith("arxiv-rss") or kind == "arxiv-atom"
        if not entries
        else False,
        total_results=int(total) if total and str(total).isdigit() else None,
        warnings=(repaired,) if repaired else (),
    )


def _dedupe(entries: list[PaperEntry]) -> list[PaperEntry]:
    """A combined listing can name a paper twice; keep one, categories merged."""
    by_key: dict[str, PaperEntry] = {}
    for entry in entries:
        seen = by_key.get(entry.key)
        if seen is None or entry.version > seen.version:
            if seen is not None:
                entry = _with_categories(entry, seen.categories)
            by_key[entry.key] = entry
        else:
            by_key[entry.key] = _with_categories(seen, entry.categories)
    return list(by_key.values())


def _with_categories(entry: PaperEntry, more: tuple[str, ...]) -> PaperEntry:
    from dataclasses import replace

    merged = entry.categories + tuple(c for c in more if c not in entry.categories)
    return replace(entry, categories=merged)
