"""The operator's pages through the Flask test client, signed in, on SQLite and Postgres:
each page shows what the database holds, each action does what it says and leaves an audit
row, and hostile input (unknown ids, statuses, topics) gets a 4xx, never a 500."""

from __future__ import annotations

import base64
import re
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine, text
from sqlmodel import Session, select

from newsletter.admin.audit import AuditEntry
from newsletter.cards.card import Card
from newsletter.cards.summarize import summarize_pending
from newsletter.config import Settings
from newsletter.delivery import Delivery, prepare_edition, send_edition
from newsletter.ingest.feed import Feed
from newsletter.readers import subscriber as subs
from newsletter.readers.tables import Subscriber, Suppression, WebhookEvent
from newsletter.relevance.tables import Rating
from newsletter.web import create_app
from tests.support import web
from tests.support.admin_desk import OPERATOR, add_operator, failed_card, sign_in, todays_papers
from tests.support.admin_desk import confirmed_reader as reader
from tests.support.servers import celery_worker
from tests.support.web import link, outbox, subscribe

app, client, web_settings = web.app, web.client, web.web_settings

_TOKENS = re.compile(r'name="(csrf_token|admin_csrf)" value="([^"]+)"')


def today() -> datetime:
    return datetime.now(UTC)


@pytest.fixture
def desk(app: Flask, client: FlaskClient, engine: Engine) -> FlaskClient:
    add_operator(engine)
    sign_in(client)
    return client


def post(client: FlaskClient, page: str, action: str, **data: str):  # type: ignore[no-untyped-def]
    """Press a button of `page`: its form's tokens, as a browser sends them."""
    html = client.get(page).get_data(as_text=True)
    tokens = dict(_TOKENS.findall(html))
    assert set(tokens) == {"csrf_token", "admin_csrf"}, f"no admin form on {page}"
    return client.post(action, data={**tokens, **data})


def audit_rows(engine: Engine) -> list[tuple[str, str, str]]:
    with Session(engine) as session:
        return [(r.actor, r.action, r.target) for r in session.exec(
            select(AuditEntry).where(AuditEntry.action != "login").order_by(AuditEntry.id))]


def status_of(engine: Engine, subscriber_id: int) -> str | None:
    with Session(engine) as session:
        row = session.get(Subscriber, subscriber_id)
        return row.status if row else None


# ------------------------------------------------------------------ the overview


def _charts(html: str) -> dict[str, str]:
    """Each chart's SVG, by its figure's id."""
    found = re.findall(r'<figure class="admin-chart" id="chart-([a-z]+)".*?'
                       r'<img src="data:image/svg\+xml;base64,([^"]+)"', html, re.S)
    return {key: base64.b64decode(data).decode() for key, data in found}


def test_the_overview_draws_each_chart_with_its_data(desk: FlaskClient, app: Flask,
                                                     engine: Engine) -> None:
    alice = reader(app, "alice@example.org", ("llm", "nlp"))
    reader(app, "bob@example.org", ("rl",))
    [paper_id, *_] = todays_papers(engine)
    with Session(engine) as session:
        session.add(Rating(subscriber_id=alice, paper_id=paper_id, value=1))
        session.commit()
    page = desk.get("/admin")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    charts = _charts(html)
    assert list(charts) == ["subscribers", "editions", "topics", "production", "ratings"]
    for key, svg in charts.items():
        assert svg.startswith("<svg") and "<script" not in svg, key
    # Plotted values, not just an empty frame: two confirmations today, two readers of LLMs
    # and NLP and RL, three papers stored today, one rating.
    assert '<desc class="value">2</desc>' in charts["subscribers"]
    assert re.search(r'<desc class="value">1</desc>', charts["topics"])
    assert '<desc class="value">3</desc>' in charts["production"]
    assert '<desc class="value">1</desc>' in charts["ratings"]
    # The same numbers in words and in a table.
    assert "2 confirmed, 0 unsubscribed, 0 suppressed" in html
    assert re.search(r"<th scope=\"row\">Large Language Models</th><td>1</td>", html)
    assert re.search(r'<dt>Readers getting digests</dt><dd>2</dd>', html)


