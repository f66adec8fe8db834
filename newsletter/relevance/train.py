"""A reader's model trained from what they told us, stored, and read back for a send.

`retrain` trains one reader's model (`model.train`) from their description, the papers
they like and their ratings, and stores it in `reader_models` (a few KB), or deletes it
when there is nothing to go on. A send reads the models of a chunk of readers in one
query (`stored_models`).

Vectors live in the configured space (`embedders.space_for`). A paper's is its stored
vector; without one yet, it is computed on the spot in the offline space (free), and left
out with OpenAI or a local model until the embed run has stored it. The description's
vector is kept with the model, so a rating never waits on an embedder: only a new
description, or a new vector model, is embedded again. Each model's start is centred on
the newest papers' vectors (`reference_papers`), so that in any space the typical paper
starts unlikely.
`retrain_outdated`, run after each embed run, trains again every reader whose model is
older than its inputs: papers that have since got vectors, a description OpenAI could not
embed at the time, a switch of vector model.

Functions that take a Session change state; the caller owns the transaction.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import NamedTuple

import scipy.sparse as sp
from sqlalchemy import Engine, delete, func, select
from sqlmodel import Session

from newsletter.config import Settings
from newsletter.db import among, aware, transaction, upsert
from newsletter.ingest.paper import Paper, listed
from newsletter.readers.tables import Preferences
from newsletter.relevance import liked, model, vectors
from newsletter.relevance.embed import EmbedReport, embed_pending, vectors_for
from newsletter.relevance.embedders import EmbedError, VectorSpace, embedder_for, space_for
from newsletter.relevance.library import store as library_store
from newsletter.relevance.library import sweep as library_sweep
from newsletter.relevance.model import ReaderModel
from newsletter.relevance.tables import PaperVector, Rating, ReaderModelRow

log = logging.getLogger(__name__)

_IN_CHUNK = 5000  # ids per IN list on SQLite (it binds each one)
_RETRAIN_BATCH = 200  # readers per transaction (and per description request) in a sweep
REFERENCE_PAPERS = 500  # the newest papers a model's start is centred on (model.train)


def current_settings() -> Settings:
    from newsletter.config import settings

    return settings()


@dataclass(frozen=True)
class _Inputs:
    description: str | None
    liked: list[int]  # paper ids, rated ones left out: a rating outranks a like
    ups: list[int]
    downs: list[int]
    # The reader's own papers (library file, author feed: newsletter/relevance/library/):
    # arXiv papers by id, rated or hand-picked ones left out, and the vectors of entries
    # standing for themselves, in `own_model`.
    library: list[int] = field(default_factory=list)
    own: list[bytes] = field(default_factory=list)
    own_model: str | None = None

    @property
    def papers(self) -> list[int]:
        return [*self.liked, *self.ups, *self.downs, *self.library]


def _paper_ids(session: Session, arxiv_ids: Sequence[str]) -> list[int]:
    found: list[int] = []
    for start in range(0, len(arxiv_ids), _IN_CHUNK):
        found += session.execute(select(Paper.id).where(Paper.arxiv_id.in_(  # type: ignore[union-attr]
            list(arxiv_ids[start:start + _IN_CHUNK])))).scalars()
    return found


def _inputs(session: Session, subscriber_id: int) -> _Inputs:
    prefs = session.get(Preferences, subscriber_id)
    description = prefs.description if prefs else None
    liked_ids = list(prefs.liked_papers) if prefs else []
    rated = dict(session.execute(select(Rating.paper_id, Rating.value).where(
        Rating.subscriber_id == subscriber_id)).all())  # type: ignore[arg-type]
    liked = _paper_ids(session, liked_ids) if liked_ids else []
    library_ids, own, own_model = library_store.counted(session, subscriber_id)
    library = [p for p in _paper_ids(session, library_ids) if p not in rated and p not in liked]
    return _Inputs(description, [p for p in liked if p not in rated],
                   [p for p, v in rated.items() if v > 0], [p for p, v in rated.items() if v < 0],
                   library, own, own_model)


def _paper_rows(session: Session, paper_ids: Sequence[int],
                space: VectorSpace) -> dict[int, sp.csr_matrix]:
    """Each paper's vector in `space`: stored, or (offline only) computed now."""
    ids, rows = vectors_for(session, paper_ids, space)
    found = {paper_id: rows[i] for i, paper_id in enumerate(ids)}
    lacking = [p for p in paper_ids if p not in found]
    if lacking and space.name == vectors.OFFLINE_MODEL:
        texts = session.execute(select(Paper.id, Paper.title, Paper.abstract).where(
            Paper.id.in_(lacking))).all()  # type: ignore[union-attr]
        computed = vectors.offline_vectors([vectors.paper_text(t, a) for _, t, a in texts])
        found.update({paper_id: computed[i] for i, (paper_id, _, _) in enumerate(texts)})
    return found


