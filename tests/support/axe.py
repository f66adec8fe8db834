"""axe-core, the accessibility engine nobody here wrote, run inside Debian's Chromium.

`make test` installs the npm package `axe-core` into `.venv/axe/` (AXE_CORE_JS names
another copy). Without it, or without Chromium, a test is skipped locally and fails in CI
(`servers.missing`). Our pages forbid every script by CSP, so the context that runs axe
bypasses CSP: the only script it runs is axe itself.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from tests.conftest import REPO
from tests.support.servers import missing
from tests.support.web import chromium

if TYPE_CHECKING:
    from playwright.sync_api import BrowserContext, Page

# Impacts axe rates from minor to critical; these two block or badly hinder a reader.
BLOCKING = ("serious", "critical")


def axe_script() -> Path:
    path = Path(os.environ.get("AXE_CORE_JS")
                or REPO / ".venv" / "axe" / "node_modules" / "axe-core" / "axe.min.js")
    if not path.is_file():
        missing("axe-core (npm install axe-core; `make test` does)")
    return path


@contextlib.contextmanager
def axe_context(width: int = 1280, height: int = 900) -> Iterator[BrowserContext]:
    """A Chromium context that may inject axe into any page, even one whose CSP forbids it."""
    axe_script()
    with chromium() as browser:
        context = browser.new_context(bypass_csp=True,
                                      viewport={"width": width, "height": height})
        try:
            yield context
        finally:
            context.close()


def blocking_violations(page: Page) -> list[str]:
    """axe-core's serious and critical violations on the page as loaded, one line each."""
    page.add_script_tag(path=str(axe_script()))
    results = page.evaluate("() => axe.run(document, {resultTypes: ['violations']})")
    return [f"{v['id']} ({v['impact']}): {v['help']} at "
            + ", ".join(" ".join(n["target"]) for n in v["nodes"][:5])
            for v in results["violations"] if v["impact"] in BLOCKING]
