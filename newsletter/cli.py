"""The `newsletter` command. Each command parses its arguments and calls one domain function."""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import date
from pathlib import Path

import click
from sqlalchemy import Engine
from sqlmodel import Session, select

from newsletter import db
from newsletter.admin.cli import admin_group
from newsletter.cards.card import card_json, cards_for, find_paper
from newsletter.config import ConfigError, Settings, load_settings
from newsletter.ingest import store as ingest
from newsletter.ingest.feed import Feed
from newsletter.ingest.paper import paper_json, papers_of_day


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
            cards = cards_for(session, [p.id for p in found if p.id is not None])
            rows = [{**paper_json(p), "card": card_json(cards.get(p.id or 0))} for p in found]
            click.echo(json.dumps(rows, ensure_ascii=False, indent=2))
            return
        for paper in found:
            kind = "" if paper.announce_type == "new" else f" [{paper.announce_type}]"
            click.echo(f"{paper.key:<18} {paper.title[:90]}{kind}")
        click.echo(f"{len(found)} papers" + (f" on {day}" if day else ""))


@main.command("summarize")
@click.option("--limit", type=click.IntRange(min=1), help="Write at most N cards, newest first.")
@click.option("--paper", "paper_ref", help="Only this paper (its arXiv id, key or row id).")
@click.option("--force", is_flag=True, help="Rewrite cards even when they are up to date.")
@click.pass_obj
def summarize_command(app: App, limit: int | None, paper_ref: str | None, force: bool) -> None:
    """Write the card of every paper that needs one (LLM with OPENAI_API_KEY, else offline)."""
    from newsletter.cards.summarize import summarize_pending

    paper_id = None
    if paper_ref is not None:
        with Session(app.engine) as session:
            paper = find_paper(session, paper_ref)
        if paper is None:
            raise click.BadParameter(f"no stored paper {paper_ref!r}", param_hint="--paper")
        paper_id = paper.id
    report = summarize_pending(app.engine, app.settings, limit=limit, paper_id=paper_id,
                               force=force, progress=_progress)
    if report.pending == 0:
        _progress("no card to write: every paper's card is up to date")
    click.echo(report.line())
    if report.failed and not report.written:
        sys.exit(1)


@main.command("embed")
@click.option("--limit", type=click.IntRange(min=1), help="Embed at most N papers, newest first.")
@click.pass_obj
def embed_command(app: App, limit: int | None) -> None:
    """Compute the vector of every paper that needs one (OpenAI embeddings with
    OPENAI_API_KEY, else the offline space): new papers, changed texts, a changed model."""
    from newsletter.relevance.train import embed_and_retrain

    report, retrained = embed_and_retrain(app.engine, app.settings, limit=limit,
                                          progress=_progress)
    if report.error:
        _progress(f"error: {report.error}; those papers wait for the next run")
    elif not report.embedded:
        _progress("no paper to embed: every paper's vector is current")
    if retrained:
        _progress(f"{retrained} reader models trained again on the new vectors")
    click.echo(report.line())
    if report.failed:
        sys.exit(1)


@main.command("send")
@click.option("--dry-run", is_flag=True, help="Say what would be sent; send and record nothing.")
@click.option("--date", "day", callback=_day, help="The edition's day (default: today, UTC).")
@click.option("--weekly", is_flag=True, help="Send the weekly edition instead of the daily one.")
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Processes sending chunks side by side.")
@click.pass_obj
def send_command(app: App, dry_run: bool, day: date | None, weekly: bool, workers: int) -> None:
    """Deliver an edition's digests: each confirmed subscriber once, never twice."""
    from newsletter import delivery

    frequency = "weekly" if weekly else "daily"
    if dry_run:
        click.echo(delivery.dry_run(app.engine, app.settings, frequency=frequency,
                                    day=day).line())
        return
    from sqlalchemy.exc import DBAPIError

    from newsletter.delivery.journal import JournalError
    from newsletter.mail.senders import MailError

    try:
        report = delivery.send_edition(app.engine, app.settings, frequency=frequency, day=day,
                                       workers=workers, progress=_progress)
    except (MailError, JournalError) as exc:  # e.g. SendGrid's template is outdated
        raise click.ClickException(str(exc)) from None
    except DBAPIError as exc:  # the send stopped at the first outcome it could not record
        reason = (str(exc.orig).strip().splitlines() or ["no reason given"])[0]
        raise click.ClickException(
            f"the database did not answer ({reason}), so the send stopped there. "
            f"Anything the mail provider accepted is kept in the send journal "
            f"({app.settings.send_journal}): run `newsletter send` again once the database "
            "is back, and those readers are recorded as sent, not mailed again.") from None
    for error in dict.fromkeys(report.errors):
        _progress(f"error: {error}")
    click.echo(report.line())
    if report.failed or report.retry_later:
        sys.exit(1)


