"""Form posts must come from our own pages: the CSRF token, and over https the origin too.

Flask-WTF's token proves the form was rendered for this browser's session. Over https it
also offers an "SSL strict" check: the Referer must name `https://<Host header>/`. That
check failed every form behind TLS, because the site sent `Referrer-Policy: no-referrer`,
and it trusts the Host header, which behind a proxy is whatever the proxy forwards. We
replace it with the check browsers were given for this job: every POST carries an `Origin`
header (https://fetch.spec.whatwg.org/#origin-header), compared here with the origin of
BASE_URL, the address we publish. A browser that omits Origin (or sends "null") is
checked on its Referer instead, and a post with neither is refused, as Flask-WTF does.

Both headers need `Referrer-Policy: same-origin`: under `no-referrer` a browser sends no
Referer and `Origin: null` even to the page's own site (the Fetch standard's "append a
request Origin header" step; Chromium does, https://github.com/rails/rails/issues/28299),
while `same-origin` still sends nothing at all to other sites
(https://developer.mozilla.org/en-US/docs/Web/HTTP/Reference/Headers/Referrer-Policy), so
the tokens in manage and unsubscribe URLs never leave ours. Browsers send Origin on POST
since Chrome 1, Safari 1, Firefox 70, Edge 79
(https://developer.mozilla.org/docs/Web/HTTP/Reference/Headers/Origin); the Referer
fallback covers older ones. tests/web/test_web_https.py proves both halves in Chromium.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Flask, current_app, g, request
from flask_wtf.csrf import CSRFError, CSRFProtect

REFERRER_POLICY = "same-origin"

_DEFAULT_PORTS = {"http": 80, "https": 443}


def origin_of(url: str) -> str | None:
    """scheme://host[:port] of a URL, normalised as browsers serialise origins."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme, host = parts.scheme.lower(), (parts.hostname or "")
    if scheme not in _DEFAULT_PORTS or not host:
        return None
    if ":" in host:  # an IPv6 literal keeps its brackets
        host = f"[{host}]"
    if port is None or port == _DEFAULT_PORTS[scheme]:
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def foreign_post(public_origin: str, origin: str | None, referer: str | None) -> str | None:
    """Why a form post did not come from `public_origin`, or None when it did."""
    if origin and origin != "null":
        return None if origin_of(origin) == public_origin else "the Origin is another site"
    if not referer:
        return "the request has neither Origin nor Referer"
    return None if origin_of(referer) == public_origin else "the Referer is another site"


class OriginCheckedCSRF(CSRFProtect):
    """Flask-WTF's token check, then (for an https BASE_URL) the origin check above.

    It runs whenever the site is public over https, whatever scheme the request seems to
    have arrived with: a proxy that forgets X-Forwarded-Proto must not switch it off.

    A form that acts for nobody in particular (`origin_only`: the sign-up) needs no token.
    A token is what ties a post to the visitor's session, and a sign-up has no session to
    protect: anyone may post it, from anywhere, and only the link mailed to the address
    does anything. Its page then sets no cookie, so the public pages are the same for
    everybody and can be cached (docs/SECURITY.md, finding 10). The origin check stays, so
    another site cannot make its visitors' browsers sign people up from their addresses.
    """

    def __init__(self, app: Flask, base_url: str) -> None:
        self.public_origin = origin_of(base_url) if base_url.startswith("https://") else None
        self._origin_only: set[str] = set()
        super().__init__(app)
        # Ours replaces it: see the module docstring.
        app.config["WTF_CSRF_SSL_STRICT"] = False

    def origin_only(self, endpoint: str) -> None:
        self._origin_only.add(endpoint)

    def protect(self, apply_exemptions: bool = False) -> None:
        if request.endpoint in self._origin_only:
            if request.method in current_app.config["WTF_CSRF_METHODS"]:
                self._check_origin()
            return
        super().protect(apply_exemptions)
        # Flask-WTF marks a request it checked; exempt views and safe methods it skips.
        if g.get("csrf_valid"):
            self._check_origin()

    def _check_origin(self) -> None:
        if self.public_origin is None:
            return
        reason = foreign_post(self.public_origin, request.headers.get("Origin"),
                              request.headers.get("Referer"))
        if reason is not None:
            raise CSRFError(f"form post refused: {reason}")
