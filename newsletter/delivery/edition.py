"""An edition: opened and planned (one delivery row per reader, in one statement), its
weekly "most read this week" frozen as it is planned, and what is left to send cut into
chunks, one for each claim of a mail worker or process.

Planning is safe to run again: it plans only readers not planned yet and hands out only
rows not sent yet (pending ones, and those whose lease ran out).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date, datetime, timedelta

from sqlalchemy import Engine, select, update
from sqlmodel import Session

from newsletter.config import Settings
from newsletter.delivery.ledger import (
    DigestEdition,
    open_deliveries,
    open_edition,
    plan,
    utcnow,
)
from newsletter.delivery.most_read import Audience, most_read


def chunks_of(ids: Sequence[int], size: int, workers: int = 1) -> list[list[int]]:
    """`ids` in chunks of at most `size`; for `workers` processes, in a multiple of that
    many chunks of about equal size, so none of them idles while another sends the rest
    (1,001 readers for two processes: 501 and 500, not 1,000 and 1)."""
    step = size
    count = -(-len(ids) // size)
    if workers > 1 and len(ids) >= workers:
        count += -count % workers
        step = -(-len(ids) // count)
    return [list(ids[i:i + step]) for i in range(0, len(ids), step)]


def prepare_edition(
    engine: Engine, frequency: str, day: date, chunk_size: int = 1000,
    now: Callable[[], datetime] = utcnow, *, audience: Audience | None = None,
) -> tuple[int, int, list[list[int]]]:
    """Open the edition, plan its deliveries, and cut what is left to send into chunks.

    Returns (edition id, rows planned now, chunks of delivery ids). Safe to call again:
    it plans only subscribers not yet planned and hands out only rows not yet sent.
    `audience`: how many readers a paper of a weekly edition's "most read this week" needs
    (`audience_of(settings)`; the settings' defaults when not given).
    """
    with Session(engine) as session:
        edition = open_edition(session, frequency, day)
        planned = plan(session, edition)
        freeze_most_read(session, edition, audience)
        session.commit()
        assert edition.id is not None
        ids = open_deliveries(session, edition.id, now())
    return edition.id, planned, chunks_of(ids, chunk_size)


MostRead = tuple[tuple[str, str], ...]  # (key, title) of each paper, most read first


def audience_of(settings: Settings) -> Audience:
    """MOST_READ_MIN_READERS and MOST_READ_MIN_PERCENT."""
    return Audience.of(settings)


def _week_before(session: Session, day: date, audience: Audience | None) -> MostRead:
    found = most_read(session, day - timedelta(days=1), audience or Audience.default())
    return tuple((m.key, m.title) for m in found)


def freeze_most_read(session: Session, edition: DigestEdition,
                     audience: Audience | None = None) -> None:
    """Freeze a weekly edition's "most read this week" (the week before its day) as it is
    planned, so every chunk, sent whenever, and the digest viewed in the browser later
    show the list that was mailed, while clicks on the week's digests keep arriving."""
    if edition.frequency != "weekly" or edition.most_read is not None:
        return
    listed = [[key, title] for key, title in _week_before(session, edition.day, audience)]
    # Of two planners at once, the first one's list stands.
    session.execute(update(DigestEdition)
                    .where(DigestEdition.id == edition.id,  # type: ignore[arg-type]
                           DigestEdition.most_read.is_(None))  # type: ignore[union-attr]
                    .values(most_read=listed))
    session.refresh(edition)


def most_read_for(session: Session, settings: Settings, frequency: str, day: date) -> MostRead:
    """The "most read this week" the edition of this day shows: none for daily editions or
    without DIGEST_MOST_READ; else the list frozen when it was planned or, for an edition
    not planned yet (a preview) or planned before lists were frozen, the week's as it
    stands."""
    if frequency != "weekly" or not settings.digest_most_read:
        return ()
    frozen = session.execute(select(DigestEdition.most_read).where(
        DigestEdition.frequency == frequency, DigestEdition.day == day)).scalar()
    if frozen is not None:
        return tuple((key, title) for key, title in frozen)
    return _week_before(session, day, audience_of(settings))
