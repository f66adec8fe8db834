"""The operator's topics: what a card's `topics` may hold and what readers pick from.

An installation's taxonomy is a TOML file, TAXONOMY_FILE; without one, the machine-learning
taxonomy shipped in `taxonomies/ml.toml` (which says how the file is written). A biology
one ships beside it (`taxonomies/biology.toml`). Everything that shows or checks a topic
asks `current()`: the sign-up form and the manage page, the LLM prompt and its JSON
schema, the offline tagger, the digest's pills and the admin charts.

Slugs are stable: preferences and cards store them. A renamed topic lists its old slugs in
`renamed_from`, and every stored slug is read through `Taxonomy.resolve`, so its readers
and cards follow it (`in_use.adopt_renames` also rewrites the rows once, at start). A topic
that readers still use and the file no longer names, old or new, is refused at start
(`in_use.check`): removing one silently would leave those readers with a digest of nothing.

Names and descriptions are English, the prompt's language; a reader sees them in their
language where the file gives a translation (`[topics.translations.fr]`), else in English.
Parsing is pure: `parse` takes the file's text and raises TaxonomyError naming what is wrong.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any

from newsletter import i18n
from newsletter.config import ConfigError, Settings

MAX_TOPICS = 3  # a card carries 1 to 3 topics, most relevant first
MAX_TAXONOMY_TOPICS = 100  # a sign-up form of more than this is not a choice
_SLUG = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,38}[a-z0-9])?$")
_LANGUAGE = re.compile(r"^[a-z]{2,3}(?:[-_][A-Za-z0-9]{2,8})?$")
_TOPIC_KEYS = {"slug", "name", "description", "categories", "keywords", "renamed_from",
               "translations"}
_FILE_KEYS = {"name", "fallback_topic", "topics", "translations"}
BUILT_IN = "ml"


class TaxonomyError(ConfigError):
    """The taxonomy file cannot be used; the message names the file and what to change."""


@dataclass(frozen=True)
class Topic:
    slug: str
    name: str  # English, as the LLM prompt has it
    description: str
    categories: tuple[str, ...] = ()
    keywords: tuple[str, ...] = ()
    renamed_from: tuple[str, ...] = ()
    # language -> (name, description)
    translations: Mapping[str, tuple[str, str]] = field(default_factory=dict, hash=False)

    @property
    def shown_name(self) -> str:
        """The name in the reader's language (English where the file has no translation)."""
        return self.translations.get(i18n.current(), (self.name, ""))[0]

    @property
    def shown_description(self) -> str:
        return self.translations.get(i18n.current(), ("", self.description))[1]


@dataclass(frozen=True, eq=False)  # one per file read: compared and cached by identity
class Taxonomy:
    topics: tuple[Topic, ...]
    fallback_topic: str
    name: str = ""  # the field, in English: "one paper in {name}" (the LLM prompt)
    origin: str = BUILT_IN  # the file it came from, for messages
    # language -> the field's name in it, for the site and mail
    name_translations: Mapping[str, str] = field(default_factory=dict, hash=False)

    @property
    def shown_name(self) -> str:
        """The field's name in the language in force ("machine learning" in English)."""
        return self.name_translations.get(i18n.current(), self.name) or "science"

    @cached_property
    def slugs(self) -> tuple[str, ...]:
        return tuple(t.slug for t in self.topics)

    @cached_property
    def by_slug(self) -> dict[str, Topic]:
        return {t.slug: t for t in self.topics}

    @cached_property
    def renames(self) -> dict[str, str]:
        """Old slug -> the topic that carries it on."""
        return {old: t.slug for t in self.topics for old in t.renamed_from}

    def resolve(self, slug: str) -> str | None:
        """The current slug for a stored one (itself, or its renamed topic), else None."""
        normal = str(slug).strip().lower().replace("_", "-").replace(" ", "-")
        if normal in self.by_slug:
            return normal
        return self.renames.get(normal)

    def known(self, slugs: Iterable[str]) -> list[str]:
        """The slugs that name a topic, as current slugs, first occurrence kept, in order."""
        seen: list[str] = []
        for raw in slugs:
            slug = self.resolve(raw)
            if slug is not None and slug not in seen:
                seen.append(slug)
        return seen

    def topic_name(self, slug: str) -> str:
        """The topic's name in the language in force (a slug we do not know, as it is)."""
        current = self.resolve(slug)
        return self.by_slug[current].shown_name if current else slug

    def prompt_listing(self) -> str:
        """The taxonomy as the prompt shows it: one `slug: Name - description` line each."""
        return "\n".join(f"- {t.slug}: {t.name} - {t.description}" for t in self.topics)


