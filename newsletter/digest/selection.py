"""Which papers a subscriber gets, in what order, and why. Pure: values in, values out.

A `Candidate` is a paper as a digest sees it (its card's topics, or topics guessed from
its categories when it has no card yet). `Interests` are a subscriber's preferences.
`select` scores every candidate 0-100 with its reasons (made and said to the reader in
reasons.py: "topic: Efficient ML" is kept, "Efficient ML" is read), drops exclusions,
revisions the reader did not ask for and papers already sent to them, ranks, and cuts at
their maximum.

At scale the same day's papers are matched against every subscriber, so `PaperIndex`
indexes the candidates once by topic, keyword and author: a subscriber is then scored
only against the papers that can match them.
"""

from __future__ import annotations

import dataclasses
import re
import unicodedata
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

from newsletter import i18n
from newsletter.digest import reasons as why
from newsletter.topics.taxonomy import topic_name

# A paper's first topic is what it is about; later ones are side themes.
TOPIC_POINTS = (60, 45, 35)
EXTRA_TOPIC_POINTS = 10
TITLE_KEYWORD_POINTS = 35
TEXT_KEYWORD_POINTS = 20
AUTHOR_POINTS = 55


@dataclass(frozen=True)
class Candidate:
    paper_id: int
    key: str
    title: str
    abstract: str
    authors: tuple[str, ...]
    topics: tuple[str, ...]
    key_points: tuple[str, ...] = ()
    revised: bool = False  # a new version of a paper announced earlier
    # For showing, not matching: where to read it, and who wrote its card. Part of equality,
    # so a rendered card cached by candidate changes when a new version changes a link.
    abs_url: str | None = None
    pdf_url: str | None = None
    code_url: str | None = None
    # Who announced it (arxiv, biorxiv, a feed's name), and the same work's other places
    # as (source, link) (ingest/same_work.py).
    source: str = "arxiv"
    also_on: tuple[tuple[str, str], ...] = ()
    card_source: str | None = None  # llm, offline, None
    # The language the card's words (key points) are in. `untranslated`: the reader reads
    # another language, and this card goes in English for want of a translation (none
    # yet, or it failed its checks): the digest says so (delivery/sources.py).
    card_language: str = "en"
    untranslated: bool = False
    # Lower-cased text for keyword matching, built once per paper (see `candidate`).
    title_lc: str = field(default="", repr=False, compare=False)
    text_lc: str = field(default="", repr=False, compare=False)
    author_keys: frozenset[tuple[str, str]] = field(default=frozenset(), repr=False,
                                                    compare=False)


def candidate(
    paper_id: int, key: str, title: str, abstract: str, authors: Sequence[str],
    topics: Sequence[str], key_points: Sequence[str] = (), revised: bool = False,
    abs_url: str | None = None, pdf_url: str | None = None, code_url: str | None = None,
    card_source: str | None = None, source: str = "arxiv",
    also_on: Sequence[tuple[str, str]] = (),
) -> Candidate:
    return Candidate(
        paper_id=paper_id, key=key, title=title, abstract=abstract, authors=tuple(authors),
        topics=tuple(topics), key_points=tuple(key_points), revised=revised,
        abs_url=abs_url, pdf_url=pdf_url, code_url=code_url, card_source=card_source,
        source=source, also_on=tuple(also_on),
        title_lc=title.lower(),
        text_lc=" ".join((title, abstract, *key_points)).lower(),
        author_keys=frozenset(k for a in authors if (k := author_key(a))),
    )


@dataclass(frozen=True)
class Interests:
    """A reader's preferences. Build with `interests()` so equal choices compare equal."""

    topics: tuple[str, ...] = ()
    include_keywords: tuple[str, ...] = ()
    exclude_keywords: tuple[str, ...] = ()
    authors: tuple[str, ...] = ()
    max_papers: int = 10
    include_revised: bool = False


