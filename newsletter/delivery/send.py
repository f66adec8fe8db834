"""The send: each chunk of an edition (`edition` planned it and cut it) claimed, selected,
composed, sent and recorded.

A chunk's readers share requests whatever their digests hold (a request carries up to the
provider's limit of readers). A delivery is marked sent, with the papers it carried,
right after the request that sent it, and kept in the send journal (`journal`) before
that: when the database cannot record an outcome the send stops there, and the journal
settles the rows it left at the next claim, so a database outage sends nobody anything
twice. After a crash only the recipients of the request in flight can get a second copy,
and nobody is skipped. With more than one worker the chunks go to that many processes, as
they would to that many Celery mail workers; each claims its own rows.
"""

from __future__ import annotations

import gc
import logging
import multiprocessing
import os
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, as_completed
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

from sqlalchemy import Engine
from sqlmodel import Session

from newsletter.config import Settings
from newsletter.delivery.edition import audience_of, most_read_for, prepare_edition
from newsletter.delivery.journal import Journal, settle_abandoned
from newsletter.delivery.languages import in_languages
from newsletter.delivery.ledger import (
    DigestEdition,
    SentDigest,
    already_sent,
    claim,
    mark_failed,
    mark_sent,
    mark_skipped,
    new_claim,
    today_utc,
    utcnow,
)
from newsletter.delivery.sources import Reader, candidates, readers
from newsletter.digest.scores import choose
from newsletter.digest.selection import Candidate, PaperIndex, Selection
from newsletter.mail import message
from newsletter.mail.batch import Batch
from newsletter.mail.registry import batch_sender_for
from newsletter.mail.senders import BatchSender
from newsletter.readers.links import LinkHolder, Links
from newsletter.relevance.embedders import VectorSpace, space_for

log = logging.getLogger(__name__)
Progress = Callable[[str], None]
Composer = Callable[[Sequence[tuple[Reader, Selection]]], Batch]


@dataclass
class SendReport:
    edition_id: int | None = None
    planned: int = 0
    sent: int = 0
    skipped: int = 0
    failed: int = 0
    retry_later: int = 0
    requests: int = 0
    # Readers a send that stopped had sent, recorded from its journal (not sent again).
    journaled: int = 0
    errors: list[str] = field(default_factory=list)

    def add(self, other: SendReport) -> None:
        self.sent += other.sent
        self.journaled += other.journaled
        self.skipped += other.skipped
        self.failed += other.failed
        self.retry_later += other.retry_later
        self.requests += other.requests
        self.errors += other.errors

    def line(self) -> str:
        journaled = (f"; {self.journaled} sent by a send that stopped, recorded from the "
                     "send journal" if self.journaled else "")
        return (f"send: {self.sent} sent, {self.skipped} skipped (nothing new), "
                f"{self.failed} failed, {self.retry_later} to retry; "
                f"{self.requests} requests{journaled}")


def deliver(
    engine: Engine, edition_id: int, delivery_ids: Sequence[int], *, sender: BatchSender,
    compose: Composer, journal: Path, space: VectorSpace | None = None,
    now: Callable[[], datetime] = utcnow,
) -> SendReport:
    """Send one chunk of an edition: claim, select, group identical digests, send, record.

    `journal`: the send journal's folder (SEND_JOURNAL_DIR); what stopped sends left there
    is settled before anything is claimed. `space`: where readers' models live
    (`relevance.embedders.space_for`); None ranks every reader by topics, keywords and
    authors alone."""
    with _collector_aside():
        return _deliver(engine, edition_id, delivery_ids, sender=sender, compose=compose,
                        journal=journal, space=space, now=now)


@contextmanager
def _collector_aside() -> Iterator[None]:
    """A chunk makes millions of short-lived objects, and what earlier chunks built lives
    on in this process (rendered papers, the engine's caches). The collector's defaults
    re-scanned all of it every few hundred allocations, a third of delivery's CPU: what
    exists is frozen, and young objects are collected less often (docs/BENCHMARKS.md).
    Thawed after the chunk: frozen objects are never collected, and a long-lived worker
    (Celery's, or a process sending tick after tick) would keep every cycle it ever made,
    an engine's pooled connections among them."""
    thresholds = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)


