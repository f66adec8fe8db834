"""What every view needs: the app's services and who is asking."""

from __future__ import annotations

import ipaddress

from flask import current_app, request

from newsletter.config import Settings
from newsletter.readers.reader_input import (
    WEEKDAY_NAMES,
    WEEKDAYS,
    Client,
    SendTime,
    zones_by_region,
)
from newsletter.subscriptions.services import Services

SERVICES = "paperwire"


def services() -> Services:
    return current_app.extensions[SERVICES]


def client() -> Client:
    return Client(ip=request.remote_addr, user_agent=request.user_agent.string)


def send_time_choices(settings: Settings) -> dict[str, object]:
    """What the "when it arrives" fields offer, and what they show a new reader."""
    return {"zones": zones_by_region(),
            "weekdays": tuple(zip(WEEKDAYS, WEEKDAY_NAMES, strict=True)),
            "default_zone": settings.default_time_zone,
            "default_hour": settings.default_send_hour,
            "default_weekday": settings.default_weekday}


def send_time() -> SendTime | None:
    """The "when it arrives" fields of the posted form; None when it had none."""
    form = request.form
    if not any(name in form for name in ("time_zone", "send_hour", "send_weekday")):
        return None
    return SendTime(form.get("time_zone"), form.get("send_hour"), form.get("send_weekday"))


# Headers a reverse proxy adds: a request carrying one was relayed, whoever connected.
_RELAYED = ("Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto",
            "X-Real-IP")


def from_loopback() -> bool:
    """A client on this machine talking to us directly. A proxy on the same machine
    connects from loopback too, for every visitor: what it relays is not loopback."""
    if any(name in request.headers for name in _RELAYED):
        return False
    try:
        return ipaddress.ip_address(request.remote_addr or "").is_loopback
    except ValueError:
        return False


def no_store(response):  # type: ignore[no-untyped-def]
    """Pages opened with a token must not linger in shared caches or history snapshots."""
    response.headers["Cache-Control"] = "no-store"
    return response


# Who may frame an email shown on our site: our own page around it, or nobody.
FRAMED = {True: "'self'", False: "'none'"}


def mail_html_policy(*, framed: bool) -> str:
    """The Content-Security-Policy for an email's HTML shown on our site (view in browser,
    the outbox, the admin's preview): its inline styles and nothing else, no script, no
    form, and no fetch or image from another host (no mail of ours has one, and a page of
    ours loads nothing from elsewhere). `framed`: shown inside one of our own pages."""
    return ("default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
            f"base-uri 'none'; form-action 'none'; frame-ancestors {FRAMED[framed]}")
