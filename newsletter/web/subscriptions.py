"""Sign up, confirm, manage, unsubscribe. Token errors become pages in create_app."""

from __future__ import annotations

import json

from flask import Blueprint, Response, abort, redirect, render_template, request, url_for

from newsletter import delivery, i18n
from newsletter.readers.reader_input import InvalidInput, SendTime
from newsletter.subscriptions import reader_account
from newsletter.subscriptions import signup as flows
from newsletter.taxonomy import TOPICS
from newsletter.web import locale
from newsletter.web.common import client, mail_html_policy, no_store, send_time, services

blueprint = Blueprint("subscriptions", __name__)
blueprint.after_request(no_store)

ONE_CLICK = "List-Unsubscribe=One-Click"


@blueprint.post("/subscribe")
def subscribe():  # type: ignore[no-untyped-def]
    form = request.form
    topics = form.getlist("topics")
    try:
        flows.sign_up(services(), form.get("email", ""), topics, form.get("frequency"),
                      form.get("website", ""), client(), form.get("description"),
                      form.get("liked_papers", ""), send_time(), language=form.get("language"))
    except InvalidInput as exc:
        values = {"email": form.get("email", ""), "topics": topics,
                  "frequency": form.get("frequency", "daily"),
                  "description": form.get("description", ""),
                  "liked_papers": form.get("liked_papers", ""),
                  "language": form.get("language"), **_send_time_values()}
        return render_template("subscribe.html", topics=TOPICS, form=values,
                               errors=exc.errors), 400
    except flows.TooManySignups:
        abort(429)
    # The same page, after the same work, whether the address is new, pending, confirmed
    # or suppressed: the mail, if any, leaves after this answer (subscriptions/mail_queue.py).
    return render_template("subscribed.html")


@blueprint.get("/confirm/<token>")
def confirm_page(token: str):  # type: ignore[no-untyped-def]
    locale.as_reader("confirm", token)
    pending = flows.confirmation_page(services(), token)
    return render_template("confirm.html", pending=pending, token=token)


@blueprint.post("/confirm/<token>")
def confirm(token: str):  # type: ignore[no-untyped-def]
    locale.as_reader("confirm", token)
    done = flows.confirm(services(), token, client())
    return render_template("confirmed.html", done=done)


def _preference_form() -> reader_account.PreferenceForm:
    form = request.form
    return reader_account.PreferenceForm(
        topics=form.getlist("topics"), frequency=form.get("frequency"),
        include_keywords=form.get("include_keywords", ""),
        exclude_keywords=form.get("exclude_keywords", ""), authors=form.get("authors", ""),
        max_papers=form.get("max_papers"), include_revised=form.get("include_revised") == "on",
        description=form.get("description"), liked_papers=form.get("liked_papers"),
        tracking=form.get("no_tracking") != "on", send_time=send_time(),
        language=form.get("language"),
    )


def _send_time_values() -> dict[str, object]:
    # What the reader chose comes back to them as they typed it; nothing chosen, the defaults.
    typed = send_time() or SendTime()
    return {"time_zone": typed.time_zone, "send_hour": typed.hour,
            "send_weekday": typed.weekday}


def _account_values(account: reader_account.Account) -> dict[str, object]:
    return {"topics": account.topics, "frequency": account.frequency,
            "include_keywords": "\n".join(account.include_keywords),
            "exclude_keywords": "\n".join(account.exclude_keywords),
            "authors": "\n".join(account.authors), "max_papers": account.max_papers,
            "include_revised": account.include_revised,
            "description": account.interests.description or "",
            "liked_papers": "\n".join(account.interests.liked),
            "no_tracking": not account.tracking, "time_zone": account.time_zone,
            "send_hour": account.send_hour, "send_weekday": account.send_weekday,
            "language": account.language}


def _submitted_values() -> dict[str, object]:
    # What the reader typed comes back to them, so one bad field costs no retyping.
    form = _preference_form()
    return {"topics": form.topics, "frequency": form.frequency,
            "include_keywords": form.include_keywords,
            "exclude_keywords": form.exclude_keywords, "authors": form.authors,
            "max_papers": form.max_papers, "include_revised": form.include_revised,
            "description": form.description or "", "liked_papers": form.liked_papers or "",
            "no_tracking": form.tracking is False, "language": form.language,
            **_send_time_values()}


