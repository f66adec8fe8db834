"""Celery tasks. Each one calls one domain function and returns a small summary."""

from __future__ import annotations

from typing import Any

from newsletter import ingest, summarize
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
