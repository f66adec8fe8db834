"""Which paper a clicked link opens: the link's URL to a paper key. Pure.

A digest links each paper to its page on our site (`/papers/<key>`, with the reader's
rating token as `?rate=`), to its arXiv abstract and PDF, and to whatever other abstract,
PDF or code address its feed gave. SendGrid's click events carry the URL as it was in the
mail (`url`, Event Webhook reference:
https://www.twilio.com/docs/sendgrid/for-developers/tracking-events/event). arXiv writes
one paper many ways (`abs/2609.26811v2`, `pdf/2609.26811v2.pdf`, `html/2609.26811v1`,
`abs/hep-th/9901001`, www. and export. hosts, http or https); each comes back to the
versionless id, which is the paper's key. Our own links that are not a paper's page
(manage, unsubscribe, rating, view in browser, the day's list) name no paper, even where
their path holds a paper's number (a rating link does): only `/papers/` counts.
"""

from __future__ import annotations

from urllib.parse import SplitResult, unquote, urlsplit

from newsletter.readers.paper_id import arxiv_id_of

ARXIV_HOSTS = frozenset({"arxiv.org", "www.arxiv.org", "export.arxiv.org"})
_ARXIV_PATHS = ("/abs/", "/pdf/", "/html/")
# Far longer than any key we make (an arXiv id, or "source:" and 16 hex digits).
MAX_KEY = 200


def _origin(parts: SplitResult) -> tuple[str, int | None]:
    """Host and port, the scheme's default port when none is written."""
    try:
        port = parts.port
    except ValueError:  # not a number, or out of range
        port = -1
    default = {"http": 80, "https": 443}.get(parts.scheme)
    return (parts.hostname or "").lower(), port if port is not None else default


def paper_key(url: str, site_url: str) -> str | None:
    """The key of the paper a link opens, or None when it opens no paper page of ours or
    of arXiv. Never raises: a click event's URL is whatever the mail held."""
    if not isinstance(url, str) or len(url) > 2048:
        return None
    try:
        parts = urlsplit(url.strip())
        site = urlsplit(site_url.rstrip("/"))
    except ValueError:
        return None
    if parts.scheme not in ("http", "https"):
        return None
    host = (parts.hostname or "").lower()
    if host in ARXIV_HOSTS:
        path = parts.path
        for prefix in _ARXIV_PATHS:
            if path.startswith(prefix):
                return arxiv_id_of(unquote(path[len(prefix):]))
        return None
    # Our site: the same host and port as BASE_URL (http or https: a proxy may answer
    # both), and the paper page under its path.
    if host != (site.hostname or "").lower() or (
            parts.scheme == site.scheme and _origin(parts) != _origin(site)):
        return None
    prefix = f"{site.path.rstrip('/')}/papers/"
    if not parts.path.startswith(prefix):
        return None
    key = unquote(parts.path[len(prefix):]).strip("/")
    if not key or len(key) > MAX_KEY or any(ord(c) < 32 for c in key):
        return None
    # An arXiv key written with a version or a .pdf still names the paper.
    return arxiv_id_of(key) or key
