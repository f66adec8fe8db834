"""A reader's own papers on the site (issue 25): an arXiv author identifier and a reference
library file, given on the sign-up form or the manage page, through the Flask test client
on a real database (SQLite, and Postgres where it runs).

A sign-up's file and identifier wait for the confirmation click: nothing of them is the
reader's before, and a sign-up by someone else for a confirmed reader's address changes
nothing of theirs. The manage page lists the entries with what became of each, replaces
the file, drops and brings back entries (only the reader's own), and removes the file.
Mistakes (an identifier that is none, an image posing as BibTeX, an empty file, a file
over 5 MB) are told on the form with status 400, or, for a body beyond what the form
accepts, on a 413 page; nothing is stored and nothing is a 500. A forged link is the
usual bad-link page.
"""

from __future__ import annotations

import io
import re
from datetime import UTC, datetime
from html import unescape
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import Engine, func
from sqlmodel import Session, select

from newsletter import db
from newsletter.config import Settings
from newsletter.readers import subscriber as subs
from newsletter.readers.tables import Preferences, Subscriber
from newsletter.relevance.library import store as library_store
from newsletter.relevance.library.files import MAX_FILE_BYTES, parse_library
from newsletter.relevance.library.tables import LibraryEntry, LibraryUpload
from newsletter.subscriptions import own_papers
from newsletter.subscriptions.services import Services
from newsletter.web.common import SERVICES
from newsletter.web.subscriptions import LIBRARY_FORM_LIMIT, OWN_PAPERS_PAGE
from tests.support import web
from tests.support.axe import axe_context
from tests.support.reader_site import READER, served
from tests.support.web import csrf_token, link, outbox, session_form_token, subscribe

# The shared web fixtures, collected by pytest from this module's names.
app, client, web_settings = web.app, web.client, web.web_settings

# A Zotero-like BibTeX export: a paper on arXiv, one with only a DOI and an abstract (to be
# looked up on arXiv by title), and one with neither title nor identifier (skipped).
LIBRARY = b"""@article{vaswani2017,
  title = {Attention Is All You Need},
  author = {Vaswani, Ashish and others},
  eprint = {1706.03762},
  archivePrefix = {arXiv},
  year = {2017}
}
@inproceedings{ours2020,
  title = {A Study of Sparse Attention in Practice},
  abstract = {We study sparse attention for long-context inference and report what helps.},
  doi = {10.1000/xyz123},
  year = {2020}
}
@misc{notitle,
  author = {Nobody},
  year = {2019}
}
"""
# Another reader's library, or the same reader's next one.
OTHER_LIBRARY = b"""TY  - JOUR
TI  - Denoising Diffusion Probabilistic Models
UR  - https://arxiv.org/abs/2006.11239
ER  -
TY  - JOUR
TI  - Graph Networks for Tide Prediction
AB  - We predict tides with graph networks over coastal stations, a study.
ER  -
"""
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 4


def _file(data: bytes, name: str = "My Library.bib") -> tuple[io.BytesIO, str]:
    return io.BytesIO(data), name


def _text(answer: Any) -> str:
    return unescape(answer.get_data(as_text=True))


def _svc(client: FlaskClient) -> Services:
    return client.application.extensions[SERVICES]


def _reader_id(engine: Engine, email: str) -> int:
    with Session(engine) as session:
        row = subs.find_by_email(session, email)
        assert row is not None and row.id is not None
        return row.id


def _shelf(engine: Engine, email: str) -> library_store.Shelf:
    with Session(engine) as session:
        return library_store.shelf_of(session, _reader_id(engine, email))


def _stored(engine: Engine) -> tuple[int, int]:
    """Library files and entries stored, whoever's and waiting or not."""
    with Session(engine) as session:
        return (session.exec(select(func.count()).select_from(LibraryUpload)).one(),
                session.exec(select(func.count()).select_from(LibraryEntry)).one())


def _author(engine: Engine, email: str) -> str | None:
    with Session(engine) as session:
        prefs = session.get(Preferences, _reader_id(engine, email))
        return prefs.arxiv_author if prefs else None


