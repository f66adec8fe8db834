"""The relevance core on real arXiv abstracts: paper vectors, their codec, and reader models.

Papers come from tests/fixtures/corpus (two whole days of real arXiv listings; see its
README). A paper's arXiv category stands for what a reader cares about, as in
bench/relevance.py: robotics (cs.RO), ML security (cs.CR). One day is what the reader
rated, the other what they have not seen yet.
"""

from __future__ import annotations

import gzip
import json
import re
from itertools import product
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp

from newsletter.relevance import model, vectors
from tests.conftest import LOCAL_FIXTURES

CORPUS = LOCAL_FIXTURES / "corpus" / "arxiv_ml_sample.jsonl.gz"
RATED_DAY, UNSEEN_DAY = "2026-06-26", "2026-06-14"
SPACE, DIMS = vectors.OFFLINE_MODEL, vectors.OFFLINE_DIMS


def _papers(day: str) -> list[dict[str, Any]]:
    with gzip.open(CORPUS, "rt", encoding="utf-8") as lines:
        return [p for line in lines if (p := json.loads(line))["date"] == day]


class Day:
    def __init__(self, day: str) -> None:
        self.papers = _papers(day)
        self.vectors = vectors.offline_vectors(
            [vectors.paper_text(p["title"], p["abstract"]) for p in self.papers])

    def about(self, category: str) -> np.ndarray:
        return np.array([category in p["categories"] for p in self.papers])


@pytest.fixture(scope="module")
def rated() -> Day:
    return Day(RATED_DAY)


@pytest.fixture(scope="module")
def unseen() -> Day:
    return Day(UNSEEN_DAY)


def _affinity(reader: model.ReaderModel, papers: sp.csr_matrix) -> np.ndarray:
    return model.affinities(reader.weights, np.array([reader.bias]), papers)[0]


def _ranks(scores: np.ndarray) -> np.ndarray:
    """1 for the best-scored paper."""
    return np.argsort(np.argsort(-scores)) + 1


def _chance_on_above_off(scores: np.ndarray, on: np.ndarray) -> float:
    """How often a paper on the subject scores above one off it (0.5 is a coin toss)."""
    return float(np.mean([a > b for a, b in product(scores[on], scores[~on])]))


# Vectors and the codec


def test_a_papers_vector_is_fixed_whatever_it_is_embedded_with(rated: Day) -> None:
    paper = rated.papers[0]
    text = vectors.paper_text(paper["title"], paper["abstract"])
    alone = vectors.offline_vectors([text])
    in_batch = vectors.offline_vectors(["Unrelated words about protein folding.", text])[1]
    assert (alone != in_batch).nnz == 0
    assert (alone != rated.vectors[0]).nnz == 0
    assert alone.shape == (1, DIMS) and alone.dtype == np.float32
    assert np.linalg.norm(alone.data) == pytest.approx(1.0, abs=1e-5)


def test_a_papers_title_finds_it_among_the_days_papers(rated: Day) -> None:
    titles = vectors.offline_vectors([p["title"] for p in rated.papers[:40]])
    nearest = np.asarray((titles @ rated.vectors.T).argmax(axis=1)).ravel()
    assert np.mean(nearest == np.arange(40)) >= 0.9


def test_text_without_words_gives_a_zero_vector() -> None:
    empty = vectors.offline_vectors(["", "the of and $$ 42"])
    assert empty.shape == (2, DIMS) and empty.nnz == 0


def test_a_sparse_vector_round_trips_through_the_codec(rated: Day) -> None:
    row = rated.vectors[3]
    blob = vectors.encode(row)
    back = vectors.decode(blob, DIMS)
    assert back.shape == (1, DIMS)
    assert np.array_equal(back.indices, row.indices)
    assert np.allclose(back.data, row.data, atol=1e-3)
    assert len(blob) == 5 + 6 * row.nnz  # int32 index and float16 value per word


def test_a_dense_vector_round_trips_through_the_codec() -> None:
    rng = np.random.default_rng(1)
    embedding = rng.standard_normal(256).astype(np.float32)
    embedding /= np.linalg.norm(embedding)
    blob = vectors.encode(embedding)
    assert len(blob) == 5 + 2 * 256
    assert np.allclose(vectors.decode(blob, 256).toarray()[0], embedding, atol=1e-3)
    # a dense row given as a sparse matrix is stored the same way
    assert vectors.encode(sp.csr_matrix(embedding)) == blob


