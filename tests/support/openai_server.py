"""A local OpenAI-compatible server, so the real `openai` client runs.

It speaks `POST /v1/chat/completions` (JSON in, a `chat.completion` object out),
`POST /v1/embeddings` (a `list` of `embedding` objects out) and the error shapes the
client maps to exceptions. What it answers is decided per call by a script: for chat, a
`Script` of the parsed request and the number of calls already made for the same paper
(identified by the title in the prompt) and language; for embeddings, an `EmbedScript` of
the parsed request and its number among embeddings requests. `good_card` writes a
well-formed card from the request's own abstract, so an answer always matches the paper it
is for; `good_embeddings` answers with a deterministic vector per text, words hashed into
its dimensions, so texts that share words have similar vectors.

A card translation request (its schema is named `card_translation`) goes to the
`translate_script` instead: `good_translation` renders the English card in the prompt
word by word into the target language with a fixed mapping (function words from a small
dictionary, other words respelled; Chinese as two Han characters a word, no spaces), so
the answer has the card's shape and lengths, differs from the English, and is the same
every time; `garbage_translation` answers prose instead of JSON.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import math
import re
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from tests.support.http import Reply, Request, ScriptedServer


@dataclass(frozen=True)
class Call:
    """One chat completions request, parsed."""

    body: dict[str, Any]
    title: str
    abstract: str
    number: int  # 1 for the first call about this paper (and language), 2 for its retry, ...
    # For a translation request: the target language and the English card in the prompt.
    language: str | None = None
    english: dict[str, Any] | None = None

    @property
    def is_translation(self) -> bool:
        return self.language is not None

    @property
    def prompt(self) -> str:
        return "\n".join(m.get("content", "") for m in self.body.get("messages", []))


Script = Callable[[Call], Reply]


def tokens(text: str) -> int:
    # No tokenizer is installed here; 4 characters per token is OpenAI's rule of thumb
    # for English text, and the same estimate is applied to every request.
    return max(1, math.ceil(len(text) / 4))


_ids = itertools.count(1)


def completion(
    call: Call,
    content: str | None,
    *,
    refusal: str | None = None,
    finish_reason: str = "stop",
    delay: float = 0.0,
) -> Reply:
    """A 200 `chat.completion` with usage counted from the prompt and the answer."""
    answer = content or refusal or ""
    body = {
        "id": f"chatcmpl-local-{next(_ids)}",
        "object": "chat.completion",
        "created": 1_790_000_000,
        "model": call.body.get("model", "unknown"),
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": content, "refusal": refusal},
            "finish_reason": finish_reason,
            "logprobs": None,
        }],
        "usage": {
            "prompt_tokens": tokens(call.prompt),
            "completion_tokens": tokens(answer),
            "total_tokens": tokens(call.prompt) + tokens(answer),
        },
    }
    return Reply(200, json.dumps(body).encode(), {"Content-Type": "application/json"},
                 delay=delay)


def error(status: int, message: str, headers: dict[str, str] | None = None,
          delay: float = 0.0) -> Reply:
    body = {"error": {"message": message, "type": "server_error" if status >= 500 else
                      "invalid_request_error", "param": None, "code": None}}
    return Reply(status, json.dumps(body).encode(),
                 {"Content-Type": "application/json", **(headers or {})}, delay=delay)


def card_dict(call: Call, **changes: Any) -> dict[str, Any]:
    """A valid card built from the paper in the request (its own words, reordered)."""
    words = re.findall(r"[A-Za-z][A-Za-z-]+", call.abstract) or ["paper"]

    def text(n: int, offset: int) -> str:
        picked = [words[(offset + i) % len(words)] for i in range(n)]
        return " ".join(picked).capitalize() + "."

    schema = call.body["response_format"]["json_schema"]["schema"]
    allowed = schema["properties"]["topics"]["items"]["enum"]
    card = {
        "topics": [allowed[len(call.title) % len(allowed)]],
        "key_points": [text(12, 3 * i) for i in range(4)],
        "summary": text(150, len(words) - 150),  # ends with the abstract's last words
        "methodology": text(55, 2),
        "results": text(45, 5),
        "implications": text(45, 7),
    }
    card.update(changes)
    return card


def good_card(call: Call, delay: float = 0.0) -> Reply:
    return completion(call, json.dumps(card_dict(call)), delay=delay)


def _parse(request: Request) -> tuple[dict[str, Any], str, str]:
    body = json.loads(request.body or b"{}")
    user = next((m["content"] for m in body.get("messages", []) if m.get("role") == "user"), "")
    title = re.search(r"^Title: (.*)$", user, re.MULTILINE)
    abstract = user.split("Abstract:\n", 1)[1] if "Abstract:\n" in user else ""
    return body, title.group(1) if title else "", abstract


def _translation_request(body: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """(language, English card) when the request asks for a card translation."""
    fmt = body.get("response_format") or {}
    if (fmt.get("json_schema") or {}).get("name") != "card_translation":
        return None
    user = next((m["content"] for m in body.get("messages", []) if m.get("role") == "user"), "")
    language = re.search(r"^Translate into: .*\((\S+)\)$", user, re.MULTILINE)
    if language is None or "English card:\n" not in user:
        raise ValueError("a translation request names its language and its English card")
    return language.group(1), json.loads(user.split("English card:\n", 1)[1])


# The stand-in's "translation": a fixed rendering of each English word, enough for a card
# to come back in the right shape, lengths and script, and different from the English.
_FUNCTION_WORDS: dict[str, dict[str, str]] = {
    "fr": {"the": "le", "a": "un", "an": "un", "of": "de", "and": "et", "to": "à",
           "in": "dans", "for": "pour", "with": "avec", "is": "est", "are": "sont",
           "on": "sur", "we": "nous", "this": "ce", "that": "que", "by": "par",
           "from": "depuis", "as": "comme", "or": "ou", "not": "pas", "it": "il"},
    "de": {"the": "die", "a": "ein", "an": "ein", "of": "von", "and": "und", "to": "zu",
           "for": "für", "with": "mit", "is": "ist", "are": "sind", "on": "auf",
           "we": "wir", "this": "dies", "that": "dass", "by": "durch", "from": "aus",
           "as": "als", "or": "oder", "not": "nicht", "it": "es"},
    "es": {"the": "el", "a": "un", "an": "un", "of": "de", "and": "y", "to": "a",
           "in": "en", "for": "para", "with": "con", "is": "es", "are": "son",
           "on": "sobre", "we": "nosotros", "this": "este", "that": "que", "by": "por",
           "from": "desde", "as": "como", "or": "o", "not": "no", "it": "lo"},
}
_ENDINGS = {"fr": "e", "de": "en", "es": "o", "it": "i", "pt": "o", "nl": "en"}
_HAN = "模型学习数据方法结果训练网络语言图像任务性能分析提出研究实验表示优化"


def _han(word: str) -> str:
    digest = hashlib.blake2b(word.lower().encode(), digest_size=2).digest()
    return _HAN[digest[0] % len(_HAN)] + _HAN[digest[1] % len(_HAN)]


def translate_text(text: str, language: str) -> str:
    """`text` rendered into `language` by the stand-in's fixed mapping; LaTeX between
    dollars and acronyms are kept as written, as the prompt asks."""
    table = _FUNCTION_WORDS.get(language, {})
    ending = _ENDINGS.get(language, language)
    dense = language in ("zh", "ja")

    def word(match: re.Match[str]) -> str:
        original = match.group()
        if len(original) > 1 and original.isupper():
            return original
        if dense:
            return _han(original)
        lower = original.lower()
        out = table.get(lower) or (original + ending if len(original) >= 4 else original)
        return out[:1].upper() + out[1:] if original[:1].isupper() else out

    parts = re.split(r"(\$[^$]*\$)", text)
    out = "".join(part if part.startswith("$") else re.sub(r"[A-Za-z][A-Za-z-]*", word, part)
                  for part in parts)
    if dense:
        out = re.sub(r"(?<=[\u4e00-\u9fff]) +(?=[\u4e00-\u9fff])", "", out)
        out = out.replace(". ", "\u3002").replace(", ", "\uff0c").rstrip(".") + "\u3002"
    return out


def translation_dict(call: Call, **changes: Any) -> dict[str, Any]:
    """The English card in the request, translated (see `translate_text`)."""
    assert call.english is not None and call.language is not None
    answer: dict[str, Any] = {
        "key_points": [translate_text(p, call.language) for p in call.english["key_points"]],
        **{name: translate_text(call.english[name], call.language)
           for name in ("summary", "methodology", "results", "implications")},
    }
    answer.update(changes)
    return answer


def good_translation(call: Call, delay: float = 0.0) -> Reply:
    return completion(call, json.dumps(translation_dict(call), ensure_ascii=False),
                      delay=delay)


def garbage_translation(call: Call) -> Reply:
    """What a model gives when it ignores the schema: prose, not JSON."""
    return completion(call, f"Voici la traduction ({call.language}) : la fiche dit que...")


# Embeddings, as OpenAI's API reference describes "Create embeddings"
# (https://developers.openai.com/api/reference/resources/embeddings; the same text is in the
# `openai` client's docstring of `embeddings.create`).

# The models and the length of their vectors without `dimensions`
# (https://developers.openai.com/api/docs/guides/embeddings). Only text-embedding-3 and
# later take `dimensions`, which may shorten a vector but not lengthen it.
EMBEDDING_MODELS = {"text-embedding-3-small": 1536, "text-embedding-3-large": 3072,
                    "text-embedding-ada-002": 1536}
MAX_INPUTS = 2048  # "any array must be 2048 dimensions or less"
MAX_INPUT_TOKENS = 8192  # "8192 tokens for all embedding models"
MAX_REQUEST_TOKENS = 300_000  # "a maximum of 300,000 tokens summed across all inputs"


@dataclass(frozen=True)
class EmbedCall:
    """One valid embeddings request, parsed."""

    body: dict[str, Any]
    inputs: list[str | list[int]]
    dimensions: int
    number: int  # 1 for the first embeddings request, 2 for the next, ...

    @property
    def texts(self) -> list[str]:
        return [i for i in self.inputs if isinstance(i, str)]


EmbedScript = Callable[[EmbedCall], Reply]


def _input_tokens(item: str | list[int]) -> int:
    return len(item) if isinstance(item, list) else tokens(item)


def fake_vector(item: str | list[int], dims: int) -> np.ndarray:
    """A unit vector for a text: each word adds 1 to a dimension picked by its hash, with
    a sign picked by its hash (token ids count as words)."""
    words = [str(t) for t in item] if isinstance(item, list) else \
        re.findall(r"[a-z0-9]+", item.lower())
    vector = np.zeros(dims, dtype=np.float32)
    for word in words or ["<empty>"]:
        digest = hashlib.blake2b(word.encode(), digest_size=8).digest()
        vector[int.from_bytes(digest[:4], "little") % dims] += 1 if digest[4] & 1 else -1
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm else vector


def embeddings(call: EmbedCall, delay: float = 0.0, shared: float = 0.0) -> Reply:
    """A 200 `list` of embeddings, one per input in order, in the requested encoding
    (`float` unless `base64` was asked for), usage counted from the inputs. With `shared`,
    every vector also leans that far along one common direction, as a real embedding
    model's do: any two texts then meet at a cosine well above 0."""
    data = []
    common = np.full(call.dimensions, 1 / math.sqrt(call.dimensions), dtype=np.float32)
    for index, item in enumerate(call.inputs):
        vector = fake_vector(item, call.dimensions) + shared * common
        vector /= float(np.linalg.norm(vector)) or 1.0
        # base64 is the little-endian float32 bytes the client decodes with frombuffer.
        encoded: Any = (base64.b64encode(vector.astype("<f4").tobytes()).decode()
                        if call.body.get("encoding_format") == "base64"
                        else [float(x) for x in vector])
        data.append({"object": "embedding", "index": index, "embedding": encoded})
    used = sum(_input_tokens(item) for item in call.inputs)
    body = {"object": "list", "data": data, "model": call.body["model"],
            "usage": {"prompt_tokens": used, "total_tokens": used}}
    return Reply(200, json.dumps(body).encode(), {"Content-Type": "application/json"},
                 delay=delay)