def _deliver(
    engine: Engine, edition_id: int, delivery_ids: Sequence[int], *, sender: BatchSender,
    compose: Composer, journal: Path, space: VectorSpace | None,
    now: Callable[[], datetime],
) -> SendReport:
    report = SendReport(edition_id=edition_id)
    report.journaled = settle_abandoned(engine, journal)
    token = new_claim()
    # Opened (and locked) before the claim: a claim whose journal cannot be written never
    # takes a row.
    with Journal.open(journal, engine, edition_id, token) as kept, Session(engine) as session:
        _, taken = claim(session, delivery_ids, now(), token)
        session.commit()
        if not taken:
            return report
        edition = session.get(DigestEdition, edition_id)
        assert edition is not None
        day_papers = paper_index(edition_id, candidates(session, edition.window_start,
                                                        edition.day))
        people = readers(session, taken)
        sent_before = already_sent(session, [r.subscriber_id for r in people],
                                   [c.paper_id for c in day_papers.candidates])
        chosen: list[tuple[Reader, Selection]] = []
        nothing_new: list[int] = []
        selections = choose(session, space, day_papers,
                            [(r.subscriber_id, r.interests) for r in people], sent_before)
        for reader, selection in zip(people, selections, strict=True):
            if selection.empty:
                nothing_new.append(reader.delivery_id)
            else:
                chosen.append((reader, selection))
        chosen = in_languages(session, chosen)
        # Claimed rows whose subscriber left meanwhile (unsubscribed, deleted) are skipped.
        gone = set(taken) - {r.delivery_id for r in people}
        mark_skipped(session, token, [*nothing_new, *gone])
        session.commit()
        report.skipped = len(nothing_new) + len(gone)

        # One request per part the provider allows, whatever each reader's digest holds.
        for start in range(0, len(chosen), sender.max_batch):
            part = chosen[start:start + sender.max_batch]
            _send_part(session, token, part, compose(part), sender, kept, now, report)
    log.info("deliver edition=%s claimed=%d sent=%d skipped=%d failed=%d retry=%d requests=%d",
             edition_id, len(taken), report.sent, report.skipped, report.failed,
             report.retry_later, report.requests)
    return report


# The papers of the editions this process sent lately, indexed, with their rankings by
# topics: an edition's chunks come to a process tick after tick (every zone of one local
# date shares it), and readers of the same topics, ranked for one chunk, are ranked for the
# next. A few editions only: a tick sends one date's edition, or two around midnight
# somewhere, and a weekly.
_indexes: OrderedDict[int, PaperIndex] = OrderedDict()
KEPT_INDEXES = 4


def paper_index(edition_id: int, found: Sequence[Candidate]) -> PaperIndex:
    """The edition's candidates indexed, its rankings kept from earlier chunks while the
    candidates are the same (a card written meanwhile makes a new index)."""
    index = _indexes.get(edition_id)
    if index is None or index.candidates != tuple(found):
        index = _indexes[edition_id] = PaperIndex(found)
    else:
        index.keep_shared()
    _indexes.move_to_end(edition_id)
    while len(_indexes) > KEPT_INDEXES:
        _indexes.popitem(last=False)
    return index


@dataclass(frozen=True)
class _Journaled:
    """A batch's requests kept in the send journal as the sender makes them (RequestLog):
    who each carries before it goes, what it carried once accepted."""

    journal: Journal
    digests: Mapping[str, SentDigest]  # by address
    now: Callable[[], datetime]

    def sending(self, recipients: Sequence[str]) -> None:
        self.journal.request([self.digests[to].delivery_id for to in recipients])

    def answered(self, accepted: Sequence[str], rejected: Sequence[str], error: str | None,
                 message_id: str | None) -> None:
        self.journal.answer([self.digests[to] for to in accepted],
                            [self.digests[to].delivery_id for to in rejected],
                            error, message_id, self.now())


