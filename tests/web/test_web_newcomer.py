"""What a newcomer notices on the site, measured in headless Chromium the way a reader would
see it: the manage page's tracking choice reads as one line, a phone shows a paper on its
first screen, one-column pages sit in the middle of a wide screen, the sign-up button
beside a long day of papers can be scrolled to, and the site has an icon.

Each measurement failed on the old layout (widths, offsets and margins in the comments).
"""

from __future__ import annotations

import fnmatch
import tomllib
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from flask.testing import FlaskClient

from newsletter import db
from newsletter.config import Settings
from newsletter.ingest.paper import Paper
from tests.conftest import REPO
from tests.support import web
from tests.support.reader_site import DAY, ReaderPages, served
from tests.support.web import chromium

if TYPE_CHECKING:
    from playwright.sync_api import Page

# The shared web fixtures, collected by pytest from this module's names.
app, client, web_settings = web.app, web.client, web.web_settings

DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[Settings, ReaderPages]]:
    with served(tmp_path) as seeded:
        yield seeded


def _box(page: Page, selector: str) -> dict[str, float]:
    box = page.locator(selector).first.bounding_box()
    assert box is not None, f"{selector} is not displayed"
    return box


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_the_tracking_choice_reads_as_one_line(site: tuple[Settings, ReaderPages],
                                                viewport: dict[str, int]) -> None:
    served_at, pages = site
    with chromium() as browser:
        page = browser.new_page(viewport=viewport)  # type: ignore[arg-type]
        page.goto(served_at.base_url + pages.manage)
        label = _box(page, "label[for=no_tracking]")
        hint = _box(page, "#tracking-hint")
        box = _box(page, "#no_tracking")
    # The hint beside it squeezed the label to one word a line: 64 px wide and 149 px
    # tall at 1280, 54 px at 390. Now it is one line of text beside its box.
    assert label["width"] > 250 and label["height"] < 40, label
    # Its hint under the label, not beside it, and the box on the label's left.
    assert hint["y"] >= label["y"] + label["height"] - 1, (label, hint)
    assert box["x"] + box["width"] <= label["x"] and abs(hint["x"] - label["x"]) < 2


def test_a_phone_shows_a_paper_on_its_first_screen(
        site: tuple[Settings, ReaderPages]) -> None:
    served_at, _ = site
    with chromium() as browser:
        page = browser.new_page(viewport=PHONE)  # type: ignore[arg-type]
        page.goto(served_at.base_url + "/")
        first = _box(page, "article.card")
        # The sign-up form (every topic, described) came first: the first paper began
        # 2,737 px down. Now its title is on the first screen.
        assert first["y"] + 60 < PHONE["height"], first
        # The form still comes with the page, after the papers, and a link at the top
        # takes a reader there.
        assert _box(page, "#subscribe")["y"] > first["y"]
        page.get_by_role("link", name="Get the papers on your topics by email").click()
        field = _box(page, "#email")
        assert 0 <= field["y"] < PHONE["height"], field


def test_on_a_wide_screen_the_form_stands_beside_the_papers(
        site: tuple[Settings, ReaderPages]) -> None:
    served_at, _ = site
    with chromium() as browser:
        page = browser.new_page(viewport=DESKTOP)  # type: ignore[arg-type]
        page.goto(served_at.base_url + "/")
        paper, form = _box(page, "article.card"), _box(page, "#subscribe")
        assert form["x"] > paper["x"] + paper["width"] and abs(form["y"] - paper["y"]) < 2
        # The prompt to scroll down is for one column only.
        assert not page.get_by_role("link", name="Get the papers on your topics by email") \
            .is_visible()