def good_embeddings(call: EmbedCall) -> Reply:
    return embeddings(call)


# Words too common to say what a text is about: a real embedding model's vectors barely
# move with them, while a bag of hashed words would be led by them.
_ENGLISH_FILLER = frozenset(
    "a an and are as at be by can for from has have in is it its of on or our that the "
    "their this to we which with while these those than into over such via both each not "
    "more most also how what when where who why show shows propose proposed paper".split())


def topical_embeddings(call: EmbedCall) -> Reply:
    """Embeddings of each text's content words only (`fake_vector` without function
    words), so that texts on one subject meet closer than texts that merely share "the"
    and "of", as with a real model."""
    kept = EmbedCall(call.body, [
        " ".join(w for w in re.findall(r"[a-z0-9]+", item.lower())
                 if w not in _ENGLISH_FILLER and len(w) > 2) if isinstance(item, str)
        else item for item in call.inputs], call.dimensions, call.number)
    return embeddings(kept)


def leaning_embeddings(call: EmbedCall) -> Reply:
    """Embeddings in one cone, like OpenAI's and MiniLM's: unrelated texts at a cosine
    of about 0.3 (0.2-0.5 with those models)."""
    return embeddings(call, shared=0.65)


def _check_embeddings(body: dict[str, Any]) -> tuple[list[str | list[int]], int] | Reply:
    """The request's inputs and vector length, or the 4xx OpenAI gives for it."""
    model = body.get("model")
    if not isinstance(model, str) or not model:
        return error(400, "you must provide a model parameter")
    if model not in EMBEDDING_MODELS:
        return error(404, f"The model `{model}` does not exist or you do not have access to it.")
    raw = body.get("input")
    # A string, an array of strings, an array of token ids, or an array of such arrays.
    if isinstance(raw, str) or (isinstance(raw, list) and raw
                                and all(isinstance(t, int) for t in raw)):
        inputs: list[str | list[int]] = [raw]
    elif isinstance(raw, list) and raw and all(
            isinstance(i, str) or (isinstance(i, list) and i
                                   and all(isinstance(t, int) for t in i)) for i in raw):
        inputs = list(raw)
    else:
        return error(400, "'input' must be a string, an array of strings, an array of "
                          "tokens or an array of token arrays")
    if len(inputs) > MAX_INPUTS:
        return error(400, f"'input' has {len(inputs)} items; at most {MAX_INPUTS} per request")
    if any(item == "" for item in inputs):
        return error(400, "'$.input' is invalid: an input cannot be an empty string")
    for item in inputs:
        if _input_tokens(item) > MAX_INPUT_TOKENS:
            return error(400, f"This model's maximum context length is {MAX_INPUT_TOKENS} "
                              f"tokens, however you requested {_input_tokens(item)} tokens")
    total = sum(_input_tokens(item) for item in inputs)
    if total > MAX_REQUEST_TOKENS:
        return error(400, f"Requested {total} tokens, max {MAX_REQUEST_TOKENS} tokens per "
                          "request")
    if body.get("encoding_format", "float") not in ("float", "base64"):
        return error(400, "'encoding_format' must be 'float' or 'base64'")
    size = EMBEDDING_MODELS[model]
    dimensions = body.get("dimensions")
    if dimensions is None:
        return inputs, size
    if not model.startswith("text-embedding-3"):
        return error(400, "This model does not support specifying dimensions.")
    if not isinstance(dimensions, int) or not 1 <= dimensions <= size:
        return error(400, f"'dimensions' must be an integer from 1 to {size} for {model}")
    return inputs, dimensions


