"""The operator's desk in tests: an operator account, a signed-in test client, and a month
of made-up but consistent activity (readers joining and leaving, editions with failures
and provider events, papers, cards and their cost, ratings) for the overview's charts."""

from __future__ import annotations

import random
import re
from datetime import UTC, date, datetime, timedelta

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine
from sqlmodel import Session

from newsletter import db
from newsletter.admin import accounts, audit
from newsletter.cards.card import Card
from newsletter.delivery import Delivery, DigestEdition
from newsletter.delivery.ledger import window
from newsletter.ingest.feed import Feed
from newsletter.ingest.paper import Paper
from newsletter.readers import subscriber as subs
from newsletter.readers.tables import Consent, Preferences, Subscriber, Suppression
from newsletter.relevance.tables import Rating
from newsletter.subscriptions import signup
from newsletter.topics.taxonomy import built_in
from newsletter.web.common import SERVICES
from tests.support.web import csrf_token

OPERATOR = "operator@example.org"
PASSWORD = "a long operator password"
_ADMIN_CSRF = re.compile(r'name="admin_csrf" value="([^"]+)"')


def add_operator(engine: Engine) -> None:
    with db.transaction(engine) as session:
        accounts.add(session, OPERATOR, PASSWORD, audit.CLI)


def sign_in(client: FlaskClient) -> str:
    """Sign the client in; the admin session's form token."""
    token = csrf_token(client, "/admin/login")
    answer = client.post("/admin/login", data={"csrf_token": token, "email": OPERATOR,
                                               "password": PASSWORD})
    assert answer.status_code == 303, answer.get_data(as_text=True)
    page = client.get("/admin/audit")
    found = _ADMIN_CSRF.search(page.get_data(as_text=True))
    assert found, "no admin form token on /admin/audit"
    return found.group(1)


def confirmed_reader(app: Flask, email: str, topics: tuple[str, ...] = ("llm",)) -> int:
    svc = app.extensions[SERVICES]
    signup.add(svc, email, list(topics), confirmed=True)
    with Session(svc.engine) as session:
        row = subs.find_by_email(session, email)
        assert row is not None and row.id is not None
        return row.id


def todays_papers(engine: Engine, n: int = 3) -> list[int]:
    """Papers announced today, on LLMs, without cards yet."""
    day = datetime.now(UTC).date()
    ids = []
    with Session(engine) as session:
        for k in range(n):
            paper = Paper(key=f"2611.0{k:04d}", arxiv_id=f"2611.0{k:04d}",
                          title=f"Large language model reasoning, part {k}",
                          abstract="We train a large language model to reason about text. "
                                   "It answers questions better than before.",
                          categories=["cs.CL"], announce_type="new", announced_on=day)
            session.add(paper)
            session.flush()
            assert paper.id is not None
            ids.append(paper.id)
        session.commit()
    return ids


def failed_card(engine: Engine, paper_id: int, error: str = "invalid JSON (at char 3)") -> None:
    with Session(engine) as session:
        session.add(Card(paper_id=paper_id, source="llm", model="gpt-4o-mini",
                         prompt_version="1", text_hash="old", status="failed",
                         last_error=error, failures=5, attempts=4))
        session.commit()


def _at(day: date, rng: random.Random) -> datetime:
    return datetime(day.year, day.month, day.day, rng.randrange(24), rng.randrange(60),
                    tzinfo=UTC)


