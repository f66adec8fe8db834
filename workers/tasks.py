"""Celery tasks. Each one calls one domain function and returns a small summary.

Retries: a database that is briefly away (a Postgres restart, a failover) raises
OperationalError; the task is tried again with backoff instead of losing the run. Every
task is safe to run again (see workers.app), which is also why acks_late is on.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from datetime import date, datetime
from typing import Any

from celery.signals import worker_init
from sqlalchemy.exc import OperationalError

from newsletter import delivery, engagement
from newsletter.admin import audit
from newsletter.cards import summarize
from newsletter.config import settings
from newsletter.db import engine_for
from newsletter.ingest import run
from newsletter.relevance import train
from newsletter.relevance.embedders import space_for
from newsletter.subscriptions import privacy
from newsletter.subscriptions.services import send_queued, send_waiting_configured
from newsletter.topics import in_use
from newsletter.topics.taxonomy import TaxonomyError
from workers.app import app

log = logging.getLogger(__name__)

# The vector space is named as the worker starts, before its pool forks: a local model
# folder that cannot run stops the worker now, and no send reads the folder again.
space_for(settings())


@worker_init.connect
def _check_topics(**_: Any) -> None:
    # So are the topics, against the database: a taxonomy file that removes a topic
    # readers still use stops the worker before it takes a task (Celery logs and swallows
    # a handler's Exception; SystemExit goes through).
    try:
        in_use.prepare(engine_for(settings().database_url), settings())
    except TaxonomyError as exc:
        log.critical("%s", exc)
        raise SystemExit(str(exc)) from None

# Backoff 10 s, 20 s, 40 s ... capped at 5 minutes, with jitter so workers do not retry
# in step; five tries covers a database restart, not an outage (the next beat run does).
RETRY = {"autoretry_for": (OperationalError,), "retry_backoff": 10, "retry_backoff_max": 300,
         "retry_jitter": True, "max_retries": 5}


@app.task(name="paperwire.ingest", time_limit=30 * 60, soft_time_limit=25 * 60, **RETRY)
def ingest_feeds() -> dict[str, Any]:
    started = time.monotonic()
    summary = run.ingest_configured()
    if summary.errors < len(summary.feeds):
        summarize_pending.delay()
    log.info("ingest feeds=%d errors=%d added=%d updated=%d ms=%d", len(summary.feeds),
             summary.errors, summary.total("added"), summary.total("updated"),
             (time.monotonic() - started) * 1000)
    return {"line": summary.line(), "errors": summary.errors,
            "added": summary.total("added"), "updated": summary.total("updated")}


# Enough for a heavy day; a backlog (a first backfill) is finished by the following sweeps.
SUMMARIZE_BATCH = 2000


@app.task(name="paperwire.summarize", time_limit=60 * 60, soft_time_limit=55 * 60, **RETRY)
def summarize_pending(limit: int | None = SUMMARIZE_BATCH,
                      paper_id: int | None = None) -> dict[str, Any]:
    from newsletter.db import engine_for, transaction
    from newsletter.readers.subscriber import languages_in_use

    started = time.monotonic()
    current = settings()
    # Translated once per paper and language some reader uses, never per reader.
    with transaction(engine_for(current.database_url)) as session:
        languages = languages_in_use(session, current.card_languages)
    report = summarize.summarize_configured(limit=limit, paper_id=paper_id, languages=languages)
    # Vectors come after cards: a sweep's new papers (and any a failed run left) get theirs.
    embed_papers.delay()
    translated = report.translations
    log.info("summarize source=%s pending=%d written=%d failed=%d cost_usd=%.4f "
             "translations=%d translations_failed=%d translation_cost_usd=%.4f ms=%d",
             report.source, report.pending, report.written, report.failed,
             report.cost_usd or 0.0, translated.written if translated else 0,
             translated.failed if translated else 0,
             (translated.cost_usd or 0.0) if translated else 0.0,
             (time.monotonic() - started) * 1000)
    return {"line": report.line(), "written": report.written, "failed": report.failed,
            "input_tokens": report.input_tokens, "output_tokens": report.output_tokens,
            "cost_usd": report.cost_usd,
            "translations": translated.as_dict() if translated else None}


@app.task(name="paperwire.embed", time_limit=60 * 60, soft_time_limit=55 * 60, **RETRY)
def embed_papers(limit: int | None = None) -> dict[str, Any]:
    started = time.monotonic()
    report, retrained = train.embed_and_retrain_configured(limit=limit)
    log.info("embed space=%s embedded=%d failed=%d left=%d tokens=%d cost_usd=%.6f "
             "retrained=%d ms=%d", report.space, report.embedded, report.failed, report.left,
             report.tokens, report.cost_usd or 0.0, retrained,
             (time.monotonic() - started) * 1000)
    return {"line": report.line(), "embedded": report.embedded, "failed": report.failed,
            "left": report.left, "tokens": report.tokens, "cost_usd": report.cost_usd,
            "error": report.error, "retrained": retrained}


@app.task(name="paperwire.send_digests", time_limit=10 * 60, **RETRY)
def send_digests(frequency: str = "daily", day: str | None = None) -> dict[str, Any]:
    """A whole edition for everyone of a frequency, as `newsletter send` does: plan it,
    then hand its chunks to however many mail workers there are.

    `day` (ISO date) re-runs a past edition by hand. Running it again hands out only what
    is still unsent (pending rows, and rows whose lease ran out).
    """
    edition_id, chunks = delivery.prepare_configured(
        frequency, date.fromisoformat(day) if day else None)
    for chunk in chunks:
        deliver_chunk.delay(edition_id, chunk)
    return {"edition_id": edition_id, "chunks": len(chunks),
            "deliveries": sum(len(c) for c in chunks)}


@app.task(name="paperwire.send_due", time_limit=10 * 60, **RETRY)
def send_due(now: str | None = None) -> dict[str, Any]:
    """Beat's tick: plan the readers whose hour has come, each in their own time zone,
    and hand each edition's chunks to the mail workers. `now` (ISO instant) is for tests."""
    due = delivery.prepare_due_configured(datetime.fromisoformat(now) if now else None)
    for edition_id, chunks in due:
        for chunk in chunks:
            deliver_chunk.delay(edition_id, chunk)
    return {"editions": [edition_id for edition_id, _ in due],
            "deliveries": sum(len(c) for _, chunks in due for c in chunks)}


