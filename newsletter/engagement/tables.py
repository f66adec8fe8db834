"""Engagement's own table: clicks per edition and paper, counts only (migration 0012).

The rest of what engagement keeps sits on rows that exist anyway: the first delivered,
opened, clicked and bounced time of each delivery (`deliveries`), a reader's last activity
(`subscribers.last_active_at`) and their choice not to be tracked (`preferences.tracking`).
"""

from __future__ import annotations

from sqlalchemy import Column, ForeignKey, Integer
from sqlmodel import Field, SQLModel


class PaperClick(SQLModel, table=True):
    """How often readers of one edition clicked through to one paper: a count, no names."""

    __tablename__ = "paper_clicks"

    edition_id: int = Field(sa_column=Column(
        Integer, ForeignKey("editions.id", ondelete="CASCADE"), primary_key=True,
        autoincrement=False))
    paper_id: int = Field(sa_column=Column(
        Integer, ForeignKey("papers.id", ondelete="CASCADE"), primary_key=True,
        autoincrement=False))
    clicks: int = Field(default=0, nullable=False)


paper_clicks = PaperClick.__table__  # type: ignore[attr-defined]