@blueprint.get("/manage/<token>")
def manage(token: str):  # type: ignore[no-untyped-def]
    locale.as_reader("manage", token)
    account = reader_account.account(services(), token)
    return render_template("manage.html", account=account, token=token, topics=TOPICS,
                           values=_account_values(account), errors={},
                           saved=request.args.get("saved") == "1",
                           rated=request.args.get("rated") == "1")


@blueprint.post("/manage/<token>")
def save(token: str):  # type: ignore[no-untyped-def]
    # Before the form is read: its mistakes are told in the reader's language.
    locale.as_reader("manage", token)
    try:
        reader_account.save_preferences(services(), token, _preference_form())
    except InvalidInput as exc:
        account = reader_account.account(services(), token)
        return render_template("manage.html", account=account, token=token, topics=TOPICS,
                               values=_submitted_values(), errors=exc.errors,
                               saved=False, rated=False), 400
    # Back to the page as a GET, so reloading does not post the form again; the target is
    # built from our own route, never from request input.
    return redirect(url_for("subscriptions.manage", token=token, saved=1), code=303)


@blueprint.post("/manage/<token>/ratings")
def change_rating(token: str):  # type: ignore[no-untyped-def]
    locale.as_reader("manage", token)
    try:
        reader_account.change_rating(services(), token, request.form.get("rating", ""))
    except InvalidInput:
        abort(400)
    return redirect(url_for("subscriptions.manage", token=token, rated=1, _anchor="ratings"),
                    code=303)


@blueprint.post("/manage/<token>/resubscribe")
def resubscribe(token: str):  # type: ignore[no-untyped-def]
    reader_account.resubscribe(services(), token, client())
    return redirect(url_for("subscriptions.manage", token=token), code=303)


@blueprint.get("/manage/<token>/export")
def export(token: str):  # type: ignore[no-untyped-def]
    data = reader_account.export(services(), token)
    return Response(json.dumps(data, indent=2, ensure_ascii=False), mimetype="application/json",
                    headers={"Content-Disposition": 'attachment; filename="paperwire-data.json"'})


@blueprint.get("/manage/<token>/delete")
def delete_page(token: str):  # type: ignore[no-untyped-def]
    locale.as_reader("manage", token)
    account = reader_account.account(services(), token)
    return render_template("delete.html", account=account, token=token)


@blueprint.post("/manage/<token>/delete")
def delete(token: str):  # type: ignore[no-untyped-def]
    # Read while the reader still exists: the goodbye page is in their language.
    locale.as_reader("manage", token)
    email = reader_account.delete(services(), token)
    return render_template("deleted.html", email=email)


@blueprint.get("/unsubscribe/<token>")
def unsubscribe_page(token: str):  # type: ignore[no-untyped-def]
    locale.as_reader("unsubscribe", token)
    who = reader_account.unsubscribe_page(services(), token)
    return render_template("unsubscribe.html", who=who, token=token)


@blueprint.post("/unsubscribe/<token>")
def unsubscribe(token: str):  # type: ignore[no-untyped-def]
    """RFC 8058: no cookie, no form token, 200 and never a redirect."""
    locale.as_reader("unsubscribe", token)
    who = reader_account.unsubscribe(services(), token, client())
    if request.form.get("List-Unsubscribe") == "One-Click":
        return Response("You are unsubscribed.\n", mimetype="text/plain")
    return render_template("unsubscribed.html", who=who)


@blueprint.get(delivery.PERSONAL_LINKS_PATH)
def personal_links():  # type: ignore[no-untyped-def]
    _ = i18n.gettext
    return render_template(
        "error.html", title=_("Your links are in the email"),
        message=_("A digest opened in the browser leaves out the links to manage or end your "
                  "subscription, so that a forwarded address hands nobody your subscription. "
                  "Use the Manage topics and Unsubscribe links at the end of the email itself."))


@blueprint.get("/digest/<token>")
def digest(token: str):  # type: ignore[no-untyped-def]
    """"View in browser": the digest exactly as mailed, with the reader's own links."""
    app = services()
    html = delivery.digest_in_browser(app.engine, app.settings, app.links, token)
    response = Response(html, mimetype="text/html")
    response.headers["Content-Security-Policy"] = mail_html_policy(framed=False)
    return response
