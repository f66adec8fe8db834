"""The rendered digest in headless Chromium: readable on a phone and on a desktop."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from newsletter.digest.selection import Interests, candidate, select
from newsletter.mail.message import Addressee, compose
from newsletter.mail.render import render_digest
from tests.web.test_web_browser import chromium

LONG = "Hyper" + "parameter" * 12  # one unbreakable word, far wider than a phone
PAPERS = [
    candidate(i, f"2609.{10000 + i}",
              f"{LONG}: A Study of $\\mathcal{{O}}(n \\log n)$ Attention for Long Contexts",
              "An abstract.", [f"Author {k} Surname" for k in range(9)],
              ["llm", "efficient-ml", "nlp"],
              [f"Key point {k} about https://example.org/{'x' * 80} and more." for k in range(4)],
              abs_url=f"https://arxiv.org/abs/2609.{10000 + i}",
              pdf_url=f"https://arxiv.org/pdf/2609.{10000 + i}v1",
              code_url="https://github.com/example-lab/" + "a" * 60,
              card_source="offline" if i % 2 else "llm")
    for i in range(1, 4)
]


@pytest.fixture(scope="module")
def digest_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    selection = select(PAPERS, Interests(topics=("llm",), max_papers=2))
    reader = Addressee("ada@example.org", 1, selection, "https://paperwire.example.org/manage/T",
                       "https://paperwire.example.org/unsubscribe/T",
                       "https://paperwire.example.org/digest/T")
    batch = compose([reader], day=date(2026, 9, 24), frequency="daily",
                    site_url="https://paperwire.example.org")
    path = tmp_path_factory.mktemp("digest") / "digest.html"
    path.write_text(render_digest(batch.recipients[0].data).html)
    return path


@pytest.mark.parametrize("width", [375, 800])
def test_digest_fits_the_screen_without_horizontal_scroll(digest_file: Path, width: int) -> None:
    with chromium() as browser:
        page = browser.new_page(viewport={"width": width, "height": 900})
        page.goto(digest_file.as_uri())
        overflow = page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth")
        text = page.inner_text("body")
        page.screenshot(path=str(digest_file.with_name(f"digest-{width}.png")),
                        full_page=True)
    assert overflow <= 0
    # What a reader must see: the cut, the reasons, the offline mark and the footer links.
    assert "…and 1 more on the site" in text
    assert "Match 60/100 Why: Large Language Models" in " ".join(text.split())
    assert "Offline summary" in text
    assert "Manage topics" in text and "Unsubscribe" in text
