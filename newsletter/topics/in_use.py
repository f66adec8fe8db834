"""What the stored rows say of the taxonomy: which topics readers chose, and what cards hold.

Run by every process as it starts (the site, the worker, a command that opens the
database), after the schema check:
- a topic readers chose that the taxonomy no longer names, under its slug or a
  `renamed_from`, stops the start with a message naming it and how many readers chose it:
  their digests would silently lose it;
- a renamed topic's old slug is rewritten to the new one in preferences and cards, once
  (every read goes through `Taxonomy.resolve` anyway: the rewrite keeps the rows plain for
  SQL, the admin charts and the next rename);
- a card that holds only topics the file dropped (no reader chose them) is filed again by
  the offline tagger, so no card is left topic-less.

Both statements are idempotent: two processes starting at once write the same rows.
Topic lists are compared as their stored JSON text, so a start reads one row per distinct
combination of topics, not one per reader.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable

from sqlalchemy import JSON, Engine, bindparam, inspect, text
from sqlalchemy.exc import OperationalError
from sqlmodel import Session

from newsletter.config import Settings
from newsletter.db import transaction
from newsletter.topics.tagger import guess_topics
from newsletter.topics.taxonomy import Taxonomy, TaxonomyError, install

log = logging.getLogger(__name__)

# Readers who may still be mailed or may still confirm: a reader who left keeps their row
# (for their export and the statistics) but no longer holds a topic in place.
_READERS = ("SELECT CAST(p.topics AS TEXT) AS topics, COUNT(*) AS readers "
            "FROM preferences p JOIN subscribers s ON s.id = p.subscriber_id "
            "WHERE s.status IN ('pending', 'confirmed') GROUP BY CAST(p.topics AS TEXT)")


def _slugs(stored: str | None) -> list[str]:
    try:
        value = json.loads(stored or "[]")
    except ValueError:
        return []
    return [str(v) for v in value] if isinstance(value, list) else []


def readers_per_topic(session: Session,
                      topic_of: Callable[[str], str | None] = lambda slug: slug
                      ) -> Counter[str]:
    """How many readers chose each topic, each reader once per topic: by stored slug, or
    by what `topic_of` makes of it (`Taxonomy.resolve`: an old slug counts as the topic it
    became, an unknown one not at all)."""
    counts: Counter[str] = Counter()
    for row in session.execute(text(_READERS)).mappings():
        for topic in {topic_of(slug) for slug in _slugs(row["topics"])} - {None}:
            counts[topic] += row["readers"]
    return counts


def orphaned(taxonomy: Taxonomy, chosen: Counter[str]) -> dict[str, int]:
    """Slugs readers chose that the taxonomy no longer names, with how many chose each."""
    return {slug: n for slug, n in sorted(chosen.items()) if taxonomy.resolve(slug) is None}


def refusal(taxonomy: Taxonomy, gone: dict[str, int]) -> str:
    lines = [f"TAXONOMY_FILE {taxonomy.origin} removes topics that readers still use:"]
    lines += [f"  {slug!r}: {n} reader{'s' if n != 1 else ''}" for slug, n in gone.items()]
    example = next(iter(gone))
    lines.append("Put each back, or say what it becomes: add its slug to the renamed_from "
                 f"of the topic that carries it on (renamed_from = [\"{example}\"]).")
    return "\n".join(lines)


def check(session: Session, taxonomy: Taxonomy) -> None:
    """Raise TaxonomyError if readers still use a topic the file removed."""
    gone = orphaned(taxonomy, readers_per_topic(session))
    if gone:
        raise TaxonomyError(refusal(taxonomy, gone))


def adopt_renames(session: Session, taxonomy: Taxonomy) -> int:
    """Rewrite old slugs in preferences and cards; return how many rows changed."""
    changed = 0
    for table in ("preferences", "cards"):
        combos = session.execute(
            text(f"SELECT DISTINCT CAST(topics AS TEXT) AS topics FROM {table}")).scalars()
        for stored in list(combos):
            slugs = _slugs(stored)
            fresh = taxonomy.known(slugs)
            if fresh == slugs:
                continue
            if table == "cards" and not fresh:
                changed += _file_again(session, taxonomy, stored)
                continue
            if not fresh:  # a reader's only topics were all removed: `check` refused that
                continue
            result = session.execute(
                text(f"UPDATE {table} SET topics = :fresh WHERE CAST(topics AS TEXT) = :old"
                     ).bindparams(bindparam("fresh", type_=JSON)),
                {"fresh": fresh, "old": stored})
            changed += result.rowcount or 0
    return changed


def _file_again(session: Session, taxonomy: Taxonomy, stored: str) -> int:
    rows = session.execute(
        text("SELECT c.id, p.title, p.abstract, CAST(p.categories AS TEXT) AS categories "
             "FROM cards c JOIN papers p ON p.id = c.paper_id "
             "WHERE CAST(c.topics AS TEXT) = :old"), {"old": stored}).mappings().all()
    for row in rows:
        topics = guess_topics(row["title"], row["abstract"], _slugs(row["categories"]),
                              taxonomy)
        session.execute(text("UPDATE cards SET topics = :topics WHERE id = :id"
                             ).bindparams(bindparam("topics", type_=JSON)),
                        {"topics": topics, "id": row["id"]})
    return len(rows)


def prepare(engine: Engine, settings: Settings) -> Taxonomy:
    """The start of a process: its taxonomy read and installed, checked against the rows,
    renames adopted. A database not migrated yet holds no topics: nothing to check."""
    taxonomy = install(settings)
    try:
        if not inspect(engine).has_table("preferences"):
            return taxonomy
        with transaction(engine) as session:
            check(session, taxonomy)
            changed = adopt_renames(session, taxonomy)
    except OperationalError as exc:
        # A database away at start: the site still starts (its health check says the
        # database is down), and the next start checks the topics.
        log.warning("topics: not checked against the database (%s)", exc.orig)
        return taxonomy
    if changed:
        log.warning("topics: %d stored rows follow renamed or removed topics of %s",
                    changed, taxonomy.origin)
    return taxonomy
