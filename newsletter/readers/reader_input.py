"""What a reader types, checked before anything is written: an address, their choices
(topics, keywords, authors, frequency, how many papers), their interests in their own words
and the papers they like. Pure: each parser returns clean values or raises InvalidInput
naming every bad field, so a bad form never leaves half a subscriber behind
(newsletter/readers/subscriber.py stores what passes).

Messages are in the language in force (newsletter/i18n.py): a French page's form hears of
its mistakes in French, the command line in English.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from zoneinfo import available_timezones

from email_validator import EmailNotValidError, validate_email

from newsletter.i18n import gettext as _
from newsletter.i18n import ngettext
from newsletter.readers.author_id import author_id_of
from newsletter.readers.paper_id import arxiv_id_of
from newsletter.topics.taxonomy import current

FREQUENCIES = ("daily", "weekly")
DEFAULT_MAX_PAPERS = 10
MAX_PAPERS_LIMIT = 50
MAX_EMAIL_LENGTH = 254
# Keyword and author lists are matched against every paper; keep them human-sized.
MAX_TERMS = 30
MAX_TERM_LENGTH = 100
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


WEEKDAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
# The regions of the tz database's canonical names; the rest (US/Eastern, Etc/GMT+5, ...)
# are accepted when typed but not offered.
_REGIONS = ("Africa", "America", "Antarctica", "Arctic", "Asia", "Atlantic", "Australia",
            "Europe", "Indian", "Pacific")


@cache
def time_zones() -> frozenset[str]:
    """Every IANA zone name this machine's tz database knows (`zoneinfo`)."""
    return frozenset(available_timezones())


@cache
def zones_by_region() -> tuple[tuple[str, tuple[str, ...]], ...]:
    """The zones a form offers, by region, each sorted: UTC, then Africa/Abidjan ..."""
    grouped: dict[str, list[str]] = {"UTC": ["UTC"]}
    for name in sorted(time_zones()):
        region = name.split("/", 1)[0]
        if region in _REGIONS:
            grouped.setdefault(region, []).append(name)
    return tuple((region, tuple(names)) for region, names in grouped.items())

_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]")
# Free text (a reader's description) also loses C1 controls: nobody types them.
_TEXT_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


class InvalidInput(Exception):
    """Form input we refuse; `errors` maps each field to a message for the reader."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


def parse_email(raw: str) -> str:
    """The address as we store it, or InvalidInput.

    Lower-cased whole: nearly every mail system ignores case, and two rows differing only
    by case would mean two digests and an unsubscribe link that stops only one of them.
    Internationalized domains are stored in their ASCII (punycode) form.
    """
    # CR and LF anywhere, even at the ends, are refused rather than stripped: they are
    # how header injection starts, and no person types them into an address field.
    if "\r" in raw or "\n" in raw:
        raise InvalidInput({"email": _("That is not a valid email address.")})
    value = raw.strip()
    if not value:
        raise InvalidInput({"email": _("Enter your email address.")})
    if len(value) > MAX_EMAIL_LENGTH:
        raise InvalidInput({"email": _("That is not a valid email address.")})
    try:
        checked = validate_email(value, check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError:
        raise InvalidInput({"email": _("That is not a valid email address.")}) from None
    address = (checked.ascii_email or checked.normalized).lower()
    if len(address) > MAX_EMAIL_LENGTH:
        raise InvalidInput({"email": _("That is not a valid email address.")})
    return address


@dataclass(frozen=True)
class PreferenceValues:
    topics: tuple[str, ...]
    frequency: str = "daily"
    include_keywords: tuple[str, ...] = ()
    exclude_keywords: tuple[str, ...] = ()
    authors: tuple[str, ...] = ()
    max_papers: int = DEFAULT_MAX_PAPERS
    include_revised: bool = False
    # Interests in the reader's own words: carried through a sign-up in `requested` until
    # its link is clicked; stored (and learned from) only by relevance.learn.set_interests.
    description: str | None = None
    liked_papers: tuple[str, ...] = ()
    # When the digest comes: an IANA zone, an hour of the reader's day, a weekday for a
    # weekly digest (0 = Monday). None: the operator's default.
    time_zone: str | None = None
    send_hour: int | None = None
    send_weekday: int | None = None
    # The language of their cards, pages and mail, one of CARD_LANGUAGES. None: English.
    language: str | None = None
    # Their arXiv author identifier or ORCID iD (author_id.py): carried like the
    # description, stored by relevance.learn.set_interests.
    arxiv_author: str | None = None


def _topics(raw: Iterable[str], errors: dict[str, str]) -> tuple[str, ...]:
    taxonomy = current()
    chosen: list[str] = []
    unknown: list[str] = []
    for value in raw:
        # A renamed topic's old slug (a bookmarked form, an old CSV) is its new topic.
        slug = taxonomy.resolve(value)
        if slug is None:
            if value not in unknown:
                unknown.append(value)
        elif slug not in chosen:
            chosen.append(slug)
    if unknown:
        # Named, with the slugs there are: `subscribers add --topics` and an import's CSV
        # are typed by hand, with no list in sight (the web form's boxes carry the slugs).
        errors["topics"] = _("No topic %(names)s; the topics are %(topics)s.",
                             names=_quoted(unknown), topics=", ".join(taxonomy.slugs))
        return ()
    if not chosen:
        errors["topics"] = _("Pick at least one topic.")
    return tuple(chosen)


def _quoted(values: Sequence[str], most: int = 3, length: int = 40) -> str:
    """A few of what someone sent, quoted and cut short: a form post can send anything."""
    shown = ", ".join(repr(v[:length]) for v in values[:most])
    if len(values) <= most:
        return shown
    return shown + " " + ngettext("and %(num)d more", "and %(num)d more", len(values) - most)


def _terms(raw: str, name: str, label: str, errors: dict[str, str]) -> tuple[str, ...]:
    """Comma- or line-separated terms, trimmed, duplicates (any case) dropped."""
    if len(raw) > MAX_TERMS * (MAX_TERM_LENGTH + 2):
        errors[name] = _term_message(label, "too many")
        return ()
    terms: list[str] = []
    for piece in re.split(r"[,\n]", raw.replace("\r\n", "\n")):
        term = " ".join(piece.split())
        if not term:
            continue
        if _CONTROL.search(term) or len(term) > MAX_TERM_LENGTH:
            errors[name] = _term_message(label, "too long")
            return ()
        if term.casefold() not in {t.casefold() for t in terms}:
            terms.append(term)
    if len(terms) > MAX_TERMS:
        errors[name] = _term_message(label, "at most")
        return ()
    return tuple(terms)


def _term_message(label: str, problem: str) -> str:
    """What is wrong with a list of keywords or authors: one whole sentence per list and
    problem, so each language can word it (and agree its words) as it must."""
    if label == "authors":
        return {"too many": _("Too many authors."),
                "too long": _("Each of the authors must be plain text under %(most)s "
                              "characters.", most=MAX_TERM_LENGTH),
                "at most": _("At most %(most)s authors.", most=MAX_TERMS)}[problem]
    return {"too many": _("Too many keywords."),
            "too long": _("Each of the keywords must be plain text under %(most)s "
                          "characters.", most=MAX_TERM_LENGTH),
            "at most": _("At most %(most)s keywords.", most=MAX_TERMS)}[problem]


def parse_frequency(raw: str | None, errors: dict[str, str]) -> str:
    value = (raw or "daily").strip()
    if value not in FREQUENCIES:
        errors["frequency"] = _("Choose daily or weekly.")
        return "daily"
    return value


@dataclass(frozen=True)
class SendTime:
    """When a reader asks for their digest, as typed on a form or a command line; each
    empty or None is the operator's default."""

    time_zone: str | None = None
    hour: str | int | None = None
    weekday: str | None = None


