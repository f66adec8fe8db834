"""Pending papers into cards: pick the writer, run many papers at once, store each result;
then the same sweep translates the cards into the languages readers use.

Writers run in a thread pool (LLM calls spend their time waiting on the network); results
are stored one small transaction at a time, from this thread, as they arrive, so a crash
keeps every card written so far and SQLite never sees two writers (`pool.py`).

Translations (`translate.py`) come after the cards, sharing the writer's client and rate
limit, so a card written by this sweep is translated by it too. Which languages is the
caller's word: this step knows no readers (`readers.subscriber.languages_in_use`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError

from newsletter.cards.card import PaperText, WriteResult, pending_papers, save_results
from newsletter.cards.pool import finished_batches
from newsletter.cards.price import tally
from newsletter.config import Settings
from newsletter.db import transaction

if TYPE_CHECKING:
    from newsletter.cards.translate import TranslateReport

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
    # The sweep's translations; None when none were asked for or possible (no API key).
    translations: TranslateReport | None = None

    def add(self, result: WriteResult) -> None:
        tally(self, result)

    def line(self) -> str:
        cost = "cost unknown (set LLM_PRICE_INPUT/LLM_PRICE_OUTPUT)" if self.cost_usd is None \
            else f"${self.cost_usd:.4f}"
        return (f"summarize: {self.written} card{'s' if self.written != 1 else ''} written, "
                f"{self.failed} failed; {self.input_tokens} input + {self.output_tokens} output "
                f"tokens, {cost} ({self.source} writer, {self.model})")

    def lines(self) -> list[str]:
        """The cards' line, then the translations' when the sweep had any to do."""
        extra = [self.translations.line()] if self.translations and self.translations.pending \
            else []
        return [self.line(), *extra]


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


def write_cards(
    engine: Engine, writer: Writer, papers: list[PaperText], *, progress: Progress = _quiet
) -> SummarizeReport:
    """Write and store a card for each paper, `writer.concurrency` at a time."""
    report = SummarizeReport(source=writer.source, model=writer.model, pending=len(papers))

    def crashed(_: PaperText, exc: Exception) -> WriteResult:
        return WriteResult(source=writer.source, model=writer.model,  # type: ignore[arg-type]
                           prompt_version=writer.prompt_version,
                           error=f"writer crashed: {exc!r}")

    for batch in finished_batches(papers, writer.write, crashed,
                                  concurrency=writer.concurrency, name="card-writer"):
        _store(engine, batch)
        for paper, result in batch:
            report.add(result)
            progress(result_line(paper, result))
            if not result.ok:
                log.warning("card paper=%s failed attempts=%d error=%r", paper.key,
                            result.attempts, result.error)
    return report


def _translate(engine: Engine, settings: Settings, writer: Writer, languages: Sequence[str],
               limit: int | None, paper_id: int | None,
               progress: Progress) -> TranslateReport | None:
    from newsletter.cards.llm_writer import LLMCaller
    from newsletter.cards.translate import Translator, translate_pending

    if isinstance(writer, LLMCaller):
        # One account, one rate limit: a 429 on a card holds the translations too.
        translator: Translator | None = Translator(settings, client=writer.client,
                                                   throttle=writer.throttle)
    elif settings.openai_api_key:
        translator = None
    else:
        progress(f"cards stay in English for {', '.join(languages)} readers: translating "
                 "needs OPENAI_API_KEY")
        return None
    return translate_pending(engine, settings, languages, translator=translator,
                             limit=None if limit is None else limit * len(languages),
                             paper_id=paper_id, progress=progress)


def summarize_pending(
    engine: Engine,
    settings: Settings,
    *,
    writer: Writer | None = None,
    limit: int | None = None,
    paper_id: int | None = None,
    force: bool = False,
    languages: Sequence[str] = (),
    progress: Progress = _quiet,
) -> SummarizeReport:
    """Write every pending card (or `limit` of them, newest papers first), then translate
    every LLM card that needs it into `languages` (English aside; at most `limit` papers'
    worth per language)."""
    own = writer is None
    writer = writer or writer_for(settings)
    languages = [language for language in languages if language != "en"]
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
        if languages:
            report.translations = _translate(engine, settings, writer, languages, limit,
                                             paper_id, progress)
    finally:
        if own:
            writer.close()
    for line in report.lines():
        log.info("%s", line)
    return report


def summarize_configured(limit: int | None = None, paper_id: int | None = None,
                         progress: Progress = _quiet,
                         languages: Sequence[str] = ()) -> SummarizeReport:
    """The scheduled job: read the environment, write the pending cards (or, re-run from
    the admin site, one paper's) and translate them into `languages`."""
    from newsletter.config import settings as current_settings
    from newsletter.db import engine_for

    settings = current_settings()
    return summarize_pending(engine_for(settings.database_url), settings, limit=limit,
                             paper_id=paper_id, languages=languages, progress=progress)
