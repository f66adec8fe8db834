"""Celery tasks. Each one calls one domain function and returns a small summary."""

from __future__ import annotations

from typing import Any

from newsletter import ingest
from workers.app import app


@app.task(name="paperwire.ingest", time_limit=30 * 60, soft_time_limit=25 * 60)
def ingest_feeds() -> dict[str, Any]:
    summary = ingest.ingest_configured()
    return {"line": summary.line(), "errors": summary.errors,
            "added": summary.total("added"), "updated": summary.total("updated")}
