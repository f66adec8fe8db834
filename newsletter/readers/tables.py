"""The readers' tables: who they are, what they asked for, what they agreed to, and the
addresses we must never mail again.

The functions that change them are in `subscriber`; other steps read these rows.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    Text,
    text,
    true,
)
from sqlmodel import Field, SQLModel

from newsletter.readers.reader_input import DEFAULT_MAX_PAPERS, MAX_EMAIL_LENGTH

STATUSES = ("pending", "confirmed", "unsubscribed", "bounced", "complained")
CONFIRMATION_INTERVAL = timedelta(minutes=10)
PENDING_LIFETIME = timedelta(days=7)

# Provider events that mean "never mail this address again", and the status they leave.
SUPPRESSING_EVENTS = {
    "bounce": "bounced",
    "dropped": "bounced",
    "spamreport": "complained",
    "unsubscribe": "unsubscribed",
    "group_unsubscribe": "unsubscribed",
}



def _utcnow() -> datetime:
    return datetime.now(UTC)


def _key() -> str:
    return secrets.token_urlsafe(16)


class Subscriber(SQLModel, table=True):
    __tablename__ = "subscribers"

    id: int | None = Field(default=None, primary_key=True)
    email: str = Field(max_length=MAX_EMAIL_LENGTH, unique=True)
    status: str = Field(default="pending", max_length=16, index=True)
    # Signed manage/unsubscribe links name this; a new row gets a new key, so links made
    # for a deleted subscriber never open a later one with the same address or id.
    link_key: str = Field(default_factory=_key, max_length=64)
    # The pending confirmation's nonce; cleared when used, so a confirm link works once.
    confirm_nonce: str | None = Field(default=None, max_length=64)
    created_at: datetime = Field(default_factory=_utcnow)
    updated_at: datetime = Field(default_factory=_utcnow)
    confirmed_at: datetime | None = None
    unsubscribed_at: datetime | None = None
    last_confirmation_sent_at: datetime | None = None
    # What an anonymous sign-up asked for, waiting for the mailbox's owner to confirm it:
    # until then nobody's status or preferences change (see `subscribe`).
    requested: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    # The last open, click or rating (newsletter/engagement/), never an older one.
    last_active_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))


class Preferences(SQLModel, table=True):
    __tablename__ = "preferences"
    __table_args__ = (
        # A tick of `send --due` finds a slot's readers, and the slots in use, from these
        # alone, and the readers who changed their choices since the previous tick.
        Index("ix_preferences_send_time", "time_zone", "send_hour", "frequency",
              "send_weekday"),
        Index("ix_preferences_updated_at", "updated_at"),
    )

    subscriber_id: int = Field(sa_column=Column(
        Integer, ForeignKey("subscribers.id", ondelete="CASCADE"), primary_key=True))
    topics: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    include_keywords: list[str] = Field(default_factory=list,
                                        sa_column=Column(JSON, nullable=False))
    exclude_keywords: list[str] = Field(default_factory=list,
                                        sa_column=Column(JSON, nullable=False))
    authors: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    frequency: str = Field(default="daily", max_length=16)
    max_papers: int = DEFAULT_MAX_PAPERS
    include_revised: bool = False
    updated_at: datetime = Field(default_factory=_utcnow)
    # Interests in the reader's own words and papers they like (arXiv ids without version):
    # with their ratings they train the reader's model (newsletter/relevance/learn.py).
    description: str | None = Field(default=None, sa_type=Text)
    liked_papers: list[str] = Field(default_factory=list, sa_column=Column(
        JSON, nullable=False, server_default=text("'[]'")))
    # False: the reader asked not to be tracked; their mail goes with SendGrid's open and
    # click tracking off, and their events are dropped but for suppression.
    tracking: bool = Field(default=True, sa_column=Column(Boolean, nullable=False,
                                                          server_default=true()))
    # When their digest comes: an hour of their day in an IANA zone, a weekday if weekly
    # (0 = Monday). NULL: the operator's default (newsletter/delivery/due.py).
    time_zone: str | None = Field(default=None, max_length=64)
    send_hour: int | None = None
    send_weekday: int | None = None
    # The language of their cards, pages and mail: one of CARD_LANGUAGES. NULL: English.
    language: str | None = Field(default=None, max_length=16)
    # Their arXiv author identifier or ORCID iD (newsletter/relevance/library/): the papers
    # of its arXiv feed count as papers they like. When the feed was last read (NULL: not
    # yet), so the sweep reads each again only now and then.
    arxiv_author: str | None = Field(default=None, max_length=64)
    author_fetched_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))


class Consent(SQLModel, table=True):
    """Proof of what someone agreed to, when, and from where."""

    __tablename__ = "consents"

    id: int | None = Field(default=None, primary_key=True)
    subscriber_id: int = Field(sa_column=Column(
        Integer, ForeignKey("subscribers.id", ondelete="CASCADE"), nullable=False, index=True))
    # Consents given (confirm, resubscribe, admin, import) and withdrawn (unsubscribe):
    # never an anonymous attempt, which proves nothing about the mailbox's owner.
    action: str = Field(max_length=32)
    at: datetime = Field(default_factory=_utcnow)
    ip: str | None = Field(default=None, max_length=64)
    user_agent: str | None = Field(default=None, max_length=512)
    agreed_to: str = Field(sa_type=Text)


class Suppression(SQLModel, table=True):
    """An address we never mail again, whatever its subscriber row says (or if it has none)."""

    __tablename__ = "suppressions"

    id: int | None = Field(default=None, primary_key=True)
    email: str = Field(max_length=MAX_EMAIL_LENGTH, unique=True)
    reason: str = Field(max_length=64)
    at: datetime = Field(default_factory=_utcnow)


class WebhookEvent(SQLModel, table=True):
    """A provider event already acted on: providers retry, and payloads can be replayed."""

    __tablename__ = "webhook_events"

    id: int | None = Field(default=None, primary_key=True)
    sg_event_id: str = Field(max_length=200, unique=True)
    event: str = Field(max_length=64)
    email: str | None = Field(default=None, max_length=MAX_EMAIL_LENGTH)
    # Kept ENGAGEMENT_RETENTION_DAYS (engagement.forget_old_events deletes by this).
    received_at: datetime = Field(default_factory=_utcnow, index=True)
