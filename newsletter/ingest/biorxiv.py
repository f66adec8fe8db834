"""A page of bioRxiv's or medRxiv's "details" API in, paper entries out. Pure: bytes to values.

The API (documented at https://api.biorxiv.org/, this endpoint on its help page
https://api.biorxiv.org/details/medrxiv/help) answers
`https://api.biorxiv.org/details/{server}/{from}/{to}/{cursor}` (server `biorxiv` or
`medrxiv`, two YYYY-MM-DD posting dates, the offset of the page) with JSON: `messages[0]`
says what the page is, `collection` holds one record per posted *version* of a preprint.
What a page looks like, as the documentation and the public clients that read it show
(sources in tests/fixtures/biorxiv/README.md):

- `messages[0]`: `status` ("ok"), `interval` ("2026-09-23:2026-09-24"), `cursor`, `count`
  (records on this page), `count_new_papers` and `total` (records in the interval, every
  version counted). `cursor` and `total` come as numbers or as strings, so both are read.
  The docs say 100 records a page; public clients found 30 in 2026: the next page is at
  `cursor + count`, whatever the page size, until that reaches `total`.
- An interval with no postings (a quiet day, or a cursor past the end: `total` has been
  seen to overcount) is `{"messages": [{"status": "no posts found"}], "collection": []}`,
  sometimes without `collection`: no papers, not an error.
- Any other status (a malformed date, for one) is the API refusing the request, with HTTP
  200: a `FeedError` quoting it. So is a body that is not the API's JSON at all (a proxy's
  HTML error page, a truncated answer, or its "Error : (2002) Connection refused" text).
- A record: `doi`, `title`, `authors` ("Last, F.; Last2, G. H."), `author_corresponding`,
  `author_corresponding_institution`, `date` (the day this version was posted), `version`
  (a string), `type`, `license` ("cc_by", "cc_no", ...), `category` (lower-case words, "cell
  biology"), `jatsxml`, `abstract`, `published` ("NA" or the journal article's DOI),
  `server`, and lately `funder`.

A preprint is one paper keyed by its DOI ("doi:" + the DOI in lower case): its versions share
it, so a version 2 posted days later revises the paper version 1 made, through the same
`paper.merge` as an arXiv replacement. The journal DOI goes into `journal_ref` as
"Published: <doi>" (`identity.published_doi` reads it back): `doi` is the preprint's own, the key's,
and a journal DOI is what an arXiv entry's `doi` holds, so a later merge of the two sources
can compare them there.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from datetime import date
from typing import Any

from newsletter.ingest.identity import PUBLISHED, source_label
from newsletter.ingest.paper import PaperEntry
from newsletter.ingest.parse import FeedError
from newsletter.ingest.text import clean

# Each server's site: a version's page is <site>/content/<doi>v<version>.
SITES = {"biorxiv": "https://www.biorxiv.org", "medrxiv": "https://www.medrxiv.org"}
NAMES = {server: source_label(server) for server in SITES}
# "no posts found" on the details endpoint; "no articles found" is its sibling endpoints'
# wording (rbiorxiv reads both): nothing posted in the interval.
NOTHING_FOUND = ("no posts found", "no articles found")


class Refused(FeedError):
    """The API answered, in its own JSON, that it would not serve the request."""


_DOI = re.compile(r"^10\.\d{4,9}/\S+$")
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@dataclass(frozen=True)
class ParsedDetails:
    """One page of the details endpoint."""

    server: str
    status: str
    entries: tuple[PaperEntry, ...]
    cursor: int
    count: int  # records on this page, as the API counts them
    total: int  # records in the interval, every version counted
    interval: str | None = None

    @property
    def nothing_posted(self) -> bool:
        """The API found no postings: a quiet interval, or a cursor past its end."""
        return self.status in NOTHING_FOUND

    @property
    def next_cursor(self) -> int | None:
        """Where the next page starts, or None when this page was the last."""
        following = self.cursor + self.count
        if self.nothing_posted or self.count <= 0 or following >= self.total:
            return None
        return following


def _what_it_is(content: bytes) -> str:
    """A sentence naming what came instead of the API's JSON."""
    text = content.decode("utf-8", "replace").strip()
    if text[:1] == "<":
        title = re.search(r"<title[^>]*>(.*?)</title>", text, re.IGNORECASE | re.DOTALL)
        shown = f": {clean(title.group(1))[:120]!r}" if title and clean(title.group(1)) else ""
        return f"an HTML page{shown}, not the API's JSON (the API or a proxy in front of it failed)"
    first = text.splitlines()[0] if text else ""
    return f"text, not the API's JSON: {first[:200]!r}"


