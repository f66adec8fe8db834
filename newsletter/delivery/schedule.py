"""The scheduled send: at every tick, the readers whose hour has come get their digest.

`newsletter send --due` (and beat's `paperwire.send_due`, every 15 minutes) finds the
slots in use (`due.Slot`: readers who share a frequency, a time zone, an hour and a
weekday) and plans each slot whose instant came since the previous tick (`SendTick`) into
the edition of its local date, in one set-based statement: only readers confirmed before
the instant, and only those without a row in that edition yet (the ledger's unique row).
A tick that did not run is made up by the next, whose "since" is then older (at most
`due.CATCH_UP`). Readers whose send time changed since the previous tick are looked at
on their own, over the whole catch-up window: one who moved to a zone whose hour has
already come gets that day's digest at the next tick, not never. What is open in the
editions due then goes out as any send does, in chunks that one process or many claim
(`send.send_chunks`, `deliver`).

A tick's cost grows with the slots that came due (a handful) and the readers who changed,
not with readers: 100,000 readers over 24 zones cost about 100 planning statements a day.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfoNotFoundError

from sqlalchemy import DateTime, Engine, bindparam, text
from sqlmodel import Field, Session, SQLModel, select

from newsletter.config import Settings
from newsletter.delivery.due import CATCH_UP, Due, Slot, due
from newsletter.delivery.edition import (
    audience_of,
    chunks_of,
    freeze_most_read,
    prepare_edition,
)
from newsletter.delivery.journal import settle_abandoned
from newsletter.delivery.ledger import (
    MAILABLE,
    PLAN_ORDER,
    DigestEdition,
    open_deliveries,
    open_edition,
    utcnow,
)
from newsletter.delivery.most_read import Audience
from newsletter.delivery.send import Progress, SendReport, deliver_in_worker, send_chunks
from newsletter.mail.registry import batch_sender_for
from newsletter.mail.senders import BatchSender
from newsletter.readers.reader_input import WEEKDAYS

log = logging.getLogger(__name__)

# The editions a tick looks at for rows left open (a stopped send's): those of the dates a
# tick can still catch up, and the local dates ahead of UTC.
RECENT = timedelta(days=3)


@dataclass(frozen=True)
class Defaults:
    """What a reader who chose nothing gets: the operator's zone, hour and weekday."""

    time_zone: str
    hour: int
    weekday: int

    @classmethod
    def of(cls, settings: Settings) -> Defaults:
        return cls(settings.default_time_zone, settings.default_send_hour,
                   WEEKDAYS.index(settings.default_weekday))

    def params(self) -> dict[str, object]:
        return {"default_zone": self.time_zone, "default_hour": self.hour,
                "default_weekday": self.weekday}


# The slots readers are in, read from the send-time index alone (a slot of readers who are
# not mailable costs one lookup that finds nobody).
_SLOT_OF = """
    SELECT DISTINCT p.frequency, COALESCE(p.time_zone, :default_zone),
           COALESCE(p.send_hour, :default_hour),
           CASE WHEN p.frequency = 'weekly' THEN COALESCE(p.send_weekday, :default_weekday)
           END
    FROM preferences p
"""
_SLOTS = text(_SLOT_OF)

# The readers of one slot due for one edition, by frequency, zone, hour (and weekday):
# written so the index on (time_zone, send_hour) finds a slot's readers without reading
# everyone's preferences (NULL is the operator's default), and read from the preferences
# first (SQLite takes CROSS JOIN as that order; Postgres plans as it sees fit).
_IN_SLOT = f"""
    FROM preferences p CROSS JOIN subscribers s
    WHERE s.id = p.subscriber_id AND {MAILABLE} AND p.frequency = :frequency
      AND (p.time_zone = :zone OR (p.time_zone IS NULL AND :zone = :default_zone))
      AND (p.send_hour = :hour OR (p.send_hour IS NULL AND :hour = :default_hour))
      AND (p.frequency = 'daily' OR COALESCE(p.send_weekday, :default_weekday) = :weekday)
      AND COALESCE(s.confirmed_at, :at) <= :at AND p.updated_at > :changed_since
      AND NOT EXISTS (SELECT 1 FROM deliveries d JOIN editions e ON e.id = d.edition_id
                      WHERE e.frequency = :frequency AND e.day = :day
                        AND d.subscriber_id = s.id)
"""
# Instants with their zone: Postgres reads a column stored without one in the session's
# zone, as it was written, and SQLite compares UTC wall times.
_TYPED = (bindparam("at", type_=DateTime(timezone=True)),
          bindparam("changed_since", type_=DateTime(timezone=True)))