def _value_ticks(svg: str, axis: str = "y") -> list[str]:
    """The tick labels of a chart's value axis: y, or x for a horizontal bar chart (the
    cost's right axis, y2, is not a count)."""
    start = svg.index(f'<g class="axis {axis}')
    end = re.compile(r'<g class="(?:axis|series)').search(svg, start + 1)
    return re.findall(r"<text[^>]*>([^<]*)</text>", svg[start:end.start() if end else None])


def test_count_charts_tick_whole_numbers_only(desk: FlaskClient, app: Flask,
                                              engine: Engine) -> None:
    # Small counts, where pygal's own scale ticked 0, 0.2, 0.4 … for readers and papers.
    alice = reader(app, "alice@example.org", ("llm", "nlp"))
    reader(app, "bob@example.org", ("llm",))
    [paper_id, *_] = todays_papers(engine, 1)
    prepare_edition(engine, "daily", today().date())
    with Session(engine) as session:
        session.add(Rating(subscriber_id=alice, paper_id=paper_id, value=1))
        session.commit()
    charts = _charts(desk.get("/admin").get_data(as_text=True))
    charts["papers"] = _charts(desk.get("/admin/feeds").get_data(as_text=True))["papers"]
    axes = {"subscribers": "y", "editions": "y", "topics": "x", "production": "y",
            "ratings": "y", "papers": "y"}
    assert set(charts) == set(axes)
    for key, axis in axes.items():
        ticks = _value_ticks(charts[key], axis)
        assert ticks and all(t.isdigit() for t in ticks), (key, ticks)
    # Two confirmations today, two readers of LLMs: 0, 1, 2 and nothing between.
    assert _value_ticks(charts["subscribers"]) == ["0", "1", "2"]
    assert _value_ticks(charts["topics"], "x") == ["0", "1", "2"]
    assert _value_ticks(charts["ratings"]) == ["0", "1"]


def test_the_overview_has_no_ratings_chart_before_any_rating(desk: FlaskClient) -> None:
    html = desk.get("/admin?days=7").get_data(as_text=True)
    assert list(_charts(html)) == ["subscribers", "editions", "topics", "production"]
    assert "Ratings per day appear here once readers rate papers" in html


@pytest.mark.parametrize("days", ["0", "31", "abc", "-7", "9" * 40])
def test_the_overview_refuses_other_periods(desk: FlaskClient, days: str) -> None:
    assert desk.get(f"/admin?days={days}").status_code == 400


# ------------------------------------------------------------------ subscribers


def test_search_by_address_status_and_topic(desk: FlaskClient, app: Flask,
                                            engine: Engine) -> None:
    for n in range(55):
        reader(app, f"reader{n:02d}@example.org", ("llm",) if n % 2 else ("rl",))
    rl = reader(app, "rl_fan%@example.org", ("rl",))
    subscribe(desk, "pending@example.org")
    with Session(engine) as session:
        session.add(Suppression(email="reader03@example.org", reason="bounce"))
        session.commit()

    def emails(query: str) -> list[str]:
        page = desk.get("/admin/subscribers" + query)
        assert page.status_code == 200
        return re.findall(r'<td><a href="/admin/subscribers/\d+">([^<]+)</a>',
                          page.get_data(as_text=True))

    assert len(emails("")) == 50  # a page
    assert "57 readers, page 1 of 2" in desk.get("/admin/subscribers").get_data(as_text=True)
    assert len(emails("?page=2")) == 7
    # Paging keeps the search: the next page still holds only what was searched for.
    first = desk.get("/admin/subscribers?q=reader").get_data(as_text=True)
    [next_page] = re.findall(r'<a rel="next" href="([^"]+)">Next</a>', first)
    assert "q=reader" in next_page and "page=2" in next_page
    assert emails("?q=READER1") == [f"reader{n}@example.org" for n in range(10, 20)]
    # LIKE's wildcards are searched for as they are typed.
    assert emails("?q=_fan%25") == ["rl_fan%@example.org"]
    assert emails("?status=pending") == ["pending@example.org"]
    assert emails("?status=suppressed") == ["reader03@example.org"]
    assert len(emails("?topic=llm")) == 27
    assert emails("?topic=rl&q=fan") == ["rl_fan%@example.org"]
    assert rl


