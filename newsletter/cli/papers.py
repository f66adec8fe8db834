"""`newsletter db`, `ingest`, `papers`, `feeds`, `summarize` and `embed`: papers in, cards
and vectors out."""

from __future__ import annotations

import json
import sys
from datetime import date
from pathlib import Path

import click
from sqlmodel import Session, select

from newsletter import db
from newsletter.cards.card import card_json, cards_for, find_paper
from newsletter.cli.app import App, parse_day, progress
from newsletter.ingest import run
from newsletter.ingest import store as ingest
from newsletter.ingest.feed import Feed
from newsletter.ingest.paper import paper_json, papers_of_day


@click.group("db")
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


@click.command("ingest")
@click.option("--file", "files", multiple=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Ingest a saved feed document instead of fetching (repeatable).")
@click.argument("more_files", nargs=-1, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--backfill", is_flag=True, help="Use the arXiv API instead of the RSS listing.")
@click.option("--since", callback=parse_day, help="With --backfill: first submission day.")
@click.option("--until", callback=parse_day, help="With --backfill: last submission day.")
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
        summary = ingest.ingest_files(app.engine, paths, source=source, progress=progress)
    elif backfill:
        assert since is not None
        summary = ingest.backfill(app.engine, app.settings, since=since, until=until,
                                  progress=progress)
    else:
        summary = run.ingest_feeds(app.engine, app.settings, progress=progress)
    click.echo(summary.line())
    if summary.errors and summary.errors == len(summary.feeds):
        sys.exit(1)


@click.command("papers")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
@click.option("--date", "day", callback=parse_day,
              help="Only papers announced or revised that day.")
@click.pass_obj
def papers_command(app: App, as_json: bool, day: date | None) -> None:
    """List stored papers."""
    with Session(app.engine) as session:
        found = papers_of_day(session, day)
        if as_json:
            cards = cards_for(session, [p.id for p in found if p.id is not None])
            rows = [{**paper_json(p), "card": card_json(cards.get(p.id or 0))} for p in found]
            click.echo(json.dumps(rows, ensure_ascii=False, indent=2))
            return
        for paper in found:
            kind = "" if paper.announce_type == "new" else f" [{paper.announce_type}]"
            click.echo(f"{paper.key:<18} {paper.title[:90]}{kind}")
        click.echo(f"{len(found)} papers" + (f" on {day}" if day else ""))


@click.command("summarize")
@click.option("--limit", type=click.IntRange(min=1), help="Write at most N cards, newest first.")
@click.option("--paper", "paper_ref", help="Only this paper (its arXiv id, key or row id).")
@click.option("--force", is_flag=True, help="Rewrite cards even when they are up to date.")
@click.pass_obj
def summarize_command(app: App, limit: int | None, paper_ref: str | None, force: bool) -> None:
    """Write the card of every paper that needs one (LLM with OPENAI_API_KEY, else offline),
    then translate the LLM cards into every language a confirmed reader reads."""
    from newsletter.cards.summarize import summarize_pending
    from newsletter.readers.subscriber import languages_in_use

    paper_id = None
    with Session(app.engine) as session:
        if paper_ref is not None:
            paper = find_paper(session, paper_ref)
            if paper is None:
                raise click.BadParameter(f"no stored paper {paper_ref!r}",
                                         param_hint="--paper")
            paper_id = paper.id
        languages = languages_in_use(session, app.settings.card_languages)
    report = summarize_pending(app.engine, app.settings, limit=limit, paper_id=paper_id,
                               force=force, languages=languages, progress=progress)
    if report.pending == 0:
        progress("no card to write: every paper's card is up to date")
    if report.translations is not None and languages and not report.translations.pending:
        progress(f"no translation to write: every LLM card is translated "
                 f"({', '.join(languages)})")
    for line in report.lines():
        click.echo(line)
    if report.failed and not report.written:
        sys.exit(1)


@click.command("embed")
@click.option("--limit", type=click.IntRange(min=1), help="Embed at most N papers, newest first.")
@click.pass_obj
def embed_command(app: App, limit: int | None) -> None:
    """Compute the vector of every paper that needs one (OpenAI embeddings with
    OPENAI_API_KEY, else the offline space): new papers, changed texts, a changed model."""
    from newsletter.relevance.train import embed_and_retrain

    report, retrained = embed_and_retrain(app.engine, app.settings, limit=limit,
                                          progress=progress)
    if report.error:
        progress(f"error: {report.error}; those papers wait for the next run")
    elif not report.embedded:
        progress("no paper to embed: every paper's vector is current")
    if retrained:
        progress(f"{retrained} reader models trained again on the new vectors")
    click.echo(report.line())
    if report.failed:
        sys.exit(1)


@click.command("feeds")
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
            + (f"\n  warning: {f.last_warning}" if f.last_warning else "")
        )
