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
    from newsletter.relevance.library.files import ParsedLibrary
    from newsletter.relevance.library.store import Shelf
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
@click.option("--library", "library_file", type=click.Path(exists=True, dir_okay=False,
                                                           path_type=Path),
              help="Their reference library: a BibTeX, RIS or CSL JSON export (Zotero, "
                   "Google Scholar, Mendeley), replacing the one they had.")
@click.option("--author", metavar="ID",
              help="Their arXiv author identifier (grapa_j_1) or ORCID iD: the papers of "
                   "its arXiv feed count as papers they like.")
@click.pass_obj
def subscribers_add(app: App, email: str, topics: str, frequency: str, describe: str | None,
                    like: str | None, confirmed: bool, time_zone: str | None,
                    hour: str | None, weekday: str | None, language: str | None,
                    library_file: Path | None, author: str | None) -> None:
    """Add a subscriber; without --confirmed they get the confirmation mail.

    --describe, --like, --library and --author shape their model before their first
    digest; given for a reader who has them already, each replaces what was there (the
    others are kept). What arXiv must give (liked papers, the author feed, library titles
    to look up) is fetched by the next `newsletter embed`."""
    from newsletter.readers.reader_input import InvalidInput, SendTime
    from newsletter.readers.subscriber import LinkInvalid
    from newsletter.subscriptions import signup

    try:
        interests = _checked_interests(describe, like)
        own = _checked_own(library_file, author)
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
    if own is not None:
        _store_own(app, added.email, library_file, *own)


def _checked_own(library_file: Path | None, author: str | None
                 ) -> tuple[ParsedLibrary | None, str | None] | None:
    """The parsed library and the author id, checked before anything is written."""
    from newsletter.readers.reader_input import InvalidInput, parse_arxiv_author
    from newsletter.relevance.library.files import MAX_FILE_BYTES
    from newsletter.subscriptions.own_papers import LibraryFile, read_library

    if library_file is None and author is None:
        return None
    errors: dict[str, str] = {}
    parsed = None
    if library_file is not None:
        if library_file.stat().st_size > MAX_FILE_BYTES:
            raise InvalidInput({"library": f"{library_file} is larger than "
                                           f"{MAX_FILE_BYTES // 2**20} MB"})
        try:
            parsed = read_library(LibraryFile(library_file.name, library_file.read_bytes()))
        except InvalidInput as exc:
            errors.update(exc.errors)
    checked = parse_arxiv_author(author, errors) if author is not None else None
    if errors:
        raise InvalidInput(errors)
    return parsed, checked


def _store_own(app: App, email: str, library_file: Path | None,
               parsed: ParsedLibrary | None, author: str | None) -> None:
    from newsletter.readers.subscriber import find_by_email
    from newsletter.relevance import learn

    with db.transaction(app.engine) as session:
        reader = find_by_email(session, email)
        assert reader is not None and reader.id is not None  # signup.add has just written it
        if author is not None:
            learn.set_author(session, reader.id, author, settings=app.settings)
        if parsed is not None and library_file is not None:
            learn.import_library(session, reader.id, parsed, library_file.name,
                                 settings=app.settings)
    if author is not None:
        click.echo(f"  author: {author} (its arXiv feed is read by `newsletter embed`)")
    if parsed is not None:
        for line in library_report(parsed):
            click.echo(f"  {line}")


def library_report(parsed: ParsedLibrary) -> list[str]:
    """What a library file gave, entry by entry where something was left out."""
    from newsletter.relevance.library.files import reason_said

    on_arxiv = sum(1 for e in parsed.entries if e.arxiv_id)
    lines = [f"library ({parsed.format}): {len(parsed.entries)} entries kept: {on_arxiv} "
             f"name an arXiv paper, {len(parsed.entries) - on_arxiv} to look up on arXiv by "
             f"title (`newsletter embed`); {len(parsed.skipped)} skipped"]
    lines += [f"  skipped #{s.number} {s.title or '(untitled)'!r}: {reason_said(s.reason)}"
              for s in parsed.skipped]
    return lines


STATE_SAID = {"arxiv": "on arXiv", "lookup": "to look up on arXiv by title",
              "text": "not on arXiv: its title and abstract count",
              "unmatched": "not on arXiv and no abstract: not used"}


def shelf_lines(shelf: Shelf) -> list[str]:
    """A reader's own papers, one line each, as `subscribers library` prints them."""
    read = (shelf.author_read_at.isoformat(timespec="minutes") if shelf.author_read_at
            else "not read yet")
    lines = [f"author: {shelf.author} (feed: {read})" if shelf.author else "author: none"]
    if shelf.upload is not None:
        lines.append(f"library file: {shelf.upload.filename} ({shelf.upload.format}), "
                     f"{len(shelf.upload.report.get('skipped', []))} entries skipped")
    for e in shelf.entries:
        said = STATE_SAID.get(e.state, e.state) + (f" {e.arxiv_id}" if e.arxiv_id else "")
        lines.append(f"  [{e.id}] {e.source} #{e.number} {e.title[:80]!r}: {said}"
                     + (" (dropped)" if e.dropped else ""))
    lines.append(f"{shelf.counting()} of {len(shelf.entries)} count for their model")
    return lines


@subscribers_group.command("library")
@click.argument("email")
@click.pass_obj
def subscribers_library(app: App, email: str) -> None:
    """A reader's own papers: their author feed's and library file's, each with how it
    counts (on arXiv, standing for itself, still to look up, unmatched, dropped)."""
    from sqlmodel import Session

    from newsletter.readers.reader_input import InvalidInput, parse_email
    from newsletter.readers.subscriber import find_by_email
    from newsletter.relevance.library.store import shelf_of

    try:
        address = parse_email(email)
    except InvalidInput as exc:
        raise _invalid(exc.errors) from None
    with Session(app.engine) as session:
        reader = find_by_email(session, address)
        if reader is None or reader.id is None:
            raise click.ClickException(f"no subscriber {address}")
        for line in shelf_lines(shelf_of(session, reader.id)):
            click.echo(line)


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
