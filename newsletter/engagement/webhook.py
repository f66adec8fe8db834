"""SendGrid's Event Webhook: signature check, parsing, and what each event changes.

SendGrid signs `timestamp + raw body` with ECDSA P-256 / SHA-256 and sends the base64
DER signature and the timestamp in headers; the public key (base64 DER, as the SendGrid
console shows it, or PEM) is SENDGRID_WEBHOOK_PUBLIC_KEY (see
https://www.twilio.com/docs/sendgrid/for-developers/tracking-events/getting-started-event-webhook-security-features).
Events are retried and can be replayed, so each `sg_event_id` is acted on once, and a
signed request whose timestamp is far from now is refused: a captured request cannot be
replayed later. SendGrid documents no tolerance; ten minutes is the one operators use.
The body is signed, but the key may leak, so it is still parsed defensively: bounded
nesting, a bounded number of events, addresses normalised like a sign-up's.

Bounces, drops, spam reports and unsubscribes suppress the address. Delivered, open, click
and bounce events of a digest also update its delivery, through the delivery id SendGrid
echoes from the personalization's `custom_args` (newsletter/engagement/events.py). An event
is recorded (its id kept, as the replay guard, for ENGAGEMENT_RETENTION_DAYS) only when it
suppressed, changed a delivery, or concerns a reader who allows tracking: one about an
address or delivery we do not know (a deleted reader's) leaves nothing behind, nor does one
about a reader who opted out of tracking, unless it suppresses.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_der_public_key, load_pem_public_key
from sqlmodel import Session, select

from newsletter.engagement.events import Recorder, event_time
from newsletter.readers.links import MAX_ROW_ID
from newsletter.readers.reader_input import MAX_EMAIL_LENGTH, InvalidInput, parse_email
from newsletter.readers.subscriber import suppress
from newsletter.readers.tables import SUPPRESSING_EVENTS, WebhookEvent

SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"
MAX_EVENTS = 5000
MAX_SKEW = timedelta(minutes=10)
# An event is a flat object inside a list; a few levels spare for provider additions.
MAX_DEPTH = 8


class WebhookError(Exception):
    """A request that is not a well-formed, signed batch of events."""


def load_public_key(text: str) -> ec.EllipticCurvePublicKey:
    data = text.strip()
    try:
        if data.startswith("-----BEGIN"):
            key = load_pem_public_key(data.encode())
        else:
            key = load_der_public_key(base64.b64decode(data, validate=True))
    except (ValueError, binascii.Error) as exc:
        raise WebhookError(f"SENDGRID_WEBHOOK_PUBLIC_KEY is not a public key: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise WebhookError("SENDGRID_WEBHOOK_PUBLIC_KEY is not an ECDSA key")
    return key


def timestamp_fresh(timestamp: str | None, now: datetime) -> bool:
    """The signed timestamp is whole Unix seconds within MAX_SKEW of now (either way)."""
    if not timestamp or not timestamp.isascii() or not timestamp.isdigit() or len(timestamp) > 12:
        return False
    return abs(now.timestamp() - int(timestamp)) <= MAX_SKEW.total_seconds()


def signature_valid(key: ec.EllipticCurvePublicKey, signature: str | None,
                    timestamp: str | None, body: bytes) -> bool:
    if not signature or not timestamp:
        return False
    try:
        raw = base64.b64decode(signature, validate=True)
        key.verify(raw, timestamp.encode("utf-8") + body, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError, binascii.Error, UnicodeError):
        return False
    return True


@dataclass(frozen=True)
class Event:
    sg_event_id: str
    event: str
    email: str | None
    # From the digest's custom_args ("delivery_id"), echoed at the event's top level
    # (https://www.twilio.com/docs/sendgrid/for-developers/tracking-events/event).
    # `of_digest`: the event names a delivery, though maybe not one we could have made.
    delivery_id: int | None = None
    of_digest: bool = False
    timestamp: int | None = None  # Unix seconds, when SendGrid saw it happen
    url: str | None = None  # a click's link, as the mail had it
    # An open reported by Apple Mail Privacy Protection's prefetch, not by a reader.
    machine_open: bool = False


_URL_LIMIT = 2048


def _delivery_id(value: object) -> int | None:
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 10:
        number = int(value)
        return number if 0 < number <= MAX_ROW_ID else None
    return None


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.S)
_BRACKET = re.compile(rb"[\[\]{}]")


def _nesting(body: bytes) -> int:
    """How deep a JSON document nests, read without parsing it (so without recursion)."""
    depth = deepest = 0
    for bracket in _BRACKET.finditer(_JSON_STRING.sub(b'""', body)):
        depth += 1 if bracket.group() in (b"[", b"{") else -1
        deepest = max(deepest, depth)
    return deepest


def _address(value: str) -> str:
    """As a sign-up stores it (lower case, IDN domains in punycode), so a bounce finds its
    reader; an address we could never have stored is kept lower-cased, for the record."""
    try:
        return parse_email(value)
    except InvalidInput:
        return value.strip().lower()


def _plain(value: object, limit: int) -> bool:
    """A non-empty string that fits its column and that any database can store."""
    return isinstance(value, str) and 0 < len(value) <= limit and not _CONTROL.search(value)


def parse_events(body: bytes) -> list[Event]:
    """The events of a batch; events without an id or type are ignored, not fatal."""
    if _nesting(body) > MAX_DEPTH:
        raise WebhookError(f"body nests deeper than {MAX_DEPTH} levels")
    try:
        data: Any = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise WebhookError("body is not JSON") from None
    if not isinstance(data, list):
        raise WebhookError("body is not a JSON list of events")
    if len(data) > MAX_EVENTS:
        raise WebhookError(f"more than {MAX_EVENTS} events in one request")
    events: list[Event] = []
    for item in data:
        if not isinstance(item, dict):
            continue
        ident, kind, email = item.get("sg_event_id"), item.get("event"), item.get("email")
        if not _plain(ident, 200) or not _plain(kind, 64):
            continue
        address = _address(email) if _plain(email, MAX_EMAIL_LENGTH) else None
        stamp, url = item.get("timestamp"), item.get("url")
        events.append(Event(
            ident, kind, address, delivery_id=_delivery_id(item.get("delivery_id")),
            of_digest="delivery_id" in item,
            timestamp=stamp if isinstance(stamp, int) and not isinstance(stamp, bool) else None,
            url=url if _plain(url, _URL_LIMIT) else None,
            machine_open=item.get("sg_machine_open") is True))
    return events


@dataclass(frozen=True)
class EventReport:
    received: int
    duplicates: int
    suppressed: int  # addresses newly suppressed, each counted once


def apply_events(session: Session, events: list[Event], now: datetime,
                 site_url: str = "") -> EventReport:
    """Act on each new event: suppress the address for the events that call for it, and
    update the delivery a digest's event names. `site_url` (BASE_URL) tells a click on one
    of our paper pages from other links."""
    ids = list({e.sg_event_id for e in events})
    seen: set[str] = set()
    for start in range(0, len(ids), 500):
        chunk = ids[start:start + 500]
        seen.update(session.exec(select(WebhookEvent.sg_event_id)
                                 .where(WebhookEvent.sg_event_id.in_(chunk))))  # type: ignore[attr-defined]
    fresh = [e for e in events if e.sg_event_id not in seen]
    recorder = Recorder(session, [e.delivery_id for e in fresh if e.delivery_id is not None],
                        [e.email for e in fresh if not e.of_digest and e.email],
                        site_url)
    duplicates = 0
    suppressed: set[str] = set()
    for event in events:
        if event.sg_event_id in seen:
            duplicates += 1
            continue
        seen.add(event.sg_event_id)
        suppressing = event.event in SUPPRESSING_EVENTS and event.email is not None
        if event.email is not None and suppressing and suppress(session, event.email,
                                                                 event.event, now):
            suppressed.add(event.email)
        acted = suppressing
        if not event.of_digest:
            # Not a digest's (a confirmation, a welcome): kept as a record of the reader's
            # mail, unless nobody has the address or its reader declined tracking.
            acted |= event.email in recorder.tracked
        else:
            target = recorder.target(event.delivery_id, event.email)
            if target is not None:
                acted |= recorder.record(target, event.event,
                                         event_time(event.timestamp, now), url=event.url,
                                         machine_open=event.machine_open)
        if acted:
            session.add(WebhookEvent(sg_event_id=event.sg_event_id, event=event.event,
                                     email=event.email, received_at=now))
        if suppressing:
            session.flush()  # the next event's suppression check sees this one
    return EventReport(len(events), duplicates, len(suppressed))