# Redelivery after a worker dies is safe: rows are claimed, and sent rows are never resent.
@app.task(name="paperwire.deliver_chunk", acks_late=True, time_limit=30 * 60, **RETRY)
def deliver_chunk(edition_id: int, delivery_ids: list[int]) -> dict[str, Any]:
    report = delivery.deliver_configured(edition_id, delivery_ids)
    return {k: v for k, v in dataclasses.asdict(report).items() if k != "errors"}


@app.task(name="paperwire.expire_pending", **RETRY)
def expire_pending() -> int:
    expired = privacy.expire_pending_configured()
    log.info("expire_pending expired=%d", expired)
    return expired


@app.task(name="paperwire.forget_old_events", **RETRY)
def forget_old_events() -> int:
    forgotten = engagement.forget_old_events_configured()
    log.info("forget_old_events deleted=%d", forgotten)
    return forgotten


@app.task(name="paperwire.forget_old_audit_entries", **RETRY)
def forget_old_audit_entries() -> int:
    forgotten = audit.forget_old_configured()
    log.info("forget_old_audit_entries deleted=%d", forgotten)
    return forgotten


@app.task(name="paperwire.send_mail", acks_late=True, **RETRY)
def send_mail(job: dict[str, Any], waiting_id: int | None = None) -> str | None:
    """Mail a web request queued (subscriptions/mail_queue.py). A provider that keeps refusing
    is logged and the reader may ask again; it is not retried for hours."""
    return send_queued(job, waiting_id)


@app.task(name="paperwire.send_waiting_mail", **RETRY)
def send_waiting_mail() -> int:
    """Mail requests queued while the broker was down (newsletter/subscriptions/mail_queue.py)."""
    sent = send_waiting_configured()
    if sent:
        log.info("send_waiting_mail sent=%d", sent)
    return sent
