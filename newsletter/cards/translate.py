"""Cards into the readers' languages: one call per paper and language in use, never per reader.

After a sweep writes its English cards (`summarize.py`), the same sweep translates every
LLM card that lacks a current translation into each language some confirmed reader reads
(the caller names them: this step knows no readers). The cost therefore grows with papers
x languages in use; a language nobody reads costs nothing, and without OPENAI_API_KEY
nothing is translated at all (there are no LLM cards to translate either).

The translator is an `LLMCaller` like the card writer: the same client, retries, waits
on 429 and failure rules, with its own prompt, schema and checks (`translation.py`).
Results are stored one small transaction per batch as they arrive; a failed translation
is stored as `failed` (readers of that language get the English card, marked as such)
and retried by later sweeps up to LLM_MAX_FAILURES runs in a row.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from openai import OpenAI
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError

from newsletter.cards.llm_writer import LLMCaller, Rejected, Throttle
from newsletter.cards.pool import finished_batches
from newsletter.cards.price import tally
from newsletter.cards.translation import (
    TRANSLATION_PROMPT_VERSION,
    TranslationDraft,
    TranslationJob,
    TranslationResult,
    check_translation,
    parse_translation,
    pending_translations,
    save_translation,
    translation_messages,
    translation_response_format,
    translation_source_hash,
    translations_for,
)
from newsletter.config import Settings
from newsletter.db import transaction

__all__ = ["TranslateReport", "Translator", "translate_pending", "translation_source_hash",
           "translations_for"]

log = logging.getLogger(__name__)
Progress = Callable[[str], None]

# A translation is the card's ~350 words again, and most languages take more tokens per
# word than English (Chinese, Russian or Hindi two to three times as many).
TRANSLATION_MAX_TOKENS = 3000


def _quiet(_: str) -> None:
    pass


class Translator(LLMCaller):
    """Translates English cards with the `openai` client; safe from many threads at once."""

    prompt_version = TRANSLATION_PROMPT_VERSION

    def __init__(self, settings: Settings, *, client: OpenAI | None = None,
                 throttle: Throttle | None = None) -> None:
        super().__init__(settings, client=client, throttle=throttle)
        self._response_format = translation_response_format()

    def translate(self, job: TranslationJob) -> TranslationResult:
        def accept(content: str | None) -> TranslationDraft:
            checked = check_translation(parse_translation(content), job.source, job.language)
            if not checked.ok:
                raise Rejected("invalid translation: " + "; ".join(checked.problems))
            return checked.draft

        answer = self.ask(translation_messages(job), self._response_format, accept,
                          max_tokens=TRANSLATION_MAX_TOKENS)
        return TranslationResult(
            model=self.model, prompt_version=self.prompt_version, draft=answer.value,
            error=answer.error, attempts=answer.attempts, input_tokens=answer.input_tokens,
            output_tokens=answer.output_tokens,
            cost_usd=self.cost(answer.input_tokens, answer.output_tokens))


@dataclass
class LanguageSpend:
    written: int = 0
    failed: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float | None = 0.0


@dataclass
class TranslateReport:
    """What a sweep translated, per language and in all."""

    model: str
    languages: tuple[str, ...] = ()
    pending: int = 0
    # Done, but not stored: the English card was rewritten during the call.
    outdated: int = 0
    by_language: dict[str, LanguageSpend] = field(default_factory=dict)

    def add(self, job: TranslationJob, result: TranslationResult, stored: bool = True) -> None:
        if not stored:
            self.outdated += 1  # paid for all the same
        tally(self.by_language.setdefault(job.language, LanguageSpend()), result,
              counted=stored)

    @property
    def written(self) -> int:
        return sum(s.written for s in self.by_language.values())

    @property
    def failed(self) -> int:
        return sum(s.failed for s in self.by_language.values())

    @property
    def input_tokens(self) -> int:
        return sum(s.input_tokens for s in self.by_language.values())

    @property
    def output_tokens(self) -> int:
        return sum(s.output_tokens for s in self.by_language.values())

    @property
    def cost_usd(self) -> float | None:
        costs = [s.cost_usd for s in self.by_language.values()]
        return None if None in costs else sum(c or 0.0 for c in costs)

    def line(self) -> str:
        def money(cost: float | None) -> str:
            return "cost unknown" if cost is None else f"${cost:.4f}"

        # In the order the languages were asked for, not the order results came in.
        order = {language: i for i, language in enumerate(self.languages)}
        spends = sorted(self.by_language.items(), key=lambda kv: order.get(kv[0], len(order)))
        each = ", ".join(f"{lang} {s.written}" for lang, s in spends)
        spent = ", ".join(f"{lang} {s.input_tokens}+{s.output_tokens} tokens "
                          f"{money(s.cost_usd)}" for lang, s in spends)
        return (f"translate: {self.written} translation{'s' * (self.written != 1)} written"
                f"{f' ({each})' if each else ''}, {self.failed} failed; {self.input_tokens} "
                f"input + {self.output_tokens} output tokens, {money(self.cost_usd)}"
                f"{f' ({spent})' if spent else ''} ({self.model})")

    def as_dict(self) -> dict[str, Any]:
        return {"line": self.line(), "written": self.written, "failed": self.failed,
                "input_tokens": self.input_tokens, "output_tokens": self.output_tokens,
                "cost_usd": self.cost_usd,
                "languages": {lang: vars(s).copy() for lang, s in self.by_language.items()}}


def result_line(job: TranslationJob, result: TranslationResult) -> str:
    if result.ok:
        tokens = result.input_tokens + result.output_tokens
        return (f"translation {job.key} {job.language}: {tokens} tokens, {result.attempts} "
                f"call{'s' * (result.attempts > 1)}")
    return (f"translation {job.key} {job.language}: FAILED after {result.attempts} calls: "
            f"{result.error}; its readers get the English card")


def _store(engine: Engine,
           batch: list[tuple[TranslationJob, TranslationResult]]) -> list[bool]:
    """Store a batch; for each, whether it was (not: its card changed meanwhile)."""
    def save() -> list[bool]:
        with transaction(engine) as session:
            return [save_translation(session, job, result) is not None
                    for job, result in batch]

    try:
        return save()
    except IntegrityError:
        # Another sweep inserted one of these rows between our read and our insert: the
        # unique (paper, language) caught it; store ours over theirs.
        return save()


def translate_pending(
    engine: Engine,
    settings: Settings,
    languages: Sequence[str],
    *,
    translator: Translator | None = None,
    limit: int | None = None,
    paper_id: int | None = None,
    progress: Progress = _quiet,
) -> TranslateReport:
    """Translate every pending (paper, language) pair, `llm_concurrency` at a time, and
    store each result as it arrives. Without an API key (and no translator given), or
    with no language but English, nothing is called."""
    report = TranslateReport(model=settings.openai_model, languages=tuple(languages))
    if not languages or (translator is None and not settings.openai_api_key):
        return report
    with transaction(engine) as session:
        jobs = pending_translations(session, languages, limit=limit, paper_id=paper_id,
                                    max_failures=settings.llm_max_failures)
    report.pending = len(jobs)
    if not jobs:
        return report
    counts = Counter(job.language for job in jobs)
    progress(f"{len(jobs)} translation{'s' * (len(jobs) != 1)} to write ("
             + ", ".join(f"{lang} {n}" for lang, n in counts.items()) + ")")
    own = translator is None
    translator = translator or Translator(settings)
    report.model = translator.model

    def crashed(_: TranslationJob, exc: Exception) -> TranslationResult:
        return TranslationResult(model=translator.model, prompt_version=translator.prompt_version,
                                 error=f"translator crashed: {exc!r}")

    try:
        for batch in finished_batches(jobs, translator.translate, crashed,
                                      concurrency=translator.concurrency, name="translator"):
            stored = _store(engine, batch)
            for (job, result), kept in zip(batch, stored, strict=True):
                report.add(job, result, kept)
                progress(result_line(job, result) if kept else
                         f"translation {job.key} {job.language}: not stored, its English "
                         "card was rewritten meanwhile (the next sweep translates it)")
                if not result.ok:
                    log.warning("translation paper=%s language=%s failed attempts=%d "
                                "error=%r", job.key, job.language, result.attempts, result.error)
    finally:
        if own:
            translator.close()
    log.info("%s", report.line())
    return report