@main.group("sendgrid")
def sendgrid_group() -> None:
    """SendGrid's copy of the digest template."""


def _sendgrid(app: App):  # type: ignore[no-untyped-def]
    from newsletter.mail.sendgrid import SendGridSender

    try:
        return SendGridSender.from_settings(app.settings)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None


@sendgrid_group.command("sync")
@click.pass_obj
def sendgrid_sync_command(app: App) -> None:
    """Upload the digest template as a new version and activate it, if it changed."""
    from newsletter.mail.sendgrid import TemplateError

    try:
        click.echo(_sendgrid(app).sync().line())
    except TemplateError as exc:
        raise click.ClickException(str(exc)) from None


@sendgrid_group.command("status")
@click.pass_obj
def sendgrid_status_command(app: App) -> None:
    """Say whether SendGrid's active digest template is this release's; exit 1 if not."""
    from newsletter.mail.sendgrid import TemplateError

    try:
        state = _sendgrid(app).template_state()
    except TemplateError as exc:
        raise click.ClickException(str(exc)) from None
    if not state.current:
        click.echo(f"{state.problem()}: run `newsletter sendgrid sync`")
        sys.exit(1)
    click.echo(f"template {state.template_id}: version {state.wanted} is active")


@main.command("preview")
@click.argument("email")
@click.option("--date", "day", callback=_day, help="The edition's day (default: today, UTC).")
@click.option("--out", "folder", type=click.Path(file_okay=False, path_type=Path),
              default=Path("preview"), show_default=True, help="Where to write the files.")
@click.option("--json", "as_json", is_flag=True,
              help="Print the picks in rank order as JSON ([{arxiv_id, score, reasons}]); "
                   "write no files.")
@click.pass_obj
def preview_command(app: App, email: str, day: date | None, folder: Path,
                    as_json: bool) -> None:
    """Write EMAIL's next digest as HTML and text, and print the paths."""
    from newsletter import delivery
    from newsletter.readers.subscriber import UnknownReader

    try:
        found = delivery.preview(app.engine, app.settings, email, day=day)
    except UnknownReader as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(json.dumps(found.picks if found else [], indent=2, ensure_ascii=False))
        return
    if found is None:
        click.echo(f"{email} has nothing new in this edition: no digest would be sent")
        return
    folder.mkdir(parents=True, exist_ok=True)
    html, text = folder / "digest.html", folder / "digest.txt"
    html.write_text(found.html, encoding="utf-8")
    text.write_text(found.text, encoding="utf-8")
    click.echo(f"{found.subject}\n{html}\n{text}")


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
            + (f"\n  warning: {f.last_warning}" if f.last_warning else "")
        )


@main.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_obj
def status_command(app: App, as_json: bool) -> None:
    """Papers today, cards pending and failed, feeds, the last edition, deliveries,
    suppressed addresses and today's LLM cost."""
    from newsletter.admin import status
    found = status.collect(app.engine, journal=app.settings.send_journal)
    if as_json:
        click.echo(json.dumps(found.as_json(), indent=2))
        return
    for line in found.lines():
        click.echo(line)


# Subscriber and web commands import Flask and the mail stack lazily: `ingest` and the
# workers should not pay for them.


def _services(app: App):  # type: ignore[no-untyped-def]
    from newsletter.mail.senders import MailError
    from newsletter.subscriptions.signup import Services

    try:
        return Services.build(app.settings, app.engine)
    except MailError as exc:
        raise click.ClickException(str(exc)) from None


@main.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.pass_obj
def serve_command(app: App, host: str, port: int) -> None:
    """Run the website with Flask's development server (production: gunicorn, see README)."""
    from newsletter.mail.senders import MailError
    from newsletter.web import create_app

    try:
        web = create_app(app.settings, engine=app.engine)
    except MailError as exc:
        raise click.ClickException(str(exc)) from None
    _progress(f"Paperwire on http://{host}:{port}/ (links in emails use BASE_URL="
              f"{app.settings.base_url}); Flask's server is for development only")
    web.run(host=host, port=port, debug=False, use_reloader=False)


