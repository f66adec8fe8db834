"""Delivering an edition through the real `sendgrid` client to a SendGrid-compatible server.

Every confirmed subscriber gets exactly one digest; nobody else gets one; running again
sends nothing; faults and crashes repeat at most the request in flight and miss nobody.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime, timedelta
from email import message_from_bytes
from email.policy import default
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlmodel import Session

from newsletter import delivery
from newsletter.cards.summarize import summarize_pending
from newsletter.config import Settings
from newsletter.ingest.store import ingest_files
from newsletter.mail.batch import UNLOGGED, Batch, BatchResult, RequestLog
from newsletter.mail.senders import FileSender, MailError, OneByOne
from newsletter.mail.sendgrid import SendGridSender
from newsletter.readers.tables import Preferences, Subscriber, Suppression
from tests.conftest import ARXIV_FIXTURES
from tests.support.sendgrid_server import SendGridServer

DAY = date(2026, 4, 27)  # the three single-category listings: 9 papers
KEY = "SG.test-key"


@pytest.fixture
def papers(engine: Engine, settings: Settings) -> None:
    ingest_files(engine, sorted(ARXIV_FIXTURES.glob("rss_cs.*_2026-04-27.xml")))
    summarize_pending(engine, settings)  # offline cards: no OPENAI_API_KEY in tests


def add_readers(engine: Engine, specs: Sequence[tuple[str, str, Sequence[str]]],
                **prefs: object) -> None:
    """(email, status, topics) rows, with preferences; fast enough for thousands."""
    with Session(engine) as session:
        people = [Subscriber(email=email, status=status) for email, status, _ in specs]
        session.add_all(people)
        session.flush()
        session.add_all(Preferences(subscriber_id=p.id, topics=list(topics), **prefs)
                        for p, (_, _, topics) in zip(people, specs, strict=True))
        session.commit()


@pytest.fixture
def sg() -> Iterator[SendGridServer]:
    with SendGridServer(api_key=KEY) as server:
        yield server


def sendgrid(server: SendGridServer, **options: object) -> SendGridSender:
    """A sender whose digest template is already on the server (synced on first use), so
    the faults a test injects afterwards meet its mail requests."""
    options = {"timeout": 1.0, "max_attempts": 4, "sleep": lambda _s: None, **options}
    sender = SendGridSender(KEY, "Paperwire <digest@example.org>", host=server.url, **options)
    sender.prepare()
    return sender


def statuses(engine: Engine) -> Counter[str]:
    with engine.connect() as conn:
        return Counter(conn.execute(text("SELECT status FROM deliveries")).scalars())


def send(engine: Engine, settings: Settings, sender: object, **kw: object):
    return delivery.send_edition(engine, settings, day=DAY, sender=sender, **kw)


def test_each_confirmed_reader_gets_one_digest_and_nobody_else_any(
    engine: Engine, settings: Settings, papers: None, sg: SendGridServer
) -> None:
    add_readers(engine, [
        *[(f"llm{i}@example.org", "confirmed", ["llm"]) for i in range(5)],
        ("vision@example.org", "confirmed", ["vision"]),
        ("robots@example.org", "confirmed", ["robotics", "efficient-ml"]),
        ("nothing@example.org", "confirmed", ["federated"]),
        ("pending@example.org", "pending", ["llm"]),
        ("left@example.org", "unsubscribed", ["llm"]),
        ("bounced@example.org", "confirmed", ["llm"]),
    ])
    with Session(engine) as session:
        session.add(Suppression(email="bounced@example.org", reason="bounce"))
        session.commit()

    report = send(engine, settings, sendgrid(sg))

    counts = sg.recipient_counts()
    assert set(counts) == {*(f"llm{i}@example.org" for i in range(5)), "vision@example.org",
                           "robots@example.org"}
    assert set(counts.values()) == {1}
    assert (report.sent, report.skipped, report.failed) == (7, 1, 0)
    # Seven readers, three different digests: one request.
    assert report.requests == 1
    assert statuses(engine) == {"sent": 7, "skipped": 1}

    for mail in sg.messages:
        assert mail.text and mail.html
        unsubscribe = mail.headers["List-Unsubscribe"]
        assert unsubscribe.startswith(f"<{settings.base_url}/unsubscribe/")
        assert mail.headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert mail.headers["List-Id"].startswith("Paperwire <")
        # The reader's own links, rendered by the provider from the template, in both parts.
        assert unsubscribe.strip("<>") in mail.html and unsubscribe.strip("<>") in mail.text
        assert "/manage/" in mail.text and "/digest/" in mail.text
        assert "{{" not in mail.subject + mail.html + mail.text
    # Every digest request names the dynamic template and carries no retired feature.
    (request,) = sg.requests
    assert request.payload["template_id"].startswith("d-")
    assert "sections" not in request.payload and "content" not in request.payload
    links = {m.headers["List-Unsubscribe"] for m in sg.messages}
    assert len(links) == 7  # nobody got someone else's link

    again = send(engine, settings, sendgrid(sg))
    assert (again.sent, again.requests) == (0, 0)
    assert len(sg.messages) == 7


def test_a_paper_never_reaches_the_same_reader_twice(
    engine: Engine, settings: Settings, papers: None, sg: SendGridServer
) -> None:
    add_readers(engine, [("ada@example.org", "confirmed", ["llm", "nlp"])])
    send(engine, settings, sendgrid(sg))
    first = sg.messages_for("ada@example.org")[0]
    # Two days later the same papers are still inside the lookback window.
    later = delivery.send_edition(engine, settings, day=DAY + timedelta(days=2),
                                  sender=sendgrid(sg))
    assert later.sent == 0 and later.skipped == 1
    assert "Shared Lexical Task Representations" in first.text


def test_readers_share_requests_of_at_most_1000_whatever_their_digests(
    engine: Engine, settings: Settings, papers: None, sg: SendGridServer
) -> None:
    topics = ["llm", "vision", "rl", "nlp", "efficient-ml", "multimodal", "generative"]
    add_readers(engine, [(f"r{i}@example.org", "confirmed", [topics[i % 7], topics[i % 3]])
                         for i in range(2500)])
    report = send(engine, settings, sendgrid(sg), chunk_size=2500)
    assert report.sent == 2500
    assert [r.personalizations for r in sg.requests] == [1000, 1000, 500]
    assert set(sg.recipient_counts().values()) == {1}
    # Different readers, different digests, each rendered from the one template.
    digests = {m.text.split("--")[0] for m in sg.messages}
    assert len(digests) > 5
    for mail in sg.messages[:50]:
        assert mail.subject.split(" · ")[0] in mail.text
        assert mail.headers["List-Unsubscribe"].strip("<>") in mail.html


def test_faults_are_retried_and_nobody_gets_two(
    engine: Engine, settings: Settings, papers: None, sg: SendGridServer
) -> None:
    add_readers(engine, [(f"r{i}@example.org", "confirmed", [topic])
                         for i, topic in enumerate(["llm", "vision", "rl", "nlp"] * 3)])
    sender = sendgrid(sg, max_attempts=6)
    sg.fail_next(status=429, headers={"X-RateLimit-Reset": "0"})
    sg.fail_next(status=500)
    sg.stall_next(3.0)
    sg.reset_next()
    report = send(engine, settings, sender)
    assert [r.status for r in sg.requests] == [429, 500, None, None, 202]
    assert report.failed == 0 and report.retry_later == 0
    counts = sg.recipient_counts()
    assert len(counts) == report.sent and set(counts.values()) == {1}


def test_provider_down_leaves_readers_pending_for_the_next_run(
    engine: Engine, settings: Settings, papers: None, sg: SendGridServer
) -> None:
    add_readers(engine, [("ada@example.org", "confirmed", ["llm"])])
    sender = sendgrid(sg, max_attempts=2)
    sg.fail_next(status=503, times=2)
    down = send(engine, settings, sender)
    assert (down.sent, down.retry_later) == (0, 1)
    assert statuses(engine) == {"pending": 1}
    back = send(engine, settings, sendgrid(sg))
    assert back.sent == 1
    assert sg.recipient_counts() == {"ada@example.org": 1}


def test_a_refused_request_fails_for_good_and_is_not_resent(
    engine: Engine, settings: Settings, papers: None, sg: SendGridServer
) -> None:
    add_readers(engine, [("ada@example.org", "confirmed", ["llm"])])
    sender = sendgrid(sg)
    sg.fail_next(status=400, message="Invalid dynamic_template_data")
    refused = send(engine, settings, sender)
    assert refused.failed == 1
    assert "Invalid dynamic_template_data" in refused.errors[0]
    assert statuses(engine) == {"failed": 1}
    assert send(engine, settings, sendgrid(sg)).requests == 0


class Crash(BaseException):
    """The worker dies: nothing after this line of the sender runs."""


class CrashAfter:
    """Sends N batches normally; on the next one the request goes out, then the process dies.

    Batches of 10 readers, so 40 readers take four requests.
    """

    max_batch = 10

    def __init__(self, sender: SendGridSender, batches: int) -> None:
        self.sender, self.left = sender, batches

    def prepare(self) -> None:
        self.sender.prepare()

    def send_batch(self, batch: Batch, log: RequestLog = UNLOGGED) -> BatchResult:
        result = self.sender.send_batch(batch, log)
        if self.left == 0:
            raise Crash
        self.left -= 1
        return result


def test_a_crash_repeats_only_the_request_in_flight_and_misses_nobody(
    engine: Engine, settings: Settings, papers: None, sg: SendGridServer
) -> None:
    topics = ["llm", "vision", "rl", "nlp", "efficient-ml", "multimodal", "generative"]
    add_readers(engine, [(f"r{i}@example.org", "confirmed", [topics[i % len(topics)]])
                         for i in range(40)])
    with pytest.raises(Crash):
        send(engine, settings, CrashAfter(sendgrid(sg), batches=2))
    # The request the worker died waiting on: SendGrid took it, nobody recorded it.
    in_flight = {a for m in sg.messages if m.request == sg.requests[-1].index for a in m.to}
    assert in_flight
    assert statuses(engine)["sending"] > 0  # the dead worker's claim

    # Restarted after the claim's lease ran out.
    later = datetime.now(UTC) + delivery.LEASE + timedelta(minutes=1)
    send(engine, settings, sendgrid(sg), now=lambda: later)

    counts = sg.recipient_counts()
    with engine.connect() as conn:
        matched = set(conn.execute(text(
            "SELECT s.email FROM deliveries d JOIN subscribers s ON s.id = d.subscriber_id "
            "WHERE d.status = 'sent'")).scalars())
    assert set(counts) == matched  # nobody missed
    twice = {addr for addr, n in counts.items() if n > 1}
    assert twice <= in_flight  # only the request in flight repeated
    assert max(counts.values()) <= 2
    assert "sending" not in statuses(engine)


def test_two_workers_on_one_edition_never_send_the_same_delivery(
    engine: Engine, settings: Settings, papers: None, sg: SendGridServer
) -> None:
    add_readers(engine, [(f"r{i}@example.org", "confirmed", [["llm", "vision", "nlp"][i % 3]])
                         for i in range(300)])
    edition_id, _, chunks = delivery.prepare_edition(engine, "daily", DAY, chunk_size=300)
    compose = delivery.composer_for(settings, DAY, "daily")
    reports: list[delivery.SendReport] = []

    def worker(sender: SendGridSender) -> None:
        reports.append(delivery.deliver(engine, edition_id, chunks[0], sender=sender,
                                        compose=compose, journal=settings.send_journal))

    threads = [threading.Thread(target=worker, args=(sendgrid(sg),)) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sum(r.sent for r in reports) == 300
    assert len(sg.recipient_counts()) == 300 and set(sg.recipient_counts().values()) == {1}


def test_weekly_readers_wait_for_their_edition(
    engine: Engine, settings: Settings, papers: None, sg: SendGridServer
) -> None:
    add_readers(engine, [("daily@example.org", "confirmed", ["llm"])])
    add_readers(engine, [("weekly@example.org", "confirmed", ["llm"])], frequency="weekly")
    send(engine, settings, sendgrid(sg))
    assert set(sg.recipient_counts()) == {"daily@example.org"}
    weekly = delivery.send_edition(engine, settings, frequency="weekly",
                                   day=DAY + timedelta(days=6), sender=sendgrid(sg))
    assert weekly.sent == 1
    assert sg.messages_for("weekly@example.org")[0].subject.startswith("5 papers on")


def test_revised_papers_only_for_readers_who_asked(
    engine: Engine, settings: Settings, sg: SendGridServer, tmp_path: Path
) -> None:
    combined = ARXIV_FIXTURES / "rss_cs.LG+cs.AI+cs.CL+stat.ML_2026-09-24.xml"
    ingest_files(engine, [combined])
    summarize_pending(engine, settings)
    with engine.connect() as conn:
        topics = conn.execute(text(
            "SELECT c.topics FROM cards c JOIN papers p ON p.id = c.paper_id "
            "WHERE p.key = '2009.13987'")).scalar_one()
    first = (topics if isinstance(topics, list) else json.loads(topics))[0]
    add_readers(engine, [("plain@example.org", "confirmed", [first])])
    add_readers(engine, [("revisions@example.org", "confirmed", [first])],
                include_revised=True)
    delivery.send_edition(engine, settings, day=date(2026, 9, 24), sender=sendgrid(sg))
    revised = [m for m in sg.messages_for("revisions@example.org")
               if "Random Polytope Descriptors" in m.text]
    assert revised and "Revised version" in revised[0].text
    assert all("Random Polytope Descriptors" not in m.text
               for m in sg.messages_for("plain@example.org"))


def test_hostile_paper_text_arrives_escaped(
    engine: Engine, settings: Settings, sg: SendGridServer
) -> None:
    hostile = "<script>alert(1)</script> {{ 7*7 }} {% raw %}\r\nBcc: victim@example.org"
    with engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO papers (key, arxiv_id, version, title, abstract, authors, categories,"
            " announce_type, announced_on, source, created_at, updated_at) VALUES "
            "('2604.99999', '2604.99999', 1, :t, :a, '[\"Eve\"]', '[\"cs.CL\"]', 'new', :d,"
            " 'arxiv', :now, :now)"),
            {"t": hostile, "a": "Large language models " + hostile, "d": DAY,
             "now": datetime.now(UTC)})
    # A cs.CL paper whose words are mostly markup: the tagger files it under NLP.
    add_readers(engine, [("ada@example.org", "confirmed", ["llm", "nlp"])])
    send(engine, settings, sendgrid(sg))
    mail = sg.messages_for("ada@example.org")[0]
    assert "<script>" not in mail.html and "&lt;script&gt;" in mail.html
    # Handlebars never evaluated the title: the braces arrive as text in both parts.
    assert "{{ 7*7 }}" in mail.html and "{{ 7*7 }}" in mail.text
    assert not any(line.startswith("Bcc:") for line in mail.text.splitlines())
    assert "victim@example.org" not in mail.headers.get("Bcc", "")


def test_file_backend_writes_real_list_unsubscribe_headers_and_view_in_browser(
    engine: Engine, settings: Settings, papers: None, tmp_path: Path
) -> None:
    from newsletter.web import create_app

    add_readers(engine, [("ada@example.org", "confirmed", ["llm"])])
    outbox = tmp_path / "outbox"
    send(engine, settings, OneByOne(FileSender(outbox, "Paperwire <digest@example.org>")))
    (eml,) = outbox.glob("*.eml")
    raw = eml.read_bytes()
    # Not RFC 2047-encoded: mail clients read this header raw.
    assert f"List-Unsubscribe: <{settings.base_url}/unsubscribe/".encode() in raw
    assert b"List-Unsubscribe-Post: List-Unsubscribe=One-Click" in raw
    mail = message_from_bytes(raw, policy=default)
    view = next(w for w in mail.get_body(("plain",)).get_content().split()
                if "/digest/" in w)

    client = create_app(settings, engine=engine).test_client()
    page = client.get(view.removeprefix(settings.base_url))
    assert page.status_code == 200
    assert "Shared Lexical Task Representations" in page.get_data(as_text=True)
    # A forwarded "view in browser" address hands over no key to the subscription.
    body = page.get_data(as_text=True)
    assert "/manage/" not in body and "/unsubscribe/" not in body
    assert f"{settings.base_url}/digest/personal-links" in body
    assert "in the email" in client.get("/digest/personal-links").get_data(as_text=True)
    assert "script-src" not in page.headers["Content-Security-Policy"]
    assert client.get(view.removeprefix(settings.base_url)[:-3] + "xyz").status_code == 404


def test_dry_run_and_preview_write_nothing(
    engine: Engine, settings: Settings, papers: None
) -> None:
    add_readers(engine, [("ada@example.org", "confirmed", ["llm"]),
                         ("bob@example.org", "confirmed", ["federated"])])
    plan = delivery.dry_run(engine, settings, day=DAY)
    assert (plan.would_send, plan.would_skip, plan.distinct_digests) == (1, 1, 1)
    shown = delivery.preview(engine, settings, "ADA@example.org", day=DAY)
    assert shown is not None and len(shown.selection.picks) == 5
    assert shown.subject == "5 papers on Large Language Models · Paperwire, Mon 27 Apr"
    assert delivery.preview(engine, settings, "bob@example.org", day=DAY) is None
    with pytest.raises(LookupError):
        delivery.preview(engine, settings, "nobody@example.org", day=DAY)
    assert statuses(engine) == {}


def test_two_worker_processes_share_an_edition(
    engine: Engine, settings: Settings, papers: None, sg: SendGridServer
) -> None:
    topics = ["llm", "vision", "rl", "nlp"]
    add_readers(engine, [(f"r{i}@example.org", "confirmed", [topics[i % 4]])
                         for i in range(120)])
    config = settings.model_copy(update={
        "mail_backend": "sendgrid", "sendgrid_api_key": KEY, "sendgrid_host": sg.url})
    report = delivery.send_edition(engine, config, day=DAY, chunk_size=30, workers=2)
    assert report.sent == 120
    assert len(sg.requests) == 4  # one per chunk of 30
    assert len(sg.recipient_counts()) == 120 and set(sg.recipient_counts().values()) == {1}
    assert statuses(engine) == {"sent": 120}


def test_an_outdated_template_stops_the_send_before_anyone_is_claimed(
    engine: Engine, settings: Settings, papers: None, sg: SendGridServer
) -> None:
    add_readers(engine, [("ada@example.org", "confirmed", ["llm"])])
    strict = SendGridSender(KEY, "Paperwire <digest@example.org>", host=sg.url,
                            sync_template=False, sleep=lambda _s: None)
    with pytest.raises(MailError, match="newsletter sendgrid sync"):
        send(engine, settings, strict)
    assert statuses(engine) == {} and sg.requests == []  # nobody planned, claimed or failed

    strict.sync()  # what the operator runs
    assert send(engine, settings, strict).sent == 1
    assert sg.recipient_counts() == {"ada@example.org": 1}