def _confirm(client: FlaskClient, web_settings: Settings) -> str:
    """Press the button of the latest confirmation mail; the manage path of the welcome."""
    confirm = link(outbox(web_settings)[-1], "confirm")
    done = client.post(confirm, data={"csrf_token": csrf_token(client, confirm)})
    assert done.status_code == 200, done.get_data(as_text=True)
    welcome = outbox(web_settings)[-1]
    assert welcome["Subject"] == "Welcome to Paperwire"
    return link(welcome, "manage")


def _reader(client: FlaskClient, web_settings: Settings, email: str,
            **extra: Any) -> str:
    """A confirmed reader, signed up with `extra`; their manage path."""
    answer = subscribe(client, email, **extra)
    assert answer.status_code == 200, _text(answer)
    return _confirm(client, web_settings)


def _upload(client: FlaskClient, manage: str, data: bytes, name: str = "library.bib"):  # type: ignore[no-untyped-def]
    return client.post(f"{manage}/library", data={"csrf_token": csrf_token(client, manage),
                                                  "library": _file(data, name)})


def _titles(shelf: library_store.Shelf) -> list[str]:
    return [e.title for e in shelf.entries]


def _entry_ids(shelf: library_store.Shelf) -> dict[str, int]:
    return {e.title: e.id for e in shelf.entries if e.id is not None}


def _drop(client: FlaskClient, manage: str, ids: list[Any], keep: bool = False):  # type: ignore[no-untyped-def]
    data: dict[str, Any] = {"csrf_token": csrf_token(client, manage),
                            "entry": [str(i) for i in ids]}
    if keep:
        data["keep"] = "1"
    return client.post(f"{manage}/library/drop", data=data)


def _section(page: str) -> str:
    return page.split('id="own-papers"', 1)[1].split('id="data-heading"', 1)[0]


# ---------------------------------------------------------------- the sign-up form


def test_the_sign_up_form_takes_a_file_and_an_author(client: FlaskClient) -> None:
    page = _text(client.get("/"))
    form = page.split('<form class="subscribe"', 1)[1].split("</form>", 1)[0]
    assert 'enctype="multipart/form-data"' in form
    assert '<label for="arxiv_author">Your arXiv author identifier or ORCID iD</label>' in form
    assert '<label for="library">Your reference library</label>' in form
    assert ('type="file" id="library" name="library" accept=".bib,.ris,.json,.txt,'
            'application/x-bibtex,application/json"') in form
    assert "up to 5 MB. Its papers shape your first digest." in form
    # Nothing typed: the optional part stays folded.
    assert '<details class="interests">' in form


def test_a_sign_up_s_library_and_author_wait_for_the_confirmation(
        client: FlaskClient, web_settings: Settings, engine: Engine) -> None:
    answer = subscribe(client, "reader@example.org", arxiv_author="https://arxiv.org/a/grapa_j_1",
                       library=_file(LIBRARY))
    assert answer.status_code == 200 and "Check your inbox" in _text(answer)
    # Stored, but nothing of it is the reader's: anyone can type anyone's address.
    assert _stored(engine) == (1, 2)
    shelf = _shelf(engine, "reader@example.org")
    assert (shelf.author, shelf.upload, shelf.entries) == (None, None, ())
    assert _author(engine, "reader@example.org") is None

    manage = _confirm(client, web_settings)
    shelf = own_papers.shelf(_svc(client), manage.rsplit("/", 1)[1])
    assert shelf.author == "grapa_j_1" and shelf.author_read_at is None
    assert shelf.upload is not None and shelf.upload.filename == "My Library.bib"
    assert _titles(shelf) == ["Attention Is All You Need",
                              "A Study of Sparse Attention in Practice"]
    assert [(e.state, e.arxiv_id) for e in shelf.entries] == [
        (library_store.ARXIV, "1706.03762"), (library_store.LOOKUP, None)]
    assert shelf.upload.report["skipped"] == [{"number": 3, "title": None,
                                                "reason": "no-title"}]

    page = _text(client.get(manage))
    assert 'value="grapa_j_1"' in page
    assert "arXiv's feed for grapa_j_1 is read within the hour" in page
    own = _section(page)
    assert "Your own papers" in own and "My Library.bib" in own and "gave 2 papers" in own
    assert ('<a href="https://arxiv.org/abs/1706.03762" rel="noopener noreferrer">'
            "Attention Is All You Need</a>") in own
    assert "on arXiv (1706.03762)" in own
    assert "A Study of Sparse Attention in Practice" in own
    assert "still being looked up on arXiv" in own
    assert "1 entry skipped" in own and "Entry 3: no title and no arXiv identifier" in own
    assert "Replace my library" in own and "Remove my library" in own
    assert "Drop the checked papers" in own and "Bring back the checked papers" not in own


