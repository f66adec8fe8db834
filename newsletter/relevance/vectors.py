"""The offline vector space, and the codec every paper vector is stored with.

A paper is embedded once, from `paper_text` (its title twice, for weight, then its
abstract). Without an OpenAI key the vector comes from this module: words and word pairs
hashed into 2**18 buckets (scikit-learn's `HashingVectorizer`, so no vocabulary is ever
fitted), counts damped to log(1 + count), weighted by a FIXED inverse document frequency,
and each row scaled to unit length. Because nothing is refitted as papers arrive, a
vector computed today equals the one computed a year from now for the same text, and two
vectors are comparable by a dot product, which is their cosine.

The IDF ships as package data (`idf.npz`): document frequencies of the buckets seen in the
first 40 days (12,469 papers) of `arxiv_ml_days.jsonl.gz`, real arXiv machine-learning
listings from 2025-03-20 to 2026-01-27 (see bench/corpus/README.md). A bucket never
seen there gets the largest IDF, as a word rarer than any seen. `write_idf` rebuilds it:
`python -m bench.relevance --build-idf`. Changing it changes every vector, so it comes with
a new `OFFLINE_MODEL` name, which re-embeds every paper.

With a local model (EMBEDDING_LOCAL_MODEL, `local_model`), a paper's vector is the model's
beside these words (`with_words`).

The codec (`encode`/`decode`/`stack`) is shared by offline, local and OpenAI vectors: a sparse row
is stored as its int32 bucket indices and float16 values, a dense row (an OpenAI
embedding, or any row with most entries set) as float16 values only; the first byte says
which. Pure, apart from reading the IDF once and `write_idf`.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

if TYPE_CHECKING:
    from sklearn.feature_extraction.text import HashingVectorizer

OFFLINE_MODEL = "hashing-tfidf-v1"
OFFLINE_DIMS = 2**18



@lru_cache(maxsize=1)
def _vectorizer() -> HashingVectorizer:
    # scikit-learn loads here, in the processes that embed: a mail worker that only
    # scores stored vectors never pays its 40 MB.
    from sklearn.feature_extraction.text import HashingVectorizer

    return HashingVectorizer(
        n_features=OFFLINE_DIMS,
        ngram_range=(1, 2),
        stop_words="english",
        alternate_sign=False,
        norm=None,
        # Words start with a letter: "3d" and LaTeX's "$" and digits alone are not words.
        token_pattern=r"(?u)\b[a-zA-Z][a-zA-Z0-9\-]+\b",
    )

IDF_FILE = "idf.npz"


def paper_text(title: str, abstract: str) -> str:
    """What gets embedded, offline or by OpenAI; its hash says when to embed again."""
    title = " ".join(title.split())
    return f"{title}. {title}. {' '.join(abstract.split())}"


def _counts(texts: Sequence[str]) -> sp.csr_matrix:
    counts = _vectorizer().transform(texts)
    counts.sort_indices()
    return counts


def _idf(document_frequency: np.ndarray, documents: int) -> np.ndarray:
    # scikit-learn's smoothed IDF; df = 0 gives the largest value, as the docstring promises.
    return (np.log((1 + documents) / (1 + document_frequency)) + 1).astype(np.float64)


@lru_cache(maxsize=1)
def idf_weights() -> np.ndarray:
    """The fixed IDF of every bucket, from the package's `idf.npz`."""
    with resources.as_file(resources.files("newsletter.relevance") / IDF_FILE) as path:
        return _read_idf(path)


def _read_idf(path: Path) -> np.ndarray:
    with np.load(path) as table:
        frequency = np.zeros(OFFLINE_DIMS, dtype=np.float64)
        frequency[table["buckets"]] = table["document_frequency"]
        return _idf(frequency, int(table["documents"]))


def offline_vectors(texts: Sequence[str]) -> sp.csr_matrix:
    """One unit-length float32 row per text, shape (len(texts), OFFLINE_DIMS).

    Each row depends on its own text only, never on the batch it came in. A text with no
    words (empty, or only stop words) gets a zero row, which is similar to nothing.
    """
    vectors = _counts(list(texts))
    np.log1p(vectors.data, out=vectors.data)
    vectors.data *= idf_weights()[vectors.indices]
    from sklearn.preprocessing import normalize

    return normalize(vectors, norm="l2", copy=False).astype(np.float32)


# A local model's vectors go beside the offline space's words, this share of the squared
# length each: the cosine of two papers is then 0.3 x the model's cosine + 0.7 x the
# words'. The model knows what a sentence means, the words what this field calls things;
# together they ranked better than either alone (docs/BENCHMARKS.md, "A local model").
MEANING_SHARE = 0.3


def with_words(meaning: np.ndarray, texts: Sequence[str]) -> sp.csr_matrix:
    """A local model's unit rows (one per text) and the texts' offline vectors side by side,
    `MEANING_SHARE` of the length the model's: unit rows, shape (len(texts), model's dims +
    OFFLINE_DIMS)."""
    meaning = np.asarray(meaning, dtype=np.float32)
    if meaning.ndim != 2 or meaning.shape[0] != len(texts):
        raise ValueError(f"{meaning.shape} model rows for {len(texts)} texts")
    words = offline_vectors(texts)
    # A text with no words keeps its meaning at full length.
    share = np.where(words.getnnz(axis=1) > 0, MEANING_SHARE, 1.0).astype(np.float32)
    left = sp.csr_matrix(meaning * np.sqrt(share)[:, None])
    right = sp.diags(np.sqrt(1 - share)) @ words
    rows = sp.hstack([left, right], format="csr", dtype=np.float32)
    rows.eliminate_zeros()
    return rows