_ANY_DUE = text(f"SELECT 1 {_IN_SLOT} LIMIT 1").bindparams(*_TYPED)
_PLAN_SLOT = text(f"""
    INSERT INTO deliveries (edition_id, subscriber_id, status, attempts, paper_count, more_count)
    SELECT :edition_id, s.id, 'pending', 0, 0, 0
    {_IN_SLOT}
    ORDER BY {PLAN_ORDER}
""").bindparams(*_TYPED)
# The slots of readers whose send time (or any preference) changed since a tick.
_CHANGED = text(f"{_SLOT_OF} WHERE p.updated_at > :changed_since").bindparams(_TYPED[1])
_EVER = datetime(1970, 1, 1, tzinfo=UTC)


class SendTick(SQLModel, table=True):
    """The instant up to which `send --due` has planned: one row."""

    __tablename__ = "send_ticks"

    id: int = Field(default=1, primary_key=True)
    planned_until: datetime = Field(sa_type=DateTime(timezone=True))


def slots(session: Session, defaults: Defaults, changed_since: datetime | None = None
          ) -> list[Slot]:
    """The slots readers are in; with `changed_since`, those of readers whose choices
    changed since then."""
    if changed_since is None:
        rows = session.execute(_SLOTS, defaults.params())
    else:
        rows = session.execute(_CHANGED, {**defaults.params(), "changed_since": changed_since})
    return sorted(Slot(frequency, zone, int(hour), None if weekday is None else int(weekday))
                  for frequency, zone, hour, weekday in rows)


@dataclass
class DuePlan:
    """What a tick planned: rows per edition, and the rows to send by edition (those just
    planned, and any a stopped send left open), read once."""

    planned: dict[int, int] = field(default_factory=dict)
    open: dict[int, list[int]] = field(default_factory=dict)

    @property
    def editions(self) -> list[int]:
        return list(self.open)

    @property
    def total(self) -> int:
        return sum(self.planned.values())


def _last(tick: SendTick) -> datetime:
    # SQLite hands the instant back without its zone.
    at = tick.planned_until
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def _since(tick: SendTick | None, now: datetime) -> datetime:
    """Where this tick takes over: the previous tick's instant, unless it is older than a
    tick can catch up, or not before `now` (a tick for an earlier instant, by hand)."""
    last = _last(tick) if tick else None
    if last is None or not now - CATCH_UP <= last < now:
        return now - CATCH_UP
    return last


def _plan(session: Session, slot: Slot, found: Due, defaults: Defaults,
          changed_since: datetime, audience: Audience | None, result: DuePlan) -> None:
    params = {**defaults.params(), "frequency": slot.frequency, "zone": slot.time_zone,
              "hour": slot.hour, "weekday": -1 if slot.weekday is None else slot.weekday,
              "day": found.day, "at": found.at, "changed_since": changed_since}
    if session.execute(_ANY_DUE, params).first() is None:
        return
    edition = open_edition(session, slot.frequency, found.day)
    assert edition.id is not None
    rows = session.execute(_PLAN_SLOT, {**params, "edition_id": edition.id})
    result.planned[edition.id] = result.planned.get(edition.id, 0) + (rows.rowcount or 0)
    freeze_most_read(session, edition, audience)
    session.commit()


def _due(slot: Slot, now: datetime, catch_up: timedelta) -> list[Due]:
    """`due`, but a zone this machine's tz database does not know (a row written by hand,
    a name dropped by a tzdata upgrade) costs its own readers their digest, said in the
    log, and nobody else's."""
    try:
        return due(slot, now, catch_up)
    except (ZoneInfoNotFoundError, ValueError):
        log.error("time zone %r is unknown: readers of %s skipped", slot.time_zone, slot)
        return []