def test_stack_decodes_many_rows_in_order(rated: Day) -> None:
    rows = [rated.vectors[i] for i in range(5)]
    blobs = [vectors.encode(r) for r in rows] + [vectors.encode(sp.csr_matrix((1, DIMS)))]
    stacked = vectors.stack(blobs, DIMS)
    assert stacked.shape == (6, DIMS)
    for i, blob in enumerate(blobs):
        assert (stacked[i] != vectors.decode(blob, DIMS)).nnz == 0
    assert stacked[5].nnz == 0


@pytest.mark.parametrize("blob, dims", [
    (b"", DIMS),
    (b"X\x01\x00\x00\x00\x00\x00", DIMS),  # unknown layout
    (b"S\x02\x00\x00\x00\x01\x00\x00\x00", DIMS),  # cut short
    (vectors.encode(np.ones(256, dtype=np.float32) / 16), 1536),  # another space's length
    (vectors.encode(sp.csr_matrix(([1.0], ([0], [DIMS - 1])), shape=(1, DIMS))), 1024),
])
def test_bytes_that_are_not_a_vector_of_the_space_are_refused(blob: bytes, dims: int) -> None:
    with pytest.raises(ValueError):
        vectors.decode(blob, dims)


def test_the_idf_ships_with_the_package() -> None:
    weights = vectors.idf_weights()
    assert weights.shape == (DIMS,) and np.all(weights >= 1)
    # unseen buckets get the largest weight: rarer than any word the corpus had
    assert (weights == weights.max()).sum() < DIMS // 10


def test_the_idf_is_rebuilt_from_a_corpus(rated: Day, tmp_path: Path) -> None:
    texts = [vectors.paper_text(p["title"], p["abstract"]) for p in rated.papers]
    path = tmp_path / "idf.npz"
    assert vectors.write_idf(texts, "the sample's second day", path) == path.stat().st_size
    with np.load(path) as table:
        assert int(table["documents"]) == len(texts)
        assert str(table["source"]) == "the sample's second day"
        frequency = dict(zip(table["buckets"].tolist(),
                             table["document_frequency"].tolist(), strict=True))
    (model_bucket,) = vectors.offline_vectors(["model"]).indices
    # the texts that have the word, as the vectorizer splits words
    assert frequency[model_bucket] == sum(
        "model" in re.findall(r"(?u)\b[a-zA-Z][a-zA-Z0-9\-]+\b", text.lower())
        for text in texts)
    with pytest.raises(ValueError):
        vectors.write_idf([], "nothing", tmp_path / "empty.npz")


# Reader models


def test_nothing_to_go_on_gives_no_model() -> None:
    assert model.train(SPACE, DIMS) is None
    silent = vectors.offline_vectors(["the and of"])
    assert model.train(SPACE, DIMS, description=silent) is None


def test_a_description_alone_ranks_its_subject_first(unseen: Day) -> None:
    reader = model.train(SPACE, DIMS, description=vectors.offline_vectors(
        ["robot learning: manipulation, locomotion and navigation"]))
    assert reader is not None and (reader.ups, reader.downs) == (0, 0)
    assert _chance_on_above_off(_affinity(reader, unseen.vectors),
                                unseen.about("cs.RO")) > 0.8


def test_a_description_starts_the_typical_paper_at_one_chance_in_twenty_in_any_space(
    rated: Day, unseen: Day
) -> None:
    said = "robot learning: manipulation, locomotion and navigation"
    # Offline, the typical abstract shares next to nothing with a one-line description:
    # centring on the store's papers changes little.
    plain = model.train(SPACE, DIMS, description=vectors.offline_vectors([said]))
    centred = model.train(SPACE, DIMS, description=vectors.offline_vectors([said]),
                          reference=rated.vectors)
    assert plain is not None and centred is not None
    for reader in (plain, centred):
        assert 0.04 < float(np.median(_affinity(reader, unseen.vectors))) < 0.06
    # Dense vectors lean along one common direction (OpenAI's and MiniLM's do): unrelated
    # texts meet at a cosine of about 0.3. Uncentred, every paper would start likely.
    def leaning(rows: sp.csr_matrix) -> sp.csr_matrix:
        dense = rows.toarray()[:, :256] + 0.65 / 16  # 0.65 along the all-ones unit vector
        return sp.csr_matrix(dense / np.linalg.norm(dense, axis=1, keepdims=True))

    description = leaning(vectors.offline_vectors([said]))
    papers, store = leaning(unseen.vectors), leaning(rated.vectors)
    plain = model.train("dense", 256, description=description)
    centred = model.train("dense", 256, description=description, reference=store)
    assert plain is not None and centred is not None
    assert float(np.median(_affinity(plain, papers))) > 0.5
    assert 0.03 < float(np.median(_affinity(centred, papers))) < 0.08
    # Centring moves every paper alike (only the bias moves), so the order stays.
    assert (plain.weights != centred.weights).nnz == 0 and centred.bias < plain.bias


