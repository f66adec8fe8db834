"""Rating links: "more like this" and "less like this" from a digest.

A GET shows the paper and one button (mail scanners open every link, and must rate
nothing); the button's POST rates. Token errors become pages in create_app: a link we did
not make is a 404, and so is one whose reader was deleted, with the same page (the MAC
covers the reader's link key, so the two cannot be told apart; answering them differently
would tell anyone which reader ids exist). A genuine link to a paper no longer here is a 410.
"""

from __future__ import annotations

from flask import Blueprint, render_template

from newsletter.subscriptions import rating
from newsletter.web import locale
from newsletter.web.common import no_store, services

blueprint = Blueprint("ratings", __name__)
blueprint.after_request(no_store)


@blueprint.get("/rate/<token>/<direction>")
def offer(token: str, direction: str):  # type: ignore[no-untyped-def]
    locale.as_reader("rate", token)
    shown = rating.offer(services(), token, direction)
    return render_template("rate.html", offer=shown, token=token)


@blueprint.post("/rate/<token>/<direction>")
def rate(token: str, direction: str):  # type: ignore[no-untyped-def]
    locale.as_reader("rate", token)
    rated = rating.rate(services(), token, direction)
    return render_template("rated.html", rated=rated, week_days=rating.SIMILAR_DAYS)