def plan_due(engine: Engine, now: datetime, defaults: Defaults,
             audience: Audience | None = None) -> DuePlan:
    """Plan the readers due at `now` into their editions; which editions then have rows
    open (those just planned, and any a stopped send left, of the days a tick can still
    catch up)."""
    now = now.astimezone(UTC)  # SQLite compares the wall times of UTC instants
    result = DuePlan()
    with Session(engine) as session:
        tick = session.get(SendTick, 1)
        since = _since(tick, now)
        for slot in slots(session, defaults):
            for found in _due(slot, now, now - since):
                _plan(session, slot, found, defaults, _EVER, audience, result)
        for slot in slots(session, defaults, changed_since=since):
            for found in _due(slot, now, CATCH_UP):
                _plan(session, slot, found, defaults, since, audience, result)
        if tick is None:
            session.add(SendTick(id=1, planned_until=now))
        elif _last(tick) < now:
            tick.planned_until = now
        session.commit()
        recent = session.exec(select(DigestEdition.id).where(
            DigestEdition.day >= (now - RECENT).date()).order_by(DigestEdition.id)).all()
        for edition_id in recent:
            if edition_id is not None and (rows := open_deliveries(session, edition_id, now)):
                result.open[edition_id] = rows
    return result


def send_due(engine: Engine, settings: Settings, now: datetime | None = None, *,
             sender: BatchSender | None = None, workers: int = 1,
             pool: Executor | None = None, progress: Progress = lambda _: None,
             clock: Callable[[], datetime] = utcnow) -> list[SendReport]:
    """Every digest due at `now` (default: the clock), each reader once per edition: what
    `newsletter send --due` runs. `pool`: `workers` processes kept across ticks
    (`send.worker_pool`), as Celery's mail workers are."""
    at = now or clock()
    local = sender or batch_sender_for(settings)
    local.prepare()
    journaled = settle_abandoned(engine, settings.send_journal)
    plan = plan_due(engine, at, Defaults.of(settings), audience_of(settings))
    progress(f"due at {at:%Y-%m-%d %H:%M} UTC: {plan.total} readers planned, "
             f"{len(plan.editions)} editions to send")
    work = []
    for edition_id, rows in plan.open.items():
        report = SendReport(edition_id=edition_id, planned=plan.planned.get(edition_id, 0),
                            journaled=journaled)
        journaled = 0
        work.append((report, chunks_of(rows, settings.delivery_chunk_size, workers)))
    send_chunks(engine, settings, work, local=local, workers=workers, pool=pool,
                progress=progress, now=clock)
    return [report for report, _ in work]


# ------------------------------------------------------------------ scheduled (workers)


def _configured() -> tuple[Settings, Engine]:
    from newsletter.config import settings as current_settings
    from newsletter.db import engine_for

    settings = current_settings()
    # Checked (SendGrid: synced) once here, so the mail workers find the template current.
    batch_sender_for(settings).prepare()
    return settings, engine_for(settings.database_url)


def prepare_due_configured(now: datetime | None = None) -> list[tuple[int, list[list[int]]]]:
    """Beat's tick (task paperwire.send_due), first half: plan the readers whose hour has
    come; each edition with rows to send, and its chunks to fan out."""
    settings, engine = _configured()
    at = now or utcnow()
    journaled = settle_abandoned(engine, settings.send_journal)
    plan = plan_due(engine, at, Defaults.of(settings), audience_of(settings))
    fanned = [(edition_id, chunks_of(rows, settings.delivery_chunk_size))
              for edition_id, rows in plan.open.items()]
    log.info("due at %s: planned=%d editions=%s journaled=%d", at.isoformat(), plan.total,
             plan.editions, journaled)
    return fanned


def prepare_configured(frequency: str, day: date | None = None) -> tuple[int, list[list[int]]]:
    """A whole edition for everyone of a frequency (task paperwire.send_digests, as
    `newsletter send` does), first half: plan it, return its chunks to fan out."""
    settings, engine = _configured()
    journaled = settle_abandoned(engine, settings.send_journal)
    edition_id, planned, chunks = prepare_edition(engine, frequency, day or utcnow().date(),
                                                  chunk_size=settings.delivery_chunk_size,
                                                  audience=audience_of(settings))
    log.info("edition=%s frequency=%s planned=%d chunks=%d journaled=%d", edition_id, frequency,
             planned, len(chunks), journaled)
    return edition_id, chunks


def deliver_configured(edition_id: int, delivery_ids: Sequence[int]) -> SendReport:
    """Either job's second half: one chunk, on whichever worker takes it."""
    from newsletter.config import settings as current_settings

    return deliver_in_worker(current_settings(), edition_id, delivery_ids)
