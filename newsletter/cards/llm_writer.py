"""The LLM writer: one card per call to an OpenAI-compatible chat completions endpoint.

The client's own retries are off (`max_retries=0`) so that the policy is ours and visible:
429 waits for Retry-After (and makes every thread wait, since the limit is shared), 5xx,
timeouts and broken connections back off exponentially, refusals and answers that are not
a valid card are asked again, and a paper that still has no card after `llm_max_attempts`
calls is returned as a failure for the caller to record. Nothing here raises per paper.

That policy lives once, in `LLMCaller.ask`: the card writer here and the translator
(`translate.py`) differ only in their prompt, their schema and what they accept.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, Generic, Self, TypeVar

import openai
from openai import OpenAI

from newsletter.cards.card import CardDraft, PaperText, WriteResult, check_draft, parse_answer
from newsletter.cards.price import cost_usd, price_of
from newsletter.cards.prompt import PROMPT_VERSION, card_messages, response_format
from newsletter.config import Settings
from newsletter.topics.tagger import guess_topics

T = TypeVar("T")

# Room for ~350 words of card in JSON; a longer answer is cut and retried, not paid for twice.
MAX_OUTPUT_TOKENS = 1200


def retry_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds a server asks us to wait: `retry-after-ms`, or `Retry-After` in seconds or
    as an HTTP date. None when it says nothing usable."""
    lower = {k.lower(): v for k, v in headers.items()}
    try:
        if "retry-after-ms" in lower:
            return max(0.0, float(lower["retry-after-ms"]) / 1000)
    except ValueError:
        pass
    value = lower.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def backoff(attempt: int, base: float, cap: float) -> float:
    """Exponential delay before call `attempt + 1`, with jitter so threads do not march."""
    delay = min(cap, base * 2 ** (attempt - 1))
    return delay * (0.75 + random.random() / 4)


class Throttle:
    """A pause shared by every thread: a 429 for one call is a 429 for the whole account."""

    def __init__(self, sleep: Callable[[float], None] = time.sleep) -> None:
        self._resume_at = 0.0
        self._lock = threading.Lock()
        self._sleep = sleep

    def hold(self, seconds: float) -> None:
        with self._lock:
            self._resume_at = max(self._resume_at, time.monotonic() + seconds)

    def wait(self) -> None:
        while True:
            with self._lock:
                left = self._resume_at - time.monotonic()
            if left <= 0:
                return
            self._sleep(left)


@dataclass
class _Spend:
    input_tokens: int = 0
    output_tokens: int = 0

    def add(self, completion: Any) -> None:
        usage = getattr(completion, "usage", None)
        if usage is not None:
            self.input_tokens += usage.prompt_tokens or 0
            self.output_tokens += usage.completion_tokens or 0


def openai_client(settings: Settings, api_key: str | None, base_url: str | None) -> OpenAI:
    """The `openai` client the card writer and the embedder call through: its own retries
    off, since `failure` decides what is retried and how long to wait."""
    return OpenAI(api_key=api_key, base_url=base_url, timeout=settings.llm_timeout,
                  max_retries=0)


class Rejected(ValueError):
    """An answer that parsed but is not usable. `keep` is what the caller would still take
    if every attempt ends like this one (a card whose only fault is its topics)."""

    def __init__(self, error: str, keep: object = None) -> None:
        super().__init__(error)
        self.keep = keep


@dataclass(frozen=True)
class Answer(Generic[T]):
    """What `LLMCaller.ask` ends with: the accepted value, or the last error (and the last
    kept fallback, if any), with the calls made and the tokens they cost."""

    value: T | None
    error: str | None
    attempts: int
    input_tokens: int
    output_tokens: int
    kept: object = None