def month_of_activity(engine: Engine, today: date, readers: int = 240,
                      seed: int = 13) -> None:
    """30 days up to `today`: readers confirming (a few leaving or bouncing), a daily
    edition each day, 40-120 papers a day with cards (some failed) and their LLM cost, and
    ratings from the second week on."""
    rng = random.Random(seed)
    days = [today - timedelta(days=n) for n in range(29, -1, -1)]
    with Session(engine) as session:
        people: list[tuple[int, date]] = []
        for n in range(readers):
            joined = days[min(29, int(rng.triangular(0, 30, 22)))]
            when = _at(joined, rng)
            row = Subscriber(email=f"reader{n:03d}@example.org", status="confirmed",
                             created_at=when, updated_at=when, confirmed_at=when)
            session.add(row)
            session.flush()
            assert row.id is not None
            topics = rng.sample(built_in().slugs[:8], k=rng.choice((1, 2, 2, 3)))
            session.add(Preferences(subscriber_id=row.id, topics=topics))
            session.add(Consent(subscriber_id=row.id, action="confirm", at=when,
                                agreed_to="the digest"))
            people.append((row.id, joined))
            left = joined + timedelta(days=rng.randrange(2, 20))
            if rng.random() < 0.06 and left <= today:
                row.status, row.unsubscribed_at = "unsubscribed", _at(left, rng)
                session.add(Consent(subscriber_id=row.id, action="unsubscribe",
                                    at=row.unsubscribed_at, agreed_to="withdrew"))
            elif rng.random() < 0.03 and left <= today:
                row.status = "bounced"
                session.add(Suppression(email=row.email, reason="bounce", at=_at(left, rng)))
        for _ in range(4):  # pending sign-ups nobody confirmed yet
            n += 1
            session.add(Subscriber(email=f"reader{n:03d}@example.org", status="pending",
                                   created_at=_at(today, rng), updated_at=_at(today, rng)))
        session.add(Feed(url="https://rss.arxiv.org/rss/cs.LG+cs.CL", label="arXiv",
                         kind="arxiv-rss", state="ok", http_status=200,
                         last_fetched_at=_at(today, rng), last_success_at=_at(today, rng),
                         items_seen=96, papers_added=90, papers_updated=4, papers_unchanged=2))
        paper_ids: list[int] = []
        for number, day in enumerate(days):
            for k in range(rng.randrange(40, 120) if day.weekday() < 5 else 0):
                stored = _at(day, rng)
                paper = Paper(key=f"2611.{number:02d}{k:03d}", arxiv_id=f"2611.{number:02d}{k:03d}",
                              title=f"A paper of day {number}, number {k}",
                              abstract="We study things.", announce_type="new",
                              announced_on=day, created_at=stored, updated_at=stored)
                session.add(paper)
                session.flush()
                assert paper.id is not None
                paper_ids.append(paper.id)
                failed = rng.random() < 0.04
                session.add(Card(
                    paper_id=paper.id, source="llm", model="gpt-4o-mini", prompt_version="3",
                    text_hash="h", status="failed" if failed else "ok",
                    last_error="invalid JSON (Expecting ',' delimiter at char 812)"
                    if failed else None, failures=1 if failed else 0,
                    input_tokens=1100, output_tokens=660, cost_usd=0.00056,
                    created_at=stored, updated_at=stored + timedelta(minutes=20),
                    checked_at=stored))
        for day in days:
            edition = DigestEdition(frequency="daily", day=day,
                                    window_start=window("daily", day))
            session.add(edition)
            session.flush()
            sent_at = datetime(day.year, day.month, day.day, 7, 2, tzinfo=UTC)
            for subscriber_id, joined in people:
                if joined >= day:
                    continue
                roll = rng.random()
                status = "failed" if roll < 0.01 else "skipped" if roll < 0.12 else "sent"
                delivery = Delivery(
                    edition_id=edition.id, subscriber_id=subscriber_id, status=status,
                    attempts=1, paper_count=6 if status == "sent" else 0,
                    sent_at=sent_at if status == "sent" else None,
                    error="refused by the provider: 400 invalid recipient"
                    if status == "failed" else None)
                if status == "sent":
                    delivery.delivered_at = sent_at + timedelta(minutes=1)
                    if rng.random() < 0.45:
                        delivery.opened_at = sent_at + timedelta(hours=2)
                        if rng.random() < 0.35:
                            delivery.clicked_at = sent_at + timedelta(hours=2, minutes=3)
                elif status == "failed":
                    delivery.bounced_at = sent_at + timedelta(minutes=1)
                session.add(delivery)
        for subscriber_id, joined in people[: readers // 3]:
            for paper_id in rng.sample(paper_ids, k=3):
                day = days[rng.randrange(10, 30)]
                if day > joined:
                    session.add(Rating(subscriber_id=subscriber_id, paper_id=paper_id,
                                       value=1 if rng.random() < 0.7 else -1,
                                       rated_at=_at(day, rng)))
        session.commit()
