"""The database edge: engines, sessions and migrations."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import ARRAY, Engine, Integer, any_, bindparam, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import Session, create_engine

from newsletter import shipped

# The migrations stand in alembic/ at the top level and ship inside the package, so an
# installed wheel migrates exactly like a source checkout.
MIGRATIONS = str(shipped("migrations"))


class SchemaOutOfDate(Exception):
    """The database needs `newsletter db upgrade`."""


_engines: dict[str, Engine] = {}


def engine_for(url: str) -> Engine:
    """The process's engine for a URL, schema checked once: for workers and the site."""
    engine = _engines.get(url)
    if engine is None:
        engine = make_engine(url)
        ensure_schema(engine)
        _engines[url] = engine
    return engine


def _forget_the_parents_connections() -> None:
    # A forked child (a Celery prefork pool process, a gunicorn worker) inherits its
    # parent's engines with their pooled connections: two processes on one socket garble
    # each other's queries ("server closed the connection unexpectedly"). The child drops
    # them without closing them, which would end the parent's sessions too, as SQLAlchemy
    # prescribes ("Using Connection Pools with Multiprocessing or os.fork()",
    # https://docs.sqlalchemy.org/en/20/core/pooling.html).
    for engine in _engines.values():
        engine.dispose(close=False)


os.register_at_fork(after_in_child=_forget_the_parents_connections)


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # type: ignore[no-untyped-def]
            # WAL lets the site read while a worker writes; foreign keys are off by default.
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True)


@contextmanager
def transaction(engine: Engine) -> Iterator[Session]:
    """One unit of work: commits on success, rolls back everything on any error."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def _alembic_config(engine: Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", MIGRATIONS)
    cfg.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False))
    return cfg


def head_revision(engine: Engine) -> str | None:
    return ScriptDirectory.from_config(_alembic_config(engine)).get_current_head()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> None:
    cfg = _alembic_config(engine)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def ensure_schema(engine: Engine) -> None:
    """Bring a SQLite database up to date by itself; ask for an explicit upgrade elsewhere.

    The embedded default must need no extra step, while a shared Postgres database is
    migrated once, by the operator or the compose migration step, not by every worker.
    """
    if current_revision(engine) == head_revision(engine):
        return
    if engine.url.get_backend_name() == "sqlite":
        upgrade(engine)
        return
    raise SchemaOutOfDate(
        f"database schema is at {current_revision(engine)}, code expects "
        f"{head_revision(engine)}: run `newsletter db upgrade`"
    )


def chunked(values: Sequence[Any], size: int = 500) -> Iterator[Sequence[Any]]:
    """The values in runs of `size`: an IN list of a few hundred each, whatever the total."""
    for start in range(0, len(values), size):
        yield values[start:start + size]


def among(session: Session, column: Any, ids: Sequence[int]) -> ColumnElement[bool]:
    """`column IN ids` for a chunk's thousand ids, as each database takes them best.

    On Postgres one array parameter: psycopg spends longer parsing a statement with a
    thousand placeholders than Postgres spends running it. SQLite has no arrays, and binds
    an expanded IN list at C speed.
    """
    if session.get_bind().dialect.name == "postgresql":
        return column == any_(bindparam(None, list(ids), type_=ARRAY(Integer)))
    return column.in_(list(ids))


def upsert(session: Session, table: Any, rows: list[dict[str, Any]], keys: tuple[str, ...],
           columns: tuple[str, ...]) -> None:
    """INSERT ... ON CONFLICT (keys) DO UPDATE SET columns: Postgres and SQLite alike."""
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    statement = dialect.insert(table).values(rows)
    session.execute(statement.on_conflict_do_update(
        index_elements=list(keys), set_={c: statement.excluded[c] for c in columns}))


def aware(value: datetime) -> datetime:
    """A stored moment as an aware UTC datetime: SQLite hands back naive datetimes even for
    timezone=True columns, and they are UTC."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)
