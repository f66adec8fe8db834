"""What a request gets when the database cannot serve it: 503 and a short page (JSON for
the webhook, so SendGrid sends the batch again), never a 500.

Why (docs/SECURITY.md, issue 22 finding 14): with Postgres stopped the front page, paper
pages, /days and sign-up answered 500, and with the database read-only sign-up, manage,
admin sign-in and the webhook did too, the webhook with an HTML page. A 500 says "our
bug" and hides an outage among the crashes in the log; a 503 with Retry-After says "come
back", as a reader, a proxy, a monitor and SendGrid each understand it.
"""

from __future__ import annotations

import logging

from flask import Response, jsonify, render_template, request
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

log = logging.getLogger(__name__)

# Seconds a client is asked to wait: a Postgres restart or failover takes about this long.
RETRY_AFTER = 30
# SQLSTATE of a write in a read-only transaction (default_transaction_read_only, a standby).
READ_ONLY = "25006"


def database_unavailable(exc: BaseException) -> bool:
    """The database is away, full, or refusing writes: not a fault of this request.

    OperationalError is what every driver raises for a server it cannot reach, a server
    shutting down, a full disk, a locked or read-only SQLite file; Postgres raises the
    read-only refusal as an InternalError. A pool with no free connection is a timeout.
    """
    if isinstance(exc, OperationalError | PoolTimeout):
        return True
    return isinstance(exc, DBAPIError) and getattr(exc.orig, "sqlstate", None) == READ_ONLY


def answer(exc: BaseException) -> tuple[Response | str, int, dict[str, str]]:
    log.error("database unavailable on %s %s: %s", request.method, request.path,
              str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    headers = {"Retry-After": str(RETRY_AFTER)}
    if request.path.startswith("/webhooks/") or request.path == "/healthz":
        return jsonify(error="database unavailable, try again later"), 503, headers
    return render_template("unavailable.html"), 503, headers
