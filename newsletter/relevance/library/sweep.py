"""What the sweep does for readers' own papers, at arXiv's pace and never in a web request.

Run by `train.embed_and_retrain` (every SUMMARIZE_SCHEDULE, and `newsletter embed`):
1. `read_author_feeds`: each reader's arXiv author feed, read when new and then weekly.
   arXiv serves an Atom feed of an author's papers under their author identifier, or
   under an ORCID iD they linked (https://info.arxiv.org/help/author_identifiers.html):
   <ARXIV_AUTHOR_URL>/<id>.atom2, entries as the API gives them. Its papers are stored (not
   listed: no day, no card) and become the reader's author entries.
2. `look_up_titles`: library entries with no arXiv id, looked up by their exact title
   through the arXiv API, several titles a call (`ti:"..." OR ti:"..."`, user manual 3.1.1
   and appendix 5.1: https://info.arxiv.org/help/api/user-manual.html). A title arXiv has
   word for word (compared normalised, files.normalised_title) makes the entry an arXiv
   paper; otherwise it stands for itself if it has an abstract, or is reported unmatched.
3. `embed_own`: the entries that stand for themselves get a vector of their title and
   abstract in the configured space; so do those still waiting for their title to be
   looked up, which count by it meanwhile (a long library is looked up over many sweeps).
Each call takes arXiv's turn (liked.ask_arxiv). A failing call stops the step and keeps
what is left for the next sweep; nothing raises for arXiv's sake.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, or_, select, update
from sqlmodel import Session

from newsletter.config import Settings
from newsletter.db import transaction
from newsletter.ingest.fetch import Fetcher, FetchError
from newsletter.ingest.paper import PaperEntry
from newsletter.ingest.parse import FeedError
from newsletter.ingest.store import make_fetcher, store_entries
from newsletter.readers.tables import Preferences, Subscriber
from newsletter.relevance import vectors
from newsletter.relevance.embedders import EmbedError, embedder_for, space_for
from newsletter.relevance.library import store
from newsletter.relevance.library.files import normalised_title
from newsletter.relevance.library.tables import LibraryEntry
from newsletter.relevance.liked import arxiv_answer, ask_arxiv, ids_we_lack, unlisted

log = logging.getLogger(__name__)
Progress = Callable[[str], None]

AUTHOR_REFRESH = timedelta(days=7)  # an author's new papers are a few a year
AUTHORS_PER_SWEEP = 20  # a minute of arXiv's time
TITLES_PER_CALL = 10
TITLE_CALLS_PER_SWEEP = 10  # 100 titles a sweep: a 2,000-entry library in a day of sweeps
OWN_PER_SWEEP = 2000


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _store_papers(session: Session, entries: list[PaperEntry]) -> None:
    """Papers arXiv gave us that we lack, stored without a day (liked.unlisted)."""
    lacking = set(ids_we_lack(session, [e.arxiv_id for e in entries if e.arxiv_id]))
    new = [unlisted(e) for e in entries if e.arxiv_id in lacking]
    if new:
        store_entries(session, new)


@dataclass
class SweepReport:
    authors_read: int = 0
    author_papers: int = 0
    titles_asked: int = 0
    titles_matched: int = 0
    embedded: int = 0
    problem: str | None = None

    def line(self) -> str | None:
        if not (self.authors_read or self.titles_asked or self.embedded or self.problem):
            return None
        said = (f"readers' own papers: {self.authors_read} author feed"
                f"{'s' if self.authors_read != 1 else ''} read ({self.author_papers} papers), "
                f"{self.titles_matched} of {self.titles_asked} titles found on arXiv, "
                f"{self.embedded} entries embedded as themselves")
        return said + (f" ({self.problem})" if self.problem else "")


def _authors_due(session: Session, now: datetime) -> list[tuple[int, str]]:
    return [(s, a) for s, a in session.execute(
        select(Preferences.subscriber_id, Preferences.arxiv_author)
        .join(Subscriber, Subscriber.id == Preferences.subscriber_id)  # type: ignore[arg-type]
        .where(Preferences.arxiv_author.is_not(None),  # type: ignore[union-attr]
               Subscriber.status == "confirmed",  # type: ignore[arg-type]
               or_(Preferences.author_fetched_at.is_(None),  # type: ignore[union-attr]
                   Preferences.author_fetched_at < now - AUTHOR_REFRESH))  # type: ignore[operator]
        .order_by(Preferences.author_fetched_at.is_not(None),  # type: ignore[union-attr]
                  Preferences.author_fetched_at)
        .limit(AUTHORS_PER_SWEEP))]


def read_author_feeds(engine: Engine, settings: Settings, report: SweepReport,
                      fetcher: Fetcher, now: datetime) -> None:
    with Session(engine) as session:
        due = _authors_due(session, now)
    for subscriber_id, author in due:
        url = f"{settings.arxiv_author_url.rstrip('/')}/{author}.atom2"
        try:
            fetched = ask_arxiv(fetcher, settings, url=url)
            # arXiv answers an identifier it does not know with an error page: the
            # reader sees that no paper was found, and it is asked again next week.
            entries = ([] if fetched.status in (400, 404)
                       else list(arxiv_answer(fetched, settings).entries))
        except (FetchError, FeedError) as exc:
            report.problem = f"arXiv's author feed could not be read: {exc}"
            log.warning("%s (%s)", report.problem, url)
            return
        counted = record_author_feed(engine, subscriber_id, author, entries, now)
        if counted is None:
            continue  # changed while we asked: the new one is read next time
        report.author_papers += counted
        report.authors_read += 1


def record_author_feed(engine: Engine, subscriber_id: int, author: str,
                       entries: list[PaperEntry], now: datetime) -> int | None:
    """An author feed's papers as the reader's author entries, in one transaction; how
    many count, or None when the reader changed their identifier meanwhile.

    The reader's preferences row is locked first (FOR UPDATE; SQLite lets one writer in at
    a time anyway): two sweeps that read one feed at once, beat's and an operator's
    `newsletter embed`, record its papers once, the second finding the first's."""
    with transaction(engine) as session:
        prefs = session.get(Preferences, subscriber_id, with_for_update=True)
        if prefs is None or prefs.arxiv_author != author:
            return None
        papers = [e for e in entries if e.arxiv_id][:store.AUTHOR_PAPERS]
        _store_papers(session, papers)
        counted = store.store_author_papers(
            session, subscriber_id, [(e.arxiv_id or "", e.title) for e in papers], now)
        prefs.author_fetched_at = now
    return counted