@pytest.mark.parametrize("query", ["?status=admin", "?status=confirmed%00", "?topic=../etc",
                                   "?topic=LLM"])
def test_search_refuses_unknown_statuses_and_topics(desk: FlaskClient, query: str) -> None:
    assert desk.get("/admin/subscribers" + query).status_code == 400


@pytest.mark.parametrize("query", ["?page=abc", "?page=-3", "?page=999999999999999999999",
                                   "?q=" + "x" * 5000, "?q=%27%3B--"])
def test_search_survives_odd_input(desk: FlaskClient, query: str) -> None:
    assert desk.get("/admin/subscribers" + query).status_code == 200


def test_a_readers_history(desk: FlaskClient, app: Flask, engine: Engine,
                           web_settings: Settings) -> None:
    alice = reader(app, "alice@example.org", ("llm",))
    [paper_id, *_] = todays_papers(engine)
    summarize_pending(engine, web_settings)
    edition_id, _, [chunk] = prepare_edition(engine, "daily", today().date())
    with Session(engine) as session:
        session.execute(text("UPDATE deliveries SET status = 'failed', attempts = 5, "
                             "error = 'refused by the provider: 400 bad address', "
                             "bounced_at = :t WHERE id = :id"), {"t": today(), "id": chunk[0]})
        session.add(Rating(subscriber_id=alice, paper_id=paper_id, value=-1))
        session.add(WebhookEvent(sg_event_id="ev-1", event="bounce",
                                      email="alice@example.org"))
        session.commit()
    html = desk.get(f"/admin/subscribers/{alice}").get_data(as_text=True)
    assert "refused by the provider: 400 bad address" in html
    assert "failed (5 attempts)" in html
    assert "bounced" in html and "Less like this" in html
    assert "Large language model reasoning, part 0" in html
    assert "admin" in html  # the consent: added by an operator
    assert f"/admin/editions/{edition_id}" in html


# ------------------------------------------------------------------ actions on a reader


def test_suppress_and_unsuppress_are_audited(desk: FlaskClient, app: Flask,
                                             engine: Engine) -> None:
    alice = reader(app, "alice@example.org")
    page = f"/admin/subscribers/{alice}"
    answer = post(desk, page, f"{page}/suppress")
    assert answer.status_code == 303
    with Session(engine) as session:
        assert subs.is_suppressed(session, "alice@example.org")
    assert "Suppressed: this address gets no more mail." in desk.get(page).get_data(as_text=True)

    # A bounce withdrew no consent: the reader gets digests again.
    assert post(desk, page, f"{page}/unsuppress").status_code == 303
    with Session(engine) as session:
        assert not subs.is_suppressed(session, "alice@example.org")
    assert status_of(engine, alice) == "confirmed"
    assert audit_rows(engine)[-2:] == [
        (OPERATOR, "subscriber-suppress", f"subscriber:{alice}"),
        (OPERATOR, "subscriber-unsuppress", f"subscriber:{alice}")]

    # Nothing to lift: 409, and nothing recorded.
    assert post(desk, page, f"{page}/unsuppress").status_code == 409
    assert len(audit_rows(engine)) == 3  # the operator's account, and the two actions


