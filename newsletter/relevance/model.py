"""A reader's model: what they said they want, corrected by what they rated.

A model is a linear scorer in the paper-vector space: a paper's affinity for a reader is
sigmoid(paper . weights + bias), read as the chance they would rate it up.

- The reader's own words start it. Their description and the papers they say they like are
  averaged into one direction (each liked paper counting as much as the description), and
  the start is that direction scaled by `PRIOR_SCALE`, centred so that a paper as close to
  it as the store's typical paper (the median of a `reference` sample, the newest papers)
  starts at `PRIOR_BIAS`, a chance of 0.05. Centring is what lets one start serve every
  space: offline, a description meets the typical abstract at a cosine near 0; with dense
  vectors (OpenAI's, MiniLM's) at 0.2-0.5, and uncentred a third of a day's papers would
  start "likely". The start is meant to be weak: offline, a one-line description meets an
  abstract at a cosine of 0.02-0.05 at best, so a day's best matches start at chances of
  0.07-0.25, and a few days of ratings outweigh it (a stronger start learned less from
  ratings in the simulations).
- The reader's own papers (their library file and author feed, `relevance/library/`) join
  the start as one block: the mean of their unit vectors less the reference's mean
  (`_library_direction`, Rocchio's contrast with the typical paper), so that what sets
  their field apart leads, not what every abstract shares (method words; the common cone
  of dense spaces). The block counts as `library_weight(n)` = 1 + 0.5 log10(n) liked
  papers: one paper as one, 20 as 1.65, 200 as 2.15, a file's 3,000 as 2.7. It grows with
  the evidence but slowly, so 200 imported papers outvote neither the description nor the
  hand-picked papers, and the start's length stays `PRIOR_SCALE` whatever the library's
  size: ratings move a model with 200 own papers as far as one with 20.
  Chosen on 16 arXiv categories other than the six `bench/relevance.py` reports (cs.RO,
  eess.IV, cs.CY, cs.SE, math.OC, cs.DC, eess.SP, stat.ME, cs.GR, quant-ph, cs.GT, cs.DB,
  cs.LO, q-bio.NC, cs.SI, stat.ML), a library of 20-50 of their papers from the first 40
  days each, P@10 over the 23 days after (no ratings), offline / with the local model:
  the description alone 0.173 / 0.226; the library's plain mean (as liked papers) 0.181 /
  0.168; less 0.5, 1 (chosen), 1.5 or 2 times the reference's mean 0.197 / 0.219, 0.205 /
  0.231, 0.212 / 0.204, 0.203 / -; a logistic regression of the library against the
  reference 0.214 / 0.228 (no better, and seconds a reader); keeping only its 60-80% most
  typical papers, a contrast per column kind, or a start twice as long: within 0.006.
  Description and library together, the block weighing 0.5 / 1 / 2 / 4: 0.201 / 0.249,
  0.208 / 0.250, 0.217 / 0.248, 0.217 / 0.241; 1 + 0.5 log10(n) (1.65-1.85 here): 0.215 /
  0.248, near the best of both spaces.
- Ratings correct it. A logistic regression over the rated papers (up = 1, down = 0)
  learns a change to those weights, penalised by its size, so a handful of ratings bend
  the description rather than replace it, and many ratings can overrule it. The change is
  learned on the buckets the rated papers use, which is all it can move.
- Only the `MODEL_WEIGHTS` largest weights are kept (by size): 512 int32 indices and
  float16 values, about 3 KB stored, whatever the reader did.

`affinities` scores a chunk of readers against a day's papers with one sparse matrix
product. `blend` turns an affinity and the topic/keyword/author points of
`newsletter.digest.selection.score` into the 0-100 score a digest ranks by: the affinity's log-odds,
nudged by the points, widened so whole points keep the order. Topics are a prior, not a
filter: the nudge is small (`TOPIC_PRIOR`), so a paper outside the reader's topics that
the model rates highly beats a paper the topics only weakly match. `unsure` picks the
papers a rating would teach the model most about (affinity nearest 0.5), as Scholar Inbox
does for its cold start.

The constants were chosen by simulating readers of ten interests other than the six
`bench/relevance.py` reports (see docs/BENCHMARKS.md, "Relevance: does it learn?").
Pure: arrays in, arrays out.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from newsletter.relevance import vectors

PRIOR_SCALE = 20.0
# How much of the typical paper (the reference's mean) is taken from the mean of the
# reader's own papers: more than 1 removed part of their field in the local space.
LIBRARY_CONTRAST = 1.0
# The library's block counts as 1 + LIBRARY_GROWTH * log10(n) liked papers (docstring).
LIBRARY_GROWTH = 0.5
PRIOR_BIAS = -3.0  # a paper as close to the reader's words as the typical one: 0.05
# How far a weight may move from the description's per unit of evidence: the inverse of
# the L2 penalty on the change. Large, because a rating is deliberate evidence.
RATINGS_C = 100.0
MODEL_WEIGHTS = 512
# Log-odds added per 100 topic points: enough to order papers the model finds equally
# likely, too little to keep a paper the model finds unlikely above a likely one.
TOPIC_PRIOR = 0.1
# Log-odds added per 100 points of keywords and authors the reader named. A topic is a
# coarse guess at a reader's field; a named author or word is what they asked for, so it
# outweighs the model's doubt: a paper the model gives a chance of 0.1 scores 68 with a
# named author (55 points, +4.4) and 55 with a keyword in its title (35, +2.8), above a
# paper the model alone finds 60% likely (53); a keyword only in the abstract adds +1.6.
NAMED_PRIOR = 8.0
# The score is the nudged log-odds squeezed into 0-100 by a sigmoid this many times wider
# than the affinity's own: a digest ranks by whole points, and on the affinity's scale most
# of a day's papers (chances under 1%) would tie at 0 or 1. Widened, chances of 0.001, 0.01,
# 0.1, 0.5 and 0.9 score 9, 18, 32, 50 and 67, so whole points keep the model's order.
BLEND_SPREAD = 3.0

_FORMAT = 1
_HEADER = struct.Struct("<BfII")  # format, bias, ups, downs; then the weights' vector blob


@dataclass(frozen=True)
class ReaderModel:
    vector_model: str  # the vector model it was trained in; a mismatch means retrain
    weights: sp.csr_matrix  # 1 x dims, float32
    bias: float
    ups: int
    downs: int


def _rows(matrix: sp.spmatrix | sp.sparray | None, dims: int) -> sp.csr_matrix | None:
    if matrix is None or matrix.shape[0] == 0:
        return None
    if matrix.shape[1] != dims:
        raise ValueError(f"vectors have {matrix.shape[1]} dimensions, the model {dims}")
    return sp.csr_matrix(matrix, dtype=np.float64)


def _unit(row: sp.csr_matrix) -> sp.csr_matrix:
    norm = sp.linalg.norm(row)
    return row / norm if norm else row


def _mean_of_units(rows: sp.csr_matrix) -> sp.csr_matrix:
    norms = np.sqrt(np.asarray(rows.multiply(rows).sum(axis=1)).ravel())
    scaled = sp.diags(np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)) @ rows
    return sp.csr_matrix(scaled.mean(axis=0))


def _library_direction(library: sp.csr_matrix, reference: sp.csr_matrix | None
                       ) -> sp.csr_matrix:
    """What sets the reader's own papers apart: the mean of their unit vectors less the
    mean of the reference papers' (Rocchio's contrast). The plain mean points mostly where
    every paper points (method words, the dense spaces' common cone), which ranks the
    typical paper nearly as high as one of the reader's field."""
    direction = _mean_of_units(library)
    if reference is not None and reference.shape[0]:
        direction = direction - LIBRARY_CONTRAST * _mean_of_units(reference)
    return _unit(sp.csr_matrix(direction))


def library_weight(papers: int) -> float:
    """How many liked papers (or descriptions) a library of this many papers counts as."""
    return 1.0 + LIBRARY_GROWTH * float(np.log10(max(1, papers)))


def _prior(description: sp.csr_matrix | None, liked: sp.csr_matrix | None,
           library: sp.csr_matrix | None, reference: sp.csr_matrix | None,
           dims: int) -> sp.csr_matrix:
    """The direction the reader's own words point in, unit length (zero when silent)."""
    said = [_unit(description)] if description is not None else []
    if liked is not None:
        said += [_unit(liked[i]) for i in range(liked.shape[0])]
    if library is not None:
        said.append(library_weight(library.shape[0]) * _library_direction(library, reference))
    if not said:
        return sp.csr_matrix((1, dims))
    return _unit(sp.csr_matrix(sp.vstack(said).sum(axis=0)))


def _correction(rated: sp.csr_matrix, liked: np.ndarray, offset: np.ndarray
                ) -> tuple[np.ndarray, float]:
    """Logistic regression on the rated rows, each starting from its prior margin `offset`.

    Minimises sum(log-loss) + |(change, bias)|^2 / (2 C): both penalised, so ups alone
    (no downs yet) still give finite weights.
    """
    sign = np.where(liked, 1.0, -1.0)

    def loss(params: np.ndarray) -> tuple[float, np.ndarray]:
        change, bias = params[:-1], params[-1]
        margin = -sign * (rated @ change + offset + bias)
        slope = -sign * np.exp(-np.logaddexp(0.0, -margin))  # d loss / d score
        value = np.logaddexp(0.0, margin).sum() + params @ params / (2 * RATINGS_C)
        gradient = np.concatenate([rated.T @ slope, [slope.sum()]]) + params / RATINGS_C
        return float(value), gradient

    from scipy.optimize import minimize  # only where models are trained: 27 MB

    found = minimize(loss, np.zeros(rated.shape[1] + 1), jac=True, method="L-BFGS-B",
                     options={"maxiter": 500})
    return found.x[:-1], float(found.x[-1])


def _strongest(weights: np.ndarray, indices: np.ndarray, dims: int) -> sp.csr_matrix:
    keep = np.flatnonzero(weights)
    if len(keep) > MODEL_WEIGHTS:
        # Largest magnitudes; ties by bucket, so the same ratings keep the same weights.
        keep = keep[np.lexsort((indices[keep], -np.abs(weights[keep])))[:MODEL_WEIGHTS]]
    keep = keep[np.argsort(indices[keep])]
    return sp.csr_matrix((weights[keep].astype(np.float32), indices[keep],
                          np.array([0, len(keep)])), shape=(1, dims))


def _typical(direction: sp.csr_matrix, reference: sp.csr_matrix | None) -> float:
    """How close the reference's median paper is to `direction` (0 without papers)."""
    if reference is None or not direction.nnz:
        return 0.0
    return float(np.median((reference @ direction.T).toarray()))


def train(vector_model: str, dims: int, *, description: sp.csr_matrix | None = None,
          liked: sp.csr_matrix | None = None, ups: sp.csr_matrix | None = None,
          downs: sp.csr_matrix | None = None, library: sp.csr_matrix | None = None,
          reference: sp.csr_matrix | None = None) -> ReaderModel | None:
    """The reader's model from their words, their own papers and their ratings; None when
    there is nothing to go on.

    `description` is one row, the others one row per paper, all in the `vector_model` space;
    `library` holds the reader's own papers, which count as one block (`library_weight`);
    `reference` is a sample of the store's papers (the newest), which the start is centred
    on and the library is set apart from: without it, the typical paper counts as sharing
    nothing with the reader's words.
    """
    description, liked = _rows(description, dims), _rows(liked, dims)
    ups, downs = _rows(ups, dims), _rows(downs, dims)
    library, reference = _rows(library, dims), _rows(reference, dims)
    if description is not None and description.nnz == 0:
        description = None  # words the vector space does not know say nothing
    if library is not None and library.nnz == 0:
        library = None  # nor do papers without them
    if all(given is None for given in (description, liked, library, ups, downs)):
        return None
    direction = _prior(description, liked, library, reference, dims)
    start = PRIOR_SCALE * direction
    start_bias = PRIOR_BIAS - PRIOR_SCALE * _typical(direction, reference)
    up_count = ups.shape[0] if ups is not None else 0
    down_count = downs.shape[0] if downs is not None else 0
    if not up_count and not down_count:
        start = sp.csr_matrix(start)
        return ReaderModel(vector_model, _strongest(start.data, start.indices, dims),
                           start_bias, 0, 0)
    rated = sp.csr_matrix(sp.vstack([m for m in (ups, downs) if m is not None]))
    is_up = np.arange(rated.shape[0]) < up_count
    # Only buckets some rated paper uses can change; solve on those columns alone.
    used = np.unique(rated.indices)
    offset = np.asarray(rated @ start.T.toarray()).ravel() + start_bias
    change, bias = _correction(rated[:, used], is_up, offset)
    combined = np.zeros(dims)
    start = sp.csr_matrix(start)
    combined[start.indices] = start.data
    combined[used] += change
    nonzero = np.flatnonzero(combined)
    return ReaderModel(vector_model, _strongest(combined[nonzero], nonzero, dims),
                       start_bias + bias, up_count, down_count)


def encode_model(model: ReaderModel) -> bytes:
    """The model as stored: a 13-byte header and its weights in the vector codec."""
    return (_HEADER.pack(_FORMAT, model.bias, model.ups, model.downs)
            + vectors.encode(model.weights))


def decode_model(blob: bytes, vector_model: str, dims: int) -> ReaderModel:
    """What `encode_model` stored; ValueError when the bytes are not a model of `dims`."""
    weights, biases, counts = _parse([blob], dims)
    return ReaderModel(vector_model, weights, float(biases[0]), int(counts[0, 0]),
                       int(counts[0, 1]))


def stack_models(blobs: Sequence[bytes], dims: int
                 ) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray]:
    """Many stored models as (weights, biases) for `affinities`, and the ratings each has
    seen, without building each: a send reads thirty thousand."""
    weights, biases, counts = _parse(blobs, dims)
    return weights, biases, counts.sum(axis=1)


