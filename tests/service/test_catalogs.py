"""Every word a reader meets is translated: for each gettext domain (newsletter/i18n.py),
the messages the code and templates hold today, extracted as `make messages` extracts them
(babel-<domain>.cfg), each have a French translation in the repository's .po, not fuzzy,
with the same placeholders; and the .po holds little that nothing uses any more.

A page or a mail that gains a sentence without its translation fails here, not in front of
a French reader.
"""

from __future__ import annotations

import re
from functools import cache

import pytest
from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po

from newsletter import i18n
from tests.conftest import REPO

LANGUAGES = ("fr",)
# Entries the .po may keep that no code uses (a sentence just reworded, say): a handful.
MOST_UNUSED = 5
_PLACEHOLDER = re.compile(r"%\((\w+)\)[sd]")


# A message as gettext finds it: its context (pgettext) and its id, singular or
# (singular, plural).
Key = tuple[str | None, str | tuple[str, str]]

# Folders no babel-*.cfg pattern reaches, and which are big: walking them only costs time.
_NOT_SOURCE = {"tests", "outbox", "send-journal", "bench", "docs", "deploy", "node_modules"}


def _walked(path: str) -> bool:
    name = path.rstrip("/").rsplit("/", 1)[-1]
    return not (name.startswith((".", "_")) or name in _NOT_SOURCE
                or name.endswith(".egg-info"))


@cache
def _extracted(domain: str) -> frozenset[Key]:
    """The messages `make messages` extracts for `domain`, by the same mapping file."""
    with (REPO / f"babel-{domain}.cfg").open() as cfg:
        method_map, options_map = parse_mapping_cfg(cfg)
    found: set[Key] = set()
    for _filename, _lineno, message, _comments, context in extract_from_dir(
            REPO, method_map, options_map, directory_filter=_walked):
        found.add(_key(context, message))
    return frozenset(found)


def _catalog(domain: str, language: str) -> Catalog:
    path = i18n.CATALOG_DIR / language / "LC_MESSAGES" / f"{domain}.po"
    assert path.is_file(), f"{path} is missing"
    with path.open("rb") as po:
        return read_po(po, locale=language, domain=domain)


def _key(context: str | None, message_id: str | list[str] | tuple[str, ...]) -> Key:
    if isinstance(message_id, str):
        return context, message_id
    return context, (message_id[0], message_id[1])


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("domain", i18n.DOMAINS)
def test_every_message_is_translated(domain: str, language: str) -> None:
    wanted = _extracted(domain)
    assert wanted, f"babel-{domain}.cfg extracts nothing: is it still right?"
    catalog = _catalog(domain, language)
    held = {_key(m.context, m.id): m for m in catalog if m.id}

    untranslated = sorted(str(m) for m in wanted if m not in held)
    assert not untranslated, (f"{len(untranslated)} message(s) of the {domain} domain not "
                              f"in {language}/{domain}.po (run `make messages`, then "
                              f"translate):\n" + "\n".join(untranslated[:20]))
    problems: list[str] = []
    for context_and_id in sorted(wanted, key=str):
        message, key = held[context_and_id], context_and_id[1]
        strings = message.string if isinstance(message.string, tuple | list) else (
            message.string,)
        if message.fuzzy:
            problems.append(f"fuzzy: {key!r}")
        if not all(strings) or (isinstance(key, tuple) and len(strings) < 2):
            problems.append(f"no translation: {key!r}")
            continue
        # Each form names the same values as the English (a plural may leave out the count:
        # French "un article" for 1), so filling it in never raises KeyError.
        names = set(_PLACEHOLDER.findall(" ".join(key) if isinstance(key, tuple) else key))
        for text in strings:
            extra = set(_PLACEHOLDER.findall(text)) - names
            if extra:
                problems.append(f"{key!r}: the translation names {sorted(extra)}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("domain", i18n.DOMAINS)
def test_the_catalog_holds_little_nothing_uses(domain: str, language: str) -> None:
    catalog = _catalog(domain, language)
    unused = [m.id for m in catalog if m.id and _key(m.context, m.id) not in _extracted(domain)]
    leftovers = [*unused, *catalog.obsolete]
    assert len(leftovers) <= MOST_UNUSED, (
        f"{language}/{domain}.po keeps {len(leftovers)} entries nothing uses (`make "
        f"messages` marks them obsolete; delete them):\n" + "\n".join(map(str, leftovers)))
