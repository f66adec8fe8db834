""""Most read this week": ranked from the readers who went to a paper or rated it up, each
counted once, shown only when enough readers did, naming nobody; on the front page, at the
end of weekly digests (SendGrid's rendering and ours), never in daily ones, and always
inside SendGrid's 10,000 bytes of template data."""

from __future__ import annotations

import base64
import re
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock

import pytest
from alembic import command
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from flask.testing import FlaskClient
from sqlalchemy import Engine, inspect, text
from sqlmodel import Session
from sqlmodel import select as select_rows

from newsletter import db, delivery
from newsletter.cards.summarize import summarize_pending
from newsletter.config import ConfigError, Settings, load_settings
from newsletter.delivery import Delivery, DigestEdition, SentPaper
from newsletter.delivery.ledger import today_utc
from newsletter.delivery.most_read import UP_RATING_WEIGHT, Audience, Tally, most_read, rank
from newsletter.digest.selection import Interests, candidate, select
from newsletter.ingest.paper import Paper
from newsletter.ingest.store import ingest_files
from newsletter.mail.message import DATA_LIMIT, Addressee, compose
from newsletter.mail.render import render_digest
from newsletter.mail.sendgrid import SendGridSender
from newsletter.readers import reader_input
from newsletter.readers import subscriber as subs
from newsletter.readers.links import LinkHolder, Links
from newsletter.readers.tables import Subscriber
from newsletter.relevance.tables import Rating
from newsletter.web import create_app, site
from tests.conftest import ARXIV_FIXTURES
from tests.engagement.test_engagement import PAPERS, Sent, post, sent_digest
from tests.support import web
from tests.support.sendgrid_server import SendGridServer
from tests.support.web import csrf_token

app = web.app
client = web.client
web_settings = web.web_settings

HEADING = "Most read this week"


# ------------------------------------------------------------ the ranking (pure)


def test_readers_rank_the_papers_enough_of_them_to_be_shown() -> None:
    day = date(2026, 9, 24)
    announced = {1: day, 2: day - timedelta(days=3), 3: day, 4: day, 5: day}
    tallies = {1: Tally(4, 5), 2: Tally(5, 5), 3: Tally(3, 6), 4: Tally(2, 4), 5: Tally(3, 0)}
    # 3 is heaviest; 1 and 2 weigh alike, 1 is newer; 4 has two readers, too few to show;
    # 5 weighs nothing.
    assert rank(tallies, announced, min_readers=3) == [(3, 6), (1, 5), (2, 5)]
    assert rank(tallies, announced, min_readers=2) == [(3, 6), (1, 5), (2, 5), (4, 4)]
    assert rank(tallies, announced, min_readers=5) == [(2, 5)]
    assert rank({1: Tally(3, 3), 2: Tally(3, 3), 3: Tally(3, 3)},
                dict.fromkeys((1, 2, 3), day), 3, limit=2) == [(1, 3), (2, 3)]  # ties: lower id
    assert rank({}, {}, 3) == []


@pytest.mark.parametrize(("confirmed", "percent", "floor", "needed"), [
    (0, 1.0, 3, 3), (299, 1.0, 3, 3), (300, 1.0, 3, 3), (301, 1.0, 3, 4), (1503, 1.0, 3, 16),
    (100_000, 1.0, 3, 1000), (100_000, 0.0, 3, 3), (40, 10.0, 3, 4), (700, 0.1, 2, 2),
    (10, 100.0, 2, 10),
])
def test_a_paper_needs_the_larger_of_a_floor_and_a_share_of_the_readers(
        confirmed: int, percent: float, floor: int, needed: int) -> None:
    assert Audience(floor, percent).minimum(confirmed) == needed


def test_the_audience_settings_are_checked_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    defaults = load_settings()
    assert Audience.of(defaults) == Audience(3, 1.0) == Audience.default()
    monkeypatch.setenv("MOST_READ_MIN_READERS", "10")
    monkeypatch.setenv("MOST_READ_MIN_PERCENT", "2.5")
    assert Audience.of(load_settings()) == Audience(10, 2.5)
    for readers, percent in (("1", "1"), ("0", "-1"), ("many", "101"), ("3", "a lot")):
        monkeypatch.setenv("MOST_READ_MIN_READERS", readers)
        monkeypatch.setenv("MOST_READ_MIN_PERCENT", percent)
        with pytest.raises(ConfigError) as failed:
            load_settings()
        named = [name for name in ("MOST_READ_MIN_READERS", "MOST_READ_MIN_PERCENT")
                 if name in str(failed.value)]
        assert named == [name for name, bad in (("MOST_READ_MIN_READERS", readers != "3"),
                                                ("MOST_READ_MIN_PERCENT", percent != "1"))
                         if bad], (readers, percent)


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