def test_unsuppressing_a_complaint_leaves_the_reader_unsubscribed(
        desk: FlaskClient, app: Flask, engine: Engine) -> None:
    alice = reader(app, "alice@example.org")
    with Session(engine) as session:
        subs.suppress(session, "alice@example.org", "spamreport")
        session.commit()
    page = f"/admin/subscribers/{alice}"
    assert post(desk, page, f"{page}/unsuppress").status_code == 303
    assert status_of(engine, alice) == "unsubscribed"


@pytest.mark.parametrize(("status", "confirmed", "unsubscribed", "after"), [
    ("bounced", True, False, "confirmed"),  # a bounce withdrew no consent
    ("bounced", False, False, "pending"),  # never confirmed: still not
    ("bounced", True, True, "unsubscribed"),  # left before an operator suppressed them
    ("complained", True, False, "unsubscribed"),  # a complaint withdrew it
    ("unsubscribed", True, True, "unsubscribed"),  # a provider's unsubscribe
])
def test_what_lifting_a_suppression_leaves(status: str, confirmed: bool, unsubscribed: bool,
                                           after: str) -> None:
    from newsletter.admin.actions import status_after_unsuppress

    moment = today()
    row = Subscriber(email="x@example.org", status=status,
                          confirmed_at=moment if confirmed else None,
                          unsubscribed_at=moment if unsubscribed else None)
    assert status_after_unsuppress(row) == after


def test_delete_erases_the_reader_and_the_audit_keeps_no_address(
        desk: FlaskClient, app: Flask, engine: Engine) -> None:
    alice = reader(app, "alice@example.org")
    page = f"/admin/subscribers/{alice}"
    # Without the box ticked the form is refused.
    assert post(desk, page, f"{page}/delete").status_code == 400
    assert status_of(engine, alice) == "confirmed"
    answer = post(desk, page, f"{page}/delete", confirm="yes")
    assert answer.status_code == 303
    assert status_of(engine, alice) is None
    assert audit_rows(engine)[-1] == (OPERATOR, "subscriber-delete", f"subscriber:{alice}")
    with Session(engine) as session:
        assert not any("alice" in (r.target + r.detail) for r in session.exec(select(AuditEntry)))
    assert desk.get(page).status_code == 404


def test_resend_confirmation_mails_a_new_link_and_the_old_one_stops(
        desk: FlaskClient, engine: Engine, web_settings: Settings) -> None:
    subscribe(desk, "pending@example.org", ("nlp",), "weekly")
    [first] = outbox(web_settings)
    with Session(engine) as session:
        row = subs.find_by_email(session, "pending@example.org")
        assert row is not None
        pending = row.id
        # The ten minutes between mails have passed.
        row.last_confirmation_sent_at = None
        session.commit()
    page = f"/admin/subscribers/{pending}"
    answer = post(desk, page, f"{page}/resend-confirmation")
    assert answer.status_code == 303
    first_link, [_, second] = link(first, "confirm"), outbox(web_settings)
    second_link = link(second, "confirm")
    assert second["To"] == "pending@example.org" and second_link != first_link
    assert "NLP" in web.text_of(second) and "weekly" in web.text_of(second)
    assert desk.get(first_link).status_code == 410
    assert desk.get(second_link).status_code == 200
    assert audit_rows(engine)[-1] == (OPERATOR, "subscriber-resend-confirmation",
                                      f"subscriber:{pending}")
    # Within ten minutes of that mail, and for a confirmed reader: nothing is sent.
    assert post(desk, page, f"{page}/resend-confirmation").status_code == 409
    assert len(outbox(web_settings)) == 2


def test_no_confirmation_mail_for_a_confirmed_reader(desk: FlaskClient, app: Flask,
                                                     web_settings: Settings) -> None:
    alice = reader(app, "alice@example.org")
    page = f"/admin/subscribers/{alice}"
    answer = desk.post(f"{page}/resend-confirmation",
                       data=dict(_TOKENS.findall(desk.get(page).get_data(as_text=True))))
    assert answer.status_code == 409
    assert "only a pending sign-up" in answer.get_data(as_text=True)
    assert outbox(web_settings) == []


