""""Most read this week": ranked from clicks across readers and up-ratings, naming nobody;
on the front page, at the end of weekly digests (SendGrid's rendering and ours), never in
daily ones, and always inside SendGrid's 10,000 bytes of template data."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta

import pytest
from flask.testing import FlaskClient
from sqlalchemy import Engine, text
from sqlmodel import Session

from newsletter import db, delivery, engagement, reader_input
from newsletter import subscriber as subs
from newsletter.config import Settings
from newsletter.delivery import DigestEdition
from newsletter.delivery.ledger import today_utc
from newsletter.digest import Interests, candidate, select
from newsletter.engagement.most_read import UP_RATING_WEIGHT, rank
from newsletter.ingest import ingest_files
from newsletter.message import DATA_LIMIT, Addressee, compose
from newsletter.paper import Paper
from newsletter.relevance.tables import Rating
from newsletter.render import render_digest
from newsletter.sendgrid import SendGridSender
from newsletter.summarize import summarize_pending
from newsletter.web import site
from tests.conftest import ARXIV_FIXTURES
from tests.support import web
from tests.support.sendgrid_server import SendGridServer

app = web.app
client = web.client
web_settings = web.web_settings

HEADING = "Most read this week"


# ------------------------------------------------------------ the ranking (pure)


def test_clicks_and_up_ratings_rank_the_papers() -> None:
    day = date(2026, 9, 24)
    announced = {1: day, 2: day - timedelta(days=3), 3: day, 4: day, 5: day}
    ranked = rank(clicks={1: 3, 2: 5, 3: 1, 5: 0}, ups={1: 1, 3: 2, 4: 1},
                  announced=announced)
    # 1: 3 + 2, 2: 5 (older than 1), 3: 1 + 4, 4: 2; 5 has no weight and is left out.
    assert ranked == [(1, 3 + UP_RATING_WEIGHT), (3, 1 + 2 * UP_RATING_WEIGHT), (2, 5),
                      (4, UP_RATING_WEIGHT)]
    assert rank(clicks={1: 1, 2: 1, 3: 1}, ups={}, announced=dict.fromkeys((1, 2, 3), day),
                limit=2) == [(1, 1), (2, 1)]  # ties: the lower id, always the same
    assert rank(clicks={}, ups={}, announced={}) == []


# ------------------------------------------------------------ from the database


def _edition(session: Session, day: date, frequency: str = "daily") -> int:
    edition = DigestEdition(frequency=frequency, day=day, window_start=day)
    session.add(edition)
    session.flush()
    assert edition.id is not None
    return edition.id


def _paper(session: Session, key: str, title: str, announced: date) -> int:
    paper = Paper(key=key, arxiv_id=key, title=title, abstract="...", announce_type="new",
                  announced_on=announced)
    session.add(paper)
    session.flush()
    assert paper.id is not None
    return paper.id


def _clicks(session: Session, edition_id: int, paper_id: int, n: int) -> None:
    session.execute(text("INSERT INTO paper_clicks (edition_id, paper_id, clicks) "
                         "VALUES (:e, :p, :n)"), {"e": edition_id, "p": paper_id, "n": n})


def _readers(session: Session, n: int) -> list[int]:
    ids = []
    for i in range(n):
        row = subs.ensure(session, f"reader{i}@example.com", datetime.now(UTC))
        assert row.id is not None
        ids.append(row.id)
    return ids


def week_with_readers(engine: Engine, last_day: date) -> dict[str, int]:
    """Papers of the week up to `last_day` with clicks and ratings, and some that must not
    count (an older week's, down-ratings, ratings from before the week)."""
    noon = datetime.combine(last_day, time(12), UTC)
    with db.transaction(engine) as session:
        papers = {
            "clicked": _paper(session, "2609.00001", "Clicked a lot", last_day),
            "rated": _paper(session, "2609.00002", "Rated up by many", last_day),
            "both": _paper(session, "2609.00003", "Clicked and rated", last_day),
            "disliked": _paper(session, "2609.00004", "Rated down", last_day),
            "old": _paper(session, "2608.00005", "Last month's",
                          last_day - timedelta(days=30)),
        }
        this_week = _edition(session, last_day - timedelta(days=2))
        yesterday = _edition(session, last_day - timedelta(days=1), "weekly")
        long_ago = _edition(session, last_day - timedelta(days=9))
        _clicks(session, this_week, papers["clicked"], 4)
        _clicks(session, yesterday, papers["clicked"], 2)
        _clicks(session, this_week, papers["both"], 1)
        _clicks(session, long_ago, papers["old"], 50)  # another week's clicks
        readers = _readers(session, 4)
        for reader in readers[:4]:
            session.add(Rating(subscriber_id=reader, paper_id=papers["rated"], value=1,
                               rated_at=noon))
        session.add(Rating(subscriber_id=readers[0], paper_id=papers["both"], value=1,
                           rated_at=noon))
        session.add(Rating(subscriber_id=readers[1], paper_id=papers["both"], value=1,
                           rated_at=noon - timedelta(days=10)))  # before the week
        for reader in readers[:3]:
            session.add(Rating(subscriber_id=reader, paper_id=papers["disliked"], value=-1,
                               rated_at=noon))
    return papers


def test_the_weeks_most_read_come_from_clicks_and_up_ratings(engine: Engine) -> None:
    last_day = date(2026, 9, 24)
    week_with_readers(engine, last_day)
    with Session(engine) as session:
        found = engagement.most_read(session, last_day)
    assert [(m.title, m.weight) for m in found] == [
        ("Rated up by many", 4 * UP_RATING_WEIGHT), ("Clicked a lot", 6),
        ("Clicked and rated", 1 + UP_RATING_WEIGHT)]
    with Session(engine) as session:
        # Nine days later none of it is this week's.
        assert engagement.most_read(session, last_day + timedelta(days=9)) == []
        assert engagement.most_read(session, last_day, limit=1)[0].key == "2609.00002"


def test_the_front_page_shows_the_weeks_most_read_naming_nobody(
    client: FlaskClient, engine: Engine
) -> None:
    assert HEADING not in client.get("/").get_data(as_text=True)  # nothing read yet
    week_with_readers(engine, today_utc())
    # The page is rendered at most every 30 s: forget the copy made before the week's data.
    cached = client.application.extensions
    for stale in [k for k in cached if isinstance(k, tuple) and k[0] == site._TODAY]:
        del cached[stale]
    answer = client.get("/")
    page = answer.get_data(as_text=True)
    assert answer.headers["Cache-Control"] == "public, max-age=30"
    section = page[page.index(HEADING):page.index("</section>", page.index(HEADING))]
    assert [title for title in ("Rated up by many", "Clicked a lot", "Clicked and rated")
            if title in section] == ["Rated up by many", "Clicked a lot", "Clicked and rated"]
    assert section.index("Rated up by many") < section.index("Clicked a lot") < \
        section.index("Clicked and rated")
    assert 'href="/papers/2609.00002"' in section
    assert "Rated down" not in section and "Last month" not in section
    assert "@example.com" not in page and "reader0" not in page


# ------------------------------------------------------------ in the digest


SITE = "https://paperwire.example.org"


def _long_paper(i: int) -> object:
    """A paper of a 20-paper digest that fits the cap only with its key points clipped."""
    return candidate(i, f"2609.{i:05d}", f"Paper {i} " + "T" * 60, "abs",
                     [f"Author {j}" for j in range(5)], ["llm"], [" ".join(["word"] * 40)] * 4,
                     card_source="llm")


def test_the_section_is_in_the_template_data_rendered_and_within_the_data_cap() -> None:
    most = [(f"2609.{i:05d}", "A most read paper with a title far longer than any " * 4)
            for i in range(5)]
    papers = [_long_paper(i) for i in range(1, 21)]
    reader = Addressee("a@x.org", 7, select(papers, Interests(topics=("llm",), max_papers=20)),
                       f"{SITE}/manage/t", f"{SITE}/unsubscribe/t", f"{SITE}/digest/t",
                       rate_tokens=tuple(f"7.{i}.abcdefghijklmnop" for i in range(1, 21)))
    (own,) = compose([reader], day=date(2026, 9, 28), frequency="weekly", site_url=SITE,
                     most_read=most).recipients
    assert own.data_bytes <= DATA_LIMIT and len(own.data["p"]) == 20
    assert [m["k"] for m in own.data["mr"]] == [k for k, _ in most]
    assert all(len(m["t"]) <= 112 for m in own.data["mr"])  # clipped, with " …"
    digest = render_digest(own.data)
    assert HEADING in digest.html and HEADING.upper() in digest.text
    assert f'href="{SITE}/papers/2609.00003"' in digest.html
    assert f"{SITE}/papers/2609.00003" in digest.text
    # Without the section nothing of it shows.
    (plain,) = compose([reader], day=date(2026, 9, 28), frequency="weekly",
                       site_url=SITE).recipients
    assert "mr" not in plain.data and HEADING not in render_digest(plain.data).html


DAY = date(2026, 4, 27)  # the three single-category listings: 9 papers
KEY = "SG.test-key"


def _reader(session: Session, email: str, frequency: str) -> None:
    """A confirmed reader of the llm topic, getting `frequency` digests."""
    row = subs.ensure(session, email, datetime.now(UTC))
    subs.update_preferences(session, row, reader_input.parse_preferences(["llm"], frequency))
    subs.confirm_now(session, row, "admin", reader_input.Client())


@pytest.fixture
def sg() -> Iterator[SendGridServer]:
    with SendGridServer(api_key=KEY) as server:
        yield server


def test_weekly_digests_end_with_the_most_read_and_daily_ones_do_not(
    engine: Engine, settings: Settings, sg: SendGridServer
) -> None:
    ingest_files(engine, sorted(ARXIV_FIXTURES.glob("rss_cs.*_2026-04-27.xml")))
    summarize_pending(engine, settings)
    weekly_day = DAY + timedelta(days=6)
    with db.transaction(engine) as session:
        popular = session.exec(  # type: ignore[call-overload]
            text("SELECT id, title FROM papers ORDER BY id LIMIT 1")).one()
        _clicks(session, _edition(session, DAY + timedelta(days=1)), popular[0], 7)
        _reader(session, "daily@example.org", "daily")
        _reader(session, "weekly@example.org", "weekly")
    sender = SendGridSender(KEY, "Paperwire <digest@example.org>", host=sg.url,
                            sleep=lambda _s: None)
    delivery.send_edition(engine, settings, frequency="daily", day=DAY, sender=sender)
    delivery.send_edition(engine, settings, frequency="weekly", day=weekly_day, sender=sender)
    [daily] = sg.messages_for("daily@example.org")
    [weekly] = sg.messages_for("weekly@example.org")
    # Rendered by the stand-in from the synced template, as SendGrid would.
    assert HEADING in weekly.html and popular[1][:40] in weekly.html
    assert HEADING.upper() in weekly.text
    assert HEADING not in daily.html and HEADING.upper() not in daily.text
    # DIGEST_MOST_READ=false leaves it out of weekly digests too.
    off = settings.model_copy(update={"digest_most_read": False})
    with Session(engine) as session:
        assert delivery.send.most_read_for(session, off, "weekly", weekly_day) == ()
        assert delivery.send.most_read_for(session, settings, "weekly",
                                           weekly_day)[0][1] == popular[1]


def test_a_weekly_edition_shows_the_most_read_as_fixed_when_it_was_planned(
    engine: Engine, settings: Settings, sg: SendGridServer
) -> None:
    from newsletter.web import create_app

    ingest_files(engine, sorted(ARXIV_FIXTURES.glob("rss_cs.*_2026-04-27.xml")))
    summarize_pending(engine, settings)
    weekly_day = DAY + timedelta(days=6)
    with db.transaction(engine) as session:
        first, second = session.exec(  # type: ignore[call-overload]
            text("SELECT id, title FROM papers ORDER BY id LIMIT 2")).all()
        earlier_digest = _edition(session, DAY + timedelta(days=1))
        _clicks(session, earlier_digest, first[0], 7)
        _reader(session, "weekly@example.org", "weekly")
    delivery.prepare_edition(engine, "weekly", weekly_day)
    # Clicks on the week's digests keep coming after the edition is planned: by the time
    # its chunks go out, another paper leads the week.
    with db.transaction(engine) as session:
        _clicks(session, earlier_digest, second[0], 50)
        assert engagement.most_read(session, weekly_day - timedelta(days=1))[0].title == \
            second[1]
    # The reader's preview shows the edition as it will be mailed.
    previewed = delivery.preview(engine, settings, "weekly@example.org", day=weekly_day)
    assert previewed is not None
    listed = previewed.text.split(HEADING.upper(), 1)[1]
    assert first[1][:40] in listed and second[1][:40] not in listed
    sender = SendGridSender(KEY, "Paperwire <digest@example.org>", host=sg.url,
                            sleep=lambda _s: None)
    delivery.send_edition(engine, settings, frequency="weekly", day=weekly_day, sender=sender)
    [weekly] = sg.messages_for("weekly@example.org")
    mailed = weekly.text.split(HEADING.upper(), 1)[1]
    assert first[1][:40] in mailed and second[1][:40] not in mailed
    # Viewed in the browser later, the digest shows the list it was mailed with.
    view = next(w for w in weekly.text.split() if "/digest/" in w)
    page = create_app(settings, engine=engine).test_client().get(
        view.removeprefix(settings.base_url)).get_data(as_text=True)
    shown = page.split(HEADING, 1)[1]
    assert first[1][:40] in shown and second[1][:40] not in shown
