"""axe-core, run in Chromium, finds no serious or critical violation on any page a reader
meets, at a desktop's width and a phone's.

The site is seeded as a reader finds it (real arXiv listings with their cards, a confirmed
reader with interests and ratings, a sign-up waiting for its link: tests/support/
reader_site.py). Every page is opened as a reader opens it: by its link, or by pressing the
button of the page before, so the answers to forms (the sign-up's mistakes, "check your
inbox", confirmed, rated, saved, unsubscribed, deleted) are checked too. Each page's status
is asserted first, so a page that failed to render cannot pass as an accessible one.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from newsletter.config import Settings
from newsletter.delivery import PERSONAL_LINKS_PATH
from tests.support.axe import axe_context, blocking_violations
from tests.support.reader_site import DAY, ReaderPages, served

if TYPE_CHECKING:
    from playwright.sync_api import Page


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[Settings, ReaderPages]]:
    # A fresh site for each width: the walk below confirms, unsubscribes and deletes.
    with served(tmp_path) as seeded:
        yield seeded


class Walk:
    """Pages visited in one browser tab, with axe's findings on each."""

    def __init__(self, page: Page, base: str) -> None:
        self.page, self.base = page, base
        self.found: dict[str, list[str]] = {}

    def open(self, name: str, path: str, status: int = 200) -> None:
        answer = self.page.goto(self.base + path)
        assert answer is not None and answer.status == status, (name, path)
        self.check(name)

    def press(self, name: str, button: str, heading: str) -> None:
        """Press a button on the page, then check the page it leads to."""
        self.page.get_by_role("button", name=button, exact=True).click()
        self.page.get_by_role("heading", name=heading).first.wait_for()
        self.check(name)

    def check(self, name: str) -> None:
        assert name not in self.found, f"two pages named {name!r}"
        self.found[name] = blocking_violations(self.page)


@pytest.mark.parametrize("width,height", [(1280, 900), (390, 844)], ids=["desktop", "phone"])
def test_no_reader_page_has_a_serious_or_critical_violation(
        site: tuple[Settings, ReaderPages], width: int, height: int) -> None:
    served_at, pages = site
    with axe_context(width, height) as context:
        walk = Walk(context.new_page(), served_at.base_url)
        walk.open("front page", "/")
        walk.open("past days", "/days")
        walk.open("a day", pages.day)
        walk.open("a day without papers", f"/days/{DAY + timedelta(days=2)}")
        walk.open("a paper", pages.paper)
        walk.open("a paper opened from a digest", pages.paper_to_rate)
        walk.open("not found", "/no/such/page", 404)
        walk.open("a link cut short", "/manage/not-a-token", 404)
        walk.open("a digest's personal links", PERSONAL_LINKS_PATH)

        # Sign up: first with nothing filled in, then properly.
        walk.open("front page, to sign up", "/")
        walk.press("sign-up with mistakes", "Subscribe", "Subscribe")
        walk.page.get_by_label("Email address").fill("someone@example.org")
        walk.page.get_by_label("Theory").check()
        walk.press("check your inbox", "Subscribe", "Check your inbox")

        walk.open("confirm", pages.confirm)
        walk.press("confirmed", "Yes, subscribe me", "You are subscribed")

        walk.open("rate", pages.rate)
        walk.press("rated", "More like this", "More like this: noted")

        walk.open("manage", pages.manage)
        walk.press("manage, saved", "Save my settings", "Your subscription")

        walk.open("unsubscribe", pages.unsubscribe)
        walk.press("unsubscribed", "Unsubscribe", "Goodbye")
        walk.open("manage, unsubscribed", pages.manage)

        walk.open("delete", pages.manage + "/delete")
        walk.press("deleted", "Delete everything", "Your data is deleted")

    violations = {name: found for name, found in walk.found.items() if found}
    assert not violations, "\n".join(f"{name}: {line}" for name, found in violations.items()
                                     for line in found)