def interests(
    topics: Iterable[str] = (), include_keywords: Iterable[str] = (),
    exclude_keywords: Iterable[str] = (), authors: Iterable[str] = (), max_papers: int = 10,
    include_revised: bool = False,
) -> Interests:
    """Sorted, so "LLM, NLP" and "NLP, LLM" share one memoized selection."""
    return Interests(tuple(sorted(set(topics))), tuple(sorted(set(include_keywords))),
                     tuple(sorted(set(exclude_keywords))), tuple(sorted(set(authors))),
                     max_papers, include_revised)


@dataclass(frozen=True)
class Pick:
    candidate: Candidate
    score: int
    reasons: tuple[str, ...]
    # The part of the score from keywords and authors the reader named: a reader's model
    # weighs these far above topics (relevance/model.py, NAMED_PRIOR).
    named: int = 0


@dataclass(frozen=True)
class Selection:
    picks: tuple[Pick, ...]
    more: int = 0  # matching papers left out by the subscriber's maximum

    @property
    def empty(self) -> bool:
        return not self.picks

    def signature(self) -> tuple[object, ...]:
        """Equal for two subscribers whose digests differ only in their links."""
        return (tuple((p.candidate.paper_id, p.score, p.reasons) for p in self.picks),
                self.more)


def _fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).lower()


@lru_cache(maxsize=65536)
def author_key(name: str) -> tuple[str, str] | None:
    """(first initial, last name), accents and dots folded: "Y. Bengio" finds "Yoshua Bengio"."""
    parts = [p for p in re.split(r"[\s.]+", _fold(name).replace(",", " ")) if p]
    if parts and parts[-1] in ("jr", "sr", "ii", "iii", "iv"):
        parts = parts[:-1]
    if not parts:
        return None
    return (parts[0][0] if len(parts) > 1 else "", parts[-1])


def _author_matches(wanted: tuple[str, str], keys: frozenset[tuple[str, str]]) -> bool:
    if wanted in keys:
        return True
    # Only a last name was given: any initial will do.
    return not wanted[0] and any(last == wanted[1] for _, last in keys)


@lru_cache(maxsize=4096)
def keyword_pattern(keyword: str) -> re.Pattern[str]:
    """Whole words, any case: "RL" must not match "world"."""
    return re.compile(r"(?<!\w)" + re.escape(keyword.lower()) + r"(?!\w)")


@lru_cache(maxsize=1 << 17)
def mentions(text_lc: str, keyword: str) -> bool:
    """Whether lower-cased text has the keyword. Memoized: an edition asks the same
    (paper, keyword) question for every reader who typed that keyword."""
    return keyword_pattern(keyword).search(text_lc) is not None


def excluded(paper: Candidate, interests: Interests) -> bool:
    """Whether the reader ruled the paper out: a revision they did not ask for, or an
    excluded keyword. Nothing, not even their model, brings it back."""
    if paper.revised and not interests.include_revised:
        return True
    return any(mentions(paper.text_lc, word) for word in interests.exclude_keywords)


def score(paper: Candidate, interests: Interests) -> Pick | None:
    """The paper's relevance to one subscriber, or None when it must not be sent to them."""
    if excluded(paper, interests):
        return None

    points = named = 0
    reasons: list[str] = []
    topic_hits = [i for i, slug in enumerate(paper.topics) if slug in interests.topics]
    if topic_hits:
        best = topic_hits[0]
        points += TOPIC_POINTS[min(best, len(TOPIC_POINTS) - 1)]
        points += EXTRA_TOPIC_POINTS * (len(topic_hits) - 1)
        reasons += [_topic_reason(paper.topics[i]) for i in topic_hits]
    for word in interests.include_keywords:
        if mentions(paper.title_lc, word):
            named += TITLE_KEYWORD_POINTS
        elif mentions(paper.text_lc, word):
            named += TEXT_KEYWORD_POINTS
        else:
            continue
        reasons.append(why.keyword(word))
    for name in interests.authors:
        wanted = author_key(name)
        if wanted and _author_matches(wanted, paper.author_keys):
            named += AUTHOR_POINTS
            reasons.append(why.author(name))
    if not reasons:
        return None
    if paper.revised:
        reasons.append(why.REVISED)
    return Pick(candidate=paper, score=min(100, points + named), reasons=tuple(reasons),
                named=min(100, named))