def test_a_sign_up_for_a_confirmed_reader_s_address_changes_nothing_of_theirs(
        client: FlaskClient, web_settings: Settings, engine: Engine) -> None:
    manage = _reader(client, web_settings, "reader@example.org", arxiv_author="grapa_j_1",
                     library=_file(LIBRARY))
    before = _titles(_shelf(engine, "reader@example.org"))
    mails = len(outbox(web_settings))

    # Someone else types the reader's address, with their own file and identifier.
    answer = subscribe(client, "reader@example.org", arxiv_author="0000-0002-1825-0097",
                       library=_file(OTHER_LIBRARY, "theirs.ris"))
    assert answer.status_code == 200  # the same answer as for a new address
    shelf = _shelf(engine, "reader@example.org")
    assert _titles(shelf) == before and shelf.author == "grapa_j_1"
    assert shelf.upload is not None and shelf.upload.filename == "My Library.bib"
    assert _stored(engine) == (1, 2)  # the stranger's file is not even kept
    # Whatever mail that sign-up owed, no link in it makes the stranger's file theirs.
    for mail in outbox(web_settings)[mails:]:
        assert "/confirm/" not in mail.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "Attention Is All You Need" in _text(client.get(manage))


def test_an_empty_file_input_is_no_file(client: FlaskClient, web_settings: Settings,
                                        engine: Engine) -> None:
    # A browser sends the part of an untouched file input: no file name, no bytes.
    answer = subscribe(client, "reader@example.org", library=_file(b"", ""))
    assert answer.status_code == 200, _text(answer)
    _confirm(client, web_settings)
    shelf = _shelf(engine, "reader@example.org")
    assert shelf.upload is None and _stored(engine) == (0, 0)


def test_bad_sign_ups_say_what_is_wrong_and_store_nothing(
        client: FlaskClient, web_settings: Settings, engine: Engine) -> None:
    # The identifier is checked; what was typed comes back, the <details> open.
    answer = subscribe(client, "reader@example.org", arxiv_author="Grapa, J.")
    assert answer.status_code == 400
    page = _text(answer)
    assert "Give your arXiv author identifier (like grapa_j_1" in page
    assert 'value="Grapa, J."' in page and '<details class="interests" open>' in page
    assert re.search(r'id="arxiv_author"[^>]*aria-describedby="arxiv_author-hint '
                     r'arxiv_author-error"[^>]*aria-invalid="true"', page)
    assert 'class="field invalid">\n  <label for="arxiv_author">' in page

    # An ORCID iD with a wrong check digit.
    answer = subscribe(client, "reader@example.org", arxiv_author="0000-0002-1825-0098")
    assert answer.status_code == 400 and "is not a valid ORCID iD" in _text(answer)

    cases = [
        (PNG, "library.bib", "This looks like an image, not a library export"),
        (b"", "empty.bib", "The file is empty."),
        (b"%PDF-1.7\n" + b"0" * 1000, "paper.pdf", "This looks like a PDF"),
        (b"just some words, not a library\n", "notes.txt",
         "This is not a BibTeX, RIS or CSL JSON file."),
        (LIBRARY + b" " * (MAX_FILE_BYTES - len(LIBRARY) + 1), "big.bib",
         "The file is larger than 5 MB"),
    ]
    for data, name, said in cases:
        answer = subscribe(client, "reader@example.org", arxiv_author="grapa_j_1",
                           library=_file(data, name))
        assert answer.status_code == 400, name
        page = _text(answer)
        assert said in page, name
        assert "Choose the file again" in page, name
        assert re.search(r'id="library"[^>]*aria-describedby="library-hint library-error"'
                         r'[^>]*aria-invalid="true"', page), name
        # The author typed comes back; the file cannot, and the page says so.
        assert 'value="grapa_j_1"' in page and '<details class="interests" open>' in page

    # Another field's mistake: a good file must be chosen again, and the page names it.
    answer = subscribe(client, "not an address", library=_file(LIBRARY, "zotero.bib"))
    assert answer.status_code == 400
    assert "You had chosen zotero.bib: choose it again" in _text(answer)

    with Session(engine) as session:
        assert session.exec(select(func.count()).select_from(Subscriber)).one() == 0
    assert _stored(engine) == (0, 0) and outbox(web_settings) == []


