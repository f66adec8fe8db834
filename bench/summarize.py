"""Card-writing benchmark: 500 papers through a local OpenAI-compatible server that takes
300 ms per call, with the concurrency limit (LLM_CONCURRENCY) against one call at a time,
in the same run, each into a fresh SQLite file. Also prints tokens per paper from the
prompt and what a day of such papers costs at the configured model's prices.

With `--languages`, each database also holds `--readers` confirmed readers per language
(and as many English ones), and the sweep translates every card into the languages in
use: the run checks that the LLM calls made are exactly papers x (1 + languages in use),
however many readers there are, and prints tokens and cost per language.

    .venv/bin/python -m bench.summarize [--papers 500] [--latency 0.3] [--concurrency 16]
        [--sequential-papers N]   (one-at-a-time on the first N papers only, extrapolated)
        [--languages fr,de,es,zh] [--readers 50]
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
from newsletter.readers.subscriber import languages_in_use
from newsletter.readers.tables import Preferences, Subscriber
from tests.support.openai_server import Call, OpenAIServer, good_card, good_translation

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


def fresh_database(folder: Path, name: str, papers: list[PaperEntry],
                   languages: tuple[str, ...] = (), readers: int = 0) -> str:
    url = f"sqlite:///{folder / name}"
    engine = db.make_engine(url)
    db.upgrade(engine)
    with db.transaction(engine) as session:
        store_entries(session, papers)
        for language in ("en", *languages):
            for i in range(readers):
                subscriber = Subscriber(email=f"{language}{i}@bench.example", status="confirmed")
                session.add(subscriber)
                session.flush()
                session.add(Preferences(subscriber_id=subscriber.id, topics=["llm"],
                                        language=None if language == "en" else language))
    engine.dispose()
    return url


def timed_run(url: str, server: OpenAIServer, concurrency: int,
              offered: tuple[str, ...]) -> tuple[float, SummarizeReport, list[str]]:
    settings = Settings(database_url=url, openai_api_key="bench-key",
                        openai_base_url=server.base_url, openai_model="gpt-4o-mini",
                        llm_concurrency=concurrency, llm_timeout=30, card_languages=offered)
    engine = db.make_engine(url)
    started = time.perf_counter()
    # As the CLI and the Celery task do: the languages in use, read once per sweep.
    with db.transaction(engine) as session:
        languages = languages_in_use(session, settings.card_languages)
    report = summarize_pending(engine, settings, languages=languages)
    elapsed = time.perf_counter() - started
    engine.dispose()
    translated = report.translations
    if report.written != report.pending or (
            translated is not None and translated.written != translated.pending):
        raise SystemExit(f"benchmark run failed: {' / '.join(report.lines())}")
    return elapsed, report, languages


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--papers", type=int, default=500)
    parser.add_argument("--latency", type=float, default=0.3, help="seconds per call")
    parser.add_argument("--concurrency", type=int, default=Settings().llm_concurrency)
    parser.add_argument("--sequential-papers", type=int, default=None,
                        help="run one-at-a-time on this many papers and extrapolate")
    parser.add_argument("--languages", default="",
                        help="comma-separated languages readers use beyond English, "
                             "e.g. fr,de,es,zh")
    parser.add_argument("--readers", type=int, default=50,
                        help="confirmed readers per language (English included)")
    args = parser.parse_args()
    sequential_n = min(args.sequential_papers or args.papers, args.papers)
    languages = tuple(code.strip() for code in args.languages.split(",") if code.strip())
    offered = ("en", *languages)

    def script(call: Call):  # type: ignore[no-untyped-def]
        return good_card(call, delay=args.latency)

    def translate(call: Call):  # type: ignore[no-untyped-def]
        return good_translation(call, delay=args.latency)

    papers = synthetic_day(args.papers)
    readers = args.readers if languages else 0
    print(f"card benchmark: {args.papers} papers, {args.latency * 1000:.0f} ms per call, "
          f"languages {', '.join(offered)}, {readers} readers per language, "
          f"Python {platform.python_version()}, {os.cpu_count()} cores, "
          f"{platform.machine()} {platform.system()}")
    with tempfile.TemporaryDirectory() as tmp, OpenAIServer(
            script, api_key="bench-key", translate_script=translate) as srv:
        folder = Path(tmp)
        concurrent_url = fresh_database(folder, "concurrent.db", papers, languages, readers)
        sequential_url = fresh_database(folder, "sequential.db", papers[:sequential_n],
                                        languages, readers)

        fast, report, in_use = timed_run(concurrent_url, srv, args.concurrency, offered)
        calls = len(srv.calls)
        slow, _, _ = timed_run(sequential_url, srv, 1, offered)
        sequential_calls = len(srv.calls) - calls

    # Cost grows with papers x languages in use, never with readers: check it on the calls
    # the server actually answered.
    per_paper_calls = 1 + len(in_use)
    expected = args.papers * per_paper_calls
    print(f"LLM calls (concurrent run): {calls} == {args.papers} papers x (1 + "
          f"{len(in_use)} languages in use) = {expected}: {calls == expected}; "
          f"{readers * len(offered)} readers")
    if calls != expected or sequential_calls != sequential_n * per_paper_calls:
        raise SystemExit("calls are not papers x (1 + languages in use)")

    slow_full = slow * args.papers / sequential_n
    cards_cost = cost_usd(price_of("gpt-4o-mini"), report.input_tokens, report.output_tokens) \
        or 0.0
    note = "" if sequential_n == args.papers else \
        f" (measured on {sequential_n} papers, scaled to {args.papers})"
    print(f"\n| run | papers | LLM calls | wall time | papers/s |\n|---|---|---|---|---|\n"
          f"| concurrency {args.concurrency} | {report.written} | {calls} | {fast:.1f} s | "
          f"{report.written / fast:.1f} |\n"
          f"| one at a time | {sequential_n} | {sequential_calls} | {slow_full:.1f} s{note} | "
          f"{sequential_n / slow:.1f} |\n")
    print(f"speed-up: {slow_full / fast:.1f}x (target >= 8x)")
    print(f"cards: {report.input_tokens / report.written:.0f} input (prompt) + "
          f"{report.output_tokens / report.written:.0f} output tokens per paper (estimated by "
          f"the local server as characters / 4); ${cards_cost:.3f} for these "
          f"{report.written} cards at gpt-4o-mini prices "
          f"(${cards_cost / report.written * 1000:.2f} per 1,000 papers)")
    translated = report.translations
    if translated is not None:
        for language in in_use:
            spend = translated.by_language[language]
            cost = spend.cost_usd or 0.0
            print(f"translations {language}: {spend.written} written, "
                  f"{spend.input_tokens / spend.written:.0f} input + "
                  f"{spend.output_tokens / spend.written:.0f} output tokens per paper, "
                  f"${cost:.3f} (${cost / spend.written * 1000:.2f} per 1,000 papers)")
        total = cards_cost + (translated.cost_usd or 0.0)
        print(f"all {calls} calls: ${total:.3f}; translating per reader instead would have "
              f"taken {args.papers} x {readers * len(in_use)} readers = "
              f"{args.papers * readers * len(in_use)} translation calls, not "
              f"{translated.written}")


if __name__ == "__main__":
    main()
