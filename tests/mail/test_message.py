"""A batch of different digests: each reader's compact template data, and the digest the
one template renders from it. Pure."""

from __future__ import annotations

import dataclasses
import json
import re
from datetime import date

from newsletter.digest.selection import Interests, candidate, select
from newsletter.mail.message import DATA_LIMIT, Addressee, compose
from newsletter.mail.render import render_digest

SITE = "https://paperwire.example.org"
DAY = date(2026, 9, 24)
QUANT = candidate(1, "2609.00001", "Quantization at 2 Bits", "abs", ["Ana Perez"],
                  ["efficient-ml"], ["q1", "q2", "q3", "q4"],
                  abs_url="https://arxiv.org/abs/2609.00001",
                  pdf_url="https://arxiv.org/pdf/2609.00001v1", card_source="llm")
AGENTS = candidate(2, "2609.00002", "Agents that Plan", "abs", ["Kim Lee"],
                   ["llm"], ["s1", "s2", "s3", "s4"], card_source="offline",
                   code_url="https://github.com/example/agents")


def reader(email: str, wanted: Interests, papers=(QUANT, AGENTS)) -> Addressee:
    return Addressee(email, 7, select(papers, wanted), f"{SITE}/manage/{email}",
                     f"{SITE}/unsubscribe/{email}", f"{SITE}/digest/{email}")


def test_one_batch_carries_different_digests_each_with_its_own_links() -> None:
    batch = compose([reader("a@x.org", Interests(topics=("efficient-ml",))),
                     reader("b@x.org", Interests(topics=("llm",)))],
                    day=DAY, frequency="daily", site_url=SITE)
    a, b = (render_digest(r.data) for r in batch.recipients)
    assert "Quantization at 2 Bits" in a.text and "Agents" not in a.text
    assert "Agents that Plan" in b.text and "Quantization" not in b.text
    assert f"{SITE}/unsubscribe/a@x.org" in a.html and "b@x.org" not in a.html + a.text
    assert [a.subject, b.subject] == [
        "1 paper on Efficient ML · Paperwire, Thu 24 Sep",
        "1 paper on Large Language Models · Paperwire, Thu 24 Sep",
    ]
    assert "Offline summary" in b.text and "Offline summary" not in a.text
    # arXiv's own links are rebuilt from the id; others are carried as they are.
    assert "PDF: https://arxiv.org/pdf/2609.00001v1" in a.text
    assert "arXiv: https://arxiv.org/abs/2609.00001" in a.text
    assert "Code: https://github.com/example/agents" in b.text
    assert [r.headers for r in batch.recipients] == [
        {"List-Unsubscribe": f"<{SITE}/unsubscribe/a@x.org>", "Content-Language": "en"},
        {"List-Unsubscribe": f"<{SITE}/unsubscribe/b@x.org>", "Content-Language": "en"}]
    assert batch.headers == {"List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
                             "List-Id": "Paperwire <paperwire.paperwire.example.org>"}
    assert batch.recipients[0].custom_args == {"delivery_id": "7"}


def test_the_data_is_compact_and_measured() -> None:
    batch = compose([reader("a@x.org", Interests(topics=("efficient-ml",)))], day=DAY,
                    frequency="daily", site_url=SITE)
    (own,) = batch.recipients
    assert own.data_bytes == len(json.dumps(own.data))
    (paper,) = own.data["p"]
    assert paper == {"t": "Quantization at 2 Bits", "k": "2609.00001", "tp": ["Efficient ML"],
                     "a": "Ana Perez", "kp": ["q1", "q2", "q3", "q4"], "pv": "v1", "i": 1,
                     "sc": paper["sc"], "w": "Efficient ML"}


def test_the_measured_size_is_exactly_what_the_client_sends() -> None:
    odd = candidate(9, "hep-th/9901001", "Ünïcode — “quotes” \\ back\\slash", "Résumé",
                    ["Zoë Ø"], ["llm", "nlp"], [], card_source=None,
                    pdf_url="https://example.org/x.pdf")
    batch = compose([reader("a@x.org", Interests(topics=("llm",), max_papers=1),
                            (QUANT, AGENTS, odd)),
                     reader("b@x.org", Interests(topics=("llm", "nlp")), (AGENTS, odd))],
                    day=DAY, frequency="weekly", site_url=SITE)
    assert [r.data_bytes for r in batch.recipients] == [
        len(json.dumps(r.data)) for r in batch.recipients]
    assert batch.recipients[0].data["ml"] == "…and 1 more on the site"