def test_a_file_beyond_what_the_form_accepts_is_a_413_page(
        client: FlaskClient, web_settings: Settings, engine: Engine) -> None:
    huge = LIBRARY + b" " * LIBRARY_FORM_LIMIT
    answer = subscribe(client, "reader@example.org", library=_file(huge))
    assert answer.status_code == 413
    page = _text(answer)
    assert "That file is too large" in page and "at most 5 MB" in page
    # The limit is raised for the file: a text field past 512 KB is still a 413, a long
    # one below it is refused by its own check, and a form sent url-encoded (read whole
    # into memory) keeps the small limit.
    answer = subscribe(client, "reader@example.org", library=_file(LIBRARY),
                       description="x" * 600_000)
    assert answer.status_code == 413 and "That was more data than this form" in _text(answer)
    answer = subscribe(client, "reader@example.org", library=_file(LIBRARY),
                       description="x" * 100_000)
    assert answer.status_code == 400 and "At most 500 characters" in _text(answer)
    answer = client.post("/subscribe", data={"email": "reader@example.org", "topics": "llm",
                                             "x": "y" * 100_000})
    assert answer.status_code == 413
    with Session(engine) as session:
        assert session.exec(select(func.count()).select_from(Subscriber)).one() == 0
    assert _stored(engine) == (0, 0) and outbox(web_settings) == []

    manage = _reader(client, web_settings, "reader@example.org")
    answer = _upload(client, manage, huge)
    assert answer.status_code == 413 and "That file is too large" in _text(answer)
    assert _stored(engine) == (0, 0)
    # Other forms of the manage page keep the small limit.
    answer = client.post(manage, data={"csrf_token": csrf_token(client, manage),
                                       "topics": "llm", "library": _file(LIBRARY * 200)})
    assert answer.status_code == 413


# ---------------------------------------------------------------- the manage page


def test_the_manage_page_uploads_replaces_drops_brings_back_and_removes(
        client: FlaskClient, web_settings: Settings, engine: Engine) -> None:
    manage = _reader(client, web_settings, "reader@example.org")
    page = _text(client.get(manage))
    own = _section(page)
    assert 'enctype="multipart/form-data"' in own and "Upload my library" in own
    assert "Remove my library" not in own and 'name="entry"' not in own

    answer = _upload(client, manage, LIBRARY, "zotero.bib")
    assert answer.status_code == 303
    assert answer.headers["Location"] == f"{manage}?own=uploaded#own-papers"
    shelf = _shelf(engine, "reader@example.org")
    assert shelf.upload is not None and shelf.upload.filename == "zotero.bib"
    assert len(shelf.entries) == 2
    assert "Library saved." in _text(client.get(f"{manage}?own=uploaded"))

    # A new file replaces the old one, entries and all.
    assert _upload(client, manage, OTHER_LIBRARY, "export.ris").status_code == 303
    shelf = _shelf(engine, "reader@example.org")
    assert shelf.upload is not None and shelf.upload.format == "ris"
    assert _titles(shelf) == ["Denoising Diffusion Probabilistic Models",
                              "Graph Networks for Tide Prediction"]
    assert _stored(engine) == (1, 2)
    ids = _entry_ids(shelf)

    dropped = _drop(client, manage, [ids["Denoising Diffusion Probabilistic Models"]])
    assert dropped.status_code == 303
    assert dropped.headers["Location"] == f"{manage}?own=dropped#own-papers"
    shelf = _shelf(engine, "reader@example.org")
    assert [e.dropped for e in shelf.entries] == [True, False] and shelf.counting() == 0
    own = _section(_text(client.get(f"{manage}?own=dropped")))
    assert "the checked papers no longer count" in own
    assert "Dropped: not used." in own and "Bring back the checked papers" in own
    assert 'name="keep" value="1"' in own

    kept = _drop(client, manage, list(ids.values()), keep=True)
    assert kept.status_code == 303 and kept.headers["Location"].endswith("?own=kept#own-papers")
    assert [e.dropped for e in _shelf(engine, "reader@example.org").entries] == [False, False]

    # Pressing the button with nothing checked changes nothing, and says so.
    answer = client.post(f"{manage}/library/drop",
                         data={"csrf_token": csrf_token(client, manage)})
    assert answer.status_code == 400 and "check the papers first" in _text(answer)

    removed = client.post(f"{manage}/library/remove",
                          data={"csrf_token": csrf_token(client, manage)})
    assert removed.status_code == 303
    assert removed.headers["Location"] == f"{manage}?own=removed#own-papers"
    assert _stored(engine) == (0, 0)
    assert "Library removed" in _text(client.get(f"{manage}?own=removed"))
    # Removing what is not there is no mistake.
    again = client.post(f"{manage}/library/remove",
                        data={"csrf_token": csrf_token(client, manage)})
    assert again.status_code == 303


