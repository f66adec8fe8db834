"""Digests become one batch: subject, preheader, HTML and text, headers. Pure.

The MJML layout is compiled once and filled once per batch (date, site); each paper's
card is rendered once per batch as a shared section (Jinja, autoescaped), and so is each
distinct "why it matched" line. A reader's own digest is then only a list of section tags
plus their links and headline, as substitutions: SendGrid assembles it server-side, so
1,000 readers cost one request however different their digests are.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from urllib.parse import quote

from markupsafe import Markup, escape

from newsletter.batch import Batch, Recipient
from newsletter.digest import Candidate, Pick, Selection, headline
from newsletter.mail import list_headers
from newsletter.render import render_email, render_fragment
from newsletter.taxonomy import topic_name

ABSTRACT_CHARS = 600
_CUT = "\x00why\x00"  # where the reader's "why" line goes inside a paper's card


def tag(name: str) -> str:
    """A substitution or section tag. Feed and reader text can never contain one (`_inert`)."""
    return f"[[pw:{name}]]"


@dataclass(frozen=True)
class Addressee:
    """One reader of a batch: their digest and the links only they may use."""

    email: str
    delivery_id: int
    selection: Selection
    manage_url: str
    unsubscribe_url: str
    view_url: str


def short_authors(authors: Sequence[str], limit: int = 3) -> str:
    if len(authors) <= limit:
        return ", ".join(authors)
    return ", ".join(authors[:limit]) + " et al."


def _line(text: str) -> str:
    """One line: a CR/LF in feed text must not start a new line of the plain-text part."""
    return " ".join(text.split())


def _clip(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[:limit].rsplit(" ", 1)[0] + " …"


def _inert(text: str, html: bool) -> str:
    """Break any "[[" so text from a feed or a reader can never name one of our tags."""
    return text.replace("[[", "&#91;[" if html else "[ [")


def paper_url(site_url: str, key: str) -> str:
    return f"{site_url}/papers/{quote(key, safe='/')}"


def _paper_values(paper: Candidate, site_url: str) -> dict[str, object]:
    note = None
    if paper.card_source == "offline":
        note = "Offline summary: sentences picked from the abstract, not written by an LLM"
    elif paper.card_source is None:
        note = "No summary yet: this is the abstract"
    url = paper_url(site_url, paper.key)
    return {
        "title": _line(paper.title),
        "url": url,
        "topics": [topic_name(t) for t in paper.topics],
        "authors": _line(short_authors(paper.authors)),
        "key_points": [_line(k) for k in paper.key_points],
        "abstract": _clip(_line(paper.abstract), ABSTRACT_CHARS),
        "abs_url": paper.abs_url or url,
        "pdf_url": paper.pdf_url,
        "code_url": paper.code_url,
        "revised": paper.revised,
        "note": note,
    }


@lru_cache(maxsize=4096)
def _paper_sections(paper: Candidate, site_url: str) -> tuple[tuple[str, str], ...]:
    """A paper's card, cut around the "why" line: two HTML and two text sections.

    Cached: a day's 200 cards are rendered once per process, not once per 1,000 readers.
    """
    values = {"p": _paper_values(paper, site_url), "why": Markup(_CUT)}
    html_head, html_foot = render_fragment("paper_card.html", values).split(_CUT)
    text_head, text_foot = render_fragment("paper_card.txt", values).split(_CUT)
    n = paper.paper_id
    return ((tag(f"h{n}"), _inert(html_head, True)), (tag(f"f{n}"), _inert(html_foot, True)),
            (tag(f"t{n}"), _inert(text_head, False)), (tag(f"u{n}"), _inert(text_foot, False)))


def _why(pick: Pick) -> tuple[str, str]:
    reasons = ", ".join(pick.reasons)
    html = (f'<div style="margin:8px 0 0"><span class="score">{pick.score}</span> '
            f'<span class="why">Why: {escape(reasons)}</span></div>')
    text = f"   Why ({pick.score}/100): {_line(reasons)}\n"
    return _inert(html, True), _inert(text, False)


def subject_line(selection: Selection, day: date) -> str:
    return f"{headline(selection)} · Paperwire, {day:%a %-d %b}"


def compose(
    addressees: Sequence[Addressee], *, day: date, frequency: str, site_url: str
) -> Batch:
    """One batch for these readers, whatever each one's digest holds."""
    site_url = site_url.rstrip("/")
    sections: dict[str, str] = {}
    # Tags per paper and per distinct "why" line, built once per batch, not once per reader.
    paper_tags: dict[int, tuple[str, str, str, str]] = {}
    why_tags: dict[tuple[int, tuple[str, ...]], tuple[str, str]] = {}
    recipients = []
    for a in addressees:
        papers_html, papers_text = [], []
        for position, pick in enumerate(a.selection.picks, start=1):
            paper = pick.candidate
            n = paper.paper_id
            tags = paper_tags.get(n)
            if tags is None:
                sections.update(_paper_sections(paper, site_url))
                tags = paper_tags[n] = (tag(f"h{n}"), tag(f"f{n}"), tag(f"t{n}"), tag(f"u{n}"))
            key = (pick.score, pick.reasons)
            why = why_tags.get(key)
            if why is None:
                why = why_tags[key] = (tag(f"w{len(why_tags)}"), tag(f"x{len(why_tags)}"))
                sections[why[0]], sections[why[1]] = _why(pick)
            papers_html.append(tags[0] + why[0] + tags[1])
            papers_text.append(f"{position}. {tags[2]}{why[1]}{tags[3]}")
        selection = a.selection
        first = _line(selection.picks[0].candidate.title) if selection.picks else ""
        more = selection.more
        more_url = f"{site_url}/days/{day.isoformat()}"
        own = list_headers(a.unsubscribe_url, site_url)
        recipients.append(Recipient(
            to=a.email,
            subject=subject_line(selection, day),
            substitutions={
                tag("headline"): str(escape(headline(selection))),
                tag("preheader"): _inert(str(escape(_clip(
                    f"{first} — and {len(selection.picks) - 1} more"
                    if len(selection.picks) > 1 else first, 140))), True),
                tag("papers_html"): "".join(papers_html),
                tag("papers_text"): "\n".join(papers_text),
                tag("more_html"): (
                    f'<p style="text-align:center"><a href="{more_url}" '
                    f'style="color:#0b4f8a;font-weight:600">…and {more} more on the site</a></p>'
                    if more else ""),
                tag("more_text"): f"\n...and {more} more on the site: {more_url}\n" if more else "",
                tag("manage"): a.manage_url,
                tag("unsubscribe"): a.unsubscribe_url,
                tag("view"): a.view_url,
            },
            # Only List-Unsubscribe names the reader; the rest is the same for the batch.
            headers={"List-Unsubscribe": own["List-Unsubscribe"]},
            custom_args={"delivery_id": str(a.delivery_id)},
        ))
    layout = render_email("digest", {
        "date_label": f"{day:%A, %-d %B %Y}", "frequency": frequency, "site_url": site_url,
        "tag": tag,
    })
    shared = list_headers("", site_url)
    del shared["List-Unsubscribe"]
    return Batch(subject="Your Paperwire digest", html=layout.html, text=layout.text,
                 recipients=recipients, headers=shared, sections=sections)
