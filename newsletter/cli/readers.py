"""`newsletter subscribers` and `rate`: readers added, imported, listed, tuned by the operator."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import click

from newsletter import db
from newsletter.cli.app import App, progress
from newsletter.subscriptions.services import SendFailed

if TYPE_CHECKING:
    from newsletter.subscriptions.services import Services


def _services(app: App) -> Services:
    from newsletter.mail.senders import MailError
    from newsletter.subscriptions.services import Services

    try:
        return Services.build(app.settings, app.engine)
    except MailError as exc:
        raise click.ClickException(str(exc)) from None


@click.group("subscribers", invoke_without_command=True)
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
@click.option("--time-zone", metavar="ZONE",
              help="Their IANA time zone, e.g. America/Montreal (default: DEFAULT_TIME_ZONE).")
@click.option("--hour", metavar="0-23",
              help="The hour of their day their digest comes (default: DEFAULT_SEND_HOUR).")
@click.option("--weekday", metavar="mon..sun",
              help="A weekly digest's day (default: WEEKLY_DIGEST_DAY).")
@click.option("--language", metavar="CODE",
              help="The language of their cards, pages and mail: one of CARD_LANGUAGES "
                   "(default: en).")
@click.pass_obj
def subscribers_add(app: App, email: str, topics: str, frequency: str, describe: str | None,
                    like: str | None, confirmed: bool, time_zone: str | None,
                    hour: str | None, weekday: str | None, language: str | None) -> None:
    """Add a subscriber; without --confirmed they get the confirmation mail.

    --describe and --like shape their model before their first digest; given for a reader
    who has them already, each replaces what was there (the other is kept)."""
    from newsletter.readers.reader_input import InvalidInput, SendTime
    from newsletter.readers.subscriber import LinkInvalid
    from newsletter.subscriptions import signup

    try:
        interests = _checked_interests(describe, like)
        added = signup.add(_services(app), email, signup.split_topics(topics), frequency,
                           confirmed=confirmed, send_time=SendTime(time_zone, hour, weekday),
                           language=language)
    except InvalidInput as exc:
        raise _invalid(exc.errors) from None
    except (LinkInvalid, SendFailed) as exc:
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
            progress(f"warning: {fetched.problem}; they stay on the list and are asked for "
                      "again by `newsletter embed`")
        elif stored.missing:
            progress(f"warning: arXiv does not know {', '.join(stored.missing)}")
    count = len(stored.liked)
    return (f"; {'described' if stored.description else 'no description'}, {count} liked "
            f"paper{'s' if count != 1 else ''}"
            + (f" ({len(stored.missing)} not found)" if stored.missing else ""))


@click.command("rate")
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
            progress(f"line {row.line}: {row.email}: {exc}")
            skipped += 1
            continue
        except SendFailed as exc:
            raise click.ClickException(f"line {row.line}: {exc}") from None
        mailed += added.mailed is not None
    click.echo(f"imported {len(rows) - skipped} subscribers from {file.name}; "
               f"{mailed} confirmation mails sent, {skipped} suppressed addresses skipped")
