"""Digests become one batch: each reader's digest as compact template data. Pure.

A reader's data holds everything their digest shows (subject, headline, papers with their
why-lines and scores, their own links) under short keys, for the one digest template
(email_templates/digest.mjml and digest.txt, Handlebars). Each paper's part is built once
per process and shared by every reader who gets it; only position, score and "why" are
the reader's own.

SendGrid caps one personalization's `dynamic_template_data` at 10,000 bytes, so the data
is kept small: short keys, arXiv links rebuilt by the template from the paper's id, fields
clipped. A digest still too big is built again with tighter clips; one that does not fit
even then keeps that data, and the SendGrid sender sends it by another route (content
rendered here, in a request of its own).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from typing import Any
from urllib.parse import quote

from newsletter.batch import Batch, Recipient
from newsletter.digest import Candidate, Pick, Selection, headline
from newsletter.mail import list_headers
from newsletter.taxonomy import topic_name

# "The total collective size of your dynamic_template_data may not exceed 10,000 bytes per
# personalization object" (SendGrid's client libraries, e.g. sendgrid-java's Personalization
# docs; the v3 reference states the same cap for substitutions and custom_args:
# https://www.twilio.com/docs/sendgrid/api-reference/mail-send/mail-send).
DATA_LIMIT = 10_000

PREHEADER_CHARS = 140


@dataclass(frozen=True)
class Detail:
    """How much of each paper a digest carries: key points (how many, characters each) and
    characters of abstract. The paper's page on the site always has the whole card."""

    key_points: int
    key_point: int
    abstract: int


FULL = Detail(key_points=4, key_point=240, abstract=600)
# About 400 bytes a paper: a digest of 20 papers still fits DATA_LIMIT.
TIGHT = Detail(key_points=2, key_point=100, abstract=200)


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


def paper_url(site_url: str, key: str) -> str:
    return f"{site_url}/papers/{quote(key, safe='/')}"


@lru_cache(maxsize=8192)
def _paper(paper: Candidate, detail: Detail) -> tuple[tuple[tuple[str, Any], ...], int]:
    """A paper's part of the data, the same for every reader who gets it, and the length
    of its JSON.

    Cached: a day's 200 papers are built (and measured) once per process, not once per
    reader. The template rebuilds arXiv's standard links from the id, so only other links
    are sent.
    """
    key = paper.key
    part: dict[str, Any] = {
        "t": _line(paper.title),
        "k": quote(key, safe="/"),
        "tp": [topic_name(t) for t in paper.topics],
        "a": _clip(_line(short_authors(paper.authors)), 200),
    }
    if paper.key_points:
        part["kp"] = [_clip(_line(k), detail.key_point)
                      for k in paper.key_points[:detail.key_points]]
    else:
        part["ab"] = _clip(_line(paper.abstract), detail.abstract)
    if paper.revised:
        part["r"] = 1
    if paper.abs_url and paper.abs_url != f"https://arxiv.org/abs/{key}":
        part["abs"] = paper.abs_url
    pdf = paper.pdf_url
    if pdf and pdf.startswith(f"https://arxiv.org/pdf/{key}v"):
        part["pv"] = pdf.removeprefix(f"https://arxiv.org/pdf/{key}")
    elif pdf:
        part["pdf"] = pdf
    if paper.code_url:
        part["code"] = paper.code_url
    if paper.card_source == "offline":
        part["o"] = 1  # "Offline summary: ... not written by an LLM"
    elif paper.card_source is None:
        part["na"] = 1  # "No summary yet: this is the abstract"
    return tuple(part.items()), len(json.dumps(part))


def _pick(position: int, pick: Pick, detail: Detail) -> tuple[dict[str, Any], int]:
    """A paper as one reader gets it (position, score, why), and the length of its JSON:
    the shared part's, plus what json.dumps adds for the reader's three keys."""
    part, part_bytes = _paper(pick.candidate, detail)
    why = _line(", ".join(pick.reasons))
    tail = f', "i": {position}, "sc": {pick.score}, "w": {json.dumps(why)}'
    return {**dict(part), "i": position, "sc": pick.score, "w": why}, part_bytes + len(tail)


def subject_line(selection: Selection, day: date) -> str:
    return f"{headline(selection)} · Paperwire, {day:%a %-d %b}"


def digest_data(a: Addressee, *, day: date, frequency: str, site_url: str,
                detail: Detail = FULL) -> tuple[dict[str, Any], int]:
    """One reader's `dynamic_template_data` (everything their digest shows) and its size:
    len(json.dumps(data)), counted without serialising the papers again.

    json.dumps' default form (ASCII escapes, spaced separators) is what the client sends,
    and the largest way of counting these bytes: a digest that fits here fits there.
    """
    selection = a.selection
    first = _line(selection.picks[0].candidate.title) if selection.picks else ""
    preheader = (f"{first} — and {len(selection.picks) - 1} more"
                 if len(selection.picks) > 1 else first)
    data: dict[str, Any] = {
        "s": subject_line(selection, day),
        "h": headline(selection),
        "pre": _clip(preheader, PREHEADER_CHARS),
        "d": f"{day:%A, %-d %B %Y}",
        "f": frequency,
        "u": site_url,
        "m": a.manage_url,
        "x": a.unsubscribe_url,
        "v": a.view_url,
        "p": [],
    }
    if selection.more:
        data["mn"] = selection.more
        data["mu"] = f"{site_url}/days/{day.isoformat()}"
    size = len(json.dumps(data))  # the reader's own fields, with an empty list of papers
    for position, pick in enumerate(selection.picks, start=1):
        item, item_bytes = _pick(position, pick, detail)
        data["p"].append(item)
        size += item_bytes + (2 if position > 1 else 0)  # ", " between items
    return data, size


def _fitted(a: Addressee, **context: Any) -> tuple[dict[str, Any], int]:
    """The reader's data at the most detail that fits DATA_LIMIT, and its size."""
    for detail in (FULL, TIGHT):
        data, size = digest_data(a, detail=detail, **context)
        if size <= DATA_LIMIT:
            break
    return data, size


def compose(
    addressees: Sequence[Addressee], *, day: date, frequency: str, site_url: str
) -> Batch:
    """One batch for these readers, whatever each one's digest holds."""
    site_url = site_url.rstrip("/")
    recipients = []
    for a in addressees:
        data, size = _fitted(a, day=day, frequency=frequency, site_url=site_url)
        recipients.append(Recipient(
            to=a.email,
            data=data,
            data_bytes=size,
            # Only List-Unsubscribe names the reader; the rest is the same for the batch.
            headers={"List-Unsubscribe": f"<{a.unsubscribe_url}>"},
            custom_args={"delivery_id": str(a.delivery_id)},
        ))
    shared = list_headers("", site_url)
    del shared["List-Unsubscribe"]
    return Batch(recipients=recipients, headers=shared)
