"""A card: what the LLM (or the offline writer) says about one paper, stored once per paper.

Pure parts: the draft an answer must parse into, its validation, the text hash and the
public JSON shape. Database parts: which papers are pending and how a result is stored.
A card is kept per paper, not per version: a new version with the same title and abstract
keeps its card, a changed text gets the card rewritten in place.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic import Field as PydanticField
from sqlalchemy import JSON, Column, DateTime, ForeignKey, Integer, Text, and_, or_, update
from sqlmodel import Field, Session, SQLModel, select

from newsletter.ingest.paper import Paper, listed
from newsletter.topics.taxonomy import MAX_TOPICS, current, known_topics

KEY_POINTS = 4
Source = Literal["llm", "offline"]
M = TypeVar("M", bound=BaseModel)


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Card(SQLModel, table=True):
    __tablename__ = "cards"

    id: int | None = Field(default=None, primary_key=True)
    paper_id: int = Field(
        sa_column=Column(Integer, ForeignKey("papers.id", ondelete="CASCADE"), nullable=False,
                         unique=True)
    )
    topics: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    key_points: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    summary: str = Field(default="", sa_type=Text)
    methodology: str = Field(default="", sa_type=Text)
    results: str = Field(default="", sa_type=Text)
    implications: str = Field(default="", sa_type=Text)
    source: str = Field(max_length=16)
    model: str = Field(max_length=200)
    prompt_version: str = Field(max_length=32)
    # Spend on the current text, retries and failed runs included; reset when the text changes.
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float | None = None
    text_hash: str = Field(max_length=64)
    status: str = Field(max_length=16, index=True)
    attempts: int = 0  # calls made by the run that produced this row
    failures: int = 0  # failed runs in a row for this text; caps the sweep's retries
    last_error: str | None = Field(default=None, sa_type=Text)
    # When the paper was last read for this card: a paper updated after it is re-checked.
    checked_at: datetime = Field(default_factory=_utcnow, sa_type=DateTime(timezone=True))
    created_at: datetime = Field(default_factory=_utcnow, sa_type=DateTime(timezone=True))
    updated_at: datetime = Field(default_factory=_utcnow, sa_type=DateTime(timezone=True))


class CardDraft(BaseModel):
    """The structured answer: the LLM's JSON, or what the offline writer builds."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    topics: list[str] = PydanticField(
        description="1 to 3 taxonomy slugs, most relevant first.")
    key_points: list[str] = PydanticField(
        description="Exactly 4 bullets, one sentence of about 12 words each.")
    summary: str = PydanticField(description="About 150 words.")
    methodology: str = PydanticField(description="About 55 words.")
    results: str = PydanticField(description="About 45 words.")
    implications: str = PydanticField(description="About 45 words.")


def card_schema() -> dict[str, Any]:
    """The strict JSON schema of a draft, topics restricted to the taxonomy's slugs.

    Counts and lengths are not in the schema (strict mode does not enforce them everywhere);
    `check_draft` does.
    """
    schema = CardDraft.model_json_schema()
    schema["properties"]["topics"]["items"] = {"type": "string", "enum": list(current().slugs)}
    schema["additionalProperties"] = False
    schema["required"] = list(CardDraft.model_fields)
    return schema


# Words per field: (minimum for an LLM answer, maximum for anyone). The minimums catch
# truncated or lazy answers; the offline writer is bound by the abstract's own length.
WORD_LIMITS: dict[str, tuple[int, int]] = {
    "summary": (40, 300),
    "methodology": (10, 150),
    "results": (8, 150),
    "implications": (8, 150),
}
KEY_POINT_WORDS = (3, 40)


@dataclass(frozen=True)
class Checked:
    draft: CardDraft
    problems: tuple[str, ...] = ()
    # True when the only thing wrong is that no topic is in the taxonomy.
    only_topics: bool = False

    @property
    def ok(self) -> bool:
        return not self.problems


def _words(text: str) -> int:
    return len(text.split())


def _tidy(text: str) -> str:
    return " ".join(str(text).split())


