"""Which papers are the same work, whatever announced them. Pure.

One work can reach us several times: on arXiv and on bioRxiv, as a journal version with a
DOI, through a lab's RSS feed that links to arXiv. It is kept as one paper, which the
others join as aliases (`same_work.py`), so it is carded once and mailed once, with all
its links.

Three keys name a work, strongest first:
- its DOI, case-folded ("The DOI name is case-insensitive", DOI Handbook 2.2,
  https://www.doi.org/doi_handbook/2_Numbering.html);
- its arXiv id, versionless, also read from an arxiv.org link;
- its title, normalised (accents, case, LaTeX and punctuation away), with its first author's
  family name. Both must agree: two papers titled alike by different people stay two.
  A title of fewer than four words ("Editorial", "Reply to comments") names nothing.

A false merge (two papers shown as one, one of them never mailed) is worse than a missed
one (a paper mailed twice), so every key is exact: no fuzzy titles, no similar names.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

from newsletter.config import SOURCES

_ARXIV_LINK = re.compile(
    r"arxiv\.org/(?:abs|pdf|html)/((?:\d{4}\.\d{4,5})|(?:[a-z-]+(?:\.[A-Z]{2})?/\d{7}))"
    r"(?:v\d+)?", re.IGNORECASE)
_LATEX_COMMAND = re.compile(r"\\[a-zA-Z]+")
_NOT_WORD = re.compile(r"[^a-z0-9]+")
MIN_TITLE_WORDS = 4
# A preprint server's record of a preprint that became a journal article names the article's
# DOI in its `journal_ref`, after this (biorxiv.py writes it).
PUBLISHED = "Published: "
# Every source SOURCES names is a preprint server's own record, which outranks a feed's
# item: its text is the paper's own (title, abstract, authors).
PREPRINT_SOURCES = SOURCES


def _ascii_words(text: str) -> list[str]:
    folded = unicodedata.normalize("NFKD", _LATEX_COMMAND.sub(" ", text))
    flat = folded.encode("ascii", "ignore").decode().lower()
    return _NOT_WORD.sub(" ", flat).split()


def published_doi(journal_ref: str | None) -> str | None:
    """The journal article's DOI a preprint entry carries in `journal_ref`, if published."""
    if journal_ref and journal_ref.startswith(PUBLISHED):
        return journal_ref.removeprefix(PUBLISHED)
    return None


def normal_doi(doi: str | None) -> str | None:
    """A DOI as a key: lower case, without a resolver's prefix."""
    if not doi:
        return None
    value = doi.strip().lower()
    for prefix in ("https://doi.org/", "http://doi.org/", "https://dx.doi.org/",
                   "http://dx.doi.org/", "doi:"):
        value = value.removeprefix(prefix)
    return value if value.startswith("10.") and "/" in value else None


def arxiv_id_in(url: str | None) -> str | None:
    """The versionless arXiv id an arxiv.org link points to."""
    if not url:
        return None
    found = _ARXIV_LINK.search(url)
    return found.group(1) if found else None


def family_name(author: str) -> str:
    """"Smith, Jane A." and "Jane A. Smith" both give "smith"."""
    name = author.split(",")[0] if "," in author else (author.split() or [""])[-1]
    return "".join(_ascii_words(name))


def title_key(title: str, authors: Sequence[str]) -> str | None:
    """Normalised title and first author's family name, or None when they name nothing."""
    words = _ascii_words(title)
    if len(words) < MIN_TITLE_WORDS or not authors:
        return None
    family = family_name(authors[0])
    if not family:
        return None
    return (" ".join(words) + "|" + family)[:300]


def source_label(source: str) -> str:
    """How a source is named to readers."""
    return {"arxiv": "arXiv", "biorxiv": "bioRxiv", "medrxiv": "medRxiv"}.get(source, source)
