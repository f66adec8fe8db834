"""Papers a reader likes that we do not have, fetched from the arXiv API and stored.

A liked paper is an arXiv id; one we lack is asked for (`fetch_papers`) and stored like
any other paper, so it gets a vector and can teach the reader's model
(newsletter/relevance/learn.py). Calls keep arXiv's requested distance between them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

from sqlalchemy import select
from sqlmodel import Session

from newsletter.config import Settings
from newsletter.fetch import Fetched, Fetcher
from newsletter.ingest import make_fetcher, store_entries
from newsletter.paper import Paper
from newsletter.parse import FeedError, parse_feed
from newsletter.subscriber import MAX_LIKED_PAPERS


def ids_we_lack(session: Session, arxiv_ids: Sequence[str]) -> tuple[str, ...]:
    have = set(session.execute(select(Paper.arxiv_id).where(
        Paper.arxiv_id.in_(list(arxiv_ids)))).scalars()) if arxiv_ids else set()  # type: ignore[union-attr]
    return tuple(i for i in arxiv_ids if i not in have)


# arXiv asks callers to leave 3 seconds between API calls (API user manual, 3.1.1.2:
# https://info.arxiv.org/help/api/user-manual.html#paging). Within a process the calls
# made here take turns and keep that distance; the Fetcher keeps it between its retries.
_ARXIV_TURN = threading.Lock()
_arxiv_last_call = float("-inf")


def _ask_arxiv(fetcher: Fetcher, settings: Settings, params: dict[str, str | int]) -> Fetched:
    global _arxiv_last_call
    with _ARXIV_TURN:
        wait = _arxiv_last_call + settings.arxiv_api_delay - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        try:
            return fetcher.get(settings.arxiv_api_url, params=params)
        finally:
            _arxiv_last_call = time.monotonic()


def fetch_papers(session: Session, arxiv_ids: Sequence[str], *, settings: Settings,
                 fetcher: Fetcher | None = None) -> int:
    """Fetch these papers from the arXiv API and store them; returns how many arXiv had.

    One request per 50 ids (`id_list`, with `max_results` raised from its default of 10 to
    the number of ids: user manual, 3.1.1). An id arXiv does not know is simply absent
    from the answer. Raises FetchError or FeedError when arXiv cannot answer, or answers
    with an error (a malformed id fails the whole request, so ids are checked first:
    `subscriber.arxiv_id_of`).
    """
    own = fetcher is None
    fetcher = fetcher or make_fetcher(settings, pause=settings.arxiv_api_delay)
    stored = 0
    try:
        for start in range(0, len(arxiv_ids), MAX_LIKED_PAPERS):
            chunk = list(arxiv_ids[start:start + MAX_LIKED_PAPERS])
            fetched = _ask_arxiv(fetcher, settings,
                                 {"id_list": ",".join(chunk), "max_results": len(chunk)})
            try:
                parsed = parse_feed(fetched.content)
            except FeedError as exc:
                raise FeedError(f"HTTP {fetched.status}: {exc}" if fetched.status >= 400
                                else str(exc)) from None
            if fetched.status >= 400:
                raise FeedError(f"HTTP {fetched.status}")
            if parsed.kind != "arxiv-api" and parsed.entries:
                raise FeedError(f"{settings.arxiv_api_url} did not answer as the arXiv API")
            entries = [e for e in parsed.entries if e.key in chunk]
            store_entries(session, entries)
            stored += len(entries)
    finally:
        if own:
            fetcher.close()
    return stored