def check_draft(draft: CardDraft, *, llm: bool = True) -> Checked:
    """Normalize a draft and list what is wrong with it.

    Repairs what is safe to repair (unknown topics dropped, more than 3 topics or 4 key
    points cut, whitespace tidied); reports the rest.
    """
    topics = known_topics(draft.topics)[:MAX_TOPICS]
    points = [_tidy(p).lstrip("-*• ").strip() for p in draft.key_points]
    points = [p for p in points if p][:KEY_POINTS]
    fields = {name: _tidy(getattr(draft, name)) for name in WORD_LIMITS}
    clean = CardDraft(topics=topics, key_points=points, **fields)

    problems: list[str] = []
    topic_problem = not topics
    if topic_problem:
        offered = ", ".join(str(t) for t in draft.topics[:5]) or "none"
        problems.append(f"no topic from the taxonomy (got: {offered})")
    if len(points) < KEY_POINTS:
        problems.append(f"{len(points)} key points instead of {KEY_POINTS}")
    low, high = KEY_POINT_WORDS
    for point in points:
        if not (low if llm else 1) <= _words(point) <= high:
            problems.append(f"a key point of {_words(point)} words")
            break
    for name, (least, most) in WORD_LIMITS.items():
        count = _words(fields[name])
        if count < (least if llm else 1) or count > most:
            problems.append(f"{name} of {count} words")
    return Checked(draft=clean, problems=tuple(problems),
                   only_topics=topic_problem and len(problems) == 1)


class AnswerError(ValueError):
    """The model's answer is not a card."""


_FENCE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.DOTALL)


def parse_json(content: str | None, model: type[M], what: str) -> M:
    """The `model` in a model's message content; AnswerError when it is not valid JSON of
    it (`what` names the schema in the error: "card", "translation")."""
    if not content or not content.strip():
        raise AnswerError("empty answer")
    # Some OpenAI-compatible servers wrap JSON in a Markdown fence despite the schema.
    fenced = _FENCE.match(content)
    text = fenced.group(1) if fenced else content
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise AnswerError(f"invalid JSON ({exc.msg} at char {exc.pos})") from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "answer"
        raise AnswerError(f"JSON not in the {what} schema ({where}: {first['msg']})") from None


def parse_answer(content: str | None) -> CardDraft:
    """The draft in a model's message content; AnswerError when it is not valid JSON of it."""
    return parse_json(content, CardDraft, "card")


def text_hash(title: str, abstract: str) -> str:
    """What a card is written from; whitespace-only edits do not change it."""
    text = _tidy(title) + "\n\n" + _tidy(abstract)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class PaperText:
    """What a writer gets: the text of one paper, as read at `read_at`."""

    id: int
    key: str
    title: str
    abstract: str
    categories: tuple[str, ...] = ()
    read_at: datetime = field(default_factory=_utcnow)

    @property
    def text_hash(self) -> str:
        return text_hash(self.title, self.abstract)


@dataclass(frozen=True)
class WriteResult:
    """One writer's outcome for one paper: a valid draft, or the error that ended it."""

    source: Source
    model: str
    prompt_version: str
    draft: CardDraft | None = None
    error: str | None = None
    attempts: int = 1
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float | None = 0.0

    @property
    def ok(self) -> bool:
        return self.draft is not None


def card_json(card: Card | None) -> dict[str, Any] | None:
    """The public shape of a card; None when there is no usable one (none yet, or failed)."""
    if card is None or card.status != "ok":
        return None
    return {
        "topics": list(card.topics),
        "key_points": list(card.key_points),
        "summary": card.summary,
        "methodology": card.methodology,
        "results": card.results,
        "implications": card.implications,
        "source": card.source,
        "model": card.model,
    }


def cards_for(session: Session, paper_ids: Iterable[int]) -> dict[int, Card]:
    """Each paper's card, by paper id (papers without one are absent)."""
    ids = list(paper_ids)
    found: dict[int, Card] = {}
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        for card in session.exec(select(Card).where(Card.paper_id.in_(chunk))):  # type: ignore[attr-defined]
            found[card.paper_id] = card
    return found


def find_paper(session: Session, ref: str) -> Paper | None:
    """A paper by key or arXiv id (a version suffix or `arXiv:` prefix is ignored) or row id."""
    ref = ref.strip().removeprefix("arXiv:").removeprefix("arxiv:")
    unversioned = re.sub(r"v\d+$", "", ref)
    for candidate in dict.fromkeys((ref, unversioned)):
        paper = session.exec(select(Paper).where(
            or_(Paper.key == candidate, Paper.arxiv_id == candidate))).first()
        if paper is not None:
            return paper
    return session.get(Paper, int(ref)) if ref.isdigit() else None


def _paper_text(row: Any, read_at: datetime) -> PaperText:
    return PaperText(id=row.id, key=row.key, title=row.title, abstract=row.abstract,
                     categories=tuple(row.categories or ()), read_at=read_at)


