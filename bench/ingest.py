"""Ingest benchmark: a synthetic 2,000-item listing (arXiv's cap) in the real RSS format.

Measures a first ingest and a re-ingest into a fresh SQLite file, wall time and peak
Python heap, beside a naive baseline (one query and one commit per item) in the same run.

    .venv/bin/python -m bench.ingest [--items 2000] [--database-url URL]
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event, text
from sqlmodel import Session, select

from newsletter import db
from newsletter.ingest.fetch import Fetched
from newsletter.ingest.paper import Paper, merge, new_row
from newsletter.ingest.parse import parse_feed
from newsletter.ingest.store import ingest_document

ITEM = """    <item>
      <title>{title}</title>
      <link>https://arxiv.org/abs/{id}</link>
      <description>arXiv:{id}v{v} Announce Type: {type}{space}
Abstract: {abstract}</description>
      <guid isPermaLink="false">oai:arXiv.org:{id}v{v}</guid>
{categories}
      <pubDate>Thu, 24 Sep 2026 00:00:00 -0400</pubDate>
      <arxiv:announce_type>{type}</arxiv:announce_type>
      <dc:rights>http://creativecommons.org/licenses/by/4.0/</dc:rights>
      <dc:creator>{authors}</dc:creator>
    </item>"""

HEAD = """<?xml version='1.0' encoding='UTF-8'?>
<rss xmlns:arxiv="http://arxiv.org/schemas/atom"
     xmlns:dc="http://purl.org/dc/elements/1.1/" version="2.0">
  <channel>
    <title>cs.LG, cs.CL, cs.CV, cs.AI, stat.ML updates on arXiv.org</title>
    <link>http://rss.arxiv.org/rss/cs.LG+cs.CL+cs.CV+cs.AI+stat.ML</link>
    <description>Synthetic benchmark listing.</description>
    <pubDate>Thu, 24 Sep 2026 00:00:00 -0400</pubDate>
    <skipDays><day>Saturday</day><day>Sunday</day></skipDays>
"""

CATS = ["cs.LG", "cs.CL", "cs.CV", "cs.AI", "stat.ML", "math.OC", "cs.RO", "q-bio.NC"]
WORDS = (
    "we propose a method for learning sparse representations with transformers that "
    "scale to long contexts while keeping memory linear in sequence length and we "
    "evaluate it on language vision and reinforcement learning benchmarks &amp; show "
    r"gains of $O(\sqrt{n})$ over strong baselines"
).split()


def synthetic_listing(items: int) -> bytes:
    """A listing shaped like arXiv's: ~70% new, 20% cross-lists, 10% replacements."""
    parts = [HEAD]
    for i in range(items):
        kind = "new" if i % 10 < 7 else ("cross" if i % 10 < 9 else "replace")
        words = [WORDS[(i * 7 + k) % len(WORDS)] for k in range(170)]
        cats = [CATS[(i + k) % len(CATS)] for k in range(1 + i % 4)]
        parts.append(ITEM.format(
            space=" ",  # arXiv leaves a space before the line break
            id=f"2609.{10000 + i}", v=1 if kind != "replace" else 2 + i % 3, type=kind,
            title=f"Paper {i}: {' '.join(words[:9]).capitalize()}",
            abstract=" ".join(words).capitalize() + ".",
            categories="\n".join(f"      <category>{c}</category>" for c in cats),
            authors=", ".join(f"Author {i}-{k} Lastname" for k in range(1 + i % 12)),
        ))
    parts.append("  </channel>\n</rss>\n")
    return "".join(parts).encode()


def count_writes(engine: Engine) -> dict[str, int]:
    counts = {"writes": 0}

    @event.listens_for(engine, "before_cursor_execute")
    def _count(_conn, _cursor, statement, _params, _context, executemany):  # type: ignore[no-untyped-def]
        head = statement.lstrip().upper()
        # The feed's own status row is written on every fetch by design; papers must not be.
        if head.startswith(("INSERT INTO PAPERS", "UPDATE PAPERS", "DELETE FROM PAPERS")):
            counts["writes"] += 1

    return counts


def ours(engine: Engine, content: bytes) -> None:
    fetched = Fetched(url="bench://listing", status=200, content=content, etag=None,
                      last_modified=None)
    report = ingest_document(engine, url="bench://listing", label="bench", kind="file",
                             fetched=fetched)
    assert report.state == "ok", report.error


def naive(engine: Engine, content: bytes) -> None:
    """One lookup and one commit per item: what a first version usually does."""
    for entry in parse_feed(content).entries:
        with Session(engine) as session:
            found = session.exec(select(Paper).where(Paper.key == entry.key)).first()
            if found is None:
                session.add(Paper(**new_row(entry)))
            else:
                changes = merge(found.model_dump(), entry)
                for name, value in changes.items():
                    setattr(found, name, value)
            session.commit()


def fresh_engine(folder: Path, name: str, url: str | None) -> Engine:
    engine = db.make_engine(url or f"sqlite:///{folder / name}.db")
    db.upgrade(engine)
    if url:
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM papers"))
            conn.execute(text("DELETE FROM feeds"))
    return engine


def measure(run: Callable[[], None]) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def traced_peak(run: Callable[[], None]) -> float:
    tracemalloc.start()
    run()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / 2**20


def bench(items: int, url: str | None) -> list[dict[str, Any]]:
    content = synthetic_listing(items)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for label, fn in (("paperwire (one transaction, bulk)", ours),
                          ("naive (one commit per item)", naive)):
            engine = fresh_engine(folder, label.split()[0], url)
            first = measure(lambda e=engine, f=fn: f(e, content))
            writes = count_writes(engine)
            again = measure(lambda e=engine, f=fn: f(e, content))
            with engine.connect() as conn:
                stored = conn.execute(text("SELECT count(*) FROM papers")).scalar()
            engine.dispose()
            # Peak heap of a first ingest, on its own fresh database.
            traced = fresh_engine(folder, label.split()[0] + "-traced", url)
            peak = traced_peak(lambda e=traced, f=fn: f(e, content))
            traced.dispose()
            rows.append({"label": label, "first": first, "again": again,
                         "writes": writes["writes"], "peak": peak, "stored": stored})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=2000)
    parser.add_argument("--database-url", default=None,
                        help="benchmark on this (emptied!) database instead of SQLite files")
    args = parser.parse_args()
    rows = bench(args.items, args.database_url)
    size = len(synthetic_listing(args.items)) / 2**20
    print(f"machine: {platform.machine()}, {platform.python_implementation()} "
          f"{platform.python_version()}, {__import__('os').cpu_count()} cores; "
          f"database: {args.database_url or 'SQLite file'}")
    print(f"listing: {args.items} items, {size:.1f} MiB\n")
    print("| ingest | first ingest | re-ingest | paper writes on re-ingest "
          "| peak Python heap | papers |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['label']} | {r['first']:.2f} s | {r['again']:.2f} s | {r['writes']} | "
              f"{r['peak']:.0f} MiB | {r['stored']} |")
    ours_row, naive_row = rows
    print(f"\nfirst ingest: {naive_row['first'] / ours_row['first']:.1f}x faster than naive; "
          f"re-ingest: {naive_row['again'] / ours_row['again']:.1f}x faster")


if __name__ == "__main__":
    main()
