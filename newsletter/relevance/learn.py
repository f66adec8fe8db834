"""What a reader tells us, turned into their model: ratings, their own words, papers they like.

A reader's model (`model.train`) learns from three signals, all the reader's own:
- their description ("sparse attention for long-context inference; not medical imaging"),
  embedded in the same vector space as the papers;
- the papers they like, as arXiv ids: one we do not have is fetched from the arXiv API and
  stored as a paper like any other, so it gets a vector; an id arXiv cannot give us now
  stays on the reader's list and is asked for again the next time the list is saved;
- their ratings, "more like this" (+1) and "less like this" (-1); a rating outranks a like.

The model is trained again whenever one of them changes (`rate`, `record_ratings`,
`set_interests`), never during a send, and stored in `reader_models` (a few KB); a send
reads the models of a chunk of readers in one query (`reader_models_for`). With nothing to
go on there is no row, and the reader is ranked by topics alone.

Vectors live in the configured space (`embed.space_for`). A paper's is its stored vector;
without one yet, it is computed on the spot in the offline space (free), and left out
with OpenAI until the embed run has stored it. The description's vector is kept with the
model, so a rating never waits on OpenAI: only a new description, or a new vector model,
is embedded again. `retrain_outdated`, run after each embed run, trains again every reader
whose model is older than its inputs: papers that have since got vectors, a description
OpenAI could not embed at the time, a switch of vector model.

Functions that take a Session change state; the caller owns the transaction.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

import scipy.sparse as sp
from sqlalchemy import Engine, delete, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session

from newsletter.config import Settings
from newsletter.db import among, transaction
from newsletter.fetch import Fetched, Fetcher, FetchError
from newsletter.ingest import make_fetcher, store_entries
from newsletter.paper import Paper
from newsletter.parse import FeedError, parse_feed
from newsletter.relevance import model, vectors
from newsletter.relevance.embed import (
    EmbedError,
    EmbedReport,
    VectorSpace,
    embed_pending,
    embedder_for,
    space_for,
    vectors_for,
)
from newsletter.relevance.model import ReaderModel
from newsletter.relevance.tables import PaperVector, Rating, ReaderModelRow
from newsletter.subscriber import (
    MAX_LIKED_PAPERS,
    Preferences,
    Subscriber,
    arxiv_id_of,
    parse_interests,
    preferences_of,
)

log = logging.getLogger(__name__)

# The words of `newsletter rate` and of rating links: up, down, or no rating at all.
RATING_VALUES: dict[str, int | None] = {"up": 1, "down": -1, "clear": None}
_IN_CHUNK = 5000  # ids per IN list on SQLite (it binds each one)
_RETRAIN_BATCH = 200  # readers per transaction (and per description request) in a sweep


def _utcnow() -> datetime:
    return datetime.now(UTC)


class UnknownReader(LookupError):
    """No subscriber has this id (or address)."""


class UnknownPaper(LookupError):
    """A rating names a paper we do not have."""


# ---------------------------------------------------------------- ratings


def rate(session: Session, subscriber_id: int, paper_id: int, value: int | None, *,
         settings: Settings | None = None) -> ReaderModel | None:
    """Rate one paper up (+1) or down (-1), or clear its rating (None); retrain.

    Rating a paper again replaces the rating and its time; clearing one that is not there
    changes nothing. Returns the reader's new model (None: nothing to go on).
    """
    return record_ratings(session, subscriber_id, {paper_id: value}, settings=settings)


def record_ratings(session: Session, subscriber_id: int, ratings: Mapping[int, int | None],
                   *, settings: Settings | None = None) -> ReaderModel | None:
    """Several ratings at once (paper id -> +1, -1 or None), then one retraining.

    Raises ValueError for another value, UnknownReader or UnknownPaper before writing.
    """
    wrong = [v for v in ratings.values() if v not in (1, -1, None)]
    if wrong:
        raise ValueError(f"a rating is +1, -1 or None, not {wrong[0]!r}")
    if session.get(Subscriber, subscriber_id) is None:
        raise UnknownReader(f"no reader with id {subscriber_id}")
    known = set(session.execute(select(Paper.id).where(
        Paper.id.in_(list(ratings)))).scalars())  # type: ignore[union-attr]
    unknown = sorted(set(ratings) - known)
    if unknown:
        raise UnknownPaper(f"no paper with id {unknown[0]}")
    now = _utcnow()
    cleared = [paper_id for paper_id, value in ratings.items() if value is None]
    if cleared:
        session.execute(delete(Rating).where(
            Rating.subscriber_id == subscriber_id,  # type: ignore[arg-type]
            Rating.paper_id.in_(cleared)))  # type: ignore[attr-defined]
    given = [{"subscriber_id": subscriber_id, "paper_id": paper_id, "value": value,
              "rated_at": now} for paper_id, value in ratings.items() if value is not None]
    if given:
        # An upsert: two clicks on one link at once must both succeed, as one rating.
        _upsert(session, Rating.__table__, given, ("subscriber_id", "paper_id"),  # type: ignore[attr-defined]
                ("value", "rated_at"))
    return retrain(session, subscriber_id, settings=settings)


def parse_ratings(items: Iterable[str]) -> dict[str, int | None]:
    """`ARXIV_ID=up|down|clear` items (an arxiv.org link works as the id) as versionless
    ids and values. ValueError names the first bad item, or an id given two values."""
    wanted: dict[str, int | None] = {}
    for item in items:
        reference, _, word = item.rpartition("=")
        arxiv_id = arxiv_id_of(reference) if reference else None
        if arxiv_id is None:
            raise ValueError(f"{item!r} is not ARXIV_ID=up|down|clear (e.g. 2401.12345=up)")
        value = RATING_VALUES.get(word.strip().lower(), 0)
        if value == 0:
            raise ValueError(f"{item!r}: a rating is up, down or clear, not {word!r}")
        if wanted.get(arxiv_id, value) != value:
            raise ValueError(f"{arxiv_id} is rated twice, differently")
        wanted[arxiv_id] = value
    return wanted


def papers_named(session: Session, arxiv_ids: Sequence[str]) -> dict[str, int]:
    """Our paper id for each arXiv id; UnknownPaper names every id we do not have."""
    found = dict(session.execute(select(Paper.arxiv_id, Paper.id).where(
        Paper.arxiv_id.in_(list(arxiv_ids)))).all())  # type: ignore[union-attr]
    unknown = [i for i in arxiv_ids if i not in found]
    if unknown:
        raise UnknownPaper(f"no stored paper {', '.join(unknown)} (papers arrive by "
                           "`newsletter ingest`)")
    return found


class RatedPaper(NamedTuple):
    title: str
    arxiv_id: str | None
    abs_url: str | None
    value: int
    rated_at: datetime


def ratings_of(session: Session, subscriber_id: int) -> list[RatedPaper]:
    """A reader's ratings, newest first (the manage page lists them)."""
    rows = session.execute(
        select(Paper.title, Paper.arxiv_id, Paper.abs_url, Rating.value, Rating.rated_at)
        .join(Paper, Paper.id == Rating.paper_id)  # type: ignore[arg-type]
        .where(Rating.subscriber_id == subscriber_id)  # type: ignore[arg-type]
        .order_by(Rating.rated_at.desc(), Paper.title)  # type: ignore[attr-defined]
    )
    return [RatedPaper(title, arxiv_id, abs_url, value, _aware(rated_at))
            for title, arxiv_id, abs_url, value, rated_at in rows]


