"""The ledger's bulk paths, on SQLite and on a real Postgres server.

A request's readers are recorded together: their papers in one bulk write (COPY on
Postgres, executemany on SQLite), which keeps every byte of what it is given and is refused
whole when it would send a paper to a reader twice. Claims take exactly the rows they
move; "sent before" answers for exactly the papers asked about.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from newsletter import delivery
from newsletter.readers.tables import Preferences, Subscriber

DAY = date(2026, 9, 24)
NOW = datetime(2026, 9, 24, 7, 0, tzinfo=UTC)
READERS = 1500  # more than a chunk, so the bulk paths see more than one request's worth
# Feed and card text reaches the ledger as reasons: every character COPY must escape.
AWKWARD = "topic: LLMs\nkeyword: tab\there, back\\slash, \"quotes\", 'single', \\N, é ∑ 🙂"


@pytest.fixture
def planned(engine: Engine) -> list[tuple[int, int]]:
    """READERS confirmed daily readers planned into the day's edition: (delivery, subscriber)."""
    with Session(engine) as session:
        people = [Subscriber(email=f"r{i}@example.org", status="confirmed")
                  for i in range(READERS)]
        session.add_all(people)
        session.flush()
        session.add_all(Preferences(subscriber_id=p.id, topics=["llm"]) for p in people)
        edition = delivery.open_edition(session, "daily", DAY)
        assert delivery.plan(session, edition) == READERS
        session.commit()
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(text(
            "SELECT id, subscriber_id FROM deliveries ORDER BY id"))]


def sent_rows(engine: Engine) -> list[tuple[object, ...]]:
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(text(
            "SELECT delivery_id, subscriber_id, paper_id, position, score, reasons "
            "FROM sent_papers ORDER BY delivery_id, position"))]


def ten_papers_each(planned: list[tuple[int, int]], first_paper: int = 1,
                    reasons: str = AWKWARD) -> list[delivery.SentPaperRow]:
    return [(delivery_id, subscriber_id, first_paper + i, i, 90 - i, f"{reasons} #{i}")
            for delivery_id, subscriber_id in planned for i in range(10)]


def test_a_bulk_write_records_every_row_exactly_as_given(
    engine: Engine, planned: list[tuple[int, int]]
) -> None:
    rows = ten_papers_each(planned)
    with Session(engine) as session:
        delivery.write_sent_papers(session, rows)
        session.commit()
    assert sent_rows(engine) == rows
    assert len(rows) == 10 * READERS


def test_a_paper_sent_before_is_refused_and_nothing_of_that_write_is_kept(
    engine: Engine, planned: list[tuple[int, int]]
) -> None:
    first = ten_papers_each(planned[:10])
    with Session(engine) as session:
        delivery.write_sent_papers(session, first)
        session.commit()

    # A later write for other readers that also carries one paper the first reader had.
    (delivery_id, subscriber_id) = planned[0]
    again = [*ten_papers_each(planned[10:]), (delivery_id, subscriber_id, 1, 0, 50, "again")]
    with Session(engine) as session, pytest.raises(IntegrityError):
        delivery.write_sent_papers(session, again)
    assert sent_rows(engine) == first


def test_the_same_paper_twice_in_one_write_is_refused(
    engine: Engine, planned: list[tuple[int, int]]
) -> None:
    (delivery_id, subscriber_id) = planned[0]
    rows = [(delivery_id, subscriber_id, 7, 0, 80, "topic: LLMs"),
            (delivery_id, subscriber_id, 7, 1, 70, "topic: LLMs")]
    with Session(engine) as session, pytest.raises(IntegrityError):
        delivery.write_sent_papers(session, rows)
    assert sent_rows(engine) == []


def test_papers_of_a_delivery_that_does_not_exist_are_refused(
    engine: Engine, planned: list[tuple[int, int]]
) -> None:
    missing = max(d for d, _ in planned) + 1
    with Session(engine) as session, pytest.raises(IntegrityError):
        delivery.write_sent_papers(session, [(missing, planned[0][1], 1, 0, 50, "topic")])
    assert sent_rows(engine) == []


def test_sent_before_answers_for_exactly_the_papers_asked_about(
    engine: Engine, planned: list[tuple[int, int]]
) -> None:
    with Session(engine) as session:
        delivery.write_sent_papers(session, ten_papers_each(planned, first_paper=100))
        session.commit()
        subscribers = [s for _, s in planned]
        # Papers 100..109 were sent to everyone; ask about 102 and 107 only, and about
        # papers nobody had: 105 lies between them and must not be reported.
        found = delivery.already_sent(session, subscribers, [102, 107, 300, 5])
        nobody = delivery.already_sent(session, subscribers, [1, 2, 300])
    assert found == {s: frozenset({102, 107}) for s in subscribers}
    assert nobody == {}


def test_a_claim_takes_exactly_the_rows_it_moved_and_the_next_claim_only_the_rest(
    engine: Engine, planned: list[tuple[int, int]]
) -> None:
    ids = [d for d, _ in planned]
    with Session(engine) as session:
        token, taken = delivery.claim(session, ids[:1200], NOW)
        session.commit()
        other, rest = delivery.claim(session, ids, NOW + timedelta(seconds=1))
        session.commit()
    assert taken == ids[:1200] and token != other
    # The second claim gets the rows nobody held, and none of the first claim's.
    assert rest == ids[1200:]
    with engine.connect() as conn:
        holders = dict(conn.execute(text(
            "SELECT claim, count(*) FROM deliveries GROUP BY claim")).all())
    assert holders == {token: 1200, other: READERS - 1200}
