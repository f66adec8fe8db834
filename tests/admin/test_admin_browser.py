"""An operator in headless Chromium, under the site's real Content-Security-Policy: signs
in, sees each chart of the overview drawn as SVG with its data, and runs a day of
Paperwire by clicking: suppress, unsuppress, resend a confirmation, preview a digest,
delete a reader, retry an edition's failed delivery, re-run a failed card."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import Engine, text
from sqlmodel import Session, select

from newsletter.admin.audit import AuditEntry
from newsletter.cards.card import Card
from newsletter.cards.summarize import summarize_pending
from newsletter.config import Settings
from newsletter.delivery import Delivery, prepare_edition
from newsletter.readers import subscriber as subs
from newsletter.relevance.tables import Rating
from newsletter.subscriptions import signup
from newsletter.web import create_app
from tests.support.admin_desk import (
    OPERATOR,
    PASSWORD,
    add_operator,
    confirmed_reader,
    todays_papers,
)
from tests.support.web import chromium, live_site, mails_in

# Each chart's SVG from its <img>'s data: URL, parsed by the browser: its plotted values.
_PLOTTED = """img => {
    const svg = new DOMParser().parseFromString(
        atob(img.src.split(',')[1]), 'image/svg+xml').documentElement;
    return {root: svg.tagName, drawn: img.complete && img.naturalWidth > 0,
            values: [...svg.querySelectorAll('desc.value')].map(d => d.textContent),
            shapes: svg.querySelectorAll('.series rect, .series circle').length};
}"""


@pytest.fixture
def served(settings: Settings, engine: Engine, tmp_path: Path) -> Iterator[Settings]:
    with live_site(settings.model_copy(update={"outbox_dir": tmp_path / "outbox"}),
                   engine) as running:
        yield running


def _state(engine: Engine, email: str) -> tuple[str, bool] | None:
    with Session(engine) as session:
        row = subs.find_by_email(session, email)
        return (row.status, subs.is_suppressed(session, email)) if row else None


def _actions(engine: Engine) -> list[str]:
    with Session(engine) as session:
        return [r.action for r in session.exec(select(AuditEntry).order_by(AuditEntry.id))
                if r.actor == OPERATOR and r.action != "login"]


def test_an_operator_runs_the_day_from_the_browser(served: Settings, engine: Engine,
                                                    tmp_path: Path) -> None:
    from playwright.sync_api import expect

    app: Flask = create_app(served, engine=engine)
    alice = confirmed_reader(app, "alice@example.org", ("llm",))
    bob = confirmed_reader(app, "bob@example.org", ("llm",))
    svc = app.extensions["paperwire"]
    signup.add(svc, "pending@example.org", ["nlp"])  # mails the first confirmation
    first, second, _ = todays_papers(engine)
    summarize_pending(engine, served)
    with Session(engine) as session:
        session.execute(text("UPDATE cards SET status = 'failed', "
                             "last_error = 'the model refused' WHERE paper_id = :p"),
                        {"p": second})
        session.add(Rating(subscriber_id=alice, paper_id=first, value=1))
        pending = subs.find_by_email(session, "pending@example.org")
        assert pending is not None
        pending.last_confirmation_sent_at = None  # the ten minutes have passed
        session.commit()
    edition_id, _, _ = prepare_edition(engine, "daily", datetime.now(UTC).date())
    with Session(engine) as session:
        session.execute(text("UPDATE deliveries SET status = CASE WHEN subscriber_id = :bob "
                             "THEN 'failed' ELSE 'sent' END, error = CASE WHEN "
                             "subscriber_id = :bob THEN 'refused by the provider: 503' END"),
                        {"bob": bob})
        session.commit()
    add_operator(engine)
    site = served.base_url

    with chromium() as browser:
        page = browser.new_page()
        # What the policy refused on our pages; not while the test itself parses the
        # charts' SVG (a DOMParser document obeys the page's policy, pygal's style too).
        refused: list[str] = []
        parsing = [False]
        page.on("console", lambda m: refused.append(f"{page.url}: {m.text}")
                if "Content Security Policy" in m.text and not parsing[0] else None)
        page.goto(site + "/admin")
        page.get_by_label("Email").fill(OPERATOR)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("heading", name="Overview", exact=True)).to_be_visible()

        # Five charts, each an SVG the browser drew, with the values plotted.
        figures = page.locator("figure.admin-chart")
        expect(figures).to_have_count(5)
        page.wait_for_load_state("load")
        parsing[0] = True
        for n in range(5):
            figure = figures.nth(n)
            expect(figure.get_by_role("heading")).to_be_visible()
            chart = figure.locator("img").evaluate(_PLOTTED)
            assert chart["root"] == "svg" and chart["drawn"], chart
            assert chart["shapes"] > 0 and any(v != "0" for v in chart["values"]), chart
        topics = page.locator("#chart-topics img").evaluate(_PLOTTED)
        assert "2" in topics["values"]  # alice and bob follow LLMs
        page.wait_for_timeout(200)
        parsing[0] = False
        page.locator("#chart-topics summary").click()
        expect(page.locator("#chart-topics table")).to_contain_text("Large Language Models")

        # A reader: suppress, then lift it.
        page.get_by_role("link", name="Subscribers").click()
        page.get_by_label("Address contains").fill("alice")
        page.get_by_role("button", name="Search").click()
        page.get_by_role("link", name="alice@example.org").click()
        page.get_by_role("button", name="Suppress").click()
        expect(page.get_by_role("status")).to_contain_text("Suppressed")
        assert _state(engine, "alice@example.org") == ("bounced", True)
        page.get_by_role("button", name="Unsuppress").click()
        expect(page.get_by_role("status")).to_contain_text("Suppression lifted")
        assert _state(engine, "alice@example.org") == ("confirmed", False)

        # Her next digest, as she would see it, in a frame.
        page.get_by_role("link", name="Preview their next digest").click()
        frame = page.frame_locator("iframe.mail")
        expect(frame.get_by_role("link", name="Large language model reasoning, part 0")
               ).to_be_visible()
        expect(frame.get_by_role("link", name="Unsubscribe")).to_have_attribute(
            "href", site + "/digest/personal-links")

        # A pending sign-up gets a fresh confirmation mail.
        page.goto(site + "/admin/subscribers?status=pending")
        page.get_by_role("link", name="pending@example.org").click()
        page.get_by_role("button", name="Resend confirmation").click()
        expect(page.get_by_role("status")).to_contain_text("confirmation mail")
        mails = [m for m in mails_in(served.outbox_dir)
                 if m["To"] == "pending@example.org"]
        assert len(mails) == 2

        # The pending reader asks to be forgotten: delete them.
        page.get_by_label("Delete everything held about this reader").check()
        page.get_by_role("button", name="Delete").click()
        expect(page.get_by_role("status")).to_contain_text("deleted")
        assert _state(engine, "pending@example.org") is None

        # An edition with a failed delivery: see why, retry it.
        page.get_by_role("link", name="Editions").click()
        page.locator(f"a[href='/admin/editions/{edition_id}']").click()
        expect(page.get_by_text("refused by the provider: 503").first).to_be_visible()
        page.get_by_role("button", name="Retry the 1 failed deliveries").click()
        # No mail workers here: the page queues nothing and sends nothing itself.
        expect(page.get_by_role("status")).to_contain_text("pending again")
        with Session(engine) as session:
            bobs = session.exec(select(Delivery).where(Delivery.subscriber_id == bob)).one()
        assert bobs.status == "pending"

        # A failed card: its reason, and a re-run.
        page.get_by_role("link", name="Cards").click()
        expect(page.get_by_text("the model refused").first).to_be_visible()
        page.get_by_role("button", name="Re-run the card of 2611.00001").click()
        expect(page.get_by_role("status")).to_contain_text("Re-ran 1 failed card")
        with Session(engine) as session:
            card = session.exec(select(Card).where(Card.paper_id == second)).one()
        assert card.status == "ok"

        # Feeds; and no part of any page was refused by the policy.
        page.get_by_role("link", name="Feeds").click()
        expect(page.get_by_role("heading", name="Feeds")).to_be_visible()
        # The digest links no web font (nor anything else), so the preview's policy has
        # nothing to refuse.
        assert refused == [], refused
    assert _actions(engine) == ["subscriber-suppress", "subscriber-unsuppress",
                                "subscriber-resend-confirmation", "subscriber-delete",
                                "edition-retry-failed", "card-rerun"]
