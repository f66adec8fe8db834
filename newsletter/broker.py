"""Talking to Redis from a web request: a refusal or a hang costs milliseconds, not seconds.

Why (docs/SECURITY.md, issue 22 finding 3): Celery's `send_task(..., retry=False)` still
spent 6 s on a stopped Redis. `retry=False` only stops the publish retries; before
publishing, kombu makes sure of the connection by retrying it once a second until its
connect timeout (4 s by Celery's default), then sleeps once more. redis-py's own default,
three retries with backoff, cost another 3.4 s wherever a plain Redis client was used. Six
sign-ups in a row held every web thread, and the pages behind them waited.

Here every attempt is a single one with short socket timeouts, and a `Publisher`
remembers for a few seconds that the broker refused: the requests in that time do not try
at all. The callers keep what they were handing over: the mail queue writes it to the
database (newsletter/subscriptions/mail_queue.py), the admin's actions run it in the process.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

log = logging.getLogger(__name__)

# Seconds. Redis answers a connect or a command in well under a millisecond on one network.
CONNECT_TIMEOUT = 0.5
SOCKET_TIMEOUT = 0.5
# After a refusal, requests in this many seconds do not try the broker again.
DOWN_FOR = 5.0


class BrokerDown(Exception):
    """The broker did not take the task, or refused one moments ago."""


class Outage:
    """What a process remembers of a Redis that failed: until when requests do not try it
    again. The callers keep the clock and the pause, so tests can move them."""

    def __init__(self) -> None:
        self._until: float | None = None
        self._lock = threading.Lock()

    def known(self, now: float) -> bool:
        """True while the pause after the last failure runs: do not try Redis now."""
        return self._until is not None and now < self._until

    def began(self, now: float, pause: float) -> bool:
        """Redis failed now; True when that is news (it was answering before)."""
        with self._lock:
            news, self._until = self._until is None, now + pause
        return news

    def ended(self) -> bool:
        """Redis answered; True when that ends an outage."""
        with self._lock:
            was, self._until = self._until is not None, None
        return was


def redis_client(url: str) -> redis.Redis:
    """A client that tries once and gives up within a second: the site's health check
    and sign-up limits use it."""
    return redis.Redis.from_url(url, socket_connect_timeout=CONNECT_TIMEOUT,
                                socket_timeout=SOCKET_TIMEOUT, retry=Retry(NoBackoff(), 0))


class Publisher:
    """Hands tasks to the Celery workers by name, as a web process must: without importing
    worker code, and without waiting on a broker that is away."""

    def __init__(self, broker_url: str, clock: Callable[[], float] = time.monotonic) -> None:
        from celery import Celery  # only a broker deployment pays for importing Celery

        self._app = Celery("paperwire-web", broker=broker_url)
        self._app.conf.update(
            broker_connection_timeout=CONNECT_TIMEOUT,
            # kombu reads these for the connection it makes before publishing: one try.
            broker_transport_options={"max_retries": 0,
                                      "socket_connect_timeout": CONNECT_TIMEOUT,
                                      "socket_timeout": SOCKET_TIMEOUT},
        )
        self._clock = clock
        self._outage = Outage()

    def publish(self, task: str, queue: str, args: Sequence[Any] = (),
                kwargs: dict[str, Any] | None = None) -> None:
        """Put one task on `queue`; BrokerDown when the broker does not take it now."""
        if self._outage.known(self._clock()):
            raise BrokerDown("the broker refused a task moments ago")
        try:
            self._app.send_task(task, args=list(args), kwargs=kwargs or {}, queue=queue,
                                retry=False)
        except Exception as exc:
            self._outage.began(self._clock(), DOWN_FOR)
            log.error("broker: %s not taken (%s); not trying again for %.0f s", task, exc,
                      DOWN_FOR)
            raise BrokerDown(str(exc)) from exc
        self._outage.ended()


@functools.cache
def publisher(broker_url: str) -> Publisher:
    """The process's one publisher per broker: the site's mail and the admin's actions
    share what it remembers."""
    return Publisher(broker_url)
