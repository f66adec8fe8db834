"""The language a reader chose, found from the signed link they followed.

A reader's own pages (confirm, manage, unsubscribe, rate) speak the language they chose,
whatever their browser says (web/locale.py). The link is checked as the page's own domain
call checks it (its signature, and the row's link key or confirmation nonce), so a forged
or outdated link learns nothing of anyone's language: it is then the visitor's page.
A sign-up waiting for its confirmation speaks the language it asked for.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Engine
from sqlmodel import Session

from newsletter.readers import subscriber as subs
from newsletter.readers.links import BadLink, Links
from newsletter.readers.tables import Preferences, Subscriber


def _link_check(links: Links, kind: str, token: str
                ) -> tuple[int, Callable[[Subscriber], bool]]:
    """The reader a link names, and what their row must hold for the link to be theirs.
    Raises BadLink."""
    if kind == "confirm":
        confirming = links.read_confirm(token)

        def nonce_matches(row: Subscriber) -> bool:
            return row.confirm_nonce == confirming.nonce
        return confirming.subscriber_id, nonce_matches
    if kind == "rate":
        rating = links.read_rate(token)

        def signed_for(row: Subscriber) -> bool:
            try:
                links.verify_rate(rating, row.link_key)
            except BadLink:
                return False
            return True
        return rating.subscriber_id, signed_for
    read = links.read_unsubscribe if kind == "unsubscribe" else links.read_manage
    holder = read(token)

    def key_matches(row: Subscriber) -> bool:
        return row.link_key == holder.link_key
    return holder.subscriber_id, key_matches


def of_link(links: Links, engine: Engine, kind: str, token: str) -> str | None:
    """The language the reader this link names chose; None when they chose none, or the
    link is not theirs."""
    try:
        subscriber_id, checks = _link_check(links, kind, token)
    except BadLink:
        return None
    with Session(engine) as session:
        row = session.get(Subscriber, subscriber_id)
        if row is None or not checks(row):
            return None
        asked = subs.requested_choices(row) if kind == "confirm" else None
        prefs = session.get(Preferences, subscriber_id)
        return ((asked.language if asked is not None else None)
                or (prefs.language if prefs is not None else None))
