"""Every reader's picks for an edition: the rules for most, the model for those who have one.

The send, the dry run and a reader's preview all choose through `choose`, so what a
preview shows is what the send mails. For a chunk of readers it reads the models of those
who have one (trained when they rated or described, never here), the day's paper vectors,
and scores all of them in one sparse matrix product (`model.affinities`): the cost grows
with papers and readers, never with readers x papers in Python. The papers each reader
rated up or said they like are read too, for the why-line ("like ... you rated up").
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import scipy.sparse as sp
from sqlalchemy import or_, select
from sqlmodel import Session

from newsletter.digest import reasons as why
from newsletter.digest.rank import Learned
from newsletter.digest.rank import select as select_learned
from newsletter.digest.selection import Interests, PaperIndex, Selection
from newsletter.ingest.paper import Paper
from newsletter.readers.tables import Preferences
from newsletter.relevance import model
from newsletter.relevance.embed import vectors_for
from newsletter.relevance.embedders import VectorSpace
from newsletter.relevance.library import store as library_store
from newsletter.relevance.tables import Rating
from newsletter.relevance.train import stored_models

# A pick's why-line names the rated-up or liked paper it resembles when the pick is among
# the edition's papers closest to that paper: closer to it than all but this share of them
# (and at least the closest). Relative to the edition, so it means the same in any vector
# space, which a fixed cosine did not: 0.2 is a near-duplicate in the offline space, and
# 67% of random pairs pass it with MiniLM's vectors (docs/BENCHMARKS.md, "the why-line").
RESEMBLES_SHARE = 0.005
# A reader's own papers named by the why-line, at most (their newest): each is a column of
# the chunk's closeness matrix, and a 2,000-entry library would make it 2,000 wide per reader.
LIBRARY_FAVOURITES = 100


# A favourite is a paper (its id) or one of the reader's library entries standing for
# itself (("entry", its id)): both have a vector the edition's papers are compared with.
Favourite = int | tuple[str, int]


def _favourites(session: Session, subscriber_ids: Sequence[int], space: VectorSpace
                ) -> dict[int, list[tuple[Favourite, str]]]:
    """(favourite, the reason naming it) of the papers each reader rated up, said they
    like, or brought (library file, author feed): "like “X” you rated up", "... you
    liked" for a listed paper not rated, "... in your library", "... you wrote"."""
    ups: dict[int, list[int]] = {s: [] for s in subscriber_ids}
    rated_down: set[tuple[int, int]] = set()
    for subscriber_id, paper_id, value in session.execute(
            select(Rating.subscriber_id, Rating.paper_id, Rating.value)
            .where(Rating.subscriber_id.in_(subscriber_ids))):  # type: ignore[attr-defined]
        if value == 1:
            ups[subscriber_id].append(paper_id)
        else:
            rated_down.add((subscriber_id, paper_id))
    liked = {subscriber_id: ids for subscriber_id, ids in session.execute(
        select(Preferences.subscriber_id, Preferences.liked_papers)
        .where(Preferences.subscriber_id.in_(subscriber_ids))) if ids}  # type: ignore[attr-defined]
    own = library_store.own_arxiv_papers(session, subscriber_ids, LIBRARY_FAVOURITES)
    own_texts = library_store.own_texts(session, subscriber_ids, space.name,
                                        LIBRARY_FAVOURITES)
    wanted_ids = {p for papers in ups.values() for p in papers}
    wanted_arxiv = {arxiv_id for ids in liked.values() for arxiv_id in ids}
    wanted_arxiv |= {arxiv_id for papers in own.values() for arxiv_id, _ in papers}
    # Titles once per paper, not once per rating: readers of a chunk share favourites.
    titles: dict[int, str] = {}
    by_arxiv: dict[str, int] = {}
    if wanted_ids or wanted_arxiv:
        for paper_id, arxiv_id, title in session.execute(
                select(Paper.id, Paper.arxiv_id, Paper.title)
                .where(or_(Paper.id.in_(wanted_ids),  # type: ignore[union-attr]
                           Paper.arxiv_id.in_(wanted_arxiv)))):  # type: ignore[union-attr]
            titles[paper_id] = title
            if arxiv_id in wanted_arxiv:
                by_arxiv[arxiv_id] = paper_id
    found: dict[int, dict[Favourite, str]] = {}
    for subscriber_id in subscriber_ids:
        mine: dict[Favourite, str] = {p: why.resembles(titles[p], rated_up=True)
                                      for p in ups[subscriber_id] if p in titles}
        for arxiv_id in liked.get(subscriber_id, ()):
            if arxiv_id in by_arxiv:
                paper_id = by_arxiv[arxiv_id]
                mine.setdefault(paper_id, why.resembles(titles[paper_id], rated_up=False))
        for arxiv_id, source in own.get(subscriber_id, ()):
            if arxiv_id in by_arxiv:
                paper_id = by_arxiv[arxiv_id]
                mine.setdefault(paper_id, why.own_paper(titles[paper_id],
                                                        wrote=source == library_store.AUTHOR))
        for entry_id, title in own_texts.get(subscriber_id, ()):
            mine[("entry", entry_id)] = why.own_paper(title, wrote=False)
        # Ratings say more than likes: a paper rated down is no favourite, even if liked.
        for paper_id in [p for p in mine if (subscriber_id, p) in rated_down]:
            del mine[paper_id]
        if mine:
            found[subscriber_id] = mine
    return {s: list(papers.items()) for s, papers in found.items()}


