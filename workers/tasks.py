"""Celery tasks. Each one calls one domain function and returns a small summary."""

from __future__ import annotations

import dataclasses
from datetime import date
from typing import Any

from newsletter import delivery, ingest, subscriber, summarize
from workers.app import app


@app.task(name="paperwire.ingest", time_limit=30 * 60, soft_time_limit=25 * 60)
def ingest_feeds() -> dict[str, Any]:
    summary = ingest.ingest_configured()
    if summary.errors < len(summary.feeds):
        summarize_pending.delay()
    return {"line": summary.line(), "errors": summary.errors,
            "added": summary.total("added"), "updated": summary.total("updated")}


# Enough for a heavy day; a backlog (a first backfill) is finished by the following sweeps.
SUMMARIZE_BATCH = 2000


@app.task(name="paperwire.summarize", time_limit=60 * 60, soft_time_limit=55 * 60)
def summarize_pending(limit: int | None = SUMMARIZE_BATCH) -> dict[str, Any]:
    report = summarize.summarize_configured(limit=limit)
    return {"line": report.line(), "written": report.written, "failed": report.failed,
            "input_tokens": report.input_tokens, "output_tokens": report.output_tokens,
            "cost_usd": report.cost_usd}


@app.task(name="paperwire.send_digests", time_limit=10 * 60)
def send_digests(frequency: str = "daily", day: str | None = None) -> dict[str, Any]:
    """Plan the edition, then hand its chunks to however many mail workers there are.

    `day` (ISO date) re-runs a past edition by hand; beat sends today's.
    """
    edition_id, chunks = delivery.prepare_configured(
        frequency, date.fromisoformat(day) if day else None)
    for chunk in chunks:
        deliver_chunk.delay(edition_id, chunk)
    return {"edition_id": edition_id, "chunks": len(chunks),
            "deliveries": sum(len(c) for c in chunks)}


# Redelivery after a worker dies is safe: rows are claimed, and sent rows are never resent.
@app.task(name="paperwire.deliver_chunk", acks_late=True, time_limit=30 * 60)
def deliver_chunk(edition_id: int, delivery_ids: list[int]) -> dict[str, Any]:
    report = delivery.deliver_configured(edition_id, delivery_ids)
    return {k: v for k, v in dataclasses.asdict(report).items() if k != "errors"}


@app.task(name="paperwire.expire_pending")
def expire_pending() -> int:
    return subscriber.expire_pending_configured()
