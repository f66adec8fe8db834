"""A reader's reference library, read from the file their reference manager exports.

A reader who keeps their papers in Zotero, Mendeley or Google Scholar can hand us that
library rather than type liked papers one by one. Between them those tools export three
formats, and only these are read (`formats`: BibTeX, RIS and CSL JSON). The content tells
the format, never the file's name: readers rename files, and tools disagree on extensions.

Of each entry only what matching needs is kept: its title (for an exact title match on
arXiv, and the report), its arXiv id, its DOI, and its abstract, which stands for a paper
not on arXiv. Authors, notes, tags, attachments, the rest of a reader's library is never
read into a value, so none of it can be stored.

An upload is hostile until read: its size is capped before decoding, it must be text
(UTF-8, or UTF-16 with its BOM), JSON nesting is bounded, each field is cut before it is
cleaned, and entries past MAX_ENTRIES are counted, not read. A file that cannot be read at
all raises LibraryFileError, whose message is for the reader; an entry that cannot be used
is Skipped with a reason code (`reason_said` words it). Pure: no database, no network.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import chain
from urllib.parse import unquote

from newsletter.i18n import gettext as _
from newsletter.readers.paper_id import arxiv_id_of
from newsletter.relevance.library.formats import (
    LONG_FIELD,
    MAX_ABSTRACT,
    MAX_TITLE,
    READERS,
    LibraryFileError,
    Reading,
    Record,
    format_of,
)

MAX_FILE_BYTES = 5 * 1024 * 1024  # 5 MB
MAX_ENTRIES = 3000
# Shorter, an "abstract" is a placeholder or a fragment: it would only blur the vector of
# the paper it stands for.
MIN_ABSTRACT = 20
_ARXIV_DOI = "10.48550/arxiv."


@dataclass(frozen=True)
class LibraryEntry:
    number: int  # 1-based position of the entry in the file
    title: str  # TeX undone, whitespace collapsed, at most MAX_TITLE; "" only with an arXiv id
    arxiv_id: str | None  # versionless
    doi: str | None  # lower-cased, bare; never the arXiv DOI (that one became arxiv_id)
    abstract: str | None  # cleaned like the title, cut at a word to MAX_ABSTRACT


@dataclass(frozen=True)
class Skipped:
    number: int
    title: str | None  # None when there is none, or the entry was not read (too-many)
    reason: str  # "no-title", "duplicate", "unreadable" or "too-many"


@dataclass(frozen=True)
class ParsedLibrary:
    format: str  # "bibtex" | "ris" | "csl-json"
    entries: tuple[LibraryEntry, ...]
    skipped: tuple[Skipped, ...]


def reason_said(code: str) -> str:
    """A Skipped reason in words for the reader's report; an unknown code as it is, so
    that a stored report outlives a code's retirement."""
    return {"no-title": _("no title and no arXiv identifier"),
            "duplicate": _("the same arXiv identifier, DOI or title as an earlier entry"),
            "unreadable": _("this entry could not be read"),
            "too-many": _("beyond the first %(most)s entries", most=MAX_ENTRIES),
            }.get(code, code)


def parse_library(data: bytes) -> ParsedLibrary:
    """The usable entries of an exported library file and those skipped, with why; or
    LibraryFileError when the file as a whole cannot be read."""
    text = _decoded(data)
    form = format_of(text)
    entries, skipped = _checked(READERS[form](text))
    if not entries:
        raise LibraryFileError(_("The file has no entry with a title or an arXiv identifier."))
    return ParsedLibrary(form, tuple(entries), tuple(skipped))


