"""bioRxiv and medRxiv into papers: the details API, page by page. The I/O edge.

For each preprint server in SOURCES, the postings of the last BIORXIV_DAYS days (UTC, today
included) are read from `{BIORXIV_API_URL}/details/{server}/{from}/{to}/{cursor}`
(https://api.biorxiv.org/details/medrxiv/help), once per configured category (`?category=`,
with underscores for spaces, as the help page says) or once for every category. A day's
list grows while the day lasts, so each run reads yesterday again: its late postings arrive,
and what was seen already is "unchanged" (the store's merge).

Politeness: pages come ARXIV_API_DELAY seconds apart (the API documents no limit; rbiorxiv
waits a second), through the same `Fetcher` as every feed (timeouts, retries with backoff
honouring Retry-After, a User-Agent naming the operator).

Each page is stored in its own transaction, as the arXiv backfill stores its pages: a
server that fails on page 3 keeps pages 1 and 2, and its status says what failed where. A
server is one feed in the feeds table and in `newsletter feeds` (its label names the
categories); each page is one progress line. A day with no postings is a fetch that went
well and found nothing: state ok, 0 items.

A page of preprints is stored and recorded with `store`'s functions, exactly as an arXiv
listing is (`run.ingest_feeds` calls both).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import Engine

from newsletter.config import Settings
from newsletter.db import transaction
from newsletter.ingest.biorxiv import NAMES, ParsedDetails, Refused, parse_details
from newsletter.ingest.fetch import Fetched, Fetcher, FetchError
from newsletter.ingest.paper import PaperEntry
from newsletter.ingest.parse import FeedError
from newsletter.ingest.store import (
    FeedReport,
    make_fetcher,
    quiet,
    record_status,
    store_entries,
)

log = logging.getLogger(__name__)
KIND = "biorxiv-api"
# A server that never says "last page" must not be read forever: 14 days of bioRxiv are
# some 6,000 records, 200 pages of 30.
MAX_PAGES = 1000



def _utc_today() -> date:
    return datetime.now(UTC).date()


def servers(settings: Settings) -> tuple[str, ...]:
    """The preprint servers SOURCES names, in its order."""
    return tuple(source for source in settings.sources if source in NAMES)


def categories_of(settings: Settings, server: str) -> tuple[str, ...]:
    return settings.biorxiv_categories if server == "biorxiv" else settings.medrxiv_categories


def interval(settings: Settings, today: date) -> tuple[date, date]:
    """The posting days read: BIORXIV_DAYS days up to today, today included."""
    return today - timedelta(days=settings.biorxiv_days - 1), today


def feed_url(settings: Settings, server: str) -> str:
    """The server's row in the feeds table: one per server, whatever the days read."""
    return f"{settings.biorxiv_api_url.rstrip('/')}/details/{server}"


def feed_label(settings: Settings, server: str) -> str:
    wanted = categories_of(settings, server)
    return NAMES[server] + (" " + "+".join(wanted) if wanted else "")


def _kept(parsed: ParsedDetails, wanted: tuple[str, ...]) -> list[PaperEntry]:
    """The page's entries in the categories asked for: the API filters by `category`, and
    what it sends anyway (a category it does not know it ignores) stays out all the same."""
    if not wanted:
        return list(parsed.entries)
    return [entry for entry in parsed.entries if set(entry.categories) & set(wanted)]


def _parse_page(fetched: Fetched, server: str) -> ParsedDetails:
    if fetched.status >= 400:
        # A refusal the API words in its JSON is worth quoting; an error page is not.
        try:
            parse_details(fetched.content, server=server)
        except Refused as exc:
            raise FeedError(f"HTTP {fetched.status}: {exc}") from None
        except FeedError:
            pass
        raise FeedError(f"HTTP {fetched.status} from {fetched.url}")
    return parse_details(fetched.content, server=server)