def test_up_ratings_on_a_subject_rank_unseen_papers_on_it_first(rated: Day,
                                                                 unseen: Day) -> None:
    for subject in ("cs.RO", "cs.CR"):
        on = rated.about(subject)
        reader = model.train(SPACE, DIMS, ups=rated.vectors[np.flatnonzero(on)],
                             downs=rated.vectors[np.flatnonzero(~on)[:40]])
        assert reader is not None and reader.ups == on.sum() and reader.downs == 40
        affinity = _affinity(reader, unseen.vectors)
        assert _chance_on_above_off(affinity, unseen.about(subject)) > 0.8, subject
        # its best unseen paper is on the subject
        assert unseen.about(subject)[np.argmax(affinity)], subject


def test_down_ratings_push_a_subject_down(rated: Day, unseen: Day) -> None:
    said = vectors.offline_vectors(["robots, and ML security: adversarial attacks, privacy"])
    robots_rated = rated.about("cs.RO")
    before = model.train(SPACE, DIMS, description=said)
    after = model.train(SPACE, DIMS, description=said,
                        downs=rated.vectors[np.flatnonzero(robots_rated)])
    assert before is not None and after is not None
    robots = unseen.about("cs.RO")
    affinity_before = _affinity(before, unseen.vectors)
    affinity_after = _affinity(after, unseen.vectors)
    assert np.median(affinity_after[robots]) < np.median(affinity_before[robots]) / 2
    # ... and they fall in the day's ranking, below the security papers that stay wanted
    ranks_before, ranks_after = _ranks(affinity_before), _ranks(affinity_after)
    assert np.median(ranks_after[robots]) > np.median(ranks_before[robots]) + 20
    security = unseen.about("cs.CR")
    assert np.median(ranks_after[security]) < np.median(ranks_after[robots])


def test_a_stored_model_is_a_few_kb_and_scores_the_same(rated: Day, unseen: Day) -> None:
    on = rated.about("cs.CV")  # the largest subject: the most words to keep
    reader = model.train(SPACE, DIMS,
                         description=vectors.offline_vectors(["image segmentation"]),
                         liked=rated.vectors[np.flatnonzero(on)[:20]],
                         ups=rated.vectors[np.flatnonzero(on)[20:80]],
                         downs=rated.vectors[np.flatnonzero(~on)[:150]])
    assert reader is not None and reader.weights.nnz == model.MODEL_WEIGHTS
    blob = model.encode_model(reader)
    assert len(blob) <= 4096
    back = model.decode_model(blob, SPACE, DIMS)
    assert (back.vector_model, back.ups, back.downs) == (SPACE, 60, 150)
    assert back.bias == pytest.approx(reader.bias, rel=1e-6)
    assert np.allclose(_affinity(back, unseen.vectors), _affinity(reader, unseen.vectors),
                       atol=2e-3)
    with pytest.raises(ValueError):
        model.decode_model(blob[:-3], SPACE, DIMS)
    with pytest.raises(ValueError):
        model.decode_model(b"\x07" + blob[1:], SPACE, DIMS)


def test_liked_papers_alone_give_a_model(rated: Day, unseen: Day) -> None:
    reader = model.train(SPACE, DIMS,
                         liked=rated.vectors[np.flatnonzero(rated.about("cs.RO"))])
    assert reader is not None
    assert _chance_on_above_off(_affinity(reader, unseen.vectors),
                                unseen.about("cs.RO")) > 0.8


def test_vectors_of_another_space_are_refused(rated: Day) -> None:
    with pytest.raises(ValueError, match="dimensions"):
        model.train(SPACE, 256, ups=rated.vectors[:2])
    weights, biases, _ = model.stack_models([], 256)
    with pytest.raises(ValueError, match="dimensions"):
        model.affinities(weights, biases, rated.vectors)