def _text(value: Any, where: str, key: str, *, limit: int) -> str:
    if not isinstance(value, str) or not value.strip():
        raise TaxonomyError(f"{where}: `{key}` must be a non-empty string")
    text = " ".join(value.split())
    if len(text) > limit:
        raise TaxonomyError(f"{where}: `{key}` is {len(text)} characters; keep it under "
                            f"{limit}")
    return text


def _strings(value: Any, where: str, key: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip()
                                              for v in value):
        raise TaxonomyError(f"{where}: `{key}` must be a list of non-empty strings")
    return tuple(dict.fromkeys(" ".join(v.split()) for v in value))


def _translations(value: Any, where: str) -> dict[str, tuple[str, str]]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise TaxonomyError(f"{where}: `translations` must be tables like "
                            "[topics.translations.fr] with a name and a description")
    shown: dict[str, tuple[str, str]] = {}
    for language, table in value.items():
        if not _LANGUAGE.match(language) or not isinstance(table, dict):
            raise TaxonomyError(f"{where}: translations.{language} is not a language "
                                "table (use a code like fr or pt-BR)")
        here = f"{where}, translations.{language}"
        unknown = set(table) - {"name", "description"}
        if unknown:
            raise TaxonomyError(f"{here}: unknown key {sorted(unknown)[0]!r}")
        shown[language] = (_text(table.get("name"), here, "name", limit=80),
                           _text(table.get("description"), here, "description", limit=400))
    return shown


def _topic(raw: Any, number: int) -> Topic:
    where = f"topic {number}"
    if not isinstance(raw, dict):
        raise TaxonomyError(f"{where}: each topic is a [[topics]] table")
    slug = raw.get("slug")
    if not isinstance(slug, str) or not _SLUG.match(slug):
        raise TaxonomyError(f"{where}: slug {slug!r} must be 1-40 lowercase letters, digits "
                            "or inner hyphens, like \"cell-biology\"")
    where = f"topic {slug!r}"
    unknown = set(raw) - _TOPIC_KEYS
    if unknown:
        raise TaxonomyError(f"{where}: unknown key {sorted(unknown)[0]!r} (a topic has "
                            f"{', '.join(sorted(_TOPIC_KEYS))})")
    renamed_from = _strings(raw.get("renamed_from"), where, "renamed_from")
    for old in renamed_from:
        if not _SLUG.match(old):
            raise TaxonomyError(f"{where}: renamed_from {old!r} is not a slug")
    keywords = tuple(k.lower() for k in _strings(raw.get("keywords"), where, "keywords"))
    return Topic(
        slug=slug,
        name=_text(raw.get("name"), where, "name", limit=80),
        description=_text(raw.get("description"), where, "description", limit=400),
        categories=_strings(raw.get("categories"), where, "categories"),
        keywords=keywords,
        renamed_from=renamed_from,
        translations=_translations(raw.get("translations"), where),
    )


def parse(text: str, origin: str = BUILT_IN) -> Taxonomy:
    """A taxonomy from a TOML file's text; TaxonomyError says what to fix, and where."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise TaxonomyError(f"TAXONOMY_FILE {origin}: not valid TOML: {exc}") from None
    try:
        unknown = set(data) - _FILE_KEYS
        if unknown:
            raise TaxonomyError(f"unknown key {sorted(unknown)[0]!r} at the top (a file "
                                f"has {', '.join(sorted(_FILE_KEYS))})")
        raw_topics = data.get("topics")
        if not isinstance(raw_topics, list) or not raw_topics:
            raise TaxonomyError("no topics: add [[topics]] tables with a slug, a name and "
                                "a description")
        if len(raw_topics) > MAX_TAXONOMY_TOPICS:
            raise TaxonomyError(f"{len(raw_topics)} topics; at most {MAX_TAXONOMY_TOPICS}")
        topics = tuple(_topic(raw, n) for n, raw in enumerate(raw_topics, 1))
        _check_slugs(topics)
        fallback = data.get("fallback_topic", topics[0].slug)
        if fallback not in {t.slug for t in topics}:
            raise TaxonomyError(f"fallback_topic {fallback!r} is not one of the topics")
        name = data.get("name", "")
        if not isinstance(name, str):
            raise TaxonomyError("`name` must be a string")
        names = _field_translations(data.get("translations"))
    except TaxonomyError as exc:
        raise TaxonomyError(f"TAXONOMY_FILE {origin}: {exc}") from None
    return Taxonomy(topics=topics, fallback_topic=fallback, name=" ".join(name.split()),
                    origin=origin, name_translations=names)


def _field_translations(value: Any) -> dict[str, str]:
    """[translations.fr] name = "..." at the top: the field's name in a language."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise TaxonomyError("`translations` at the top must be tables like [translations.fr]")
    names: dict[str, str] = {}
    for language, table in value.items():
        if not _LANGUAGE.match(language) or not isinstance(table, dict) or set(table) != {
                "name"}:
            raise TaxonomyError(f"translations.{language} must be a language table with "
                                "only a name")
        names[language] = _text(table["name"], f"translations.{language}", "name", limit=80)
    return names


