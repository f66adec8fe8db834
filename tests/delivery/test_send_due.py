"""`newsletter send --due`, what beat runs every 15 minutes: each reader's digest at their
own hour in their own time zone, through the CLI on SQLite and Postgres, with the instant
given by `--now` as a fake clock."""

from __future__ import annotations

import email
import email.policy
import json
from datetime import UTC, datetime
from pathlib import Path

from click.testing import CliRunner, Result
from sqlalchemy import Engine, text
from sqlmodel import Session, select

from newsletter.cli import main
from newsletter.delivery import Delivery, DigestEdition
from tests.conftest import ARXIV_FIXTURES

DAY = "2026-04-27"  # a Monday, the fixture feeds' announcement day
READERS = {
    # address: (frequency, zone, hour, weekday); None: the operator's default (UTC, 7, mon)
    "tokyo@example.org": ("daily", "Asia/Tokyo", "7", None),  # 22:00 UTC the day before
    "default@example.org": ("daily", None, None, None),  # 07:00 UTC
    "montreal@example.org": ("daily", "America/Montreal", "7", None),  # 11:00 UTC (EDT)
    "paris@example.org": ("weekly", "Europe/Paris", "18", "mon"),  # 16:00 UTC (CEST)
}


def cli(database_url: str, outbox: Path, *args: str) -> Result:
    return CliRunner().invoke(main, list(args), env={
        "DATABASE_URL": database_url, "OUTBOX_DIR": str(outbox),
        "ARXIV_API_URL": "http://127.0.0.1:9/api/query"})


def add_readers(database_url: str, outbox: Path, engine: Engine) -> None:
    assert cli(database_url, outbox, "ingest", "--file",
               *map(str, sorted(ARXIV_FIXTURES.glob(f"rss_cs.*_{DAY}.xml")))).exit_code == 0
    assert cli(database_url, outbox, "summarize").exit_code == 0
    for address, (frequency, zone, hour, weekday) in READERS.items():
        args = ["subscribers", "add", address, "--topics", "llm,nlp,efficient-ml,rl,theory",
                "--frequency", frequency, "--confirmed"]
        for flag, value in (("--time-zone", zone), ("--hour", hour), ("--weekday", weekday)):
            if value is not None:
                args += [flag, value]
        added = cli(database_url, outbox, *args)
        assert added.exit_code == 0, added.output
    # They confirmed (and chose their hours) on the Sunday evening, before any had come.
    with engine.begin() as conn:
        conn.execute(text("UPDATE subscribers SET confirmed_at = :at"),
                     {"at": datetime(2026, 4, 26, 20, tzinfo=UTC)})
        conn.execute(text("UPDATE preferences SET updated_at = :at"),
                     {"at": datetime(2026, 4, 26, 20)})


def mailed(outbox: Path) -> list[str]:
    """Who the outbox's digests went to, in the order they were sent."""
    found = []
    for path in sorted(outbox.glob("*.eml"), key=lambda p: p.stat().st_mtime_ns):
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        found.append(str(message["To"]))
    return found


def test_each_reader_gets_their_digest_at_their_own_hour_once(
        database_url: str, engine: Engine, tmp_path: Path) -> None:
    outbox = tmp_path / "outbox"
    add_readers(database_url, outbox, engine)

    listed = json.loads(cli(database_url, outbox, "subscribers", "--json").stdout)
    when = {r["email"]: (r["time_zone"], r["hour"], r["weekday"]) for r in listed}
    assert when == {"tokyo@example.org": ("Asia/Tokyo", 7, None),
                    "default@example.org": ("UTC", 7, None),
                    "montreal@example.org": ("America/Montreal", 7, None),
                    "paris@example.org": ("Europe/Paris", 18, "mon")}

    def tick(at: str) -> list[str]:
        before = len(mailed(outbox))
        result = cli(database_url, outbox, "send", "--due", "--now", at)
        assert result.exit_code == 0, result.output
        return mailed(outbox)[before:]

    assert tick("2026-04-26T21:59:00Z") == []  # 06:59 in Tokyo
    assert tick("2026-04-26T22:00:00Z") == ["tokyo@example.org"]
    assert tick("2026-04-26T22:15:00Z") == []  # the next tick sends nobody twice
    assert tick("2026-04-27T07:00:00Z") == ["default@example.org"]
    assert tick("2026-04-27T10:59:00Z") == []
    assert tick("2026-04-27T11:00:00Z") == ["montreal@example.org"]
    assert tick("2026-04-27T16:00:00Z") == ["paris@example.org"]
    # Tokyo's next day came at 22:00: every paper of the window had reached them already,
    # so no mail, and the skip is recorded.
    assert tick("2026-04-28T06:45:00Z") == []
    assert mailed(outbox).count("tokyo@example.org") == 1

    with Session(engine) as session:
        editions = {(e.frequency, str(e.day)): e.id for e in session.exec(select(DigestEdition))}
        rows = session.exec(select(Delivery)).all()
    # Tokyo, the default reader and Montreal share the edition of their local date.
    daily = editions[("daily", DAY)]
    assert sorted(r.status for r in rows if r.edition_id == daily) == ["sent"] * 3
    assert [r.status for r in rows if r.edition_id == editions[("weekly", DAY)]] == ["sent"]
    assert [r.status for r in rows if r.edition_id == editions[("daily", "2026-04-28")]] \
        == ["skipped"]


