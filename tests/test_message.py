"""A batch of different digests: layout, shared sections, per-reader tags. Pure."""

from __future__ import annotations

import dataclasses
from datetime import date

from newsletter.batch import personalize
from newsletter.digest import Interests, candidate, select
from newsletter.message import Addressee, compose

SITE = "https://paperwire.example.org"
DAY = date(2026, 9, 24)
QUANT = candidate(1, "2609.00001", "Quantization at 2 Bits", "abs", ["Ana Perez"],
                  ["efficient-ml"], ["q1", "q2", "q3", "q4"],
                  pdf_url="https://arxiv.org/pdf/2609.00001v1", card_source="llm")
# A feed title that tries to pull another paper's card into the reader's digest.
SNEAKY = candidate(2, "2609.00002", "Agents [[pw:h1]] and [[pw:manage]]", "abs", ["Kim Lee"],
                   ["llm"], ["s1", "s2", "s3", "s4"], card_source="offline")


def reader(email: str, wanted: Interests, papers=(QUANT, SNEAKY)) -> Addressee:
    return Addressee(email, 7, select(papers, wanted), f"{SITE}/manage/{email}",
                     f"{SITE}/unsubscribe/{email}", f"{SITE}/digest/{email}")


def read(batch, i: int) -> tuple[str, str]:
    r = batch.recipients[i]
    return (personalize(batch.html, r.substitutions, batch.sections),
            personalize(batch.text, r.substitutions, batch.sections))


def test_one_batch_carries_different_digests_each_with_its_own_links() -> None:
    batch = compose([reader("a@x.org", Interests(topics=("efficient-ml",))),
                     reader("b@x.org", Interests(topics=("llm",)))],
                    day=DAY, frequency="daily", site_url=SITE)
    a_html, a_text = read(batch, 0)
    b_html, b_text = read(batch, 1)
    assert "Quantization at 2 Bits" in a_text and "Agents" not in a_text
    assert "Agents" in b_text and "Quantization" not in b_text
    assert f"{SITE}/unsubscribe/a@x.org" in a_html and "b@x.org" not in a_html + a_text
    assert [r.subject for r in batch.recipients] == [
        "1 paper on Efficient ML · Paperwire, Thu 24 Sep",
        "1 paper on Large Language Models · Paperwire, Thu 24 Sep",
    ]
    assert "Offline summary" in b_text and "Offline summary" not in a_text
    assert "[[pw:" not in a_html + a_text + b_html + b_text.replace("[ [pw:", "")


def test_feed_text_cannot_name_a_tag() -> None:
    batch = compose([reader("b@x.org", Interests(topics=("llm",)))], day=DAY,
                    frequency="daily", site_url=SITE)
    html, text = read(batch, 0)
    assert "q1" not in html + text  # QUANT's card was not pulled in
    assert "/manage/b@x.org" not in text.split("Manage topics:")[0]
    assert "Agents [ [pw:h1]] and [ [pw:manage]]" in text


def test_a_new_link_on_the_same_paper_is_not_served_from_the_cache() -> None:
    first = compose([reader("a@x.org", Interests(topics=("efficient-ml",)))], day=DAY,
                    frequency="daily", site_url=SITE)
    v2 = dataclasses.replace(QUANT, pdf_url="https://arxiv.org/pdf/2609.00001v2")
    second = compose([reader("a@x.org", Interests(topics=("efficient-ml",)), papers=(v2,))],
                     day=DAY, frequency="daily", site_url=SITE)
    assert "2609.00001v1" in read(first, 0)[0]
    assert "2609.00001v2" in read(second, 0)[0] and "2609.00001v1" not in read(second, 0)[0]
