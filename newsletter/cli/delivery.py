"""`newsletter send`, `preview` and `sendgrid`: an edition sent, a digest looked at, the
template kept on SendGrid."""

from __future__ import annotations

import json
import sys
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

from newsletter.cli.app import App, database_said, parse_day, parse_instant, progress

if TYPE_CHECKING:
    from newsletter.mail.sendgrid import SendGridSender


@click.command("send")
@click.option("--dry-run", is_flag=True, help="Say what would be sent; send and record nothing.")
@click.option("--date", "day", callback=parse_day, help="The edition's day (default: today, UTC).")
@click.option("--weekly", is_flag=True, help="Send the weekly edition instead of the daily one.")
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Processes sending chunks side by side.")
@click.option("--due", is_flag=True,
              help="Send every digest due now, each reader at their own hour (what beat runs).")
@click.option("--now", "at", callback=parse_instant, metavar="TIME",
              help="With --due: the instant to send for, e.g. 2026-12-07T12:00:00Z.")
@click.pass_obj
def send_command(app: App, dry_run: bool, day: date | None, weekly: bool, workers: int,
                 due: bool, at: datetime | None) -> None:
    """Deliver an edition's digests: each confirmed subscriber once, never twice.

    With --due, the digests whose readers' hour has come, each in their own time zone."""
    from newsletter import delivery

    frequency = "weekly" if weekly else "daily"
    if at is not None and not due:
        raise click.UsageError("--now goes with --due")
    if due and (dry_run or day or weekly):
        raise click.UsageError("--due sends what is due: no --dry-run, --date or --weekly")
    if dry_run:
        click.echo(delivery.dry_run(app.engine, app.settings, frequency=frequency,
                                    day=day).line())
        return
    from sqlalchemy.exc import DBAPIError

    from newsletter.delivery.journal import JournalError
    from newsletter.mail.senders import MailError

    try:
        reports = delivery.send_due(app.engine, app.settings, at, workers=workers,
                                    progress=progress) if due else [
            delivery.send_edition(app.engine, app.settings, frequency=frequency, day=day,
                                  workers=workers, progress=progress)]
    except (MailError, JournalError) as exc:  # e.g. SendGrid's template is outdated
        raise click.ClickException(str(exc)) from None
    except DBAPIError as exc:  # the send stopped at the first outcome it could not record
        raise click.ClickException(
            f"the database did not answer ({database_said(exc)}), so the send stopped there. "
            f"Anything the mail provider accepted is kept in the send journal "
            f"({app.settings.send_journal}): run `newsletter send` again once the database "
            "is back, and those readers are recorded as sent, not mailed again.") from None
    for error in dict.fromkeys(e for report in reports for e in report.errors):
        progress(f"error: {error}")
    for report in reports:
        click.echo(report.line())
    if not reports:
        click.echo("nothing due")
    if any(report.failed or report.retry_later for report in reports):
        sys.exit(1)


@click.group("sendgrid")
def sendgrid_group() -> None:
    """SendGrid's copies of the digest template, one per language."""


def _sendgrid(app: App) -> SendGridSender:
    from newsletter.mail.sendgrid import SendGridSender

    try:
        return SendGridSender.from_settings(app.settings)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None


@sendgrid_group.command("sync")
@click.pass_obj
def sendgrid_sync_command(app: App) -> None:
    """Upload each language's digest template as a new version and activate it, if it
    changed."""
    from newsletter.mail.sendgrid_templates import TemplateError

    try:
        for result in _sendgrid(app).sync_all():
            click.echo(result.line())
    except TemplateError as exc:
        raise click.ClickException(str(exc)) from None


@sendgrid_group.command("status")
@click.pass_obj
def sendgrid_status_command(app: App) -> None:
    """Say whether SendGrid's active digest templates (one per language) are this
    release's; exit 1 if one is not."""
    from newsletter.mail.sendgrid_templates import TemplateError

    try:
        states = _sendgrid(app).template_states()
    except TemplateError as exc:
        raise click.ClickException(str(exc)) from None
    for state in states:
        if state.current:
            click.echo(f"template {state.template_id}: version {state.wanted} is active")
        else:
            click.echo(f"{state.problem()}: run `newsletter sendgrid sync`")
    if not all(state.current for state in states):
        sys.exit(1)


@click.command("preview")
@click.argument("email")
@click.option("--date", "day", callback=parse_day, help="The edition's day (default: today, UTC).")
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