@lru_cache(maxsize=256)
def _topic_reason(slug: str) -> str:
    return why.topic(topic_name(slug))


def rank(picks: Iterable[Pick]) -> list[Pick]:
    return sorted(picks, key=lambda p: (-p.score, p.candidate.revised, p.candidate.key))


def select(
    candidates: Iterable[Candidate],
    interests: Interests,
    already_sent: frozenset[int] = frozenset(),
) -> Selection:
    """The subscriber's digest: matching papers never sent to them, best first, cut at max."""
    picks = [
        pick for paper in candidates
        if paper.paper_id not in already_sent and (pick := score(paper, interests)) is not None
    ]
    ranked = rank(picks)
    limit = max(1, interests.max_papers)
    return Selection(picks=tuple(ranked[:limit]), more=max(0, len(ranked) - limit))


class PaperIndex:
    """One edition's candidates, indexed so each subscriber is scored only where it can match.

    Rankings are memoized by interests: thousands of subscribers share the same few topic
    choices, and their digests are computed once (the very same `Selection` for equal
    digests, so what is built from a digest can be built once too). A reader who adds
    keywords, authors or exclusions starts from the ranking of their topics alone: only
    the papers those name are scored again.
    """

    def __init__(self, candidates: Sequence[Candidate]) -> None:
        self.candidates = tuple(candidates)
        self._by_topic: dict[str, list[Candidate]] = {}
        self._by_last_name: dict[str, list[Candidate]] = {}
        for paper in self.candidates:
            for slug in paper.topics:
                self._by_topic.setdefault(slug, []).append(paper)
            for _, last in paper.author_keys:
                self._by_last_name.setdefault(last, []).append(paper)
        self._by_keyword: dict[str, list[Candidate]] = {}
        # Where each paper sits in `candidates`: readers' models score them in that order.
        self.position = {paper.paper_id: i for i, paper in enumerate(self.candidates)}
        self._memo: dict[Interests, list[Pick]] = {}
        self._selections: dict[Interests, Selection] = {}
        # Equal selections as one object: an exclusion or an author often changes nothing.
        self._distinct: dict[Selection, Selection] = {}

    def keep_shared(self) -> None:
        """Forget every ranking but those of topics alone: kept for the next chunk of the
        same papers, they are what thousands of readers share, while a ranking with
        keywords, authors or exclusions is mostly one reader's and would only fill memory."""
        def shared(interests: Interests) -> bool:
            return not (interests.include_keywords or interests.exclude_keywords
                        or interests.authors)

        self._memo = {i: r for i, r in self._memo.items() if shared(i)}
        self._selections = {i: s for i, s in self._selections.items() if shared(i)}
        self._distinct = {s: s for s in self._selections.values()}

    def _with_keyword(self, word: str) -> list[Candidate]:
        found = self._by_keyword.get(word)
        if found is None:
            found = [p for p in self.candidates if mentions(p.text_lc, word)]
            self._by_keyword[word] = found
        return found

    def _named(self, interests: Interests) -> dict[int, Candidate]:
        """The papers a reader's keywords and authors can reach: a superset of those they
        match (authors by last name only), and every paper outside it scores on topics
        alone."""
        seen: dict[int, Candidate] = {}
        for word in interests.include_keywords:
            seen.update((p.paper_id, p) for p in self._with_keyword(word))
        for name in interests.authors:
            wanted = author_key(name)
            if wanted:
                seen.update((p.paper_id, p) for p in self._by_last_name.get(wanted[1], ()))
        return seen

    def ranked(self, interests: Interests) -> list[Pick]:
        """Every paper the rules give the reader, best first, whatever their maximum.
        Memoized: shared by every reader with the same interests. Never change it."""
        return self._ranked(dataclasses.replace(interests, max_papers=0))

    def _ranked(self, interests: Interests) -> list[Pick]:
        """Every paper the reader may get, best first (interests without a maximum)."""
        ranked = self._memo.get(interests)
        if ranked is not None:
            return ranked
        if not (interests.include_keywords or interests.authors or interests.exclude_keywords):
            on_topic: dict[int, Candidate] = {}
            for slug in interests.topics:
                on_topic.update((p.paper_id, p) for p in self._by_topic.get(slug, ()))
            ranked = rank(pick for paper in on_topic.values()
                          if (pick := score(paper, interests)) is not None)
        else:
            topics_only = Interests(topics=interests.topics, max_papers=0,
                                    include_revised=interests.include_revised)
            named = self._named(interests)
            excluded = interests.exclude_keywords
            ranked = rank([
                *(pick for pick in self._ranked(topics_only)
                  if pick.candidate.paper_id not in named
                  and not any(mentions(pick.candidate.text_lc, w) for w in excluded)),
                *(pick for paper in named.values()
                  if (pick := score(paper, interests)) is not None),
            ])
        self._memo[interests] = ranked
        return ranked

    def select(self, interests: Interests, already_sent: frozenset[int] = frozenset()) -> Selection:
        if not already_sent:
            found = self._selections.get(interests)
            if found is None:
                cut = self._cut(interests, ())
                found = self._selections[interests] = self._distinct.setdefault(cut, cut)
            return found
        return self._cut(interests, already_sent)

    def _cut(self, interests: Interests, already_sent: Collection[int]) -> Selection:
        # Ranked without the maximum: readers who differ only in how many papers they
        # want share one ranking, each cut at their own maximum.
        ranked = self.ranked(interests)
        if already_sent:
            ranked = [p for p in ranked if p.candidate.paper_id not in already_sent]
        limit = max(1, interests.max_papers)
        return Selection(picks=tuple(ranked[:limit]), more=max(0, len(ranked) - limit))


