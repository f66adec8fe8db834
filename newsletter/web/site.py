"""The public site: today's papers, a paper's page, the last days, health, dev outbox."""

from __future__ import annotations

import re
from datetime import date

from flask import Blueprint, abort, jsonify, make_response, render_template
from sqlmodel import Session

from newsletter import archive, mail, status
from newsletter.taxonomy import TOPICS
from newsletter.web.common import services

blueprint = Blueprint("site", __name__)

_ISO_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


@blueprint.get("/")
def index():  # type: ignore[no-untyped-def]
    with Session(services().engine) as session:
        today = archive.latest(session)
    return render_template("index.html", view=today, topics=TOPICS, form={}, errors={})


@blueprint.get("/papers/<path:key>")
def paper(key: str):  # type: ignore[no-untyped-def]
    with Session(services().engine) as session:
        found = archive.paper(session, key)
    if found is None:
        abort(404)
    return render_template("paper.html", paper=found)


@blueprint.get("/days/")
@blueprint.get("/days")
def days():  # type: ignore[no-untyped-def]
    with Session(services().engine) as session:
        recent = archive.recent_days(session)
    return render_template("days.html", days=recent)


@blueprint.get("/days/<value>")
def day(value: str):  # type: ignore[no-untyped-def]
    if not _ISO_DAY.fullmatch(value):
        abort(404)
    try:
        when = date.fromisoformat(value)
    except ValueError:
        abort(404)
    with Session(services().engine) as session:
        view = archive.day(session, when)
    return render_template("day.html", view=view)


@blueprint.get("/healthz")
def healthz():  # type: ignore[no-untyped-def]
    svc = services()
    body, code = status.health(svc.engine, svc.settings.redis_url)
    return jsonify(body), code


def _outbox_enabled() -> bool:
    settings = services().settings
    return settings.dev_mode and settings.mail_backend == "file"


@blueprint.get("/outbox")
def outbox():  # type: ignore[no-untyped-def]
    if not _outbox_enabled():
        abort(404)
    entries = mail.outbox_entries(services().settings.outbox_dir)
    return render_template("outbox.html", entries=entries)


@blueprint.get("/outbox/<name>")
def outbox_message(name: str):  # type: ignore[no-untyped-def]
    if not _outbox_enabled():
        abort(404)
    message = mail.read_outbox(services().settings.outbox_dir, name)
    if message is None:
        abort(404)
    return render_template("outbox_message.html", message=message,
                           links=mail.links_in(message.text))


@blueprint.get("/outbox/<name>/html")
def outbox_html(name: str):  # type: ignore[no-untyped-def]
    if not _outbox_enabled():
        abort(404)
    message = mail.read_outbox(services().settings.outbox_dir, name)
    if message is None or message.html is None:
        abort(404)
    response = make_response(message.html)
    response.headers["Content-Type"] = "text/html; charset=utf-8"
    # The email's own inline styles may apply, nothing else: no script, no remote fetch
    # but images, shown only inside our outbox page.
    response.headers["Content-Security-Policy"] = (
        "default-src 'none'; style-src 'unsafe-inline'; img-src data: https:; "
        "frame-ancestors 'self'; base-uri 'none'; form-action 'none'")
    response.headers["X-Frame-Options"] = "SAMEORIGIN"
    return response