def _went_to(session: Session, edition_id: int, paper_id: int, readers: list[int]) -> None:
    """These readers got the paper in the edition's digest and clicked through to it."""
    edition = session.get(DigestEdition, edition_id)
    assert edition is not None
    at = datetime.combine(edition.day, clock(12), UTC)
    for reader in readers:
        delivery = session.exec(select_rows(Delivery).where(
            Delivery.edition_id == edition_id, Delivery.subscriber_id == reader)).first()
        if delivery is None:
            delivery = Delivery(edition_id=edition_id, subscriber_id=reader, status="sent",
                                sent_at=at)
            session.add(delivery)
            session.flush()
        session.add(SentPaper(delivery_id=delivery.id, subscriber_id=reader,
                              paper_id=paper_id, clicked_at=at))
    session.flush()


def _readers(session: Session, n: int, first: int = 0) -> list[int]:
    ids = []
    for i in range(first, first + n):
        row = subs.ensure(session, f"reader{i}@example.com", datetime.now(UTC))
        assert row.id is not None
        ids.append(row.id)
    return ids


def week_with_readers(engine: Engine, last_day: date) -> dict[str, int]:
    """Papers of the week up to `last_day` that readers went to and rated, and some that
    must not count (an older week's, too few readers', down-ratings, ratings from before
    the week)."""
    noon = datetime.combine(last_day, clock(12), UTC)
    with db.transaction(engine) as session:
        papers = {
            "clicked": _paper(session, "2609.00001", "Clicked a lot", last_day),
            "rated": _paper(session, "2609.00002", "Rated up by many", last_day),
            "both": _paper(session, "2609.00003", "Clicked and rated", last_day),
            "disliked": _paper(session, "2609.00004", "Rated down", last_day),
            "few": _paper(session, "2609.00006", "Two readers only", last_day),
            "old": _paper(session, "2608.00005", "Last month's",
                          last_day - timedelta(days=30)),
        }
        this_week = _edition(session, last_day - timedelta(days=2))
        yesterday = _edition(session, last_day - timedelta(days=1), "weekly")
        long_ago = _edition(session, last_day - timedelta(days=9))
        readers = _readers(session, 6)
        _went_to(session, this_week, papers["clicked"], readers[:4])
        _went_to(session, yesterday, papers["clicked"], readers[4:])
        _went_to(session, this_week, papers["both"], readers[:3])
        _went_to(session, this_week, papers["few"], readers[:2])
        _went_to(session, long_ago, papers["old"], readers)  # another week's clicks
        for reader in readers[:4]:
            session.add(Rating(subscriber_id=reader, paper_id=papers["rated"], value=1,
                               rated_at=noon))
        # The first reader went to it and rated it up: one reader, weighing as a rating.
        session.add(Rating(subscriber_id=readers[0], paper_id=papers["both"], value=1,
                           rated_at=noon))
        session.add(Rating(subscriber_id=readers[5], paper_id=papers["both"], value=1,
                           rated_at=noon - timedelta(days=10)))  # before the week
        for reader in readers[:3]:
            session.add(Rating(subscriber_id=reader, paper_id=papers["disliked"], value=-1,
                               rated_at=noon))
    return papers