def test_a_reader_confirmed_after_their_hour_waits_for_the_next_day(
        database_url: str, engine: Engine, tmp_path: Path) -> None:
    outbox = tmp_path / "outbox"
    add_readers(database_url, outbox, engine)
    with engine.begin() as conn:
        conn.execute(text("UPDATE subscribers SET confirmed_at = :at WHERE email = :email"),
                     {"at": datetime(2026, 4, 27, 9, tzinfo=UTC),
                      "email": "default@example.org"})
    result = cli(database_url, outbox, "send", "--due", "--now", "2026-04-27T09:30:00Z")
    assert result.exit_code == 0, result.output
    assert "default@example.org" not in mailed(outbox)  # 07:00 had passed when they joined
    assert "tokyo@example.org" in mailed(outbox)  # a tick missed since 22:00 is made up


def test_a_reader_who_moves_to_a_zone_whose_hour_has_come_gets_that_day_at_the_next_tick(
        database_url: str, engine: Engine, tmp_path: Path) -> None:
    outbox = tmp_path / "outbox"
    add_readers(database_url, outbox, engine)
    for at in ("2026-04-27T08:00:00Z", "2026-04-27T08:15:00Z"):
        assert cli(database_url, outbox, "send", "--due", "--now", at).exit_code == 0
    assert "montreal@example.org" not in mailed(outbox)  # 07:00 in Montreal is 11:00 UTC
    # At 08:20 UTC the Montreal reader moves to Tokyo, where 7 o'clock came at 22:00 UTC
    # the day before: the slot that ticked then does not tick again, the move is noticed.
    moved = cli(database_url, outbox, "subscribers", "add", "montreal@example.org",
                "--topics", "llm,nlp,efficient-ml,rl,theory", "--confirmed",
                "--time-zone", "Asia/Tokyo", "--hour", "7")
    assert moved.exit_code == 0, moved.output
    assert cli(database_url, outbox, "send", "--due", "--now",
               "2026-04-27T08:30:00Z").exit_code == 0
    assert mailed(outbox).count("montreal@example.org") == 1
    # Montreal's 07:00 comes and goes: the reader is not mailed the same day again.
    for at in ("2026-04-27T11:00:00Z", "2026-04-27T11:15:00Z"):
        assert cli(database_url, outbox, "send", "--due", "--now", at).exit_code == 0
    assert mailed(outbox).count("montreal@example.org") == 1


def test_one_reader_s_unknown_zone_costs_nobody_else_their_digest(
        database_url: str, engine: Engine, tmp_path: Path) -> None:
    outbox = tmp_path / "outbox"
    add_readers(database_url, outbox, engine)
    with engine.begin() as conn:  # written by hand, past the form's check
        conn.execute(text("UPDATE preferences SET time_zone = 'Mars/Olympus_Mons' WHERE "
                          "subscriber_id = (SELECT id FROM subscribers WHERE email = :e)"),
                     {"e": "montreal@example.org"})
    result = cli(database_url, outbox, "send", "--due", "--now", "2026-04-27T11:00:00Z")
    assert result.exit_code == 0, result.output
    assert sorted(mailed(outbox)) == ["default@example.org", "tokyo@example.org"]


def test_bad_send_times_are_refused_with_what_to_type(database_url: str, tmp_path: Path
                                                       ) -> None:
    outbox = tmp_path / "outbox"
    refused = cli(database_url, outbox, "subscribers", "add", "x@example.org", "--topics",
                  "llm", "--time-zone", "Mars/Olympus_Mons", "--hour", "25", "--weekday", "funday")
    assert refused.exit_code != 0
    for said in ("No time zone 'Mars/Olympus_Mons'; use a name such as Europe/Paris",
                 "Choose an hour from 0 to 23.", "Choose a weekday, Monday to Sunday."):
        assert said in refused.output
    assert json.loads(cli(database_url, outbox, "subscribers", "--json").stdout) == []
    for args in (["--due", "--now", "2026-04-27 07:00"], ["--now", "2026-04-27T07:00:00Z"],
                 ["--due", "--weekly"]):
        result = cli(database_url, outbox, "send", *args)
        assert result.exit_code == 2 and "Traceback" not in result.output, result.output


def test_a_tick_with_nothing_due_and_no_papers_sends_nothing(database_url: str, tmp_path: Path
                                                              ) -> None:
    outbox = tmp_path / "outbox"
    assert cli(database_url, outbox, "subscribers", "add", "x@example.org", "--topics", "llm",
               "--confirmed").exit_code == 0
    result = cli(database_url, outbox, "send", "--due", "--now", "2026-04-26T03:00:00Z")
    assert result.exit_code == 0, result.output
    assert "nothing due" in result.stdout and not mailed(outbox)


def test_a_ticks_readers_are_cut_so_that_no_process_idles_while_another_sends() -> None:
    from newsletter.delivery.edition import chunks_of

    sizes = {n: [len(c) for c in chunks_of(list(range(n)), 1000, workers=2)]
             for n in (1, 3, 1001, 2000, 4100)}
    assert sizes == {1: [1], 3: [2, 1], 1001: [501, 500], 2000: [1000, 1000],
                     4100: [684, 684, 684, 684, 684, 680]}
    # One process (or Celery's fan-out, whose workers are unknown here): full chunks.
    assert [len(c) for c in chunks_of(list(range(1500)), 1000)] == [1000, 500]