# ---------------------------------------------------------------- interests


@dataclass(frozen=True)
class Interests:
    """What `set_interests` stored, and which liked papers are still not ours."""

    description: str | None
    liked: tuple[str, ...]  # versionless arXiv ids, in the reader's order
    # Liked ids with no paper here: arXiv did not return them, or could not be asked.
    missing: tuple[str, ...] = ()
    problem: str | None = None  # why arXiv could not be asked, when it could not


def interests_of(session: Session, subscriber_id: int) -> Interests:
    """A reader's description and liked papers as stored (for the manage page's form)."""
    prefs = session.get(Preferences, subscriber_id)
    if prefs is None:
        return Interests(None, ())
    liked = tuple(prefs.liked_papers)
    return Interests(prefs.description, liked, _ids_we_lack(session, liked))


def set_interests(session: Session, subscriber_id: int, description: str | None,
                  liked: str | Sequence[str], *, settings: Settings | None = None,
                  fetcher: Fetcher | None = None) -> Interests:
    """Store a reader's description and liked papers, fetch the liked papers we lack
    from arXiv, and retrain.

    Input as typed is fine: raises InvalidInput naming every bad field (the first bad
    liked entry by its text) before anything is written or fetched.
    """
    settings = settings or _current_settings()
    text, ids = parse_interests(description, liked)
    subscriber = session.get(Subscriber, subscriber_id)
    if subscriber is None:
        raise UnknownReader(f"no reader with id {subscriber_id}")

    missing = _ids_we_lack(session, ids)
    problem = None
    if missing:
        try:
            fetch_papers(session, missing, settings=settings, fetcher=fetcher)
        except (FetchError, FeedError) as exc:
            problem = f"arXiv could not be asked for {', '.join(missing)}: {exc}"
            log.warning("liked papers subscriber=%s: %s", subscriber_id, problem)
        missing = _ids_we_lack(session, ids)
    prefs = preferences_of(session, subscriber)
    prefs.description = text
    prefs.liked_papers = list(ids)
    prefs.updated_at = _utcnow()
    session.flush()
    retrain(session, subscriber_id, settings=settings)
    return Interests(text, ids, missing, problem)


