"""/admin/cards: the papers whose card failed, with the reasons; re-run one, or all.

A re-run makes the failed cards due again (their count of failed runs starts over) and
runs the card sweep: on the llm queue with a broker, in this process without one, as
`newsletter summarize --paper` does (newsletter/admin/actions.py). Both are audited.
"""

from __future__ import annotations

from flask import Response, abort, flash, redirect, render_template, url_for

from newsletter.admin import actions, lookups
from newsletter.ingest.paper import Paper
from newsletter.web.admin import frame
from newsletter.web.common import services


@frame.blueprint.get("/cards", endpoint="cards")
def failures() -> str:
    return render_template("admin/cards.html", failures=lookups.card_failures(frame.db()))


def _rerun(paper: Paper | None) -> Response | tuple[str, int]:
    paper_id = paper.id if paper else None
    try:
        papers = actions.rerun_cards(frame.db(), paper_id)
    except actions.Refused as refused:
        return render_template("admin/refused.html", reason=f"Nothing to re-run: {refused}.",
                               back=url_for("admin.cards")), 409
    if paper is None:
        frame.act("cards-rerun-failed", "cards", f"{len(papers)} failed cards")
    else:
        frame.act("card-rerun", f"paper:{paper.key}")
    # The writers read the cards from their own sessions.
    frame.db().commit()
    svc = services()
    outcome = actions.write_cards(svc.settings, svc.engine, paper_id)
    flash(f"Re-ran {len(papers)} failed card{'s' * (len(papers) != 1)}: {outcome}", "done")
    return redirect(url_for("admin.cards"), 303)


@frame.blueprint.post("/cards/<int:paper_id>/rerun", endpoint="rerun_card")
def rerun_one(paper_id: int) -> Response | tuple[str, int]:
    paper = frame.db().get(Paper, frame.row_id(paper_id))
    if paper is None:
        abort(404)
    return _rerun(paper)


@frame.blueprint.post("/cards/rerun-failed", endpoint="rerun_failed_cards")
def rerun_all() -> Response | tuple[str, int]:
    return _rerun(None)
