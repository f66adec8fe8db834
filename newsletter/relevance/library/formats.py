"""The three formats reference managers export, each read into records: BibTeX, which
all of them write (bibtexparser v2, whose splitter steps past a broken entry, so it costs
that entry only); RIS, from Zotero, Mendeley, EndNote and publishers' sites (rispy); CSL
JSON, Zotero's most faithful export (plain json).

A record holds the few fields matching needs, under one name whatever the format, each
cut to a bounded length before anything cleans it; `files` checks and cleans them. Pure.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from itertools import chain
from typing import Any

import bibtexparser
import rispy
from bibtexparser.model import Entry, ParsingFailedBlock

from newsletter.i18n import gettext as _

MAX_TITLE = 500
MAX_ABSTRACT = 5000
# CSL JSON goes five levels deep (items, item, author or date, its parts); far deeper is
# not a library, and json's reader recurses on it until the stack runs out.
MAX_JSON_DEPTH = 16
# Fields are cut to eight times what is kept before they are cleaned: undoing TeX shrinks
# text ({\"u} is one letter), never eightfold, and a 4 MB field then costs no more than a
# normal one, even one @string shared by every entry of a file.
FIELD = MAX_TITLE * 8
LONG_FIELD = MAX_ABSTRACT * 8


class LibraryFileError(ValueError):
    """The file as a whole cannot be read; str(exc) is a sentence for the reader."""


@dataclass(frozen=True)
class Record:
    """An entry as read, before cleaning: the fields matching needs under one name
    whatever the format, each cut to a bounded length."""

    title: str = ""
    abstract: str = ""
    eprints: tuple[str, ...] = ()
    doi: str = ""
    urls: tuple[str, ...] = ()
    mentions: tuple[str, ...] = ()  # where tools write "arXiv:2401.12345" lacking a field
    markup: str = ""  # "tex" (BibTeX), "html" (Zotero's rich text in CSL JSON) or none


# A reader of a format yields, for each entry in file order, how to read it: so an entry
# past files.MAX_ENTRIES is counted without being read. What it returns is None if unreadable.
Reading = Callable[[], "Record | None"]


def format_of(text: str) -> str:
    """Which format a file is in, from its content: readers rename files, and tools
    disagree on extensions."""
    if text.lstrip()[:1] in ("[", "{"):
        return "csl-json"
    if re.search(r"^TY  - ", text, re.MULTILINE):
        return "ris"
    if re.search(r"@[A-Za-z]+\s*[{(]", text):
        return "bibtex"
    raise LibraryFileError(_("This is not a BibTeX, RIS or CSL JSON file."))


def _text(value: Any, most: int = FIELD) -> str:
    """A field's value as text, cut; what no tool writes there (a list...) is absent."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return value[:most] if isinstance(value, str) else ""


def bibtex(text: str) -> Iterator[Reading]:
    try:
        # No middleware: they copy each value as they unwrap it, so a 4 MB @string used by
        # every entry would be copied for each; values are resolved and unwrapped when read.
        library = bibtexparser.parse_string(text, parse_stack=[])
    except Exception:  # its splitter is built never to raise: this guards against a bug
        raise LibraryFileError(_("This BibTeX file could not be read.")) from None
    strings = {string.key.lower(): string.value for string in library.strings}
    for block in library.blocks:
        if isinstance(block, ParsingFailedBlock):
            # A repeated key or field leaves the entry as written, to be read as that; a
            # syntax error leaves nothing of it.
            if block.ignore_error_block is None:
                yield lambda: None
                continue
            block = block.ignore_error_block
        if isinstance(block, Entry):
            yield partial(_bibtex_record, block, strings)


