"""Signing in and out of the admin site.

The login form answers the same for an unknown address and a wrong password (403), and
with a 429 page while sign-in is throttled for the account or the network
(newsletter/admin/accounts.py). Its outcome is committed whatever the answer's status:
a failed attempt is what the throttle counts, and the audit log keeps it, as it keeps a
throttled one.
"""

from __future__ import annotations

from flask import Response, make_response, redirect, render_template, request, url_for

from newsletter.admin import accounts
from newsletter.web.admin import frame
from newsletter.web.common import services

_STATUS = {accounts.Outcome.REFUSED: 403, accounts.Outcome.THROTTLED: 429}


@frame.blueprint.route("/login", methods=["GET", "POST"])
def login() -> Response | tuple[str, int] | str:
    wanted = request.values.get("next", "")
    if request.method == "GET":
        return render_template("admin/login.html", next=wanted)
    email = request.form.get("email", "")
    session = frame.db()
    result = accounts.sign_in(session, email, request.form.get("password", ""),
                              request.remote_addr, services().pseudonyms, frame.now())
    session.commit()
    if result.outcome is not accounts.Outcome.SIGNED_IN:
        page = render_template("admin/login.html", next=wanted, email=email,
                               outcome=result.outcome.name.lower(),
                               window=int(accounts.FAILURE_WINDOW.total_seconds() // 60))
        return page, _STATUS[result.outcome]
    response = make_response(redirect(frame.back_to(wanted), 303))
    response.set_cookie(frame.COOKIE, result.token or "",
                        **frame.cookie_options())  # type: ignore[arg-type]
    return response


@frame.blueprint.post("/logout")
def logout() -> Response:
    accounts.sign_out(frame.db(), request.cookies.get(frame.COOKIE, ""), frame.now())
    response = make_response(redirect(url_for("admin.login"), 303))
    response.delete_cookie(frame.COOKIE, **frame.cookie_options())  # type: ignore[arg-type]
    return response