def _parse(blobs: Sequence[bytes], dims: int
           ) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray]:
    biases = np.zeros(len(blobs), dtype=np.float32)
    counts = np.zeros((len(blobs), 2), dtype=np.int64)
    for i, blob in enumerate(blobs):
        if len(blob) < _HEADER.size:
            raise ValueError("not a reader model: too short")
        version, biases[i], counts[i, 0], counts[i, 1] = _HEADER.unpack_from(blob)
        if version != _FORMAT:
            raise ValueError(f"not a reader model: unknown format {version}")
    weights = vectors.stack([blob[_HEADER.size:] for blob in blobs], dims)
    return weights, biases, counts


def _columns(matrix: sp.csr_matrix, keep: np.ndarray) -> sp.csr_matrix:
    """`matrix` with only the entries whose column is marked in `keep` (same shape)."""
    kept = keep[matrix.indices]
    running = np.concatenate([[0], np.cumsum(kept, dtype=np.int64)])
    return sp.csr_matrix((matrix.data[kept], matrix.indices[kept], running[matrix.indptr]),
                         shape=matrix.shape)


def _dense_block(matrix: sp.csr_matrix, columns: np.ndarray, position: np.ndarray
                 ) -> np.ndarray:
    """The rows of `matrix` on `columns` alone, as a dense array (`position` maps a column
    to its place among them, -1 elsewhere)."""
    block = np.zeros((matrix.shape[0], len(columns)), dtype=np.float32)
    places = position[matrix.indices]
    inside = places >= 0
    rows = np.repeat(np.arange(matrix.shape[0]), np.diff(matrix.indptr))
    block[rows[inside], places[inside]] = matrix.data[inside]
    return block