def _send_part(session: Session, token: str, part: Sequence[tuple[Reader, Selection]],
               batch: Batch, sender: BatchSender, journal: Journal,
               now: Callable[[], datetime], report: SendReport) -> None:
    started = time.monotonic()
    readers_ = [reader for reader, _ in part]
    digests = {r.email: SentDigest.of(r.delivery_id, r.subscriber_id, s) for r, s in part}
    # Senders report every outcome in the result: accepted, refused for good, or neither.
    result = sender.send_batch(batch, _Journaled(journal, digests, now))
    report.requests += result.requests
    accepted, rejected = set(result.accepted), set(result.rejected)
    ok = [digests[r.email] for r in readers_ if r.email in accepted]
    refused = [r.delivery_id for r in readers_
               if r.email in rejected and r.email not in accepted]
    unsent = [r.delivery_id for r in readers_
              if r.email not in accepted and r.email not in rejected]
    # Raises when the database is away: the send stops before its next request, and the
    # journal has this one's outcome.
    mark_sent(session, token, ok, now())
    error = result.error or "refused by the provider"
    if refused:
        mark_failed(session, token, refused, error, permanent=True)
    if unsent:
        mark_failed(session, token, unsent, error, permanent=False)
    session.commit()
    report.sent += len(ok)
    report.failed += len(refused)
    report.retry_later += len(unsent)
    if result.error:
        report.errors.append(result.error)
    log.info("sent recipients=%d requests=%d ms=%d", len(ok), result.requests,
             (time.monotonic() - started) * 1000)


def composer_for(settings: Settings, day: date, frequency: str,
                 most_read: Sequence[tuple[str, str]] = ()) -> Composer:
    """Builds each batch with every reader's own signed links (and the edition's "most
    read this week", the same for all)."""
    links = Links.from_settings(settings)

    def build(part: Sequence[tuple[Reader, Selection]]) -> Batch:
        return message.compose([addressee(links, r, s) for r, s in part], day=day,
                               frequency=frequency, site_url=settings.base_url,
                               most_read=most_read)

    return build


def addressee(links: Links, reader: Reader, selection: Selection,
              view_url: str | None = None) -> message.Addressee:
    """A reader of a batch, with their digest and the links only they may use."""
    holder = LinkHolder(reader.subscriber_id, reader.link_key)
    return message.Addressee(
        email=reader.email, delivery_id=reader.delivery_id, selection=selection,
        manage_url=links.manage_url(holder), unsubscribe_url=links.unsubscribe_url(holder),
        view_url=view_url or links.digest_url(reader.delivery_id, reader.link_key),
        rate_tokens=tuple(links.rate_token(holder, pick.candidate.paper_id)
                          for pick in selection.picks),
        tracking=reader.tracking,
        language=reader.language,
    )


def send_edition(
    engine: Engine, settings: Settings, *, frequency: str = "daily", day: date | None = None,
    sender: BatchSender | None = None, chunk_size: int = 1000, workers: int = 1,
    progress: Progress = lambda _: None, now: Callable[[], datetime] = utcnow,
) -> SendReport:
    """A whole edition: what `newsletter send` runs.

    With `workers` > 1 the chunks go to that many processes, as they would to that many
    Celery mail workers: each claims its rows, so none is sent twice.
    """
    day = day or today_utc()
    if workers > 1 and sender is not None:
        raise ValueError("a given sender cannot be shared across processes")
    local = sender or batch_sender_for(settings)
    # The provider must be able to render the digest (SendGrid: its template is this
    # release's) before anyone is planned or claimed; MailError says what to fix.
    local.prepare()
    # First what a send that stopped left: its rows are then sent, or free to hand out.
    journaled = settle_abandoned(engine, settings.send_journal)
    edition_id, planned, chunks = prepare_edition(engine, frequency, day, chunk_size, now,
                                                  audience=audience_of(settings))
    report = SendReport(edition_id=edition_id, planned=planned, journaled=journaled)
    send_chunks(engine, settings, [(report, chunks)], local=local, workers=workers,
                progress=progress, now=now, label=f"{frequency} {day}")
    return report


