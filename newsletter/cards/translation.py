"""A card in another language: what a translation must look like, and its table's reads
and writes.

A card is written once in English and translated once per paper and language some reader
uses (the sweep is `translate.py`). Only the words are translated: key points, summary,
methodology, results, implications. The title stays as the authors wrote it and the
topics stay the English card's slugs (the site and the mail name them in the reader's
language), so neither is in the prompt's schema nor in the answer.

A translation is kept against `translation_source_hash` of the English text it was made
from: a rewritten card makes it stale, a stale one is never shown (`translations_for`
compares the hash on every read) and the next sweep translates the new text.

Pure parts: the draft, its schema, its checks, the prompt. Database parts: which
translations are pending, how an outcome is stored, which translations may be shown.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict
from pydantic import Field as PydanticField
from sqlalchemy import and_, or_, update
from sqlalchemy import select as select_rows
from sqlmodel import Session, select

from newsletter.cards.card import KEY_POINT_WORDS, WORD_LIMITS, Card, parse_json
from newsletter.cards.translation_table import CardTranslation
from newsletter.db import chunked
from newsletter.i18n import language_name
from newsletter.ingest.paper import Paper, listed
from newsletter.topics.taxonomy import current

TRANSLATION_PROMPT_VERSION = "translation-v2"
FIELDS = ("summary", "methodology", "results", "implications")


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _tidy(text: str) -> str:
    return " ".join(str(text).split())


def is_english(language: str) -> bool:
    return language.split("-", 1)[0].lower() == "en"


@dataclass(frozen=True)
class CardWords:
    """A card's words in one language: the English card's, which a translation renders,
    or a translation's, which a reader is shown."""

    key_points: tuple[str, ...]
    summary: str
    methodology: str
    results: str
    implications: str

    @classmethod
    def of(cls, card: Card) -> CardWords:
        return cls(tuple(card.key_points), card.summary, card.methodology, card.results,
                   card.implications)

    def as_json(self) -> dict[str, Any]:
        return {"key_points": list(self.key_points),
                **{name: getattr(self, name) for name in FIELDS}}


