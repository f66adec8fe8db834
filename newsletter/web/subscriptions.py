"""Sign up, confirm, manage, unsubscribe. Token errors become pages in create_app."""

from __future__ import annotations

import json

from flask import Blueprint, Response, abort, redirect, render_template, request, url_for

from newsletter import delivery, i18n
from newsletter.readers.reader_input import InvalidInput, SendTime
from newsletter.relevance.library import files as library_files
from newsletter.subscriptions import own_papers, reader_account
from newsletter.subscriptions import signup as flows
from newsletter.topics.taxonomy import current
from newsletter.web import locale
from newsletter.web.common import client, mail_html_policy, no_store, send_time, services

blueprint = Blueprint("subscriptions", __name__)
blueprint.after_request(no_store)

ONE_CLICK = "List-Unsubscribe=One-Click"

# The forms that carry a reader's library file (files.MAX_FILE_BYTES) read that much, and
# room for their other fields, when they come as multipart/form-data; every other form, and
# these sent url-encoded (read into memory whole), stay under the app's small FORM_LIMIT.
# Only the body grows: a file part is spooled (in memory, then to a temporary file), while
# each text field keeps MAX_FORM_MEMORY_SIZE. A bigger body is a 413 before it is read.
LIBRARY_FORM_LIMIT = library_files.MAX_FILE_BYTES + 64 * 1024
LIBRARY_FIELD_LIMIT = 512 * 1024
MAX_FILE_MB = library_files.MAX_FILE_BYTES // 2**20
LIBRARY_FORMS = frozenset({"subscriptions.subscribe", "subscriptions.upload_library"})
# A library's entries are listed this many to a page: 3,000 rows would make it unusable.
OWN_PAPERS_PAGE = 500
# What the own-papers forms say once done (?own=...), like saved=1 for the settings.
OWN_NOTICES = frozenset({"uploaded", "removed", "dropped", "kept"})


def library_form_limit() -> None:
    """Before any hook reads the form (the CSRF check does): the body limit of the forms
    that take a library file. Registered on the app in create_app."""
    if request.endpoint in LIBRARY_FORMS and request.mimetype == "multipart/form-data":
        request.max_content_length = LIBRARY_FORM_LIMIT
        # Werkzeug's multipart decoder (3.1) holds each 64 KB chunk read, plus what it
        # has not parsed yet, to max_form_memory_size, file parts included: at the app's
        # 64 KB every file over about 64 KB was a 413. Text fields stay checked by their
        # parsers (a description is 500 characters at most).
        request.max_form_memory_size = LIBRARY_FIELD_LIMIT


def _library_file() -> own_papers.LibraryFile | None:
    """The library file the form sent, or None when none was chosen: an empty file input
    still sends a part, with no file name and no bytes."""
    upload = request.files.get("library")
    if upload is None:
        return None
    data = upload.read()
    if not upload.filename and not data:
        return None
    return own_papers.LibraryFile(upload.filename, data)


@blueprint.post("/subscribe")
def subscribe():  # type: ignore[no-untyped-def]
    form = request.form
    topics = form.getlist("topics")
    library = _library_file()
    try:
        flows.sign_up(services(), form.get("email", ""), topics, form.get("frequency"),
                      form.get("website", ""), client(), form.get("description"),
                      form.get("liked_papers", ""), send_time(), language=form.get("language"),
                      arxiv_author=form.get("arxiv_author"), library=library)
    except InvalidInput as exc:
        # A browser never fills a file input back in: the page says which file to choose again.
        values = {"email": form.get("email", ""), "topics": topics,
                  "frequency": form.get("frequency", "daily"),
                  "description": form.get("description", ""),
                  "liked_papers": form.get("liked_papers", ""),
                  "arxiv_author": form.get("arxiv_author", ""),
                  "library_sent": (library.filename or "library") if library else "",
                  "language": form.get("language"), **_send_time_values()}
        return render_template("subscribe.html", topics=current().topics, form=values,
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
        language=form.get("language"), arxiv_author=form.get("arxiv_author"),
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
            "language": account.language,
            "arxiv_author": (account.own.author or "") if account.own else ""}


