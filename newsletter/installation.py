"""What every process of one installation shares that no setting carries: for now, the
key that signs links in development mode.

In production SECRET_KEY signs links. In development nobody sets one, yet the site, the
worker, beat and each CLI run must sign alike, or a confirmation mailed by the worker is
"not valid" on the site. They share one thing for sure, the database, however each spells
its URL (the demo's children get an absolute SQLite path, the site a relative one). So the
key is generated once, at random, and kept in it: stable across restarts, different for
every installation, and never derived from anything public.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

from sqlalchemy import Engine, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Field, SQLModel

DEV_SIGNING_KEY = "dev_signing_key"

_known: dict[str, str] = {}


class InstallationSecret(SQLModel, table=True):
    __tablename__ = "installation_secrets"

    name: str = Field(primary_key=True, max_length=64)
    value: str = Field(max_length=256)
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))


def dev_signing_key(engine: Engine) -> str:
    """The installation's development signing key: made by whichever process asks first
    (a concurrent first ask keeps the one row that won), read by all the others."""
    where = engine.url.render_as_string(hide_password=False)
    if where in _known:
        return _known[where]
    table = InstallationSecret.__table__  # type: ignore[attr-defined]
    dialect = postgresql if engine.dialect.name == "postgresql" else sqlite
    with engine.begin() as conn:
        conn.execute(dialect.insert(table).values(
            name=DEV_SIGNING_KEY, value=secrets.token_hex(32), created_at=datetime.now(UTC),
        ).on_conflict_do_nothing(index_elements=["name"]))
        key = conn.execute(select(table.c.value).where(table.c.name == DEV_SIGNING_KEY)
                           ).scalar_one()
    _known[where] = key
    return str(key)