def long_paper(i: int, words: int) -> object:
    point = " ".join(["word"] * words)
    return candidate(100 + i, f"2609.{10000 + i}", f"Paper {i} " + "T" * 60, "abs",
                     [f"Author {k}" for k in range(5)], ["llm"], [point] * 4,
                     card_source="llm")


def test_a_big_digest_is_clipped_to_fit_the_data_cap() -> None:
    papers = [long_paper(i, 40) for i in range(20)]
    batch = compose([reader("a@x.org", Interests(topics=("llm",), max_papers=20), papers)],
                    day=DAY, frequency="daily", site_url=SITE)
    (own,) = batch.recipients
    assert len(own.data["p"]) == 20  # every paper is still there
    assert own.data_bytes <= DATA_LIMIT
    assert [len(p) < 110 for p in own.data["p"][0]["kp"]] == [True, True]


def test_a_digest_that_cannot_fit_says_so_by_its_size() -> None:
    papers = [long_paper(i, 200) for i in range(60)]
    batch = compose([reader("a@x.org", Interests(topics=("llm",), max_papers=60), papers)],
                    day=DAY, frequency="daily", site_url=SITE)
    (own,) = batch.recipients
    assert own.data_bytes > DATA_LIMIT and len(own.data["p"]) == 60


def test_hostile_text_renders_literally_and_inert() -> None:
    hostile = "{{ 7*7 }} }}{{ <script>x</script> [[pw:manage]] {{{raw}}}\r\nBcc: v@example.org"
    paper = candidate(3, "2609.00003", hostile, hostile, [hostile], ["llm"], [],
                      card_source=None)
    batch = compose([reader("c@x.org", Interests(topics=("llm",)), (paper,))], day=DAY,
                    frequency="daily", site_url=SITE)
    digest = render_digest(batch.recipients[0].data)
    flat = "{{ 7*7 }} }}{{ <script>x</script> [[pw:manage]] {{{raw}}} Bcc: v@example.org"
    assert f"1. {flat}" in digest.text and "49" not in digest.text
    assert not any(line.startswith("Bcc:") for line in digest.text.splitlines())
    assert "&lt;script&gt;x&lt;/script&gt;" in digest.html and "<script>" not in digest.html
    assert "{{ 7*7 }} }}{{" in digest.html and "No summary yet" in digest.text


def test_a_new_link_on_the_same_paper_is_not_served_from_the_cache() -> None:
    first = compose([reader("a@x.org", Interests(topics=("efficient-ml",)))], day=DAY,
                    frequency="daily", site_url=SITE)
    v2 = dataclasses.replace(QUANT, pdf_url="https://arxiv.org/pdf/2609.00001v2")
    second = compose([reader("a@x.org", Interests(topics=("efficient-ml",)), papers=(v2,))],
                     day=DAY, frequency="daily", site_url=SITE)
    assert "2609.00001v1" in render_digest(first.recipients[0].data).html
    html = render_digest(second.recipients[0].data).html
    assert "2609.00001v2" in html and "2609.00001v1" not in html


FORECAST = candidate(4, "2609.00004", "Forecasting with Probes", "abs", ["Zoë Ø"],
                     ["time-series", "interpretability"], ["f1"], card_source="offline")


def visible(html: str) -> str:
    """The words of an HTML part, as a reader or a screen reader gets them."""
    return " ".join(re.sub(r"<[^>]+>", " ", re.sub(r"<(style|head)\b.*?</\1>", " ", html,
                                                   flags=re.S)).split())


def rendered(wanted: Interests, papers=(QUANT, AGENTS, FORECAST)):
    batch = compose([reader("a@x.org", wanted, papers)], day=DAY, frequency="daily",
                    site_url=SITE)
    return render_digest(batch.recipients[0].data)


