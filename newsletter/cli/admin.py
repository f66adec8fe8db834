"""`newsletter admin`: operator accounts, made and removed on the server, never on the web.

Making an account is the only way to open the admin site, so it needs a shell on the
server; both changes are audited with the actor "cli".
"""

from __future__ import annotations

import sys

import click

from newsletter import db
from newsletter.admin import accounts, audit
from newsletter.cli.app import App


@click.group("admin")
def admin_group() -> None:
    """Operator accounts for the admin site (/admin)."""


@admin_group.command("add")
@click.argument("email")
@click.option("--password-stdin", is_flag=True,
              help="Read the password from the first line of standard input (for scripts).")
@click.pass_obj
def admin_add(app: App, email: str, password_stdin: bool) -> None:
    """Create an operator account; the password is asked for twice, hidden."""
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        with db.transaction(app.engine) as session:
            operator = accounts.add(session, email, password, audit.CLI)
    except accounts.AccountError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"added {operator.email}: sign in at {app.settings.base_url.rstrip('/')}/admin")


@admin_group.command("remove")
@click.argument("email")
@click.pass_obj
def admin_remove(app: App, email: str) -> None:
    """Delete an operator account and end its sessions."""
    try:
        with db.transaction(app.engine) as session:
            ended = accounts.remove(session, email, audit.CLI)
    except accounts.AccountError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"removed {email.strip().lower()}; {ended} session(s) ended")


@admin_group.command("list")
@click.pass_obj
def admin_list(app: App) -> None:
    """Every operator account, with when it was made."""
    with db.transaction(app.engine) as session:
        found = accounts.operators(session)
    for operator in found:
        click.echo(f"{operator.email}  added {operator.created_at:%Y-%m-%d %H:%M} UTC")
    click.echo(f"{len(found)} operator account(s)")
