"""An operator in headless Chromium: sign in through the real form, find the sign-in on the
audit page, sign out, and find the door shut again."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from newsletter import db
from newsletter.admin import accounts, audit
from newsletter.config import Settings
from newsletter.web.admin import frame
from tests.support.web import chromium, live_site

OPERATOR = "ada@example.org"
PASSWORD = "correct horse battery staple"


@pytest.fixture
def site(settings: Settings, engine: Engine) -> Iterator[str]:
    with db.transaction(engine) as session:
        accounts.add(session, OPERATOR, PASSWORD, audit.CLI)
    with live_site(settings, engine) as served:
        yield served.base_url


def test_operator_signs_in_and_sees_the_sign_in_audited(site: str) -> None:
    from playwright.sync_api import expect

    with chromium() as browser:
        page = browser.new_page()
        refused: list[str] = []  # anything the Content-Security-Policy blocked
        page.on("console", lambda m: refused.append(m.text)
                if "Content Security Policy" in m.text else None)

        page.goto(site + "/admin/audit")
        expect(page.get_by_role("heading", name="Operator sign-in")).to_be_visible()
        page.get_by_label("Email").fill(OPERATOR)
        page.get_by_label("Password").fill("not my password at all")
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("alert")).to_contain_text("do not match")

        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("heading", name="Audit log")).to_be_visible()
        expect(page.get_by_text(f"Signed in as {OPERATOR}")).to_be_visible()
        rows = page.locator("table.audit-log tbody tr")
        expect(rows.first).to_contain_text("login")
        expect(rows.first).to_contain_text(OPERATOR)
        expect(rows.nth(1)).to_contain_text("login-failed")
        expect(page.get_by_role("link", name="Audit log")).to_have_attribute(
            "aria-current", "page")

        [cookie] = [c for c in page.context.cookies() if c["name"] == frame.COOKIE]
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
        assert cookie["path"] == "/admin"

        page.get_by_label("Action").select_option("login-failed")
        page.get_by_role("button", name="Filter").click()
        expect(rows).to_have_count(1)

        page.get_by_role("button", name="Sign out").click()
        expect(page.get_by_role("heading", name="Operator sign-in")).to_be_visible()
        page.goto(site + "/admin/audit")
        expect(page.get_by_role("heading", name="Operator sign-in")).to_be_visible()
        assert refused == []
