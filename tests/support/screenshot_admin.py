"""The README's picture of the overview: a month of activity, the site, Chromium.

    .venv/bin/python -m tests.support.screenshot_admin [docs/admin-overview.png]

Builds a fresh SQLite database in a temporary folder (tests/support/admin_desk.py makes a
month of readers, editions, papers, cards and ratings), serves the site on loopback, signs
in as an operator and saves the overview, whole page, as a PNG.
"""

from __future__ import annotations

import os
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from tests.conftest import REPO


def main(out: Path) -> None:
    os.environ["PAPERWIRE_DEV"] = "1"
    from newsletter import db
    from newsletter.config import Settings
    from tests.support.admin_desk import OPERATOR, PASSWORD, add_operator, month_of_activity
    from tests.support.web import chromium, live_site

    with tempfile.TemporaryDirectory(prefix="paperwire-screenshot-") as folder:
        url = f"sqlite:///{Path(folder) / 'paperwire.db'}"
        engine = db.make_engine(url)
        db.upgrade(engine)
        month_of_activity(engine, datetime.now(UTC).date())
        add_operator(engine)
        settings = Settings(database_url=url, outbox_dir=Path(folder) / "outbox")
        with live_site(settings, engine) as served, chromium() as browser:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(served.base_url + "/admin/login")
            page.get_by_label("Email").fill(OPERATOR)
            page.get_by_label("Password").fill(PASSWORD)
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_url("**/admin")
            page.screenshot(path=str(out), full_page=True)
        engine.dispose()
    print(out)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "docs" / "admin-overview.png")