def test_preview_shows_the_next_digest_with_no_link_acting_for_the_reader(
        desk: FlaskClient, app: Flask, engine: Engine, web_settings: Settings) -> None:
    alice = reader(app, "alice@example.org", ("llm",))
    bob = reader(app, "bob@example.org", ("rl",))
    todays_papers(engine)
    summarize_pending(engine, web_settings)
    page = desk.get(f"/admin/subscribers/{alice}/preview").get_data(as_text=True)
    assert "Large language model reasoning, part 0" in page
    assert f'src="/admin/subscribers/{alice}/preview.html"' in page and "sandbox" in page
    # The plain-text part, shown on the page, has no personal link either.
    assert "Manage topics" in page and "/digest/personal-links" in page
    assert "/manage/" not in page and "/unsubscribe/" not in page and "/rate/preview/" in page
    framed = desk.get(f"/admin/subscribers/{alice}/preview.html")
    assert framed.status_code == 200
    assert "frame-ancestors 'self'" in framed.headers["Content-Security-Policy"]
    assert "img-src 'self' data:;" in framed.headers["Content-Security-Policy"]
    html = framed.get_data(as_text=True)
    assert "Large language model reasoning, part 1" in html
    assert "/manage/" not in html and "/unsubscribe/" not in html
    assert "/digest/personal-links" in html
    rate_links = re.findall(r'href="http://paperwire\.test(/rate/[^"]+)"', html)
    assert rate_links and all(desk.get(path).status_code == 404 for path in rate_links)
    # Nothing matches bob: the page says the edition would skip him.
    assert "would skip them" in desk.get(f"/admin/subscribers/{bob}/preview").get_data(
        as_text=True)
    assert desk.get(f"/admin/subscribers/{bob}/preview.html").status_code == 404
    with Session(engine) as session:  # a preview sends and plans nothing
        assert session.exec(select(Delivery)).first() is None


# ------------------------------------------------------------------ editions


def test_an_editions_failures_and_their_retry(desk: FlaskClient, app: Flask, engine: Engine,
                                              web_settings: Settings) -> None:
    reader(app, "alice@example.org")
    bob = reader(app, "bob@example.org")
    todays_papers(engine)
    summarize_pending(engine, web_settings)
    edition_id, _, [chunk] = prepare_edition(engine, "daily", today().date())
    with Session(engine) as session:
        session.execute(text("UPDATE deliveries SET status = 'failed', attempts = 5, "
                             "error = 'refused by the provider: 503 try later' "
                             "WHERE subscriber_id = :bob"), {"bob": bob})
        session.execute(text("UPDATE deliveries SET status = 'sent' WHERE subscriber_id != :b"),
                        {"b": bob})
        session.commit()
    listing = desk.get("/admin/editions").get_data(as_text=True)
    assert f'href="/admin/editions/{edition_id}"' in listing
    page = f"/admin/editions/{edition_id}"
    html = desk.get(page).get_data(as_text=True)
    assert "refused by the provider: 503 try later" in html and "bob@example.org" in html

    answer = post(desk, page, f"{page}/retry")
    assert answer.status_code == 303
    # No broker: the page sends nothing itself, and names the command that does.
    told = desk.get(page).get_data(as_text=True)
    assert "Retried 1 failed deliveries: 1 deliveries are pending again" in told
    assert f"newsletter send --date {today().date().isoformat()}" in told
    assert outbox(web_settings) == []
    send_edition(engine, web_settings, day=today().date())
    with Session(engine) as session:
        statuses = {d.subscriber_id: d.status for d in session.exec(select(Delivery))}
    assert statuses[bob] == "sent"
    assert [m["To"] for m in outbox(web_settings)] == ["bob@example.org"]
    assert audit_rows(engine)[-1] == (OPERATOR, "edition-retry-failed", f"edition:{edition_id}")
    assert len(chunk) == 2
    # Nothing failed any more: nothing to retry.
    assert post(desk, page, f"{page}/retry").status_code == 409


