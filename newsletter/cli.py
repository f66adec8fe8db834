"""The `newsletter` command. Each command parses its arguments and calls one domain function."""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import date
from importlib import resources
from pathlib import Path

import click
from sqlalchemy import Engine
from sqlmodel import Session, select

from newsletter import db, ingest
from newsletter.config import ConfigError, Settings, load_settings
from newsletter.feed import Feed
from newsletter.paper import latest_announcement_day, paper_json, papers_of_day


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
            except db.SchemaOutOfDate as exc:
                raise click.ClickException(str(exc)) from None
            self._engine = engine
        return self._engine


def _progress(message: str) -> None:
    click.echo(message, err=True)


def _day(_ctx: click.Context, _param: click.Parameter, value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a date like 2026-09-24") from None


@click.group()
@click.pass_context
def main(ctx: click.Context) -> None:
    """Paperwire: arXiv's new machine-learning papers as personal email digests."""
    logging.basicConfig(
        level=os.environ.get("LOG_LEVEL", "ERROR").upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    ctx.obj = App()


@main.group("db")
def db_group() -> None:
    """Database schema."""


@db_group.command("upgrade")
@click.pass_obj
def db_upgrade(app: App) -> None:
    """Apply pending migrations."""
    engine = db.make_engine(app.settings.database_url)
    before = db.current_revision(engine)
    db.upgrade(engine)
    click.echo(f"database at {db.current_revision(engine)} (was {before or 'empty'})")


@main.command("ingest")
@click.option("--file", "files", multiple=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Ingest a saved feed document instead of fetching (repeatable).")
@click.argument("more_files", nargs=-1, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--backfill", is_flag=True, help="Use the arXiv API instead of the RSS listing.")
@click.option("--since", callback=_day, help="With --backfill: first submission day.")
@click.option("--until", callback=_day, help="With --backfill: last submission day.")
@click.option("--source", default="arxiv", show_default=True,
              help="With --file: label for papers of a non-arXiv feed.")
@click.pass_obj
def ingest_command(
    app: App, files: tuple[Path, ...], more_files: tuple[Path, ...], backfill: bool,
    since: date | None, until: date | None, source: str,
) -> None:
    """Fetch the configured feeds (or read saved documents) into the paper store."""
    paths = [*files, *more_files]
    if backfill and paths:
        raise click.UsageError("--backfill fetches from the API; it takes no files")
    if backfill and since is None:
        raise click.UsageError("--backfill needs --since YYYY-MM-DD")
    if not backfill and (since or until):
        raise click.UsageError("--since and --until go with --backfill")
    if paths:
        summary = ingest.ingest_files(app.engine, paths, source=source, progress=_progress)
    elif backfill:
        assert since is not None
        summary = ingest.backfill(app.engine, app.settings, since=since, until=until,
                                  progress=_progress)
    else:
        summary = ingest.ingest_feeds(app.engine, app.settings, progress=_progress)
    click.echo(summary.line())
    if summary.errors and summary.errors == len(summary.feeds):
        sys.exit(1)


@main.command("papers")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
@click.option("--date", "day", callback=_day, help="Only papers announced or revised that day.")
@click.pass_obj
def papers_command(app: App, as_json: bool, day: date | None) -> None:
    """List stored papers."""
    with Session(app.engine) as session:
        found = papers_of_day(session, day)
        if as_json:
            click.echo(json.dumps([paper_json(p) for p in found], ensure_ascii=False, indent=2))
            return
        for paper in found:
            kind = "" if paper.announce_type == "new" else f" [{paper.announce_type}]"
            click.echo(f"{paper.key:<18} {paper.title[:90]}{kind}")
        click.echo(f"{len(found)} papers" + (f" on {day}" if day else ""))


@main.command("feeds")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
@click.pass_obj
def feeds_command(app: App, as_json: bool) -> None:
    """Show each feed's last fetch."""
    with Session(app.engine) as session:
        feeds = list(session.exec(select(Feed).order_by(Feed.label)))
    if as_json:
        click.echo(json.dumps([f.model_dump(mode="json") for f in feeds], indent=2))
        return
    if not feeds:
        click.echo("no feed fetched yet: run `newsletter ingest`")
    for f in feeds:
        when = f.last_fetched_at.strftime("%Y-%m-%d %H:%M UTC") if f.last_fetched_at else "never"
        click.echo(
            f"{f.label}\n  {f.url}\n  last fetch {when}, HTTP {f.http_status or '-'}, "
            f"state {f.state}; {f.items_seen} items, {f.papers_added} new, "
            f"{f.papers_updated} updated" + (f"\n  error: {f.last_error}" if f.last_error else "")
        )


def sample_feeds() -> list[Path]:
    """The real arXiv documents shipped in the package, for running with no network."""
    folder = resources.files("newsletter") / "samples"
    return sorted(Path(str(p)) for p in folder.iterdir() if p.name.endswith(".xml"))


@main.command("demo")
@click.option("--offline", is_flag=True, help="Skip live arXiv; use the shipped samples.")
@click.pass_obj
def demo_command(app: App, offline: bool) -> None:
    """Run the main job with embedded defaults: ingest, then list the latest day's papers."""
    settings = app.settings
    click.echo(f"database: {settings.database_url}", err=True)
    summary = None
    if not offline:
        fetcher = ingest.Fetcher(timeout=10, retries=0, max_wait=0)
        with fetcher:
            summary = ingest.ingest_feeds(app.engine, settings, fetcher=fetcher,
                                          progress=_progress)
        if summary.errors:
            click.echo("arXiv is not reachable from here; using the sample feeds shipped "
                       "with Paperwire instead.", err=True)
            summary = None
    if summary is None:
        summary = ingest.ingest_files(app.engine, sample_feeds(), progress=_progress)
    click.echo(summary.line(), err=True)
    with Session(app.engine) as session:
        day = latest_announcement_day(session)
        found = papers_of_day(session, day)
    click.echo(f"\n{len(found)} papers announced on {day}:")
    for paper in found:
        click.echo(f"  {paper.key:<14} {paper.title[:100]}")
        click.echo(f"  {'':<14} {', '.join(paper.authors[:3])}"
                   f"{' et al.' if len(paper.authors) > 3 else ''} · {paper.abs_url}")