def worker_pool(workers: int) -> ProcessPoolExecutor:
    """Processes that send chunks, as that many Celery mail workers would: started once,
    each keeps its engine and what it built (rendered papers, rankings) across chunks."""
    return ProcessPoolExecutor(max_workers=workers,
                               mp_context=multiprocessing.get_context("spawn"))


def send_chunks(engine: Engine, settings: Settings,
                work: Sequence[tuple[SendReport, Sequence[Sequence[int]]]], *,
                local: BatchSender, workers: int = 1, pool: Executor | None = None,
                progress: Progress = lambda _: None,
                now: Callable[[], datetime] = utcnow, label: str = "") -> None:
    """Editions' chunks, each edition's outcomes added to its report: in this process with
    `local`, or in `workers` processes, or in a `pool` the caller keeps across ticks.
    With processes every edition's chunks are handed out at once, so no process waits for
    another edition to finish; each claims its rows, so none is sent twice."""
    total, done = sum(len(c) for _, chunks in work for c in chunks), 0

    def handled(report: SendReport, part: SendReport, size: int) -> None:
        nonlocal done
        report.add(part)
        done += size
        progress(f"{label or f'edition {report.edition_id}'}: {done}/{total} deliveries "
                 f"handled, {report.sent} sent, {report.skipped} skipped, "
                 f"{report.failed} failed")

    if pool is not None or (workers > 1 and sum(len(chunks) for _, chunks in work) > 1):
        with nullcontext(pool) if pool is not None else worker_pool(workers) as running:
            futures = {running.submit(deliver_in_worker, settings, report.edition_id, chunk):
                       (report, len(chunk)) for report, chunks in work for chunk in chunks}
            for future in as_completed(futures):
                report, size = futures[future]
                handled(report, future.result(), size)
        return
    space = space_for(settings)
    for report, chunks in work:
        compose = _edition_composer(engine, settings, report.edition_id)
        for chunk in chunks:
            handled(report, deliver(engine, report.edition_id, chunk, sender=local,
                                    compose=compose, journal=settings.send_journal,
                                    space=space, now=now), len(chunk))


# A worker process's engine: a Celery worker or a pool's process keeps its connections
# across the chunks it sends. One, for its database: another database's (a test's, an
# operator's second installation) replaces it, its connections closed. Keyed by process
# too: a forked child must not use its parent's connections.
_engine: tuple[tuple[int, str], Engine] | None = None


def _worker_engine(url: str) -> Engine:
    global _engine
    from newsletter.db import make_engine

    key = (os.getpid(), url)
    if _engine is None or _engine[0] != key:
        if _engine is not None and _engine[0][0] == key[0]:
            _engine[1].dispose()
        _engine = (key, make_engine(url))
    return _engine[1]


def deliver_in_worker(settings: Settings, edition_id: int, chunk: Sequence[int]) -> SendReport:
    """One chunk in a worker process: its own engine, sender and composer, as a Celery
    worker would have."""
    engine = _worker_engine(settings.database_url)
    sender = batch_sender_for(settings)
    sender.prepare()  # before claiming: a missing template leaves the chunk pending
    return deliver(engine, edition_id, chunk, sender=sender,
                   compose=_edition_composer(engine, settings, edition_id),
                   journal=settings.send_journal, space=space_for(settings))


def _edition_composer(engine: Engine, settings: Settings, edition_id: int) -> Composer:
    with Session(engine) as session:
        edition = session.get(DigestEdition, edition_id)
        assert edition is not None
        return composer_for(settings, edition.day, edition.frequency, most_read_for(
            session, settings, edition.frequency, edition.day))
