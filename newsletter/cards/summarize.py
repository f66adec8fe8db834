"""Pending papers into cards: pick the writer, run many papers at once, store each result.

Writers run in a thread pool (LLM calls spend their time waiting on the network); results
are stored one small transaction at a time, from this thread, as they arrive, so a crash
keeps every card written so far and SQLite never sees two writers.
"""

from __future__ import annotations

import logging
import queue
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError

from newsletter.cards.card import PaperText, WriteResult, pending_papers, save_results
from newsletter.config import Settings
from newsletter.db import transaction

log = logging.getLogger(__name__)
Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


class Writer(Protocol):
    source: str
    model: str
    prompt_version: str
    concurrency: int

    def write(self, paper: PaperText) -> WriteResult: ...

    def close(self) -> None: ...


def writer_for(settings: Settings) -> Writer:
    """The LLM writer when there is an API key, the offline writer otherwise."""
    if settings.openai_api_key:
        from newsletter.cards.llm_writer import LLMWriter

        return LLMWriter(settings)
    from newsletter.cards.offline_writer import OfflineWriter

    return OfflineWriter()


@dataclass
class SummarizeReport:
    source: str
    model: str
    pending: int = 0
    written: int = 0
    failed: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float | None = 0.0

    def add(self, result: WriteResult) -> None:
        if result.ok:
            self.written += 1
        else:
            self.failed += 1
        self.input_tokens += result.input_tokens
        self.output_tokens += result.output_tokens
        if self.cost_usd is not None:
            self.cost_usd = None if result.cost_usd is None else self.cost_usd + result.cost_usd

    def line(self) -> str:
        cost = "cost unknown (set LLM_PRICE_INPUT/LLM_PRICE_OUTPUT)" if self.cost_usd is None \
            else f"${self.cost_usd:.4f}"
        return (f"summarize: {self.written} card{'s' if self.written != 1 else ''} written, "
                f"{self.failed} failed; {self.input_tokens} input + {self.output_tokens} output "
                f"tokens, {cost} ({self.source} writer, {self.model})")


def result_line(paper: PaperText, result: WriteResult) -> str:
    if result.draft is not None:
        tokens = result.input_tokens + result.output_tokens
        spent = f", {tokens} tokens" if tokens else ""
        return (f"card {paper.key}: {', '.join(result.draft.topics)} "
                f"({result.source}{spent}, {result.attempts} call{'s' * (result.attempts > 1)})")
    return f"card {paper.key}: FAILED after {result.attempts} calls: {result.error}"


def _store(engine: Engine, batch: list[tuple[PaperText, WriteResult]]) -> None:
    try:
        with transaction(engine) as session:
            save_results(session, batch)
    except IntegrityError:
        # Another run inserted one of these cards between our read and our insert: the
        # unique paper_id caught it; store ours over theirs.
        with transaction(engine) as session:
            save_results(session, batch)


def _outcome(future: Future[WriteResult], writer: Writer) -> WriteResult:
    try:
        return future.result()
    except Exception as exc:  # a bug on one paper must not cost the others their cards
        log.exception("card writer crashed")
        return WriteResult(source=writer.source, model=writer.model,  # type: ignore[arg-type]
                           prompt_version=writer.prompt_version,
                           error=f"writer crashed: {exc!r}")


def write_cards(
    engine: Engine, writer: Writer, papers: list[PaperText], *, progress: Progress = _quiet
) -> SummarizeReport:
    """Write and store a card for each paper, `writer.concurrency` at a time."""
    report = SummarizeReport(source=writer.source, model=writer.model, pending=len(papers))
    pool = ThreadPoolExecutor(max_workers=max(1, writer.concurrency),
                              thread_name_prefix="card-writer")
    try:
        finished: queue.SimpleQueue[Future[WriteResult]] = queue.SimpleQueue()
        futures: dict[Future[WriteResult], PaperText] = {}
        for paper in papers:
            future = pool.submit(writer.write, paper)
            futures[future] = paper
            future.add_done_callback(finished.put)
        left = len(papers)
        while left:
            # Whatever finished while the last batch was being stored is stored together:
            # one commit per wake-up, not per card, keeps the database off the critical path.
            done = [finished.get()]
            while True:
                try:
                    done.append(finished.get_nowait())
                except queue.Empty:
                    break
            left -= len(done)
            batch = [(futures[f], _outcome(f, writer)) for f in done]
            _store(engine, batch)
            for paper, result in batch:
                report.add(result)
                progress(result_line(paper, result))
                if not result.ok:
                    log.warning("card paper=%s failed attempts=%d error=%r", paper.key,
                                result.attempts, result.error)
    finally:
        # On an error here (the database went away) do not start the papers still queued.
        pool.shutdown(wait=True, cancel_futures=True)
    return report


def summarize_pending(
    engine: Engine,
    settings: Settings,
    *,
    writer: Writer | None = None,
    limit: int | None = None,
    paper_id: int | None = None,
    force: bool = False,
    progress: Progress = _quiet,
) -> SummarizeReport:
    """Write every pending card (or `limit` of them, newest papers first)."""
    own = writer is None
    writer = writer or writer_for(settings)
    try:
        with transaction(engine) as session:
            papers = pending_papers(
                session, limit=limit, paper_id=paper_id, force=force,
                upgrade_offline=writer.source == "llm", max_failures=settings.llm_max_failures,
            )
        if papers:
            progress(f"{len(papers)} paper{'s' if len(papers) != 1 else ''} to summarize with "
                     f"the {writer.source} writer ({writer.model})")
        report = write_cards(engine, writer, papers, progress=progress)
    finally:
        if own:
            writer.close()
    log.info("%s", report.line())
    return report


def summarize_configured(limit: int | None = None, paper_id: int | None = None,
                         progress: Progress = _quiet) -> SummarizeReport:
    """The scheduled job: read the environment, write the pending cards (or, re-run from
    the admin site, one paper's)."""
    from newsletter.config import settings as current_settings
    from newsletter.db import engine_for

    settings = current_settings()
    return summarize_pending(engine_for(settings.database_url), settings, limit=limit,
                             paper_id=paper_id, progress=progress)