# ------------------------------------------------------------------ cards and feeds


def test_card_failures_and_their_reruns(desk: FlaskClient, engine: Engine) -> None:
    first, second, third = todays_papers(engine)
    failed_card(engine, first, "invalid JSON (Expecting ',' delimiter at char 812)")
    failed_card(engine, second, "the model refused")
    html = desk.get("/admin/cards").get_data(as_text=True)
    assert "invalid JSON (Expecting &#39;,&#39; delimiter at char 812)" in html
    assert "the model refused" in html and "2611.00000" in html

    answer = post(desk, "/admin/cards", f"/admin/cards/{first}/rerun")
    assert answer.status_code == 303
    with Session(engine) as session:
        cards = {c.paper_id: c for c in session.exec(select(Card))}
    # Past LLM_MAX_FAILURES, yet written: the offline writer, as `summarize --paper` runs.
    assert cards[first].status == "ok" and cards[second].status == "failed"
    assert third not in cards

    assert post(desk, "/admin/cards", "/admin/cards/rerun-failed").status_code == 303
    with Session(engine) as session:
        assert {c.status for c in session.exec(select(Card))} == {"ok"}
    assert audit_rows(engine)[-2:] == [(OPERATOR, "card-rerun", "paper:2611.00000"),
                                       (OPERATOR, "cards-rerun-failed", "cards")]
    assert "No card has failed." in desk.get("/admin/cards").get_data(as_text=True)
    assert post(desk, "/admin/cards", "/admin/cards/rerun-failed").status_code == 409


def test_feeds_show_the_last_fetch_and_papers_per_day(desk: FlaskClient,
                                                      engine: Engine) -> None:
    todays_papers(engine, 4)
    with Session(engine) as session:
        session.add(Feed(url="https://lab.example/feed.xml", label="lab", kind="source",
                         state="error", http_status=500, last_error="HTTP 500 from the server",
                         last_fetched_at=today(), last_warning=None))
        session.commit()
    html = desk.get("/admin/feeds").get_data(as_text=True)
    assert "HTTP 500 from the server" in html and "https://lab.example/feed.xml" in html
    svg = _charts(html)["papers"]
    assert '<desc class="value">4</desc>' in svg


def test_the_feeds_page_of_a_site_with_no_feed_yet(desk: FlaskClient) -> None:
    """The fuzz run's finding: a chart with no series was a 500 (pygal places no labels)."""
    answer = desk.get("/admin/feeds")
    assert answer.status_code == 200 and "none in this period" in answer.get_data(as_text=True)


# ------------------------------------------------------------------ hostile input


@pytest.mark.parametrize("path", [
    "/admin/subscribers/0", "/admin/subscribers/424242", "/admin/subscribers/-1",
    "/admin/subscribers/99999999999999999999999", "/admin/subscribers/abc",
    "/admin/subscribers/424242/preview", "/admin/subscribers/424242/preview.html",
    "/admin/editions/424242", "/admin/editions/99999999999999999999",
])
def test_unknown_ids_are_404(desk: FlaskClient, path: str) -> None:
    assert desk.get(path).status_code == 404


@pytest.mark.parametrize("action", [
    "/admin/subscribers/424242/suppress", "/admin/subscribers/424242/unsuppress",
    "/admin/subscribers/424242/resend-confirmation",
    "/admin/subscribers/99999999999999999999/suppress", "/admin/editions/424242/retry",
    "/admin/cards/424242/rerun", "/admin/cards/99999999999999999999/rerun",
])
def test_actions_on_unknown_ids_are_404_and_audit_nothing(desk: FlaskClient, engine: Engine,
                                                          action: str) -> None:
    before = audit_rows(engine)
    assert post(desk, "/admin/cards", action).status_code == 404
    assert audit_rows(engine) == before


