"""A digest becomes a message: subject, preheader, HTML and text, headers. Pure.

The body is rendered once per distinct digest (`render_email` compiles the MJML once and
fills it with autoescaping); each recipient's own links are substitution tags that the
sender fills (SendGrid server-side), so 1,000 readers of the same digest cost one render
and one request.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from urllib.parse import quote

from newsletter.batch import Batch, Recipient
from newsletter.digest import Pick, Selection, headline
from newsletter.mail import list_headers
from newsletter.render import render_email
from newsletter.taxonomy import topic_name

TAGS = ("-manage_url-", "-unsubscribe_url-", "-view_url-")
ABSTRACT_CHARS = 600


@dataclass(frozen=True)
class Addressee:
    """One recipient of a batch, with the links only they may use."""

    email: str
    delivery_id: int
    manage_url: str
    unsubscribe_url: str
    view_url: str


def short_authors(authors: Sequence[str], limit: int = 3) -> str:
    if len(authors) <= limit:
        return ", ".join(authors)
    return ", ".join(authors[:limit]) + " et al."


def _clip(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[:limit].rsplit(" ", 1)[0] + " …"


def _line(text: str) -> str:
    """One line: a CR/LF in feed text must not start a new line of the plain-text part."""
    return " ".join(text.split())


def _paper(pick: Pick, site_url: str) -> dict[str, object]:
    paper = pick.candidate
    note = None
    if paper.card_source == "offline":
        note = "Offline summary: sentences picked from the abstract, not written by an LLM"
    elif paper.card_source is None:
        note = "No summary yet: this is the abstract"
    return {
        "title": _line(paper.title),
        "url": f"{site_url}/papers/{quote(paper.key, safe='/')}",
        "topics": [topic_name(t) for t in paper.topics],
        "authors": _line(short_authors(paper.authors)),
        "key_points": [_line(k) for k in paper.key_points],
        "abstract": _clip(_line(paper.abstract), ABSTRACT_CHARS),
        "reasons": ", ".join(pick.reasons),
        "score": pick.score,
        "abs_url": paper.abs_url or f"{site_url}/papers/{quote(paper.key, safe='/')}",
        "pdf_url": paper.pdf_url,
        "code_url": paper.code_url,
        "revised": paper.revised,
        "note": note,
    }


def subject_line(selection: Selection, day: date) -> str:
    return f"{headline(selection)} · Paperwire, {day:%a %-d %b}"


def compose(
    selection: Selection, addressees: Sequence[Addressee], *, day: date, frequency: str,
    site_url: str,
) -> Batch:
    """The batch for readers whose digests are identical but for their links."""
    site_url = site_url.rstrip("/")
    subject = subject_line(selection, day)
    first = _line(selection.picks[0].candidate.title) if selection.picks else ""
    values = {
        "subject": subject,
        "preheader": _clip(f"{first} — and {len(selection.picks) - 1} more"
                           if len(selection.picks) > 1 else first, 140),
        "headline": headline(selection),
        "date_label": f"{day:%A, %-d %B %Y}",
        "frequency": frequency,
        "papers": [_paper(p, site_url) for p in selection.picks],
        "more": selection.more,
        "more_url": f"{site_url}/days/{day.isoformat()}",
        "site_url": site_url,
    }
    rendered = render_email("digest", values)
    recipients = []
    for a in addressees:
        # Only List-Unsubscribe names the reader; the rest is the same for the whole batch.
        own = list_headers(a.unsubscribe_url, site_url)
        recipients.append(Recipient(
            to=a.email,
            substitutions=dict(zip(TAGS, (a.manage_url, a.unsubscribe_url, a.view_url),
                                   strict=True)),
            headers={"List-Unsubscribe": own.pop("List-Unsubscribe")},
            custom_args={"delivery_id": str(a.delivery_id)},
        ))
    shared = list_headers("", site_url)
    del shared["List-Unsubscribe"]
    return Batch(subject=subject, html=rendered.html, text=rendered.text,
                 recipients=recipients, headers=shared)