def affinities(weights: sp.csr_matrix, biases: np.ndarray, papers: sp.csr_matrix
               ) -> np.ndarray:
    """readers x papers chances of an up-rating, in [0, 1]: one product for the chunk.

    `weights` has one reader per row (`stack_models`, or `ReaderModel.weights` stacked),
    `papers` one paper vector per row, in the same space. Columns most papers use (a local
    or OpenAI model's dimensions) are multiplied as dense blocks, the rest (words) as
    sparse matrices: a sparse product over columns every paper uses costs 30 times more.
    """
    if weights.shape[1] != papers.shape[1]:
        raise ValueError(f"models have {weights.shape[1]} dimensions, papers "
                         f"{papers.shape[1]}")
    weights = sp.csr_matrix(weights, dtype=np.float32)
    papers = sp.csr_matrix(papers, dtype=np.float32)
    used = np.bincount(papers.indices, minlength=papers.shape[1])
    dense = used * 2 > papers.shape[0]
    if not dense.any():
        margins = (weights @ papers.T).toarray()
    else:
        columns = np.flatnonzero(dense)
        position = np.full(papers.shape[1], -1, dtype=np.int64)
        position[columns] = np.arange(len(columns))
        margins = (_columns(weights, ~dense) @ _columns(papers, ~dense).T).toarray()
        margins += _dense_block(weights, columns, position) @ \
            _dense_block(papers, columns, position).T
    margins += np.asarray(biases, dtype=np.float32)[:, None]
    # sigmoid without overflow for large negative margins
    return (0.5 * (1.0 + np.tanh(0.5 * margins))).astype(np.float32)


