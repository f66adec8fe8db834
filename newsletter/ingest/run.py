"""The scheduled ingest: every configured source, one after the other.

arXiv's listing and the extra feeds (FEED_URLS) are one document each (`store`); bioRxiv
and medRxiv are read page by page through their API (`preprints`). Each stores what it
read in its own transactions and reports one line per feed, so one source failing keeps
what the others brought.
"""

from __future__ import annotations

from sqlalchemy import Engine

from newsletter.config import Settings
from newsletter.ingest.fetch import Fetcher
from newsletter.ingest.preprints import ingest_preprint_servers
from newsletter.ingest.store import (
    IngestSummary,
    Progress,
    arxiv_feed_url,
    fetch_and_ingest,
    make_fetcher,
    quiet,
)


def ingest_feeds(
    engine: Engine, settings: Settings, *, fetcher: Fetcher | None = None,
    progress: Progress = quiet,
) -> IngestSummary:
    """Fetch the configured arXiv listing, every extra source feed and the preprint servers
    (SOURCES)."""
    own = fetcher is None
    fetcher = fetcher or make_fetcher(settings)
    summary = IngestSummary()
    targets = [(arxiv_feed_url(settings), "arXiv " + "+".join(settings.arxiv_categories),
                "arxiv-rss", "arxiv")] if "arxiv" in settings.sources else []
    targets += [(url, label, "source", label) for label, url in settings.extra_feeds]
    try:
        for url, label, kind, source in targets:
            progress(f"fetching {label} ...")
            report = fetch_and_ingest(engine, fetcher, url=url, label=label, kind=kind,
                                      source=source)
            summary.feeds.append(report)
            progress(report.line())
        # bioRxiv and medRxiv, page by page; a fetcher of our own pauses between pages.
        summary.feeds += ingest_preprint_servers(
            engine, settings, fetcher=None if own else fetcher, progress=progress)
    finally:
        if own:
            fetcher.close()
    return summary


def ingest_configured(progress: Progress = quiet) -> IngestSummary:
    """The scheduled job: read the environment, fetch every configured feed."""
    from newsletter.config import settings as current_settings
    from newsletter.db import engine_for

    settings = current_settings()
    return ingest_feeds(engine_for(settings.database_url), settings, progress=progress)
