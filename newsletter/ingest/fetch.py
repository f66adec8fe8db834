"""The HTTP edge: polite, conditional, bounded fetches of feed documents."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx

from newsletter import __version__

log = logging.getLogger(__name__)

def user_agent(site_url: str | None = None) -> str:
    """Who is asking: arXiv asks bots to say so, and to give a way to reach their operator."""
    contact = f"; +{site_url}" if site_url else ""
    return f"Paperwire/{__version__} (self-hosted arXiv digest{contact})"
RETRY_STATUSES = (429, 500, 502, 503, 504)


class FetchError(Exception):
    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Fetched:
    url: str
    status: int
    content: bytes
    etag: str | None
    last_modified: str | None

    @property
    def not_modified(self) -> bool:
        return self.status == 304


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """Retry-After as seconds to wait: either a number or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    now = now or datetime.now(UTC)
    return max(0.0, (when - now).total_seconds())


class Fetcher:
    """Fetches documents with timeouts, conditional GET and backoff.

    One instance per run: it remembers when it last called a host that asks for a pause
    between calls (the arXiv API wants a few seconds).
    """

    def __init__(
        self,
        *,
        timeout: float = 30.0,
        retries: int = 4,
        max_wait: float = 120.0,
        pause: float = 0.0,
        sleep: Callable[[float], None] = time.sleep,
        transport: httpx.BaseTransport | None = None,
        site_url: str | None = None,
    ) -> None:
        self.retries = retries
        self.max_wait = max_wait
        self.pause = pause
        self._sleep = sleep
        self._last_call = 0.0
        self._client = httpx.Client(
            timeout=httpx.Timeout(timeout),
            headers={"User-Agent": user_agent(site_url), "Accept-Encoding": "gzip, deflate"},
            follow_redirects=True,
            transport=transport,
        )

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> Fetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _wait_for_turn(self) -> None:
        if self.pause:
            remaining = self._last_call + self.pause - time.monotonic()
            if remaining > 0:
                self._sleep(remaining)
        self._last_call = time.monotonic()

    def _backoff(self, attempt: int, response: httpx.Response | None) -> float:
        hinted = retry_after_seconds(response.headers.get("Retry-After")) if response else None
        delay = hinted if hinted is not None else min(60.0, 2.0 * 2**attempt)
        if delay > self.max_wait:
            raise FetchError(
                f"server asked us to wait {delay:.0f}s, more than HTTP_MAX_WAIT "
                f"({self.max_wait:.0f}s)",
                response.status_code if response else None,
            )
        return delay

    def get(
        self,
        url: str,
        *,
        etag: str | None = None,
        last_modified: str | None = None,
        params: dict[str, str | int] | None = None,
    ) -> Fetched:
        """GET a document. 304 comes back as `not_modified`; 4xx bodies come back too,
        because arXiv explains a bad query inside a feed document."""
        headers = {}
        if etag:
            headers["If-None-Match"] = etag
        if last_modified:
            headers["If-Modified-Since"] = last_modified
        last_problem = "no attempt made"
        for attempt in range(self.retries + 1):
            self._wait_for_turn()
            response: httpx.Response | None = None
            try:
                response = self._client.get(url, headers=headers, params=params)
            except httpx.TimeoutException:
                last_problem = "timed out"
            except httpx.TransportError as exc:
                last_problem = f"could not connect: {exc}"
            else:
                if response.status_code not in RETRY_STATUSES:
                    return Fetched(
                        url=url,
                        status=response.status_code,
                        content=response.content,
                        etag=response.headers.get("ETag"),
                        last_modified=response.headers.get("Last-Modified"),
                    )
                last_problem = f"HTTP {response.status_code}"
            if attempt == self.retries:
                break
            delay = self._backoff(attempt, response)
            log.warning("fetch %s: %s, retrying in %.1fs", url, last_problem, delay)
            self._sleep(delay)
        status = response.status_code if response is not None else None
        raise FetchError(f"{url}: {last_problem} after {self.retries + 1} attempts", status)
