"""`newsletter topics`: the installation's taxonomy as its readers use it, and the shipped
example files to start one's own from."""

from __future__ import annotations

import click

from newsletter.cli.app import App
from newsletter.db import transaction
from newsletter.topics import in_use
from newsletter.topics.taxonomy import SHIPPED, current, shipped_path


@click.group("topics", invoke_without_command=True)
@click.pass_context
def topics_group(ctx: click.Context) -> None:
    """List the topics of TAXONOMY_FILE (or the built-in ML ones) and their readers."""
    if ctx.invoked_subcommand is not None:
        return
    app: App = ctx.obj
    engine = app.engine  # opening it installs the taxonomy and checks it, as every start does
    taxonomy = current()
    with transaction(engine) as session:
        readers = in_use.readers_per_topic(session, taxonomy.resolve)
    click.echo(f"{taxonomy.name or 'topics'} ({taxonomy.origin}): {len(taxonomy.topics)} topics")
    for topic in taxonomy.topics:
        renamed = f" (was {', '.join(topic.renamed_from)})" if topic.renamed_from else ""
        click.echo(f"  {topic.slug:<24} {readers[topic.slug]:>6} readers  {topic.name}{renamed}")


@topics_group.command("example")
@click.argument("name", type=click.Choice(SHIPPED))
def topics_example(name: str) -> None:
    """Print a shipped taxonomy file, to copy and edit: ml (the default) or biology."""
    click.echo(shipped_path(name).read_text(encoding="utf-8"), nl=False)