def test_bad_uploads_say_why_and_keep_the_library(
        client: FlaskClient, web_settings: Settings, engine: Engine) -> None:
    manage = _reader(client, web_settings, "reader@example.org", library=_file(LIBRARY))
    before = _titles(_shelf(engine, "reader@example.org"))
    cases = [(PNG, "library.bib", "This looks like an image"),
             (b"", "empty.bib", "The file is empty."),
             (LIBRARY + b" " * MAX_FILE_BYTES, "big.bib", "The file is larger than 5 MB")]
    for data, name, said in cases:
        answer = _upload(client, manage, data, name)
        assert answer.status_code == 400, name
        page = _text(answer)
        assert said in page and "Nothing was changed" in page, name
        assert "Nothing was saved" not in page  # the settings form had no mistake
        assert 'aria-invalid="true"' in _section(page)
    # No file chosen at all.
    answer = client.post(f"{manage}/library", data={"csrf_token": csrf_token(client, manage),
                                                   "library": _file(b"", "")})
    assert answer.status_code == 400 and "Choose a file first" in _text(answer)
    answer = client.post(f"{manage}/library", data={"csrf_token": csrf_token(client, manage)})
    assert answer.status_code == 400
    assert _titles(_shelf(engine, "reader@example.org")) == before
    assert _stored(engine) == (1, 2)


def test_the_author_identifier_is_saved_with_the_settings(
        client: FlaskClient, web_settings: Settings, engine: Engine) -> None:
    manage = _reader(client, web_settings, "reader@example.org")

    def save(**fields: str):  # type: ignore[no-untyped-def]
        return client.post(manage, data={"csrf_token": csrf_token(client, manage),
                                         "topics": ["llm"], "frequency": "daily",
                                         "max_papers": "10", **fields})

    assert save(arxiv_author="https://orcid.org/0000-0002-1825-0097").status_code == 303
    assert _author(engine, "reader@example.org") == "0000-0002-1825-0097"
    page = _text(client.get(manage))
    assert 'value="0000-0002-1825-0097"' in page
    assert "arXiv's feed for 0000-0002-1825-0097 is read within the hour" in page

    # The sweep has read the feed: the page says when, and what it gave.
    reader_id = _reader_id(engine, "reader@example.org")
    with db.transaction(engine) as session:
        library_store.store_author_papers(session, reader_id, [
            ("2401.00001", "Our First Paper"), ("2402.00002", "Our Second Paper")])
        prefs = session.get(Preferences, reader_id)
        assert prefs is not None
        prefs.author_fetched_at = datetime(2026, 9, 24, 6, 0, tzinfo=UTC)
    page = _text(client.get(manage))
    assert "arXiv's feed for 0000-0002-1825-0097 was read on Sep 24, 2026: 2 papers." in page
    own = _section(page)
    assert "From your arXiv feed (0000-0002-1825-0097)" in own
    assert '<a href="https://arxiv.org/abs/2401.00001" rel="noopener noreferrer">' in own

    # A form without the field (an older page) keeps it; a mistake keeps it and says so.
    assert save().status_code == 303
    assert _author(engine, "reader@example.org") == "0000-0002-1825-0097"
    refused = save(arxiv_author="not an id at all")
    assert refused.status_code == 400
    page = _text(refused)
    assert "Nothing was saved" in page and 'value="not an id at all"' in page
    assert _author(engine, "reader@example.org") == "0000-0002-1825-0097"
    # A new identifier drops the old feed's papers; emptied, there is none.
    assert save(arxiv_author="grapa_j_1").status_code == 303
    shelf = _shelf(engine, "reader@example.org")
    assert shelf.author == "grapa_j_1" and shelf.entries == ()
    assert save(arxiv_author="").status_code == 303
    assert _author(engine, "reader@example.org") is None


