"""What every command shares: the settings and database it runs on, progress, dates."""

from __future__ import annotations

import logging
import os
from datetime import UTC, date, datetime

import click
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError, OperationalError

from newsletter import db
from newsletter.config import ConfigError, Settings, load_settings
from newsletter.topics import in_use
from newsletter.topics.taxonomy import TaxonomyError


class App:
    """What every command needs: validated settings and a migrated database."""

    def __init__(self) -> None:
        self._settings: Settings | None = None
        self._engine: Engine | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            try:
                self._settings = load_settings()
            except ConfigError as exc:
                raise click.ClickException(str(exc)) from None
        return self._settings

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            engine = db.make_engine(self.settings.database_url)
            try:
                db.ensure_schema(engine)
                in_use.prepare(engine, self.settings)
            except (db.SchemaOutOfDate, TaxonomyError) as exc:
                raise click.ClickException(str(exc)) from None
            self._engine = engine
        return self._engine

    def close(self) -> None:
        """The command is done: its database connections are closed now, not whenever the
        process ends or a collector finds them (a command run in-process, as tests and
        tools do, would otherwise leave them open)."""
        if self._engine is not None:
            self._engine.dispose()


def progress(message: str) -> None:
    click.echo(message, err=True)


def parse_day(_ctx: click.Context, _param: click.Parameter, value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a date like 2026-09-24") from None



def parse_instant(_ctx: click.Context, _param: click.Parameter, value: str | None
                  ) -> datetime | None:
    """An ISO 8601 instant with its offset (Z or +01:00); one without is refused, not
    guessed."""
    if value is None:
        return None
    try:
        found = datetime.fromisoformat(value.replace("z", "Z"))
    except ValueError:
        found = None
    if found is None or found.tzinfo is None:
        raise click.BadParameter(f"{value!r} is not an instant like 2026-12-07T12:00:00Z")
    return found.astimezone(UTC)


def database_said(exc: DBAPIError) -> str:
    """The first line of the database driver's own words, without SQLAlchemy's trailer."""
    return (str(exc.orig).strip().splitlines() or ["no reason given"])[0].strip()


class Commands(click.Group):
    """Every command: a database gone away is one line saying so, not a traceback. Each
    step commits as it goes (a page of papers, a card, a request's readers, with the send
    journal's record of it), so running the command again is the way on."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except OperationalError as exc:
            raise click.ClickException(
                f"the database did not answer ({database_said(exc)}). What the command did "
                "before is kept; run it again once the database is back, and it goes on "
                "from there.") from None


@click.group(cls=Commands)
@click.pass_context
def main(ctx: click.Context) -> None:
    """Paperwire: arXiv's new machine-learning papers as personal email digests."""
    logging.basicConfig(
        level=os.environ.get("LOG_LEVEL", "ERROR").upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    ctx.obj = App()
    ctx.call_on_close(ctx.obj.close)