def _phrase(title: str) -> str:
    # The title's words alone: quotes, colons and brackets are the query language's.
    return '"' + normalised_title(title) + '"'


def look_up_titles(engine: Engine, settings: Settings, report: SweepReport,
                   fetcher: Fetcher) -> None:
    for _ in range(TITLE_CALLS_PER_SWEEP):
        with Session(engine) as session:
            waiting: dict[str, list[int]] = {}
            for entry_id, title in session.execute(
                    select(LibraryEntry.id, LibraryEntry.title)
                    .where(LibraryEntry.state == store.LOOKUP)  # type: ignore[arg-type]
                    .order_by(LibraryEntry.id).limit(TITLES_PER_CALL * 20)):
                key = normalised_title(title)
                if key and (key in waiting or len(waiting) < TITLES_PER_CALL):
                    waiting.setdefault(key, []).append(entry_id)
                elif not key:
                    waiting.setdefault("", []).append(entry_id)
        if not waiting:
            return
        asked = [k for k in waiting if k]
        found: dict[str, PaperEntry] = {}
        if asked:
            query = " OR ".join(f"ti:{_phrase(k)}" for k in asked)
            try:
                fetched = ask_arxiv(fetcher, settings, {
                    "search_query": query, "max_results": len(asked) * 3})
                for entry in arxiv_answer(fetched, settings).entries:
                    key = normalised_title(entry.title)
                    if key in waiting and entry.arxiv_id:
                        found.setdefault(key, entry)
            except (FetchError, FeedError) as exc:
                report.problem = f"arXiv could not be asked for titles: {exc}"
                log.warning("%s", report.problem)
                return
        report.titles_asked += len(asked)
        report.titles_matched += len(found)
        with transaction(engine) as session:
            _store_papers(session, list(found.values()))
            now = _utcnow()
            for key, entry_ids in waiting.items():
                paper = found.get(key)
                if paper is not None:
                    session.execute(update(LibraryEntry).where(
                        LibraryEntry.id.in_(entry_ids)).values(  # type: ignore[union-attr]
                        state=store.ARXIV, arxiv_id=paper.arxiv_id, abstract=None,
                        vector=None, vector_model=None, changed_at=now))
                    continue
                # No arXiv paper by that title: the entry stands for itself if it can.
                for state, has_text in ((store.TEXT, True), (store.UNMATCHED, False)):
                    condition = (LibraryEntry.abstract.is_not(None) if has_text  # type: ignore[union-attr]
                                 else LibraryEntry.abstract.is_(None))  # type: ignore[union-attr]
                    session.execute(update(LibraryEntry).where(
                        LibraryEntry.id.in_(entry_ids), condition)  # type: ignore[union-attr]
                        .values(state=state, changed_at=now))


