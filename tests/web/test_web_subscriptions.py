"""Sign-up, confirmation, manage and unsubscribe pages, driven through the Flask test client."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, func
from sqlmodel import Session, select

from newsletter.config import Settings
from newsletter.readers import reader_input
from newsletter.readers import subscriber as subs
from newsletter.readers.tables import Consent, Subscriber
from newsletter.topics.taxonomy import built_in
from newsletter.web import create_app
from tests.support import web
from tests.support.web import (
    csrf_token,
    html_of,
    link,
    outbox,
    session_form_token,
    subscribe,
    text_of,
)

# The shared web fixtures, collected by pytest from this module's names.
app, client, web_settings = web.app, web.client, web.web_settings

PROPERTY = settings(max_examples=40, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


def _status(engine: Engine, email: str) -> str | None:
    with Session(engine) as session:
        row = subs.find_by_email(session, email)
        return row.status if row else None


def _topics(engine: Engine, email: str) -> list[str]:
    with Session(engine) as session:
        row = subs.find_by_email(session, email)
        assert row is not None
        return list(subs.preferences_of(session, row).topics)


def _count(engine: Engine) -> int:
    with Session(engine) as session:
        return session.exec(select(func.count()).select_from(Subscriber)).one()


def _confirmed(client: FlaskClient, web_settings: Settings, email: str,
               topics: tuple[str, ...] = ("llm",)) -> tuple[str, str]:
    """Subscribe and confirm; returns the manage and unsubscribe paths from the welcome mail."""
    assert subscribe(client, email, topics).status_code == 200
    confirm = link(outbox(web_settings)[-1], "confirm")
    answer = client.post(confirm, data={"csrf_token": csrf_token(client, confirm)})
    assert answer.status_code == 200, answer.get_data(as_text=True)
    welcome = outbox(web_settings)[-1]
    assert welcome["Subject"] == "Welcome to Paperwire"
    return link(welcome, "manage"), link(welcome, "unsubscribe")


# ---------------------------------------------------------------- the happy path


def test_double_opt_in(client: FlaskClient, web_settings: Settings, engine: Engine) -> None:
    answer = subscribe(client, "Reader@Example.com", ("llm", "efficient-ml"), "weekly")
    assert answer.status_code == 200 and "Check your inbox" in answer.get_data(as_text=True)
    assert _status(engine, "reader@example.com") == "pending"
    [mail] = outbox(web_settings)
    assert mail["To"] == "reader@example.com"
    assert "Large Language Models, Efficient ML" in " ".join(text_of(mail).split())
    assert "digest of new papers in machine learning" in " ".join(text_of(mail).split())
    assert "Confirm my subscription" in html_of(mail)
    confirm = link(mail, "confirm")

    # Opening the link (or a mail scanner fetching it) confirms nothing.
    page = client.get(confirm)
    assert page.status_code == 200 and "reader@example.com" in page.get_data(as_text=True)
    assert _status(engine, "reader@example.com") == "pending"

    done = client.post(confirm, data={"csrf_token": csrf_token(client, confirm)})
    assert done.status_code == 200 and "You are subscribed" in done.get_data(as_text=True)
    assert _status(engine, "reader@example.com") == "confirmed"
    welcome = outbox(web_settings)[-1]
    assert welcome["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert welcome["List-Unsubscribe"] == f"<http://paperwire.test{link(welcome, 'unsubscribe')}>"
    with Session(engine) as session:
        actions = [c.action for c in session.exec(select(Consent))]
    assert actions == ["confirm"]  # an anonymous sign-up proves no consent; the click does


def test_the_confirmation_mail_says_both_steps(client: FlaskClient,
                                               web_settings: Settings) -> None:
    # Confirming takes two presses: the mail's link, then the page's button. The mail
    # must not promise one click, and must name the button the page really has.
    assert subscribe(client, "reader@example.com", ("llm",)).status_code == 200
    [mail] = outbox(web_settings)
    text = " ".join(text_of(mail).split())
    html = " ".join(html_of(mail).split())
    for part in (text, html):
        assert "one click" not in part.lower()
    assert "Two steps: open this link, then press “Yes, subscribe me” on the page" in text
    assert ("Two steps: press the button below, then press “Yes, subscribe me” on the page"
            in html)
    page = client.get(link(mail, "confirm")).get_data(as_text=True)
    assert ">Yes, subscribe me</button>" in page


def test_confirmation_link_works_once(client: FlaskClient, web_settings: Settings,
                                      engine: Engine) -> None:
    subscribe(client, "reader@example.com")
    confirm = link(outbox(web_settings)[-1], "confirm")
    token = csrf_token(client, confirm)
    assert client.post(confirm, data={"csrf_token": token}).status_code == 200
    again = client.post(confirm, data={"csrf_token": token})
    assert again.status_code == 410 and "no longer works" in again.get_data(as_text=True)
    assert client.get(confirm).status_code == 410
    # After unsubscribing, the old confirmation link must not subscribe anyone again.
    unsubscribe = link(outbox(web_settings)[-1], "unsubscribe")
    assert client.post(unsubscribe).status_code == 200
    assert client.post(confirm, data={"csrf_token": token}).status_code == 410
    assert _status(engine, "reader@example.com") == "unsubscribed"


def test_expired_confirmation(client: FlaskClient, web_settings: Settings, engine: Engine,
                              monkeypatch: pytest.MonkeyPatch) -> None:
    four_days_ago = time.time() - 4 * 86400
    monkeypatch.setattr("itsdangerous.timed.time.time", lambda: four_days_ago)
    subscribe(client, "reader@example.com")
    [mail] = outbox(web_settings)  # signed when sent, after the answer: four days ago too
    monkeypatch.undo()
    confirm = link(mail, "confirm")
    page = client.get(confirm)
    assert page.status_code == 410 and "expired" in page.get_data(as_text=True)
    assert client.post(confirm, data={"csrf_token": session_form_token(client)}).status_code == 410
    assert _status(engine, "reader@example.com") == "pending"


@pytest.mark.parametrize("kind", ["confirm", "manage", "unsubscribe"])
def test_tampered_links(client: FlaskClient, web_settings: Settings, engine: Engine,
                        kind: str) -> None:
    manage, unsubscribe = _confirmed(client, web_settings, "reader@example.com")
    subscribe(client, "other@example.com")
    path = {"confirm": link(outbox(web_settings)[-1], "confirm"), "manage": manage,
            "unsubscribe": unsubscribe}[kind]
    prefix, token = path.rsplit("/", 1)
    flipped = token[:5] + ("A" if token[5] != "A" else "B") + token[6:]
    for bad in (flipped, token[:-3], token + "x", "", "..", "a" * 500):
        target = f"{prefix}/{bad}"
        assert client.get(target).status_code in (404, 410), target
        answer = client.post(target, data={"csrf_token": session_form_token(client),
                                           "List-Unsubscribe": "One-Click"})
        assert answer.status_code in (404, 405, 410), target
    # A link made for one page does not open another.
    other = "/manage/" if kind != "manage" else "/unsubscribe/"
    assert client.get(other + token).status_code == 404
    assert _status(engine, "reader@example.com") == "confirmed"
    assert _status(engine, "other@example.com") == "pending"


# ---------------------------------------------------------------- enumeration and abuse


def test_same_answer_for_new_pending_confirmed_and_suppressed(
        client: FlaskClient, web_settings: Settings, engine: Engine) -> None:
    _confirmed(client, web_settings, "confirmed@example.com")
    subscribe(client, "pending@example.com")
    with Session(engine) as session:
        subs.suppress(session, "bounced@example.com", "bounce")
        session.commit()
    answers = {email: subscribe(client, email) for email in
               ("new@example.com", "pending@example.com", "confirmed@example.com",
                "bounced@example.com")}
    bodies = {a.get_data(as_text=True) for a in answers.values()}
    assert {a.status_code for a in answers.values()} == {200} and len(bodies) == 1
    sent_to = [m["To"] for m in outbox(web_settings)]
    assert "bounced@example.com" not in sent_to
    # Within ten minutes of the last mail, nobody gets another one.
    assert sent_to.count("pending@example.com") == 1
    assert sent_to.count("confirmed@example.com") == 2  # confirmation, welcome
    with Session(engine) as session:
        for row in session.exec(select(Subscriber)):
            row.last_confirmation_sent_at = datetime.now(UTC) - timedelta(minutes=11)
        session.commit()
    later = {subscribe(client, e).get_data(as_text=True) for e in answers}
    assert later == bodies
    mails = {m["To"]: m for m in outbox(web_settings)}
    # A confirmed reader gets a reminder with their manage link, not a second opt-in.
    assert mails["confirmed@example.com"]["Subject"] == "You already subscribe to Paperwire"
    assert "/manage/" in text_of(mails["confirmed@example.com"])
    assert mails["pending@example.com"]["Subject"] == "Confirm your Paperwire subscription"
    assert "bounced@example.com" not in mails
    assert _status(engine, "confirmed@example.com") == "confirmed"


def test_honeypot(client: FlaskClient, web_settings: Settings, engine: Engine) -> None:
    answer = subscribe(client, "bot@example.com", website="http://spam.example")
    assert answer.status_code == 200 and "Check your inbox" in answer.get_data(as_text=True)
    assert _count(engine) == 0 and outbox(web_settings) == []


def test_forms_that_act_for_a_reader_need_their_csrf_token(
    client: FlaskClient, web_settings: Settings, engine: Engine
) -> None:
    manage, _ = _confirmed(client, web_settings, "reader@example.com")
    fresh = create_app(web_settings, engine=engine).test_client()
    assert fresh.post(manage, data={"topics": "rl"}).status_code == 400
    assert fresh.post(manage + "/delete").status_code == 400
    assert _topics(engine, "reader@example.com") == ["llm"]
    subscribe(client, "second@example.com")
    confirm = link(outbox(web_settings)[-1], "confirm")
    assert fresh.post(confirm).status_code == 400
    assert _status(engine, "second@example.com") == "pending"


def test_the_front_page_sets_no_cookie_and_may_be_cached(client: FlaskClient,
                                                         engine: Engine) -> None:
    """Finding 10: the sign-up form carries no session token, so a visitor who only reads
    gets no cookie, and every visitor gets the same page."""
    first, second = client.get("/"), client.get("/")
    assert first.status_code == 200 and "Set-Cookie" not in first.headers
    assert "public" in first.headers["Cache-Control"]
    assert first.get_data() == second.get_data()
    assert 'name="csrf_token"' not in first.get_data(as_text=True)
    # Posting it needs no cookie either, and sets none.
    fresh = client.application.test_client()
    answer = fresh.post("/subscribe", data={"email": "r@example.com", "topics": "llm"})
    assert answer.status_code == 200 and "Set-Cookie" not in answer.headers
    assert _status(engine, "r@example.com") == "pending"


def test_signup_rate_limit(web_settings: Settings, engine: Engine) -> None:
    limited = web_settings.model_copy(update={"signup_rate_limit": "2/minute"})
    client = create_app(limited, engine=engine).test_client()
    assert subscribe(client, "one@example.com").status_code == 200
    assert subscribe(client, "two@example.com").status_code == 200
    third = subscribe(client, "three@example.com")
    assert third.status_code == 429 and "Slow down" in third.get_data(as_text=True)
    assert _status(engine, "three@example.com") is None
    assert client.get("/").status_code == 200  # reading the site is not limited


def test_bad_signups_are_clear_and_store_nothing(client: FlaskClient, engine: Engine) -> None:
    cases = [
        {"email": "not an address", "topics": ["llm"]},
        {"email": "r@example.com"},
        {"email": "r@example.com", "topics": ["llm", "astrology"]},
        {"email": "r@example.com\r\nBcc: x@example.com", "topics": ["llm"]},
        {"email": "r@example.com", "topics": ["llm"], "frequency": "hourly"},
        {"topics": ["llm"]},
    ]
    for data in cases:
        answer = client.post("/subscribe", data=data)
        assert answer.status_code == 400, data
        assert 'class="error"' in answer.get_data(as_text=True)
    assert _count(engine) == 0
    too_big = client.post("/subscribe", data={"email": "r@example.com", "topics": "llm",
                                              "x": "y" * 100_000})
    assert too_big.status_code == 413 and _count(engine) == 0


_field = st.one_of(
    st.text(max_size=40),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=300),
    st.sampled_from(["r@example.com", "R@EXAMPLE.COM", "a@b\r\n.com", "a\n@example.com",
                     "\u202e@example.com", "x" * 10_240, "llm", "weekly", ""]),
)


@PROPERTY
@given(email=st.none() | _field, topics=st.lists(_field | st.sampled_from(["llm", "rl"]),
                                                 max_size=5),
       frequency=st.none() | _field, honeypot=st.none() | st.just(""))
def test_hostile_signups_never_crash(client: FlaskClient, engine: Engine, email: str | None,
                                     topics: list[str], frequency: str | None,
                                     honeypot: str | None) -> None:
    data: dict[str, object] = {"topics": topics}
    for name, value in (("email", email), ("frequency", frequency), ("website", honeypot)):
        if value is not None:
            data[name] = value
    before = _count(engine)
    answer = client.post("/subscribe", data=data)
    assert answer.status_code in (200, 400), answer.status_code
    after = _count(engine)
    if answer.status_code == 400:
        assert after == before
    else:
        address = reader_input.parse_email(email or "")
        assert _status(engine, address) is not None
        assert set(_topics(engine, address)) <= {"llm", "rl"} or after == before


@PROPERTY
@given(include=_field, exclude=_field, authors=_field, max_papers=_field,
       topics=st.lists(_field | st.sampled_from(["vision"]), max_size=4),
       frequency=st.none() | _field)
def test_hostile_preferences_never_crash(client: FlaskClient, web_settings: Settings,
                                         engine: Engine, include: str, exclude: str,
                                         authors: str, max_papers: str, topics: list[str],
                                         frequency: str | None) -> None:
    with Session(engine) as session:
        existing = subs.find_by_email(session, "reader@example.com")
    if existing is None:
        _confirmed(client, web_settings, "reader@example.com")
    manage = link(outbox(web_settings)[1], "manage")
    with Session(engine) as session:
        row = subs.find_by_email(session, "reader@example.com")
        assert row is not None
        before = subs.profile(session, row)["preferences"]
    data: dict[str, object] = {"csrf_token": csrf_token(client, manage), "topics": topics,
                               "include_keywords": include, "exclude_keywords": exclude,
                               "authors": authors, "max_papers": max_papers}
    if frequency is not None:
        data["frequency"] = frequency
    answer = client.post(manage, data=data)
    assert answer.status_code in (303, 400), answer.status_code
    with Session(engine) as session:
        row = subs.find_by_email(session, "reader@example.com")
        assert row is not None
        after = subs.profile(session, row)["preferences"]
    if answer.status_code == 400:
        assert after == before
    else:
        assert answer.headers["Location"].startswith("/manage/")
        assert set(after["topics"]) <= {"vision"} | set(built_in().slugs)


@PROPERTY
@given(st.text(min_size=1, max_size=300))
def test_garbage_tokens_are_clear_4xx(client: FlaskClient, garbage: str) -> None:
    token = quote(garbage, safe="")
    for path in (f"/confirm/{token}", f"/manage/{token}", f"/unsubscribe/{token}",
                 f"/manage/{token}/export", f"/papers/{token}", f"/days/{token}"):
        assert 400 <= client.get(path).status_code < 500, path
    assert 400 <= client.post(f"/unsubscribe/{token}",
                              data="List-Unsubscribe=One-Click",
                              content_type="application/x-www-form-urlencoded"
                              ).status_code < 500


# ---------------------------------------------------------------- manage


def test_manage_preferences(client: FlaskClient, web_settings: Settings,
                            engine: Engine) -> None:
    manage, _ = _confirmed(client, web_settings, "reader@example.com")
    page = client.get(manage)
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and "reader@example.com" in html
    assert page.headers["Cache-Control"] == "no-store"
    assert 'value="llm" id="topic-llm" aria-describedby="topic-llm-d" checked' in html
    saved = client.post(manage, data={
        "csrf_token": csrf_token(client, manage), "topics": ["rl", "robotics"],
        "frequency": "weekly", "include_keywords": "world models, <b>sim2real</b>",
        "exclude_keywords": "survey", "authors": "Sergey Levine", "max_papers": "7",
        "include_revised": "on", "next": "https://evil.example/"})
    assert saved.status_code == 303
    assert saved.headers["Location"].startswith("/manage/")  # never where `next` says
    with Session(engine) as session:
        row = subs.find_by_email(session, "reader@example.com")
        prefs = subs.profile(session, row)["preferences"]  # type: ignore[arg-type]
    assert prefs == {"topics": ["rl", "robotics"], "frequency": "weekly",
                     "include_keywords": ["world models", "<b>sim2real</b>"],
                     "exclude_keywords": ["survey"], "authors": ["Sergey Levine"],
                     "max_papers": 7, "include_revised": True,
                     # A form without the send-time fields keeps what was stored.
                     "time_zone": None, "send_hour": None, "send_weekday": None,
                     # Nor did it choose a language: English, the default.
                     "language": "en"}
    shown = client.get(saved.headers["Location"]).get_data(as_text=True)
    assert "Saved." in shown and "&lt;b&gt;sim2real&lt;/b&gt;" in shown

    refused = client.post(manage, data={"csrf_token": csrf_token(client, manage),
                                        "topics": [], "max_papers": "0",
                                        "authors": "Kept Author"})
    assert refused.status_code == 400
    body = refused.get_data(as_text=True)
    assert "Pick at least one topic." in body and "Kept Author" in body
    assert _topics(engine, "reader@example.com") == ["rl", "robotics"]


def test_a_reader_picks_when_their_digest_arrives_on_sign_up_and_on_the_manage_page(
        client: FlaskClient, web_settings: Settings, engine: Engine) -> None:
    front = client.get("/").get_data(as_text=True)
    # A new reader is offered the operator's default, and every zone by region.
    assert '<option value="UTC" selected>UTC</option>' in front
    assert '<option value="7" selected>07:00</option>' in front
    assert '<optgroup label="America">' in front and ">America/Argentina/Buenos Aires<" in front

    refused = subscribe(client, "reader@example.com", ("llm",), "weekly",
                        time_zone="Europe/Atlantis", send_hour="24", send_weekday="someday")
    body = refused.get_data(as_text=True)
    assert refused.status_code == 400 and _count(engine) == 0
    assert "No time zone &#39;Europe/Atlantis&#39;" in body
    assert "Choose an hour from 0 to 23." in body and "Choose a weekday" in body

    assert subscribe(client, "reader@example.com", ("llm",), "weekly",
                     time_zone="America/Montreal", send_hour="6",
                     send_weekday="fri").status_code == 200
    confirm = link(outbox(web_settings)[-1], "confirm")
    client.post(confirm, data={"csrf_token": csrf_token(client, confirm)})
    manage = link(outbox(web_settings)[-1], "manage")

    def stored() -> tuple[object, ...]:
        with Session(engine) as session:
            row = subs.find_by_email(session, "reader@example.com")
            prefs = subs.profile(session, row)["preferences"]  # type: ignore[arg-type]
        return prefs["time_zone"], prefs["send_hour"], prefs["send_weekday"]

    assert stored() == ("America/Montreal", 6, 4)  # the confirmation applied them
    page = client.get(manage).get_data(as_text=True)
    assert '<option value="America/Montreal" selected>' in page
    assert '<option value="6" selected>06:00</option>' in page
    assert '<option value="fri" selected>Friday</option>' in page

    form = {"csrf_token": csrf_token(client, manage), "topics": ["llm"],
            "frequency": "daily", "time_zone": "Asia/Kolkata", "send_hour": "21",
            "send_weekday": "fri"}
    assert client.post(manage, data=form).status_code == 303
    assert stored() == ("Asia/Kolkata", 21, 4)
    bad = client.post(manage, data={**form, "time_zone": "../../etc/passwd"})
    assert bad.status_code == 400 and "No time zone" in bad.get_data(as_text=True)
    assert stored() == ("Asia/Kolkata", 21, 4)


def test_export_and_delete(client: FlaskClient, web_settings: Settings,
                           engine: Engine) -> None:
    manage, unsubscribe = _confirmed(client, web_settings, "reader@example.com")
    exported = client.get(manage + "/export")
    assert exported.status_code == 200 and "attachment" in exported.headers[
        "Content-Disposition"]
    data = json.loads(exported.get_data(as_text=True))
    assert data["email"] == "reader@example.com" and data["status"] == "confirmed"
    assert [c["action"] for c in data["consents"]] == ["confirm"]
    assert data["preferences"]["topics"] == ["llm"]

    assert client.get(manage + "/delete").status_code == 200
    assert _status(engine, "reader@example.com") == "confirmed"  # GET deletes nothing
    gone = client.post(manage + "/delete", data={"csrf_token": csrf_token(client, manage)})
    assert gone.status_code == 200 and "deleted" in gone.get_data(as_text=True)
    assert _count(engine) == 0
    for path in (manage, manage + "/export", unsubscribe):
        assert client.get(path).status_code == 410, path
    assert client.post(unsubscribe, data="List-Unsubscribe=One-Click",
                       content_type="application/x-www-form-urlencoded").status_code == 410


# ---------------------------------------------------------------- unsubscribe


def test_get_never_unsubscribes(client: FlaskClient, web_settings: Settings,
                                engine: Engine) -> None:
    _, unsubscribe = _confirmed(client, web_settings, "reader@example.com")
    for _ in range(3):
        page = client.get(unsubscribe)
        assert page.status_code == 200 and "Unsubscribe" in page.get_data(as_text=True)
    assert client.head(unsubscribe).status_code == 200
    assert _status(engine, "reader@example.com") == "confirmed"


def test_one_click_with_no_cookie_and_no_form_token(
        app: Flask, client: FlaskClient, web_settings: Settings, engine: Engine) -> None:
    _, unsubscribe = _confirmed(client, web_settings, "reader@example.com")
    mail_provider = app.test_client(use_cookies=False)
    answer = mail_provider.post(unsubscribe, data="List-Unsubscribe=One-Click",
                                content_type="application/x-www-form-urlencoded")
    assert answer.status_code == 200 and "Location" not in answer.headers
    assert answer.get_data(as_text=True) == "You are unsubscribed.\n"
    assert _status(engine, "reader@example.com") == "unsubscribed"
    again = mail_provider.post(unsubscribe, data="List-Unsubscribe=One-Click",
                               content_type="application/x-www-form-urlencoded")
    assert again.status_code == 200 and _status(engine, "reader@example.com") == "unsubscribed"


def test_unsubscribe_button_then_resubscribe(client: FlaskClient, web_settings: Settings,
                                             engine: Engine) -> None:
    manage, unsubscribe = _confirmed(client, web_settings, "reader@example.com")
    mails = len(outbox(web_settings))
    goodbye = client.post(unsubscribe)
    assert goodbye.status_code == 200 and "Goodbye" in goodbye.get_data(as_text=True)
    assert _status(engine, "reader@example.com") == "unsubscribed"
    assert len(outbox(web_settings)) == mails  # a goodbye page, no goodbye email
    page = client.get(manage).get_data(as_text=True)
    assert "You are unsubscribed" in page
    back = client.post(manage + "/resubscribe", data={"csrf_token": csrf_token(client, manage)})
    assert back.status_code == 303 and _status(engine, "reader@example.com") == "confirmed"


@pytest.mark.redis
def test_rate_limit_counts_in_redis_when_configured(web_settings: Settings,
                                                    engine: Engine) -> None:
    from tests.support.servers import redis_server

    with redis_server() as url:
        limited = web_settings.model_copy(update={"signup_rate_limit": "1/minute",
                                                  "redis_url": url})
        # Two app instances (two gunicorn workers) share one count.
        first = create_app(limited, engine=engine).test_client()
        second = create_app(limited, engine=engine).test_client()
        assert subscribe(first, "one@example.com").status_code == 200
        assert subscribe(second, "two@example.com").status_code == 429
        assert _status(engine, "two@example.com") is None
