"""What every view needs: the app's services and who is asking."""

from __future__ import annotations

import ipaddress

from flask import current_app, request

from newsletter import i18n
from newsletter.config import Settings
from newsletter.readers.reader_input import (
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


def N_(message: str) -> str:
    """Marks a message for extraction; it is translated where it is shown."""
    return message


# The tz database's regions as the zone list's groups show them (the zones' own names,
# Europe/Paris, stay as the database writes them: they are what a reader may type).
_REGION_LABELS = {"UTC": N_("UTC"), "Africa": N_("Africa"), "America": N_("America"),
                  "Antarctica": N_("Antarctica"), "Arctic": N_("Arctic"), "Asia": N_("Asia"),
                  "Atlantic": N_("Atlantic"), "Australia": N_("Australia"),
                  "Europe": N_("Europe"), "Indian": N_("Indian"), "Pacific": N_("Pacific")}


def _weekday_names() -> tuple[str, ...]:
    """Monday to Sunday in the page's language, from Babel's CLDR data ("lundi" ...),
    capitalised as the first word of a choice."""
    names = i18n.locale().days["format"]["wide"]
    return tuple(names[i][:1].upper() + names[i][1:] for i in range(7))


def send_time_choices(settings: Settings) -> dict[str, object]:
    """What the "when it arrives" fields offer, and what they show a new reader, in the
    language of the page."""
    zones = tuple((i18n.gettext(_REGION_LABELS.get(region, region)), names)
                  for region, names in zones_by_region())
    return {"zones": zones,
            "weekdays": tuple(zip(WEEKDAYS, _weekday_names(), strict=True)),
            "default_zone": settings.default_time_zone,
            "default_hour": settings.default_send_hour,
            "default_weekday": settings.default_weekday}


def language_choices(settings: Settings) -> dict[str, object]:
    """The languages a reader may pick (the operator's CARD_LANGUAGES), each named in
    itself ("Français"), and the one a new reader starts with: the page's, if offered."""
    offered = settings.card_languages
    page = i18n.current()
    return {"offered": tuple((code, i18n.language_name(code, code)) for code in offered),
            "default": page if page in offered else i18n.SOURCE_LANGUAGE}


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
