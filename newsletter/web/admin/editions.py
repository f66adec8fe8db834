"""/admin/editions: every recent edition with its deliveries counted; one edition's failed
deliveries with their errors; and a retry of those, audited.

A retry puts the failed deliveries back to pending and queues them the way the scheduled
send does: chunks for the mail workers (newsletter/admin/actions.py). The page never sends
mail itself; without a broker, or when it does not answer, it says so. Readers who left
meanwhile are skipped, as in any send.
"""

from __future__ import annotations

from flask import Response, abort, flash, redirect, render_template, url_for

from newsletter.admin import actions, lookups
from newsletter.web.admin import frame
from newsletter.web.common import services


@frame.blueprint.get("/editions", endpoint="editions")
def listing() -> str:
    return render_template("admin/editions.html", editions=lookups.recent_editions(frame.db()))


@frame.blueprint.get("/editions/<int:edition_id>", endpoint="edition")
def detail(edition_id: int) -> str:
    found = lookups.edition_detail(frame.db(), frame.row_id(edition_id))
    if found is None:
        abort(404)
    return render_template("admin/edition.html", edition=found)


@frame.blueprint.post("/editions/<int:edition_id>/retry", endpoint="retry_failed")
def retry_failed(edition_id: int) -> Response | tuple[str, int]:
    back = url_for("admin.edition", edition_id=edition_id)
    try:
        retry = actions.retry_failed(frame.db(), frame.row_id(edition_id))
    except LookupError:
        abort(404)
    except actions.Refused as refused:
        return render_template("admin/refused.html", reason=f"Nothing to retry: {refused}.",
                               back=back), 409
    frame.act("edition-retry-failed", f"edition:{edition_id}",
        f"{len(retry.delivery_ids)} failed deliveries back to pending")
    # The send claims these rows from its own sessions: they must be pending for it.
    frame.db().commit()
    svc = services()
    try:
        outcome = actions.send_retry(svc.settings, svc.engine, retry)
    except actions.NotQueued as exc:
        flash(f"Not retried: {exc}", "problem")
    else:
        flash(f"Retried {len(retry.delivery_ids)} failed deliveries: {outcome}", "done")
    return redirect(back, 303)
