"""A reader in headless Chromium: subscribe, confirm from the outbox, change topics, leave."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlmodel import Session

from newsletter.config import Settings
from newsletter.readers import subscriber as subs
from tests.support.web import chromium, live_site


@pytest.fixture
def site(settings: Settings, engine: Engine, tmp_path: Path) -> Iterator[str]:
    with live_site(settings.model_copy(update={"outbox_dir": tmp_path / "outbox"}),
                   engine) as served:
        yield served.base_url


def _status_and_topics(engine: Engine, email: str) -> tuple[str, list[str]] | None:
    with Session(engine) as session:
        row = subs.find_by_email(session, email)
        if row is None:
            return None
        # A pending sign-up's choices wait for the click; then they are the preferences.
        wanted = subs.requested_choices(row) if row.status == "pending" else None
        return row.status, list(wanted.topics if wanted
                                else subs.preferences_of(session, row).topics)


def test_reader_journey(site: str, engine: Engine) -> None:
    from playwright.sync_api import expect

    with chromium() as browser:
        page = browser.new_page()
        page.goto(site + "/")
        page.get_by_label("Email address").fill("reader@example.com")
        page.get_by_label("Large Language Models").check()
        page.get_by_label("Weekly").check()
        page.get_by_role("button", name="Subscribe").click()
        expect(page.get_by_role("heading", name="Check your inbox")).to_be_visible()
        assert _status_and_topics(engine, "reader@example.com") == ("pending", ["llm"])

        # The confirmation email, opened from the dev outbox.
        page.get_by_role("link", name="Outbox").first.click()
        page.get_by_role("link", name="Confirm your Paperwire subscription").click()
        page.locator("ul.links-list a[href*='/confirm/']").click()
        expect(page.get_by_role("heading", name="Confirm your subscription")).to_be_visible()
        page.get_by_role("button", name="Yes, subscribe me").click()
        expect(page.get_by_role("heading", name="You are subscribed")).to_be_visible()
        assert _status_and_topics(engine, "reader@example.com") == ("confirmed", ["llm"])

        # Change topics on the manage page, keyboard only for the checkbox.
        page.get_by_role("link", name="Fine-tune your topics").click()
        page.get_by_label("Reinforcement Learning").focus()
        page.keyboard.press("Space")
        page.get_by_label("Large Language Models").uncheck()
        page.get_by_label("Keywords to look for").fill("world models")
        page.get_by_role("button", name="Save my settings").click()
        expect(page.get_by_role("status")).to_contain_text("Saved")
        assert _status_and_topics(engine, "reader@example.com") == ("confirmed", ["rl"])

        # Unsubscribe: the page changes nothing until the button is pressed.
        page.get_by_role("link", name="Unsubscribe").last.click()
        expect(page.get_by_role("heading", name="Unsubscribe")).to_be_visible()
        assert _status_and_topics(engine, "reader@example.com") == ("confirmed", ["rl"])
        page.get_by_role("button", name="Unsubscribe").click()
        expect(page.get_by_role("heading", name="Goodbye")).to_be_visible()
        assert _status_and_topics(engine, "reader@example.com") == ("unsubscribed", ["rl"])