def _submitted_values() -> dict[str, object]:
    # What the reader typed comes back to them, so one bad field costs no retyping.
    form = _preference_form()
    return {"topics": form.topics, "frequency": form.frequency,
            "include_keywords": form.include_keywords,
            "exclude_keywords": form.exclude_keywords, "authors": form.authors,
            "max_papers": form.max_papers, "include_revised": form.include_revised,
            "description": form.description or "", "liked_papers": form.liked_papers or "",
            "no_tracking": form.tracking is False, "language": form.language,
            "arxiv_author": form.arxiv_author or "", **_send_time_values()}


def _manage_page(account: reader_account.Account, token: str, *,
                 values: dict[str, object] | None = None,
                 errors: dict[str, str] | None = None,
                 library_errors: dict[str, str] | None = None) -> str:
    own_notice = request.args.get("own")
    return render_template(
        "manage.html", account=account, token=token, topics=current().topics,
        values=values if values is not None else _account_values(account),
        errors=errors or {}, library_errors=library_errors or {},
        saved=not errors and request.args.get("saved") == "1",
        rated=not errors and request.args.get("rated") == "1",
        own_notice=own_notice if own_notice in OWN_NOTICES else None,
        own_start=max(0, request.args.get("papers", 0, type=int)),
        own_page=OWN_PAPERS_PAGE, reason_said=library_files.reason_said,
        max_file_mb=MAX_FILE_MB)


def _back_to_own_papers(token: str, notice: str):  # type: ignore[no-untyped-def]
    # A GET of the page at the section, as after saving the settings; the target is built
    # from our own route, never from request input.
    return redirect(url_for("subscriptions.manage", token=token, own=notice,
                            _anchor="own-papers"), code=303)


@blueprint.get("/manage/<token>")
def manage(token: str):  # type: ignore[no-untyped-def]
    locale.as_reader("manage", token)
    return _manage_page(reader_account.account(services(), token), token)


@blueprint.post("/manage/<token>")
def save(token: str):  # type: ignore[no-untyped-def]
    # Before the form is read: its mistakes are told in the reader's language.
    locale.as_reader("manage", token)
    try:
        reader_account.save_preferences(services(), token, _preference_form())
    except InvalidInput as exc:
        account = reader_account.account(services(), token)
        return _manage_page(account, token, values=_submitted_values(), errors=exc.errors), 400
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


@blueprint.post("/manage/<token>/library")
def upload_library(token: str):  # type: ignore[no-untyped-def]
    """A library file replacing the reader's (multipart; its limit: library_form_limit)."""
    locale.as_reader("manage", token)
    try:
        own_papers.upload_library(services(), token, _library_file())
    except InvalidInput as exc:
        account = reader_account.account(services(), token)
        return _manage_page(account, token, library_errors=exc.errors), 400
    return _back_to_own_papers(token, "uploaded")


@blueprint.post("/manage/<token>/library/remove")
def remove_library(token: str):  # type: ignore[no-untyped-def]
    locale.as_reader("manage", token)
    own_papers.remove_library(services(), token)
    return _back_to_own_papers(token, "removed")


@blueprint.post("/manage/<token>/library/drop")
def drop_own_papers(token: str):  # type: ignore[no-untyped-def]
    """The checked entries dropped, or brought back with keep=1; only the reader's own
    change (another reader's entry id changes nothing)."""
    locale.as_reader("manage", token)
    keep = request.form.get("keep") == "1"
    entries = request.form.getlist("entry")
    try:
        own_papers.drop_entries(services(), token, entries, dropped=not keep)
    except own_papers.NotEntries:
        abort(400)  # no page of ours sends that
    except InvalidInput as exc:
        account = reader_account.account(services(), token)
        return _manage_page(account, token, library_errors=exc.errors), 400
    return _back_to_own_papers(token, "kept" if keep else "dropped")


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