def _favourite_vectors(session: Session, favourites: Sequence[Favourite], space: VectorSpace
                       ) -> tuple[list[Favourite], sp.csr_matrix | None]:
    """The favourites that have a vector in `space`, and their vectors, as rows."""
    paper_ids = [f for f in favourites if isinstance(f, int)]
    with_vector, paper_rows = vectors_for(session, paper_ids, space)
    entries = [f[1] for f in favourites if not isinstance(f, int)]
    entry_ids, entry_rows = library_store.own_vectors(session, entries, space.name, space.dims)
    keys: list[Favourite] = [*with_vector, *(("entry", e) for e in entry_ids)]
    blocks = [m for m, ids in ((paper_rows, with_vector), (entry_rows, entry_ids)) if ids]
    return keys, (sp.vstack(blocks, format="csr") if blocks else None)


def standing_out(closeness: np.ndarray, present: np.ndarray) -> np.ndarray:
    """`closeness` (the edition's papers x favourites) kept where a paper is among the
    `RESEMBLES_SHARE` of the edition's papers closest to that favourite, else 0.

    Only the `present` rows (papers with a vector) count as the edition.
    """
    rows = closeness[present]
    if not rows.size:
        return np.zeros_like(closeness)
    keep = max(1, int(len(rows) * RESEMBLES_SHARE))
    threshold = np.partition(rows, len(rows) - keep, axis=0)[len(rows) - keep]
    stands_out = present[:, None] & (closeness >= threshold) & (closeness > 0)
    return np.where(stands_out, closeness, 0.0)


def resembles(standout: np.ndarray, columns: list[int], labels: list[str]
              ) -> Callable[[int], str | None]:
    """For the paper in row i, the label (the reason naming it) of the favourite of
    `columns` it stands out as closest to (`standing_out`), if any."""
    def label_for(i: int) -> str | None:
        if not columns:
            return None
        row = standout[i, columns]
        best = int(np.argmax(row))
        return labels[best] if row[best] > 0 else None

    return label_for


# Favourites compared with the edition at once, at most: a chunk of readers who imported
# libraries has tens of thousands, and the edition x favourites matrix would not fit.
_FAVOURITE_BLOCK = 2000