class LLMCaller:
    """A structured-output call with our retry policy; safe to use from many threads.

    The card writer and the translator are both one of these: the same client settings,
    the same waits on 429 and 5xx, the same handling of refusals and cut-off answers.
    Given the `client` and `throttle` of another caller, it shares them (one account, one
    rate limit) and leaves closing the client to its owner.
    """

    def __init__(self, settings: Settings, *, client: OpenAI | None = None,
                 throttle: Throttle | None = None) -> None:
        if not settings.openai_api_key and client is None:
            raise ValueError("an LLM call needs OPENAI_API_KEY")
        self.settings = settings
        self.model = settings.openai_model
        self.concurrency = settings.llm_concurrency
        self._owns_client = client is None
        self.client = client or openai_client(settings, settings.openai_api_key,
                                              settings.openai_base_url)
        self.throttle = throttle or Throttle()
        self.price = price_of(self.model, (settings.llm_price_input, settings.llm_price_output))

    def close(self) -> None:
        if self._owns_client:
            self.client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def cost(self, input_tokens: int, output_tokens: int) -> float | None:
        return cost_usd(self.price, input_tokens, output_tokens)

    def ask(self, messages: list[dict[str, str]], response_format: dict[str, Any],
            accept: Callable[[str | None], T], *,
            max_tokens: int = MAX_OUTPUT_TOKENS) -> Answer[T]:
        """Call until `accept(content)` returns a value, at most `llm_max_attempts` times.

        `accept` raises ValueError for an answer to ask again (`Rejected` to keep a
        fallback); connection and HTTP errors follow `failure`.
        """
        spend = _Spend()
        error = "no call made"
        kept: object = None
        attempt = 0
        for attempt in range(1, self.settings.llm_max_attempts + 1):
            self.throttle.wait()
            try:
                completion = self.client.chat.completions.create(
                    model=self.model,
                    messages=messages,  # type: ignore[arg-type]
                    response_format=response_format,  # type: ignore[arg-type]
                    max_completion_tokens=max_tokens,
                )
            except (openai.APIConnectionError, openai.APIStatusError) as exc:
                failed = failure(exc, attempt, self.settings)
                error = failed.error
                if failed.wait is None:
                    break
                if failed.rate_limited:  # the whole account waits, not this thread alone
                    self.throttle.hold(failed.wait)
                else:
                    time.sleep(failed.wait)
                continue
            spend.add(completion)
            choice = completion.choices[0] if completion.choices else None
            if choice is None:
                error = "answer without a choice"
                continue
            if getattr(choice.message, "refusal", None):
                error = f"refused: {choice.message.refusal}"
                continue
            if choice.finish_reason == "length":
                error = f"answer cut off at {max_tokens} tokens"
                continue
            try:
                value = accept(choice.message.content)
            except Rejected as exc:
                error, kept = str(exc), exc.keep if exc.keep is not None else kept
                continue
            except ValueError as exc:
                error = str(exc)
                continue
            return Answer(value, None, attempt, spend.input_tokens, spend.output_tokens)
        return Answer(None, error, attempt, spend.input_tokens, spend.output_tokens, kept)


def _accept_card(content: str | None) -> CardDraft:
    checked = check_draft(parse_answer(content))
    if checked.ok:
        return checked.draft
    raise Rejected("invalid card: " + "; ".join(checked.problems),
                   keep=checked.draft if checked.only_topics else None)


class LLMWriter(LLMCaller):
    """Writes cards with the `openai` client; safe to call from many threads at once."""

    source = "llm"
    prompt_version = PROMPT_VERSION

    def __init__(self, settings: Settings, *, client: OpenAI | None = None) -> None:
        super().__init__(settings, client=client)
        self._response_format = response_format()

    def _result(self, answer: Answer[CardDraft], draft: CardDraft | None = None,
                error: str | None = None) -> WriteResult:
        return WriteResult(
            source="llm", model=self.model, prompt_version=PROMPT_VERSION, draft=draft,
            error=error, attempts=answer.attempts, input_tokens=answer.input_tokens,
            output_tokens=answer.output_tokens,
            cost_usd=self.cost(answer.input_tokens, answer.output_tokens),
        )

    def write(self, paper: PaperText) -> WriteResult:
        answer = self.ask(card_messages(paper), self._response_format, _accept_card)
        if answer.value is not None:
            return self._result(answer, draft=answer.value)
        if isinstance(answer.kept, CardDraft):
            # A good card whose topics were all outside the taxonomy, every time: the text
            # is the model's, the topics come from the paper's categories and words.
            topics = guess_topics(paper.title, paper.abstract, paper.categories)
            return self._result(answer, draft=answer.kept.model_copy(update={"topics": topics}))
        return self._result(answer, error=answer.error)


@dataclass(frozen=True)
class Failure:
    """What a failed OpenAI call means for the next one (cards and embeddings alike)."""

    error: str
    wait: float | None  # seconds before trying again; None: asking again gets the same
    rate_limited: bool = False


def failure(exc: openai.APIError, attempt: int, settings: Settings) -> Failure:
    """429 waits as long as the server asks; 5xx, 408, 409, timeouts and broken
    connections back off; other 4xx (400, 401, 403, 404, 422) and unreadable answers are
    final."""
    pause = backoff(attempt, settings.llm_backoff, settings.llm_max_wait)
    if isinstance(exc, openai.RateLimitError):
        asked = retry_after(exc.response.headers)
        wait = min(pause if asked is None else asked, settings.llm_max_wait)
        return Failure(f"rate limited (HTTP 429, Retry-After {wait:g}s)", wait, True)
    if isinstance(exc, openai.APITimeoutError):
        return Failure(f"no answer within {settings.llm_timeout:g}s", pause)
    if isinstance(exc, openai.APIConnectionError):
        return Failure(f"connection failed: {exc}", pause)
    if isinstance(exc, openai.APIStatusError):
        transient = exc.status_code >= 500 or exc.status_code in (408, 409)
        return Failure(f"HTTP {exc.status_code}: {_message(exc)}", pause if transient else None)
    return Failure(f"unreadable answer: {exc}", None)


def _message(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])[:300]
    return str(exc.message)[:300]
