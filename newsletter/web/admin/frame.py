"""The admin site's frame: every page under /admin is for a signed-in operator only.

A page joins the admin site by being a route on `blueprint`; it is then protected without
doing anything. Before any of its views runs:

- until an operator account exists (`newsletter admin add`), every /admin URL is a 404:
  there is no admin site to find;
- a request without a live operator session (the `pw_admin` cookie, checked against the
  server-side session in newsletter/admin/accounts.py) is sent to /admin/login, whatever
  its method, and no view runs; a GET comes back to its page after sign-in;
- a form post must carry the session's own CSRF token as well as the site-wide one
  (newsletter/web/origin.py, which also checks the Origin over https). The login form,
  which has no session yet, is checked by the site-wide one alone; it is not exempt.
  Two tokens, because they bind a form to different things: the site-wide one to the
  browser's cookie session, which outlives a sign-out; the admin one to the server-side
  session, so a form rendered before a sign-out, or for another operator, is refused.

The contract the admin pages build on:

- `current_operator() -> str`: the signed-in operator's address;
- `db() -> Session`: the request's database session. It commits after the view
  when the answer is not an error (status below 400) and rolls back otherwise, so an
  action refused with an error page leaves nothing behind, its audit row included;
- `act(action, target, detail="")`: records an audit row for the current operator in that
  session (newsletter/admin/audit.py says how to name a target: never a reader's address);
- `now()`: the time the admin site works with (tests move it);
- in templates: extend "admin/base.html", fill `{% block admin_content %}` (and
  `{% block title %}`); put `{{ admin_csrf_field() }}` inside every form that posts;
- the navigation links the pages that exist among the endpoints `admin.overview` (the
  page after sign-in, /admin), `admin.subscribers`, `admin.editions`, `admin.cards`,
  `admin.feeds` and `admin.audit`.

The session cookie is HttpOnly, SameSite=Strict, Secure when BASE_URL is https, limited to
/admin, and lasts as long as the browser session; the server ends the session sooner
(accounts.IDLE_TIMEOUT, accounts.LIFETIME). Every admin answer is `Cache-Control: no-store`.
"""

from __future__ import annotations

import hmac
from datetime import UTC, datetime
from urllib.parse import urlsplit

from flask import Blueprint, Response, abort, current_app, g, redirect, request, url_for
from flask_wtf.csrf import CSRFError, generate_csrf
from markupsafe import Markup, escape
from sqlmodel import Session

from newsletter.admin import accounts, audit
from newsletter.readers.links import MAX_ROW_ID
from newsletter.web.common import no_store, services

blueprint = Blueprint("admin", __name__, url_prefix="/admin")

COOKIE = "pw_admin"
CSRF_FIELD = "admin_csrf"
# What a visitor without a session may reach (an account must still exist).
_OPEN = frozenset({"admin.login"})
NAV = (("Overview", "admin.overview"), ("Subscribers", "admin.subscribers"),
       ("Editions", "admin.editions"), ("Cards", "admin.cards"), ("Feeds", "admin.feeds"),
       ("Audit log", "admin.audit"))


def now() -> datetime:
    return datetime.now(UTC)


def db() -> Session:
    if "admin_db" not in g:
        g.admin_db = Session(services().engine, expire_on_commit=False)
    return g.admin_db


def row_id(value: int) -> int:
    """A row id from an admin URL; 404 for one no 32-bit id column can hold (it must not
    reach the driver)."""
    if not 0 < value <= MAX_ROW_ID:
        abort(404)
    return value


def current_operator() -> str:
    return g.admin_signed.operator


def act(action: str, target: str, detail: str = "") -> None:
    audit.record(db(), current_operator(), action, target, detail, at=now())


def cookie_options() -> dict[str, object]:
    return {"path": blueprint.url_prefix, "httponly": True, "samesite": "Strict",
            "secure": services().settings.base_url.startswith("https://")}


def back_to(target: str | None) -> str:
    """Where to go after sign-in: the admin page asked for, or the overview."""
    if target:
        parts = urlsplit(target)
        if (not parts.scheme and not parts.netloc and "\\" not in target
                and (parts.path == "/admin" or parts.path.startswith("/admin/"))):
            return target
    return url_for("admin.overview")


@blueprint.before_app_request
def _no_site_without_operators() -> None:
    # App-wide, so that an /admin address with no route, or not this method, is a 404 too.
    path, prefix = request.path, blueprint.url_prefix or ""
    if (path == prefix or path.startswith(f"{prefix}/")) and not accounts.any_exist(db()):
        abort(404)


@blueprint.before_request
def _guard() -> Response | None:
    if request.endpoint in _OPEN:
        return None
    signed = accounts.session_for(db(), request.cookies.get(COOKIE), now())
    if signed is None:
        wanted = request.full_path.rstrip("?") if request.method == "GET" else None
        response = redirect(url_for("admin.login", next=wanted), 303)
        if COOKIE in request.cookies:
            response.delete_cookie(COOKIE, **cookie_options())  # type: ignore[arg-type]
        return response
    g.admin_signed = signed
    if request.method in current_app.config["WTF_CSRF_METHODS"]:
        sent = request.form.get(CSRF_FIELD, "")
        if not hmac.compare_digest(sent.encode(), signed.csrf_token.encode()):
            raise CSRFError("the admin session's form token is missing or wrong")
    return None


@blueprint.after_request
def _finish(response: Response) -> Response:
    session = g.get("admin_db")
    if session is not None:
        if response.status_code < 400:
            session.commit()
        else:
            session.rollback()
    return no_store(response)


@blueprint.teardown_app_request
def _close(_exc: BaseException | None) -> None:
    session = g.pop("admin_db", None)
    if session is not None:
        session.close()


@blueprint.app_template_global()
def admin_csrf_field() -> Markup:
    """The hidden inputs a form of the admin site posts: the site-wide token, and the
    admin session's own once signed in."""
    fields = [("csrf_token", generate_csrf())]
    signed = g.get("admin_signed")
    if signed is not None:
        fields.append((CSRF_FIELD, signed.csrf_token))
    return Markup("".join(f'<input type="hidden" name="{name}" value="{escape(value)}">'
                          for name, value in fields))


@blueprint.context_processor
def _frame() -> dict[str, object]:
    signed = g.get("admin_signed")
    links = [(label, url_for(endpoint), endpoint == request.endpoint) for label, endpoint in NAV
             if endpoint in current_app.view_functions]
    return {"admin_operator": signed.operator if signed else None, "admin_nav": links}
