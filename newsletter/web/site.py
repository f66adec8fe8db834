"""The public site: today's papers (with the week's most read), a paper's page, the last
days, health, dev outbox.

The outbox viewer shows every mail with its signed links, so it opens only in dev mode
with the file backend, and only to a browser on this machine (never through a proxy).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import date

from flask import (
    Blueprint,
    abort,
    current_app,
    jsonify,
    make_response,
    render_template,
    request,
    send_from_directory,
)
from sqlmodel import Session

from newsletter import i18n
from newsletter.admin import status
from newsletter.cards import archive
from newsletter.delivery.ledger import today_utc
from newsletter.delivery.most_read import Audience, most_read
from newsletter.mail import senders
from newsletter.subscriptions import rating
from newsletter.topics.taxonomy import current
from newsletter.web import locale
from newsletter.web.common import from_loopback, mail_html_policy, services

blueprint = Blueprint("site", __name__)

_ISO_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
# The icon rarely changes, and browsers ask for it with every first visit.
FAVICON_TTL = 24 * 3600


# The landing page is the one everybody opens, and its papers change a few times a day
# (an ingest, then cards as they are written). It is the same page for every visitor (the
# sign-up form carries no per-visitor token: see web/origin.py), so each process renders
# it at most once every TODAY_TTL seconds and serves those bytes; proxies may keep it as
# long. bench/web.py measures why.
TODAY_TTL = 30
_TODAY = "paperwire.today"


@dataclass(frozen=True)
class _RenderedPage:
    html: str
    expires: float


def _landing_page() -> str:
    now = time.monotonic()
    # The dev-mode outbox link shows only to a browser on this machine: two versions, in
    # each language.
    key = (_TODAY, outbox_open(), i18n.current())
    cached: _RenderedPage | None = current_app.extensions.get(key)
    if cached is None or cached.expires <= now:
        svc = services()
        with Session(svc.engine) as session:
            view = archive.latest(session, language=i18n.current())
            # Counts across readers, naming nobody: the same page for everyone, cacheable.
            popular = most_read(session, today_utc(), Audience.of(svc.settings))
        html = render_template("index.html", view=view, most_read=popular, topics=current().topics,
                               form={}, errors={})
        cached = current_app.extensions[key] = _RenderedPage(html, now + TODAY_TTL)
    return cached.html


@blueprint.get("/")
def index():  # type: ignore[no-untyped-def]
    response = make_response(_landing_page())
    # Proxies may keep it as long, one copy per language (web/locale.py adds the Vary).
    response.headers["Cache-Control"] = f"public, max-age={TODAY_TTL}"
    return response


@blueprint.get("/papers/<path:key>")
def paper(key: str):  # type: ignore[no-untyped-def]
    """A paper's public page; opened from a digest with the reader's rating token for
    this paper (?rate=), it also has their "more like this" buttons."""
    token = request.args.get("rate")
    if token:
        # Opened from a reader's digest: the page speaks their language.
        locale.as_reader("rate", token)
    page = rating.paper_page(services(), key, token)
    if page is None:
        abort(404)
    response = make_response(render_template("paper.html", paper=page.paper,
                                             rating=page.rating))
    if token is not None:
        # The address holds a reader's token: keep it out of shared caches and history.
        response.headers["Cache-Control"] = "no-store"
    return response


@blueprint.get("/days/")
@blueprint.get("/days")
def days():  # type: ignore[no-untyped-def]
    """The days that have papers, newest first; ?before=YYYY-MM-DD pages to older ones."""
    before = _day_or_404(request.args["before"]) if "before" in request.args else None
    with Session(services().engine) as session:
        page = archive.days_with_papers(session, before)
    return render_template("days.html", page=page, before=before)


def _day_or_404(value: str) -> date:
    if not _ISO_DAY.fullmatch(value):
        abort(404)
    try:
        return date.fromisoformat(value)
    except ValueError:
        abort(404)


@blueprint.get("/days/<value>")
def day(value: str):  # type: ignore[no-untyped-def]
    when = _day_or_404(value)
    with Session(services().engine) as session:
        view = archive.day(session, when, language=i18n.current())
    return render_template("day.html", view=view)


@blueprint.get("/favicon.ico")
def favicon():  # type: ignore[no-untyped-def]
    """Browsers ask for /favicon.ico whatever a page links (feed readers and bookmarks
    too): the icon from static, where it is not a 404 in every log."""
    return send_from_directory(current_app.static_folder or "static", "favicon.ico",
                               mimetype="image/vnd.microsoft.icon", max_age=FAVICON_TTL)


@blueprint.get("/healthz")
def healthz():  # type: ignore[no-untyped-def]
    svc = services()
    body, code = status.health(svc.engine, svc.settings.redis_url)
    return jsonify(body), code


def outbox_open() -> bool:
    settings = services().settings
    return settings.dev_mode and settings.mail_backend == "file" and from_loopback()


@blueprint.get("/outbox")
def outbox():  # type: ignore[no-untyped-def]
    if not outbox_open():
        abort(404)
    entries = senders.outbox_entries(services().settings.outbox_dir)
    return render_template("outbox.html", entries=entries)


@blueprint.get("/outbox/<name>")
def outbox_message(name: str):  # type: ignore[no-untyped-def]
    if not outbox_open():
        abort(404)
    message = senders.read_outbox(services().settings.outbox_dir, name)
    if message is None:
        abort(404)
    return render_template("outbox_message.html", message=message,
                           links=senders.links_in(message.text))


@blueprint.get("/outbox/<name>/html")
def outbox_html(name: str):  # type: ignore[no-untyped-def]
    if not outbox_open():
        abort(404)
    message = senders.read_outbox(services().settings.outbox_dir, name)
    if message is None or message.html is None:
        abort(404)
    response = make_response(message.html)
    response.headers["Content-Type"] = "text/html; charset=utf-8"
    response.headers["Content-Security-Policy"] = mail_html_policy(framed=True)
    response.headers["X-Frame-Options"] = "SAMEORIGIN"
    return response