@dataclass
class _Series:
    """One server's pages, one category (or every category) at a time."""

    engine: Engine
    settings: Settings
    fetcher: Fetcher
    progress: Callable[[str], None]
    server: str
    since: date
    until: date
    last_status: int | None = None  # of the last answer, even one that failed to parse

    def pages(self, category: str | None) -> Iterator[tuple[str, ParsedDetails]]:
        """Fetch and parse page after page; FetchError and FeedError stop the series."""
        base = feed_url(self.settings, self.server)
        params: dict[str, str | int] | None = (
            {"category": category.replace(" ", "_")} if category else None)
        cursor = 0
        for number in range(1, MAX_PAGES + 1):
            url = f"{base}/{self.since:%Y-%m-%d}/{self.until:%Y-%m-%d}/{cursor}"
            where = f"page {number} (cursor {cursor}" + (f", {category}" if category else "") + ")"
            try:
                fetched = self.fetcher.get(url, params=params)
            except FetchError as exc:
                raise FetchError(f"{where}: {exc}", exc.status) from None
            self.last_status = fetched.status
            try:
                parsed = _parse_page(fetched, self.server)
            except FeedError as exc:
                raise FeedError(f"{where}: {exc}") from None
            yield where, parsed
            following = parsed.next_cursor
            if following is None:
                return
            if following <= cursor:  # the API went backwards: stop rather than loop
                raise FeedError(f"{where}: the next page would start at {following}, not "
                                f"after {cursor}")
            cursor = following
        raise FeedError(f"stopped after {MAX_PAGES} pages; the interval never ended")

    def run(self) -> FeedReport:
        name = NAMES[self.server]
        wanted = categories_of(self.settings, self.server)
        report = FeedReport(label=feed_label(self.settings, self.server),
                                   url=feed_url(self.settings, self.server),
                                   announced_on=self.until)
        started = time.monotonic()
        pages = 0
        self.progress(f"fetching {report.label} {self.since}..{self.until} ...")
        try:
            for category in wanted or (None,):
                for where, parsed in self.pages(category):
                    entries = _kept(parsed, wanted)
                    with transaction(self.engine) as session:
                        counts = store_entries(session, entries)
                    pages += 1
                    report.items += len(entries)
                    report.added += counts.added
                    report.updated += counts.updated
                    report.unchanged += counts.unchanged
                    report.merged += counts.merged
                    page = FeedReport(
                        label=f"{name} {where}", url=report.url, items=len(entries),
                        added=counts.added, updated=counts.updated, unchanged=counts.unchanged,
                        merged=counts.merged)
                    self.progress(page.line() + (" (nothing posted)" if parsed.nothing_posted
                                                 else ""))
        except (FetchError, FeedError) as exc:
            report.state = "error"
            self.last_status = getattr(exc, "status", None) or self.last_status
            kept = (f"; the {report.items} items of the {pages} page{'s' if pages > 1 else ''} "
                    "before it are stored" if pages else "")
            report.error = f"{exc}{kept}"
        report.http_status = self.last_status
        record_status(self.engine, report, KIND, None)
        log_fn = log.warning if report.state == "error" else log.info
        log_fn("ingest feed=%s state=%s status=%s pages=%d items=%d new=%d updated=%d "
               "unchanged=%d ms=%d%s", report.label, report.state, report.http_status, pages,
               report.items, report.added, report.updated, report.unchanged,
               (time.monotonic() - started) * 1000,
               f" error={report.error!r}" if report.error else "")
        return report


def ingest_preprint_servers(
    engine: Engine, settings: Settings, *, fetcher: Fetcher | None = None,
    progress: Callable[[str], None] = quiet, today: date | None = None,
) -> list[FeedReport]:
    """Read every preprint server SOURCES names; one report per server, in SOURCES' order.

    `fetcher`: the caller's, used as it is; without one, a fetcher of the operator's HTTP
    settings that waits ARXIV_API_DELAY seconds between pages.
    """
    chosen = servers(settings)
    if not chosen:
        return []
    own = fetcher is None
    fetcher = fetcher or make_fetcher(settings, pause=settings.arxiv_api_delay)
    since, until = interval(settings, today or _utc_today())
    reports: list[FeedReport] = []
    try:
        for server in chosen:
            series = _Series(engine, settings, fetcher, progress, server, since, until)
            report = series.run()
            reports.append(report)
            progress(report.line())
    finally:
        if own:
            fetcher.close()
    return reports