def reference_papers(session: Session, space: VectorSpace) -> sp.csr_matrix | None:
    """The vectors of the newest `REFERENCE_PAPERS` listed papers in `space` (None: none
    yet), the sample a model's start is centred on: papers fetched for one reader's liked
    list must not move every reader's start."""
    blobs = list(session.execute(
        select(PaperVector.data)
        .join(Paper, Paper.id == PaperVector.paper_id)  # type: ignore[arg-type]
        .where(PaperVector.model == space.name, listed())
        .order_by(PaperVector.paper_id.desc())  # type: ignore[attr-defined]
        .limit(REFERENCE_PAPERS)).scalars())
    return vectors.stack(blobs, space.dims) if blobs else None


def _matrix(found: Mapping[int, sp.csr_matrix], paper_ids: Sequence[int]) -> sp.csr_matrix | None:
    rows = [found[p] for p in paper_ids if p in found]
    return sp.vstack(rows, format="csr") if rows else None


def _library(found: Mapping[int, sp.csr_matrix], inputs: _Inputs,
             space: VectorSpace) -> sp.csr_matrix | None:
    """The reader's own papers as rows: their arXiv papers' vectors, and the vectors of
    entries standing for themselves when they are in this space (else the sweep is still
    embedding them again: they count once it has)."""
    rows = [found[p] for p in inputs.library if p in found]
    if inputs.own and inputs.own_model == space.name:
        rows += [vectors.decode(blob, space.dims) for blob in inputs.own]
    return sp.vstack(rows, format="csr") if rows else None


