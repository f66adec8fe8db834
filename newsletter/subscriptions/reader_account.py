"""A reader's account, reached by the signed link in every mail: the manage page (choices,
interests, ratings, tracking), re-subscribing, export and deletion, and unsubscribing.

Like the sign-up flows (subscriptions/signup.py), each function is one thing a reader does,
in one transaction; Flask views call exactly one of these. A link that is malformed, forged
or names a deleted reader raises BadLink or LinkInvalid, which the site shows as a page.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from sqlmodel import Session

from newsletter.db import transaction
from newsletter.i18n import gettext as _
from newsletter.readers import reader_input
from newsletter.readers import subscriber as subs
from newsletter.readers.reader_input import WEEKDAYS, Client, InvalidInput, SendTime
from newsletter.readers.tables import Subscriber
from newsletter.relevance import learn
from newsletter.relevance.library import store as library_store
from newsletter.subscriptions import privacy
from newsletter.subscriptions.services import Services, link_holder, managed, utcnow


@dataclass(frozen=True)
class Account:
    """What the manage page shows."""

    email: str
    status: str
    topics: tuple[str, ...]
    frequency: str
    include_keywords: tuple[str, ...]
    exclude_keywords: tuple[str, ...]
    authors: tuple[str, ...]
    max_papers: int
    include_revised: bool
    unsubscribe_token: str
    interests: learn.Interests
    ratings: tuple[learn.RatedPaper, ...]
    tracking: bool = True  # False: the reader asked not to have opens and clicks tracked
    # When the digest comes: theirs, or the operator's default.
    time_zone: str = "UTC"
    send_hour: int = 7
    send_weekday: str = "mon"
    language: str = "en"
    # What they brought: their author identifier and feed, their library file's entries.
    own: library_store.Shelf | None = None


def _account(svc: Services, session: Session, row: Subscriber) -> Account:
    prefs = subs.preferences_of(session, row)
    assert row.id is not None
    return Account(row.email, row.status, tuple(prefs.topics), prefs.frequency,
                   tuple(prefs.include_keywords), tuple(prefs.exclude_keywords),
                   tuple(prefs.authors), prefs.max_papers, prefs.include_revised,
                   svc.links.unsubscribe_token(link_holder(row)),
                   learn.interests_of(session, row.id), tuple(learn.ratings_of(session, row.id)),
                   prefs.tracking,
                   prefs.time_zone or svc.settings.default_time_zone,
                   svc.settings.default_send_hour if prefs.send_hour is None else prefs.send_hour,
                   svc.settings.default_weekday if prefs.send_weekday is None
                   else WEEKDAYS[prefs.send_weekday],
                   prefs.language or "en",
                   library_store.shelf_of(session, row.id))


def account(svc: Services, token: str) -> Account:
    """The manage page's subscriber. Raises BadLink or LinkInvalid."""
    with Session(svc.engine) as session:
        return _account(svc, session, managed(svc, session, token))


@dataclass(frozen=True)
class PreferenceForm:
    topics: Sequence[str]
    frequency: str | None
    include_keywords: str
    exclude_keywords: str
    authors: str
    max_papers: str | None
    include_revised: bool
    # None: the form had no such field (an older page), and the stored value stays.
    description: str | None = None
    liked_papers: str | None = None
    # Whether opens and clicks may be tracked; None keeps the stored choice.
    tracking: bool | None = None
    # When the digest comes; None keeps the stored choice.
    send_time: SendTime | None = None
    # The language of cards, pages and mail; None keeps the stored choice.
    language: str | None = None
    # Their arXiv author identifier or ORCID iD ("" clears it); None keeps the stored one.
    arxiv_author: str | None = None