def _settle_unchanged(session: Session, read_at: datetime) -> None:
    """Mark cards whose paper was touched without a text change as checked.

    Ingest bumps a paper's `updated_at` for any change (a new category, a DOI); only a
    changed title or abstract needs a new card.
    """
    rows = session.execute(
        select(Card.id, Card.text_hash, Paper.title, Paper.abstract)
        .join(Paper, Paper.id == Card.paper_id)  # type: ignore[arg-type]
        .where(Paper.updated_at > Card.checked_at)
    ).all()
    same = [row.id for row in rows if row.text_hash == text_hash(row.title, row.abstract)]
    for start in range(0, len(same), 500):
        session.execute(update(Card).where(Card.id.in_(same[start : start + 500]))  # type: ignore[union-attr]
                        .values(checked_at=read_at))


def pending_papers(
    session: Session,
    *,
    limit: int | None = None,
    paper_id: int | None = None,
    force: bool = False,
    upgrade_offline: bool = False,
    max_failures: int = 5,
) -> list[PaperText]:
    """The papers that need a card written, newest first.

    Pending: no card yet; a card written from another title or abstract; a failed card
    (until it failed `max_failures` sweeps in a row; naming the paper retries it anyway);
    with `upgrade_offline`, an offline card that an LLM can now replace. `force` takes
    every paper (or the named one). Only listed papers: one fetched for a reader's liked
    papers is shown nowhere, so a card for it would be written for nobody.
    """
    read_at = _utcnow()
    query = select(Paper.id, Paper.key, Paper.title, Paper.abstract, Paper.categories).outerjoin(
        Card, Card.paper_id == Paper.id  # type: ignore[arg-type]
    ).where(listed())
    if paper_id is not None:
        query = query.where(Paper.id == paper_id)
    if not force:
        _settle_unchanged(session, read_at)
        retry_cap = paper_id is not None
        conditions = [
            Card.id.is_(None),  # type: ignore[union-attr]
            Paper.updated_at > Card.checked_at,
            and_(Card.status == "failed", or_(Card.failures < max_failures, retry_cap)),
        ]
        if upgrade_offline:
            conditions.append(and_(Card.status == "ok", Card.source == "offline",
                                   or_(Card.failures < max_failures, retry_cap)))
        query = query.where(or_(*conditions))
    query = query.order_by(Paper.announced_on.desc().nulls_last(), Paper.id.desc())  # type: ignore[union-attr]
    if limit is not None:
        query = query.limit(limit)
    return [_paper_text(row, read_at) for row in session.execute(query)]


def save_results(session: Session, results: Sequence[tuple[PaperText, WriteResult]]) -> None:
    """Store writers' outcomes as their papers' cards (one read for the whole batch).

    A failure never destroys a good card for the same text (a forced rewrite or an offline
    card's upgrade that fails keeps what was there); otherwise the card becomes `failed`,
    so digests fall back to the abstract and the next sweep retries it.
    """
    existing = cards_for(session, [paper.id for paper, _ in results])
    now = _utcnow()
    for paper, result in results:
        session.add(apply_result(existing.get(paper.id), paper, result, now))
    session.flush()


def apply_result(card: Card | None, paper: PaperText, result: WriteResult,
                 now: datetime) -> Card:
    """The paper's card after a writer's outcome (see `save_results` for the rules)."""
    same_text = card is not None and card.text_hash == paper.text_hash
    if card is None:
        card = Card(paper_id=paper.id, source=result.source, model=result.model,
                    prompt_version=result.prompt_version, text_hash=paper.text_hash,
                    status="failed", created_at=now)
    spent_in, spent_out = result.input_tokens, result.output_tokens
    spent_cost = result.cost_usd
    if same_text:
        spent_in += card.input_tokens
        spent_out += card.output_tokens
        spent_cost = (None if spent_cost is None or card.cost_usd is None
                      else spent_cost + card.cost_usd)
    card.input_tokens, card.output_tokens, card.cost_usd = spent_in, spent_out, spent_cost
    card.attempts = result.attempts
    card.checked_at = paper.read_at
    card.updated_at = now

    if result.draft is not None:
        draft = result.draft
        card.topics, card.key_points = list(draft.topics), list(draft.key_points)
        card.summary, card.methodology = draft.summary, draft.methodology
        card.results, card.implications = draft.results, draft.implications
        card.source, card.model = result.source, result.model
        card.prompt_version, card.text_hash = result.prompt_version, paper.text_hash
        card.status, card.failures, card.last_error = "ok", 0, None
    elif same_text and card.status == "ok":
        card.failures += 1
        card.last_error = result.error
    else:
        card.failures = card.failures + 1 if same_text else 1
        card.topics, card.key_points = [], []
        card.summary = card.methodology = card.results = card.implications = ""
        card.source, card.model = result.source, result.model
        card.prompt_version, card.text_hash = result.prompt_version, paper.text_hash
        card.status, card.last_error = "failed", result.error
    return card

