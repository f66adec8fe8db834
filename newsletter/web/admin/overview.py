"""/admin: the overview. Headline numbers and five charts over the last 30 days (7 or 90
with ?days=), each chart with its numbers as text beneath it (newsletter/admin/charts.py
says how a chart is drawn and shown under the site's Content-Security-Policy)."""

from __future__ import annotations

from datetime import UTC, datetime, time

from flask import abort, render_template, request

from newsletter.admin import charts, stats
from newsletter.web.admin import frame

PERIODS = (7, 30, 90)


@frame.blueprint.get("", endpoint="overview")
def overview() -> str:
    days = request.args.get("days", str(stats.DEFAULT_DAYS))
    if not days.isdigit() or int(days) not in PERIODS:
        abort(400)
    return render_template("admin/overview.html", periods=PERIODS,
                           **dashboard(stats.Window.ending(frame.now().date(), int(days))))


def dashboard(window: stats.Window) -> dict[str, object]:
    """What the overview shows for a window: its headline numbers and its charts."""
    session = frame.db()
    ratings = stats.rating_flow(session, window)
    shown = [charts.subscribers(stats.subscriber_flow(session, window)),
             charts.editions(stats.editions(session, window)),
             charts.topics(stats.topic_counts(session)),
             charts.production(stats.production(session, window))]
    # Ratings have a chart once readers have rated something.
    if ratings.ever:
        shown.append(charts.ratings(ratings))
    midnight = datetime.combine(frame.now().date(), time.min, tzinfo=UTC)
    return {"window": window, "headline": stats.headline(session, window), "charts": shown,
            "sent_by_hour": stats.sent_by_hour(session, midnight)}