def write_idf(texts: Iterable[str], source: str, path: Path) -> int:
    """Rebuild the IDF table from a corpus's paper texts (`paper_text`); returns its size.

    Stores only the buckets that occur, with how many texts they occur in, compressed.
    """
    frequency = np.zeros(OFFLINE_DIMS, dtype=np.int64)
    documents = 0
    batch: list[str] = []

    def count(batch: list[str]) -> None:
        # Presence, not counts: each text adds at most 1 to a bucket.
        frequency[:] += np.bincount(_counts(batch).indices, minlength=OFFLINE_DIMS)

    for text in texts:
        batch.append(text)
        documents += 1
        if len(batch) == 2000:
            count(batch)
            batch = []
    if batch:
        count(batch)
    if not documents:
        raise ValueError("no texts to compute the IDF from")
    buckets = np.flatnonzero(frequency)
    dtype = np.uint16 if frequency.max() < 2**16 else np.uint32
    np.savez_compressed(path, buckets=buckets.astype(np.int32),
                        document_frequency=frequency[buckets].astype(dtype),
                        documents=np.int64(documents), source=np.str_(source))
    return path.stat().st_size


# The codec. A header byte says how the values are laid out, then a uint32 count.
_SPARSE = ord("S")
_DENSE = ord("D")
_HEADER = struct.Struct("<BI")


def encode(row: sp.spmatrix | sp.sparray | np.ndarray) -> bytes:
    """One vector (a 1 x dims row, sparse or dense) as compact bytes.

    Sparse when that is smaller (6 bytes per set entry against 2 per entry).
    """
    if sp.issparse(row):
        csr = sp.csr_matrix(row)
        if csr.shape[0] != 1:
            raise ValueError(f"encode takes one row, got {csr.shape[0]}")
        csr.sum_duplicates()
        csr.sort_indices()
        indices, values, dims = csr.indices, csr.data, csr.shape[1]
    else:
        dense = np.asarray(row, dtype=np.float32)
        if dense.ndim == 2 and dense.shape[0] == 1:
            dense = dense[0]
        if dense.ndim != 1:
            raise ValueError(f"encode takes one row, got shape {dense.shape}")
        indices = np.flatnonzero(dense)
        values, dims = dense[indices], dense.shape[0]
    if len(indices) * 6 < dims * 2:
        return (_HEADER.pack(_SPARSE, len(indices)) + indices.astype("<i4").tobytes()
                + values.astype("<f2").tobytes())
    full = np.zeros(dims, dtype="<f2")
    full[indices] = values
    return _HEADER.pack(_DENSE, dims) + full.tobytes()


def _parts(blob: bytes, dims: int) -> tuple[np.ndarray, np.ndarray]:
    """(indices, values) of one encoded row, checked against the space it must belong to."""
    if len(blob) < _HEADER.size:
        raise ValueError("not an encoded vector: too short")
    kind, count = _HEADER.unpack_from(blob)
    body = memoryview(blob)[_HEADER.size:]
    if kind == _SPARSE:
        if len(body) != count * 6:
            raise ValueError(f"encoded sparse vector of {count} entries has "
                             f"{len(body)} bytes, not {count * 6}")
        indices = np.frombuffer(body[:count * 4], dtype="<i4")
        values = np.frombuffer(body[count * 4:], dtype="<f2")
        if count and (indices.min() < 0 or indices.max() >= dims):
            raise ValueError(f"encoded vector has an index outside 0..{dims - 1}")
        return indices, values
    if kind == _DENSE:
        if count != dims:
            raise ValueError(f"encoded vector has {count} dimensions, expected {dims}")
        if len(body) != count * 2:
            raise ValueError(f"encoded dense vector of {count} values has {len(body)} bytes")
        values = np.frombuffer(body, dtype="<f2")
        return np.arange(dims, dtype=np.int32), values
    raise ValueError(f"not an encoded vector: unknown layout byte {kind}")


def decode(blob: bytes, dims: int) -> sp.csr_matrix:
    """The 1 x dims float32 row `encode` stored; ValueError when the bytes are not one."""
    return stack([blob], dims)


def stack(blobs: Sequence[bytes], dims: int) -> sp.csr_matrix:
    """Many encoded rows as one float32 CSR matrix, len(blobs) x dims, in order."""
    parts = [_parts(blob, dims) for blob in blobs]
    indptr = np.zeros(len(parts) + 1, dtype=np.int64)
    np.cumsum([len(indices) for indices, _ in parts], out=indptr[1:])
    if parts:
        indices = np.concatenate([i for i, _ in parts]).astype(np.int32, copy=False)
        values = np.concatenate([v for _, v in parts]).astype(np.float32)
    else:
        indices, values = np.zeros(0, np.int32), np.zeros(0, np.float32)
    return sp.csr_matrix((values, indices, indptr), shape=(len(parts), dims))