def test_a_long_library_is_listed_a_page_at_a_time(
        client: FlaskClient, web_settings: Settings, engine: Engine) -> None:
    count = OWN_PAPERS_PAGE + 120
    big = "".join(f"@article{{p{i},\n  title = {{Paper Number {i:04d}}},\n"
                  f"  eprint = {{2401.{i:05d}}}\n}}\n" for i in range(1, count + 1))
    manage = _reader(client, web_settings, "reader@example.org")
    assert _upload(client, manage, big.encode()).status_code == 303
    own = _section(_text(client.get(manage)))
    assert own.count('name="entry"') == OWN_PAPERS_PAGE
    assert f"Papers 1 to {OWN_PAPERS_PAGE} of {count}." in own
    assert "Next page: 120 more papers" in own
    assert f"Paper Number {OWN_PAPERS_PAGE:04d}" in own
    assert f"Paper Number {OWN_PAPERS_PAGE + 1:04d}" not in own
    assert f"?papers={OWN_PAPERS_PAGE}#own-papers" in own
    rest = _section(_text(client.get(f"{manage}?papers={OWN_PAPERS_PAGE}")))
    assert rest.count('name="entry"') == 120
    assert f"Paper Number {count:04d}" in rest and "Previous 500" in rest
    # A page number that makes no sense shows the first page.
    for odd in ("-3", "abc", "99999999"):
        page = _section(_text(client.get(f"{manage}?papers={odd}")))
        assert page.count('name="entry"') == OWN_PAPERS_PAGE, odd


def test_a_library_of_megabytes_comes_through_both_forms(
        client: FlaskClient, web_settings: Settings, engine: Engine) -> None:
    """A Zotero export with abstracts runs to megabytes: 2,000 entries of 2 KB (4 MB). The
    multipart decoder holds a file part's chunks to the form's memory limit too, which at
    the app's 64 KB refused every file over about 64 KB."""
    abstract = " ".join(["Segmentation of organs in abdominal computed tomography."] * 34)
    big = "\n".join(f"@article{{p{i}, title={{Imaging Paper {i}}}, abstract={{{abstract}}}}}"
                     for i in range(1, 2001)).encode()
    assert 3_500_000 < len(big) < MAX_FILE_BYTES
    assert subscribe(client, "new@example.org", library=_file(big)).status_code == 200
    manage = _reader(client, web_settings, "reader@example.org")
    assert _upload(client, manage, big).status_code == 303
    with Session(engine) as session:
        uploads = session.exec(select(LibraryUpload)).all()
    assert sorted(u.report["entries"] for u in uploads) == [2000, 2000]


def test_another_reader_s_entries_cannot_be_touched(
        client: FlaskClient, web_settings: Settings, engine: Engine) -> None:
    mine = _reader(client, web_settings, "me@example.org", library=_file(LIBRARY))
    _reader(client, web_settings, "them@example.org", library=_file(OTHER_LIBRARY))
    theirs = list(_entry_ids(_shelf(engine, "them@example.org")).values())

    answer = _drop(client, mine, theirs)
    assert answer.status_code == 303  # nothing of mine named: nothing changes
    assert not any(e.dropped for e in _shelf(engine, "them@example.org").entries)
    assert not any(e.dropped for e in _shelf(engine, "me@example.org").entries)

    for junk in (["1; DROP TABLE library_entries"], ["-1"], ["1.5"], ["9" * 40], [""]):
        assert _drop(client, mine, junk).status_code == 400, junk
    assert _stored(engine) == (2, 4)