def parse_send_time(typed: SendTime, errors: dict[str, str]
                    ) -> tuple[str | None, int | None, int | None]:
    """The zone, the hour (0-23) and the weekday (0 = Monday) a reader asked for."""
    zone = (typed.time_zone or "").strip() or None
    hour, weekday = typed.hour, typed.weekday
    if zone is not None and zone not in time_zones():
        errors["time_zone"] = _("No time zone %(name)s; use a name such as Europe/Paris, "
                                "America/Montreal or UTC.", name=_quoted([zone]))
        zone = None
    chosen_hour = None
    if hour not in (None, ""):
        text = str(hour).strip().removesuffix(":00")
        chosen_hour = int(text) if text.isdigit() and int(text) < 24 else None
        if chosen_hour is None:
            errors["send_hour"] = _("Choose an hour from 0 to 23.")
    day = (weekday or "").strip().lower()[:3] or None
    if day is not None and day not in WEEKDAYS:
        errors["send_weekday"] = _("Choose a weekday, Monday to Sunday.")
        day = None
    return zone, chosen_hour, None if day is None else WEEKDAYS.index(day)


def parse_language(raw: str | None, offered: Sequence[str], errors: dict[str, str]
                   ) -> str | None:
    """One of the operator's languages (`offered`, CARD_LANGUAGES), or None for English."""
    value = (raw or "").strip()
    if not value:
        return None
    if value not in offered:
        errors["language"] = _("No language %(name)s here; choose one of %(offered)s.",
                               name=_quoted([value]), offered=", ".join(offered))
        return None
    return value


