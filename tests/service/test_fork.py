"""A forked process (a Celery prefork pool process, a gunicorn worker) never uses its
parent's database connections. The Celery worker checks the topics against the database
before its pool forks; its pool processes then shared that pooled connection and garbled
each other's queries ("server closed the connection unexpectedly", a killed-worker test
in CI). newsletter.db drops inherited connections in every child."""

from __future__ import annotations

import os

import pytest
from sqlalchemy import text

from newsletter import db

BACKEND = text("SELECT pg_backend_pid()")


@pytest.mark.postgres
def test_a_forked_process_opens_its_own_connection_and_leaves_its_parents_alone(
        postgres_url: str) -> None:
    engine = db.engine_for(postgres_url)
    with engine.connect() as conn:
        parent = conn.execute(BACKEND).scalar_one()
    # Back in the pool, still open: what a fork inherits.
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child reports through the pipe
        try:
            with db.engine_for(postgres_url).connect() as conn:
                os.write(write, str(conn.execute(BACKEND).scalar_one()).encode())
        finally:
            os._exit(0)
    os.close(write)
    os.waitpid(child, 0)
    said = os.read(read, 64).decode()
    os.close(read)
    assert said, "the child could not query the database"
    assert int(said) != parent  # a connection of its own
    with engine.connect() as conn:  # and the parent's still answers, on its own backend
        assert conn.execute(BACKEND).scalar_one() == parent
    db._engines.pop(postgres_url).dispose()
