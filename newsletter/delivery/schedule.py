"""The scheduled send: at every tick, the readers whose hour has come get their digest.

`newsletter send --due` (and beat's `paperwire.send_due`, every 15 minutes) finds the
slots in use (`due.Slot`: readers who share a frequency, a time zone, an hour and a
weekday), asks which of their editions are due (`due.due`), and plans each slot's readers
into the edition of their local date in one set-based statement: only readers confirmed
before the slot's instant, and only those without a row in that edition yet (the ledger's
unique row). What is open in the editions due then goes out as any send does, in chunks
that one process or many claim (`send.send_chunks`, `deliver`).

The cost of a tick grows with the slots in use (at most zones x hours x 2), not with
readers: a tick with nothing due reads one DISTINCT over the preferences and stops.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from sqlalchemy import DateTime, Engine, bindparam, text
from sqlmodel import Session, select

from newsletter.config import Settings
from newsletter.delivery.due import Slot, due
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
from newsletter.delivery.send import (
    Progress,
    SendReport,
    audience_of,
    chunks_of,
    deliver_in_worker,
    freeze_most_read,
    prepare_edition,
    send_chunks,
)
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
                   WEEKDAYS.index(settings.weekly_digest_day[:3]))

    def params(self) -> dict[str, object]:
        return {"default_zone": self.time_zone, "default_hour": self.hour,
                "default_weekday": self.weekday}


_SLOTS = text(f"""
    SELECT DISTINCT p.frequency, COALESCE(p.time_zone, :default_zone),
           COALESCE(p.send_hour, :default_hour),
           CASE WHEN p.frequency = 'weekly' THEN COALESCE(p.send_weekday, :default_weekday)
           END
    FROM subscribers s JOIN preferences p ON p.subscriber_id = s.id
    WHERE {MAILABLE}
""")

# The readers of one slot due for one edition, by frequency, zone, hour (and weekday).
_IN_SLOT = f"""
    FROM subscribers s JOIN preferences p ON p.subscriber_id = s.id
    WHERE {MAILABLE} AND p.frequency = :frequency
      AND COALESCE(p.time_zone, :default_zone) = :zone
      AND COALESCE(p.send_hour, :default_hour) = :hour
      AND (p.frequency = 'daily' OR COALESCE(p.send_weekday, :default_weekday) = :weekday)
      AND COALESCE(s.confirmed_at, :at) <= :at
      AND NOT EXISTS (SELECT 1 FROM deliveries d JOIN editions e ON e.id = d.edition_id
                      WHERE e.frequency = :frequency AND e.day = :day
                        AND d.subscriber_id = s.id)
"""
_AT = bindparam("at", type_=DateTime(timezone=True))
_ANY_DUE = text(f"SELECT 1 {_IN_SLOT} LIMIT 1").bindparams(_AT)
_PLAN_SLOT = text(f"""
    INSERT INTO deliveries (edition_id, subscriber_id, status, attempts, paper_count, more_count)
    SELECT :edition_id, s.id, 'pending', 0, 0, 0
    {_IN_SLOT}
    ORDER BY {PLAN_ORDER}
""").bindparams(_AT)


def slots(session: Session, defaults: Defaults) -> list[Slot]:
    """The slots mailable readers are in."""
    rows = session.execute(_SLOTS, defaults.params())
    return sorted(Slot(frequency, zone, int(hour), None if weekday is None else int(weekday))
                  for frequency, zone, hour, weekday in rows)


@dataclass
class DuePlan:
    """What a tick planned: rows per edition, and the editions with rows to send."""

    planned: dict[int, int] = field(default_factory=dict)
    editions: list[int] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.planned.values())


def plan_due(engine: Engine, now: datetime, defaults: Defaults,
             audience: Audience | None = None) -> DuePlan:
    """Plan every slot's due readers at `now` into their editions; which editions then
    have rows open (those just planned, and any a stopped send left, of the days a tick
    can still catch up)."""
    result = DuePlan()
    with Session(engine) as session:
        for slot in slots(session, defaults):
            for found in due(slot, now):
                params = {**defaults.params(), "frequency": slot.frequency,
                          "zone": slot.time_zone, "hour": slot.hour,
                          "weekday": -1 if slot.weekday is None else slot.weekday,
                          "day": found.day, "at": found.at}
                if session.execute(_ANY_DUE, params).first() is None:
                    continue
                edition = open_edition(session, slot.frequency, found.day)
                assert edition.id is not None
                rows = session.execute(_PLAN_SLOT, {**params, "edition_id": edition.id})
                result.planned[edition.id] = result.planned.get(edition.id, 0) + (
                    rows.rowcount or 0)
                freeze_most_read(session, edition, audience)
                session.commit()
        recent = session.exec(select(DigestEdition.id).where(
            DigestEdition.day >= (now - RECENT).date()).order_by(DigestEdition.id)).all()
        result.editions = [edition_id for edition_id in recent
                           if edition_id is not None and open_deliveries(session, edition_id, now)]
    return result


def send_due(engine: Engine, settings: Settings, now: datetime | None = None, *,
             sender: BatchSender | None = None, workers: int = 1,
             progress: Progress = lambda _: None,
             clock: Callable[[], datetime] = utcnow) -> list[SendReport]:
    """Every digest due at `now` (default: the clock), each reader once per edition: what
    `newsletter send --due` runs."""
    at = now or clock()
    local = sender or batch_sender_for(settings)
    local.prepare()
    journaled = settle_abandoned(engine, settings.send_journal)
    plan = plan_due(engine, at, Defaults.of(settings), audience_of(settings))
    progress(f"due at {at:%Y-%m-%d %H:%M} UTC: {plan.total} readers planned, "
             f"{len(plan.editions)} editions to send")
    reports = []
    for edition_id in plan.editions:
        with Session(engine) as session:
            chunks = chunks_of(open_deliveries(session, edition_id, at),
                               settings.delivery_chunk_size)
        report = SendReport(edition_id=edition_id, planned=plan.planned.get(edition_id, 0),
                            journaled=journaled)
        send_chunks(engine, settings, edition_id, chunks, report, local=local,
                    workers=workers, progress=progress, now=clock,
                    label=f"edition {edition_id}")
        reports.append(report)
        journaled = 0
    return reports


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
    fanned = []
    with Session(engine) as session:
        for edition_id in plan.editions:
            fanned.append((edition_id, chunks_of(open_deliveries(session, edition_id, at),
                                                 settings.delivery_chunk_size)))
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