def test_the_weeks_most_read_come_from_clicks_and_up_ratings(engine: Engine) -> None:
    last_day = date(2026, 9, 24)
    week_with_readers(engine, last_day)
    audience = Audience.default()
    with Session(engine) as session:
        found = most_read(session, last_day, audience)
    assert [(m.title, m.weight) for m in found] == [
        ("Rated up by many", 4 * UP_RATING_WEIGHT), ("Clicked a lot", 6),
        ("Clicked and rated", UP_RATING_WEIGHT + 2)]
    with Session(engine) as session:
        # Nine days later none of it is this week's.
        assert most_read(session, last_day + timedelta(days=9), audience) == []
        assert most_read(session, last_day, audience, limit=1)[0].key == \
            "2609.00002"
        # With two readers enough, the two readers' paper is listed too.
        assert "Two readers only" in [m.title for m in most_read(
            session, last_day, Audience(2, 0.0))]


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
        _went_to(session, _edition(session, DAY + timedelta(days=1)), popular[0],
                 _readers(session, 3))
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
        assert delivery.edition.most_read_for(session, off, "weekly", weekly_day) == ()
        assert delivery.edition.most_read_for(session, settings, "weekly",
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
        _went_to(session, earlier_digest, first[0], _readers(session, 3))
        _reader(session, "weekly@example.org", "weekly")
    delivery.prepare_edition(engine, "weekly", weekly_day)
    # Clicks on the week's digests keep coming after the edition is planned: by the time
    # its chunks go out, another paper leads the week.
    with db.transaction(engine) as session:
        _went_to(session, earlier_digest, second[0], _readers(session, 4, first=3))
        assert most_read(session, weekly_day - timedelta(days=1),
                                    Audience.default())[0].title == second[1]
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


# ------------------------------------------------------------ nobody steers it alone


def _signed_client(web_settings: Settings, engine: Engine,
                   key: ec.EllipticCurvePrivateKey) -> FlaskClient:
    der = key.public_key().public_bytes(serialization.Encoding.DER,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
    configured = web_settings.model_copy(update={
        "sendgrid_webhook_public_key": base64.b64encode(der).decode()})
    return create_app(configured, engine=engine).test_client(use_cookies=False)


def _clicked(reader: Sent, ident: str, url: str) -> dict:
    """A click as SendGrid reports it, made now."""
    return {"sg_event_id": ident, "event": "click", "email": reader.email,
            "timestamp": int(time.time()), "delivery_id": str(reader.delivery_id), "url": url}


def _front_page_most_read(client: FlaskClient) -> list[str]:
    """The titles "Most read this week" lists on the front page, rendered afresh."""
    cached = client.application.extensions
    for stale in [k for k in cached if isinstance(k, tuple) and k[0] == site._TODAY]:
        del cached[stale]
    page = client.get("/").get_data(as_text=True)
    if HEADING not in page:
        return []
    section = page[page.index(HEADING):page.index("</section>", page.index(HEADING))]
    return re.findall(r'<a href="/papers/[^"]+">([^<]+)</a>', section)


def test_one_reader_clicking_a_paper_200_times_is_one_reader_and_steers_nothing(
    client: FlaskClient, web_settings: Settings, engine: Engine
) -> None:
    # Issue 22, finding 5: 200 validly signed clicks from one digest (distinct event ids,
    # the same URL) made a paper the week's most read, first on the public front page.
    key = ec.generate_private_key(ec.SECP256R1())
    webhook = _signed_client(web_settings, engine, key)
    ada, bob, cy, dan, eve = (sent_digest(engine, f"{name}@example.com", day=today_utc())
                              for name in ("ada", "bob", "cy", "dan", "eve"))
    sparse, quantized, old = (f"https://arxiv.org/abs/{key}" for key, _ in PAPERS)
    for start in range(0, 200, 50):
        post(webhook, key, [_clicked(ada, f"a{i}", old) for i in range(start, start + 50)])
    assert _front_page_most_read(client) == []  # one reader, however many clicks

    post(webhook, key, [_clicked(ada, "s-ada", sparse)] + [
        _clicked(ada, f"s-ada{i}", sparse) for i in range(100)] + [
        _clicked(reader, f"s-{reader.email}", sparse) for reader in (bob, cy)] + [
        _clicked(reader, f"q-{reader.email}", quantized) for reader in (bob, cy, dan, eve)])
    # Three readers went to the sparse paper (one of them 101 times), four to the
    # quantized one: each reader counts once, and the old paper's one reader is too few.
    assert _front_page_most_read(client) == ["Quantized decoding", "Sparse attention at scale"]


def test_one_readers_up_rating_does_not_reach_the_front_page(
    client: FlaskClient, web_settings: Settings, engine: Engine
) -> None:
    # Issue 22, finding 5: one "more like this" put a paper on the list within 30 s.
    ada = sent_digest(engine, "ada@example.com", day=today_utc())
    sent_digest(engine, "bob@example.com", day=today_utc())
    token = Links.from_settings(web_settings).rate_token(
        LinkHolder(ada.subscriber_id, _link_key(engine, ada.subscriber_id)), ada.paper_ids[0])
    path = f"/rate/{token}/up"
    pressed = client.post(path, data={"csrf_token": csrf_token(client, path)})
    assert pressed.status_code == 200, pressed.get_data(as_text=True)
    with Session(engine) as session:
        assert session.get(Rating, (ada.subscriber_id, ada.paper_ids[0])) is not None
    assert _front_page_most_read(client) == []


def _link_key(engine: Engine, subscriber_id: int) -> str:
    with Session(engine) as session:
        row = session.get(Subscriber, subscriber_id)
        assert row is not None
        return row.link_key


def test_the_migration_keeps_clicks_per_reader_and_goes_down_and_up(
        database_url: str) -> None:
    engine = db.make_engine(database_url)
    last_day = date(2026, 9, 24)
    papers = week_with_readers(engine, last_day)
    config = db._alembic_config(engine)
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, "0016")
    # Down: the clicks as counts per edition and paper again, one per reader.
    with engine.connect() as conn:
        counted = {paper: n for paper, n in conn.execute(text(
            "SELECT paper_id, SUM(clicks) FROM paper_clicks GROUP BY paper_id"))}
    assert counted == {papers["clicked"]: 6, papers["both"]: 3, papers["few"]: 2,
                       papers["old"]: 6}
    assert "clicked_at" not in {c["name"] for c in inspect(engine).get_columns("sent_papers")}
    db.upgrade(engine)
    shape = inspect(engine)
    assert "paper_clicks" not in shape.get_table_names()
    assert "ix_sent_papers_clicked_at" in {i["name"] for i in shape.get_indexes("sent_papers")}
    with Session(engine) as session:  # the old counts could not be given to readers
        assert [m.title for m in most_read(session, last_day, Audience(3, 0))] \
            == ["Rated up by many"]
    engine.dispose()
