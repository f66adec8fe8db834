"""Feeds into papers: fetch, parse, and store each feed in one transaction.

A bad document writes no paper; its feed's status records what went wrong. The feed
status is written in its own transaction so that an error is never lost with the rollback.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, insert, update
from sqlalchemy import select as select_rows
from sqlmodel import Session, select

from newsletter.config import Settings
from newsletter.db import chunked, transaction
from newsletter.ingest import same_work
from newsletter.ingest.feed import Feed
from newsletter.ingest.fetch import Fetched, Fetcher, FetchError
from newsletter.ingest.paper import Paper, PaperEntry, merge, new_row
from newsletter.ingest.parse import FeedError, ParsedFeed, parse_feed

log = logging.getLogger(__name__)
papers = Paper.__table__  # type: ignore[attr-defined]
Progress = Callable[[str], None]


def quiet(_: str) -> None:
    """Progress nobody reads (the scheduled jobs log instead)."""


@dataclass
class FeedReport:
    """What one feed (or one saved document) gave us."""

    label: str
    url: str
    state: str = "ok"
    http_status: int | None = None
    items: int = 0
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    merged: int = 0  # the same work as a paper another source announced (same_work.py)
    error: str | None = None
    warning: str | None = None
    announced_on: date | None = None

    def line(self) -> str:
        if self.state == "error":
            return f"{self.label}: ERROR {self.error}"
        if self.state == "not_modified":
            return f"{self.label}: not modified since last fetch"
        if self.state == "no_announcement":
            return f"{self.label}: no announcement today ({self.announced_on or 'no date'})"
        return (
            f"{self.label}: {self.items} items, {self.added} new, {self.updated} updated, "
            f"{self.unchanged} unchanged"
            + (f", {self.merged} already known from another source" if self.merged else "")
            + (f" (warning: {self.warning})" if self.warning else "")
        )


@dataclass
class IngestSummary:
    feeds: list[FeedReport] = field(default_factory=list)

    def total(self, name: str) -> int:
        return sum(getattr(f, name) for f in self.feeds)

    @property
    def errors(self) -> int:
        return sum(1 for f in self.feeds if f.state == "error")

    def line(self) -> str:
        return (
            f"ingest: {len(self.feeds)} feed{'s' if len(self.feeds) != 1 else ''}, "
            f"{self.total('items')} items; papers {self.total('added')} new, "
            f"{self.total('updated')} updated, {self.total('unchanged')} unchanged; "
            f"{self.errors} error{'s' if self.errors != 1 else ''}"
        )


@dataclass(frozen=True)
class StoreCounts:
    added: int
    updated: int
    unchanged: int
    merged: int = 0


def store_entries(session: Session, entries: Sequence[PaperEntry]) -> StoreCounts:
    """Insert unseen papers and merge the rest, reading the existing rows in bulk."""
    stored: dict[str, dict[str, Any]] = {}
    for chunk in chunked([e.key for e in entries]):
        rows = session.execute(select_rows(papers).where(papers.c.key.in_(chunk))).mappings()
        stored.update({row["key"]: dict(row) for row in rows})

    known_elsewhere = same_work.find(session, [e for e in entries if e.key not in stored])
    inserts: list[dict[str, Any]] = []
    updated = unchanged = merged = 0
    for entry in entries:
        row = stored.get(entry.key)
        if row is None and entry.key in known_elsewhere:
            outcome = same_work.join(session, known_elsewhere[entry.key], entry)
            merged += outcome == "merged"
            updated += outcome == "updated"
            unchanged += outcome == "unchanged"
            continue
        if row is None:
            inserts.append(new_row(entry))
            continue
        changes = merge(row, entry)
        if not changes:
            unchanged += 1
            continue
        session.execute(update(papers).where(papers.c.id == row["id"]).values(**changes))
        updated += 1
    if inserts:
        session.execute(insert(papers), inserts)
    return StoreCounts(added=len(inserts), updated=updated, unchanged=unchanged,
                       merged=merged)


def _feed_row(session: Session, url: str, label: str, kind: str) -> Feed:
    feed = session.exec(select(Feed).where(Feed.url == url)).first()
    if feed is None:
        feed = Feed(url=url, label=label, kind=kind)
        session.add(feed)
        session.flush()
    return feed


def _now() -> datetime:
    return datetime.now(UTC)


def record_status(engine: Engine, report: FeedReport, kind: str, fetched: Fetched | None) -> None:
    with transaction(engine) as session:
        feed = _feed_row(session, report.url, report.label, kind)
        feed.label = report.label
        feed.last_fetched_at = _now()
        feed.http_status = report.http_status
        feed.state = report.state
        feed.last_error = report.error
        feed.last_warning = report.warning
        if report.state != "error":
            feed.last_success_at = feed.last_fetched_at
            if fetched is not None and not fetched.not_modified:
                feed.etag = fetched.etag
                feed.last_modified = fetched.last_modified
        if report.state in ("ok", "no_announcement"):
            feed.announced_on = report.announced_on
            feed.items_seen = report.items
            feed.papers_added = report.added
            feed.papers_updated = report.updated
            feed.papers_unchanged = report.unchanged


def _parse_response(fetched: Fetched, source: str) -> ParsedFeed:
    if fetched.status >= 400:
        # arXiv explains a bad category inside an HTTP 400 feed document: surface its words.
        try:
            parse_feed(fetched.content, source=source)
        except FeedError as exc:
            raise FeedError(f"HTTP {fetched.status}: {exc}") from None
        raise FeedError(f"HTTP {fetched.status}")
    return parse_feed(fetched.content, source=source)


def ingest_document(
    engine: Engine,
    *,
    url: str,
    label: str,
    kind: str,
    fetched: Fetched,
    source: str = "arxiv",
) -> FeedReport:
    """Parse and store one fetched document, all or nothing, and record the feed's status."""
    started = time.monotonic()
    report = FeedReport(label=label, url=url, http_status=fetched.status)
    if fetched.not_modified:
        report.state = "not_modified"
    else:
        try:
            parsed = _parse_response(fetched, source)
            report.items = len(parsed.entries)
            report.announced_on = parsed.announced_on
            report.warning = "; ".join(parsed.warnings) or None
            with transaction(engine) as session:
                counts = store_entries(session, parsed.entries)
            report.added, report.updated, report.unchanged, report.merged = (
                counts.added, counts.updated, counts.unchanged, counts.merged)
            if parsed.no_announcement:
                report.state = "no_announcement"
        except FeedError as exc:
            report.state, report.error = "error", str(exc)
    record_status(engine, report, kind, fetched)
    log_fn = log.warning if report.state == "error" or report.warning else log.info
    log_fn(
        "ingest feed=%s state=%s status=%s items=%d new=%d updated=%d unchanged=%d ms=%d%s",
        label, report.state, report.http_status, report.items, report.added, report.updated,
        report.unchanged, (time.monotonic() - started) * 1000,
        (f" error={report.error!r}" if report.error else "")
        + (f" warning={report.warning!r}" if report.warning else ""),
    )
    return report