def _load(content: bytes, name: str) -> dict[str, Any]:
    if not content or not content.strip():
        raise FeedError(f"{name} API sent an empty answer")
    try:
        document = json.loads(content)
    except UnicodeDecodeError:
        raise FeedError(f"{name} API sent bytes that are not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        stripped = content.lstrip()
        if stripped[:1] in (b"{", b"["):
            raise FeedError(f"{name} API sent malformed JSON at line {exc.lineno}, column "
                            f"{exc.colno}: {exc.msg} (a truncated answer?)") from None
        raise FeedError(f"{name} API sent {_what_it_is(content)}") from None
    if not isinstance(document, dict):
        raise FeedError(f"{name} API sent a JSON {type(document).__name__}, not the object "
                        "with messages and collection it documents")
    return document


def _number(value: Any, field: str, name: str) -> int:
    """An integer the API may write as a number or as a string of digits."""
    if isinstance(value, bool):
        value = None
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and value.strip().isdigit():
        number = int(value)
    else:
        raise FeedError(f"{name} API's {field} is {value!r}, not a count")
    if number < 0:
        raise FeedError(f"{name} API's {field} is {value!r}, not a count")
    return number


def _text(record: dict[str, Any], field: str) -> str:
    value = record.get(field)
    return clean(value) if isinstance(value, str) else ""


def _absent(value: str) -> bool:
    return value.upper() in ("", "NA", "N/A")


def _entry(record: Any, position: int, server: str, name: str) -> PaperEntry:
    if not isinstance(record, dict):
        raise FeedError(f"{name} record {position} is a {type(record).__name__}, not an object")
    doi = _text(record, "doi")
    if not _DOI.match(doi):
        raise FeedError(f"{name} record {position} has no DOI (doi {record.get('doi')!r})")
    raw_version = record.get("version")
    version_text = str(raw_version).strip() if isinstance(raw_version, str | int) else ""
    if isinstance(raw_version, bool) or not version_text.isdigit() or int(version_text) < 1:
        raise FeedError(f"{name} record {doi} has version {raw_version!r}, not a number")
    version = int(version_text)
    raw_day = record.get("date")
    try:
        if not isinstance(raw_day, str) or not _DAY.match(raw_day.strip()):
            raise ValueError
        posted = date.fromisoformat(raw_day.strip())
    except ValueError:
        raise FeedError(f"{name} record {doi} has date {raw_day!r}, not YYYY-MM-DD") from None

    authors = tuple(person for person in map(clean, _text(record, "authors").split(";"))
                    if person)
    category = " ".join(_text(record, "category").lower().split())
    published = _text(record, "published")
    license_code = _text(record, "license")
    abs_url = f"{SITES[server]}/content/{doi}v{version}"
    return PaperEntry(
        key=f"doi:{doi.lower()}",
        arxiv_id=None,
        version=version,
        title=_text(record, "title") or "(untitled)",
        abstract=_text(record, "abstract"),
        authors=authors,
        categories=(category,) if category else (),
        primary_category=category or None,
        announce_type="new" if version == 1 else "replace",
        announced_on=posted,
        # The details list names the day of this version only: version 1's day is known
        # when this record is version 1.
        first_announced_on=posted if version == 1 else None,
        abs_url=abs_url,
        pdf_url=f"{abs_url}.full.pdf",
        doi=doi,
        journal_ref=None if _absent(published) else PUBLISHED + published,
        license=None if _absent(license_code) else license_code,
        source=server,
    )


def _latest_versions(entries: list[PaperEntry]) -> list[PaperEntry]:
    """One entry per preprint: the newest version listed, with version 1's day if listed.

    The details list has a record per version posted in the interval, so a preprint posted
    and revised within it comes twice; the store keeps one paper per key either way.
    """
    by_key: dict[str, PaperEntry] = {}
    for entry in entries:
        seen = by_key.get(entry.key)
        if seen is None:
            by_key[entry.key] = entry
            continue
        newer, older = (entry, seen) if entry.version > seen.version else (seen, entry)
        first = newer.first_announced_on or older.first_announced_on
        categories = newer.categories + tuple(c for c in older.categories
                                              if c not in newer.categories)
        by_key[entry.key] = replace(newer, first_announced_on=first, categories=categories)
    return list(by_key.values())


def parse_details(content: bytes, *, server: str) -> ParsedDetails:
    """Parse one page of `details/{server}/...`; raise `FeedError` for anything else.

    A page is all or nothing, like a feed document: a record without a usable DOI, version
    or date fails the page, so that no paper is ever stored under a wrong key or day.
    """
    if server not in SITES:
        raise ValueError(f"unknown preprint server {server!r}; one of {', '.join(SITES)}")
    name = NAMES[server]
    document = _load(content, name)
    messages = document.get("messages")
    if not isinstance(messages, list) or not messages or not isinstance(messages[0], dict):
        raise FeedError(f"{name} API answer has no messages, so no status")
    message = messages[0]
    status = message.get("status")
    if not isinstance(status, str) or not status.strip():
        raise FeedError(f"{name} API answer has no status in its messages")
    status = clean(status)
    if status.lower() in NOTHING_FOUND:
        return ParsedDetails(server=server, status=status.lower(), entries=(), cursor=0,
                             count=0, total=0, interval=None)
    if status.lower() != "ok":
        raise Refused(f"{name} API refused the request: {status!r}")

    collection = document.get("collection", [])
    if not isinstance(collection, list):
        raise FeedError(f"{name} API's collection is a {type(collection).__name__}, not a list")
    entries = [_entry(record, i, server, name) for i, record in enumerate(collection, 1)]
    cursor = _number(message.get("cursor", 0), "cursor", name)
    count = _number(message.get("count", len(collection)), "count", name)
    total = _number(message.get("total", cursor + count), "total", name)
    interval = message.get("interval")
    return ParsedDetails(
        server=server,
        status="ok",
        entries=tuple(_latest_versions(entries)),
        cursor=cursor,
        count=count,
        total=total,
        interval=interval if isinstance(interval, str) else None,
    )