def _standouts(papers: sp.csr_matrix | None, columns: np.ndarray, candidate_ids: list[int],
               fav_keys: Sequence[Favourite], fav_vectors: sp.csr_matrix | None
               ) -> sp.csc_matrix:
    """Candidates x favourites: the closeness of each candidate that stands out as among
    the closest to a favourite (`standing_out`), else 0; sparse, as nearly all is 0."""
    shape = (len(candidate_ids), len(fav_keys))
    if papers is None or fav_vectors is None or not fav_keys:
        return sp.csc_matrix(shape, dtype=np.float32)
    present = columns >= 0
    position = {paper_id: i for i, paper_id in enumerate(candidate_ids)}
    blocks = []
    for start in range(0, len(fav_keys), _FAVOURITE_BLOCK):
        keys = fav_keys[start:start + _FAVOURITE_BLOCK]
        closeness = np.zeros((len(candidate_ids), len(keys)), dtype=np.float32)
        closeness[present] = (papers @ fav_vectors[start:start + len(keys)].T
                              ).toarray()[columns[present]]
        # A favourite in the edition itself is not "like" itself.
        for j, key in enumerate(keys):
            if isinstance(key, int) and key in position:
                closeness[position[key], j] = 0.0
        blocks.append(sp.csc_matrix(standing_out(closeness, present)))
    return sp.hstack(blocks, format="csc")


def learned_for(session: Session, space: VectorSpace, index: PaperIndex,
                subscriber_ids: Sequence[int]) -> dict[int, Learned]:
    """What the models of these readers (those who have one) say about the candidates."""
    candidate_ids = [c.paper_id for c in index.candidates]
    # An edition with no papers (arXiv's holidays) has nothing for a model to score.
    if not candidate_ids:
        return {}
    stored = stored_models(session, subscriber_ids, space)
    if not stored:
        return {}
    with_vector, papers = vectors_for(session, candidate_ids, space)
    row_of = {paper_id: row for row, paper_id in enumerate(with_vector)}
    # An index array, typed as one even when empty (numpy's default for [] is float).
    columns = np.array([row_of.get(paper_id, -1) for paper_id in candidate_ids],
                       dtype=np.intp)
    readers = list(stored)
    weights, biases, ratings = model.stack_models([stored[s] for s in readers], space.dims)
    chances = (model.affinities(weights, biases, papers) if with_vector
               else np.zeros((len(readers), 0), dtype=np.float32))
    # Per candidate, NaN where the paper has no vector in this space yet.
    padded = np.hstack([chances, np.full((len(readers), 1), np.nan, dtype=np.float32)])
    affinity = padded[:, columns]

    favourites = _favourites(session, readers, space)
    fav_keys, fav_vectors = _favourite_vectors(
        session, sorted({f for fav in favourites.values() for f, _ in fav}, key=str), space)
    fav_column = {key: j for j, key in enumerate(fav_keys)}
    standout = _standouts(papers if with_vector else None, columns, candidate_ids,
                          fav_keys, fav_vectors)
    described = set(session.execute(select(Preferences.subscriber_id).where(
        Preferences.subscriber_id.in_(readers),  # type: ignore[attr-defined]
        Preferences.description.is_not(None))).scalars())  # type: ignore[union-attr]
    learned: dict[int, Learned] = {}
    for row, subscriber_id in enumerate(readers):
        mine = [(fav_column[f], label) for f, label in favourites.get(subscriber_id, ())
                if f in fav_column]
        own = standout[:, [c for c, _ in mine]].toarray() if mine else np.zeros((0, 0))
        learned[subscriber_id] = Learned(
            affinity=affinity[row], ratings=int(ratings[row]),
            resembles=resembles(own, list(range(len(mine))), [label for _, label in mine]),
            described=subscriber_id in described)
    return learned


def choose(session: Session, space: VectorSpace | None, index: PaperIndex,
           readers: Sequence[tuple[int, Interests]],
           sent_before: Mapping[int, frozenset[int]]) -> list[Selection]:
    """Each reader's selection, in the order given."""
    learned = (learned_for(session, space, index, [s for s, _ in readers])
               if space is not None else {})
    chosen = []
    for subscriber_id, interests in readers:
        sent = sent_before.get(subscriber_id, frozenset())
        own = learned.get(subscriber_id)
        chosen.append(index.select(interests, sent) if own is None
                      else select_learned(index, interests, own, sent))
    return chosen