def _check_slugs(topics: tuple[Topic, ...]) -> None:
    slugs = [t.slug for t in topics]
    for slug in slugs:
        if slugs.count(slug) > 1:
            raise TaxonomyError(f"two topics have the slug {slug!r}")
    claimed: dict[str, str] = {}
    for topic in topics:
        for old in topic.renamed_from:
            if old in slugs:
                raise TaxonomyError(f"topic {topic.slug!r} is renamed_from {old!r}, which is "
                                    "still a topic of its own: remove one of them")
            if old in claimed:
                raise TaxonomyError(f"{old!r} is in the renamed_from of both "
                                    f"{claimed[old]!r} and {topic.slug!r}: its readers "
                                    "can follow only one")
            claimed[old] = topic.slug


SHIPPED = ("ml", "biology")


def shipped_path(name: str) -> Path:
    """Where a shipped taxonomy file is (`newsletter topics example` prints it)."""
    if name not in SHIPPED:
        raise TaxonomyError(f"no shipped taxonomy {name!r}; there are {', '.join(SHIPPED)}")
    return Path(str(resources.files("newsletter.topics").joinpath(f"taxonomies/{name}.toml")))


def built_in(name: str = BUILT_IN) -> Taxonomy:
    """A taxonomy shipped with Paperwire: `ml` (the default) or `biology`."""
    text = shipped_path(name).read_text(encoding="utf-8")
    return parse(text, origin=f"built-in {name}.toml")


def load(path: Path) -> Taxonomy:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TaxonomyError(f"TAXONOMY_FILE {path}: cannot be read: {exc}") from None
    return parse(text, origin=str(path))


_loaded: dict[Path | None, Taxonomy] = {}
_installed: list[Taxonomy] = []


def for_settings(settings: Settings) -> Taxonomy:
    """The taxonomy these settings name: TAXONOMY_FILE, or the built-in ML one. Each file is
    read once per process: an edited file takes effect when the processes restart, which is
    also when `in_use.check` runs."""
    return _read(settings.taxonomy_file)


def _read(path: Path | None) -> Taxonomy:
    if path not in _loaded:
        _loaded[path] = built_in() if path is None else load(path)
    return _loaded[path]


def install(settings: Settings) -> Taxonomy:
    """Make these settings' taxonomy the process's (`current`): the site, the worker and
    each command do, as they start (`in_use.prepare`)."""
    taxonomy = for_settings(settings)
    _installed[:] = [taxonomy]
    return taxonomy


def current() -> Taxonomy:
    """The installation's taxonomy: what the process installed as it started, else the file
    TAXONOMY_FILE names (a script, a benchmark: no other setting needs to be valid for it).
    A digest asks it for topic names thousands of times."""
    if not _installed:
        named = os.environ.get("TAXONOMY_FILE", "").strip()
        _installed[:] = [_read(Path(named) if named else None)]
    return _installed[0]


def forget() -> None:
    """Read the files again, and install anew at the next `current()` (tests)."""
    _loaded.clear()
    _installed.clear()


# The questions most callers ask, of the installation's taxonomy.

def topic_name(slug: str) -> str:
    return current().topic_name(slug)


def known_topics(slugs: Iterable[str]) -> list[str]:
    return current().known(slugs)
