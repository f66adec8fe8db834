"""The README's pictures of the reader's site: the front page on a desktop and on a phone,
the manage page, and the digest the site's reader gets.

    .venv/bin/python -m tests.support.screenshot_site [FOLDER]   # default: docs/

Builds a fresh SQLite database in a temporary folder (tests/support/reader_site.py: real
arXiv listings with their offline cards, a reader with topics, keywords and ratings), serves
the site on loopback as a deployed site's readers get it (no development note), and saves
docs/site-front.png (1280 x 900), docs/site-phone.png (390 x 844) and docs/site-manage.png
(the settings after the topics on the manage page), and docs/digest.png (the top of the
reader's digest as a mail client shows it, 700 px wide): each a screen or less, not the
whole page, to keep the files small.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from tests.conftest import REPO

if TYPE_CHECKING:
    from playwright.sync_api import FloatRect, Page


def _box(page: Page, selector: str) -> FloatRect:
    """Where an element is on the page (the page is not scrolled)."""
    box = page.locator(selector).bounding_box()
    assert box is not None, selector
    return box


def main(folder: Path) -> None:
    from tests.support.reader_site import served
    from tests.support.web import chromium

    with tempfile.TemporaryDirectory(prefix="paperwire-screenshot-") as data, \
            served(Path(data), production=True) as (site, pages), chromium() as browser:
        desktop = browser.new_page(viewport={"width": 1280, "height": 900})
        desktop.goto(site.base_url + "/")
        desktop.screenshot(path=str(folder / "site-front.png"))

        phone = browser.new_page(viewport={"width": 390, "height": 844})
        phone.goto(site.base_url + "/")
        phone.screenshot(path=str(folder / "site-phone.png"))

        # The settings after the topics, from the keywords to the save button (the tracking
        # choice among them, which used to be a column one word wide), cut from the page.
        manage = browser.new_page(viewport={"width": 1280, "height": 900})
        manage.goto(site.base_url + pages.manage)
        top, form = _box(manage, "label[for=include_keywords]"), _box(manage, "form.preferences")
        manage.screenshot(path=str(folder / "site-manage.png"), full_page=True,
                          clip={"x": form["x"] - 16, "y": top["y"] - 24,
                                "width": form["width"] + 32,
                                "height": form["y"] + form["height"] - top["y"] + 40})

        # The digest, rendered by the send's own code, as a mail client shows it.
        from newsletter import db, delivery
        from tests.support.reader_site import DAY, READER

        engine = db.make_engine(site.database_url)
        digest = delivery.preview(engine, site, READER, day=DAY)
        engine.dispose()
        assert digest is not None, "the seeded reader gets no digest"
        mail = browser.new_page(viewport={"width": 700, "height": 600})
        mail.set_content(digest.html)
        mail.screenshot(path=str(folder / "digest.png"), full_page=True)
    for name in ("site-front.png", "site-phone.png", "site-manage.png", "digest.png"):
        print(folder / name)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "docs")
