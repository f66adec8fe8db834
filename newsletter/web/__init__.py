"""The Flask app: the public site, the subscription and rating pages, the SendGrid webhook.

Production: `gunicorn 'newsletter.web:create_app()'`. Development: `newsletter serve`.
"""

from __future__ import annotations

import logging
from datetime import date

from flask import Flask, Response, render_template, request
from flask_wtf.csrf import CSRFError
from sqlalchemy import Engine
from werkzeug.exceptions import HTTPException

from newsletter import db, i18n
from newsletter.config import Settings, load_settings
from newsletter.mail.senders import Sender
from newsletter.readers.links import BadLink, ExpiredLink, signing_key
from newsletter.readers.subscriber import LinkInvalid
from newsletter.relevance.embedders import space_for
from newsletter.subscriptions.services import Services
from newsletter.topics import in_use
from newsletter.web import admin, locale, ratings, site, subscriptions, unavailable, webhooks
from newsletter.web.common import N_, SERVICES, language_choices, send_time_choices
from newsletter.web.origin import REFERRER_POLICY, OriginCheckedCSRF
from newsletter.web.proxy import TrustedProxies, networks

log = logging.getLogger(__name__)

FORM_LIMIT = 64 * 1024

# Paper text comes from feeds: no inline script or style may run, whatever it contains.
CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'none'; "
       "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")


def create_app(settings: Settings | None = None, *, engine: Engine | None = None,
               sender: Sender | None = None) -> Flask:
    settings = settings or load_settings()
    if engine is None:
        engine = db.engine_for(settings.database_url)
    key = signing_key(settings, engine)
    # The topics the form offers, checked against the topics readers chose.
    taxonomy = in_use.prepare(engine, settings)
    # Ratings rank in the vector space: a local model is checked and named now, once.
    space_for(settings)
    app = Flask(__name__)
    # A doubled slash is a 404, not a redirect: no request can make us send a reader elsewhere.
    app.url_map.merge_slashes = False
    https = settings.base_url.startswith("https://")
    app.config.update(
        SECRET_KEY=key,
        # Forms are small; the webhook view raises its own limit for SendGrid's batches,
        # and the forms that take a library file theirs (subscriptions.library_form_limit).
        MAX_CONTENT_LENGTH=FORM_LIMIT,
        MAX_FORM_MEMORY_SIZE=FORM_LIMIT,
        MAX_FORM_PARTS=200,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=https,
        # A manage page left open for an afternoon must still save.
        WTF_CSRF_TIME_LIMIT=None,
    )
    app.wsgi_app = TrustedProxies(  # type: ignore[method-assign]
        app.wsgi_app, settings.trusted_proxies, networks(settings.trusted_proxy_networks))

    app.extensions[SERVICES] = Services.build(settings, engine, sender, key)

    # Before the CSRF check, which reads the form: a library file's form reads more.
    app.before_request(subscriptions.library_form_limit)
    csrf = OriginCheckedCSRF(app, settings.base_url)
    # One-click unsubscribe comes from mail providers with no cookie and no form token
    # (RFC 8058), and SendGrid signs its own requests.
    csrf.exempt(subscriptions.unsubscribe)
    csrf.exempt(webhooks.blueprint)
    csrf.origin_only("subscriptions.subscribe")
    # The language switch, like the sign-up, acts for nobody in particular: it sets a
    # cookie and redirects to our own page, so the cacheable pages carry no form token.
    csrf.origin_only("locale.switch")

    locale.install(app)
    app.register_blueprint(site.blueprint)
    app.register_blueprint(subscriptions.blueprint)
    app.register_blueprint(ratings.blueprint)
    app.register_blueprint(webhooks.blueprint)
    app.register_blueprint(admin.blueprint)
    _register_errors(app)
    app.after_request(_security_headers(https))
    app.add_template_filter(_long_date, "long_date")
    # The installation's field ("machine learning"), in the page's language.
    app.jinja_env.globals.update(dev_mode=settings.dev_mode,
                                 field=lambda: taxonomy.shown_name)
    app.context_processor(lambda: {"outbox_enabled": site.outbox_open()})
    # Weekday and region names are in the page's language: built for each page.
    app.context_processor(lambda: {"send_time_choices": send_time_choices(settings),
                                   "languages": language_choices(settings)})
    return app