def fetch_and_ingest(
    engine: Engine, fetcher: Fetcher, *, url: str, label: str, kind: str, source: str
) -> FeedReport:
    with Session(engine) as session:
        known = session.exec(select(Feed).where(Feed.url == url)).first()
        etag, last_modified = (known.etag, known.last_modified) if known else (None, None)
    try:
        fetched = fetcher.get(url, etag=etag, last_modified=last_modified)
    except FetchError as exc:
        report = FeedReport(label=label, url=url, state="error", http_status=exc.status,
                            error=str(exc))
        record_status(engine, report, kind, None)
        log.warning("ingest feed=%s state=error error=%r", label, str(exc))
        return report
    return ingest_document(engine, url=url, label=label, kind=kind, fetched=fetched,
                           source=source)


def arxiv_feed_url(settings: Settings) -> str:
    """All configured categories as one combined listing: one request, no duplicates."""
    return settings.arxiv_rss_url.rstrip("/") + "/" + "+".join(settings.arxiv_categories)


def make_fetcher(settings: Settings, *, pause: float = 0.0) -> Fetcher:
    return Fetcher(
        timeout=settings.http_timeout,
        retries=settings.http_retries,
        max_wait=settings.http_max_wait,
        pause=pause,
        site_url=settings.base_url,
    )


def ingest_files(
    engine: Engine, paths: Sequence[Path], *, source: str = "arxiv", progress: Progress = quiet
) -> IngestSummary:
    """Ingest saved documents, each as its own feed (keyed by its absolute path)."""
    summary = IngestSummary()
    for path in paths:
        url = path.resolve().as_uri()
        try:
            content = path.read_bytes()
        except OSError as exc:
            report = FeedReport(label=path.name, url=url, state="error", error=str(exc))
            record_status(engine, report, "file", None)
        else:
            fetched = Fetched(url=url, status=200, content=content, etag=None, last_modified=None)
            report = ingest_document(engine, url=url, label=path.name, kind="file",
                                     fetched=fetched, source=source)
        summary.feeds.append(report)
        progress(report.line())
    return summary


def backfill_query(categories: Sequence[str], since: date, until: date) -> str:
    cats = " OR ".join(f"cat:{c}" for c in categories)
    return f"({cats}) AND submittedDate:[{since:%Y%m%d}0000 TO {until:%Y%m%d}2359]"


def backfill(
    engine: Engine, settings: Settings, *, since: date, until: date | None = None,
    fetcher: Fetcher | None = None, page_size: int = 200, max_pages: int = 150,
    progress: Progress = quiet,
) -> IngestSummary:
    """Page through the arXiv API for papers submitted since a date, newest first.

    Each page is its own transaction: an error on page 7 keeps pages 1 to 6.
    """
    own = fetcher is None
    fetcher = fetcher or make_fetcher(settings, pause=settings.arxiv_api_delay)
    until = until or datetime.now(UTC).date()
    query = backfill_query(settings.arxiv_categories, since, until)
    summary = IngestSummary()
    try:
        for page in range(max_pages):
            params: dict[str, str | int] = {
                "search_query": query, "sortBy": "submittedDate", "sortOrder": "descending",
                "start": page * page_size, "max_results": page_size,
            }
            label = f"arXiv API page {page + 1}"
            url = settings.arxiv_api_url
            try:
                fetched = fetcher.get(url, params=params)
            except FetchError as exc:
                report = FeedReport(label=label, url=url, state="error", error=str(exc),
                                    http_status=exc.status)
                record_status(engine, report, "arxiv-api", None)
                summary.feeds.append(report)
                progress(report.line())
                break
            report = ingest_document(engine, url=url, label=label, kind="arxiv-api",
                                     fetched=fetched)
            summary.feeds.append(report)
            progress(report.line())
            if report.state == "error" or report.items < page_size:
                break
    finally:
        if own:
            fetcher.close()
    return summary
