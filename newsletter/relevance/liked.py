"""Papers a reader likes that we do not have, fetched from the arXiv API and stored.

A liked paper is an arXiv id; one we lack is asked for (`fetch_papers`) and stored
without a day, so it gets a vector and can teach the reader's model
(newsletter/relevance/learn.py) but is not listed: our feeds did not announce it, so it is
on no day or page, gets no card and is picked for nobody's digest (`paper.listed`), until
a feed of ours lists it. Calls keep arXiv's requested distance between them.

Never in a web request: arXiv asks for 3 seconds between calls, so a few readers saving
their lists at once would hold web workers for as long as it takes. The reader's list is
stored at once; `fetch_wanted` asks for what every reader's list lacks, in the sweep that
embeds new papers and retrains the models they change (`train.embed_and_retrain`, every
SUMMARIZE_SCHEDULE), and for one reader's list in `newsletter subscribers add --like`.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace

from sqlalchemy import Engine, select
from sqlmodel import Session

from newsletter.config import Settings
from newsletter.db import transaction
from newsletter.ingest.fetch import Fetched, Fetcher, FetchError
from newsletter.ingest.paper import Paper, PaperEntry
from newsletter.ingest.parse import FeedError, ParsedFeed, parse_feed
from newsletter.ingest.store import make_fetcher, store_entries
from newsletter.readers.reader_input import MAX_LIKED_PAPERS
from newsletter.readers.tables import Preferences

log = logging.getLogger(__name__)

# Ids asked for in one sweep: 10 requests, half a minute at arXiv's pace. An id arXiv does
# not know stays wanted; when more are wanted than this, a random sample of them is asked
# for, so no id is starved by others that never resolve.
SWEEP_IDS = 500


def ids_we_lack(session: Session, arxiv_ids: Sequence[str]) -> tuple[str, ...]:
    have = set(session.execute(select(Paper.arxiv_id).where(
        Paper.arxiv_id.in_(list(arxiv_ids)))).scalars()) if arxiv_ids else set()  # type: ignore[union-attr]
    return tuple(i for i in arxiv_ids if i not in have)


# arXiv asks callers to leave 3 seconds between API calls (API user manual, 3.1.1.2:
# https://info.arxiv.org/help/api/user-manual.html#paging). Within a process the calls
# made here take turns and keep that distance; the Fetcher keeps it between its retries.
_ARXIV_TURN = threading.Lock()
_arxiv_last_call = float("-inf")


def ask_arxiv(fetcher: Fetcher, settings: Settings, params: dict[str, str | int] | None = None,
              *, url: str | None = None) -> Fetched:
    """One call to arXiv (the API unless `url` names another of its addresses, such as an
    author feed), at arXiv's pace: every caller of this process takes its turn."""
    global _arxiv_last_call
    with _ARXIV_TURN:
        wait = _arxiv_last_call + settings.arxiv_api_delay - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        try:
            return fetcher.get(url or settings.arxiv_api_url, params=params)
        finally:
            _arxiv_last_call = time.monotonic()


def arxiv_answer(fetched: Fetched, settings: Settings) -> ParsedFeed:
    """The API's answer parsed; FeedError when it is an error or not the API's."""
    try:
        parsed = parse_feed(fetched.content)
    except FeedError as exc:
        raise FeedError(f"HTTP {fetched.status}: {exc}" if fetched.status >= 400
                        else str(exc)) from None
    if fetched.status >= 400:
        raise FeedError(f"HTTP {fetched.status}")
    if parsed.kind != "arxiv-api" and parsed.entries:
        raise FeedError(f"{settings.arxiv_api_url} did not answer as the arXiv API")
    return parsed


def fetch_papers(session: Session, arxiv_ids: Sequence[str], *, settings: Settings,
                 fetcher: Fetcher | None = None) -> int:
    """Fetch these papers from the arXiv API and store them; returns how many arXiv had.

    One request per 50 ids (`id_list`, with `max_results` raised from its default of 10 to
    the number of ids: user manual, 3.1.1). An id arXiv does not know is simply absent
    from the answer. Raises FetchError or FeedError when arXiv cannot answer, or answers
    with an error (a malformed id fails the whole request, so ids are checked first:
    `paper_id.arxiv_id_of`).
    """
    own = fetcher is None
    fetcher = fetcher or make_fetcher(settings, pause=settings.arxiv_api_delay)
    stored = 0
    try:
        for start in range(0, len(arxiv_ids), MAX_LIKED_PAPERS):
            chunk = list(arxiv_ids[start:start + MAX_LIKED_PAPERS])
            fetched = ask_arxiv(fetcher, settings,
                                {"id_list": ",".join(chunk), "max_results": len(chunk)})
            parsed = arxiv_answer(fetched, settings)
            entries = [unlisted(e) for e in parsed.entries if e.key in chunk]
            store_entries(session, entries)
            stored += len(entries)
    finally:
        if own:
            fetcher.close()
    return stored


def unlisted(entry: PaperEntry) -> PaperEntry:
    """The paper without the days the API gives it: arXiv announced it, our feeds did not."""
    return replace(entry, announced_on=None, first_announced_on=None)


def wanted(session: Session, also: Iterable[str] = ()) -> list[str]:
    """Every id on some reader's list, and `also` (the arXiv ids of readers' libraries and
    author feeds: newsletter/relevance/library/), that we have no paper for, sorted."""
    listed = {arxiv_id for (ids,) in session.execute(select(Preferences.liked_papers))
              for arxiv_id in ids or ()}
    listed.update(also)
    return sorted(ids_we_lack(session, sorted(listed)))


@dataclass(frozen=True)
class LikedFetch:
    asked: tuple[str, ...]
    stored: int  # papers arXiv gave us
    problem: str | None = None  # why arXiv could not be asked (the rest stays wanted)


def fetch_wanted(engine: Engine, settings: Settings, *, ids: Sequence[str] | None = None,
                 also: Callable[[Session], Iterable[str]] = lambda _session: (),
                 fetcher: Fetcher | None = None,
                 sample: Callable[[list[str], int], list[str]] = random.sample) -> LikedFetch:
    """Ask arXiv for these liked ids (by default every reader's wanted ones, at most
    SWEEP_IDS) and store what it gives, each request in its own transaction: papers
    already stored stay when a later request fails. Never raises for arXiv's sake."""
    if ids is None:
        with Session(engine) as session:
            ids = wanted(session, also(session))
        if len(ids) > SWEEP_IDS:
            ids = sorted(sample(list(ids), SWEEP_IDS))
    stored = 0
    for start in range(0, len(ids), MAX_LIKED_PAPERS):
        chunk = ids[start:start + MAX_LIKED_PAPERS]
        try:
            with transaction(engine) as session:
                stored += fetch_papers(session, chunk, settings=settings, fetcher=fetcher)
        except (FetchError, FeedError) as exc:
            problem = f"arXiv could not be asked for liked papers: {exc}"
            log.warning("%s (%d of %d ids asked)", problem, start, len(ids))
            return LikedFetch(tuple(ids), stored, problem)
    if ids:
        log.info("liked papers: asked arXiv for %d, stored %d", len(ids), stored)
    return LikedFetch(tuple(ids), stored)
