"""The `newsletter` command. Each command parses its arguments and calls one domain function.

- `app`: the group every command joins, and what they share (settings, the database);
- `papers`: `db`, `ingest`, `papers`, `feeds`, `summarize`, `embed`;
- `delivery`: `send`, `preview`, `sendgrid`;
- `readers`: `subscribers` and `rate`;
- `topics`: the taxonomy (TAXONOMY_FILE) and its readers;
- `service`: `status`, `serve` and `demo` (`demo`: the whole service on one machine);
- `admin`: operator accounts.

The command modules know `app`; this module gathers them, and nothing imports it back.
"""

from newsletter.cli import admin, delivery, papers, readers, service, topics
from newsletter.cli.app import main

for command in (
    papers.db_group, papers.ingest_command, papers.papers_command, papers.feeds_command,
    papers.summarize_command, papers.embed_command,
    delivery.send_command, delivery.preview_command, delivery.sendgrid_group,
    readers.subscribers_group, readers.rate_command, topics.topics_group,
    service.status_command, service.serve_command, service.demo_command,
    admin.admin_group,
):
    main.add_command(command)

__all__ = ["main"]