def test_delete_of_an_unknown_reader_is_404(desk: FlaskClient) -> None:
    assert post(desk, "/admin/cards", "/admin/subscribers/424242/delete",
                confirm="yes").status_code == 404


def test_signed_out_visitors_and_forged_posts_get_nothing(client: FlaskClient, app: Flask,
                                                          engine: Engine) -> None:
    add_operator(engine)
    alice = reader(app, "alice@example.org")
    for path in ("/admin", "/admin/subscribers", f"/admin/subscribers/{alice}",
                 f"/admin/subscribers/{alice}/preview.html", "/admin/editions",
                 "/admin/cards", "/admin/feeds"):
        answer = client.get(path)
        assert answer.status_code in (302, 303)
        assert "/admin/login" in answer.headers["Location"]
    # A post from nowhere: refused by the site's form check before the admin site's.
    assert client.post(f"/admin/subscribers/{alice}/suppress").status_code == 400
    sign_in(client)
    # Signed in, but a post without the admin session's form token is refused.
    assert client.post(f"/admin/subscribers/{alice}/suppress",
                       data={"csrf_token": "x"}).status_code == 400
    assert status_of(engine, alice) == "confirmed"


# ------------------------------------------------------------------ with a broker


@pytest.mark.redis
def test_with_a_broker_the_workers_send_the_retry_and_write_the_cards(
        engine: Engine, web_settings: Settings, redis_url: str, database_url: str,
        tmp_path: Path) -> None:

    brokered = web_settings.model_copy(update={"redis_url": redis_url})
    app = create_app(brokered, engine=engine)
    desk = app.test_client()
    add_operator(engine)
    sign_in(desk)
    bob = reader(app, "bob@example.org")
    _, second, third = todays_papers(engine)
    summarize_pending(engine, web_settings)
    edition_id, _, _ = prepare_edition(engine, "daily", today().date())
    with Session(engine) as session:
        session.execute(text("UPDATE deliveries SET status = 'failed', error = 'HTTP 503'"))
        session.execute(text("UPDATE cards SET status = 'failed', failures = 5, "
                             "last_error = 'the model refused' WHERE paper_id = :p"),
                        {"p": second})
        # Another failed card, still due: a re-run of one paper must leave it to the sweep.
        session.execute(text("UPDATE cards SET status = 'failed', failures = 1, "
                             "last_error = 'timeout' WHERE paper_id = :p"), {"p": third})
        session.commit()

    def settled(query: str, want: object) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with Session(engine) as session:
                if session.execute(text(query)).scalar_one() == want:
                    return
            time.sleep(0.2)
        raise AssertionError(f"{query} never gave {want!r}:\n"
                             + (tmp_path / "worker.log").read_text()[-3000:])

    env = {"REDIS_URL": redis_url, "DATABASE_URL": database_url, "MAIL_BACKEND": "file",
           "OUTBOX_DIR": str(web_settings.outbox_dir)}
    with celery_worker(env, "llm,mail", tmp_path / "worker.log"):
        page = f"/admin/editions/{edition_id}"
        assert post(desk, page, f"{page}/retry").status_code == 303
        assert "queued for the mail workers" in desk.get(page).get_data(as_text=True)
        settled(f"SELECT status FROM deliveries WHERE subscriber_id = {bob}", "sent")
        assert [m["To"] for m in outbox(web_settings)] == ["bob@example.org"]

        assert post(desk, "/admin/cards", f"/admin/cards/{second}/rerun").status_code == 303
        assert "Queued for the card writers" in desk.get("/admin/cards").get_data(as_text=True)
        settled(f"SELECT status FROM cards WHERE paper_id = {second}", "ok")
        log = tmp_path / "worker.log"
        deadline = time.monotonic() + 60
        while "summarize source=" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert "written=1 " in log.read_text()
        settled(f"SELECT status FROM cards WHERE paper_id = {third}", "failed")
