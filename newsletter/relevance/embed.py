"""Paper vectors: computed once per paper, again only when its text or the vector model changes.

Like cards, a vector is per paper, never per reader. Its text is `vectors.paper_text(title,
abstract)`; the vector records the hash of that text and the vector model it was made in
(the configured space, `embedders.space_for`). A run embeds the papers that have no vector,
whose vector is in another model (switching EMBEDDING_LOCAL_MODEL, EMBEDDING_MODEL,
EMBEDDING_DIMENSIONS or between them and offline re-embeds), or whose title or abstract
changed since (a new version with the same text keeps its vector).

Papers stream through in chunks, newest first: each chunk is read in one short
transaction, embedded outside any (by the configured `embedders.Embedder`), and stored in
another, so a crash or a provider failure keeps every vector stored so far and loses
nothing (the papers left are pending for the next run). OpenAI requests carry up to 256
texts, fewer when their tokens would exceed the per-request limit; a request's tokens and
cost are split over its papers in proportion to their text length, so each vector records
its share and the shares add up to what the provider billed. A request that fails for good
stops the run with a one-line error.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import scipy.sparse as sp
from sqlalchemy import Engine, Select, func, or_, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from newsletter.config import Settings
from newsletter.db import transaction
from newsletter.ingest.paper import Paper
from newsletter.relevance import vectors
from newsletter.relevance.embedders import (
    OPENAI_MAX_CHARS,
    Embedded,
    Embedder,
    EmbedError,
    VectorSpace,
    embedder_for,
    estimated_tokens,
)
from newsletter.relevance.tables import PaperVector

log = logging.getLogger(__name__)
Progress = Callable[[str], None]


def _utcnow() -> datetime:
    return datetime.now(UTC)


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass
class EmbedReport:
    space: str
    embedded: int = 0
    current: int = 0  # papers whose vector was already current
    failed: int = 0  # papers of the request that failed (pending for the next run)
    left: int = 0  # pending papers not tried: beyond --limit, or after a failure
    tokens: int = 0
    cost_usd: float | None = 0.0
    error: str | None = None
    calls: int = 0

    def add(self, embedded: Embedded, papers: int) -> None:
        self.embedded += papers
        self.tokens += embedded.tokens
        self.calls += embedded.calls
        if self.cost_usd is not None:
            self.cost_usd = None if embedded.cost_usd is None \
                else self.cost_usd + embedded.cost_usd

    def line(self) -> str:
        cost = "cost unknown" if self.cost_usd is None else f"${self.cost_usd:.4f}"
        left = f", {self.left:,} left" if self.left else ""
        return (f"embed: {self.embedded:,} paper{'s' if self.embedded != 1 else ''} embedded, "
                f"{self.current:,} current, {self.failed:,} failed{left}; "
                f"{self.tokens:,} tokens, {cost} ({self.space})")


@dataclass(frozen=True)
class PaperToEmbed:
    id: int
    text: str
    text_hash: str
    read_at: datetime = field(default_factory=_utcnow)


def batches(papers: Sequence[PaperToEmbed], max_inputs: int,
            max_tokens: int | None) -> Iterator[list[PaperToEmbed]]:
    """Consecutive groups of at most `max_inputs` papers and `max_tokens` estimated tokens
    (a single paper over the budget still goes, alone)."""
    group: list[PaperToEmbed] = []
    tokens = 0
    for paper in papers:
        size = estimated_tokens(paper.text[:OPENAI_MAX_CHARS])
        if group and (len(group) == max_inputs
                      or (max_tokens is not None and tokens + size > max_tokens)):
            yield group
            group, tokens = [], 0
        group.append(paper)
        tokens += size
    if group:
        yield group


def shares(total: int, weights: Sequence[int]) -> list[int]:
    """`total` split in proportion to `weights`, in whole units that add up to `total`
    (largest remainders get the leftover units)."""
    if not weights:
        return []
    whole = sum(weights)
    if whole <= 0:
        weights, whole = [1] * len(weights), len(weights)
    exact = [total * w / whole for w in weights]
    parts = [math.floor(x) for x in exact]
    order = sorted(range(len(exact)), key=lambda i: parts[i] - exact[i])
    for i in order[: total - sum(parts)]:
        parts[i] += 1
    return parts


def _pending_query(space: VectorSpace) -> Select:  # type: ignore[type-arg]
    return (
        select(Paper.id)
        .outerjoin(PaperVector, PaperVector.paper_id == Paper.id)  # type: ignore[arg-type]
        .where(or_(
            PaperVector.paper_id.is_(None),  # type: ignore[attr-defined]
            PaperVector.model != space.name,
            Paper.updated_at > PaperVector.checked_at,
        ))
    )


def _settle_unchanged(session: Session, space: VectorSpace, read_at: datetime) -> None:
    """Mark vectors whose paper was touched without a text change as checked.

    Ingest bumps a paper's `updated_at` for any change (a new category, a DOI); only a
    changed title or abstract needs a new vector.
    """
    rows = session.execute(
        select(PaperVector.paper_id, PaperVector.text_hash, Paper.title, Paper.abstract)
        .join(Paper, Paper.id == PaperVector.paper_id)  # type: ignore[arg-type]
        .where(PaperVector.model == space.name, Paper.updated_at > PaperVector.checked_at)
        .execution_options(yield_per=500)
    )
    same = [row.paper_id for row in rows
            if row.text_hash == text_hash(vectors.paper_text(row.title, row.abstract))]
    _mark_checked(session, same, read_at)


def _mark_checked(session: Session, paper_ids: Sequence[int], read_at: datetime) -> None:
    for start in range(0, len(paper_ids), 500):
        session.execute(update(PaperVector)
                        .where(PaperVector.paper_id.in_(paper_ids[start:start + 500]))  # type: ignore[attr-defined]
                        .values(checked_at=read_at))


def _read_chunk(session: Session, space: VectorSpace,
                paper_ids: Sequence[int]) -> tuple[list[PaperToEmbed], int]:
    """The chunk's papers that need a vector, in the given order, and how many turned out
    current after all (updated since the count, text unchanged: marked checked)."""
    read_at = _utcnow()
    rows = session.execute(
        select(Paper.id, Paper.title, Paper.abstract, PaperVector.model, PaperVector.text_hash)
        .outerjoin(PaperVector, PaperVector.paper_id == Paper.id)  # type: ignore[arg-type]
        .where(Paper.id.in_(paper_ids))  # type: ignore[union-attr]
    ).all()
    by_id = {row.id: row for row in rows}
    papers, current = [], []
    for paper_id in paper_ids:
        row = by_id.get(paper_id)
        if row is None:
            continue
        text = vectors.paper_text(row.title, row.abstract)
        digest = text_hash(text)
        if row.model == space.name and row.text_hash == digest:
            current.append(paper_id)
            continue
        papers.append(PaperToEmbed(paper_id, text, digest, read_at))
    _mark_checked(session, current, read_at)
    return papers, len(current)


def _save(session: Session, space: VectorSpace, papers: Sequence[PaperToEmbed],
          embedded: Embedded) -> None:
    existing = {v.paper_id: v for v in session.exec(
        select(PaperVector).where(PaperVector.paper_id.in_([p.id for p in papers])))}  # type: ignore[attr-defined]
    tokens = shares(embedded.tokens, [len(p.text) for p in papers])
    now = _utcnow()
    for paper, data, spent in zip(papers, embedded.vectors, tokens, strict=True):
        values = {
            "model": space.name, "dims": space.dims, "text_hash": paper.text_hash,
            "data": data, "input_tokens": spent,
            "cost_usd": (None if embedded.cost_usd is None else
                         embedded.cost_usd * spent / embedded.tokens if embedded.tokens
                         else 0.0),
            "checked_at": paper.read_at, "created_at": now,
        }
        vector = existing.get(paper.id)
        if vector is None:
            session.add(PaperVector(paper_id=paper.id, **values))
            continue
        for name, value in values.items():
            setattr(vector, name, value)
    session.flush()


def _store(engine: Engine, space: VectorSpace, papers: Sequence[PaperToEmbed],
           embedded: Embedded) -> None:
    try:
        with transaction(engine) as session:
            _save(session, space, papers, embedded)
    except IntegrityError:
        # Another run inserted one of these vectors between our read and our insert: the
        # primary key caught it; store ours over theirs.
        with transaction(engine) as session:
            _save(session, space, papers, embedded)


def _chunks(items: Sequence[int], size: int) -> Iterable[Sequence[int]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def embed_pending(
    engine: Engine,
    settings: Settings,
    *,
    embedder: Embedder | None = None,
    limit: int | None = None,
    progress: Progress = lambda _: None,
) -> EmbedReport:
    """Compute and store the vector of every paper that needs one (or `limit` of them,
    newest papers first)."""
    own = embedder is None
    embedder = embedder or embedder_for(settings)
    space = embedder.space
    report = EmbedReport(space=space.name)
    try:
        with transaction(engine) as session:
            _settle_unchanged(session, space, _utcnow())
            pending = session.execute(
                select(func.count()).select_from(_pending_query(space).subquery())).scalar_one()
            papers = session.execute(select(func.count()).select_from(Paper)).scalar_one()
            order = (Paper.announced_on.desc().nulls_last(), Paper.id.desc())  # type: ignore[union-attr]
            todo = list(session.execute(
                _pending_query(space).order_by(*order).limit(limit)).scalars())
        report.current = papers - pending
        report.left = pending - len(todo)
        if todo:
            progress(f"{len(todo):,} paper{'s' if len(todo) != 1 else ''} to embed "
                     f"({space.name})")
        handled = 0  # of `todo`: embedded, failed, or found current after all
        for chunk in _chunks(todo, embedder.batch_inputs):
            with transaction(engine) as session:
                papers_to_embed, current = _read_chunk(session, space, chunk)
            report.current += current
            handled += len(chunk) - len(papers_to_embed)
            for batch in batches(papers_to_embed, embedder.batch_inputs, embedder.batch_tokens):
                try:
                    embedded = embedder.embed([p.text for p in batch])
                except EmbedError as exc:
                    # The provider is refusing or away: the next request would fare no
                    # better. Stop; these papers and the rest wait for the next run.
                    report.calls += exc.calls
                    report.failed = len(batch)
                    report.left += len(todo) - handled - len(batch)
                    report.error = (f"a request for {len(batch)} paper"
                                    f"{'s' if len(batch) != 1 else ''} failed after {exc.calls} "
                                    f"call{'s' if exc.calls != 1 else ''}: {exc}")
                    log.warning("embed failed papers=%d calls=%d error=%r", len(batch),
                                exc.calls, str(exc))
                    return report
                _store(engine, space, batch, embedded)
                report.add(embedded, len(batch))
                handled += len(batch)
                progress(f"{report.embedded:,} papers embedded ({handled:,} of {len(todo):,})")
    finally:
        if own:
            embedder.close()
    log.info("%s", report.line())
    return report


def vectors_for(session: Session, paper_ids: Iterable[int],
                space: VectorSpace) -> tuple[list[int], sp.csr_matrix]:
    """The stored vectors of these papers in `space`: the ids that have one (in the order
    given) and their rows, one per id. A paper without a vector in this space (not embedded
    yet, or embedded in another model) is left out; one whose text changed since keeps its
    previous vector until the next run replaces it."""
    wanted = list(dict.fromkeys(paper_ids))
    found: dict[int, bytes] = {}
    for chunk in _chunks(wanted, 500):
        found.update((row.paper_id, row.data) for row in session.execute(
            select(PaperVector.paper_id, PaperVector.data)
            .where(PaperVector.paper_id.in_(chunk),  # type: ignore[attr-defined]
                   PaperVector.model == space.name)))
    ids = [paper_id for paper_id in wanted if paper_id in found]
    return ids, vectors.stack([found[paper_id] for paper_id in ids], space.dims)
