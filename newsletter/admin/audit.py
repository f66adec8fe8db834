"""The audit log: who did what to what, and when, for every operator action.

A row is written in the same transaction as the action it records, so an action that
rolled back leaves no row and one that happened always has one. Sign-in attempts are
recorded too, failed and throttled ones included: as the account tried when it exists,
else as `unknown:` and a keyed hash of the text typed (which may be a password typed in
the wrong field; newsletter/admin/accounts.py).

Rows are kept AUDIT_RETENTION_DAYS, then deleted by the beat task
`paperwire.forget_old_audit_entries` (workers/tasks.py).

`target` names what was acted on by kind and id: "operator:ada@example.org",
"subscriber:42", "edition:7", "paper:2409.01234". A reader is named by row id, never by
address, so erasing a reader (subscriptions/privacy.py) leaves nothing here that names them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Column, DateTime, Text, delete, func
from sqlmodel import Field, Session, SQLModel, col, select

# Actor of actions taken on the command line, where nobody signs in.
CLI = "cli"


def _utcnow() -> datetime:
    return datetime.now(UTC)


class AuditEntry(SQLModel, table=True):
    __tablename__ = "audit_log"

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(default_factory=_utcnow, sa_type=DateTime(timezone=True), index=True)
    actor: str = Field(max_length=254, index=True)  # an operator's email, or "cli"
    action: str = Field(max_length=64, index=True)  # e.g. "login", "suppress"
    target: str = Field(max_length=300)
    detail: str = Field(default="", sa_column=Column(Text, nullable=False))


def record(session: Session, actor: str, action: str, target: str, detail: str = "",
           at: datetime | None = None) -> AuditEntry:
    """Add one row to the log, in the caller's transaction."""
    entry = AuditEntry(at=at or _utcnow(), actor=actor[:254], action=action[:64],
                       target=target[:300], detail=detail)
    session.add(entry)
    return entry


@dataclass(frozen=True)
class Page:
    entries: Sequence[AuditEntry]
    number: int  # 1-based
    pages: int
    total: int


def page(session: Session, number: int, size: int, actor: str = "",
         action: str = "") -> Page:
    """One page of the log, newest first, optionally only one actor's or one action's."""
    query = select(AuditEntry)
    count = select(func.count()).select_from(AuditEntry)
    for column, value in ((AuditEntry.actor, actor), (AuditEntry.action, action)):
        if value:
            query = query.where(col(column) == value)
            count = count.where(col(column) == value)
    total = session.exec(count).one()
    pages = max(1, -(-total // size))
    number = min(max(1, number), pages)
    entries = session.exec(query.order_by(col(AuditEntry.at).desc(), col(AuditEntry.id).desc())
                           .offset((number - 1) * size).limit(size)).all()
    return Page(entries, number, pages, total)


def actions(session: Session) -> list[str]:
    """Every action the log holds, for the filter's choices."""
    return list(session.exec(select(AuditEntry.action).distinct().order_by(AuditEntry.action)))


def forget_older_than(session: Session, retention: timedelta,
                      now: datetime | None = None) -> int:
    """Delete the rows older than `retention`; how many."""
    cutoff = (now or _utcnow()) - retention
    result = session.execute(delete(AuditEntry).where(col(AuditEntry.at) < cutoff))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def forget_old_configured() -> int:
    """The scheduled job: keep AUDIT_RETENTION_DAYS of the log."""
    from newsletter.config import settings as current_settings
    from newsletter.db import engine_for, transaction

    config = current_settings()
    with transaction(engine_for(config.database_url)) as session:
        return forget_older_than(session, timedelta(days=config.audit_retention_days))
