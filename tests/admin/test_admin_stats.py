"""The overview's series, each checked on a small known dataset, on SQLite and Postgres.

The dataset puts events near midnight UTC, and the Postgres session runs in a time zone
14 hours ahead, so a day taken in the server's zone instead of UTC would show.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from sqlalchemy import Engine, text
from sqlmodel import Session

from newsletter.admin import stats
from newsletter.cards.card import Card
from newsletter.delivery import Delivery, DigestEdition
from newsletter.ingest.feed import Feed
from newsletter.ingest.paper import Paper
from newsletter.readers.tables import Consent, Preferences, Subscriber, Suppression
from newsletter.relevance.tables import PaperVector, Rating

WINDOW = stats.Window(date(2026, 11, 14), date(2026, 11, 20))


def at(day: int, hour: int = 12, minute: int = 0) -> datetime:
    return datetime(2026, 11, day, hour, minute, tzinfo=UTC)


def reader(session: Session, email: str, status: str, topics: list[str],
           consents: list[tuple[str, datetime]] = ()) -> int:  # type: ignore[assignment]
    row = Subscriber(email=email, status=status, created_at=at(1), updated_at=at(1))
    session.add(row)
    session.flush()
    assert row.id is not None
    session.add(Preferences(subscriber_id=row.id, topics=topics))
    for action, when in consents:
        session.add(Consent(subscriber_id=row.id, action=action, at=when, agreed_to="x"))
    return row.id


def paper(session: Session, key: str, created: datetime, source: str = "arxiv",
          announced: date | None = None) -> int:
    row = Paper(key=key, arxiv_id=key, title=f"Paper {key}", abstract="An abstract.",
                announce_type="new", announced_on=announced or created.date(), source=source,
                created_at=created, updated_at=created)
    session.add(row)
    session.flush()
    assert row.id is not None
    return row.id


def card(session: Session, paper_id: int, status: str, when: datetime,
         cost: float | None, source: str = "llm") -> None:
    session.add(Card(paper_id=paper_id, source=source, model="gpt-4o-mini", prompt_version="1",
                     text_hash="h", status=status, cost_usd=cost, updated_at=when,
                     created_at=when, checked_at=when))


@pytest.fixture
def dataset(engine: Engine) -> dict[str, int]:
    with Session(engine) as session:
        a = reader(session, "a@example.org", "confirmed", ["llm", "nlp"],
                   [("confirm", at(15, 0, 5)), ("confirm", datetime(2026, 11, 1, tzinfo=UTC))])
        b = reader(session, "b@example.org", "unsubscribed", ["llm"],
                   [("confirm", at(15, 23, 30)), ("unsubscribe", at(17, 0, 10))])
        c = reader(session, "c@example.org", "confirmed", ["rl"], [("admin", at(18))])
        reader(session, "d@example.org", "pending", [])
        e = reader(session, "e@example.org", "confirmed", ["llm"], [("import", at(14))])
        session.add(Suppression(email="e@example.org", reason="bounce", at=at(19, 23, 59)))
        session.add(Suppression(email="sha256:gone", reason="spamreport", at=at(19, 1)))

        edition = DigestEdition(frequency="daily", day=date(2026, 11, 18),
                                window_start=date(2026, 11, 16))
        old = DigestEdition(frequency="daily", day=date(2026, 11, 10),
                            window_start=date(2026, 11, 8))
        weekly = DigestEdition(frequency="weekly", day=date(2026, 11, 16),
                               window_start=date(2026, 11, 10))
        session.add_all([edition, old, weekly])
        session.flush()
        ids = {}
        for name, who, status, ed in (("a", a, "sent", edition), ("c", c, "sent", edition),
                                      ("b", b, "skipped", edition),
                                      ("e", e, "failed", edition),
                                      ("old", a, "sent", old), ("w", c, "pending", weekly)):
            row = Delivery(edition_id=ed.id, subscriber_id=who, status=status)
            session.add(row)
            session.flush()
            ids[name] = row.id
        session.execute(text("UPDATE deliveries SET delivered_at = :t, opened_at = :t, "
                             "clicked_at = :t WHERE id = :id"), {"t": at(18, 9), "id": ids["a"]})
        session.execute(text("UPDATE deliveries SET delivered_at = :t WHERE id = :id"),
                        {"t": at(18, 9), "id": ids["c"]})
        session.execute(text("UPDATE deliveries SET bounced_at = :t WHERE id = :id"),
                        {"t": at(18, 9), "id": ids["e"]})

        p1 = paper(session, "2611.00001", at(16, 6))
        p2 = paper(session, "2611.00002", at(16, 7))
        p3 = paper(session, "2611.00003", at(16, 23, 50), source="lab-blog")
        p4 = paper(session, "2611.00004", at(19, 0, 1))
        paper(session, "2611.00005", datetime(2026, 11, 2, tzinfo=UTC))
        card(session, p1, "ok", at(16, 8), 0.01)
        card(session, p2, "failed", at(17, 1), 0.002)
        card(session, p3, "ok", at(17, 2), None)
        card(session, p4, "ok", at(19, 3), 0.0, source="offline")
        session.add(PaperVector(paper_id=p1, model="m", dims=2, text_hash="h", data=b"x",
                                cost_usd=0.0001, created_at=at(16, 9), checked_at=at(16, 9)))
        session.add(Rating(subscriber_id=a, paper_id=p1, value=1, rated_at=at(19)))
        session.add(Rating(subscriber_id=c, paper_id=p2, value=-1, rated_at=at(19, 23)))
        session.add(Rating(subscriber_id=a, paper_id=p2, value=1, rated_at=at(20)))
        session.add(Feed(url="http://feeds.example/a", label="arXiv", kind="arxiv-rss",
                         state="ok"))
        session.commit()
        ids["edition"], ids["weekly"] = edition.id, weekly.id  # type: ignore[assignment]
    return ids


@pytest.fixture
def session(engine: Engine, dataset: dict[str, int]):  # type: ignore[no-untyped-def]
    with Session(engine) as session:
        if engine.dialect.name == "postgresql":
            session.execute(text("SET TIME ZONE 'Pacific/Kiritimati'"))
        yield session


def by_day(series: stats.Series) -> dict[int, float]:
    """The days with a value, by day of the month."""
    return {day.day: value for day, value in series.points if value}


def test_every_series_has_every_day_of_the_window(session: Session) -> None:
    flow = stats.subscriber_flow(session, WINDOW)
    for series in (flow.confirmed, flow.unsubscribed, flow.suppressed):
        assert [d for d, _ in series.points] == WINDOW.days
    assert len(WINDOW.days) == 7


def test_subscribers_by_day(session: Session) -> None:
    flow = stats.subscriber_flow(session, WINDOW)
    # The confirmation of 1 November is outside the window; 23:30 UTC is still the 15th.
    assert by_day(flow.confirmed) == {14: 1, 15: 2, 18: 1}
    assert by_day(flow.unsubscribed) == {17: 1}
    assert by_day(flow.suppressed) == {19: 2}


def test_editions_by_status_and_provider_events(session: Session,
                                                dataset: dict[str, int]) -> None:
    found = stats.editions(session, WINDOW)
    assert [(e.frequency, e.day) for e in found] == [
        ("weekly", date(2026, 11, 16)), ("daily", date(2026, 11, 18))]
    weekly, daily = found
    assert (weekly.waiting, weekly.sent, weekly.total) == (1, 0, 1)
    assert (daily.sent, daily.skipped, daily.failed, daily.waiting) == (2, 1, 1, 0)
    assert (daily.delivered, daily.opened, daily.clicked, daily.bounced) == (2, 1, 1, 1)
    assert daily.id == dataset["edition"]


def test_readers_per_topic_count_only_who_gets_digests(session: Session) -> None:
    counts = {t.slug: t.readers for t in stats.topic_counts(session)}
    # b unsubscribed, d is pending, e is suppressed.
    assert {slug: n for slug, n in counts.items() if n} == {"llm": 1, "nlp": 1, "rl": 1}
    assert len(counts) > 10  # every topic of the taxonomy, zeros included


def test_papers_cards_and_cost_per_day(session: Session) -> None:
    made = stats.production(session, WINDOW)
    assert by_day(made.papers) == {16: 3, 19: 1}
    assert by_day(made.cards) == {16: 1, 17: 1, 19: 1}
    assert by_day(made.card_failures) == {17: 1}
    cost = by_day(made.cost_usd)
    assert cost.keys() == {16, 17}
    assert cost[16] == pytest.approx(0.0101)
    assert cost[17] == pytest.approx(0.002)
    assert made.unknown_cost == 1


def test_ratings_per_day(session: Session) -> None:
    flow = stats.rating_flow(session, WINDOW)
    assert by_day(flow.up) == {19: 1, 20: 1}
    assert by_day(flow.down) == {19: 1}
    assert flow.ever
    before = stats.rating_flow(session, stats.Window(date(2026, 10, 1), date(2026, 10, 7)))
    assert before.ever and not before.up.total and not before.down.total


def test_no_ratings_yet(engine: Engine) -> None:
    with Session(engine) as session:
        assert not stats.rating_flow(session, WINDOW).ever


def test_headline_numbers(session: Session) -> None:
    head = stats.headline(session, WINDOW)
    assert (head.confirmed, head.pending, head.suppressed) == (2, 1, 2)
    assert (head.cards_failed, head.deliveries_failed) == (1, 1)


def test_feed_activity_counts_papers_by_source_and_announcement_day(session: Session) -> None:
    activity = stats.feed_activity(session, WINDOW)
    assert [f.label for f in activity.feeds] == ["arXiv"]
    assert {s.name: by_day(s) for s in activity.by_source} == {
        "arxiv": {16: 2, 19: 1}, "lab-blog": {16: 1}}
