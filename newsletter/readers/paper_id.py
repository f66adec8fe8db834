"""A paper as a reader names it: an arXiv id, bare or versioned, or an arxiv.org abs or
pdf link. Pure.

arXiv's identifier scheme (https://info.arxiv.org/help/arxiv_identifier.html): since April
2007 YYMM.NNNN, five digits from 1501 on; before, archive(.SUBJECT CLASS)/YYMMNNN, where
the subject class is redundant and arXiv answers with the archive alone (math.GT/0309136
is math/0309136). A version (v2) names one revision: a liked paper is every version of it.
"""

from __future__ import annotations

import re

_ARXIV_REFERENCE = re.compile(
    r"^(?:arxiv:|(?:https?://)?(?:www\.|export\.)?arxiv\.org/(?:abs|pdf)/)?"
    r"(?:(?P<yymm>\d{2}(?:0[1-9]|1[0-2]))\.(?P<number>\d{4,5})"
    r"|(?P<archive>[a-z]+(?:-[a-z]+)?)(?:\.[a-z]{2})?/(?P<old>\d{2}(?:0[1-9]|1[0-2])\d{3}))"
    r"(?:v\d+)?(?:\.pdf)?/?$",
    re.IGNORECASE,
)


def arxiv_id_of(reference: str) -> str | None:
    """The versionless arXiv id an id or arxiv.org abs/pdf link names, or None.

    The number of digits must fit the month: the arXiv API answers a whole id_list with an
    error when one id in it is malformed.
    """
    match = _ARXIV_REFERENCE.match(reference.strip())
    if not match:
        return None
    if match.group("archive"):
        return f"{match.group('archive').lower()}/{match.group('old')}"
    yymm, number = match.group("yymm"), match.group("number")
    # Four digits from 0704 (April 2007, the first new-style month) to 1412, five after
    # (YY wraps: 06 would be 2106).
    if len(number) != (4 if "0704" <= yymm <= "1412" else 5):
        return None
    return f"{yymm}.{number}"


# The shape of an arXiv id, whether or not one can exist: 9999.99999 (month 99) or
# 2401.1234 (a digit short) is shaped like one, so whoever typed it meant a paper.
_ARXIV_ID_SHAPE = re.compile(
    r"^(?:arxiv:|(?:https?://)?(?:www\.|export\.)?arxiv\.org/(?:abs|pdf)/)?"
    r"(?P<id>\d{4}\.\d{4,5}|[a-z]+(?:-[a-z]+)?(?:\.[a-z]{2})?/\d{7})"
    r"(?:v\d+)?(?:\.pdf)?/?$",
    re.IGNORECASE,
)


def claimed_arxiv_id(reference: str) -> str | None:
    """The id a reference names, for looking up among our papers: `arxiv_id_of`'s, or
    for one shaped like an arXiv id that no paper can have, the id as written, which no
    stored paper has. So `9999.99999=up` is answered "no stored paper 9999.99999", not
    blamed on its syntax. Never send such an id to arXiv (see `arxiv_id_of`)."""
    found = arxiv_id_of(reference)
    if found is not None:
        return found
    match = _ARXIV_ID_SHAPE.match(reference.strip())
    return match.group("id").lower() if match else None