def _decoded(data: bytes) -> str:
    if len(data) > MAX_FILE_BYTES:
        raise LibraryFileError(_("The file is larger than %(most)s MB: export your library "
                                 "without attachments, or a part of it.",
                                 most=MAX_FILE_BYTES // (1024 * 1024)))
    if not data.strip():
        raise LibraryFileError(_("The file is empty."))
    # What readers send by mistake: the paper itself, the export still zipped, a screenshot.
    if data.startswith(b"%PDF"):
        raise LibraryFileError(_("This looks like a PDF, not a library export: export your "
                                 "library as BibTeX, RIS or CSL JSON."))
    if data.startswith((b"PK\x03\x04", b"\x1f\x8b")):
        raise LibraryFileError(_("This looks like a compressed archive (ZIP or gzip), not a "
                                 "library export: send the file inside it."))
    if data.startswith(b"\x89PNG"):
        raise LibraryFileError(_("This looks like an image, not a library export: export "
                                 "your library as BibTeX, RIS or CSL JSON."))
    # Windows tools (EndNote, some Mendeley versions) write UTF-16, always with a BOM.
    utf16 = data.startswith((b"\xff\xfe", b"\xfe\xff"))
    try:
        text = data.decode("utf-16" if utf16 else "utf-8-sig")
    except UnicodeDecodeError:
        text = None
    # NUL bytes are UTF-16's own; anywhere else, or once decoded, they mean binary.
    if "\x00" in (text or "") or (not utf16 and b"\x00" in data):
        raise LibraryFileError(_("This is not a text file: export your library as BibTeX, "
                                 "RIS or CSL JSON."))
    if text is None:
        raise LibraryFileError(_("The file is not UTF-8 text: export the library again as "
                                 "UTF-8."))
    if not text.strip():
        raise LibraryFileError(_("The file is empty."))
    return text


def _checked(readings: Iterable[Reading]) -> tuple[list[LibraryEntry], list[Skipped]]:
    entries: list[LibraryEntry] = []
    skipped: list[Skipped] = []
    seen: set[str] = set()
    for number, reading in enumerate(readings, 1):
        record = reading() if number <= MAX_ENTRIES else None
        title = _cleaned(record.title, record.markup)[:MAX_TITLE].rstrip() if record else ""
        arxiv_id = _arxiv_id(record) if record else None
        if record is None or not (title or arxiv_id):
            reason = ("too-many" if number > MAX_ENTRIES else
                      "unreadable" if record is None else "no-title")
            skipped.append(Skipped(number, None, reason))
            continue
        doi = next((found for found in map(_doi, (record.doi, *record.urls))
                    if found and not found.startswith(_ARXIV_DOI)), None)
        keys = {f"arxiv:{arxiv_id}", f"doi:{doi}", f"title:{normalised_title(title)}"}
        keys -= {"arxiv:None", "doi:None", "title:"}
        if keys & seen:
            skipped.append(Skipped(number, title or None, "duplicate"))
            continue
        seen |= keys
        entries.append(LibraryEntry(number, title, arxiv_id, doi,
                                    _abstract(record.abstract, record.markup)))
    return entries, skipped


# "arXiv:1706.03762 [cs]" (Zotero), "arXiv preprint arXiv:1810.04805" and, for old-style
# ids, "arXiv preprint hep-th/9711200" (Google Scholar): the word, then what may be an id.
_ARXIV_MENTION = re.compile(r"arxiv(?:\s+preprint)?[\s:]*([^\s,;()\[\]]+)", re.IGNORECASE)
_DOI_PREFIX = re.compile(r"^(?:https?://(?:dx\.)?doi\.org/|doi:\s*)", re.IGNORECASE)


def _arxiv_id(record: Record) -> str | None:
    """From the surest source to the loosest: an eprint field, the arXiv DOI, an arxiv.org
    link, then "arXiv:<id>" written into a journal, note or number field."""
    from_dois = (doi.removeprefix(_ARXIV_DOI) for doi in map(_doi, (record.doi, *record.urls))
                 if doi is not None and doi.startswith(_ARXIV_DOI))
    mentioned = (found.group(1).rstrip(".") for text in record.mentions
                 for found in _ARXIV_MENTION.finditer(text))
    # arxiv_id_of, not claimed_arxiv_id: an id no paper can have would reach the arXiv API,
    # which answers a whole batch with an error for one malformed id.
    for candidate in chain(record.eprints, from_dois, record.urls, mentioned):
        found = arxiv_id_of(candidate) if candidate else None
        if found is not None:
            return found
    return None


def _doi(raw: str) -> str | None:
    """A DOI from a doi field or a doi.org link, lower-cased: DOIs ignore case."""
    value = unquote(_DOI_PREFIX.sub("", raw.strip())).strip().lower()
    if not value.startswith("10.") or "/" not in value or len(value) > 300:
        return None
    return None if any(char.isspace() for char in value) else value


def normalised_title(title: str) -> str:
    """The key for exact title matching and for duplicates: casefolded, accents dropped,
    TeX commands, punctuation and extra spaces gone, so that "{BERT}: Pre-training" and
    "BERT: pre-training" are one title, as are Schr{\\"o}dinger and Schrödinger."""
    # Braces go without a trace: in TeX they never part words (Schr{\"o}dinger).
    text = re.sub(r"\\(?:[A-Za-z]+|.)|[{}]", "", title, flags=re.DOTALL).casefold()
    text = "".join(char for char in unicodedata.normalize("NFKD", text)
                   if not unicodedata.combining(char))
    return " ".join(re.sub(r"[\W_]+", " ", text).split())


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
# Zotero's rich text: the few tags its editor writes into a title or an abstract.
_HTML = re.compile(r"</?(?:i|b|sup|sub|sc)>|<span[^<>]*>|</span>")


def _cleaned(raw: str, markup: str) -> str:
    text = raw[:LONG_FIELD]
    if markup == "tex":
        text = _TEX.sub(_untexed, text)
    elif markup == "html":
        text = _HTML.sub("", text)
    return " ".join(_CONTROL.sub(" ", text).split())


def _abstract(raw: str, markup: str) -> str | None:
    text = _cleaned(raw, markup)
    if len(text) > MAX_ABSTRACT:
        cut = text[:MAX_ABSTRACT + 1]
        text = cut[:cut.rfind(" ")].rstrip() if " " in cut else cut[:MAX_ABSTRACT]
    return text if len(text) >= MIN_ABSTRACT else None


# TeX as reference managers write it: accents ({\"u}, \'{e}, \c c), escaped specials (\&),
# a few letters (\ss, \o), braces keeping capitals ({BERT}). One linear pass over a table,
# not a LaTeX parser: pylatexenc (bibtexparser's LatexDecodingMiddleware) takes about a
# millisecond an abstract, tens of seconds a full file, and recurses on nested braces
# until the stack runs out.
_TEX = re.compile(r"""
    (?P<math>\$[^$]*\$)
  | \\(?P<accent>["'`^~=.]|[uvHckrdb](?![A-Za-z]))\s*
    (?:\{\s*)?(?P<base>\\[ij](?![A-Za-z])|[A-Za-z])(?:\s*\})?
  | \\(?P<escaped>[&%$\#_{}])
  | \\(?P<word>[A-Za-z]+)\*?\s*
  | \\(?P<symbol>.)
  | [{}~]
""", re.VERBOSE | re.DOTALL)
_ACCENTS = {'"': "\u0308", "'": "\u0301", "`": "\u0300", "^": "\u0302", "~": "\u0303",
            "=": "\u0304", ".": "\u0307", "u": "\u0306", "v": "\u030c", "H": "\u030b",
            "c": "\u0327", "k": "\u0328", "r": "\u030a", "d": "\u0323", "b": "\u0331"}
_LETTERS = {"ss": "ß", "o": "ø", "O": "Ø", "ae": "æ", "AE": "Æ", "oe": "œ", "OE": "Œ",
            "aa": "å", "AA": "Å", "l": "ł", "L": "Ł", "i": "i", "j": "j", "TeX": "TeX",
            "LaTeX": "LaTeX", "textendash": "\u2013", "textemdash": "\u2014", "ldots": "…",
            "dots": "…", "textasciitilde": "~", "textbackslash": "\\", "S": "§",
            # What Zotero writes for ^ < > _ in a title or an abstract.
            "textasciicircum": "^", "textless": "<", "textgreater": ">",
            "textunderscore": "_"}


def _untexed(match: re.Match[str]) -> str:
    if match["math"] is not None:
        return match["math"]  # as arXiv keeps it in its own titles: $\alpha$-divergence
    if match["accent"] is not None:
        return unicodedata.normalize("NFC", match["base"][-1] + _ACCENTS[match["accent"]])
    if match["escaped"] is not None:
        return match["escaped"]
    if match["word"] is not None:  # \textbf, \emph, \url go; their argument stays
        return _LETTERS.get(match["word"], "")
    if match["symbol"] is not None:
        return " " if match["symbol"] in "\\ ,;" else ""
    return " " if match[0] == "~" else ""
