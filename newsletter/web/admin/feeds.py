"""/admin/feeds: each feed's last fetch, its error or warning, and the papers per day."""

from __future__ import annotations

from flask import render_template

from newsletter.admin import charts, stats
from newsletter.web.admin import frame


@frame.blueprint.get("/feeds", endpoint="feeds")
def feeds() -> str:
    window = stats.Window.ending(frame.now().date())
    activity = stats.feed_activity(frame.db(), window)
    return render_template("admin/feeds.html", feeds=activity.feeds, window=window,
                           chart=charts.papers_by_source(window.days, activity.by_source))
