"""A local stand-in for api.biorxiv.org's details endpoint, answered from the fixtures' records.

What it models, from the API's own help page (https://api.biorxiv.org/details/medrxiv/help,
reached from https://api.biorxiv.org/) and what public clients observed of it (their
sources in tests/fixtures/biorxiv/README.md):
- `GET /details/{server}/{from}/{to}[/{cursor}[/json]]`, server `biorxiv` or `medrxiv`, two
  YYYY-MM-DD dates: the records of that server posted on those days (each version is its
  own record), `page_size` of them from offset `cursor` (default 0). The help page says 100
  a page; clients found 30 in 2026, which is the default here; the tests pick smaller.
- `?category=`: only that subject category, "URL-encoded or with underscores substituted
  for spaces" (help page).
- The page: `messages[0]` with status "ok", category, interval "from:to", funder, cursor,
  count, count_new_papers and total (those two as strings), then `collection`; cursor is
  a number on the first page and a string after, as the fixtures have it (go.webapi: "Can
  be an int or a string!").
- Nothing posted in the interval, or a cursor at or past its end (medrxivr issue #19):
  `{"messages": [{"status": "no posts found"}], "collection": []}`, HTTP 200.
- A date that is not YYYY-MM-DD: the refusal in tests/fixtures/biorxiv/
  details_error_bad_date.json, HTTP 200 (the API words its refusals in its JSON).

And what the network does: `down` answers every request 503 with Retry-After 0;
`fail_from_cursor` answers 503 from that offset on, a server dying in the middle of a listing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from tests.support.http import Reply, Request, ScriptedServer

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "biorxiv"
# The records of every page the fixtures hold, bioRxiv's and medRxiv's.
PAGES = (
    "details_biorxiv_2026-09-23_2026-09-24_0.json",
    "details_biorxiv_2026-09-23_2026-09-24_10.json",
    "details_biorxiv_2026-09-25_2026-09-25_0.json",
    "details_medrxiv_2026-09-23_2026-09-24_0.json",
)
_PATH = re.compile(r"^/details/(?P<server>[^/]+)/(?P<since>[^/]+)/(?P<until>[^/]+)"
                   r"(?:/(?P<cursor>\d+))?(?:/json)?/?$")
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
JSON = {"Content-Type": "application/json; charset=UTF-8"}


def fixture(name: str) -> Path:
    return FIXTURES / name


def records_of(names: Sequence[str] = PAGES) -> list[dict[str, Any]]:
    """The collection items of the named fixture pages, in order."""
    found: list[dict[str, Any]] = []
    for name in names:
        found += json.loads(fixture(name).read_text())["collection"]
    return found


def _day(text: str) -> date | None:
    if not _DAY.match(text):
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None


class BiorxivAPI(ScriptedServer):
    """api.biorxiv.org's details endpoint over `records` (default: every fixture page's)."""

    def __init__(self, records: Sequence[dict[str, Any]] | None = None, *, page_size: int = 30,
                 down: bool = False, fail_from_cursor: int | None = None) -> None:
        self.records = list(records_of() if records is None else records)
        self.page_size = page_size
        self.down = down
        self.fail_from_cursor = fail_from_cursor
        super().__init__(self._answer)

    def _answer(self, request: Request) -> Reply:
        if self.down:
            return Reply(503, b"<html><body><h1>503 Service Unavailable</h1></body></html>",
                         {"Retry-After": "0", "Content-Type": "text/html"})
        match = _PATH.match(request.path)
        if not match or match["server"] not in ("biorxiv", "medrxiv"):
            return Reply(404, b"Not Found", {"Content-Type": "text/plain"})
        since, until = _day(match["since"]), _day(match["until"])
        if since is None or until is None:
            return Reply(200, fixture("details_error_bad_date.json").read_bytes(), JSON)
        cursor = int(match["cursor"] or 0)
        if self.fail_from_cursor is not None and cursor >= self.fail_from_cursor:
            return Reply(503, b"Service Unavailable", {"Retry-After": "0"})
        asked = request.query.get("category", [""])[0]
        category = " ".join(unquote(asked).replace("_", " ").lower().split())
        posted = [r for r in self.records
                  if r["server"].lower() == match["server"]
                  and since <= date.fromisoformat(r["date"]) <= until
                  and (not category or r["category"].lower() == category)]
        if cursor >= len(posted):
            return Reply(200, fixture("details_no_posts_found.json").read_bytes(), JSON)
        page = posted[cursor:cursor + self.page_size]
        message = {
            "status": "ok", "category": asked or "all", "interval": f"{since}:{until}",
            "funder": "all", "cursor": cursor if cursor == 0 else str(cursor),
            "count": len(page), "count_new_papers": str(sum(r["version"] == "1" for r in posted)),
            "total": str(len(posted)),
        }
        body = json.dumps({"messages": [message], "collection": page}).encode()
        return Reply(200, body, JSON)
