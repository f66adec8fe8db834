"""Engagement from SendGrid's events: signed batches through the real webhook route update
each delivery's first times, the first click on each paper it carried (each reader once)
and the reader's last activity, once per event; readers we do not know and readers who
opted out leave nothing; the operator's tracking choice and each reader's opt-out reach
SendGrid's requests."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from flask.testing import FlaskClient
from sqlalchemy import Engine, func, text
from sqlmodel import Session, select

from newsletter import db, engagement
from newsletter.config import ConfigError, Settings, load_settings
from newsletter.delivery import Delivery, DigestEdition, SentPaper
from newsletter.engagement.events import PaperLinks, clicked_paper, papers_of
from newsletter.ingest.paper import Paper
from newsletter.mail.batch import Batch, Recipient
from newsletter.mail.senders import Message
from newsletter.mail.sendgrid import SendGridSender
from newsletter.readers import reader_input
from newsletter.readers import subscriber as subs
from newsletter.readers.tables import Preferences, Subscriber, WebhookEvent
from newsletter.subscriptions import privacy
from newsletter.web import create_app
from tests.support import web
from tests.support.sendgrid_server import SendGridServer, validate

web_settings = web.web_settings
SITE = "http://paperwire.test"
KEY = "SG.test-key"


# ------------------------------------------------------------ which paper a link opens


@pytest.mark.parametrize(("url", "key"), [
    ("https://arxiv.org/abs/2609.26811", "2609.26811"),
    ("https://arxiv.org/abs/2609.26811v3", "2609.26811"),
    ("http://www.arxiv.org/abs/2609.26811v3?context=cs.LG#x", "2609.26811"),
    ("https://arxiv.org/pdf/2609.26811v2", "2609.26811"),
    ("https://arxiv.org/pdf/2609.26811v2.pdf", "2609.26811"),
    ("https://export.arxiv.org/pdf/2609.26811", "2609.26811"),
    ("https://arxiv.org/html/2609.26811v1", "2609.26811"),
    ("https://arxiv.org/abs/hep-th/9901001v2", "hep-th/9901001"),
    ("https://arxiv.org/abs/hep-th%2F9901001", "hep-th/9901001"),
    ("https://arxiv.org/abs/math.GT/0309136", "math/0309136"),
    ("http://paperwire.test/papers/2609.26811", "2609.26811"),
    ("https://paperwire.test/papers/2609.26811?rate=7.12.abcdefghijklmnop", "2609.26811"),
    ("http://PaperWire.test/papers/hep-th/9901001", "hep-th/9901001"),
    ("http://paperwire.test/papers/lab-feed:0123456789abcdef", "lab-feed:0123456789abcdef"),
])
def test_a_paper_link_names_its_paper(url: str, key: str) -> None:
    assert engagement.paper_key(url, SITE) == key


@pytest.mark.parametrize("url", [
    "http://paperwire.test/rate/7.12.abcdefghijklmnop/up",  # a rating link holds a paper id
    "http://paperwire.test/manage/7.key.sig",
    "http://paperwire.test/unsubscribe/7.key.sig",
    "http://paperwire.test/digest/42.sig",
    "http://paperwire.test/days/2026-09-24",
    "http://paperwire.test/",
    "http://paperwire.test/papers/",
    "http://elsewhere.test/papers/2609.26811",  # another site's paper pages are not ours
    "http://paperwire.test:8080/papers/2609.26811",  # another port is another site
    "https://arxiv.org/list/cs.LG/new",
    "https://arxiv.org/abs/2609.2681",  # too few digits for the month
    "https://github.com/lab/code",
    "mailto:someone@example.org",
    "javascript:alert(1)",
    "not a url at all",
    "http://[::1",  # unparseable
    "",
])
def test_other_links_name_no_paper(url: str) -> None:
    assert engagement.paper_key(url, SITE) is None


def test_a_site_under_a_path_has_its_paper_pages_under_it() -> None:
    site = "https://example.org/paperwire"
    assert engagement.paper_key("https://example.org/paperwire/papers/2609.26811", site) \
        == "2609.26811"
    assert engagement.paper_key("https://example.org/papers/2609.26811", site) is None


def test_a_click_counts_for_the_digest_paper_it_opens() -> None:
    papers = [PaperLinks(1, "2609.26811", frozenset({"arxiv.org/abs/2609.26811"})),
              PaperLinks(2, "lab:00ff", frozenset({"lab.example/item/9",
                                                   "github.com/lab/code"}))]
    assert clicked_paper(papers, "https://arxiv.org/pdf/2609.26811v1", SITE) == 1
    assert clicked_paper(papers, "http://paperwire.test/papers/lab:00ff", SITE) == 2
    # A feed's own links and the code link count for their paper too.
    assert clicked_paper(papers, "https://github.com/lab/code#readme", SITE) == 2
    assert clicked_paper(papers, "http://lab.example/item/9", SITE) == 2
    # A paper the digest did not carry, and links that are no paper's.
    assert clicked_paper(papers, "https://arxiv.org/abs/2609.99999", SITE) is None
    assert clicked_paper(papers, "http://paperwire.test/rate/7.1.abcdefghijklmnop/up",
                         SITE) is None
    assert clicked_paper(papers, None, SITE) is None


# ------------------------------------------------------------ the webhook, for real


@pytest.fixture
def key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
def client(web_settings: Settings, engine: Engine, key: ec.EllipticCurvePrivateKey
           ) -> FlaskClient:
    der = key.public_key().public_bytes(serialization.Encoding.DER,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
    configured = web_settings.model_copy(update={
        "sendgrid_webhook_public_key": base64.b64encode(der).decode()})
    return create_app(configured, engine=engine).test_client(use_cookies=False)


def post(client: FlaskClient, key: ec.EllipticCurvePrivateKey, events: list[dict]) -> dict:
    body = json.dumps(events).encode()
    timestamp = str(int(time.time()))
    signature = key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    answer = client.post("/webhooks/sendgrid", data=body, headers={
        "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
        "X-Twilio-Email-Event-Webhook-Timestamp": timestamp,
        "Content-Type": "application/json"})
    assert answer.status_code == 200, answer.get_data(as_text=True)
    return answer.json


T0 = 1_790_000_000  # 2026-09-21 14:13:20 UTC: SendGrid's `timestamp`, Unix seconds


def event(ident: str, kind: str, delivered: Sent, offset: int = 0, **extra: object) -> dict:
    """An event as SendGrid posts it: custom_args echoed at the top level."""
    return {"sg_event_id": ident, "event": kind, "email": delivered.email,
            "timestamp": T0 + offset, "delivery_id": str(delivered.delivery_id), **extra}


@dataclass(frozen=True)
class Sent:
    email: str
    subscriber_id: int
    delivery_id: int
    edition_id: int
    paper_ids: tuple[int, ...]


PAPERS = (("2609.00001", "Sparse attention at scale"), ("2609.00002", "Quantized decoding"),
          ("hep-th/9901001", "An old-style paper"))


def sent_digest(engine: Engine, email: str, *, tracking: bool = True,
                day: date = date(2026, 9, 21), frequency: str = "daily") -> Sent:
    """A confirmed reader and the digest they were sent, carrying PAPERS."""
    with db.transaction(engine) as session:
        papers = []
        for arxiv_id, title in PAPERS:
            paper = session.exec(select(Paper).where(Paper.key == arxiv_id)).first()
            if paper is None:
                paper = Paper(key=arxiv_id, arxiv_id=arxiv_id, title=title, abstract="...",
                              announce_type="new", announced_on=day,
                              abs_url=f"https://arxiv.org/abs/{arxiv_id}",
                              pdf_url=f"https://arxiv.org/pdf/{arxiv_id}v1",
                              code_url="https://github.com/lab/code" if arxiv_id.endswith(
                                  "2") else None)
                session.add(paper)
                session.flush()
            papers.append(paper)
        row = subs.ensure(session, email, datetime.now(UTC))
        prefs = subs.update_preferences(session, row, reader_input.parse_preferences(["llm"]))
        prefs.tracking = tracking
        subs.confirm_now(session, row, "admin", reader_input.Client())
        edition = session.exec(select(DigestEdition).where(
            DigestEdition.day == day, DigestEdition.frequency == frequency)).first()
        if edition is None:
            edition = DigestEdition(frequency=frequency, day=day, window_start=day)
            session.add(edition)
            session.flush()
        delivery = Delivery(edition_id=edition.id, subscriber_id=row.id, status="sent",
                            sent_at=datetime.now(UTC), paper_count=len(papers))
        session.add(delivery)
        session.flush()
        for position, paper in enumerate(papers):
            session.add(SentPaper(delivery_id=delivery.id, subscriber_id=row.id,
                                  paper_id=paper.id, position=position))
        return Sent(email, row.id, delivery.id, edition.id, tuple(p.id for p in papers))


def first_times(engine: Engine, delivery_id: int) -> dict[str, datetime | None]:
    with Session(engine) as session:
        row = session.get(Delivery, delivery_id)
        assert row is not None
        return {name: _utc(getattr(row, name)) for name in
                ("delivered_at", "opened_at", "clicked_at", "bounced_at")}


def _utc(value: datetime | None) -> datetime | None:
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


def clicks(engine: Engine) -> dict[tuple[int, int], int]:
    """Readers who clicked through to each paper, by edition and paper."""
    with engine.connect() as conn:
        return {(e, p): n for e, p, n in conn.execute(text(
            "SELECT d.edition_id, s.paper_id, COUNT(*) FROM sent_papers s "
            "JOIN deliveries d ON d.id = s.delivery_id WHERE s.clicked_at IS NOT NULL "
            "GROUP BY d.edition_id, s.paper_id"))}


def first_clicks(engine: Engine, delivery_id: int) -> dict[int, datetime]:
    """When the reader first went to each paper of their digest."""
    with Session(engine) as session:
        return {row.paper_id: _utc(row.clicked_at) for row in session.exec(
            select(SentPaper).where(SentPaper.delivery_id == delivery_id,
                                    SentPaper.clicked_at.is_not(None)))}  # type: ignore[union-attr]


def last_active(engine: Engine, subscriber_id: int) -> datetime | None:
    with Session(engine) as session:
        row = session.get(Subscriber, subscriber_id)
        return _utc(row.last_active_at) if row else None


def stored_events(engine: Engine) -> list[str]:
    with Session(engine) as session:
        return sorted(session.exec(select(WebhookEvent.sg_event_id)))


def at(offset: int) -> datetime:
    return datetime.fromtimestamp(T0 + offset, UTC)


def test_events_fill_first_times_paper_clicks_and_last_activity(
    client: FlaskClient, engine: Engine, key: ec.EllipticCurvePrivateKey
) -> None:
    ada = sent_digest(engine, "ada@example.com")
    bob = sent_digest(engine, "bob@example.com")
    p1, p2, old = ada.paper_ids
    answer = post(client, key, [
        event("d1", "delivered", ada, 5),
        event("o0", "open", ada, 20, sg_machine_open=True),  # Apple's prefetch: not a read
        event("o1", "open", ada, 60, sg_machine_open=False),
        event("o2", "open", ada, 30),  # arrives later, happened earlier: the first open
        event("c1", "click", ada, 90, url="https://arxiv.org/pdf/2609.00001v1"),
        event("c2", "click", ada, 95, url=f"{SITE}/papers/2609.00001?rate=tok"),
        event("c3", "click", ada, 99, url="https://github.com/lab/code"),
        event("c4", "click", ada, 99, url="https://arxiv.org/abs/hep-th/9901001v1"),
        # Links that open no paper: still a click on the digest, no paper's.
        event("c5", "click", ada, 100, url=f"{SITE}/manage/{ada.subscriber_id}.k.sig"),
        event("c6", "click", ada, 101, url=f"{SITE}/rate/{ada.subscriber_id}.{p1}.x/up"),
        event("c7", "click", bob, 200, url="https://arxiv.org/abs/2609.00001"),
        event("b1", "bounce", bob, 300),
    ])
    assert answer == {"received": 12, "duplicates": 0, "suppressed": 1}
    assert first_times(engine, ada.delivery_id) == {
        "delivered_at": at(5), "opened_at": at(30), "clicked_at": at(90), "bounced_at": None}
    assert first_times(engine, bob.delivery_id) == {
        "delivered_at": None, "opened_at": None, "clicked_at": at(200),
        "bounced_at": at(300)}
    # Each reader once per paper, at their first click; the rating and manage links count
    # for none.
    assert clicks(engine) == {(ada.edition_id, p1): 2, (ada.edition_id, p2): 1,
                              (ada.edition_id, old): 1}
    assert first_clicks(engine, ada.delivery_id) == {p1: at(90), p2: at(99), old: at(99)}
    assert first_clicks(engine, bob.delivery_id) == {p1: at(200)}
    assert last_active(engine, ada.subscriber_id) == at(101)
    assert last_active(engine, bob.subscriber_id) == at(200)
    # The machine open changed nothing, and is not kept.
    assert "o0" not in stored_events(engine)


def test_a_replayed_batch_counts_once(
    client: FlaskClient, engine: Engine, key: ec.EllipticCurvePrivateKey
) -> None:
    ada = sent_digest(engine, "ada@example.com")
    batch = [event("o1", "open", ada, 10),
             event("c1", "click", ada, 20, url="https://arxiv.org/abs/2609.00002")]
    assert post(client, key, batch)["duplicates"] == 0
    assert post(client, key, batch) == {"received": 2, "duplicates": 2, "suppressed": 0}
    # SendGrid retries single events too, inside another batch.
    assert post(client, key, [batch[1], event("c2", "click", ada, 30,
                                              url="https://arxiv.org/abs/2609.00002")]
                )["duplicates"] == 1
    assert clicks(engine) == {(ada.edition_id, ada.paper_ids[1]): 1}  # one reader
    assert stored_events(engine) == ["c1", "c2", "o1"]


def test_events_for_unknown_or_deleted_readers_are_ignored(
    client: FlaskClient, engine: Engine, key: ec.EllipticCurvePrivateKey
) -> None:
    gone = sent_digest(engine, "gone@example.com")
    kept = sent_digest(engine, "kept@example.com")
    with db.transaction(engine) as session:
        privacy.erase(session, session.get(Subscriber, gone.subscriber_id))
    stranger = Sent("stranger@example.com", 0, 2_000_000, kept.edition_id, ())
    answer = post(client, key, [
        event("g1", "open", gone, 10),
        event("g2", "click", gone, 20, url="https://arxiv.org/abs/2609.00001"),
        event("s1", "click", stranger, 30, url="https://arxiv.org/abs/2609.00001"),
        # A real delivery id with another address: not this reader's event.
        {**event("m1", "click", kept, 40, url="https://arxiv.org/abs/2609.00001"),
         "email": "someone-else@example.com"},
        {**event("x1", "open", kept, 50), "delivery_id": "99999999999"},  # no row id
        {**event("x2", "open", kept, 50), "delivery_id": "-3"},
        {"sg_event_id": "n1", "event": "open", "email": "nobody@example.com",
         "timestamp": T0},
    ])
    assert answer == {"received": 7, "duplicates": 0, "suppressed": 0}
    assert clicks(engine) == {} and stored_events(engine) == []
    assert first_times(engine, kept.delivery_id) == dict.fromkeys(
        ("delivered_at", "opened_at", "clicked_at", "bounced_at"))
    assert last_active(engine, kept.subscriber_id) is None


def test_a_reader_who_opted_out_leaves_nothing_but_a_bounce_still_suppresses(
    client: FlaskClient, engine: Engine, key: ec.EllipticCurvePrivateKey
) -> None:
    quiet = sent_digest(engine, "quiet@example.com", tracking=False)
    answer = post(client, key, [
        event("d1", "delivered", quiet, 5),
        event("o1", "open", quiet, 10),
        event("c1", "click", quiet, 20, url="https://arxiv.org/abs/2609.00001"),
        {"sg_event_id": "w1", "event": "delivered", "email": quiet.email,
         "timestamp": T0},  # their welcome mail's
    ])
    assert answer["suppressed"] == 0
    assert clicks(engine) == {} and stored_events(engine) == []
    assert first_times(engine, quiet.delivery_id)["opened_at"] is None
    assert last_active(engine, quiet.subscriber_id) is None
    answer = post(client, key, [event("b1", "bounce", quiet, 30)])
    assert answer["suppressed"] == 1
    with Session(engine) as session:
        assert subs.is_suppressed(session, quiet.email)
    assert first_times(engine, quiet.delivery_id)["bounced_at"] is None


def test_received_events_are_forgotten_after_the_retention_days(engine: Engine) -> None:
    now = datetime(2026, 11, 1, 12, tzinfo=UTC)
    with db.transaction(engine) as session:
        for ident, age in (("old", 31), ("edge", 30), ("new", 1)):
            session.add(WebhookEvent(sg_event_id=ident, event="open",
                                          email="a@example.com",
                                          received_at=now - timedelta(days=age, seconds=1)))
    with db.transaction(engine) as session:
        assert engagement.forget_old_events(session, now, days=30) == 2
    assert stored_events(engine) == ["new"]
    with db.transaction(engine) as session:
        assert engagement.forget_old_events(session, now, days=30) == 0


def test_the_scheduled_task_forgets_by_the_configured_days(
    engine: Engine, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from newsletter.config import settings
    from workers.tasks import forget_old_events

    with db.transaction(engine) as session:
        session.add(WebhookEvent(sg_event_id="old", event="open",
                                      received_at=datetime.now(UTC) - timedelta(days=8)))
        session.add(WebhookEvent(sg_event_id="new", event="open",
                                      received_at=datetime.now(UTC) - timedelta(days=6)))
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("ENGAGEMENT_RETENTION_DAYS", "7")
    settings.cache_clear()
    try:
        assert forget_old_events() == 1  # the task's body, as a worker runs it
    finally:
        settings.cache_clear()
    assert stored_events(engine) == ["new"]


def test_the_cleanup_is_a_nightly_beat_entry_with_its_own_setting() -> None:
    from workers.app import beat_entries

    entry = beat_entries(Settings(engagement_cleanup_schedule="5 2 * * *"))["forget-old-events"]
    assert entry["task"] == "paperwire.forget_old_events"
    assert entry["schedule"].hour == {2} and entry["schedule"].minute == {5}


def test_tracking_and_retention_settings_are_checked_at_start(
    monkeypatch: pytest.MonkeyPatch
) -> None:
    defaults = load_settings()
    assert (defaults.sendgrid_click_tracking, defaults.sendgrid_open_tracking,
            defaults.engagement_retention_days, defaults.digest_most_read) == (
        False, False, 30, True)
    monkeypatch.setenv("SENDGRID_CLICK_TRACKING", "true")
    monkeypatch.setenv("SENDGRID_OPEN_TRACKING", "1")
    assert load_settings().sendgrid_click_tracking and load_settings().sendgrid_open_tracking
    monkeypatch.setenv("SENDGRID_CLICK_TRACKING", "sometimes")
    monkeypatch.setenv("ENGAGEMENT_RETENTION_DAYS", "0")
    monkeypatch.setenv("ENGAGEMENT_CLEANUP_SCHEDULE", "at noon")
    with pytest.raises(ConfigError) as failed:
        load_settings()
    for name in ("SENDGRID_CLICK_TRACKING", "ENGAGEMENT_RETENTION_DAYS",
                 "ENGAGEMENT_CLEANUP_SCHEDULE"):
        assert name in str(failed.value)


# ------------------------------------------------------------ what SendGrid is asked to do


@pytest.fixture
def sg() -> Iterator[SendGridServer]:
    with SendGridServer(api_key=KEY) as server:
        yield server


def sender(server: SendGridServer, **options: object) -> SendGridSender:
    made = SendGridSender(KEY, "Paperwire <digest@example.org>", host=server.url,
                          timeout=2.0, sleep=lambda _s: None, **options)  # type: ignore[arg-type]
    made.prepare()
    return made


def readers(n: int, quiet: set[int]) -> Batch:
    return Batch(recipients=[
        Recipient(to=f"r{i}@example.org", data={"s": f"Digest {i}", "p": []},
                  custom_args={"delivery_id": str(i)}, tracking=i not in quiet)
        for i in range(n)])


def test_tracking_is_off_unless_the_operator_turns_it_on(sg: SendGridServer) -> None:
    result = sender(sg).send_batch(readers(5, quiet={2}))
    assert len(result.accepted) == 5 and result.requests == 1
    for message in sg.messages:
        # Said explicitly: the account's own default does not decide.
        assert message.tracked("click_tracking") is False
        assert message.tracked("open_tracking") is False


def test_readers_who_opted_out_go_untracked_in_requests_of_their_own(
    sg: SendGridServer
) -> None:
    quiet = {3, 7, 1500}
    result = sender(sg, click_tracking=True, open_tracking=True).send_batch(
        readers(2000, quiet))
    assert len(result.accepted) == 2000
    # 1,997 tracked readers in two requests, the three who opted out together in a third.
    assert result.requests == 3
    for message in sg.messages:
        tracked = int(message.custom_args["delivery_id"]) not in quiet
        assert message.tracked("click_tracking") is tracked
        assert message.tracked("open_tracking") is tracked
        assert message.tracking_settings["click_tracking"]["enable_text"] is False
    assert sorted(len({m.request for m in sg.messages if
                       (int(m.custom_args["delivery_id"]) in quiet) is q}) for q in
                  (True, False)) == [1, 2]


def test_confirmations_and_welcomes_are_never_tracked(sg: SendGridServer) -> None:
    sender(sg, click_tracking=True, open_tracking=True).send(Message(
        to="new@example.org", subject="Confirm", text="Confirm: https://x.test/confirm/t",
        html='<a href="https://x.test/confirm/t">Confirm</a>'))
    [message] = sg.messages
    assert message.tracked("click_tracking") is False and message.tracked(
        "open_tracking") is False


@pytest.mark.parametrize(("settings", "field"), [
    ("off", "tracking_settings"),
    ({"click_tracking": True}, "tracking_settings.click_tracking"),
    ({"click_tracking": {"enable": "yes"}}, "tracking_settings.click_tracking.enable"),
    ({"open_tracking": {"enable": True, "pixel": "top"}},
     "tracking_settings.open_tracking.pixel"),
    ({"heatmaps": {"enable": True}}, "tracking_settings.heatmaps"),
])
def test_the_stand_in_refuses_tracking_settings_sendgrid_does_not_document(
    settings: object, field: str
) -> None:
    body = {"personalizations": [{"to": [{"email": "a@example.org"}]}],
            "from": {"email": "digest@example.org"}, "subject": "s",
            "content": [{"type": "text/plain", "value": "x"}],
            "tracking_settings": settings}
    assert field in [e["field"] for e in validate(body)]


def test_a_digest_keeps_the_readers_links_out_of_click_tracking() -> None:
    from newsletter.mail.render import digest_template

    html = digest_template().html
    for personal in ('href="{{m}}"', 'href="{{x}}"', 'href="{{v}}"', '/rate/{{rt}}/up"',
                     '/rate/{{rt}}/down"', '?rate={{rt}}{{/if}}"'):
        start = html.index(personal)
        anchor = html[html.rindex("<a ", 0, start):start]
        assert 'clicktracking="off"' in anchor, personal
    # The paper's own links stay trackable.
    arxiv = html.index("https://arxiv.org/abs/{{k}}")
    assert "clicktracking" not in html[html.rindex("<a ", 0, arxiv):arxiv]


# ------------------------------------------------------------ the reader's choice


def test_the_manage_page_opt_out_is_saved_and_exported(
    client: FlaskClient, engine: Engine, web_settings: Settings
) -> None:
    from newsletter.readers.links import LinkHolder, Links

    reader = sent_digest(engine, "ada@example.com")
    with Session(engine) as session:
        row = session.get(Subscriber, reader.subscriber_id)
        token = Links.from_settings(web_settings).manage_token(LinkHolder(row.id, row.link_key))
    browser = create_app(web_settings, engine=engine).test_client()
    page = browser.get(f"/manage/{token}").get_data(as_text=True)
    assert "Don&#39;t track my opens and clicks" in page or \
        "Don't track my opens and clicks" in page
    assert 'id="no_tracking" name="no_tracking" aria-describedby="tracking-hint">' in page
    form = {"csrf_token": web.csrf_token(browser, f"/manage/{token}"), "topics": "llm",
            "frequency": "daily", "max_papers": "10", "no_tracking": "on"}
    saved = browser.post(f"/manage/{token}", data=form, headers={"Origin": SITE})
    assert saved.status_code == 303
    page = browser.get(f"/manage/{token}").get_data(as_text=True)
    assert 'name="no_tracking" aria-describedby="tracking-hint" checked>' in page
    exported = browser.get(f"/manage/{token}/export").json
    assert exported["preferences"]["tracking"] is False
    assert set(exported["deliveries"][0]) >= {"delivered_at", "opened_at", "clicked_at",
                                              "bounced_at"}
    with Session(engine) as session:
        assert session.exec(select(Preferences.tracking).where(
            Preferences.subscriber_id == reader.subscriber_id)).one() is False
    # Unticked again: tracked again.
    del form["no_tracking"]
    form["csrf_token"] = web.csrf_token(browser, f"/manage/{token}")
    assert browser.post(f"/manage/{token}", data=form,
                        headers={"Origin": SITE}).status_code == 303
    with Session(engine) as session:
        assert session.exec(select(func.count()).select_from(Preferences).where(
            Preferences.tracking.is_(True))).one() == 1  # type: ignore[union-attr]


# ------------------------------------------------------------ a digest's own links, end to end


def test_every_link_of_a_sent_digest_counts_for_its_paper_or_for_none(
    client: FlaskClient, engine: Engine, key: ec.EllipticCurvePrivateKey,
    web_settings: Settings, sg: SendGridServer
) -> None:
    """A digest sent for real (SendGrid renders it from the synced template), then a click
    on each of its links, reported as SendGrid reports them, with the delivery id it echoes."""
    import re

    from newsletter import delivery
    from newsletter.cards.summarize import summarize_pending
    from newsletter.ingest.store import ingest_files
    from tests.conftest import ARXIV_FIXTURES

    day = date(2026, 4, 27)
    ingest_files(engine, sorted(ARXIV_FIXTURES.glob("rss_cs.*_2026-04-27.xml")))
    summarize_pending(engine, web_settings)
    with db.transaction(engine) as session:
        row = subs.ensure(session, "ada@example.com", datetime.now(UTC))
        subs.update_preferences(session, row, reader_input.parse_preferences(
            ["llm", "efficient-ml", "nlp", "vision", "rl"]))
        subs.confirm_now(session, row, "admin", reader_input.Client())
    report = delivery.send_edition(engine, web_settings, day=day,
                                   sender=sender(sg, click_tracking=True))
    assert report.sent == 1
    [mail] = sg.messages
    assert mail.tracked("click_tracking") is True
    links = re.findall(r'<a [^>]*href="([^"]+)"', mail.html or "")
    events = [{"sg_event_id": f"c{i}", "event": "click", "email": "ada@example.com",
               "timestamp": T0 + i, "url": link.replace("&amp;", "&"), **mail.custom_args}
              for i, link in enumerate(links)]
    # The rating links (which hold the paper's id), manage, unsubscribe, view in browser,
    # the day's list and the site itself count for no paper.
    elsewhere = [i for i, link in enumerate(links) if link.rstrip("/") == SITE or any(
        part in link for part in ("/rate/", "/manage/", "/unsubscribe/", "/digest/",
                                  "/days/"))]
    assert post(client, key, [events[i] for i in elsewhere])["received"] == len(elsewhere)
    assert clicks(engine) == {}
    assert post(client, key, events)["received"] == len(links)
    with Session(engine) as session:
        carried = dict(session.exec(select(SentPaper.paper_id, Paper.key).join(
            Paper, Paper.id == SentPaper.paper_id)).all())  # type: ignore[arg-type]
        digest = papers_of(session, int(mail.custom_args["delivery_id"]))
    per_paper = {carried[paper]: n for (_, paper), n in clicks(engine).items()}
    # Every paper of the digest, no other, and its one reader once.
    assert per_paper == dict.fromkeys(carried.values(), 1)
    assert len(elsewhere) >= 2 * len(carried)  # the rating links, at least
    # Each paper's title, "Read more", arXiv, PDF and code links count for it.
    opened = [clicked_paper(digest, link, SITE) for link in links]
    assert [i for i, paper in enumerate(opened) if paper is None] == elsewhere
    assert all(opened.count(paper) >= 4 for paper in carried)  # title, Read more, arXiv, PDF
