"""Where paper vectors come from: a vector space, and the embedder that fills it.

Three kinds, one `Embedder` protocol (`space`, `embed(texts)`, `close`), chosen by
`embedder_for` from the settings, with `space_for` naming the space without loading
anything:

- a local model (EMBEDDING_LOCAL_MODEL): a sentence-transformers folder run in this
  process (`local_model`), its vectors beside the offline words (`vectors.with_words`), in
  the space `local:<folder>@<weights' hash>:<dims>+<offline space>@<share>`;
- OpenAI, or any server that speaks its embeddings API, with an embeddings key
  (EMBEDDING_API_KEY, else OPENAI_API_KEY; EMBEDDING_BASE_URL, else OPENAI_BASE_URL): the
  real `openai` client with the card writer's retry rules (newsletter.cards.llm_writer: 429
  waits for Retry-After, 5xx, timeouts and broken connections back off, other 4xx are
  final), in `openai:<EMBEDDING_MODEL>:<EMBEDDING_DIMENSIONS>`;
- otherwise the offline space `vectors.OFFLINE_MODEL`, free and deterministic.

Each returns unit-length rows in the vector codec (`vectors.encode`) and what the request
cost; a request that fails for good raises `EmbedError` with the reason. `embed` runs them
over the store.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Protocol

import numpy as np
import openai
from openai import OpenAI
from openai.types import CreateEmbeddingResponse

from newsletter.cards.llm_writer import failure, openai_client
from newsletter.cards.price import cost_usd, price_of
from newsletter.config import ConfigError, Settings
from newsletter.relevance import local_model, vectors

# OpenAI's limits per request: 2048 inputs, 8192 tokens each, 300,000 tokens in all
# (https://developers.openai.com/api/reference/resources/embeddings, "Create embeddings").
# Without a tokenizer, tokens are estimated at 3 characters each (English runs about 4):
# an estimate of 250,000 stays under 300,000 real tokens down to 2.5 characters a token,
# and 256 of arXiv's longest texts (about 2,500 characters) fit in one request.
OPENAI_BATCH_INPUTS = 256
OPENAI_BATCH_TOKENS = 250_000
# arXiv abstracts stop at 1,920 characters; an item of another feed can be a whole post.
# Cut, it stays under 8192 tokens at 1.5 characters a token, where a longer one would fail
# its whole request.
OPENAI_MAX_CHARS = 12_000
OFFLINE_BATCH = 1000
# A local model embeds about 15 papers a second on 2 cores: a chunk is stored, and progress
# shown, every few seconds.
LOCAL_BATCH = 64



@dataclass(frozen=True)
class VectorSpace:
    """Where vectors live: the name every vector records, and their length."""

    name: str
    dims: int


OFFLINE_SPACE = VectorSpace(vectors.OFFLINE_MODEL, vectors.OFFLINE_DIMS)


def openai_space(settings: Settings) -> VectorSpace:
    return VectorSpace(f"openai:{settings.embedding_model}:{settings.embedding_dimensions}",
                       settings.embedding_dimensions)


@cache
def local_space(folder: Path) -> VectorSpace:
    """A local model's vectors beside the offline words (`vectors.with_words`); the name
    changes with the weights, the offline space and the share.

    Settled once per process, as the site and the worker start: the folder's
    files are read and its weights hashed then, and a send never reads them again. New
    weights take effect when the processes restart, like any other setting."""
    try:
        dims = local_model.check(folder).dims
        identity = local_model.identity(folder)
    except (local_model.ModelFolderError, OSError) as exc:
        raise ConfigError(f"invalid configuration:\n  EMBEDDING_LOCAL_MODEL: {exc}") from None
    return VectorSpace(f"local:{identity}:{dims}+{vectors.OFFLINE_MODEL}"
                       f"@{vectors.MEANING_SHARE}", dims + vectors.OFFLINE_DIMS)


def space_for(settings: Settings) -> VectorSpace:
    """The configured vector space: the local model's when one is set, else the embeddings
    server's with a key, else the offline one."""
    if settings.embedding_local_model is not None:
        return local_space(Path(settings.embedding_local_model))
    return openai_space(settings) if settings.embeddings_key else OFFLINE_SPACE


def estimated_tokens(text: str) -> int:
    return len(text) // 3 + 1


@dataclass(frozen=True)
class Embedded:
    """One request's vectors (encoded, in the order of its texts) and what it cost."""

    vectors: list[bytes]
    tokens: int = 0
    cost_usd: float | None = 0.0
    calls: int = 1


class EmbedError(Exception):
    """A request that failed for good; the message says why, the papers stay pending."""

    def __init__(self, message: str, calls: int) -> None:
        super().__init__(message)
        self.calls = calls