def _ids_we_lack(session: Session, arxiv_ids: Sequence[str]) -> tuple[str, ...]:
    have = set(session.execute(select(Paper.arxiv_id).where(
        Paper.arxiv_id.in_(list(arxiv_ids)))).scalars()) if arxiv_ids else set()  # type: ignore[union-attr]
    return tuple(i for i in arxiv_ids if i not in have)


# arXiv asks callers to leave 3 seconds between API calls (API user manual, 3.1.1.2:
# https://info.arxiv.org/help/api/user-manual.html#paging). Within a process the calls
# made here take turns and keep that distance; the Fetcher keeps it between its retries.
_ARXIV_TURN = threading.Lock()
_arxiv_last_call = float("-inf")


def _ask_arxiv(fetcher: Fetcher, settings: Settings, params: dict[str, str | int]) -> Fetched:
    global _arxiv_last_call
    with _ARXIV_TURN:
        wait = _arxiv_last_call + settings.arxiv_api_delay - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        try:
            return fetcher.get(settings.arxiv_api_url, params=params)
        finally:
            _arxiv_last_call = time.monotonic()


def fetch_papers(session: Session, arxiv_ids: Sequence[str], *, settings: Settings,
                 fetcher: Fetcher | None = None) -> int:
    """Fetch these papers from the arXiv API and store them; returns how many arXiv had.

    One request per 50 ids (`id_list`, with `max_results` raised from its default of 10 to
    the number of ids: user manual, 3.1.1). An id arXiv does not know is simply absent
    from the answer. Raises FetchError or FeedError when arXiv cannot answer, or answers
    with an error (a malformed id fails the whole request, so ids are checked first:
    `subscriber.arxiv_id_of`).
    """
    own = fetcher is None
    fetcher = fetcher or make_fetcher(settings, pause=settings.arxiv_api_delay)
    stored = 0
    try:
        for start in range(0, len(arxiv_ids), MAX_LIKED_PAPERS):
            chunk = list(arxiv_ids[start:start + MAX_LIKED_PAPERS])
            fetched = _ask_arxiv(fetcher, settings,
                                 {"id_list": ",".join(chunk), "max_results": len(chunk)})
            try:
                parsed = parse_feed(fetched.content)
            except FeedError as exc:
                raise FeedError(f"HTTP {fetched.status}: {exc}" if fetched.status >= 400
                                else str(exc)) from None
            if fetched.status >= 400:
                raise FeedError(f"HTTP {fetched.status}")
            if parsed.kind != "arxiv-api" and parsed.entries:
                raise FeedError(f"{settings.arxiv_api_url} did not answer as the arXiv API")
            entries = [e for e in parsed.entries if e.key in chunk]
            store_entries(session, entries)
            stored += len(entries)
    finally:
        if own:
            fetcher.close()
    return stored