def test_the_why_line_says_what_matched_as_a_reader_would() -> None:
    digest = rendered(Interests(topics=("efficient-ml", "time-series", "interpretability"),
                                include_keywords=("bits", "quantization"),
                                authors=("Ana Perez",)))
    for part in (digest.text, visible(digest.html)):
        assert "Why: Efficient ML · mentions “bits” and “quantization” · by Ana Perez" in part
        assert "Why: Time Series · Interpretability" in part
        assert "topic:" not in part and "keyword:" not in part and "author:" not in part


def test_the_score_says_its_scale() -> None:
    digest = rendered(Interests(topics=("llm",)))
    assert "Match 60/100. Why: Large Language Models" in digest.text
    assert "Match 60/100 Why: Large Language Models" in visible(digest.html)


def test_the_subject_names_every_topic_of_the_picks() -> None:
    three = rendered(Interests(topics=("efficient-ml", "llm", "time-series")))
    assert three.subject == ("3 papers on Efficient ML, Large Language Models and Time Series"
                             " · Paperwire, Thu 24 Sep")
    many = rendered(Interests(topics=("efficient-ml", "llm", "time-series",
                                      "interpretability")))
    assert many.subject == ("3 papers on Time Series, Interpretability and 2 more topics"
                            " · Paperwire, Thu 24 Sep")


def test_each_item_of_the_text_part_stands_apart() -> None:
    # The offline note used to run straight into the next item's number.
    digest = rendered(Interests(topics=("llm", "time-series")))
    lines = digest.text.splitlines()
    numbered = [i for i, line in enumerate(lines) if re.match(r"\d+\. ", line)]
    assert len(numbered) == 2
    assert all(lines[i - 1] == "" for i in numbered)
    notes = [i for i, line in enumerate(lines) if "(Offline summary:" in line]
    assert len(notes) == 2 and all(lines[i + 1] == "" for i in notes)


def test_a_why_line_stored_before_likes_and_ratings_were_told_apart_still_reads_well() -> None:
    from newsletter.digest import reasons
    old = "like “Paper X” you rated up or liked"
    assert reasons.why_line([old]) == "similar to “Paper X”, which you rated up or liked"
    assert reasons.why_line([reasons.resembles("Paper X", rated_up=True)]) == (
        "similar to “Paper X”, which you rated up")
    assert reasons.why_line([reasons.resembles("Paper X", rated_up=False)]) == (
        "similar to “Paper X”, which you said you like")


def test_a_preprint_links_to_its_server_and_lists_its_other_places() -> None:
    fission = candidate(
        3, "doi:10.1101/2026.09.21.677450", "Mitochondrial fission sites", "abs",
        ["Brennan, A. M."], ["efficient-ml"], ["f1", "f2", "f3", "f4"], card_source="llm",
        abs_url="https://www.biorxiv.org/content/10.1101/2026.09.21.677450v1",
        pdf_url="https://www.biorxiv.org/content/10.1101/2026.09.21.677450v1.full.pdf",
        source="biorxiv", also_on=[("arxiv", "https://arxiv.org/abs/2609.00003"),
                                   ("example-lab", "https://lab.example.org/posts/fission")])
    batch = compose([reader("a@x.org", Interests(topics=("efficient-ml",)), (fission,))],
                    day=DAY, frequency="daily", site_url=SITE)
    digest = render_digest(batch.recipients[0].data)
    assert "bioRxiv: https://www.biorxiv.org/content/10.1101/2026.09.21.677450v1" in digest.text
    assert "arXiv: https://arxiv.org/abs/doi" not in digest.text
    assert ("Also on arXiv: https://arxiv.org/abs/2609.00003 example-lab: "
            "https://lab.example.org/posts/fission") in " ".join(digest.text.split())
    assert ('<a href="https://www.biorxiv.org/content/10.1101/2026.09.21.677450v1">bioRxiv</a>'
            in digest.html)
    assert '<a href="https://arxiv.org/abs/2609.00003">arXiv</a>' in digest.html
    assert "Also on" in digest.html
    # An arXiv paper alone says nothing of the kind.
    plain = render_digest(compose([reader("b@x.org", Interests(topics=("efficient-ml",)))],
                                  day=DAY, frequency="daily", site_url=SITE
                                  ).recipients[0].data)
    assert "Also on" not in plain.text + plain.html and "bioRxiv" not in plain.html
