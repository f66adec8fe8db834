"""Digests become one batch: each reader's digest as compact template data. Pure.

A reader's data holds everything their digest shows (subject, headline, papers with their
why-lines and scores, their own links) under short keys, for the one digest template
(email_templates/digest.mjml and digest.txt, Handlebars). Each paper's part is built once
per process and language and shared by every reader who gets it; only position, score and
"why" are the digest's own. Readers with the same interests share one digest, built and serialised
once a batch: only their links are their own. Each reader's data goes with its JSON
(`Recipient.data_json`), so a sender need not serialise a thousand digests again.

SendGrid caps one personalization's `dynamic_template_data` at 10,000 bytes, so the data
is kept small: short keys, arXiv links rebuilt by the template from the paper's id, fields
clipped. A digest still too big is built again with tighter clips; one that does not fit
even then keeps that data, and the SendGrid sender sends it by another route (content
rendered here, in a request of its own).

Every word a reader's data holds (subject, headline, preheader, date, frequency, why-lines,
topic names) is built in their language (`Addressee.language`, a card language: the mail
speaks `i18n.speaks` of it, English when it has no catalog), and their `Recipient` says
which language's template renders it. The template's own labels are translated in the
template (render.py). A paper whose card could not be had in the reader's language is
marked with a flag ("ut"), the language's name said once ("cl"); a digest none of whose
cards is in their language says so once at the top instead ("en").
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from typing import Any
from urllib.parse import quote, urlsplit

from newsletter import i18n
from newsletter.digest.reasons import why_line
from newsletter.digest.selection import Candidate, Pick, Selection, headline
from newsletter.ingest.identity import source_label
from newsletter.mail.batch import Batch, Recipient
from newsletter.topics.taxonomy import topic_name

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
# With each paper's rating links (about 40 bytes more a paper), the largest digests need
# one step more.
TIGHTER = Detail(key_points=1, key_point=100, abstract=120)
DETAILS = (FULL, TIGHT, TIGHTER)


@dataclass(frozen=True)
class Addressee:
    """One reader of a batch: their digest and the links only they may use."""

    email: str
    delivery_id: int
    selection: Selection
    manage_url: str
    unsubscribe_url: str
    view_url: str
    # Per pick, in order: the token of its "more/less like this" links (links.rate_token).
    rate_tokens: tuple[str, ...] = ()
    # False: the reader opted out of open and click tracking.
    tracking: bool = True
    # The reader's language (preferences.language, a card language; "en" when unset): their
    # cards' language, and the mail's when it has a catalog (i18n.speaks), else English.
    language: str = i18n.SOURCE_LANGUAGE


def frequency_word(frequency: str) -> str:
    """"daily" or "weekly" as the language in force says it of a digest."""
    words = {"daily": lambda: i18n.pgettext("digest", "daily"),
             "weekly": lambda: i18n.pgettext("digest", "weekly")}
    return words[frequency]() if frequency in words else frequency


def language_in_sentence(language: str, in_language: str) -> str:
    """A language's name as it stands mid-sentence in another: "German" in English,
    "allemand" in French (i18n.language_name capitalises it, for a name standing alone)."""
    said = i18n.locale(in_language).languages.get(language)
    return said or i18n.language_name(language, in_language)


def list_headers(unsubscribe_url: str, base_url: str) -> dict[str, str]:
    """The RFC 2369 / RFC 8058 headers that make mail clients show an unsubscribe button."""
    host = urlsplit(base_url).hostname or "localhost"
    return {
        "List-Unsubscribe": f"<{unsubscribe_url}>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        "List-Id": f"Paperwire <paperwire.{host}>",
    }


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
def _paper(paper: Candidate, detail: Detail, language: str) -> tuple[dict[str, Any], str]:
    """A paper's part of the data, the same for every reader who gets it in this
    interface language (its topics' names), and its JSON without the closing brace.
    Shared: never changed once built.

    Cached: a day's 200 papers are built and serialised once per process and language, not
    once per reader. The template rebuilds arXiv's standard links from the id, so only
    other links are sent.
    """
    key = paper.key
    with i18n.using(language):
        topics = [topic_name(t) for t in paper.topics]
    part: dict[str, Any] = {
        "t": _line(paper.title),
        "k": quote(key, safe="/"),
        "tp": topics,
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
    if paper.source != "arxiv":
        part["src"] = source_label(paper.source)  # its link's name ("bioRxiv"), not arXiv
    if paper.also_on:
        part["also"] = [{"n": source_label(source), "u": url} for source, url in paper.also_on]
    if paper.card_source == "offline":
        part["o"] = 1  # "Offline summary: ... not written by an LLM"
    elif paper.card_source is None:
        part["na"] = 1  # "No summary yet: this is the abstract"
    return part, json.dumps(part)[:-1]


@lru_cache(maxsize=8192)
def _why(reasons: tuple[str, ...], language: str) -> tuple[str, str]:
    """A pick's why-line as its reader reads it, in their interface language, and its
    JSON: a few hundred distinct lines an edition."""
    with i18n.using(language):
        why = _line(why_line(reasons))
    return why, json.dumps(why)


def _pick(position: int, pick: Pick, detail: Detail, language: str, mark: bool
          ) -> tuple[dict[str, Any], str]:
    """A paper as one digest has it (the shared part, and position, score and why), and
    its JSON without the closing brace, as json.dumps would write it, from the shared
    part's: each reader adds their rating token ("rt") and closes it. `mark`: the card is
    in English for want of a translation into the reader's language ("ut")."""
    part, part_json = _paper(pick.candidate, detail, language)
    why, why_json = _why(pick.reasons, language)
    item = {**part, "i": position, "sc": pick.score, "w": why}
    item_json = f'{part_json}, "i": {position}, "sc": {pick.score}, "w": {why_json}'
    if mark:
        item["ut"] = 1
        item_json += ', "ut": 1'
    return item, item_json


@dataclass(frozen=True)
class _Digest:
    """A digest's data but its reader's links, at one detail, with its JSON around the
    links (as json.dumps writes it, put together from each paper's). Shared by every
    reader of one selection: never changed."""

    head: dict[str, Any]
    papers: list[dict[str, Any]]
    tail: dict[str, Any]
    json_head: str  # up to the manage link's value
    json_papers: list[str]  # each paper's JSON but its rating token and closing brace
    json_tail: str  # after the papers, to the end

    @property
    def size(self) -> int:
        """The JSON's length with each link and rating token empty."""
        return (len(self.json_head) + len(_AFTER_M) + len(_AFTER_X) + len(_PAPERS)
                + sum(len(p) + len(_RATE) + 3 for p in self.json_papers)
                + 2 * max(0, len(self.json_papers) - 1) + len(self.json_tail) + 6)

    def data(self, a: Addressee) -> dict[str, Any]:
        papers = ([{**paper, "rt": token} for paper, token in zip(self.papers, a.rate_tokens,
                                                                   strict=True)]
                  if a.rate_tokens else self.papers)
        return {**self.head, "m": a.manage_url, "x": a.unsubscribe_url, "v": a.view_url,
                "p": papers, **self.tail}

    def json(self, links: tuple[str, str, str], tokens: tuple[str, ...]) -> str:
        """json.dumps(self.data(a)), given the reader's links as JSON and rating tokens
        (made of URL-safe characters, which JSON writes as they are)."""
        m, x, v = links
        papers = (", ".join(f'{p}{_RATE}"{t}"}}' for p, t in zip(self.json_papers, tokens,
                                                                 strict=True))
                  if tokens else ", ".join(f"{p}}}" for p in self.json_papers))
        return "".join((self.json_head, m, _AFTER_M, x, _AFTER_X, v, _PAPERS, papers,
                        self.json_tail))


# What json.dumps writes between the links (default separators, keys in data's order).
_AFTER_M, _AFTER_X, _PAPERS, _RATE = ', "x": ', ', "v": ', ', "p": [', ', "rt": '


# "Most read this week" at the end of a weekly digest: a few titles, each clipped, so the
# section costs at most about 700 bytes of DATA_LIMIT (it is in every reader's data:
# SendGrid's dynamic_template_data is per personalization, there is no request-wide one).
MOST_READ_TITLE = 110


def _most_read(most_read: Sequence[tuple[str, str]]) -> list[dict[str, str]]:
    """The section's papers as (key, title) pairs become [{"k", "t"}]."""
    return [{"k": quote(key, safe="/"), "t": _clip(_line(title), MOST_READ_TITLE)}
            for key, title in most_read]


@lru_cache(maxsize=64)
def _dates(day: date, spoken: str) -> tuple[str, str]:
    """A digest's short date (its subject's) and long date, in the language in force: the
    same for every reader of a language, and Babel's formatting is not cheap."""
    # Translators: CLDR date patterns (https://cldr.unicode.org/translation/date-time):
    # the subject's short date, e.g. "Sat 5 Dec".
    short = i18n.format_date(day, i18n.pgettext("date pattern", "EEE d MMM"))
    # Translators: the digest's date, e.g. "Saturday, 5 December 2026".
    long = i18n.format_date(day, i18n.pgettext("date pattern", "EEEE, d MMMM y"))
    return short, long


def _digest(selection: Selection, *, day: date, frequency: str, site_url: str,
            detail: Detail, most_read: Sequence[dict[str, str]] = (),
            language: str = i18n.SOURCE_LANGUAGE) -> _Digest:
    """Everything a digest shows but its reader's links, in the reader's language (a card
    language; the words are in the interface language it maps to)."""
    with i18n.using(language) as spoken:
        return _digest_in(selection, day=day, frequency=frequency, site_url=site_url,
                          detail=detail, most_read=most_read, language=language,
                          spoken=spoken)


def _digest_in(selection: Selection, *, day: date, frequency: str, site_url: str,
               detail: Detail, most_read: Sequence[dict[str, str]], language: str,
               spoken: str) -> _Digest:
    picks_in = selection.picks
    first = _line(picks_in[0].candidate.title) if picks_in else ""
    preheader = (i18n.ngettext("%(first)s — and %(num)d more", "%(first)s — and %(num)d more",
                               len(picks_in) - 1, first=first)
                 if len(picks_in) > 1 else first)
    line = headline(selection)
    short, long = _dates(day, spoken)
    head: dict[str, Any] = {
        "s": i18n.gettext("%(headline)s · Paperwire, %(date)s", headline=line, date=short),
        "h": line,
        "pre": _clip(preheader, PREHEADER_CHARS),
        "d": long,
        "f": frequency_word(frequency),
        "u": site_url,
    }
    # Cards in English for a reader of another language: when none of them is in theirs
    # (no LLM writes translations here), one notice; else a mark on each that is not.
    foreign = language != i18n.SOURCE_LANGUAGE and bool(picks_in)
    notice = foreign and not any(p.candidate.card_language == language for p in picks_in)
    marks = foreign and not notice and any(p.candidate.untranslated for p in picks_in)
    if notice:
        head["en"] = 1
    if marks:
        head["cl"] = language_in_sentence(language, spoken)
    tail: dict[str, Any] = {}
    if selection.more:
        tail["ml"] = i18n.ngettext("…and %(num)d more on the site",
                                   "…and %(num)d more on the site", selection.more)
        tail["mu"] = f"{site_url}/days/{day.isoformat()}"
    if most_read:
        tail["mr"] = list(most_read)
    picks = [_pick(position, pick, detail, spoken, marks and pick.candidate.untranslated)
             for position, pick in enumerate(picks_in, start=1)]
    json_tail = "]" + (f", {json.dumps(tail)[1:]}" if tail else "}")
    return _Digest(head, [item for item, _ in picks], tail,
                   json_head=f'{json.dumps(head)[:-1]}, "m": ',
                   json_papers=[item_json for _, item_json in picks], json_tail=json_tail)


def compose(
    addressees: Sequence[Addressee], *, day: date, frequency: str, site_url: str,
    most_read: Sequence[tuple[str, str]] = (),
) -> Batch:
    """One batch for these readers, whatever each one's digest holds.

    `most_read`: (key, title) of the week's most read papers, the same for every reader,
    shown after their own papers (weekly digests; see delivery.most_read).

    Each reader's data is at the most detail that fits DATA_LIMIT, measured as json.dumps'
    default form (ASCII escapes, spaced separators), which the SendGrid sender sends, and
    the largest way of counting these bytes. Readers with the same interests share one
    `Selection` (see `digest.PaperIndex`): their digest is built and serialised once, and
    each of them adds only their links.
    """
    site_url = site_url.rstrip("/")
    # By the selection's identity and the reader's language: the addressees keep every
    # selection alive meanwhile.
    built: dict[tuple[int, str, Detail], _Digest] = {}
    shared_section = _most_read(most_read)
    recipients = []
    for a in addressees:
        links = (json.dumps(a.manage_url), json.dumps(a.unsubscribe_url),
                 json.dumps(a.view_url))
        links_bytes = (sum(len(link) for link in links) - 6
                       + sum(len(token) for token in a.rate_tokens))
        language = a.language or i18n.SOURCE_LANGUAGE
        for detail in DETAILS:
            digest = built.get((id(a.selection), language, detail))
            if digest is None:
                digest = built[id(a.selection), language, detail] = _digest(
                    a.selection, day=day, frequency=frequency, site_url=site_url,
                    detail=detail, most_read=shared_section, language=language)
            if digest.size + links_bytes <= DATA_LIMIT:
                break
        data_json = digest.json(links, a.rate_tokens)
        recipients.append(Recipient(
            to=a.email,
            data=digest.data(a),
            data_json=data_json,
            data_bytes=len(data_json),
            # Only List-Unsubscribe names the reader; the rest is the same for the batch
            # but the language both parts are in (RFC 3282).
            headers={"List-Unsubscribe": f"<{a.unsubscribe_url}>",
                     "Content-Language": i18n.speaks(language)},
            custom_args={"delivery_id": str(a.delivery_id)},
            tracking=a.tracking,
            language=i18n.speaks(language),
        ))
    shared = list_headers("", site_url)
    del shared["List-Unsubscribe"]
    return Batch(recipients=recipients, headers=shared)
