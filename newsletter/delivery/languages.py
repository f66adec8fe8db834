"""A digest in its reader's language: the same papers, their cards' words translated.

What a reader gets is chosen in English, whatever language they read: the cards' topics
are slugs, keywords are matched against the authors' own title and abstract, and two
readers with the same interests must get the same papers. Only then is each pick's card
swapped for its translation (cards/translate.py: written once per paper and language),
or, lacking one, kept in English and marked `untranslated`, which the digest says.

A chunk's readers share their selections (digest.PaperIndex), and a selection in one
language is built once for all its readers: per chunk this costs one query per language
and one small object per paper and language.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

from sqlmodel import Session

from newsletter.cards.translation import CardWords, translations_for
from newsletter.delivery.sources import Reader
from newsletter.digest.selection import Candidate, Pick, Selection

ENGLISH = "en"


def translated(candidate: Candidate, language: str,
               translation: CardWords | None) -> Candidate:
    """A paper as a reader of `language` sees it: its translated key points, or the
    English ones marked as such. Titles and topics are never translated."""
    if language == ENGLISH:
        return candidate
    if translation is None:
        return replace(candidate, untranslated=True)
    return replace(candidate, key_points=tuple(translation.key_points), card_language=language)


class Translator:
    """One chunk's selections in their readers' languages, each built once."""

    def __init__(self, translations: Mapping[str, Mapping[int, CardWords]]) -> None:
        self._translations = translations
        self._papers: dict[tuple[int, str], Candidate] = {}
        # By the selection's identity: the chunk's list of (reader, selection) keeps every
        # selection alive while this is used.
        self._selections: dict[tuple[int, str], Selection] = {}

    def selection(self, selection: Selection, language: str) -> Selection:
        if language == ENGLISH:
            return selection
        key = (id(selection), language)
        found = self._selections.get(key)
        if found is None:
            picks = tuple(Pick(self._paper(p.candidate, language), p.score, p.reasons, p.named)
                          for p in selection.picks)
            found = self._selections[key] = replace(selection, picks=picks)
        return found

    def _paper(self, candidate: Candidate, language: str) -> Candidate:
        key = (candidate.paper_id, language)
        found = self._papers.get(key)
        if found is None:
            translation = self._translations.get(language, {}).get(candidate.paper_id)
            found = self._papers[key] = translated(candidate, language, translation)
        return found


def in_languages(session: Session, chosen: Sequence[tuple[Reader, Selection]]
                 ) -> list[tuple[Reader, Selection]]:
    """Each reader's selection in their language, the translations read once per language."""
    wanted: dict[str, set[int]] = {}
    for reader, selection in chosen:
        if reader.language != ENGLISH:
            wanted.setdefault(reader.language, set()).update(
                p.candidate.paper_id for p in selection.picks)
    if not wanted:
        return list(chosen)
    translator = Translator({language: translations_for(session, sorted(ids), language)
                             for language, ids in wanted.items()})
    return [(reader, translator.selection(selection, reader.language))
            for reader, selection in chosen]
