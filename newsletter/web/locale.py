"""The language each page speaks (newsletter/i18n.py holds the words).

In order, the first that names a language with a catalog wins:

1. on a reader's own pages (reached by the signed link in their mail: confirm, manage,
   unsubscribe, rate, delete), the language they chose and we stored (`as_reader`);
2. the visitor's explicit switch, remembered in the `lang` cookie (`/language`);
3. the browser's Accept-Language, best first;
4. English.

The operator's admin pages stay English. A reader who never chose a language has none
stored, so their own pages negotiate like any other. A language offered for cards only
(`de`) speaks English (`i18n.speaks`).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, Flask, Response, redirect, request

from newsletter import i18n
from newsletter.subscriptions import reader_language
from newsletter.web.common import services

blueprint = Blueprint("locale", __name__)

COOKIE = "lang"
# A year: a visitor who chose a language should not have to choose it again next month.
COOKIE_AGE = 365 * 24 * 3600
# A hostile header may list thousands of languages; a person's browser lists a handful.
_MOST_ACCEPTED = 20
_MOST_NEXT = 2048


def _offered(value: str | None) -> str | None:
    """`value` if it names an interface language exactly, else None: a cookie is ours, and
    anything else in it (garbage, a path, a megabyte) is ignored."""
    if value and len(value) <= 16 and value in i18n.interface_languages():
        return value
    return None


def negotiated() -> str:
    """The browser's first acceptable language we speak, by its primary subtag.

    Not werkzeug's `best_match`: for "fr-CA,en;q=0.8" it answers "en", because it looks
    for exact matches over the whole list before it tries primary subtags, so a reader
    asking first for Canadian French would get English.
    """
    offered = i18n.interface_languages()
    # werkzeug keeps the values sorted by quality, best first, stable among equals.
    for value, quality in list(request.accept_languages)[:_MOST_ACCEPTED]:
        if quality <= 0:
            continue
        primary = value.replace("_", "-").split("-", 1)[0].lower()
        if primary in offered:
            return primary
    return i18n.SOURCE_LANGUAGE


def chosen() -> str:
    """The language of an anonymous page: the visitor's switch, else their browser's."""
    return _offered(request.cookies.get(COOKIE)) or negotiated()


def _choose() -> None:
    # The operator's desk stays English (its templates are not translated): a topic's name
    # there must not come out in the operator's browser language.
    blueprint = request.blueprint or ""
    if blueprint == "admin" or blueprint.startswith("admin."):
        i18n.set_language(i18n.SOURCE_LANGUAGE)
        return
    i18n.set_language(chosen())


def as_reader(kind: str, token: str) -> str:
    """Speak the language the reader a link names chose, if they chose one we speak; the
    language in force either way. `kind`: the link's, "confirm", "manage", "unsubscribe" or
    "rate". A link that does not check out changes nothing: the view's domain call refuses
    it, with its own page in the visitor's language."""
    svc = services()
    language = reader_language.of_link(svc.links, svc.engine, kind, token)
    return i18n.set_language(language) if language else i18n.current()


def same_site_path(target: str | None) -> str:
    """Where the switch may send the visitor back to: a path on this site, else "/".

    Refused: anything with a scheme or a host (https://evil.example, //evil.example), a
    backslash (browsers read /\\evil.example as //evil.example), control characters, and
    what is too long to be one of our addresses.
    """
    if not target or len(target) > _MOST_NEXT or "\\" in target:
        return "/"
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in target):
        return "/"
    try:
        parts = urlsplit(target)
    except ValueError:
        return "/"
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return "/"
    return target


def switch_back() -> str:
    """The page the switch returns to: this one, when a GET can show it again; a form's
    answer (a POST) goes back to its form's page, or the front page for the sign-up."""
    if request.method == "GET":
        return request.full_path.rstrip("?")
    if request.endpoint in (None, "subscriptions.subscribe", "locale.switch"):
        return "/"
    return request.path


@blueprint.post("/language")
def switch():  # type: ignore[no-untyped-def]
    """The switcher's buttons: remember the language, then back to the page (303)."""
    back = same_site_path(request.form.get("next"))
    response: Response = redirect(back, code=303)  # type: ignore[assignment]
    language = _offered(request.form.get("lang"))
    if language is not None:
        response.set_cookie(COOKIE, language, max_age=COOKIE_AGE, path="/", samesite="Lax",
                            httponly=True, secure=request.is_secure)
    return response


def vary(response: Response) -> Response:
    """A page differs by the browser's language and the switch's cookie: caches must keep
    one copy per language, not serve a French page to an English reader. (The stylesheet,
    the icons and the JSON answers are the same in every language.)"""
    if response.mimetype == "text/html":
        response.vary.add("Accept-Language")
        response.vary.add("Cookie")
    return response


# Jinja's newstyle gettext fills the placeholders itself, escaping each value: these hand it
# the bare translation (i18n.ngettext would fill %(num)d alone, and fail on any other name).
def _template_gettext(message: str) -> str:
    return i18n.catalog(i18n.current()).gettext(message)


def _template_ngettext(singular: str, plural: str, n: int) -> str:
    return i18n.catalog(i18n.current()).ngettext(singular, plural, n)


def _forget(_error: BaseException | None) -> None:
    i18n.set_language(None)


def install(app: Flask) -> None:
    """The language per request, the switch, and gettext in every template."""
    app.before_request(_choose)
    app.after_request(vary)
    # Back to English once the request is done: whatever this thread does next (a test, a
    # mail built outside a request) must not speak the last visitor's language.
    app.teardown_request(_forget)
    app.register_blueprint(blueprint)
    app.jinja_env.add_extension("jinja2.ext.i18n")
    app.jinja_env.install_gettext_callables(  # type: ignore[attr-defined]
        _template_gettext, _template_ngettext, newstyle=True)
    app.jinja_env.globals.update(
        current_language=i18n.current,
        interface_languages=i18n.interface_languages,
        switch_back=switch_back,
        language_name=i18n.language_name,
        format_date=i18n.format_date)
