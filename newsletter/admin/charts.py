"""The overview's charts: series from newsletter/admin/stats.py drawn as SVG by pygal. Pure.

How a chart reaches the page under the site's Content-Security-Policy (`style-src 'self'`,
`script-src 'none'`): pygal styles its SVG with a `<style>` element and adds a `<script>`
with its config. Inline `<svg>` in the page would have both refused by the policy (checked
in Chromium: the chart came out black), and loosening the policy for charts is what the
policy is there to prevent. So a chart is an image: `<img src="data:image/svg+xml;...">`
(`img-src` allows `data:`). An SVG shown as an image is its own document: its own styles
apply, and it can run no script and fetch nothing, whatever it contains. The script is
dropped anyway (it configures pygal's tooltips, which need JavaScript), so the SVG holds
only shapes, text and style. One request and one query per chart, and no URL of its own
to protect.

Each chart comes with its words: a summary for the image's alt text and a table of the
same numbers under it, so a screen reader (or anyone) can read what the chart shows.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

import pygal
from pygal.etree import etree
from pygal.style import Style

from newsletter.admin.stats import (
    EditionCounts,
    Production,
    RatingFlow,
    Series,
    SubscriberFlow,
    TopicCount,
)

# The site's palette (newsletter/web/static/style.css) and its system fonts: no web font.
_FONTS = '-apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif'
STYLE = Style(
    background="#ffffff", plot_background="#ffffff", foreground="#1f2933",
    foreground_strong="#1f2933", foreground_subtle="#52606d", opacity=".85",
    opacity_hover="1", transition="0ms",
    colors=("#0b4f8a", "#1d6b3a", "#a61b1b", "#c77c02", "#6b4fbb", "#3e4c59", "#0f8b8d",
            "#8a2f0b"),
    font_family=_FONTS, label_font_family=_FONTS, major_label_font_family=_FONTS,
    value_font_family=_FONTS, legend_font_family=_FONTS, title_font_family=_FONTS,
    tooltip_font_family=_FONTS, label_font_size=12, major_label_font_size=12,
    legend_font_size=13, value_font_size=12,
)
WIDTH, HEIGHT = 760, 340


@dataclass(frozen=True)
class Table:
    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


@dataclass(frozen=True)
class Chart:
    """A chart as the page shows it: its title, the SVG, and its text alternative."""

    key: str
    title: str
    svg: str
    summary: str
    table: Table

    @property
    def data_uri(self) -> str:
        return "data:image/svg+xml;base64," + base64.b64encode(self.svg.encode()).decode()


def _svg(chart: Any) -> str:
    """The chart's SVG without pygal's script (see the module docstring)."""
    tree = chart.render_tree()
    for parent in list(tree.iter()):
        for child in list(parent):
            if isinstance(child.tag, str) and child.tag.rsplit("}", 1)[-1] == "script":
                parent.remove(child)
    # pygal's wrapper around lxml or the standard library, whichever it drew with.
    return etree.tostring(tree, encoding="unicode")


def _config(**extra: Any) -> dict[str, Any]:
    return {"style": STYLE, "width": WIDTH, "height": HEIGHT, "js": [],
            "disable_xml_declaration": True, "legend_at_bottom": True,
            "legend_at_bottom_columns": 4, "print_values": False, "margin": 12,
            # pygal's room for a bottom legend is a little short for these fonts.
            "margin_bottom": 30, "value_formatter": _axis, "truncate_legend": -1,
            "show_y_guides": True, "show_x_guides": False, **extra}


def _days(days: Sequence[date]) -> dict[str, Any]:
    """A calendar x axis: every day plotted, one label a week."""
    return {"x_labels": [f"{d:%d %b}" for d in days], "x_labels_major_every": 7,
            "show_minor_x_labels": False, "truncate_label": -1}


# At most this many steps up a count axis: pygal's own scale, left alone, fills a short one
# with tenths (0.2, 0.4 readers), which no count can be.
COUNT_STEPS = 8


def count_ticks(largest: float, steps: int = COUNT_STEPS) -> list[int]:
    """Whole-number ticks from 0 to at least `largest`, at a step of 1, 2 or 5 times a
    power of ten, at most `steps` steps: 0, 1, 2 for a largest count of 2; 0, 20 … 100
    for 93. An empty or all-zero series still gets 0 and 1."""
    top = max(1, math.ceil(largest))
    power = 1
    while True:
        for step in (power, 2 * power, 5 * power):
            if math.ceil(top / step) <= steps:
                return list(range(0, step * math.ceil(top / step) + 1, step))
        power *= 10


def _count_axis(values: Iterable[float]) -> dict[str, Any]:
    """pygal options for a value axis of counts: ticks at whole numbers only."""
    return {"y_labels": count_ticks(max(values, default=0))}


def _axis(value: float) -> str:
    """An axis label: whole numbers as such, small amounts (dollars) to two figures."""
    if value == 0 or abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}" if abs(value) >= 1 else f"{value:.2g}"


def _count(value: float) -> str:
    return f"{value:,.0f}"


def _usd(value: float) -> str:
    return f"${value:,.2f}" if value >= 0.01 or value == 0 else f"${value:,.4f}"


def _table(days: Sequence[date], series: Sequence[Series],
           formats: Sequence[Callable[[float], str]]) -> Table:
    rows = tuple((f"{day:%Y-%m-%d}", *(fmt(s.points[i][1]) for s, fmt in
                                       zip(series, formats, strict=True)))
                 for i, day in enumerate(days)
                 if any(s.points[i][1] for s in series))
    return Table(("Day", *(s.name for s in series)), rows)


def subscribers(flow: SubscriberFlow) -> Chart:
    series = (flow.confirmed, flow.unsubscribed, flow.suppressed)
    chart = pygal.Bar(**_config(**_days(flow.window.days),
                                **_count_axis(v for s in series for v in s.values)))
    for s in series:
        chart.add(s.name, [int(v) for v in s.values])
    title = "Subscribers by day"
    summary = (f"{title}, {flow.window.first:%d %b} to {flow.window.last:%d %b}: "
               f"{_count(flow.confirmed.total)} confirmed, {_count(flow.unsubscribed.total)} "
               f"unsubscribed, {_count(flow.suppressed.total)} suppressed.")
    return Chart("subscribers", title, _svg(chart), summary,
                 _table(flow.window.days, series, (_count,) * 3))


_EDITION_COLUMNS = (("Sent", "sent"), ("Skipped", "skipped"), ("Failed", "failed"),
                    ("Delivered", "delivered"), ("Bounced", "bounced"), ("Opened", "opened"),
                    ("Clicked", "clicked"))


def editions(found: Sequence[EditionCounts]) -> Chart:
    """Each edition's deliveries (sent, skipped, failed) beside what the provider reported
    of them (delivered, bounced, opened, clicked): a line each, a dot per edition."""
    labels = [e.label for e in found]
    chart = pygal.Line(**_config(x_labels=labels, truncate_label=-1, show_dots=True,
                                 dots_size=2.5, x_labels_major_every=max(1, len(found) // 6),
                                 show_minor_x_labels=len(found) <= 8,
                                 **_count_axis(getattr(e, attribute) for e in found
                                               for _, attribute in _EDITION_COLUMNS)))
    columns = _EDITION_COLUMNS
    for name, attribute in columns:
        chart.add(name, [getattr(e, attribute) for e in found])
    title = "Editions: sent, skipped and failed, and what the provider reported"
    if found:
        sent = sum(e.sent for e in found)
        failed = sum(e.failed for e in found)
        opened = sum(e.opened for e in found)
        summary = (f"{len(found)} edition{'s' * (len(found) != 1)}: {_count(sent)} digests "
                   f"sent, {_count(failed)} failed, {_count(opened)} opened.")
    else:
        summary = "No edition in this period."
    rows = tuple((f"{e.day:%Y-%m-%d} {e.frequency}",
                  *(_count(getattr(e, attribute)) for _, attribute in columns))
                 for e in found)
    return Chart("editions", title, _svg(chart), summary,
                 Table(("Edition", *(name for name, _ in columns)), rows))


def topics(counts: Sequence[TopicCount]) -> Chart:
    shown = sorted(counts, key=lambda t: -t.readers)
    chart = pygal.HorizontalBar(**_config(show_legend=False, height=max(HEIGHT, 26 * len(shown)),
                                          x_labels=[t.name for t in reversed(shown)],
                                          show_y_guides=False, show_x_guides=True,
                                          # y is the value axis, drawn across.
                                          **_count_axis(t.readers for t in shown)))
    chart.add("Readers", [t.readers for t in reversed(shown)])
    title = "Readers per topic"
    top = [f"{t.name} ({_count(t.readers)})" for t in shown[:3] if t.readers]
    summary = (f"{title} (confirmed readers who get digests; a reader counts once for each "
               f"of their topics). Most followed: {', '.join(top)}." if top
               else f"{title}: nobody gets digests yet.")
    return Chart("topics", title, _svg(chart), summary,
                 Table(("Topic", "Readers"), tuple((t.name, _count(t.readers)) for t in shown)))


def production(made: Production) -> Chart:
    """Papers in and cards out on the left axis; what the LLM cost on the right."""
    counts = (made.papers, made.cards, made.card_failures)
    # The left axis counts; the cost's right axis is scaled to its ticks by pygal.
    chart = pygal.Line(**_config(**_days(made.window.days), show_dots=True, dots_size=2.5,
                                 **_count_axis(v for s in counts for v in s.values)))
    for s in counts:
        chart.add(s.name, [int(v) for v in s.values])
    chart.add(f"{made.cost_usd.name}, right axis", [round(v, 6) for v in made.cost_usd.values],
              secondary=True, formatter=_usd)
    title = "Papers stored, cards written, and LLM cost per day"
    unknown = (f" ({made.unknown_cost} LLM cards of unknown price not counted)"
               if made.unknown_cost else "")
    summary = (f"{title}: {_count(made.papers.total)} papers, {_count(made.cards.total)} cards "
               f"written, {_count(made.card_failures.total)} failed, "
               f"{_usd(made.cost_usd.total)} spent{unknown}.")
    series = (made.papers, made.cards, made.card_failures, made.cost_usd)
    return Chart("production", title, _svg(chart), summary,
                 _table(made.window.days, series, (_count, _count, _count, _usd)))


def ratings(flow: RatingFlow) -> Chart:
    # Stacked: the axis reaches the largest day's sum.
    chart = pygal.StackedBar(**_config(**_days(flow.window.days), **_count_axis(
        up + down for up, down in zip(flow.up.values, flow.down.values, strict=True))))
    chart.add(flow.up.name, [int(v) for v in flow.up.values])
    chart.add(flow.down.name, [int(v) for v in flow.down.values])
    title = "Ratings per day"
    summary = (f"{title}: {_count(flow.up.total)} “more like this” and "
               f"{_count(flow.down.total)} “less like this”.")
    return Chart("ratings", title, _svg(chart), summary,
                 _table(flow.window.days, (flow.up, flow.down), (_count, _count)))


def papers_by_source(days: Sequence[date], by_source: Sequence[Series]) -> Chart:
    """Papers announced per day, one series per source (the feeds page)."""
    # pygal cannot place axis labels on a chart with no series (an AttributeError, so the
    # feeds page of a site with no feed yet was a 500).
    axis = _count_axis(sum(day) for day in zip(*(s.values for s in by_source), strict=True)
                       ) if by_source else {}
    chart = pygal.StackedBar(**_config(**_days(days), **axis))
    for s in by_source:
        chart.add(s.name, [int(v) for v in s.values])
    title = "Papers announced per day, by source"
    summary = (f"{title}: " + ", ".join(f"{s.name} {_count(s.total)}" for s in by_source) + "."
               if by_source else f"{title}: none in this period.")
    return Chart("papers", title, _svg(chart), summary,
                 _table(days, by_source, (_count,) * len(by_source)))
