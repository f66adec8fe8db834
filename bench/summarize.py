"""Card-writing benchmark: 500 papers through a local OpenAI-compatible server that takes
300 ms per call, with the concurrency limit (LLM_CONCURRENCY) against one call at a time,
in the same run, each into a fresh SQLite file. Also prints tokens per paper from the
prompt and what a day of such papers costs at the configured model's prices.

    .venv/bin/python -m bench.summarize [--papers 500] [--latency 0.3] [--concurrency 16]
        [--sequential-papers N]   (one-at-a-time on the first N papers only, extrapolated)
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import tempfile
import time
from pathlib import Path

from newsletter import db
from newsletter.cards.llm_writer import LLMWriter  # noqa: F401  (imported before the clock starts)
from newsletter.cards.price import cost_usd, price_of
from newsletter.cards.summarize import SummarizeReport, summarize_pending
from newsletter.config import Settings
from newsletter.ingest.paper import PaperEntry
from newsletter.ingest.parse import FeedError, parse_feed
from newsletter.ingest.store import store_entries
from tests.support.openai_server import Call, OpenAIServer, good_card

SAMPLES = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "arxiv"


def real_entries() -> list[PaperEntry]:
    entries: list[PaperEntry] = []
    for path in sorted(SAMPLES.glob("*.xml")):
        try:
            entries += parse_feed(path.read_bytes()).entries
        except FeedError:
            continue
    if not entries:
        raise SystemExit(f"no arXiv samples in {SAMPLES}")
    return entries


def synthetic_day(count: int) -> list[PaperEntry]:
    """`count` distinct papers made from the real samples' text (keys and titles varied)."""
    base = real_entries()
    day: list[PaperEntry] = []
    for i in range(count):
        entry = base[i % len(base)]
        day.append(dataclasses.replace(
            entry, key=f"2699.{i:05d}", arxiv_id=f"2699.{i:05d}", version=1,
            title=f"{entry.title} (variant {i})", announce_type="new",
        ))
    return day


def fresh_database(folder: Path, name: str, papers: list[PaperEntry]) -> str:
    url = f"sqlite:///{folder / name}"
    engine = db.make_engine(url)
    db.upgrade(engine)
    with db.transaction(engine) as session:
        store_entries(session, papers)
    engine.dispose()
    return url


def timed_run(url: str, server: OpenAIServer, concurrency: int) -> tuple[float, SummarizeReport]:
    settings = Settings(database_url=url, openai_api_key="bench-key",
                        openai_base_url=server.base_url, openai_model="gpt-4o-mini",
                        llm_concurrency=concurrency, llm_timeout=30)
    engine = db.make_engine(url)
    started = time.perf_counter()
    report = summarize_pending(engine, settings)
    elapsed = time.perf_counter() - started
    engine.dispose()
    if report.written != report.pending:
        raise SystemExit(f"benchmark run failed: {report.line()}")
    return elapsed, report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--papers", type=int, default=500)
    parser.add_argument("--latency", type=float, default=0.3, help="seconds per call")
    parser.add_argument("--concurrency", type=int, default=Settings().llm_concurrency)
    parser.add_argument("--sequential-papers", type=int, default=None,
                        help="run one-at-a-time on this many papers and extrapolate")
    args = parser.parse_args()
    sequential_n = min(args.sequential_papers or args.papers, args.papers)

    def script(call: Call):  # type: ignore[no-untyped-def]
        return good_card(call, delay=args.latency)

    papers = synthetic_day(args.papers)
    print(f"card benchmark: {args.papers} papers, {args.latency * 1000:.0f} ms per call, "
          f"Python {platform.python_version()}, {os.cpu_count()} cores, "
          f"{platform.machine()} {platform.system()}")
    with tempfile.TemporaryDirectory() as tmp, OpenAIServer(script, api_key="bench-key") as srv:
        folder = Path(tmp)
        concurrent_url = fresh_database(folder, "concurrent.db", papers)
        sequential_url = fresh_database(folder, "sequential.db", papers[:sequential_n])

        fast, report = timed_run(concurrent_url, srv, args.concurrency)
        slow, _ = timed_run(sequential_url, srv, 1)
        calls = len(srv.calls)

    slow_full = slow * args.papers / sequential_n
    per_paper_in = report.input_tokens / report.written
    per_paper_out = report.output_tokens / report.written
    price = price_of("gpt-4o-mini")
    day_cost = cost_usd(price, report.input_tokens, report.output_tokens) or 0.0
    note = "" if sequential_n == args.papers else \
        f" (measured on {sequential_n} papers, scaled to {args.papers})"
    print(f"\n| run | papers | wall time | papers/s |\n|---|---|---|---|\n"
          f"| concurrency {args.concurrency} | {report.written} | {fast:.1f} s | "
          f"{report.written / fast:.1f} |\n"
          f"| one at a time | {sequential_n} | {slow_full:.1f} s{note} | "
          f"{sequential_n / slow:.1f} |\n")
    print(f"speed-up: {slow_full / fast:.1f}x (target >= 8x); {calls} calls made")
    print(f"tokens per paper: {per_paper_in:.0f} input (prompt) + {per_paper_out:.0f} output "
          f"(estimated by the local server as characters / 4)")
    print(f"cost of these {report.written} cards at gpt-4o-mini prices: ${day_cost:.3f} "
          f"(${day_cost / report.written * 1000:.2f} per 1,000 papers)")


if __name__ == "__main__":
    main()