@main.group("subscribers", invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
@click.pass_context
def subscribers_group(ctx: click.Context, as_json: bool) -> None:
    """List subscribers (or add or import them: see the subcommands)."""
    if ctx.invoked_subcommand is not None:
        return
    from newsletter.subscriptions import signup
    rows = signup.listing(_services(ctx.obj))
    if as_json:
        click.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    for row in rows:
        click.echo(f"{row['email']:<40} {row['status']:<13} {row['frequency']:<7} "
                   f"{','.join(row['topics'])}")
    click.echo(f"{len(rows)} subscribers")


def _invalid(errors: dict[str, str]) -> click.ClickException:
    return click.ClickException("\n".join(f"{k}: {v}" for k, v in errors.items()))


@subscribers_group.command("add")
@click.argument("email")
@click.option("--topics", required=True, help="Comma-separated topic slugs, e.g. llm,nlp.")
@click.option("--frequency", type=click.Choice(["daily", "weekly"]), default="daily",
              show_default=True)
@click.option("--describe", metavar="TEXT",
              help="Their interests in their own words (at most 500 characters).")
@click.option("--like", metavar="ID,ID",
              help="Papers they like: arXiv ids or arxiv.org links (at most 50).")
@click.option("--confirmed", is_flag=True,
              help="They already opted in: no confirmation mail, subscribed at once.")
@click.pass_obj
def subscribers_add(app: App, email: str, topics: str, frequency: str, describe: str | None,
                    like: str | None, confirmed: bool) -> None:
    """Add a subscriber; without --confirmed they get the confirmation mail.

    --describe and --like shape their model before their first digest; given for a reader
    who has them already, each replaces what was there (the other is kept)."""
    from newsletter.readers.reader_input import InvalidInput
    from newsletter.readers.subscriber import LinkInvalid
    from newsletter.subscriptions import signup

    try:
        interests = _checked_interests(describe, like)
        added = signup.add(_services(app), email, signup.split_topics(topics), frequency,
                           confirmed=confirmed)
    except InvalidInput as exc:
        raise _invalid(exc.errors) from None
    except (LinkInvalid, signup.SendFailed) as exc:
        raise click.ClickException(str(exc)) from None
    mailed = f"; mailed: {added.mailed}" if added.mailed else ""
    learned = _learn_interests(app, added.email, describe, like) if interests else ""
    click.echo(f"{added.email}: {added.status}{mailed}{learned}")


def _checked_interests(describe: str | None, like: str | None) -> bool:
    """Whether interests were given; InvalidInput naming every bad one, before any write."""
    from newsletter.readers.reader_input import InvalidInput, parse_description, parse_liked_papers

    errors: dict[str, str] = {}
    for given, check in ((describe, parse_description), (like, parse_liked_papers)):
        try:
            if given is not None:
                check(given)
        except InvalidInput as exc:
            errors.update(exc.errors)
    if errors:
        raise InvalidInput(errors)
    return describe is not None or like is not None


def _learn_interests(app: App, email: str, describe: str | None, like: str | None) -> str:
    """Store a reader's description and liked papers, fetch the liked papers we lack from
    arXiv, train their model; a summary."""
    from newsletter.readers.subscriber import find_by_email
    from newsletter.relevance import learn, liked, train

    with db.transaction(app.engine) as session:
        reader = find_by_email(session, email)
        assert reader is not None and reader.id is not None  # signup.add has just written it
        now = learn.interests_of(session, reader.id)
        stored = learn.set_interests(
            session, reader.id, now.description if describe is None else describe,
            now.liked if like is None else like, settings=app.settings)
    if stored.missing:
        fetched = liked.fetch_wanted(app.engine, app.settings, ids=stored.missing)
        with db.transaction(app.engine) as session:
            train.retrain(session, reader.id, settings=app.settings)
            stored = learn.interests_of(session, reader.id)
        if fetched.problem:
            _progress(f"warning: {fetched.problem}; they stay on the list and are asked for "
                      "again by `newsletter embed`")
        elif stored.missing:
            _progress(f"warning: arXiv does not know {', '.join(stored.missing)}")
    count = len(stored.liked)
    return (f"; {'described' if stored.description else 'no description'}, {count} liked "
            f"paper{'s' if count != 1 else ''}"
            + (f" ({len(stored.missing)} not found)" if stored.missing else ""))


@main.command("rate")
@click.argument("email")
@click.argument("ratings", nargs=-1, required=True, metavar="ARXIV_ID=up|down|clear...")
@click.pass_obj
def rate_command(app: App, email: str, ratings: tuple[str, ...]) -> None:
    """Rate papers for a reader: up (more like this), down (less like this) or clear.

    All or nothing: an unknown reader, paper or value writes no rating. The reader's
    model is trained again once, after all of them."""
    from newsletter.readers.reader_input import InvalidInput, parse_email
    from newsletter.readers.subscriber import find_by_email
    from newsletter.relevance import learn

    try:
        wanted = learn.parse_ratings(ratings)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="ARXIV_ID=up|down|clear") from None
    try:
        address = parse_email(email)
    except InvalidInput as exc:
        raise click.BadParameter(exc.errors["email"], param_hint="EMAIL") from None
    with db.transaction(app.engine) as session:
        reader = find_by_email(session, address)
        if reader is None or reader.id is None:
            raise click.BadParameter(f"no reader {address}", param_hint="EMAIL")
        try:
            papers = learn.papers_named(session, list(wanted))
        except learn.UnknownPaper as exc:
            raise click.BadParameter(str(exc), param_hint="ARXIV_ID") from None
        trained = learn.record_ratings(session, reader.id,
                                       {papers[i]: value for i, value in wanted.items()},
                                       settings=app.settings)
    given = list(wanted.values())
    counts = ", ".join(f"{n} {word}" for n, word in ((given.count(1), "up"),
                                                       (given.count(-1), "down"),
                                                       (given.count(None), "cleared")) if n)
    model = (f"model trained on {trained.ups + trained.downs} ratings" if trained
             else "no model: nothing to go on, topics alone rank their papers")
    click.echo(f"rate: {address}: {counts}; {model}")


