"""A feed we read, and what happened the last time we read it."""

from __future__ import annotations

from datetime import date, datetime

from sqlmodel import Field, SQLModel

# What the last fetch found; shown by `newsletter feeds` and /healthz.
FEED_STATES = ("never", "ok", "no_announcement", "not_modified", "error")


class Feed(SQLModel, table=True):
    __tablename__ = "feeds"

    id: int | None = Field(default=None, primary_key=True)
    url: str = Field(max_length=2000, unique=True)
    label: str = Field(max_length=200)
    kind: str = Field(max_length=20)  # arxiv-rss, arxiv-api, file, source
    etag: str | None = Field(default=None, max_length=500)
    last_modified: str | None = Field(default=None, max_length=100)
    last_fetched_at: datetime | None = None
    last_success_at: datetime | None = None
    http_status: int | None = None
    state: str = Field(default="never", max_length=20)
    announced_on: date | None = None
    items_seen: int = 0
    papers_added: int = 0
    papers_updated: int = 0
    papers_unchanged: int = 0
    last_error: str | None = None
    # A flaw the last document had that we repaired (e.g. whitespace before `<?xml`).
    last_warning: str | None = None
