"""The public pages: today's papers, a paper, past days, health, the dev outbox, headers."""

from __future__ import annotations

import re
from datetime import date, timedelta

import pytest
from flask.testing import FlaskClient
from sqlalchemy import Engine

from newsletter import db
from newsletter.cards import archive
from newsletter.cards.card import Card
from newsletter.config import ConfigError, Settings
from newsletter.ingest import store as ingest
from newsletter.ingest.paper import Paper
from newsletter.subscriptions import mail_queue
from newsletter.web import create_app
from tests.conftest import arxiv_fixture
from tests.support import web
from tests.support.web import subscribe

# The shared web fixtures, collected by pytest from this module's names.
app, client, web_settings = web.app, web.client, web.web_settings

DAY = date(2026, 9, 24)
HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>'


def _paper(key: str, title: str = "A paper", **extra: object) -> Paper:
    values: dict[str, object] = {
        "key": key, "arxiv_id": key, "title": title, "abstract": "We study things. " * 5,
        "authors": ["Ada Lovelace", "Alan Turing"], "categories": ["cs.LG"],
        "announce_type": "new", "announced_on": DAY,
        "abs_url": f"https://arxiv.org/abs/{key}", "pdf_url": f"https://arxiv.org/pdf/{key}",
    }
    values.update(extra)
    return Paper(**values)  # type: ignore[arg-type]


def _card(paper_id: int, source: str = "llm") -> Card:
    return Card(paper_id=paper_id, topics=["efficient-ml", "llm"],
                key_points=["Point one is here.", "Point two is here.", "Point three.",
                            "Point four."],
                summary="The summary text.", methodology="The method text.",
                results="The results text.", implications="The implications text.",
                source=source, model="test-model", prompt_version="v1", text_hash="h",
                status="ok")


@pytest.fixture
def papers(engine: Engine) -> None:
    with db.transaction(engine) as session:
        with_card = _paper("2609.00001", "Quantized attention")
        without = _paper("2609.00002", "Plain abstract only")
        hostile = _paper("2609.00003", HOSTILE, abstract=HOSTILE,
                         abs_url="javascript:alert(1)", pdf_url="data:text/html,x",
                         authors=[HOSTILE])
        revised = _paper("2609.00004", "An old paper, revised", announce_type="replace",
                         announced_on=DAY - timedelta(days=30), revised_on=DAY, version=2)
        old = _paper("hep-th/9901001", "Old style id", announced_on=DAY - timedelta(days=1))
        session.add_all([with_card, without, hostile, revised, old])
        session.flush()
        session.add(_card(with_card.id))  # type: ignore[arg-type]


def test_front_page_shows_the_latest_day(client: FlaskClient, papers: None) -> None:
    page = client.get("/")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "3 new papers on Thursday, 24 September 2026" in html
    assert "Updated every 8 hours" in html
    # A card's topics and key points; a paper without one shows its abstract.
    assert "Quantized attention" in html and "Efficient ML" in html
    assert "Point one is here." in html
    assert "Plain abstract only" in html and "We study things." in html
    assert "Revised on this day" in html and "An old paper, revised" in html
    assert html.count("Read more") == 4
    # The form: every topic with its description, daily or weekly.
    assert 'value="efficient-ml"' in html and "quantization, pruning" in html
    assert 'name="frequency" value="weekly"' in html


def test_paper_text_is_escaped_everywhere(client: FlaskClient, papers: None) -> None:
    for path in ("/", "/papers/2609.00003", f"/days/{DAY.isoformat()}"):
        html = client.get(path).get_data(as_text=True)
        assert "<script>alert" not in html and "<img src=x" not in html, path
        assert "&lt;script&gt;" in html, path
    paper = client.get("/papers/2609.00003").get_data(as_text=True)
    assert "javascript:" not in paper and "data:text" not in paper


def test_paper_page(client: FlaskClient, papers: None) -> None:
    html = client.get("/papers/2609.00001").get_data(as_text=True)
    for text in ("Quantized attention", "Ada Lovelace, Alan Turing", "The method text.",
                 "The results text.", "The implications text.",
                 'href="https://arxiv.org/abs/2609.00001"', 'href="https://arxiv.org/pdf/2609.00001"'):
        assert text in html
    plain = client.get("/papers/2609.00002").get_data(as_text=True)
    assert "not written yet" in plain and "We study things." in plain
    assert client.get("/papers/hep-th/9901001").status_code == 200
    assert client.get("/papers/9999.99999").status_code == 404


def _listed_days(html: str) -> list[str]:
    """The days /days links to, in the order shown."""
    return re.findall(r'<li><a href="/days/(\d{4}-\d{2}-\d{2})">', html)


def test_days(client: FlaskClient, papers: None) -> None:
    listing = client.get("/days").get_data(as_text=True)
    # The days with papers, newest first, and nothing else: the revised paper's first
    # announcement (30 days earlier) is a day too.
    assert _listed_days(listing) == [DAY.isoformat(), (DAY - timedelta(days=1)).isoformat(),
                                     (DAY - timedelta(days=30)).isoformat()]
    assert "3 new papers, 1 revised" in listing and "1 new paper<" in listing
    assert "no announcement</span>" not in listing and "Older days" not in listing
    quiet = client.get("/days/2026-09-26")
    assert quiet.status_code == 200 and "No announcement on this day" in quiet.get_data(True)
    assert "no announcements at weekends" in quiet.get_data(as_text=True)
    earlier = client.get("/days/2026-09-23").get_data(as_text=True)
    assert "Old style id" in earlier
    for bad in ("/days/2026-02-30", "/days/yesterday", "/days/20260924", "/days/%00"):
        assert client.get(bad).status_code == 404, bad


