"""When each reader's digest is due: their hour, in their time zone, on their weekday. Pure.

A reader asks for their digest at an hour of their own day (DEFAULT_SEND_HOUR, 07:00,
unless they chose another) in an IANA time zone (DEFAULT_TIME_ZONE unless they chose one),
and a weekly reader on a weekday of theirs. Beat asks every 15 minutes what is due
(`newsletter send --due`). Readers who share a frequency, a zone, an hour and a weekday
share a `Slot`; a slot is due for the edition of a local date once the instant its hour
names on that date has come. An edition is still one per (frequency, date), so a reader
in Tokyo and one in Montreal whose local dates are both 7 December share the edition of
7 December, each at their own hour.

What keeps "once per reader per edition" whatever the clock does:
- the ledger's unique (reader, edition) row: a slot due at two ticks plans its readers once;
- a tick that did not run (a worker was down) is made up by the next one, for instants up
  to `CATCH_UP` old, so nothing is skipped; each missed date is its own edition, and the
  papers any digest carries are never carried again, so nothing is repeated;
- daylight saving time: an hour that does not exist on a spring-forward day (02:30) is
  read with the offset before the change, one that occurs twice on a fall-back day (01:30)
  at its first occurrence (`fold=0`), so each local date names exactly one instant;
- a reader who changes zone mid-week is due by their new zone from then on: a date they
  already had an edition for is not sent again, whichever zone named it;
- a reader is due only for instants after they were confirmed: one who confirms at 10:00
  gets their first digest at their hour the next day, as with a single send hour.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

# How old a missed instant may be and still be sent at the next tick: a worker down for a
# day misses nothing; one down for longer sends the days it can still catch, not a backlog.
CATCH_UP = timedelta(hours=36)


@dataclass(frozen=True, order=True)
class Slot:
    """Readers who get their digest at the same instants."""

    frequency: str  # "daily" or "weekly"
    time_zone: str  # an IANA name, e.g. "America/Montreal"
    hour: int  # 0-23, local
    weekday: int | None = None  # 0 = Monday; weekly slots only


@dataclass(frozen=True)
class Due:
    """A slot's edition that is due: the local date it is for and the instant it was due."""

    slot: Slot
    day: date
    at: datetime  # UTC


def send_instant(time_zone: str, day: date, hour: int) -> datetime:
    """The instant (UTC) that `hour` o'clock on `day` names in `time_zone`."""
    local = datetime.combine(day, time(hour), tzinfo=ZoneInfo(time_zone))
    return local.astimezone(UTC)


def due(slot: Slot, now: datetime, catch_up: timedelta = CATCH_UP) -> list[Due]:
    """The editions of this slot due at `now`: the local dates whose instant has come and
    is at most `catch_up` old, oldest first."""
    now = now.astimezone(UTC)
    today = now.astimezone(ZoneInfo(slot.time_zone)).date()
    found = []
    for back in range(catch_up // timedelta(days=1) + 2, -1, -1):
        day = today - timedelta(days=back)
        if slot.weekday is not None and day.weekday() != slot.weekday:
            continue
        at = send_instant(slot.time_zone, day, slot.hour)
        if now - catch_up < at <= now:
            found.append(Due(slot, day, at))
    return found
