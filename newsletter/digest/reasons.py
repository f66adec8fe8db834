"""Why a paper is in a digest: each reason as it is kept, and the line a reader sees. Pure.

A pick keeps its reasons as short tagged strings ("topic: Efficient ML", "keyword:
quantization", "author: Y. Bengio", "revised version", and the model's own). That is their
stored, machine-readable form: the ledger keeps them one a line, `preview --json` and the
privacy export print them, and the view in browser rebuilds a digest from them, so they
must not change. Every reason is made here, and `why_line` is the one place that says them
as a reader would: "Efficient ML · Large Language Models · mentions “quantization” · by
Y. Bengio", in the language in force (i18n: "mentionne « quantization » · par Y. Bengio"
in French, topics by their translated names). The stored form stays English whatever the
reader reads.
"""

from __future__ import annotations

from collections.abc import Sequence

from newsletter import i18n
from newsletter.topics.taxonomy import current

TOPIC = "topic: "
KEYWORD = "keyword: "
AUTHOR = "author: "
REVISED = "revised version"
DESCRIPTION = "matches your description"
LIKED = "close to papers you like"  # the model's, for a reader with no description
TUNING = "help tune your digest: rate it"
_LIKE = "like “"
# What the reader did with the favourite a pick resembles; the last is how rows stored
# before the two were told apart say it.
_RATED_UP, _LISTED, _EITHER = "” you rated up", "” you liked", "” you rated up or liked"
# ... or found among their own papers (newsletter/relevance/library/): their library
# file's, or their arXiv author feed's.
_IN_LIBRARY, _WROTE = "” in your library", "” you wrote"
# As functions: said in the language in force when the line is made, not at import.
_SAID = {
    _RATED_UP: lambda title: i18n.gettext("similar to %(title)s, which you rated up",
                                          title=title),
    _LISTED: lambda title: i18n.gettext("similar to %(title)s, which you said you like",
                                        title=title),
    _EITHER: lambda title: i18n.gettext("similar to %(title)s, which you rated up or liked",
                                        title=title),
    _IN_LIBRARY: lambda title: i18n.gettext("close to %(title)s in your library", title=title),
    _WROTE: lambda title: i18n.gettext("close to your paper %(title)s", title=title),
}
# Between the phrases of a why-line: a comma would be ambiguous beside "A, B and C".
SEPARATOR = " · "


def topic(name: str) -> str:
    return TOPIC + name


def keyword(word: str) -> str:
    return KEYWORD + word


def author(name: str) -> str:
    return AUTHOR + name


def resembles(title: str, rated_up: bool) -> str:
    """The model's reason: the pick is close to a paper the reader rated up, or (not
    rated) listed among the papers they like."""
    return f"{_LIKE}{title}{_RATED_UP if rated_up else _LISTED}"


def own_paper(title: str, wrote: bool) -> str:
    """The model's reason when the pick is close to one of the reader's own papers: in
    their library file, or (`wrote`) of their arXiv author feed."""
    return f"{_LIKE}{title}{_WROTE if wrote else _IN_LIBRARY}"


def _resemblance(reason: str) -> str | None:
    """"similar to “X”, which you rated up" for a stored resemblance, else None."""
    if not reason.startswith(_LIKE):
        return None
    # The longest first: it ends like another.
    for ending in (_EITHER, _RATED_UP, _LISTED, _IN_LIBRARY, _WROTE):
        if reason.endswith(ending):
            return _SAID[ending](quoted(reason[len(_LIKE):-len(ending)]))
    return None


def topic_of(reason: str) -> str | None:
    """The topic's name when the reason is a topic, else None."""
    return reason.removeprefix(TOPIC) if reason.startswith(TOPIC) else None


def topic_said(name: str) -> str:
    """A topic's stored (English) name as the language in force names it: a reason keeps
    the English name, and a reader of another language reads the one the taxonomy gives
    it in theirs."""
    for topic in current().topics:
        if topic.name == name:
            return topic.shown_name
    return name


def listing(items: Sequence[str]) -> str:
    """"A", "A and B", "A, B and C" (in French "A, B et C")."""
    if len(items) <= 1:
        return "".join(items)
    return i18n.gettext("%(items)s and %(last)s", items=", ".join(items[:-1]), last=items[-1])


def quoted(text: str) -> str:
    """“text”, or « text » in French: each language's own quotation marks."""
    return i18n.gettext("“%(text)s”", text=text)


def _quoted(items: Sequence[str]) -> str:
    return listing([quoted(item) for item in items])


def why_line(reasons: Sequence[str]) -> str:
    """The reasons as a reader says them, in their order, joined by " · ", in the language
    in force.

    Keywords and authors are each said once ("mentions “a” and “b”", "by A and B"), where
    the first of them stood. "revised version" is left out: the card carries its own
    "Revised version" mark. A reason this module does not know (an older ledger row) is
    shown as it was kept.
    """
    phrases: list[str | None] = []  # None: where the keywords or authors go
    keywords: list[str] = []
    authors: list[str] = []
    keywords_at = authors_at = -1
    for reason in reasons:
        if reason.startswith(TOPIC):
            phrases.append(topic_said(reason.removeprefix(TOPIC)))
        elif reason.startswith(KEYWORD):
            if not keywords:
                keywords_at = len(phrases)
                phrases.append(None)
            keywords.append(reason.removeprefix(KEYWORD))
        elif reason.startswith(AUTHOR):
            if not authors:
                authors_at = len(phrases)
                phrases.append(None)
            authors.append(reason.removeprefix(AUTHOR))
        elif (resemblance := _resemblance(reason)) is not None:
            phrases.append(resemblance)
        elif reason == TUNING:
            phrases.append(i18n.gettext("a rating here helps tune your digest"))
        elif reason == DESCRIPTION:
            phrases.append(i18n.gettext("matches your description"))
        elif reason == LIKED:
            phrases.append(i18n.gettext("close to papers you like"))
        elif reason != REVISED:
            phrases.append(reason)
    if keywords:
        phrases[keywords_at] = i18n.gettext("mentions %(keywords)s", keywords=_quoted(keywords))
    if authors:
        phrases[authors_at] = i18n.gettext("by %(authors)s", authors=listing(authors))
    return SEPARATOR.join(p for p in phrases if p)
