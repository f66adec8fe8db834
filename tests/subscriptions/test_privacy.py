"""Export holds everything we keep about a reader; erasure leaves nothing that names them.

The erasure check walks every table and every column, and fails for a table nobody has
reviewed here: a table added later cannot be forgotten by `privacy.erase`.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

from sqlalchemy import Engine, text
from sqlmodel import Session, SQLModel, select

import newsletter.models  # noqa: F401  (every table on the metadata)
from newsletter import db
from newsletter.config import Settings
from newsletter.delivery import Delivery, DigestEdition, SentPaper
from newsletter.engagement import webhook
from newsletter.ingest.paper import Paper
from newsletter.ingest.store import ingest_files
from newsletter.readers import reader_input
from newsletter.readers import subscriber as subs
from newsletter.readers.tables import Subscriber, WebhookEvent
from newsletter.relevance import learn, vectors
from newsletter.relevance.library import files
from newsletter.subscriptions import mail_queue, privacy
from tests.conftest import arxiv_fixture

NOW = datetime(2026, 9, 24, 9, 0, tzinfo=UTC)
EMAIL = "Reader@B\u00fccher.example"
STORED = "reader@xn--bcher-kva.example"
IP, AGENT = "192.0.2.55", "ReaderBrowser/1.0 (personal)"
DESCRIPTION = "tropical geometry of polytopes; not physiological time series"
AUTHOR_ID = "bucher_r_7"
LIBRARY_NAME = "Bücher's Zotero.bib"
OWN_TITLE = "Tropical Curves Counted by Floor Diagrams in Bücher's Notation"
LIBRARY = ("@article{own, title={" + OWN_TITLE + "}, abstract={Floor diagrams count "
           "tropical curves through points in general position.}}").encode()

# Every table, and whether it can name a reader. A new table fails the test until it is
# added here and, if it can name a reader, handled by privacy.export and privacy.erase.
REVIEWED = {
    "subscribers": "the address itself",
    "preferences": "a reader's choices",
    "consents": "IP and user agent of each consent",
    "deliveries": "which editions a reader got",
    "sent_papers": "which papers a reader got, why, and which they clicked through to",
    "webhook_events": "provider events name the address",
    "suppressions": "the address of a bounced or complaining mailbox",
    "editions": "no: one row per day and frequency",
    "papers": "no: arXiv's data",
    "paper_aliases": "no: where else a paper was announced (bioRxiv, a lab's feed)",
    "cards": "no: written once per paper",
    "card_translations": "no: written once per paper and language, for whoever reads it",
    "feeds": "no: the sources we read",
    "mail_limit_hits": "no: which limit held a mail back, and when; never the address",
    "paper_vectors": "no: one vector per paper",
    "ratings": "which papers a reader rated up or down, and when",
    "reader_models": "a model of what a reader wants, trained from their own signals",
    "operators": "no: operators' own addresses",
    "admin_sessions": "no: operators' sessions",
    "admin_login_failures": "a keyed hash of what was typed at the admin sign-in, and the "
                            "network, kept 15 minutes",
    "signup_limit_windows": "no: sign-up counts keyed by keyed hashes; the inbox's go at erasure",
    "audit_log": "names readers by row id only (newsletter/admin/audit.py)",
    "installation_secrets": "no: the installation's development signing key",
    "waiting_mail": "a mail job names the reader's row and choices until sent; erased with them",
    "write_probes": "no: always empty (/healthz writes a row and rolls it back)",
    "send_ticks": "no: the instant up to which due digests were planned",
    "library_uploads": "a reader's library file: its name and what it gave",
    "library_entries": "the papers of a reader's library and author feed, with their vectors",
}


def _reader_with_a_history(engine: Engine) -> Subscriber:
    ingest_files(engine, [arxiv_fixture("rss_cs.LG+cs.AI+cs.CL+stat.ML_2026-09-24.xml")])
    with db.transaction(engine) as session:
        row = subs.ensure(session, reader_input.parse_email(EMAIL), NOW)
        subs.update_preferences(session, row, reader_input.parse_preferences(["llm"], "daily",
                                                                     "quantization"), NOW)
        subs.confirm_now(session, row, "confirm", reader_input.Client(IP, AGENT), NOW)
        edition = DigestEdition(frequency="daily", day=date(2026, 9, 24),
                                window_start=date(2026, 9, 22))
        session.add(edition)
        session.flush()
        delivery = Delivery(edition_id=edition.id, subscriber_id=row.id, status="sent",
                            sent_at=NOW, paper_count=2)
        session.add(delivery)
        session.flush()
        papers = session.exec(select(Paper).order_by(Paper.key)).all()[:2]
        for position, paper in enumerate(papers):
            session.add(SentPaper(delivery_id=delivery.id, subscriber_id=row.id,
                                  paper_id=paper.id, position=position, score=80,
                                  clicked_at=NOW if position == 0 else None,
                                  reasons="topic: Large Language Models\nkeyword: quantization"))
        events = [webhook.Event("ev-1", "delivered", STORED),
                  webhook.Event("ev-2", "open", STORED),
                  webhook.Event("ev-3", "bounce", STORED)]
        webhook.apply_events(session, events, NOW)
        # Their own words, a paper they like, two ratings, and the model trained from them.
        learn.set_interests(session, row.id, DESCRIPTION, "2009.13987v3", settings=Settings())
        learn.record_ratings(session, row.id, {papers[0].id: 1, papers[1].id: -1},
                             settings=Settings())
        # Their own papers: an author identifier and a library file.
        learn.set_author(session, row.id, AUTHOR_ID, settings=Settings())
        learn.import_library(session, row.id, files.parse_library(LIBRARY), LIBRARY_NAME,
                             settings=Settings())
        session.expunge(row)
    # A confirmation mail still waiting for a worker when they asked to be forgotten.
    with db.transaction(engine) as session:
        session.execute(mail_queue._waiting().insert().values(
            job=mail_queue.MailJob("welcome", row.id, topics=("llm",)).to_json(),
            queued_at=NOW))
    return row


def test_export_holds_deliveries_papers_events_and_consents(engine: Engine) -> None:
    reader = _reader_with_a_history(engine)
    with Session(engine) as session:
        data = privacy.export(session, session.get(Subscriber, reader.id))
    json.dumps(data)
    assert data["email"] == STORED and data["suppressed"] is True
    assert [(c["action"], c["ip"], c["user_agent"]) for c in data["consents"]] == [
        ("confirm", IP, AGENT)]
    [delivery] = data["deliveries"]
    assert delivery["edition"] == {"frequency": "daily", "day": "2026-09-24"}
    assert delivery["status"] == "sent" and len(delivery["papers"]) == 2
    assert delivery["papers"][0]["reasons"] == ["topic: Large Language Models",
                                                "keyword: quantization"]
    assert delivery["papers"][0]["title"]
    # Which papers they went to (each paper's first click).
    assert [p["clicked_at"] for p in delivery["papers"]] == [NOW.isoformat(), None]
    assert [e["event"] for e in data["provider_events"]] == ["delivered", "open", "bounce"]
    assert data["preferences"]["description"] == DESCRIPTION
    assert data["preferences"]["liked_papers"] == ["2009.13987"]
    assert sorted(r["rating"] for r in data["ratings"]) == ["down", "up"]
    assert {r["paper"] for r in data["ratings"]} == {p["paper"] for p in delivery["papers"]}
    assert all(r["title"] and r["rated_at"] for r in data["ratings"])
    learned = data["reader_model"]
    assert learned["vector_model"] == vectors.OFFLINE_MODEL and learned["ratings"] == 2
    assert learned["model_base64"] and learned["description_vector_base64"]
    own = data["own_papers"]
    assert own["arxiv_author"] == AUTHOR_ID
    [library] = own["library_files"]
    assert library["filename"] == LIBRARY_NAME and library["format"] == "bibtex"
    [entry] = own["entries"]
    assert (entry["title"], entry["state"], entry["source"]) == (OWN_TITLE, "lookup",
                                                                 "library")
    assert entry["abstract"].startswith("Floor diagrams")


def _every_value(engine: Engine) -> dict[tuple[str, str], list[object]]:
    values: dict[tuple[str, str], list[object]] = {}
    with engine.connect() as conn:
        for table in SQLModel.metadata.sorted_tables:
            for row in conn.execute(table.select()).mappings():
                for column, value in row.items():
                    values.setdefault((table.name, column), []).append(value)
    return values


def test_erasure_leaves_no_row_that_names_the_reader(engine: Engine) -> None:
    assert set(SQLModel.metadata.tables) == set(REVIEWED), (
        "a table was added or removed: review it for personal data in privacy.py and here")
    reader = _reader_with_a_history(engine)
    with db.transaction(engine) as session:
        privacy.erase(session, session.get(Subscriber, reader.id))

    traces = [STORED, EMAIL.lower(), "reader@", IP, AGENT, reader.link_key, DESCRIPTION,
              AUTHOR_ID, LIBRARY_NAME, OWN_TITLE, "Floor diagrams"]
    for (table, column), values in _every_value(engine).items():
        for value in values:
            flat = json.dumps(value, default=str).lower()
            for trace in traces:
                assert trace.lower() not in flat, (table, column, value)
            if column == "subscriber_id":
                assert value != reader.id, (table, column)
    with engine.connect() as conn:
        for table in ("subscribers", "preferences", "consents", "deliveries", "sent_papers",
                      "ratings", "reader_models", "waiting_mail", "library_uploads",
                      "library_entries"):
            assert conn.execute(text(f"SELECT count(*) FROM {table}")).scalar() == 0, table
        # Provider events stay as bare ids, so a retried event is still seen as a repeat.
        assert conn.execute(text("SELECT count(*) FROM webhook_events")).scalar() == 3


def test_an_erased_address_that_bounced_is_still_never_mailed(engine: Engine) -> None:
    reader = _reader_with_a_history(engine)
    with db.transaction(engine) as session:
        privacy.erase(session, session.get(Subscriber, reader.id))
    with db.transaction(engine) as session:
        assert subs.is_suppressed(session, STORED)
        decision = subs.subscribe(session, reader_input.parse_email(EMAIL.upper()),
                                  reader_input.parse_preferences(["llm"]), NOW)
        assert decision.send is None and decision.reason == "suppressed"
    with db.transaction(engine) as session:
        # A replay of an old event is recognised and does not name the address again.
        report = webhook.apply_events(session, [webhook.Event("ev-3", "bounce", STORED)], NOW)
        assert report.duplicates == 1


def test_expired_signups_are_erased_like_a_deleted_reader(engine: Engine) -> None:
    old = datetime(2026, 9, 1, tzinfo=UTC)
    with db.transaction(engine) as session:
        stale = subs.subscribe(session, "old@example.com",
                               reader_input.parse_preferences(["llm"]), old)
        # The confirmation mail to the address was delivered: the event names it.
        webhook.apply_events(session, [webhook.Event("ev-9", "delivered", "old@example.com")],
                             old)
        reader = subs.ensure(session, "reader@example.com", old)
        subs.confirm_now(session, reader, "admin", reader_input.Client(), old)
        stale_id, reader_id = stale.subscriber.id, reader.id
    with db.transaction(engine) as session:
        assert privacy.expire_pending(session, NOW) == 1
    with Session(engine) as session:
        assert session.get(Subscriber, stale_id) is None
        assert session.get(Subscriber, reader_id) is not None
        event = session.exec(select(WebhookEvent)).one()
        assert event.sg_event_id == "ev-9" and event.email is None
