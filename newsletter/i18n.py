"""The reader's language: which one is in force, and the words, plurals and dates in it.

Paperwire is written in English; other languages come from gettext catalogs in
`newsletter/translations/<lang>/LC_MESSAGES/`, one per domain:

- `site`: every page a reader sees, their form's errors, the topics' names;
- `mail`: every mail a reader gets (confirmation, welcome, already subscribed, digest), subjects,
  the digest's headline and "why" lines.

The `.po` files are the source, kept in the repository; the `.mo` files are compiled from
them when the package is built (setup.py) or set up (`make`), so a wheel carries them.
At run time the two domains of a language are one catalog: a word is translated the same
wherever it appears.

The language in force is a context variable: the site sets it for each request
(web/locale.py), a mail's builder for each reader (`using`). Code anywhere below simply
calls `gettext`; there is no second way of translating. A language with no catalog (a
card language such as `de`, offered for cards only) speaks English.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import date, datetime
from functools import cache, lru_cache
from gettext import NullTranslations
from pathlib import Path
from typing import Any

from babel import Locale, UnknownLocaleError
from babel.dates import format_date as babel_format_date
from babel.dates import format_datetime as babel_format_datetime
from babel.support import LazyProxy, Translations

SOURCE_LANGUAGE = "en"
DOMAINS = ("site", "mail")
CATALOG_DIR = Path(__file__).resolve().parent / "translations"

_current: ContextVar[str] = ContextVar("paperwire_language", default=SOURCE_LANGUAGE)


class CatalogMissing(RuntimeError):
    """A language's catalogs exist as .po but were never compiled (see the module doc)."""


@cache
def interface_languages() -> tuple[str, ...]:
    """The languages the site and the mails speak: English, and each with a catalog.
    Read once per process: asked for every reader of a send."""
    found = sorted(p.name for p in CATALOG_DIR.iterdir()
                   if (p / "LC_MESSAGES").is_dir()) if CATALOG_DIR.is_dir() else []
    return (SOURCE_LANGUAGE, *(lang for lang in found if lang != SOURCE_LANGUAGE))


def speaks(language: str | None) -> str:
    """The interface language for a reader's language: itself if it has a catalog,
    English otherwise."""
    return language if language in interface_languages() else SOURCE_LANGUAGE


@lru_cache(maxsize=16)
def catalog(language: str) -> NullTranslations:
    """Both domains of one interface language, as one catalog."""
    if language == SOURCE_LANGUAGE or language not in interface_languages():
        return NullTranslations()
    merged: Translations | None = None
    for domain in DOMAINS:
        folder = CATALOG_DIR / language / "LC_MESSAGES"
        if not (folder / f"{domain}.mo").is_file():
            if (folder / f"{domain}.po").is_file():
                raise CatalogMissing(
                    f"{folder / domain}.po is not compiled: run `make` (or pip install .), "
                    "which compiles the catalogs")
            continue
        loaded = Translations.load(str(CATALOG_DIR), [language], domain=domain)
        merged = loaded if merged is None else merged.merge(loaded)
    return merged if merged is not None else NullTranslations()


def current() -> str:
    return _current.get()


@contextmanager
def using(language: str | None) -> Iterator[str]:
    """Speak this language (or English, if it has no catalog) inside the block."""
    spoken = speaks(language)
    token = _current.set(spoken)
    try:
        yield spoken
    finally:
        _current.reset(token)


def set_language(language: str | None) -> str:
    """Speak this language from now on in this context (a request); returns the one in force."""
    spoken = speaks(language)
    _current.set(spoken)
    return spoken


def gettext(message: str, **values: Any) -> str:
    """`message` in the current language, `%(name)s` placeholders filled from `values`."""
    text = catalog(current()).gettext(message)
    return text % values if values else text


def ngettext(singular: str, plural: str, n: int, **values: Any) -> str:
    """The plural form for `n` (French has "0 article", English "0 papers"); `%(num)d` is n."""
    text = catalog(current()).ngettext(singular, plural, n)
    return text % {"num": n, **values}


def pgettext(context: str, message: str, **values: Any) -> str:
    text = catalog(current()).pgettext(context, message)
    return text % values if values else text


def lazy_gettext(message: str, **values: Any) -> LazyProxy:
    """Translated when shown, not when defined: for strings made at import time."""
    return LazyProxy(gettext, message, enable_cache=False, **values)


_ = gettext


def locale(language: str | None = None) -> Locale:
    try:
        return Locale.parse(language or current())
    except (UnknownLocaleError, ValueError):
        return Locale.parse(SOURCE_LANGUAGE)


def format_date(day: date, format: str = "long", language: str | None = None) -> str:
    """A date as the language writes it: "Monday, 7 December 2026" needs no other code.

    `format` is Babel's: "short", "medium", "long", "full", or a CLDR pattern ("EEE d MMM").
    """
    return babel_format_date(day, format=format, locale=locale(language))


def format_datetime(moment: datetime, format: str = "medium", language: str | None = None,
                    tzinfo: Any = None) -> str:
    return babel_format_datetime(moment, format=format, tzinfo=tzinfo, locale=locale(language))


def language_name(language: str, in_language: str | None = None) -> str:
    """"français" for fr in French, "French" in English; the code itself if Babel has none."""
    try:
        name = Locale.parse(language).get_display_name(locale(in_language))
    except (UnknownLocaleError, ValueError):
        return language
    return name[:1].upper() + name[1:] if name else language