# ---------------------------------------------------------------- training


@dataclass(frozen=True)
class _Inputs:
    description: str | None
    liked: list[int]  # paper ids, rated ones left out: a rating outranks a like
    ups: list[int]
    downs: list[int]

    @property
    def papers(self) -> list[int]:
        return [*self.liked, *self.ups, *self.downs]


def _inputs(session: Session, subscriber_id: int) -> _Inputs:
    prefs = session.get(Preferences, subscriber_id)
    description = prefs.description if prefs else None
    liked_ids = list(prefs.liked_papers) if prefs else []
    rated = dict(session.execute(select(Rating.paper_id, Rating.value).where(
        Rating.subscriber_id == subscriber_id)).all())  # type: ignore[arg-type]
    liked = list(session.execute(select(Paper.id).where(
        Paper.arxiv_id.in_(liked_ids))).scalars()) if liked_ids else []  # type: ignore[union-attr]
    return _Inputs(description, [p for p in liked if p not in rated],
                   [p for p, v in rated.items() if v > 0], [p for p, v in rated.items() if v < 0])


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


def _matrix(found: Mapping[int, sp.csr_matrix], paper_ids: Sequence[int]) -> sp.csr_matrix | None:
    rows = [found[p] for p in paper_ids if p in found]
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
    settings = settings or _current_settings()
    space = space_for(settings)
    inputs = _inputs(session, subscriber_id)
    described = _known_description(_kept(session, [subscriber_id]).get(subscriber_id),
                                   inputs.description, space)
    if described is None:
        assert inputs.description
        [vector] = _embed_descriptions(settings, [inputs.description])
        described = _Described(vector, description_hash(inputs.description) if vector else None)
    return _train_and_store(session, subscriber_id, space, inputs, described)


def _train_and_store(session: Session, subscriber_id: int, space: VectorSpace,
                     inputs: _Inputs, described: _Described) -> ReaderModel | None:
    found = _paper_rows(session, inputs.papers, space)
    trained = model.train(
        space.name, space.dims,
        description=vectors.decode(described.vector, space.dims) if described.vector else None,
        liked=_matrix(found, inputs.liked), ups=_matrix(found, inputs.ups),
        downs=_matrix(found, inputs.downs))
    if trained is None:
        session.execute(delete(ReaderModelRow).where(
            ReaderModelRow.subscriber_id == subscriber_id))  # type: ignore[arg-type]
        return None
    values = {"subscriber_id": subscriber_id, "vector_model": space.name,
              "data": model.encode_model(trained), "trained_at": _utcnow(),
              "ratings": trained.ups + trained.downs,
              "description_vector": described.vector, "description_hash": described.hash}
    _upsert(session, ReaderModelRow.__table__, [values], ("subscriber_id",),  # type: ignore[attr-defined]
            tuple(k for k in values if k != "subscriber_id"))
    return trained