def save_preferences(svc: Services, token: str, form: PreferenceForm) -> Account:
    """Save the manage form: preferences, and the reader's interests, from which their
    model is trained again (liked papers we lack are fetched from arXiv first).

    Raises BadLink, LinkInvalid, or InvalidInput naming every bad field (nothing changed).
    """
    values = reader_input.parse_preferences(form.topics, form.frequency, form.include_keywords,
                                    form.exclude_keywords, form.authors, form.max_papers,
                                    form.include_revised, form.description,
                                    form.liked_papers or "", form.send_time or SendTime(),
                                    form.language, svc.settings.card_languages,
                                    arxiv_author=form.arxiv_author)
    with transaction(svc.engine) as session:
        row = managed(svc, session, token)
        assert row.id is not None
        if form.send_time is None:
            kept = subs.preferences_of(session, row)
            values = replace(values, time_zone=kept.time_zone, send_hour=kept.send_hour,
                             send_weekday=kept.send_weekday)
        if form.language is None:
            values = replace(values, language=subs.preferences_of(session, row).language)
        prefs = subs.update_preferences(session, row, values, utcnow())
        if form.tracking is not None:
            prefs.tracking = form.tracking
        interests = form.description is not None or form.liked_papers is not None
        if form.arxiv_author is not None:
            # set_interests below retrains: once is enough.
            learn.set_author(session, row.id, values.arxiv_author, settings=svc.settings,
                             retraining=not interests)
        if interests:
            kept = learn.interests_of(session, row.id)
            learn.set_interests(
                session, row.id,
                kept.description if form.description is None else values.description,
                kept.liked if form.liked_papers is None else values.liked_papers,
                settings=svc.settings)
        return _account(svc, session, row)


def change_rating(svc: Services, token: str, rating: str) -> None:
    """A rating changed or removed from the manage page: `ARXIV_ID=up|down|clear`, as
    `newsletter rate` takes it. Raises BadLink, LinkInvalid or InvalidInput."""
    with transaction(svc.engine) as session:
        row = managed(svc, session, token)
        assert row.id is not None
        try:
            [(arxiv_id, value)] = learn.parse_ratings([rating]).items()
        except ValueError:
            raise InvalidInput({"rating": _("That is not a rating of a paper.")}) from None
        try:
            paper_id = learn.papers_named(session, [arxiv_id])[arxiv_id]
        except learn.UnknownPaper:
            raise InvalidInput({"rating": _("That paper is not here.")}) from None
        learn.rate(session, row.id, paper_id, value, settings=svc.settings)


def resubscribe(svc: Services, token: str, client: Client) -> Account:
    with transaction(svc.engine) as session:
        row = managed(svc, session, token)
        subs.resubscribe(session, row, client, utcnow())
        return _account(svc, session, row)


def export(svc: Services, token: str) -> dict[str, Any]:
    with Session(svc.engine) as session:
        return privacy.export(session, managed(svc, session, token))


def delete(svc: Services, token: str) -> str:
    """Erase the subscriber the link names; returns the address, for the goodbye page."""
    with transaction(svc.engine) as session:
        row = managed(svc, session, token)
        email = row.email
        privacy.erase(session, row, svc.limits)
    return email


@dataclass(frozen=True)
class Unsubscribing:
    email: str
    status: str
    manage_token: str


def _unsubscribing(svc: Services, row: Subscriber) -> Unsubscribing:
    return Unsubscribing(row.email, row.status, svc.links.manage_token(link_holder(row)))


def unsubscribe_page(svc: Services, token: str) -> Unsubscribing:
    """Who an unsubscribe link is for; changes nothing. Raises BadLink or LinkInvalid."""
    holder = svc.links.read_unsubscribe(token)
    with Session(svc.engine) as session:
        return _unsubscribing(svc, subs.holder(session, holder.subscriber_id, holder.link_key))


def unsubscribe(svc: Services, token: str, client: Client | None = None) -> Unsubscribing:
    """Stop the digests. Idempotent. Raises BadLink or LinkInvalid."""
    holder = svc.links.read_unsubscribe(token)
    with transaction(svc.engine) as session:
        row = subs.holder(session, holder.subscriber_id, holder.link_key)
        subs.unsubscribe(session, row, client, utcnow())
        return _unsubscribing(svc, row)
