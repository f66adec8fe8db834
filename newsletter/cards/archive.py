"""What the site shows: a day's papers with their cards, a paper's page, the recent days.

Queries return plain frozen values, so templates never touch the database. A paper
without a usable card (not written yet, or failed) is shown with its abstract instead.

Each view takes the reader's language: a card with a current translation into it is
shown in it (key points and the four sections; the title and topics never are), and a
paper without one is shown in English and flagged `untranslated`, for the page to say so.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime

from sqlalchemy import func, or_
from sqlmodel import Session, select

from newsletter.cards.card import card_json, cards_for
from newsletter.cards.translation import CardWords, is_english, translations_for
from newsletter.ingest.feed import Feed
from newsletter.ingest.identity import source_label
from newsletter.ingest.paper import Paper, latest_announcement_day, listed
from newsletter.ingest.same_work import PaperAlias
from newsletter.topics.taxonomy import topic_name

# Days with papers on one page of /days.
DAYS_PAGE = 30
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
EXCERPT_CHARS = 420


def http_url(value: str | None) -> str | None:
    """Only http(s) links from feeds become hrefs: never javascript: or data: URLs."""
    if value and value.lower().startswith(("https://", "http://")):
        return value
    return None


@dataclass(frozen=True)
class TopicPill:
    slug: str
    name: str


@dataclass(frozen=True)
class PaperView:
    key: str
    title: str
    authors: tuple[str, ...]
    categories: tuple[str, ...]
    revised: bool
    version: int
    announced_on: date | None
    revised_on: date | None
    abstract: str
    abs_url: str | None
    pdf_url: str | None
    code_url: str | None
    source: str
    # The same work's other places: (source's name, link), ingest/same_work.py.
    also_on: tuple[tuple[str, str], ...] = ()
    topics: tuple[TopicPill, ...] = ()
    key_points: tuple[str, ...] = ()
    summary: str | None = None
    methodology: str | None = None
    results: str | None = None
    implications: str | None = None
    # "llm" or "offline" when there is a card: the site says which wrote it.
    card_source: str | None = None
    # The language the card's words are shown in; `untranslated`: another language was
    # asked and there is no current translation into it (an offline card, no card, a
    # translation not written yet or failed), so what is shown is English.
    language: str = "en"
    untranslated: bool = False

    @property
    def anchor(self) -> str:
        """An HTML id for the paper (keys hold slashes and colons)."""
        return "p-" + re.sub(r"[^A-Za-z0-9_-]", "-", self.key)

    @property
    def source_name(self) -> str:
        return source_label(self.source)

    @property
    def has_card(self) -> bool:
        return self.card_source is not None

    @property
    def excerpt(self) -> str:
        if len(self.abstract) <= EXCERPT_CHARS:
            return self.abstract
        return self.abstract[:EXCERPT_CHARS].rsplit(" ", 1)[0] + " …"


def paper_view(paper: Paper, card: dict | None, language: str = "en",
               translation: CardWords | None = None) -> PaperView:
    """A paper as the site shows it; `translation` (into `language`) replaces the card's
    words, and without one a language other than English is flagged `untranslated`."""
    pdf = paper.pdf_url or (f"https://arxiv.org/pdf/{paper.arxiv_id}" if paper.arxiv_id
                            else None)
    fields: dict = {}
    if card:
        # The words from the translation, the topics always from the card.
        words = card if translation is None else translation.as_json()
        fields = {
            "topics": tuple(TopicPill(s, topic_name(s)) for s in card["topics"]),
            "key_points": tuple(words["key_points"]),
            "summary": words["summary"], "methodology": words["methodology"],
            "results": words["results"], "implications": words["implications"],
            "card_source": card["source"],
        }
    if not is_english(language):
        shown = card is not None and translation is not None
        fields.update(language=language if shown else "en", untranslated=not shown)
    return PaperView(
        key=paper.key, title=paper.title, authors=tuple(paper.authors),
        categories=tuple(paper.categories),
        revised=paper.announce_type in ("replace", "replace-cross"),
        version=paper.version, announced_on=paper.announced_on, revised_on=paper.revised_on,
        abstract=paper.abstract, abs_url=http_url(paper.abs_url), pdf_url=http_url(pdf),
        code_url=http_url(paper.code_url), source=paper.source,
        also_on=tuple((source_label(item["source"]), url) for item in paper.also_on or ()
                      if (url := http_url(item.get("url")))),
        **fields,
    )


def _with_cards(session: Session, papers: list[Paper], language: str = "en") -> list[PaperView]:
    ids = [p.id for p in papers if p.id is not None]
    cards = cards_for(session, ids)
    translations = translations_for(session, ids, language)
    return [paper_view(p, card_json(cards.get(p.id or -1)), language,
                       translations.get(p.id or -1)) for p in papers]


@dataclass(frozen=True)
class DayView:
    day: date | None
    new: tuple[PaperView, ...]
    revised: tuple[PaperView, ...]
    updated_at: datetime | None

    @property
    def empty(self) -> bool:
        return not self.new and not self.revised


def _last_update(session: Session) -> datetime | None:
    when = session.exec(select(func.max(Feed.last_success_at))).one()
    if when is not None and when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when


def day(session: Session, when: date | None, *, language: str = "en") -> DayView:
    """A day's new papers, then the ones revised that day, their cards in `language`
    where translated.

    One query for the day's papers, one for their cards and, in a language other than
    English, one for their translations, however many papers it holds.
    """
    if when is None:
        return DayView(None, (), (), _last_update(session))
    papers = list(session.exec(select(Paper)
                               .where(or_(Paper.announced_on == when, Paper.revised_on == when))
                               .order_by(Paper.key)))
    views = _with_cards(session, papers, language)
    new = tuple(v for v in views if v.announced_on == when)
    revised = tuple(v for v in views if v.announced_on != when)
    return DayView(when, new, revised, _last_update(session))


def latest(session: Session, *, language: str = "en") -> DayView:
    """The front page: the latest announcement day we hold."""
    return day(session, latest_announcement_day(session), language=language)


def paper(session: Session, key: str, *, language: str = "en") -> PaperView | None:
    """A listed paper's page (None: no such paper, or one fetched only for a reader's liked
    papers, whose page would tell that someone likes it)."""
    # No stored key is that long or holds control characters (Postgres refuses NUL).
    if len(key) > 200 or _CONTROL.search(key):
        return None
    found = session.exec(select(Paper).where(Paper.key == key, listed())).first()
    if found is None:
        # Another source's key for the work (a link mailed before a preprint server's
        # record took the paper over): the same page.
        found = session.exec(select(Paper).join(
            PaperAlias, PaperAlias.paper_id == Paper.id)  # type: ignore[arg-type]
            .where(PaperAlias.key == key, listed())).first()
    if found is None:
        return None
    return _with_cards(session, [found], language)[0]


@dataclass(frozen=True)
class DayCount:
    day: date
    new: int
    # Papers revised that day and announced on another (the day page lists them under
    # "Revised on this day"): a day with only revisions still has something to show.
    revised: int = 0


@dataclass(frozen=True)
class DaysPage:
    """One page of the past days that have papers, newest first."""
    days: tuple[DayCount, ...]
    # The `before` of the next, older page; None when this page reaches the oldest day.
    older: date | None


def days_with_papers(session: Session, before: date | None = None,
                     count: int = DAYS_PAGE) -> DaysPage:
    """The latest `count` days (before `before`, when given) with papers new or revised
    on them, newest first.

    Only days with papers: arXiv is quiet at weekends and on holidays, and a store that
    stops being fed (or the demo's sample day) would otherwise see its papers pushed off
    the list by empty calendar days. Each of the two queries reads at most count + 1
    days, so a page costs the same however many days are stored.
    """
    new_rows = select(Paper.announced_on, func.count()).where(
        Paper.announced_on.is_not(None))  # type: ignore[union-attr]
    revised_rows = select(Paper.revised_on, func.count()).where(
        Paper.revised_on.is_not(None),  # type: ignore[union-attr]
        or_(Paper.announced_on.is_(None),  # type: ignore[union-attr]
            Paper.announced_on != Paper.revised_on))
    if before is not None:
        new_rows = new_rows.where(Paper.announced_on < before)  # type: ignore[operator]
        revised_rows = revised_rows.where(Paper.revised_on < before)  # type: ignore[operator]
    new = dict(session.exec(new_rows.group_by(Paper.announced_on)
                            .order_by(Paper.announced_on.desc())  # type: ignore[union-attr]
                            .limit(count + 1)).all())
    revised = dict(session.exec(revised_rows.group_by(Paper.revised_on)
                                .order_by(Paper.revised_on.desc())  # type: ignore[union-attr]
                                .limit(count + 1)).all())
    # Any day among the newest count + 1 of either kind is among its own kind's newest
    # count + 1, so the merge of the two is exact.
    days = sorted(new.keys() | revised.keys(), reverse=True)
    shown = tuple(DayCount(d, new.get(d, 0), revised.get(d, 0)) for d in days[:count])
    return DaysPage(shown, shown[-1].day if len(days) > count else None)