def reader_models_for(session: Session, subscriber_ids: Sequence[int],
                      space: VectorSpace) -> dict[int, ReaderModel]:
    """The models of these readers trained in `space`, by subscriber id, for a send.

    One query per chunk of ids (a send's chunk of a thousand readers is one). A reader
    without a model, or with one from another vector model, is absent: topics alone rank
    their papers until `retrain_outdated` has caught up.
    """
    table = ReaderModelRow.__table__  # type: ignore[attr-defined]
    found: dict[int, ReaderModel] = {}
    for start in range(0, len(subscriber_ids), _IN_CHUNK):
        rows = session.execute(
            select(table.c.subscriber_id, table.c.data)
            .where(among(session, table.c.subscriber_id,
                          subscriber_ids[start:start + _IN_CHUNK]),
                   table.c.vector_model == space.name))
        for subscriber_id, data in rows:
            found[subscriber_id] = model.decode_model(data, space.name, space.dims)
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
            for subscriber_id, inputs in todo.items():
                described = known[subscriber_id]
                assert described is not None
                _train_and_store(session, subscriber_id, space, inputs, described)
    if stale:
        log.info("retrained %d reader models (%s)", len(stale), space.name)
    return len(stale)


def embed_and_retrain(engine: Engine, settings: Settings, *, limit: int | None = None,
                      progress: Callable[[str], None] = lambda _: None
                      ) -> tuple[EmbedReport, int]:
    """New paper vectors, then the reader models they leave outdated (a rated or liked
    paper that just got its vector, a changed vector model): what `newsletter embed` and
    the `paperwire.embed` task run. Returns the embed report and how many models."""
    report = embed_pending(engine, settings, limit=limit, progress=progress)
    return report, retrain_outdated(engine, settings)


def embed_and_retrain_configured(limit: int | None = None) -> tuple[EmbedReport, int]:
    """The scheduled job: read the environment, then `embed_and_retrain`."""
    from newsletter.db import engine_for

    settings = _current_settings()
    return embed_and_retrain(engine_for(settings.database_url), settings, limit=limit)


def _outdated(session: Session, space: VectorSpace) -> list[int]:
    models = {s: (m, h, _aware(t)) for s, m, h, t in session.execute(select(
        ReaderModelRow.subscriber_id, ReaderModelRow.vector_model,
        ReaderModelRow.description_hash, ReaderModelRow.trained_at))}
    stale: set[int] = {s for s, (m, _, _) in models.items() if m != space.name}
    newest: dict[int, datetime] = {}  # per reader, when their newest input vector was made

    def saw(subscriber_id: int, made: datetime | None) -> None:
        if made is not None:
            made = _aware(made)
            newest[subscriber_id] = max(made, newest.get(subscriber_id, made))

    rated = session.execute(
        select(Rating.subscriber_id, func.max(PaperVector.created_at))
        .join(PaperVector, PaperVector.paper_id == Rating.paper_id)  # type: ignore[arg-type]
        .where(PaperVector.model == space.name).group_by(Rating.subscriber_id))
    for subscriber_id, made in rated:
        saw(subscriber_id, made)
    liking: dict[int, list[str]] = {}
    for subscriber_id, description, liked in session.execute(select(
            Preferences.subscriber_id, Preferences.description, Preferences.liked_papers)):
        if description and (subscriber_id not in models
                            or models[subscriber_id][1] != description_hash(description)):
            stale.add(subscriber_id)
        if liked:
            liking[subscriber_id] = list(liked)
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


# ---------------------------------------------------------------- the edges


def _current_settings() -> Settings:
    from newsletter.config import settings

    return settings()


def _aware(value: datetime) -> datetime:
    # SQLite hands back naive datetimes even for timezone=True columns; they are UTC.
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _upsert(session: Session, table: Any, rows: list[dict[str, Any]], keys: tuple[str, ...],
            columns: tuple[str, ...]) -> None:
    """INSERT ... ON CONFLICT (keys) DO UPDATE SET columns: Postgres and SQLite alike."""
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    statement = dialect.insert(table).values(rows)
    session.execute(statement.on_conflict_do_update(
        index_elements=list(keys), set_={c: statement.excluded[c] for c in columns}))