def translation_source_hash(card: Card | CardWords) -> str:
    """What a translation is made from; the title and topics are not part of it, since
    neither is translated."""
    words = card if isinstance(card, CardWords) else CardWords.of(card)
    text = json.dumps(words.as_json(), ensure_ascii=False, sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class TranslationDraft(BaseModel):
    """The structured answer: the card's words in the target language."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key_points: list[str] = PydanticField(
        description="The English key points translated, as many and in the same order.")
    summary: str = PydanticField(description="The summary translated.")
    methodology: str = PydanticField(description="The methodology translated.")
    results: str = PydanticField(description="The results translated.")
    implications: str = PydanticField(description="The implications translated.")


def translation_response_format() -> dict[str, Any]:
    """Strict structured output, as for cards (`prompt.response_format`); the number of key
    points is not in the schema (strict mode does not enforce it), `check_translation` is."""
    schema = TranslationDraft.model_json_schema()
    schema["additionalProperties"] = False
    schema["required"] = list(TranslationDraft.model_fields)
    return {"type": "json_schema",
            "json_schema": {"name": "card_translation", "strict": True, "schema": schema}}


@dataclass(frozen=True)
class TranslationJob:
    """One paper's English card to put into one language."""

    paper_id: int
    key: str
    title: str
    language: str
    source: CardWords
    announced_on: date | None = None

    @property
    def source_hash(self) -> str:
        return translation_source_hash(self.source)


_SYSTEM = """\
You translate the card of one paper in {field} in Paperwire, a daily research digest, \
from English into {name} for researchers in the field who read {name}. \
Translate faithfully: add nothing, drop nothing, keep every number, and keep LaTeX, code \
and the names of models, datasets, benchmarks and methods as written. Use the technical \
terms researchers writing in {name} use; keep an English term where that is what they \
say. Plain text, no Markdown. The title is given for context only: do not translate it.

Answer with JSON in the given schema: key_points with exactly {count} items, the English \
key points translated in the same order; summary, methodology, results and implications \
translated."""


def translation_messages(job: TranslationJob) -> list[dict[str, str]]:
    name = language_name(job.language, "en")
    system = _SYSTEM.format(name=name, count=len(job.source.key_points),
                            field=current().name or "science")
    user = (f"Title: {job.title}\nTranslate into: {name} ({job.language})\n\n"
            f"English card:\n{json.dumps(job.source.as_json(), ensure_ascii=False, indent=1)}")
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def parse_translation(content: str | None) -> TranslationDraft:
    return parse_json(content, TranslationDraft, "translation")


# Scripts written without spaces between words: their characters are counted instead,
# at about two Han or kana characters, or four Thai, Lao, Khmer or Burmese letters, to an
# English word.
_HAN_KANA = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_SOUTHEAST = re.compile(r"[\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff]")
# A translation may run longer than English (French and German do, by a fifth or so) but
# not shorter than this share of it: shorter is a summary of the text, or a cut answer.
LEAST_OF_SOURCE = 0.4
LONGER_THAN_CARDS = 1.5


def size(text: str) -> float:
    """A text's length in English-word equivalents, whatever its script."""
    han = len(_HAN_KANA.findall(text))
    southeast = len(_SOUTHEAST.findall(text))
    rest = _SOUTHEAST.sub(" ", _HAN_KANA.sub(" ", text))
    return len(rest.split()) + han / 2 + southeast / 4


@dataclass(frozen=True)
class CheckedTranslation:
    draft: TranslationDraft
    problems: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.problems


def _length_problem(name: str, text: str, english: str, most: int) -> str | None:
    got, source = size(text), size(english)
    if got < LEAST_OF_SOURCE * source or got > most * LONGER_THAN_CARDS:
        return f"{name} of {got:g} words for {source:g} in English"
    return None


def check_translation(draft: TranslationDraft, source: CardWords,
                      language: str) -> CheckedTranslation:
    """Tidy a translation and list what is wrong with it: the card's own length limits
    (WORD_LIMITS, KEY_POINT_WORDS) with room for languages that run longer, against the
    English text's own lengths, as many key points as the English card, nothing empty and
    nothing left in English."""
    points = [_tidy(p).lstrip("-*• ").strip() for p in draft.key_points]
    fields = {name: _tidy(getattr(draft, name)) for name in FIELDS}
    clean = TranslationDraft(key_points=points, **fields)
    problems: list[str] = []
    if len(points) != len(source.key_points):
        problems.append(f"{len(points)} key points instead of {len(source.key_points)}")
    else:
        for point, english in zip(points, source.key_points, strict=True):
            problem = _length_problem("a key point", point, english, KEY_POINT_WORDS[1])
            if problem:
                problems.append(problem)
                break
    for name in FIELDS:
        problem = _length_problem(name, fields[name], getattr(source, name),
                                  WORD_LIMITS[name][1])
        if problem:
            problems.append(problem)
    if not is_english(language):
        same = [name for name in FIELDS
                if fields[name].casefold() == _tidy(getattr(source, name)).casefold()]
        if points and [p.casefold() for p in points] == [
                _tidy(p).casefold() for p in source.key_points]:
            same.insert(0, "key_points")
        if same:
            problems.append(f"not translated: {', '.join(same)} as in English")
    return CheckedTranslation(clean, tuple(problems))


@dataclass(frozen=True)
class TranslationResult:
    """A translator's outcome for one job: a checked draft, or the error that ended it."""

    model: str
    prompt_version: str
    draft: TranslationDraft | None = None
    error: str | None = None
    attempts: int = 1
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float | None = 0.0

    @property
    def ok(self) -> bool:
        return self.draft is not None


def translations_for(session: Session, paper_ids: Iterable[int],
                     language: str) -> dict[int, CardWords]:
    """The translations a reader of `language` may be shown, by paper id: ok, and made
    from the card's current English text. Absent: the card is shown in English (English
    asked, no translation yet, a failed one, or one the card has outgrown).

    Read once per chunk of a send and language: rows, not ORM objects, and each card's
    text hashed once."""
    ids = sorted(set(paper_ids))
    if is_english(language) or not ids:
        return {}
    translations = CardTranslation.__table__  # type: ignore[attr-defined]
    cards = Card.__table__  # type: ignore[attr-defined]
    found: dict[int, CardWords] = {}
    for chunk in chunked(ids):
        rows = session.execute(
            select_rows(translations.c.paper_id, translations.c.source_hash,
                        translations.c.key_points, translations.c.summary,
                        translations.c.methodology, translations.c.results,
                        translations.c.implications, cards.c.key_points.label("card_key_points"),
                        cards.c.summary.label("card_summary"),
                        cards.c.methodology.label("card_methodology"),
                        cards.c.results.label("card_results"),
                        cards.c.implications.label("card_implications"))
            .join(cards, cards.c.paper_id == translations.c.paper_id)
            .where(translations.c.language == language, translations.c.status == "ok",
                   cards.c.status == "ok", translations.c.paper_id.in_(chunk))
        ).mappings()
        for row in rows:
            english = CardWords(tuple(row["card_key_points"]), row["card_summary"],
                                  row["card_methodology"], row["card_results"],
                                  row["card_implications"])
            if row["source_hash"] == translation_source_hash(english):
                found[row["paper_id"]] = CardWords(
                    tuple(row["key_points"]), row["summary"], row["methodology"],
                    row["results"], row["implications"])
    return found


def pending_translations(
    session: Session,
    languages: Sequence[str],
    *,
    limit: int | None = None,
    paper_id: int | None = None,
    max_failures: int = 5,
) -> list[TranslationJob]:
    """The (paper, language) pairs to translate, newest papers first.

    Pending: an ok LLM card with no translation in that language, a translation made from
    an older text of the card, or a failed one (until it failed `max_failures` sweeps in a
    row; naming the paper retries it anyway). Only LLM cards: an offline card is sentences
    picked from the abstract, and translating them with an LLM would make them LLM text
    while the site and the mail still call them the abstract's own words.

    The database narrows the candidates (no row, a card changed since the row was
    written, a failed row under the cap); the hash decides. A candidate whose card was
    touched without its words changing (a forced rewrite that failed) is marked as
    checked, as cards do with their papers.
    """
    wanted = [language for language in dict.fromkeys(languages) if not is_english(language)]
    now = _utcnow()
    jobs: list[TranslationJob] = []
    for language in wanted:
        query = (
            select(Card, Paper.key, Paper.title, Paper.announced_on, CardTranslation)
            .join(Paper, Paper.id == Card.paper_id)  # type: ignore[arg-type]
            .outerjoin(CardTranslation, and_(
                CardTranslation.paper_id == Card.paper_id,  # type: ignore[arg-type]
                CardTranslation.language == language))
            .where(Card.status == "ok", Card.source == "llm", listed())
        )
        named = paper_id is not None
        if named:
            query = query.where(Card.paper_id == paper_id)
        query = query.where(or_(
            CardTranslation.id.is_(None),  # type: ignore[union-attr]
            CardTranslation.updated_at < Card.updated_at,  # type: ignore[operator]
            and_(CardTranslation.status == "failed",
                 or_(CardTranslation.failures < max_failures, named)),
        )).order_by(Paper.announced_on.desc().nulls_last(),  # type: ignore[union-attr]
                    Paper.id.desc())  # type: ignore[union-attr]
        if limit is not None:
            query = query.limit(limit)
        settled: list[int] = []
        for card, key, title, announced_on, translation in session.exec(query):
            english = CardWords.of(card)
            current = (translation is not None
                       and translation.source_hash == translation_source_hash(english))
            if current and (translation.status == "ok"
                            or (translation.failures >= max_failures and not named)):
                settled.append(translation.id)
                continue
            jobs.append(TranslationJob(card.paper_id, key, title, language, english,
                                       announced_on))
        for chunk in chunked(settled):
            session.execute(update(CardTranslation)
                            .where(CardTranslation.id.in_(chunk))  # type: ignore[union-attr]
                            .values(updated_at=now))
    order = {language: i for i, language in enumerate(wanted)}
    jobs.sort(key=lambda j: (-(j.announced_on or date.min).toordinal(), -j.paper_id,
                             order[j.language]))
    return jobs[:limit] if limit is not None else jobs


def save_translation(session: Session, job: TranslationJob, result: TranslationResult,
                     now: datetime | None = None) -> CardTranslation | None:
    """Store an outcome as the paper's translation into `job.language` (an upsert on
    paper and language); None when the card was rewritten meanwhile and it is dropped.

    A failure never replaces a good translation of the same text; otherwise the row
    becomes `failed` (the reader gets the English card, marked as such) and a later sweep
    retries it. Spend adds up while the English text stays the same.
    """
    now = now or _utcnow()
    # The card may have been rewritten while the model was translating it: the result
    # then renders words the card no longer says, and the next sweep does the new text.
    card = session.exec(select(Card).where(Card.paper_id == job.paper_id)).first()
    if card is None or card.status != "ok" or translation_source_hash(card) != job.source_hash:
        return None
    row = session.exec(select(CardTranslation).where(
        CardTranslation.paper_id == job.paper_id,
        CardTranslation.language == job.language)).first()
    same_text = row is not None and row.source_hash == job.source_hash
    if row is None:
        row = CardTranslation(paper_id=job.paper_id, language=job.language,
                              source_hash=job.source_hash, status="failed",
                              model=result.model, prompt_version=result.prompt_version,
                              created_at=now)
    spent_in, spent_out, spent_cost = result.input_tokens, result.output_tokens, result.cost_usd
    if same_text:
        spent_in += row.input_tokens
        spent_out += row.output_tokens
        spent_cost = None if spent_cost is None or row.cost_usd is None \
            else spent_cost + row.cost_usd
    row.input_tokens, row.output_tokens, row.cost_usd = spent_in, spent_out, spent_cost
    row.attempts, row.updated_at = result.attempts, now
    if result.draft is not None:
        draft = result.draft
        row.key_points = list(draft.key_points)
        row.summary, row.methodology = draft.summary, draft.methodology
        row.results, row.implications = draft.results, draft.implications
        row.model, row.prompt_version = result.model, result.prompt_version
        row.source_hash, row.status = job.source_hash, "ok"
        row.failures, row.last_error = 0, None
    elif same_text and row.status == "ok":
        row.failures += 1
        row.last_error = result.error
    else:
        row.failures = row.failures + 1 if same_text else 1
        row.key_points = []
        row.summary = row.methodology = row.results = row.implications = ""
        row.model, row.prompt_version = result.model, result.prompt_version
        row.source_hash, row.status, row.last_error = job.source_hash, "failed", result.error
    session.add(row)
    session.flush()
    return row
