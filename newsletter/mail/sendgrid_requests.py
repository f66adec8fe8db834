"""One request to SendGrid's v3 API, with the retries SendGrid's documentation asks for.

What an answer means (https://www.twilio.com/docs/sendgrid/api-reference/how-to-use-the-sendgrid-v3-api/rate-limits
and .../mail-send/errors):
- 2xx: done;
- 429: wait until `X-RateLimit-Reset` (capped at `max_wait`), then try again;
- 5xx, 408, timeouts, connection resets: back off exponentially (with jitter, so workers
  that failed together do not retry together), at most `max_attempts` requests in all;
- any other 4xx: never retried, the same request would be refused again.
The caller gets an `Outcome`, never an exception for HTTP trouble.
"""

from __future__ import annotations

import http.client
import json
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from python_http_client.exceptions import HTTPError

log = logging.getLogger(__name__)

# Statuses worth another try: SendGrid (or a proxy in front of it) was busy or broken.
TRANSIENT = frozenset({408, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class Outcome:
    """What one request (with its retries) came to."""

    requests: int
    ok: bool
    status: int | None = None  # the last HTTP status; None when no answer came
    error: str | None = None
    body: Any = None  # the answer's JSON, when it had one
    message_id: str | None = None  # X-Message-Id of an accepted mail/send

    @property
    def permanent(self) -> bool:
        return not self.ok and self.status is not None and self.status not in TRANSIENT


class Requests:
    """Makes requests through SendGrid's client, retrying what may succeed later."""

    def __init__(self, *, max_attempts: int = 5, backoff: float = 1.0, max_wait: float = 60.0,
                 sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.time) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.max_wait = max_wait
        # Injected so tests can record the waits instead of spending them.
        self.sleep = sleep
        # Wall clock (epoch seconds): X-RateLimit-Reset is an absolute Unix time.
        self.clock = clock

    def send(self, request: Callable[[], Any]) -> Outcome:
        """Make one request, retrying what may succeed later; never raises for HTTP trouble."""
        status: int | None = None
        error = "not sent"
        for attempt in range(1, self.max_attempts + 1):
            wait: float
            try:
                response = request()
            except HTTPError as exc:
                status = exc.status_code
                error = f"SendGrid {status}: {_message(exc.body)}"
                if status not in TRANSIENT:
                    return Outcome(attempt, ok=False, status=status, error=error)
                wait = self._rate_limit_wait(exc) if status == 429 else self._backoff(attempt)
            except (OSError, http.client.HTTPException) as exc:
                # Timeouts (TimeoutError, or URLError wrapping one), resets, refused
                # connections, truncated answers: SendGrid may or may not have taken the
                # request; retrying is the documented trade (an in-flight request may repeat).
                status = None
                error = f"SendGrid unreachable: {type(exc).__name__}: {exc}"
                wait = self._backoff(attempt)
            else:
                headers = response.headers
                return Outcome(attempt, ok=True, status=response.status_code,
                                body=_json(response.body),
                                message_id=headers.get("X-Message-Id") if headers else None)
            if attempt < self.max_attempts:
                log.warning("%s; retrying in %.1fs (attempt %d of %d)",
                            error, wait, attempt + 1, self.max_attempts)
                self.sleep(wait)
        return Outcome(self.max_attempts, ok=False, status=status, error=error)

    def _backoff(self, attempt: int) -> float:
        # Exponential with jitter, so workers that failed together do not retry together.
        delay = min(self.max_wait, self.backoff * 2 ** (attempt - 1))
        return delay * random.uniform(0.5, 1.0)

    def _rate_limit_wait(self, exc: HTTPError) -> float:
        headers = exc.headers
        reset = headers.get("X-RateLimit-Reset") if headers is not None else None
        try:
            wait = float(reset) - self.clock() if reset is not None else None
        except ValueError:
            wait = None
        if wait is None or wait <= 0:
            # No usable reset time (or it has passed, clocks differ): a short backoff.
            return self._backoff(1)
        return min(wait, self.max_wait)


def _json(body: bytes | str | None) -> Any:
    try:
        return json.loads(body) if body else None
    except ValueError:
        return None


def _message(body: bytes | str | None) -> str:
    """SendGrid's explanation from an error body: {"errors": [{"message", "field"}]}."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body or ""
    try:
        errors = json.loads(text)["errors"]
        parts = []
        for err in errors:
            field = err.get("field")
            parts.append(f"{err['message']} ({field})" if field else str(err["message"]))
        if parts:
            return "; ".join(parts)
    except (ValueError, KeyError, TypeError, AttributeError):
        pass
    return text.strip()[:500] or "no error message"
