"""The SendGrid sender: one v3 `mail/send` request per up to 1,000 recipients of a batch.

A batch is one rendered digest; each recipient becomes a personalization carrying their
own substitutions (their links), their own headers (their List-Unsubscribe) and
`custom_args` (the delivery id, echoed back by the event webhook). SendGrid fills the tags
server-side, so 1,000 digests cost one request.

What a request's answer means for its recipients, in `BatchResult` terms:
- 2xx: `accepted`.
- 429: wait until `X-RateLimit-Reset` (capped at `max_wait`), then try again.
- 5xx, 408, timeouts, connection resets: back off exponentially and try again, at most
  `max_attempts` requests in all; when they run out the recipients are in neither list.
- any other 4xx (400, 413, ...): never retried, the same request would be refused again;
  the recipients are `rejected` and `error` holds SendGrid's own message.
- 401 or 403 (the key or the sender identity is wrong, not the recipients): never retried,
  and neither that chunk nor the rest of the batch is attempted.
Recipients in neither list were not sent and may be sent again later.
"""

from __future__ import annotations

import http.client
import json
import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from email.utils import parseaddr
from typing import Any

import sendgrid
from python_http_client.exceptions import HTTPError

from newsletter.batch import Batch, BatchResult, Recipient
from newsletter.config import Settings

log = logging.getLogger(__name__)

SENDGRID_HOST = "https://api.sendgrid.com"

# Statuses worth another try: SendGrid (or a proxy in front of it) was busy or broken.
_TRANSIENT = frozenset({408, 429, 500, 502, 503, 504})
# Refusals that concern the account, not this request: every later request would get the same.
_ACCOUNT = frozenset({401, 403})


@dataclass(frozen=True)
class _Outcome:
    """What one request (with its retries) came to."""

    requests: int
    ok: bool
    status: int | None = None  # the last HTTP status; None when no answer came
    error: str | None = None

    @property
    def permanent(self) -> bool:
        return not self.ok and self.status is not None and self.status not in _TRANSIENT


class SendGridSender:
    """Sends batches through SendGrid's v3 API with the official `sendgrid` client."""

    # SendGrid's limit: at most 1,000 personalizations (and recipients) per request.
    max_batch = 1000

    def __init__(
        self,
        api_key: str,
        mail_from: str,
        *,
        host: str = SENDGRID_HOST,
        timeout: float = 30.0,
        max_attempts: int = 5,
        backoff: float = 1.0,
        max_wait: float = 60.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.client = sendgrid.SendGridAPIClient(api_key=api_key, host=host.rstrip("/"))
        # python_http_client waits forever by default; a hung connection would stall a worker
        # (and hold its claimed deliveries) indefinitely. Every sub-client it builds for a
        # URL path (client.mail.send) copies this value into urlopen(timeout=...).
        self.client.client.timeout = timeout
        name, address = parseaddr(mail_from)
        if "@" not in address:
            raise ValueError(f"MAIL_FROM {mail_from!r} has no email address")
        self.sender: dict[str, str] = {"email": address, **({"name": name} if name else {})}
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.max_wait = max_wait
        # Injected so tests can record the waits instead of spending them.
        self.sleep = sleep
        # Wall clock (epoch seconds): X-RateLimit-Reset is an absolute Unix time.
        self.clock = clock

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> SendGridSender:
        if not settings.sendgrid_api_key:
            raise ValueError("MAIL_BACKEND=sendgrid needs SENDGRID_API_KEY")
        options: dict[str, Any] = {
            "host": settings.sendgrid_host,
            "timeout": settings.sendgrid_timeout,
            "max_attempts": settings.sendgrid_max_attempts,
            "max_wait": settings.sendgrid_max_wait,
        }
        options.update(overrides)
        return cls(settings.sendgrid_api_key, settings.mail_from, **options)

    def send_batch(self, batch: Batch) -> BatchResult:
        accepted: list[str] = []
        rejected: list[str] = []
        requests = 0
        error: str | None = None
        recipients = list(batch.recipients)
        for start in range(0, len(recipients), self.max_batch):
            chunk = recipients[start : start + self.max_batch]
            outcome = self._post(self.request_body(batch, chunk))
            requests += outcome.requests
            addresses = [r.to for r in chunk]
            if outcome.ok:
                accepted.extend(addresses)
                continue
            error = outcome.error
            if outcome.permanent and outcome.status not in _ACCOUNT:
                # A 400 or 413 is about this request's content; the next chunk may be fine.
                rejected.extend(addresses)
                continue
            # Retries ran out (SendGrid is down) or the account is refused (a wrong key, an
            # unverified sender: the operator's fault, not the readers'): leave this chunk
            # and the rest unsent, for a run after the operator fixes it.
            break
        return BatchResult(tuple(accepted), tuple(rejected), requests, error)

    def request_body(self, batch: Batch, recipients: Sequence[Recipient]) -> dict[str, Any]:
        """The v3 mail/send JSON for one request (at most `max_batch` recipients)."""
        body: dict[str, Any] = {
            "personalizations": [_personalization(r) for r in recipients],
            "from": self.sender,
            "subject": batch.subject,
            # SendGrid requires text/plain before text/html.
            "content": [
                {"type": "text/plain", "value": batch.text},
                {"type": "text/html", "value": batch.html},
            ],
        }
        if batch.headers:
            body["headers"] = _strings(batch.headers)
        if batch.sections:
            # Shared blocks each personalization names in its substitutions; SendGrid fills
            # substitutions first, then sections.
            body["sections"] = _strings(batch.sections)
        return body

    def _post(self, body: dict[str, Any]) -> _Outcome:
        """POST one request, retrying what may succeed later; never raises for HTTP trouble."""
        status: int | None = None
        error = "not sent"
        for attempt in range(1, self.max_attempts + 1):
            wait: float
            try:
                response = self.client.client.mail.send.post(request_body=body)
            except HTTPError as exc:
                status = exc.status_code
                error = f"SendGrid {status}: {_message(exc.body)}"
                if status not in _TRANSIENT:
                    return _Outcome(attempt, ok=False, status=status, error=error)
                wait = self._rate_limit_wait(exc) if status == 429 else self._backoff(attempt)
            except (OSError, http.client.HTTPException) as exc:
                # Timeouts (TimeoutError, or URLError wrapping one), resets, refused
                # connections, truncated answers: SendGrid may or may not have taken the
                # request; retrying is the documented trade (an in-flight request may repeat).
                status = None
                error = f"SendGrid unreachable: {type(exc).__name__}: {exc}"
                wait = self._backoff(attempt)
            else:
                return _Outcome(attempt, ok=True, status=response.status_code)
            if attempt < self.max_attempts:
                log.warning("%s; retrying in %.1fs (attempt %d of %d)",
                            error, wait, attempt + 1, self.max_attempts)
                self.sleep(wait)
        return _Outcome(self.max_attempts, ok=False, status=status, error=error)

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


def _personalization(recipient: Recipient) -> dict[str, Any]:
    item: dict[str, Any] = {"to": [{"email": recipient.to}]}
    if recipient.subject:
        item["subject"] = recipient.subject
    if recipient.substitutions:
        item["substitutions"] = _strings(recipient.substitutions)
    if recipient.headers:
        item["headers"] = _strings(recipient.headers)
    if recipient.custom_args:
        # SendGrid refuses non-string custom_args values (an id passed as an int).
        item["custom_args"] = _strings(recipient.custom_args)
    return item


def _strings(mapping: Mapping[str, object]) -> dict[str, str]:
    return {str(key): str(value) for key, value in mapping.items()}


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