def test_the_sign_up_button_beside_a_long_day_can_be_reached(
        site: tuple[Settings, ReaderPages]) -> None:
    """A real day has a hundred papers or more. The form beside them was stuck to the top
    of the screen while they scrolled by, and it is taller than the screen: its button
    stayed below the fold until the last paper (2,271 px down a 900 px window when
    scrolled to where it belongs, with 60 papers)."""
    served_at, _ = site
    engine = db.make_engine(served_at.database_url)
    with db.transaction(engine) as session:
        session.add_all(Paper(key=f"2609.9{n:04d}", arxiv_id=f"2609.9{n:04d}",
                              title=f"A paper of a long day, number {n}",
                              abstract="We study things at length. " * 12, authors=["A. Author"],
                              categories=["cs.LG"], announce_type="new", announced_on=DAY,
                              abs_url=f"https://arxiv.org/abs/2609.9{n:04d}")
                        for n in range(60))
    engine.dispose()
    with chromium() as browser:
        page = browser.new_page(viewport=DESKTOP)  # type: ignore[arg-type]
        page.goto(served_at.base_url + "/")
        assert page.locator("article.card").count() > 60
        button = "#subscribe button[type=submit]"
        where = _box(page, button)["y"]  # from the top of the page, before any scroll
        # Scroll as a reader does after ticking topics, down to where the button is.
        page.mouse.wheel(0, where - 400)
        page.wait_for_function(f"() => window.scrollY >= {where - 400} - 1")
        on_screen = _box(page, button)
        bottom = on_screen["y"] + on_screen["height"]
        assert on_screen["y"] >= 0 and bottom <= DESKTOP["height"], on_screen


def _margins(page: Page) -> tuple[float, float]:
    """The room left and right of the page's content (main's first box)."""
    box = _box(page, "main > *")
    return box["x"], DESKTOP["width"] - box["x"] - box["width"]


def test_one_column_pages_are_centred_on_a_wide_screen(
        site: tuple[Settings, ReaderPages]) -> None:
    served_at, pages = site
    base = served_at.base_url
    with chromium() as browser:
        page = browser.new_page(viewport=DESKTOP)  # type: ignore[arg-type]
        margins = {}
        for name, path in (("paper", pages.paper), ("rate", pages.rate),
                           ("manage", pages.manage), ("confirm", pages.confirm),
                           ("unsubscribe", pages.unsubscribe), ("days", "/days"),
                           ("a day without papers", f"/days/{DAY + timedelta(days=2)}"),
                           ("not found", "/no/such/page")):
            page.goto(base + path)
            margins[name] = _margins(page)
        # The forms' own pages: a sign-up with mistakes, then one that goes through.
        page.goto(base + "/")
        page.get_by_role("button", name="Subscribe").click()
        page.get_by_role("alert").wait_for()
        margins["subscribe"] = _margins(page)
        page.get_by_label("Email address").fill("someone@example.org")
        page.get_by_label("Theory").check()
        page.get_by_role("button", name="Subscribe").click()
        page.get_by_role("heading", name="Check your inbox").wait_for()
        margins["subscribed"] = _margins(page)
    # Each sat against the left edge: 80 px left of it, 496 px right, at 1280.
    lopsided = {name: m for name, m in margins.items() if abs(m[0] - m[1]) > 2}
    assert not lopsided, lopsided
    assert all(left > 200 for left, _ in margins.values()), margins


def test_the_site_has_an_icon(client: FlaskClient) -> None:
    icon = client.get("/favicon.ico")
    # It was a 404 (an HTML error page) in every browser's first visit.
    assert icon.status_code == 200 and icon.content_type.startswith("image/")
    assert icon.data[:4] == b"\x00\x00\x01\x00"  # an ICO file's magic number
    page = client.get("/").get_data(as_text=True)
    assert 'rel="icon" href="/favicon.ico"' in page
    svg = client.get("/static/favicon.svg")
    assert 'href="/static/favicon.svg"' in page and svg.status_code == 200
    assert svg.content_type.startswith("image/svg+xml")


def test_every_static_file_ships_in_the_wheel() -> None:
    """The wheel holds only the data files pyproject.toml names: a file in static/ that no
    pattern matches works from the checkout and is a 404 once installed."""
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["*"]
    static = REPO / "newsletter" / "web" / "static"
    left_out = [p.name for p in static.iterdir()
                if p.is_file() and not any(fnmatch.fnmatch(p.name, g) for g in patterns)]
    assert not left_out, left_out