def description_hash(description: str) -> str:
    return hashlib.sha256(description.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class _Described:
    """A description's vector (encoded) in one space, or None when it could not be made."""

    vector: bytes | None
    hash: str | None


def _embed_descriptions(settings: Settings, texts: Sequence[str]) -> list[bytes | None]:
    """The descriptions' vectors in the configured space, in one request; all None (and a
    warning) when the embedding provider fails: the sweep tries again."""
    if not texts:
        return []
    embedder = embedder_for(settings)
    try:
        return list(embedder.embed(list(texts)).vectors)
    except EmbedError as exc:
        log.warning("description vectors for %d readers failed: %s", len(texts), exc)
        return [None] * len(texts)
    finally:
        embedder.close()


class _Kept(NamedTuple):
    vector_model: str
    description_hash: str | None
    description_vector: bytes | None


def _kept(session: Session, subscriber_ids: Sequence[int]) -> dict[int, _Kept]:
    """What each reader's stored model says about their description (read as columns: a
    model row written earlier in this session by an upsert is not in the identity map)."""
    table = ReaderModelRow.__table__  # type: ignore[attr-defined]
    rows = session.execute(select(table.c.subscriber_id, table.c.vector_model,
                                  table.c.description_hash, table.c.description_vector)
                           .where(table.c.subscriber_id.in_(list(subscriber_ids))))
    return {subscriber_id: _Kept(*kept) for subscriber_id, *kept in rows}


def _known_description(kept: _Kept | None, description: str | None,
                       space: VectorSpace) -> _Described | None:
    """The stored description vector when it is still the right one, else None."""
    if not description:
        return _Described(None, None)
    if (kept is not None and kept.vector_model == space.name and kept.description_vector
            and kept.description_hash == description_hash(description)):
        return _Described(kept.description_vector, kept.description_hash)
    return None


def retrain(session: Session, subscriber_id: int, *,
            settings: Settings | None = None) -> ReaderModel | None:
    """Train the reader's model from everything they told us and store it (or delete it
    when there is nothing to go on). Returns the model."""
    settings = settings or current_settings()
    space = space_for(settings)
    inputs = _inputs(session, subscriber_id)
    described = _known_description(_kept(session, [subscriber_id]).get(subscriber_id),
                                   inputs.description, space)
    if described is None:
        assert inputs.description
        [vector] = _embed_descriptions(settings, [inputs.description])
        described = _Described(vector, description_hash(inputs.description) if vector else None)
    # Only the reader's own words are centred: ratings alone need no reference.
    reference = (reference_papers(session, space)
                 if inputs.description or inputs.liked or inputs.library or inputs.own
                 else None)
    return _train_and_store(session, subscriber_id, space, inputs, described, reference)


def _train_and_store(session: Session, subscriber_id: int, space: VectorSpace,
                     inputs: _Inputs, described: _Described,
                     reference: sp.csr_matrix | None) -> ReaderModel | None:
    found = _paper_rows(session, inputs.papers, space)
    trained = model.train(
        space.name, space.dims,
        description=vectors.decode(described.vector, space.dims) if described.vector else None,
        liked=_matrix(found, inputs.liked), ups=_matrix(found, inputs.ups),
        downs=_matrix(found, inputs.downs), library=_library(found, inputs, space),
        reference=reference)
    if trained is None:
        session.execute(delete(ReaderModelRow).where(
            ReaderModelRow.subscriber_id == subscriber_id))  # type: ignore[arg-type]
        return None
    values = {"subscriber_id": subscriber_id, "vector_model": space.name,
              "data": model.encode_model(trained), "trained_at": datetime.now(UTC),
              "ratings": trained.ups + trained.downs,
              "description_vector": described.vector, "description_hash": described.hash}
    upsert(session, ReaderModelRow.__table__, [values], ("subscriber_id",),  # type: ignore[attr-defined]
            tuple(k for k in values if k != "subscriber_id"))
    return trained


def stored_models(session: Session, subscriber_ids: Sequence[int],
                  space: VectorSpace) -> dict[int, bytes]:
    """The stored models (`model.encode_model`) of these readers trained in `space`, by
    subscriber id, for a send (`model.stack_models` reads them all at once).

    One query per chunk of ids (a send's chunk of a thousand readers is one). A reader
    without a model, or with one from another vector model, is absent: topics alone rank
    their papers until `retrain_outdated` has caught up.
    """
    table = ReaderModelRow.__table__  # type: ignore[attr-defined]
    found: dict[int, bytes] = {}
    for start in range(0, len(subscriber_ids), _IN_CHUNK):
        rows = session.execute(
            select(table.c.subscriber_id, table.c.data)
            .where(among(session, table.c.subscriber_id,
                          subscriber_ids[start:start + _IN_CHUNK]),
                   table.c.vector_model == space.name))
        found.update((subscriber_id, data) for subscriber_id, data in rows)
    return found


def retrain_outdated(engine: Engine, settings: Settings) -> int:
    """Train again every model older than its inputs; returns how many readers.

    A model is outdated when it is in another vector model than the configured one, when
    the reader's description has no vector in it (OpenAI failed at the time), or when a
    paper they rated or liked got its vector after the model was trained (with OpenAI a
    paper is left out until embedded). Readers with inputs and no model are tried too.
    Descriptions to embed go in one request per batch of readers.
    """
    space = space_for(settings)
    with Session(engine) as session:
        stale = _outdated(session, space)
    for start in range(0, len(stale), _RETRAIN_BATCH):
        batch = stale[start:start + _RETRAIN_BATCH]
        with transaction(engine) as session:
            todo = {subscriber_id: _inputs(session, subscriber_id) for subscriber_id in batch}
            kept = _kept(session, batch)
            known = {s: _known_description(kept.get(s), i.description, space)
                     for s, i in todo.items()}
            wanted = [s for s, d in known.items() if d is None]
            texts = [todo[s].description or "" for s in wanted]
            for subscriber_id, vector in zip(wanted, _embed_descriptions(settings, texts),
                                             strict=True):
                known[subscriber_id] = _Described(vector, description_hash(
                    todo[subscriber_id].description or "") if vector else None)
            reference = (reference_papers(session, space)
                         if any(i.description or i.liked or i.library or i.own
                                for i in todo.values()) else None)
            for subscriber_id, inputs in todo.items():
                described = known[subscriber_id]
                assert described is not None
                _train_and_store(session, subscriber_id, space, inputs, described, reference)
    if stale:
        log.info("retrained %d reader models (%s)", len(stale), space.name)
    return len(stale)


def embed_and_retrain(engine: Engine, settings: Settings, *, limit: int | None = None,
                      progress: Callable[[str], None] = lambda _: None
                      ) -> tuple[EmbedReport, int]:
    """Liked papers readers listed that we lack, fetched from arXiv; new paper vectors;
    then the reader models they leave outdated (a rated or liked paper that just got its
    vector, a changed vector model): what `newsletter embed` and the `paperwire.embed`
    task run. Returns the embed report and how many models."""
    library_sweep.sweep(engine, settings, progress=progress)
    fetched = liked.fetch_wanted(engine, settings, also=library_store.arxiv_ids_wanted)
    if fetched.asked:
        progress(f"liked papers: asked arXiv for {len(fetched.asked)}, stored "
                 f"{fetched.stored}" + (f" ({fetched.problem})" if fetched.problem else ""))
    report = embed_pending(engine, settings, limit=limit, progress=progress)
    return report, retrain_outdated(engine, settings)


def embed_and_retrain_configured(limit: int | None = None) -> tuple[EmbedReport, int]:
    """The scheduled job: read the environment, then `embed_and_retrain`."""
    from newsletter.db import engine_for

    settings = current_settings()
    return embed_and_retrain(engine_for(settings.database_url), settings, limit=limit)


def _outdated(session: Session, space: VectorSpace) -> list[int]:
    models = {s: (m, h, aware(t)) for s, m, h, t in session.execute(select(
        ReaderModelRow.subscriber_id, ReaderModelRow.vector_model,
        ReaderModelRow.description_hash, ReaderModelRow.trained_at))}
    stale: set[int] = {s for s, (m, _, _) in models.items() if m != space.name}
    newest: dict[int, datetime] = {}  # per reader, when their newest input vector was made

    def saw(subscriber_id: int, made: datetime | None) -> None:
        if made is not None:
            made = aware(made)
            newest[subscriber_id] = max(made, newest.get(subscriber_id, made))

    rated = session.execute(
        select(Rating.subscriber_id, func.max(PaperVector.created_at))
        .join(PaperVector, PaperVector.paper_id == Rating.paper_id)  # type: ignore[arg-type]
        .where(PaperVector.model == space.name).group_by(Rating.subscriber_id))
    for subscriber_id, made in rated:
        saw(subscriber_id, made)
    liking: dict[int, list[str]] = {}
    for subscriber_id, description, likes in session.execute(select(
            Preferences.subscriber_id, Preferences.description, Preferences.liked_papers)):
        if description and (subscriber_id not in models
                            or models[subscriber_id][1] != description_hash(description)):
            stale.add(subscriber_id)
        if likes:
            liking[subscriber_id] = list(likes)
    for subscriber_id, changed in library_store.changed_since(session).items():
        saw(subscriber_id, changed)
    for subscriber_id, ids in library_store.counted_arxiv_ids(session).items():
        liking.setdefault(subscriber_id, []).extend(ids)
    made_at = _liked_vectors_made(session, {i for ids in liking.values() for i in ids}, space)
    for subscriber_id, ids in liking.items():
        for arxiv_id in ids:
            saw(subscriber_id, made_at.get(arxiv_id))
    for subscriber_id, made in newest.items():
        if subscriber_id not in models or made > models[subscriber_id][2]:
            stale.add(subscriber_id)
    return sorted(stale)


def _liked_vectors_made(session: Session, arxiv_ids: Iterable[str],
                        space: VectorSpace) -> dict[str, datetime]:
    wanted = sorted(arxiv_ids)
    made: dict[str, datetime] = {}
    for start in range(0, len(wanted), _IN_CHUNK):
        made.update(session.execute(
            select(Paper.arxiv_id, PaperVector.created_at)
            .join(PaperVector, PaperVector.paper_id == Paper.id)  # type: ignore[arg-type]
            .where(Paper.arxiv_id.in_(wanted[start:start + _IN_CHUNK]),  # type: ignore[union-attr]
                   PaperVector.model == space.name)).all())
    return made