def test_affinities_of_a_chunk_equal_each_readers_own_scores(rated: Day, unseen: Day) -> None:
    readers = []
    for i, subject in enumerate(("cs.RO", "cs.CR", "cs.IR", "cs.CV")):
        on = rated.about(subject)
        reader = model.train(SPACE, DIMS, ups=rated.vectors[np.flatnonzero(on)],
                             downs=rated.vectors[np.flatnonzero(~on)[i * 10:i * 10 + 30]])
        assert reader is not None
        readers.append(model.encode_model(reader))
    weights, biases, ratings = model.stack_models(readers, DIMS)
    chunk = model.affinities(weights, biases, unseen.vectors)
    assert chunk.shape == (4, len(unseen.papers))
    assert np.all((chunk >= 0) & (chunk <= 1))
    for i, blob in enumerate(readers):
        reader = model.decode_model(blob, SPACE, DIMS)
        dots = (unseen.vectors @ reader.weights.T).toarray().ravel() + reader.bias
        assert np.allclose(chunk[i], 1 / (1 + np.exp(-dots)), atol=1e-5)
        # What the why-line and the tuning papers go by: the ratings each model has seen.
        assert ratings[i] == reader.ups + reader.downs > 0


def test_affinities_with_a_dense_block_equal_the_plain_product() -> None:
    # Local vectors: every paper uses the model's first columns, then a few word buckets.
    # Those shared columns are multiplied as a dense block, the rest sparse; together they
    # must give what one sparse product gives, empty rows (a model or paper without
    # entries) included.
    rng = np.random.default_rng(3)
    dims = 16 + 1000

    def rows(count: int, dense: int, words: int, empty: set[int]) -> sp.csr_matrix:
        matrix = np.zeros((count, dims), dtype=np.float32)
        for i in set(range(count)) - empty:
            matrix[i, :dense] = rng.standard_normal(dense)
            matrix[i, 16 + rng.choice(1000, words, replace=False)] = rng.standard_normal(words)
        return sp.csr_matrix(matrix)

    for dense in (16, 0):
        weights = rows(7, dense, 30, {0, 6})
        papers = rows(9, dense, 40, {0, 8})
        biases = rng.standard_normal(7).astype(np.float32)
        margins = (weights @ papers.T).toarray() + biases[:, None]
        assert np.allclose(model.affinities(weights, biases, papers),
                           1 / (1 + np.exp(-margins)), atol=1e-6)


# The reader's own papers (a library file, an author feed)


def _log_odds(chance: float) -> float:
    return float(np.log(chance / (1 - chance)))


@pytest.mark.parametrize("field", ["cs.RO", "cs.CL"])  # 7 and 85 papers of the rated day
def test_a_library_alone_gives_a_model_that_ranks_its_field_first(rated: Day, unseen: Day,
                                                                  field: str) -> None:
    library = rated.vectors[np.flatnonzero(rated.about(field))]
    reader = model.train(SPACE, DIMS, library=library, reference=rated.vectors)
    assert reader is not None and (reader.ups, reader.downs) == (0, 0)
    affinity = _affinity(reader, unseen.vectors)
    on = unseen.about(field)
    assert _chance_on_above_off(affinity, on) > 0.8, field
    assert on[np.argmax(affinity)], field  # the day's best paper is of their field


def test_papers_without_words_are_no_library() -> None:
    empty = vectors.offline_vectors(["", "the of and"])
    assert model.train(SPACE, DIMS, library=empty) is None


def test_ratings_move_a_paper_as_much_beside_200_library_papers_as_beside_20(
    rated: Day, unseen: Day
) -> None:
    # A machine-learning reader's library: the rated day's cs.LG and cs.AI papers.
    ml = np.flatnonzero(rated.about("cs.LG") | rated.about("cs.AI"))
    libraries = {n: rated.vectors[ml[:n]] for n in (20, 200)}
    start = model.train(SPACE, DIMS, library=libraries[200], reference=rated.vectors)
    assert start is not None
    # The unseen paper closest to their library, which they rate down three times.
    target = int(np.argmax(_affinity(start, unseen.vectors)))
    downs = unseen.vectors[[target] * 3]
    moved = {}
    for n, library in libraries.items():
        before = model.train(SPACE, DIMS, library=library, reference=rated.vectors)
        after = model.train(SPACE, DIMS, library=library, downs=downs,
                            reference=rated.vectors)
        assert before is not None and after is not None and after.downs == 3
        chance_before = float(_affinity(before, unseen.vectors)[target])
        chance_after = float(_affinity(after, unseen.vectors)[target])
        assert chance_after < chance_before, n
        moved[n] = _log_odds(chance_before) - _log_odds(chance_after)
    # The library counts as one block, so ten times the papers do not hold the paper up:
    # the ratings move it by the same order with 200 papers as with 20.
    assert moved[200] > 0.5 and moved[200] > moved[20] / 2, moved