def embed_own(engine: Engine, settings: Settings, report: SweepReport) -> None:
    space = space_for(settings)
    with Session(engine) as session:
        todo = session.execute(
            select(LibraryEntry.id, LibraryEntry.title, LibraryEntry.abstract)
            .where(or_(LibraryEntry.state == store.TEXT,  # type: ignore[arg-type]
                       (LibraryEntry.state == store.LOOKUP)  # type: ignore[arg-type]
                       & LibraryEntry.abstract.is_not(None)),  # type: ignore[union-attr]
                   or_(LibraryEntry.vector_model.is_(None),  # type: ignore[union-attr]
                       LibraryEntry.vector_model != space.name))  # type: ignore[arg-type]
            .order_by(LibraryEntry.id).limit(OWN_PER_SWEEP)).all()
    if not todo:
        return
    embedder = embedder_for(settings)
    try:
        for start in range(0, len(todo), embedder.batch_inputs):
            batch = todo[start:start + embedder.batch_inputs]
            try:
                done = embedder.embed([vectors.paper_text(t, a or "") for _, t, a in batch])
            except EmbedError as exc:
                report.problem = f"library entries could not be embedded: {exc}"
                log.warning("%s", report.problem)
                return
            with transaction(engine) as session:
                now = _utcnow()
                for (entry_id, _, _), blob in zip(batch, done.vectors, strict=True):
                    session.execute(update(LibraryEntry).where(
                        LibraryEntry.id == entry_id).values(  # type: ignore[arg-type]
                        vector=blob, vector_model=space.name, changed_at=now))
            report.embedded += len(batch)
    finally:
        embedder.close()


def sweep(engine: Engine, settings: Settings, *, fetcher: Fetcher | None = None,
          now: datetime | None = None, progress: Progress = lambda _: None) -> SweepReport:
    """Author feeds, title look-ups and own vectors, in that order (the look-ups decide
    which entries need a vector of their own)."""
    report = SweepReport()
    own = fetcher is None
    fetcher = fetcher or make_fetcher(settings, pause=settings.arxiv_api_delay)
    try:
        read_author_feeds(engine, settings, report, fetcher, now or _utcnow())
        look_up_titles(engine, settings, report, fetcher)
    finally:
        if own:
            fetcher.close()
    embed_own(engine, settings, report)
    line = report.line()
    if line:
        log.info("%s", line)
        progress(line)
    return report