def _bibtex_record(entry: Entry, strings: dict[str, Any]) -> Record:
    fields: dict[str, str] = {}
    for field in entry.fields:  # keys in any case; of a repeated one, the first
        value = field.value if isinstance(field.value, str) else ""
        if len(value) < 100 and value.lower() in strings:  # @string{arxiv = "arXiv"}
            value = strings[value.lower()]
        most = LONG_FIELD if field.key.lower() == "abstract" else FIELD
        if len(value) > 1 and value[0] + value[-1] in ("{}", '""'):
            value = value[1:min(len(value) - 1, most + 1)]
        fields.setdefault(field.key.lower(), _text(value, most))

    def bare(key: str) -> str:  # an identifier, without TeX's escapes and braces
        return re.sub(r"[\\{}]", "", fields.get(key, "")).strip()

    return Record(
        title=fields.get("title", ""), abstract=fields.get("abstract", ""),
        # Old-style ids are also written split: eprint 9711200, primaryclass hep-th.
        eprints=(bare("eprint"), f"{bare('primaryclass')}/{bare('eprint')}"),
        doi=bare("doi"), urls=(bare("url"),),
        mentions=tuple(map(bare, ("journal", "note", "number", "publisher", "howpublished"))),
        markup="tex")


def ris(text: str) -> Iterator[Reading]:
    """Each TY..ER record goes to rispy alone: given a whole file, it carries a record's
    last tag into the next and raises (KeyError) on a continuation line there, losing the
    file for one stray line. A last record without its ER is closed."""
    lines: list[str] = []
    for line in chain(re.split(r"\r\n?|\n", text), ["ER  - "]):
        lines.append(line)
        if line.startswith("ER  -"):
            if any(kept.startswith("TY  - ") for kept in lines):
                yield partial(_ris_record, "\n".join(lines))
            lines = []


def _ris_record(text: str) -> Record | None:
    try:
        found = rispy.loads(text)
    except Exception:  # KeyError, TypeError...: rispy assumes well-formed records
        return None
    if not found:
        return None
    record = found[0]

    def values(*keys: str, most: int = FIELD) -> list[str]:
        listed = chain.from_iterable(v if isinstance(v, list) else [v]
                                     for v in map(record.get, keys))
        return [value for value in (_text(v, most) for v in listed) if value]

    return Record(
        title=next(iter(values("title", "primary_title")), ""),
        abstract=next(iter(values("abstract", "notes_abstract", most=LONG_FIELD)), ""),
        doi=next(iter(values("doi")), ""), urls=tuple(values("urls")),
        mentions=tuple(values("journal_name", "secondary_title", "alternate_title3", "notes",
                              "note", "number", "publisher", "accession_number")))


def csl_json(text: str) -> Iterator[Reading]:
    try:
        data = json.loads(text)
    except RecursionError:
        data = None
    except ValueError:
        raise LibraryFileError(_("This file starts like CSL JSON but is not valid JSON: "
                                 "export the library again.")) from None
    if data is None or not _shallow(data):
        raise LibraryFileError(_("This JSON is nested too deeply to be a CSL JSON library."))
    items = data.get("items") if isinstance(data, dict) else data
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise LibraryFileError(_("This JSON is not a CSL JSON library: that is a list of "
                                 "items, each an object."))
    return (partial(_csl_record, item) for item in items)


def _csl_record(item: dict[str, Any]) -> Record:
    return Record(
        title=_text(item.get("title")), abstract=_text(item.get("abstract"), LONG_FIELD),
        doi=_text(item.get("DOI")), urls=(_text(item.get("URL")),),
        mentions=tuple(_text(item.get(key)) for key in ("number", "archive", "archive_location",
                                                        "container-title", "note", "publisher")),
        markup="html")


def _shallow(data: Any) -> bool:
    """Whether nothing lies deeper than MAX_JSON_DEPTH; walked without recursion, for the
    reason of the limit itself."""
    stack = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            return False
        children = value.values() if isinstance(value, dict) else value
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return True


# A reader of each format, by the name format_of gives.
READERS: dict[str, Callable[[str], Iterator[Reading]]] = {
    "bibtex": bibtex, "ris": ris, "csl-json": csl_json}