def test_forged_links_and_missing_form_tokens_change_nothing(
        client: FlaskClient, web_settings: Settings, engine: Engine) -> None:
    manage = _reader(client, web_settings, "reader@example.org", library=_file(LIBRARY))
    ids = list(_entry_ids(_shelf(engine, "reader@example.org")).values())
    token = session_form_token(client)
    forged = manage[:-3] + ("abc" if not manage.endswith("abc") else "xyz")
    for path, data in ((f"{forged}/library", {"library": _file(OTHER_LIBRARY)}),
                       (f"{forged}/library/remove", {}),
                       (f"{forged}/library/drop", {"entry": [str(i) for i in ids]}),
                       ("/manage/not-a-token/library/drop", {"entry": [str(ids[0])]}),
                       ("/manage/not-a-token/library/drop", {})):
        answer = client.post(path, data={"csrf_token": token, **data})
        assert answer.status_code == 404, path
        assert "This link is not valid" in _text(answer), path
    assert client.get(forged).status_code == 404
    # The form token is needed, multipart or not.
    assert client.post(f"{manage}/library", data={"library": _file(OTHER_LIBRARY)}
                       ).status_code == 400
    assert client.post(f"{manage}/library/remove").status_code == 400
    assert client.post(f"{manage}/library/drop", data={"entry": str(ids[0])}).status_code == 400
    shelf = _shelf(engine, "reader@example.org")
    assert _titles(shelf) == ["Attention Is All You Need",
                              "A Study of Sparse Attention in Practice"]
    assert not any(e.dropped for e in shelf.entries)


# ---------------------------------------------------------------- in a browser, with axe


@pytest.mark.parametrize("width,height", [(1280, 900), (390, 844)], ids=["desktop", "phone"])
def test_own_papers_in_a_browser_have_no_serious_accessibility_violation(
        tmp_path: Path, width: int, height: int) -> None:
    """The manage page with an author feed, a library, a dropped paper and a report of the
    skipped; its upload refused and accepted; the sign-up with a bad identifier and an
    image for a library. Chromium sends the files, so the form token and the raised limit
    are those a reader's browser meets."""
    from tests.web.test_web_accessibility import Walk

    with served(tmp_path) as (site, pages):
        engine = db.make_engine(site.database_url)
        try:
            with db.transaction(engine) as session:
                reader = subs.find_by_email(session, READER)
                assert reader is not None and reader.id is not None
                library_store.set_author(session, subs.preferences_of(session, reader),
                                         "grapa_j_1")
                library_store.store_author_papers(session, reader.id,
                                                  [("2401.00001", "Our First Paper")])
                subs.preferences_of(session, reader).author_fetched_at = datetime.now(UTC)
                library_store.import_file(session, reader.id, parse_library(LIBRARY),
                                          "zotero.bib")
                session.flush()
                first = session.exec(select(LibraryEntry).where(
                    LibraryEntry.source == library_store.LIBRARY)).first()
                assert first is not None and first.id is not None
                library_store.drop(session, reader.id, [first.id])
        finally:
            engine.dispose()

        with axe_context(width, height) as context:
            walk = Walk(context.new_page(), site.base_url)
            page = walk.page
            walk.open("manage, own papers", pages.manage)
            assert page.get_by_role("checkbox", name="Attention Is All You Need").is_visible()

            page.set_input_files("#library", files=[
                {"name": "picture.bib", "mimeType": "application/x-bibtex", "buffer": PNG}])
            page.get_by_role("button", name="Replace my library").click()
            page.get_by_text("This looks like an image").wait_for()
            walk.check("manage, a refused library")

            page.set_input_files("#library", files=[
                {"name": "export.ris", "mimeType": "application/x-research-info-systems",
                 "buffer": OTHER_LIBRARY}])
            page.get_by_role("button", name="Replace my library").click()
            page.get_by_text("Library saved.").wait_for()
            walk.check("manage, library replaced")
            assert page.get_by_role("checkbox", name="Graph Networks for Tide Prediction"
                                    ).is_visible()

            walk.open("front page, to sign up with a library", "/")
            page.get_by_label("Email address").fill("someone@example.org")
            page.get_by_label("Theory").check()
            page.get_by_text("Tell us what you want to read").click()
            page.get_by_label("Your arXiv author identifier or ORCID iD").fill("Grapa, J.")
            page.get_by_label("Your reference library").set_input_files(files=[
                {"name": "picture.bib", "mimeType": "application/x-bibtex", "buffer": PNG}])
            page.get_by_role("button", name="Subscribe").click()
            page.get_by_text("Choose the file again").wait_for()
            walk.check("sign-up, a bad identifier and library")

    violations = {name: found for name, found in walk.found.items() if found}
    assert not violations, "\n".join(f"{name}: {line}" for name, found in violations.items()
                                     for line in found)