class OpenAIServer(ScriptedServer):
    """Serves `script(call)` on /v1/chat/completions and `embed_script(call)` on
    /v1/embeddings; `calls` and `embed_calls` record every valid parsed call."""

    def __init__(self, script: Script = good_card, api_key: str = "test-key", *,
                 embed_script: EmbedScript = good_embeddings,
                 translate_script: Script = good_translation) -> None:
        self.script = script
        self.embed_script = embed_script
        self.translate_script = translate_script
        self.api_key = api_key
        self.calls: list[Call] = []
        self.embed_calls: list[EmbedCall] = []
        self._per_paper: Counter[tuple[str, str | None]] = Counter()
        self._lock = threading.Lock()
        super().__init__(self._respond)
        # A short poll so that stopping the server does not cost each test half a second.
        self._thread = threading.Thread(target=self._httpd.serve_forever,
                                        kwargs={"poll_interval": 0.02}, daemon=True)

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    def calls_for(self, title: str, language: str | None = None) -> list[Call]:
        """The calls about one paper: its card's (by default) or its translation's."""
        return [c for c in self.calls if c.title == title and c.language == language]

    @property
    def card_calls(self) -> list[Call]:
        return [c for c in self.calls if not c.is_translation]

    @property
    def translation_calls(self) -> list[Call]:
        return [c for c in self.calls if c.is_translation]

    def _respond(self, request: Request) -> Reply:
        routes = {"/v1/chat/completions": self._chat, "/v1/embeddings": self._embeddings}
        if request.method != "POST" or request.path not in routes:
            return error(404, f"no route {request.method} {request.path}")
        if request.headers.get("authorization") != f"Bearer {self.api_key}":
            return error(401, "Incorrect API key provided")
        return routes[request.path](request)

    def _embeddings(self, request: Request) -> Reply:
        try:
            body = json.loads(request.body or b"{}")
        except ValueError as exc:
            return error(400, f"bad request body: {exc}")
        if not isinstance(body, dict):
            return error(400, "the request body must be a JSON object")
        checked = _check_embeddings(body)
        if isinstance(checked, Reply):
            return checked
        inputs, dimensions = checked
        with self._lock:
            call = EmbedCall(body=body, inputs=inputs, dimensions=dimensions,
                             number=len(self.embed_calls) + 1)
            self.embed_calls.append(call)
        return self.embed_script(call)

    def _chat(self, request: Request) -> Reply:
        try:
            body, title, abstract = _parse(request)
            translation = _translation_request(body)
        except (ValueError, KeyError) as exc:
            return error(400, f"bad request body: {exc}")
        language, english = translation or (None, None)
        with self._lock:
            self._per_paper[title, language] += 1
            call = Call(body=body, title=title, abstract=abstract,
                        number=self._per_paper[title, language], language=language,
                        english=english)
            self.calls.append(call)
        return self.translate_script(call) if call.is_translation else self.script(call)