def _long_date(value: date) -> str:
    # English keeps the site's own style ("Thursday, 24 September 2026"); other languages
    # write a day as their CLDR data says ("jeudi 24 septembre 2026").
    if i18n.current() == i18n.SOURCE_LANGUAGE:
        return i18n.format_date(value, "EEEE, d MMMM y")
    return i18n.format_date(value, "full")


def _security_headers(https: bool):  # type: ignore[no-untyped-def]
    def add(response: Response) -> Response:
        headers = response.headers
        headers.setdefault("Content-Security-Policy", CSP)
        headers.setdefault("X-Content-Type-Options", "nosniff")
        headers.setdefault("X-Frame-Options", "DENY")
        # Manage and unsubscribe URLs carry tokens: never hand them to another site, yet
        # let our own forms say where they come from (newsletter/web/origin.py).
        headers.setdefault("Referrer-Policy", REFERRER_POLICY)
        headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
        headers.setdefault("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
        if https:
            headers.setdefault("Strict-Transport-Security", "max-age=31536000")
        return response

    return add


_MESSAGES = {
    400: (N_("That request did not make sense"),
          N_("Something in the form was missing or malformed.")),
    404: (N_("Not found"), N_("There is nothing at this address.")),
    405: (N_("Not allowed"), N_("This page does not accept that kind of request.")),
    413: (N_("Too large"), N_("That was more data than this form accepts.")),
    429: (N_("Slow down"),
          N_("Too many sign-ups from your network. Wait a few minutes and try again.")),
}


def error_page(status: int, title: str, message: str) -> tuple[str, int]:
    # The language switch leads to the front page: an error page names nothing of the
    # address that led to it, so a forged link's answer is the same whoever it names.
    return render_template("error.html", title=title, message=message,
                           language_back="/"), status


def _register_errors(app: Flask) -> None:
    _ = i18n.gettext

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):  # type: ignore[no-untyped-def]
        status = exc.code or 500
        if request.path.startswith("/webhooks/") or request.path == "/healthz":
            return {"error": _MESSAGES.get(status, (exc.name,))[0]}, status
        if (status == 413 and request.max_content_length == subscriptions.LIBRARY_FORM_LIMIT
                and (request.content_length or 0) > subscriptions.LIBRARY_FORM_LIMIT):
            # A form that takes a library file (subscriptions.library_form_limit), too big.
            return error_page(413, _("That file is too large"), _(
                "A reference library can be at most %(size)s MB. Go back and choose a "
                "smaller export: a collection rather than the whole library, or without "
                "attachments and notes.", size=subscriptions.MAX_FILE_MB))
        if status in _MESSAGES:
            title, message = (_(text) for text in _MESSAGES[status])
        else:
            title, message = exc.name, exc.description or ""
        return error_page(status, title, message)

    @app.errorhandler(CSRFError)
    def csrf_error(exc: CSRFError):  # type: ignore[no-untyped-def]
        # The reader sees one page; the log says which check refused the form.
        log.warning("form refused on %s: %s", request.path, exc.description)
        return error_page(400, _("This form has expired"),
                          _("The form was sent without its security token, or from another "
                            "site. Go back, reload the page and try again."))

    @app.errorhandler(ExpiredLink)
    def expired(_exc: ExpiredLink):  # type: ignore[no-untyped-def]
        return error_page(410, _("This link has expired"),
                          _("Confirmation links work for a few days. Subscribe again on the "
                            "front page and we will send you a fresh one."))

    @app.errorhandler(BadLink)
    def bad_link(_exc: BadLink):  # type: ignore[no-untyped-def]
        return error_page(404, _("This link is not valid"),
                          _("It may have been cut short when it was copied. Open it again "
                            "from the email, or paste the whole address."))

    @app.errorhandler(LinkInvalid)
    def gone(_exc: LinkInvalid):  # type: ignore[no-untyped-def]
        return error_page(410, _("This link no longer works"),
                          _("It was already used, or the subscription it belongs to was "
                            "deleted. If you already confirmed, you are all set."))

    @app.errorhandler(Exception)
    def crash(exc: Exception):  # type: ignore[no-untyped-def]
        if unavailable.database_unavailable(exc):
            return unavailable.answer(exc)
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_page(500, _("Something went wrong on our side"),
                          _("The error was logged. Please try again in a moment."))