def blend(topic_points: int, affinity: float | None, named_points: int = 0) -> int:
    """The 0-100 score: the rules' points alone without a model, else the affinity's
    log-odds nudged by the topic points and moved by the named keyword and author points,
    on a 0-100 scale (`BLEND_SPREAD`)."""
    if affinity is None:
        return min(100, topic_points + named_points)
    return int(blend_many(np.array([topic_points], dtype=np.float64),
                          np.array([affinity], dtype=np.float64),
                          np.array([named_points], dtype=np.float64))[0])


def blend_many(topic_points: np.ndarray, affinity: np.ndarray,
               named_points: np.ndarray | None = None) -> np.ndarray:
    """`blend` over arrays, one entry per paper: the rules' points alone where the affinity
    is NaN (the paper has no vector yet)."""
    named = np.zeros_like(topic_points) if named_points is None else named_points
    chance = np.clip(np.asarray(affinity, dtype=np.float64), 1e-9, 1 - 1e-9)
    log_odds = (np.log(chance / (1 - chance)) + TOPIC_PRIOR * topic_points / 100
                + NAMED_PRIOR * named / 100)
    blended = np.round(100 / (1 + np.exp(-log_odds / BLEND_SPREAD)))
    return np.where(np.isnan(chance), np.minimum(100, topic_points + named), blended)


def unsure(affinity_row: np.ndarray, k: int = 2) -> list[int]:
    """The k papers whose affinity is nearest 0.5, nearest first; NaN entries (papers the
    caller rules out, e.g. already in the digest) are never picked."""
    row = np.asarray(affinity_row, dtype=np.float64)
    candidates = np.flatnonzero(~np.isnan(row))
    distance = np.abs(row[candidates] - 0.5)
    order = np.lexsort((candidates, distance))[:max(0, k)]
    return [int(i) for i in candidates[order]]
