"""Postgres going away in the middle of a preprint ingest: the pages stored before it stay,
nothing is half-written, the operator reads one line (not a traceback), and the next run
completes the day with every preprint once.

The fault is real: the bioRxiv stand-in stops Postgres (`pg_ctl -m immediate stop`) as the
second page is asked for, so the ingest has that page in hand when the database is gone.
"""

from __future__ import annotations

from datetime import date

import pytest
from click.testing import CliRunner
from sqlalchemy import text

from newsletter import db
from newsletter.cli import main
from newsletter.ingest import preprints
from tests.support.biorxiv_server import BiorxivAPI
from tests.support.http import Reply, Request
from tests.support.servers import Postgres, postgres_of_its_own


class StopsPostgresOnPageTwo(BiorxivAPI):
    """bioRxiv, whose second page is answered only once Postgres has stopped."""

    def __init__(self, pg: Postgres) -> None:
        super().__init__(page_size=10)
        self.pg = pg

    def _answer(self, request: Request) -> Reply:
        if request.path.endswith("/10"):
            self.pg.stop()
        return super()._answer(request)


@pytest.mark.postgres
def test_postgres_stopped_mid_ingest_keeps_page_one_and_the_next_run_completes_the_day(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(preprints, "_utc_today", lambda: date(2026, 9, 24))
    with postgres_of_its_own() as pg:
        url = pg.url("paperwire")
        engine = db.make_engine(url)
        db.upgrade(engine)
        env = {"DATABASE_URL": url, "SOURCES": "biorxiv", "ARXIV_API_DELAY": "0",
               "HTTP_RETRIES": "0", "PAPERWIRE_DEV": "1"}
        with StopsPostgresOnPageTwo(pg) as api:
            broken = CliRunner().invoke(main, ["ingest"],
                                        env={**env, "BIORXIV_API_URL": api.url})
        assert broken.exit_code == 1
        assert "Traceback" not in broken.output
        said = broken.stderr.splitlines()[-1]
        assert said.startswith("Error: the database did not answer (") and "refused" in said
        assert "run it again once the database is back" in said
        assert "bioRxiv page 1 (cursor 0): 10 items, 10 new" in broken.stderr

        pg.start()
        with engine.connect() as conn:
            kept = conn.execute(text("SELECT count(*) FROM papers")).scalar_one()
        assert kept == 10  # page 1, whole; nothing of page 2

        with BiorxivAPI(page_size=10) as healthy:
            again = CliRunner().invoke(main, ["ingest"],
                                       env={**env, "BIORXIV_API_URL": healthy.url})
        assert again.exit_code == 0, again.output
        assert "bioRxiv: 12 items, 2 new, 0 updated, 10 unchanged" in again.stderr
        with engine.connect() as conn:
            keys = conn.execute(text("SELECT key FROM papers")).scalars().all()
            state = conn.execute(text(
                "SELECT state, last_error FROM feeds WHERE kind = 'biorxiv-api'")).one()
        assert len(keys) == len(set(keys)) == 12
        assert tuple(state) == ("ok", None)
        engine.dispose()
