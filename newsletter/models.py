"""Every table, imported in one place so Alembic and the tests see the whole schema."""

from newsletter.feed import Feed
from newsletter.paper import Paper

__all__ = ["Feed", "Paper"]