def parse_preferences(
    topics: Sequence[str], frequency: str | None = None, include_keywords: str = "",
    exclude_keywords: str = "", authors: str = "", max_papers: str | int | None = None,
    include_revised: bool = False, description: str | None = None,
    liked_papers: str | Sequence[str] = "", send_time: SendTime = SendTime(),
    language: str | None = None, languages: Sequence[str] = ("en",),
    arxiv_author: str | None = None,
) -> PreferenceValues:
    """Preferences from form strings, or InvalidInput naming every bad field.

    `languages`: those the operator offers (CARD_LANGUAGES), `language` the one chosen.
    """
    errors: dict[str, str] = {}
    zone, hour, weekday = parse_send_time(send_time, errors)
    chosen_language = parse_language(language, languages, errors)
    author = parse_arxiv_author(arxiv_author, errors)
    described, liked = _interests(description, liked_papers, errors)
    chosen = _topics(topics, errors)
    freq = parse_frequency(frequency, errors)
    include = _terms(include_keywords, "include_keywords", "keywords", errors)
    exclude = _terms(exclude_keywords, "exclude_keywords", "keywords", errors)
    followed = _terms(authors, "authors", "authors", errors)
    count = DEFAULT_MAX_PAPERS
    if max_papers not in (None, ""):
        try:
            count = int(str(max_papers).strip())
        except ValueError:
            count = -1
        if not 1 <= count <= MAX_PAPERS_LIMIT:
            errors["max_papers"] = _("Choose a number from 1 to %(most)s.",
                                     most=MAX_PAPERS_LIMIT)
    if errors:
        raise InvalidInput(errors)
    return PreferenceValues(chosen, freq, include, exclude, followed, count, include_revised,
                            described, liked, zone, hour, weekday, chosen_language, author)


def parse_arxiv_author(raw: str | None, errors: dict[str, str]) -> str | None:
    """An arXiv author identifier or ORCID iD as pasted (author_id.py), or None."""
    try:
        return author_id_of(raw)
    except ValueError as exc:
        errors["arxiv_author"] = str(exc)
        return None


MAX_DESCRIPTION_LENGTH = 500
MAX_LIKED_PAPERS = 50
def parse_description(raw: str | None) -> str | None:
    """A reader's interests in their own words: one paragraph of plain text, or None.

    Line breaks and tabs become spaces, other control characters go, runs of spaces shrink
    to one; what is left may be at most MAX_DESCRIPTION_LENGTH characters.
    """
    value = " ".join(_TEXT_CONTROL.sub(" ", raw or "").split())
    if len(value) > MAX_DESCRIPTION_LENGTH:
        raise InvalidInput({"description": _("At most %(most)s characters (this has "
                                             "%(length)s).", most=MAX_DESCRIPTION_LENGTH,
                                             length=len(value))})
    return value or None


def parse_interests(description: str | None, liked_papers: str | Sequence[str]
                    ) -> tuple[str | None, tuple[str, ...]]:
    """A reader's description and liked papers, or InvalidInput naming each bad field."""
    errors: dict[str, str] = {}
    found = _interests(description, liked_papers, errors)
    if errors:
        raise InvalidInput(errors)
    return found


def _interests(description: str | None, liked_papers: str | Sequence[str],
               errors: dict[str, str]) -> tuple[str | None, tuple[str, ...]]:
    described: str | None = None
    liked: tuple[str, ...] = ()
    try:
        described = parse_description(description)
    except InvalidInput as exc:
        errors.update(exc.errors)
    try:
        liked = parse_liked_papers(liked_papers)
    except InvalidInput as exc:
        errors.update(exc.errors)
    return described, liked


def parse_liked_papers(raw: str | Sequence[str]) -> tuple[str, ...]:
    """Papers a reader likes, from arXiv ids or arxiv.org links separated by commas, spaces
    or lines (or given as a list): versionless ids, each once, at most MAX_LIKED_PAPERS.

    Raises InvalidInput naming the first entry that is neither an id nor an arXiv link.
    """
    if isinstance(raw, str) and len(raw) > MAX_LIKED_PAPERS * 100:
        raise InvalidInput({"liked_papers": _("At most %(most)s papers.",
                                              most=MAX_LIKED_PAPERS)})
    pieces = re.split(r"[\s,;]+", raw) if isinstance(raw, str) else list(raw)
    liked: list[str] = []
    for piece in pieces:
        if not piece.strip():
            continue
        found = arxiv_id_of(piece)
        if found is None:
            shown = _CONTROL.sub("", piece.strip())[:80]
            raise InvalidInput({"liked_papers": _(
                "%(entry)s is not an arXiv id (like 2401.12345) or an arxiv.org abs or pdf "
                "link.", entry=repr(shown))})
        if found not in liked:
            liked.append(found)
    if len(liked) > MAX_LIKED_PAPERS:
        raise InvalidInput({"liked_papers": _("At most %(most)s papers (this has %(count)s).",
                                              most=MAX_LIKED_PAPERS, count=len(liked))})
    return tuple(liked)


@dataclass(frozen=True)
class Client:
    """Where a request came from, for the consent record."""

    ip: str | None = None
    user_agent: str | None = None

    def trimmed(self) -> Client:
        agent = _CONTROL.sub("", self.user_agent or "")[:512]
        return Client((self.ip or "")[:64] or None, agent or None)


def agreement(values: PreferenceValues) -> str:
    """The words of what a subscriber agrees to, stored with their consent: a record, kept
    in English whatever the reader's language."""
    return (f"Receive a {values.frequency} Paperwire email digest of new research papers on: "
            f"{', '.join(values.topics)}. Double opt-in; unsubscribe at any time.")
