"""When a reader's digest is due, with a fake clock: beat's 15-minute ticks over days that
cross daylight saving time, a reader who changes zone mid-week, and ticks a stopped worker
missed. Each must neither skip a date nor send one twice."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta

import pytest

from newsletter.delivery.due import CATCH_UP, Slot, due, send_instant

TICK = timedelta(minutes=15)


def ticks(start: datetime, end: datetime, *, down: tuple[datetime, datetime] | None = None
          ) -> list[datetime]:
    """Beat's ticks from start to end, but none while the worker is down."""
    found, at = [], start
    while at <= end:
        if down is None or not down[0] <= at < down[1]:
            found.append(at)
        at += TICK
    return found


def run(slot_at: Callable[[datetime], Slot], times: list[datetime]
        ) -> dict[date, datetime]:
    """What the ledger would hold: each date a reader got, and the tick that planned it.
    A date already planned is not planned again (the unique row), and the reader, confirmed
    as the first tick ran, is due only for instants after that."""
    planned: dict[date, datetime] = {}
    for now in times:
        for d in due(slot_at(now), now):
            if d.at >= times[0]:
                planned.setdefault(d.day, now)
    return planned


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def every_day(first: date, last: date) -> list[date]:
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def test_a_daily_reader_gets_each_date_once_within_one_tick_of_their_hour() -> None:
    slot = Slot("daily", "America/Montreal", 7)
    planned = run(lambda _: slot, ticks(utc(2026, 12, 1), utc(2026, 12, 8)))
    assert sorted(planned) == every_day(date(2026, 12, 1), date(2026, 12, 7))
    for day, tick in planned.items():
        # 07:00 in Montreal is 12:00 UTC in winter: planned at that very tick.
        assert tick == send_instant("America/Montreal", day, 7) == utc(day.year, day.month,
                                                                       day.day, 12)


@pytest.mark.parametrize(("hour", "days"), [
    (7, (date(2026, 3, 7), date(2026, 3, 10))),  # an hour every day has
    (2, (date(2026, 3, 7), date(2026, 3, 10))),  # 02:00 does not exist on 8 March
    (1, (date(2026, 10, 31), date(2026, 11, 3))),  # 01:00 happens twice on 1 November
])
def test_daylight_saving_time_neither_skips_nor_repeats_a_date(
        hour: int, days: tuple[date, date]) -> None:
    slot = Slot("daily", "America/Montreal", hour)
    first, last = days
    planned = run(lambda _: slot, ticks(utc(first.year, first.month, first.day),
                                        utc(last.year, last.month, last.day) + timedelta(1)))
    assert sorted(planned) == every_day(first, last)
    # The local hour is kept across the change: 07:00 is 12:00 UTC before, 11:00 after.
    if hour == 7:
        assert planned[date(2026, 3, 7)].hour == 12
        assert planned[date(2026, 3, 9)].hour == 11
    # The hour that does not exist is read with the offset before the change.
    if hour == 2:
        assert send_instant("America/Montreal", date(2026, 3, 8), 2) == utc(2026, 3, 8, 7)
    # The hour that happens twice is its first occurrence (still daylight time).
    if hour == 1:
        assert send_instant("America/Montreal", date(2026, 11, 1), 1) == utc(2026, 11, 1, 5)


@pytest.mark.parametrize(("before", "after"), [
    ("America/Montreal", "Asia/Tokyo"),
    ("Asia/Tokyo", "America/Montreal"),
    ("Pacific/Kiritimati", "Pacific/Pago_Pago"),  # UTC+14 to UTC-11: a whole day back
])
def test_a_reader_who_changes_zone_mid_week_gets_no_date_twice_and_misses_none_after(
        before: str, after: str) -> None:
    switch = utc(2026, 12, 3, 17)
    planned = run(lambda now: Slot("daily", before if now < switch else after, 7),
                  ticks(utc(2026, 12, 1), utc(2026, 12, 8)))
    days = sorted(planned)
    assert len(days) == len(set(days))
    # Once the new zone has had its first digest, every later date comes, one a day.
    first_after = min(day for day, tick in planned.items() if tick >= switch)
    assert [d for d in days if d >= first_after] == every_day(first_after, days[-1])
    # At most one date is left behind by a zone whose dates run behind the old one's.
    assert len(every_day(days[0], days[-1])) - len(days) <= 1


def test_ticks_a_stopped_worker_missed_are_made_up_at_the_next_one() -> None:
    slot = Slot("daily", "UTC", 7)
    # Down from 06:00 to 20:00 on 2 December: that day's digest goes at 20:00.
    planned = run(lambda _: slot, ticks(utc(2026, 12, 1), utc(2026, 12, 5),
                                        down=(utc(2026, 12, 2, 6), utc(2026, 12, 2, 20))))
    assert sorted(planned) == every_day(date(2026, 12, 1), date(2026, 12, 4))
    assert planned[date(2026, 12, 2)] == utc(2026, 12, 2, 20)
    # Down for 30 hours: both dates at the first tick after, each its own edition.
    planned = run(lambda _: slot, ticks(utc(2026, 12, 1), utc(2026, 12, 5),
                                        down=(utc(2026, 12, 2, 6), utc(2026, 12, 3, 12))))
    assert sorted(planned) == every_day(date(2026, 12, 1), date(2026, 12, 4))
    assert planned[date(2026, 12, 2)] == planned[date(2026, 12, 3)] == utc(2026, 12, 3, 12)
    # Down for longer than CATCH_UP: what is older than that is not sent as a backlog.
    planned = run(lambda _: slot, ticks(utc(2026, 12, 1), utc(2026, 12, 6),
                                        down=(utc(2026, 12, 2, 6), utc(2026, 12, 4, 12))))
    assert date(2026, 12, 2) not in planned and timedelta(hours=53) > CATCH_UP
    assert {date(2026, 12, 3), date(2026, 12, 4)} <= set(planned)


def test_a_weekly_reader_gets_their_weekday_once_a_week() -> None:
    friday = Slot("weekly", "Europe/Paris", 18, weekday=4)
    planned = run(lambda _: friday, ticks(utc(2026, 10, 1), utc(2026, 11, 1)))
    assert sorted(planned) == [date(2026, 10, d) for d in (2, 9, 16, 23, 30)]
    # 18:00 in Paris: 16:00 UTC in summer time, 17:00 after 25 October.
    assert planned[date(2026, 10, 23)] == utc(2026, 10, 23, 16)
    assert planned[date(2026, 10, 30)] == utc(2026, 10, 30, 17)


def test_nothing_is_due_before_the_hour() -> None:
    slot = Slot("daily", "Asia/Kolkata", 7)  # UTC+05:30: 01:30 UTC
    assert date(2026, 12, 7) in [d.day for d in due(slot, utc(2026, 12, 7, 1, 30))]
    assert date(2026, 12, 7) not in [d.day for d in due(slot, utc(2026, 12, 7, 1, 29))]