def test_days_reach_a_day_long_past(client: FlaskClient, engine: Engine) -> None:
    # The demo's sample day, months before today: before, /days listed the last 14
    # calendar days, all "no announcement", and the papers could not be reached.
    long_ago = date.today() - timedelta(days=70)
    with db.transaction(engine) as session:
        session.add_all([_paper("2609.00001", "Far back", announced_on=long_ago),
                         _paper("2609.00002", "Also far back", announced_on=long_ago)])
    listing = client.get("/days").get_data(as_text=True)
    assert _listed_days(listing) == [long_ago.isoformat()]
    assert "2 new papers" in listing and "no announcement</span>" not in listing
    day = client.get(f"/days/{long_ago.isoformat()}").get_data(as_text=True)
    assert "Far back" in day and "Also far back" in day and "2 new papers." in day


def test_days_page_to_older_days(client: FlaskClient, engine: Engine) -> None:
    # One more day with papers than a page holds, a week apart (gaps do not count), and
    # a day with only a revision (of a paper whose announcement we never saw).
    first = DAY - timedelta(weeks=archive.DAYS_PAGE)
    with db.transaction(engine) as session:
        session.add_all(_paper(f"2609.{i:05d}", announced_on=first + timedelta(weeks=i))
                        for i in range(archive.DAYS_PAGE + 1))
        session.add(_paper("2609.99999", "Revised only", announce_type="replace",
                           announced_on=None, revised_on=first + timedelta(days=1)))
    latest = client.get("/days").get_data(as_text=True)
    shown = _listed_days(latest)
    assert len(shown) == archive.DAYS_PAGE and shown[0] == DAY.isoformat()
    older = re.search(r'<a href="(/days\?before=[\d-]+)">Older days</a>', latest)
    assert older is not None and "Latest days" not in latest
    rest = client.get(older.group(1)).get_data(as_text=True)
    assert _listed_days(rest) == [(first + timedelta(days=1)).isoformat(), first.isoformat()]
    assert "1 revised paper<" in rest and "1 new paper<" in rest
    assert "Older days" not in rest and 'href="/days">Latest days</a>' in rest
    assert "Revised only" in client.get(f"/days/{first + timedelta(days=1)}").get_data(True)
    for bad in ("2026-02-30", "yesterday", ""):
        assert client.get(f"/days?before={bad}").status_code == 404, bad


def test_empty_site_still_works(client: FlaskClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and "No papers yet" in page.get_data(as_text=True)


def test_health(client: FlaskClient) -> None:
    answer = client.get("/healthz")
    assert answer.status_code == 200 and answer.json == {
        "status": "ok", "database": "ok", "broker": "not configured",
        "last_ingest_age_seconds": None}


def test_broken_database_is_unhealthy(web_settings: Settings, tmp_path) -> None:
    broken = db.make_engine(f"sqlite:///{tmp_path}/missing/dir/x.db")
    keyed = web_settings.model_copy(update={"secret_key": "k" * 40})
    answer = create_app(keyed, engine=broken).test_client().get("/healthz")
    assert answer.status_code == 503 and answer.json["database"] == "error"


def test_a_dev_site_whose_database_cannot_be_read_is_refused_with_the_reason(
        web_settings: Settings, tmp_path) -> None:
    # Its signing key is kept there: a site signing with another would reject the
    # worker's links, so it does not start half-working.
    broken = db.make_engine(f"sqlite:///{tmp_path}/missing/dir/x.db")
    with pytest.raises(ConfigError, match=r"signing key in the database.*DATABASE_URL"):
        create_app(web_settings, engine=broken)


def test_security_headers(client: FlaskClient) -> None:
    headers = client.get("/").headers
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    assert "script-src 'none'" in headers["Content-Security-Policy"]
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "same-origin"
    assert headers["X-Frame-Options"] == "DENY"


def test_outbox_in_dev_mode_only(client: FlaskClient, web_settings: Settings,
                                 engine: Engine) -> None:
    assert "No email sent yet" in client.get("/outbox").get_data(as_text=True)
    assert subscribe(client, "reader@example.com").status_code == 200
    mail_queue.drain_all()  # the confirmation leaves after the answer
    listing = client.get("/outbox").get_data(as_text=True)
    assert "Confirm your Paperwire subscription" in listing and "reader@example.com" in listing
    name = listing.split('href="/outbox/')[1].split('"')[0]
    message = client.get(f"/outbox/{name}").get_data(as_text=True)
    assert "http://paperwire.test/confirm/" in message
    html = client.get(f"/outbox/{name}/html")
    assert html.status_code == 200 and "script-src" not in html.headers["Content-Security-Policy"]
    # An email shown on our site fetches nothing from another host, images included.
    assert "img-src 'self' data:;" in html.headers["Content-Security-Policy"]
    assert "https:" not in html.headers["Content-Security-Policy"]
    assert client.get("/outbox/..%2F..%2Fetc%2Fpasswd").status_code == 404
    assert client.get("/outbox/not-a-message.eml").status_code == 404

    production = web_settings.model_copy(update={"dev_mode": False, "secret_key": "k" * 32})
    prod = create_app(production, engine=engine).test_client()
    assert prod.get("/outbox").status_code == 404
    assert prod.get(f"/outbox/{name}").status_code == 404
    assert "Development mode" not in prod.get("/").get_data(as_text=True)


def test_ingested_feed_renders(client: FlaskClient, engine: Engine) -> None:
    ingest.ingest_files(engine, [arxiv_fixture("rss_cs.LG+cs.AI+cs.CL+stat.ML_2026-09-24.xml")])
    page = client.get("/")
    assert page.status_code == 200 and "new papers on" in page.get_data(as_text=True)