def test_a_library_beside_a_description_leaves_the_descriptions_best_paper_near_the_top(
    rated: Day, unseen: Day
) -> None:
    said = vectors.offline_vectors(["robot learning: manipulation, locomotion and navigation"])
    alone = model.train(SPACE, DIMS, description=said, reference=rated.vectors)
    assert alone is not None
    best = int(np.argmax(_affinity(alone, unseen.vectors)))
    # 200 papers of other fields (the rated day's computer vision and language papers).
    other = rated.vectors[np.flatnonzero(rated.about("cs.CV") | rated.about("cs.CL"))[:200]]
    assert other.shape[0] == 186
    library_only = model.train(SPACE, DIMS, library=other, reference=rated.vectors)
    both = model.train(SPACE, DIMS, description=said, library=other, reference=rated.vectors)
    assert library_only is not None and both is not None
    rank_both = _ranks(_affinity(both, unseen.vectors))[best]
    assert rank_both <= 10  # of 101
    assert rank_both < _ranks(_affinity(library_only, unseen.vectors))[best]


def test_without_a_library_the_model_starts_as_it_did_before_libraries(
    rated: Day, unseen: Day
) -> None:
    # The start as documented before libraries existed: the unit description and each unit
    # liked paper averaged, PRIOR_SCALE long, centred on the reference's median paper.
    said = vectors.offline_vectors(["robot learning: manipulation, locomotion and navigation"])
    liked = rated.vectors[np.flatnonzero(rated.about("cs.RO"))[:3]]
    rows = [said.toarray()[0]] + [liked[i].toarray()[0] for i in range(3)]
    direction = sum(row / np.linalg.norm(row) for row in rows)
    direction /= np.linalg.norm(direction)
    bias = model.PRIOR_BIAS - model.PRIOR_SCALE * float(
        np.median(rated.vectors.toarray() @ direction))
    reader = model.train(SPACE, DIMS, description=said, liked=liked, reference=rated.vectors)
    assert reader is not None and reader.weights.nnz == model.MODEL_WEIGHTS
    assert reader.bias == pytest.approx(bias, abs=1e-6)  # the vectors are float32
    kept = reader.weights.indices
    start = model.PRIOR_SCALE * direction
    assert np.allclose(reader.weights.data, start[kept], atol=1e-6)
    assert np.abs(start[kept]).min() >= np.sort(np.abs(start))[-model.MODEL_WEIGHTS]
    # ... and with ratings, no library is the same model as before: `library=None`.
    downs = rated.vectors[np.flatnonzero(rated.about("cs.CV"))[:10]]
    plain = model.train(SPACE, DIMS, description=said, liked=liked, downs=downs,
                        reference=rated.vectors)
    explicit = model.train(SPACE, DIMS, description=said, liked=liked, downs=downs,
                           reference=rated.vectors, library=None)
    assert plain is not None and explicit is not None
    assert model.encode_model(plain) == model.encode_model(explicit)


# Scores


def test_without_a_model_the_score_is_todays_points() -> None:
    assert [model.blend(points, None) for points in range(101)] == list(range(101))


def test_a_paper_outside_the_topics_can_outrank_a_weak_topic_match() -> None:
    learned = model.blend(0, 0.8)  # no topic, keyword or author: the model alone
    weak_topic = model.blend(35, 0.2)  # a side topic of the reader's, the model unsure
    assert learned > weak_topic
    # topics are a prior: with the same affinity, a topic match never scores lower
    assert all(model.blend(60, a) >= model.blend(0, a) for a in np.linspace(0, 1, 101))
    assert model.blend(100, 0.5) > model.blend(0, 0.5)
    assert all(0 <= model.blend(p, a) <= 100 for p in (0, 100) for a in (0.0, 1.0))


def test_whole_point_scores_keep_the_models_order_among_unlikely_papers() -> None:
    chances = [0.002, 0.005, 0.01, 0.02, 0.05]
    scores = [model.blend(0, c) for c in chances]
    assert scores == sorted(set(scores))


def test_unsure_picks_the_papers_nearest_even_odds() -> None:
    row = np.array([0.1, 0.48, 0.9, 0.55, np.nan, 0.02, 0.6])
    assert model.unsure(row) == [1, 3]
    assert model.unsure(row, k=3) == [1, 3, 6]
    assert model.unsure(np.array([np.nan, np.nan])) == []