# A subject is read at a glance and cut by mail clients: the headline, its first part,
# names at most this many topics in at most this many characters, and counts the rest.
HEADLINE_TOPICS = 3
HEADLINE_CHARS = 60


def headline(selection: Selection) -> str:
    """The one-line summary at the top of a digest and in its subject: "7 papers on LLMs
    and Efficient ML", in the language in force ("7 articles sur ..."). It names every
    topic the picks matched, or as many as fit and "and N more topics"."""
    count = len(selection.picks) + selection.more
    topics: list[str] = []
    for pick in selection.picks:
        for reason in pick.reasons:
            name = why.topic_of(reason)
            if name is not None and name not in topics:
                topics.append(name)
    if not topics:
        return i18n.ngettext("%(num)d new paper for you", "%(num)d new papers for you", count)
    return i18n.ngettext("%(num)d paper on %(topics)s", "%(num)d papers on %(topics)s", count,
                         topics=_about([why.topic_said(name) for name in topics]))


def _about(topics: Sequence[str]) -> str:
    about = why.listing(topics)
    if len(topics) == 1 or (len(topics) <= HEADLINE_TOPICS and len(about) <= HEADLINE_CHARS):
        return about
    # Room for " and 12 more topics" after the names.
    shown = [topics[0]]
    for name in topics[1:HEADLINE_TOPICS - 1]:
        if len(", ".join([*shown, name])) > HEADLINE_CHARS - 19:
            break
        shown.append(name)
    rest = len(topics) - len(shown)
    return i18n.ngettext("%(topics)s and %(num)d more topic", "%(topics)s and %(num)d more topics",
                         rest, topics=", ".join(shown))
