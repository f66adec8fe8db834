"""/admin/subscribers: find readers, read one reader's history, act on them, and see the
digest they would get next.

Every action is a POST from the reader's page, recorded in the audit log under the
reader's row id (never their address), and answered with a redirect back to the page
and a line saying what happened. An action that does not apply (unsuppressing an address
that is not suppressed, a confirmation mail for a confirmed reader) is answered 409 and
changes nothing.

The preview shows the next digest rendered by the mail's own template, from the same
choice of papers as the send (`delivery.preview`), in a sandboxed frame. It must not hand
the operator the reader's subscription: its Manage and Unsubscribe lead to the page that
says those links are in the email, and its rating links carry no token (they open the
"link not valid" page). An operator who clicks around the preview changes nothing.
"""

from __future__ import annotations

from flask import Response, abort, flash, redirect, render_template, request, url_for

from newsletter.admin import actions, lookups
from newsletter.topics.taxonomy import current
from newsletter.web.admin import frame
from newsletter.web.common import mail_html_policy, services


def target(subscriber_id: int) -> str:
    return f"subscriber:{subscriber_id}"


@frame.blueprint.get("/subscribers", endpoint="subscribers")
def search() -> str:
    text = request.args.get("q", "").strip()[:254]
    status = request.args.get("status", "")
    topic = request.args.get("topic", "")
    if status not in ("", *lookups.SEARCH_STATUSES) or topic not in ("", *current().slugs):
        abort(400)
    found = lookups.search_readers(frame.db(), text, status, topic,
                                 request.args.get("page", 1, type=int) or 1)
    return render_template("admin/subscribers.html", page=found, q=text, status=status,
                           topic=topic, statuses=lookups.SEARCH_STATUSES, topics=current().topics)


@frame.blueprint.get("/subscribers/<int:subscriber_id>", endpoint="subscriber")
def history(subscriber_id: int) -> str:
    found = lookups.reader_history(frame.db(), frame.row_id(subscriber_id))
    if found is None:
        abort(404)
    return render_template("admin/subscriber.html", history=found, topic_names={
        t.slug: t.name for t in current().topics})


def _refused(subscriber_id: int, reason: str) -> tuple[str, int]:
    return render_template("admin/refused.html", reason=reason,
                           back=url_for("admin.subscriber", subscriber_id=subscriber_id)), 409


def _done(subscriber_id: int, message: str) -> Response:
    flash(message, "done")
    return redirect(url_for("admin.subscriber", subscriber_id=subscriber_id), 303)


@frame.blueprint.post("/subscribers/<int:subscriber_id>/suppress", endpoint="suppress")
def suppress(subscriber_id: int) -> Response | tuple[str, int]:
    try:
        new = actions.suppress(frame.db(), frame.row_id(subscriber_id), frame.now())
    except LookupError:
        abort(404)
    if not new:
        return _refused(subscriber_id, "This address is already suppressed.")
    frame.act("subscriber-suppress", target(subscriber_id))
    return _done(subscriber_id, "Suppressed: this address gets no more mail.")


@frame.blueprint.post("/subscribers/<int:subscriber_id>/unsuppress", endpoint="unsuppress")
def unsuppress(subscriber_id: int) -> Response | tuple[str, int]:
    try:
        status = actions.unsuppress(frame.db(), frame.row_id(subscriber_id), frame.now())
    except LookupError:
        abort(404)
    except actions.Refused as refused:
        return _refused(subscriber_id, f"Nothing changed: {refused}.")
    frame.act("subscriber-unsuppress", target(subscriber_id), f"status now {status}")
    return _done(subscriber_id, f"Suppression lifted; the reader is {status}.")


@frame.blueprint.post("/subscribers/<int:subscriber_id>/delete", endpoint="erase")
def erase(subscriber_id: int) -> Response:
    if request.form.get("confirm") != "yes":
        abort(400)  # the form's checkbox says the operator means it
    try:
        actions.erase(frame.db(), frame.row_id(subscriber_id), services().limits)
    except LookupError:
        abort(404)
    frame.act("subscriber-delete", target(subscriber_id))
    flash(f"Subscriber #{subscriber_id} and everything held about them are deleted.", "done")
    return redirect(url_for("admin.subscribers"), 303)


@frame.blueprint.post("/subscribers/<int:subscriber_id>/resend-confirmation",
                endpoint="resend_confirmation")
def resend_confirmation(subscriber_id: int) -> Response | tuple[str, int]:
    try:
        job = actions.resend_confirmation(frame.db(), frame.row_id(subscriber_id), frame.now())
    except LookupError:
        abort(404)
    except actions.Refused as refused:
        return _refused(subscriber_id, f"No confirmation mail sent: {refused}.")
    frame.act("subscriber-resend-confirmation", target(subscriber_id))
    # The mail names the new link's nonce: it may go only once that is stored.
    frame.db().commit()
    services().mail.put(job)
    return _done(subscriber_id, "A new confirmation mail is on its way; the earlier link "
                                "no longer works.")


def _preview(subscriber_id: int) -> lookups.ReaderPreview:
    svc = services()
    try:
        return lookups.reader_preview(svc.engine, svc.settings, frame.row_id(subscriber_id),
                                      frame.now().date())
    except LookupError:
        abort(404)


@frame.blueprint.get("/subscribers/<int:subscriber_id>/preview", endpoint="preview")
def preview(subscriber_id: int) -> str:
    return render_template("admin/preview.html", preview=_preview(subscriber_id),
                           subscriber_id=subscriber_id)


@frame.blueprint.get("/subscribers/<int:subscriber_id>/preview.html", endpoint="preview_html")
def preview_html(subscriber_id: int) -> Response:
    found = _preview(subscriber_id)
    if found.digest is None:
        abort(404)
    response = Response(found.digest.html, mimetype="text/html")
    response.headers["Content-Security-Policy"] = mail_html_policy(framed=True)
    response.headers["X-Frame-Options"] = "SAMEORIGIN"
    return response
