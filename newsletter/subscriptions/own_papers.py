"""A reader's own papers from the manage page: their library file and arXiv author feed.

Each function is one thing a reader does, in one transaction (like reader_account.py).
A file is parsed here, in the request, because parsing is pure and bounded (files.py: 5
MB, 3,000 entries); everything that asks arXiv waits for the sweep
(newsletter/relevance/library/sweep.py), and the page says what is still to come.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlmodel import Session

from newsletter.db import transaction
from newsletter.i18n import gettext as _
from newsletter.readers.reader_input import InvalidInput
from newsletter.relevance import learn
from newsletter.relevance.library import files
from newsletter.relevance.library import store as library_store
from newsletter.relevance.library.files import ParsedLibrary
from newsletter.subscriptions.services import Services, managed


@dataclass(frozen=True)
class LibraryFile:
    """A file as a form or a command line received it."""

    filename: str | None
    data: bytes


def read_library(upload: LibraryFile) -> ParsedLibrary:
    """The file parsed, or InvalidInput naming what is wrong with it (field "library")."""
    try:
        return files.parse_library(upload.data)
    except files.LibraryFileError as exc:
        raise InvalidInput({"library": str(exc)}) from None


def shelf(svc: Services, token: str) -> library_store.Shelf:
    """What the reader brought, for their manage page. Raises BadLink or LinkInvalid."""
    with Session(svc.engine) as session:
        row = managed(svc, session, token)
        assert row.id is not None
        return library_store.shelf_of(session, row.id)


def upload_library(svc: Services, token: str, upload: LibraryFile | None) -> ParsedLibrary:
    """Replace the reader's library with this file (None: the form came without one).
    Raises InvalidInput (nothing changed), BadLink or LinkInvalid."""
    if upload is None:
        raise InvalidInput({"library": _(
            "Choose a file first: a BibTeX, RIS or CSL JSON export of your library.")})
    parsed = read_library(upload)
    with transaction(svc.engine) as session:
        row = managed(svc, session, token)
        assert row.id is not None
        learn.import_library(session, row.id, parsed, upload.filename, settings=svc.settings)
    return parsed


def remove_library(svc: Services, token: str) -> None:
    with transaction(svc.engine) as session:
        row = managed(svc, session, token)
        assert row.id is not None
        learn.remove_library(session, row.id, settings=svc.settings)


class NotEntries(ValueError):
    """Entry ids no page of ours sends (the form was forged or garbled)."""


def _entry_ids(raw: Sequence[str]) -> list[int]:
    if not raw:
        raise InvalidInput({"entries": _(
            "Nothing changed: check the papers first, then press the button.")})
    ids = [int(v) for v in raw if v.strip().isdigit() and len(v.strip()) < 12]
    if len(ids) != len(raw):
        raise NotEntries("not a list of entry ids")
    return ids


def drop_entries(svc: Services, token: str, entry_ids: Sequence[str],
                 dropped: bool = True) -> int:
    """Drop some of the reader's own papers (or take them back). Entries are named by id
    and only the reader's own can change. Raises InvalidInput (none checked), NotEntries,
    BadLink or LinkInvalid."""
    ids = _entry_ids(entry_ids)
    with transaction(svc.engine) as session:
        row = managed(svc, session, token)
        assert row.id is not None
        return learn.drop_own(session, row.id, ids, dropped, settings=svc.settings)