class Embedder(Protocol):
    space: VectorSpace
    batch_inputs: int
    batch_tokens: int | None

    def embed(self, texts: Sequence[str]) -> Embedded: ...

    def close(self) -> None: ...


class OfflineEmbedder:
    """The fixed hashed TF-IDF space: free, deterministic, no network."""

    space = OFFLINE_SPACE
    batch_inputs = OFFLINE_BATCH
    batch_tokens = None

    def embed(self, texts: Sequence[str]) -> Embedded:
        rows = vectors.offline_vectors(texts)
        return Embedded([vectors.encode(rows[i]) for i in range(rows.shape[0])])

    def close(self) -> None:
        pass


class LocalEmbedder:
    """A sentence-transformers model folder, run in this process (`local_model`), its
    vectors beside the offline space's words."""

    batch_inputs = LOCAL_BATCH
    batch_tokens = None

    def __init__(self, folder: Path) -> None:
        self.model = local_model.load(Path(folder))
        self.space = local_space(folder)

    def embed(self, texts: Sequence[str]) -> Embedded:
        rows = vectors.with_words(self.model.encode(texts), texts)
        return Embedded([vectors.encode(rows[i]) for i in range(rows.shape[0])])

    def close(self) -> None:
        pass  # the model stays loaded for the process's next run (`local_model.load`)


class OpenAIEmbedder:
    """OpenAI's embeddings endpoint (or any OpenAI-compatible one) with our retry policy."""

    batch_inputs = OPENAI_BATCH_INPUTS
    batch_tokens = OPENAI_BATCH_TOKENS

    def __init__(self, settings: Settings, *, client: OpenAI | None = None) -> None:
        if not settings.embeddings_key and client is None:
            raise ValueError("OpenAI embeddings need EMBEDDING_API_KEY or OPENAI_API_KEY")
        self.settings = settings
        self.model = settings.embedding_model
        self.space = openai_space(settings)
        self.client = client or openai_client(settings, settings.embeddings_key,
                                              settings.embeddings_url)
        self.price = price_of(self.model)
        self.dimensions: int | openai.Omit = (self.space.dims
                                              if settings.embedding_dimensions_asked
                                              else openai.omit)

    def close(self) -> None:
        self.client.close()

    def embed(self, texts: Sequence[str]) -> Embedded:
        inputs = [text[:OPENAI_MAX_CHARS] for text in texts]
        error = "no call made"
        for attempt in range(1, self.settings.llm_max_attempts + 1):
            try:
                # Without encoding_format the client asks for base64 and decodes it itself.
                answer = self.client.embeddings.create(
                    model=self.model, input=inputs, dimensions=self.dimensions)
            except openai.APIError as exc:
                failed = failure(exc, attempt, self.settings)
                error = failed.error
                if failed.wait is None:
                    raise EmbedError(error, attempt) from None
                time.sleep(failed.wait)
                continue
            rows = self._rows(answer, len(inputs), attempt)
            tokens = answer.usage.prompt_tokens if answer.usage else 0
            return Embedded([vectors.encode(row) for row in rows], tokens,
                            cost_usd(self.price, tokens, 0), attempt)
        raise EmbedError(error, self.settings.llm_max_attempts)

    def _rows(self, answer: CreateEmbeddingResponse, count: int, attempt: int) -> np.ndarray:
        """The answer's vectors in input order, unit length; EmbedError when they do not fit."""
        data = sorted(answer.data or [], key=lambda item: item.index)
        if [item.index for item in data] != list(range(count)):
            raise EmbedError(f"the answer has {len(data)} vectors for {count} texts", attempt)
        wrong = next((len(item.embedding) for item in data
                      if len(item.embedding) != self.space.dims), None)
        if wrong is not None:
            raise EmbedError(f"the server returned {wrong}-dimensional vectors, "
                             f"EMBEDDING_DIMENSIONS is {self.space.dims}", attempt)
        rows = np.asarray([item.embedding for item in data], dtype=np.float32)
        # OpenAI's vectors are unit length already; a compatible server's may not be, and
        # every score downstream is a dot product taken as a cosine.
        norms = np.linalg.norm(rows, axis=1, keepdims=True)
        return rows / np.where(norms > 0, norms, 1)


def embedder_for(settings: Settings) -> Embedder:
    """The local model when one is set, else the embeddings server when there is a key for
    it, else the offline space."""
    if settings.embedding_local_model is not None:
        return LocalEmbedder(settings.embedding_local_model)
    if settings.embeddings_key:
        return OpenAIEmbedder(settings)
    return OfflineEmbedder()