@subscribers_group.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--confirmed", is_flag=True,
              help="Everyone in the file already opted in: no confirmation mails.")
@click.pass_obj
def subscribers_import(app: App, file: Path, confirmed: bool) -> None:
    """Add everyone in a CSV with columns email,topics[,frequency] (all or nothing)."""
    from newsletter.readers.reader_input import InvalidInput
    from newsletter.readers.subscriber import LinkInvalid
    from newsletter.subscriptions import signup

    try:
        rows = signup.read_csv(file.read_text(encoding="utf-8-sig"))
    except InvalidInput as exc:
        raise _invalid(exc.errors) from None
    except UnicodeDecodeError:
        raise click.ClickException(f"{file} is not UTF-8 text") from None
    services = _services(app)
    mailed = skipped = 0
    for row in rows:
        try:
            added = signup.add(services, row.email, row.topics, row.frequency,
                               confirmed=confirmed, action="import")
        except LinkInvalid as exc:
            _progress(f"line {row.line}: {row.email}: {exc}")
            skipped += 1
            continue
        except signup.SendFailed as exc:
            raise click.ClickException(f"line {row.line}: {exc}") from None
        mailed += added.mailed is not None
    click.echo(f"imported {len(rows) - skipped} subscribers from {file.name}; "
               f"{mailed} confirmation mails sent, {skipped} suppressed addresses skipped")


@main.command("demo")
@click.option("--offline", is_flag=True, help="Skip live arXiv; use the shipped samples.")
@click.option("--no-serve", is_flag=True,
              help="Do the one-shot part (ingest, cards, the demo digest) and exit.")
@click.option("--port", type=click.IntRange(1, 65535),
              help="The site's port (default: 8000 when free, else any free port).")
@click.pass_obj
def demo_command(app: App, offline: bool, no_serve: bool, port: int | None) -> None:
    """The whole service on this machine: ingest, cards, a demo reader's digest in the
    outbox, then the site, a Celery worker and beat on an embedded Redis until Ctrl-C."""
    from newsletter import demo
    from newsletter.mail.senders import MailError

    demo.enter_dev_mode()  # before the first setting is read
    host = "127.0.0.1"
    try:
        port = None if no_serve else demo.pick_port(host, port)
    except demo.DemoError as exc:
        raise click.ClickException(str(exc)) from None
    url = f"http://{host}:{port}" if port else None
    settings = demo.demo_settings(app.settings, url)
    click.echo(f"database: {settings.database_url}", err=True)
    prepared = demo.prepare(app.engine, settings, offline=offline, progress=_progress)
    click.echo(f"\n{prepared.heading()}:")
    for paper in prepared.papers:
        revised = " (revised)" if paper in prepared.revised else ""
        click.echo(f"  {paper.key:<14} {paper.title[:100]}{revised}")
        click.echo(f"  {'':<14} {', '.join(paper.authors[:3])}"
                   f"{' et al.' if len(paper.authors) > 3 else ''} · {paper.abs_url}")
    newest = prepared.messages[0] if prepared.messages else None
    click.echo(f"\noutbox: {prepared.outbox}")
    if newest:
        click.echo(f"digest for {demo.DEMO_EMAIL}: {newest}")
    if no_serve:
        return
    assert port is not None and url is not None
    try:
        from newsletter.web import create_app

        with demo.running_services(settings, Path("demo-logs"),
                                   progress=_progress) as services:
            web = create_app(settings.model_copy(update={"redis_url": services.redis_url}),
                             engine=app.engine)
            click.echo(f"site: {url}  (the outbox: {url}/outbox)")
            click.echo(f"worker and beat on an embedded Redis ({services.redis_url}); logs in "
                       f"{services.logdir}. Ctrl-C stops everything.")
            demo.serve_until_stopped(web, host, port, services)
            _progress("stopping ...")
    except (demo.DemoError, MailError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo("stopped", err=True)


main.add_command(admin_group)
