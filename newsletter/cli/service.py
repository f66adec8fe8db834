"""`newsletter status`, `serve` and `demo`: what the service is doing, the site, and the
whole service on one machine."""

from __future__ import annotations

import json
from pathlib import Path

import click

from newsletter.cli.app import App, progress


@click.command("status")
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


@click.command("serve")
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
    progress(f"Paperwire on http://{host}:{port}/ (links in emails use BASE_URL="
              f"{app.settings.base_url}); Flask's server is for development only")
    web.run(host=host, port=port, debug=False, use_reloader=False)


@click.command("demo")
@click.option("--offline", is_flag=True, help="Skip live arXiv; use the shipped samples.")
@click.option("--no-serve", is_flag=True,
              help="Do the one-shot part (ingest, cards, the demo digest) and exit.")
@click.option("--port", type=click.IntRange(1, 65535),
              help="The site's port (default: 8000 when free, else any free port).")
@click.pass_obj
def demo_command(app: App, offline: bool, no_serve: bool, port: int | None) -> None:
    """The whole service on this machine: ingest, cards, a demo reader's digest in the
    outbox, then the site, a Celery worker and beat on an embedded Redis until Ctrl-C."""
    from newsletter.cli import demo
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
    prepared = demo.prepare(app.engine, settings, offline=offline, progress=progress)
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
                                   progress=progress) as services:
            web = create_app(settings.model_copy(update={"redis_url": services.redis_url}),
                             engine=app.engine)
            click.echo(f"site: {url}  (the outbox: {url}/outbox)")
            click.echo(f"worker and beat on an embedded Redis ({services.redis_url}); logs in "
                       f"{services.logdir}. Ctrl-C stops everything.")
            demo.serve_until_stopped(web, host, port, services)
            progress("stopping ...")
    except (demo.DemoError, MailError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo("stopped", err=True)
