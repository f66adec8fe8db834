"""The SendGrid Event Webhook, signed with a real ECDSA P-256 key pair made here."""

from __future__ import annotations

import base64
import json
import time

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from flask.testing import FlaskClient
from sqlalchemy import Engine, func
from sqlmodel import Session, select

from newsletter import db
from newsletter.config import Settings
from newsletter.readers import reader_input
from newsletter.readers import subscriber as subs
from newsletter.readers.tables import Suppression, WebhookEvent
from newsletter.web import create_app
from tests.support import web

web_settings = web.web_settings


@pytest.fixture
def key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _public(key: ec.EllipticCurvePrivateKey) -> str:
    der = key.public_key().public_bytes(serialization.Encoding.DER,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(der).decode()


@pytest.fixture
def client(web_settings: Settings, engine: Engine, key: ec.EllipticCurvePrivateKey
           ) -> FlaskClient:
    configured = web_settings.model_copy(update={"sendgrid_webhook_public_key": _public(key)})
    return create_app(configured, engine=engine).test_client(use_cookies=False)


def _signed(key: ec.EllipticCurvePrivateKey, body: bytes, timestamp: str | None = None
            ) -> dict[str, str]:
    timestamp = timestamp if timestamp is not None else str(int(time.time()))
    signature = key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    return {"X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
            "X-Twilio-Email-Event-Webhook-Timestamp": timestamp,
            "Content-Type": "application/json"}


def _events(*items: tuple[str, str, str]) -> bytes:
    return json.dumps([{"email": email, "event": event, "sg_event_id": ident,
                        "timestamp": 1790000000} for ident, event, email in items]).encode()


def _confirmed(engine: Engine, *emails: str) -> None:
    with db.transaction(engine) as session:
        for email in emails:
            row = subs.ensure(session, email, subs._utcnow())
            subs.update_preferences(session, row, reader_input.parse_preferences(["llm"]))
            subs.confirm_now(session, row, "admin", reader_input.Client())


def _status(engine: Engine, email: str) -> str | None:
    with Session(engine) as session:
        row = subs.find_by_email(session, email)
        return row.status if row else None


def _suppressed(engine: Engine) -> list[tuple[str, str]]:
    with Session(engine) as session:
        return sorted((s.email, s.reason) for s in session.exec(select(Suppression)))


def test_signed_events_suppress_for_good(client: FlaskClient, engine: Engine,
                                         key: ec.EllipticCurvePrivateKey) -> None:
    _confirmed(engine, "b@example.com", "s@example.com", "u@example.com", "ok@example.com")
    body = _events(("e1", "bounce", "B@example.com"), ("e2", "spamreport", "s@example.com"),
                   ("e3", "group_unsubscribe", "u@example.com"),
                   ("e4", "delivered", "ok@example.com"), ("e5", "dropped", "never@example.com"))
    answer = client.post("/webhooks/sendgrid", data=body, headers=_signed(key, body))
    assert answer.status_code == 200, answer.get_data(as_text=True)
    assert answer.json == {"received": 5, "duplicates": 0, "suppressed": 4}
    assert [_status(engine, e) for e in ("b@example.com", "s@example.com", "u@example.com",
                                         "ok@example.com")] == [
        "bounced", "complained", "unsubscribed", "confirmed"]
    assert _suppressed(engine) == [("b@example.com", "bounce"), ("never@example.com", "dropped"),
                                   ("s@example.com", "spamreport"),
                                   ("u@example.com", "group_unsubscribe")]
    # Suppressed for good: a new sign-up mails nothing and confirms nothing.
    with db.transaction(engine) as session:
        decision = subs.subscribe(session, "never@example.com",
                                  reader_input.parse_preferences(["llm"]))
        assert decision.send is None


def test_replayed_events_act_once(client: FlaskClient, engine: Engine,
                                  key: ec.EllipticCurvePrivateKey) -> None:
    _confirmed(engine, "b@example.com")
    body = _events(("e1", "bounce", "b@example.com"))
    headers = _signed(key, body)
    assert client.post("/webhooks/sendgrid", data=body, headers=headers).json["suppressed"] == 1
    with db.transaction(engine) as session:
        # The reader comes back by other means; a replay must not bounce them again.
        row = subs.find_by_email(session, "b@example.com")
        row.status = "confirmed"  # type: ignore[union-attr]
    replay = client.post("/webhooks/sendgrid", data=body, headers=headers)
    assert replay.status_code == 200
    assert replay.json == {"received": 1, "duplicates": 1, "suppressed": 0}
    assert _status(engine, "b@example.com") == "confirmed"
    with Session(engine) as session:
        assert session.exec(select(func.count()).select_from(WebhookEvent)).one() == 1


def test_forged_requests_are_refused(client: FlaskClient, engine: Engine,
                                     key: ec.EllipticCurvePrivateKey) -> None:
    _confirmed(engine, "b@example.com")
    body = _events(("e1", "bounce", "b@example.com"))
    other = ec.generate_private_key(ec.SECP256R1())
    good = _signed(key, body)
    forged = [
        _signed(other, body),                                   # someone else's key
        {**good, "X-Twilio-Email-Event-Webhook-Timestamp": str(int(time.time()) + 1)},
        {"Content-Type": "application/json"},                   # unsigned
        {**good, "X-Twilio-Email-Event-Webhook-Signature": "not base64!"},
        {**good, "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(b"x" * 70).decode()},
    ]
    for headers in forged:
        assert client.post("/webhooks/sendgrid", data=body, headers=headers).status_code == 403
    tampered = _events(("e1", "bounce", "victim@example.com"))
    assert client.post("/webhooks/sendgrid", data=tampered, headers=good).status_code == 403
    assert _status(engine, "b@example.com") == "confirmed" and _suppressed(engine) == []


@pytest.mark.parametrize("body", [b"", b"not json", b"{}", b"[1, 2]", b'[{"event": "bounce"}]',
                                  b'[{"sg_event_id": "\\u0000", "event": "bounce", '
                                  b'"email": "x@example.com"}]'])
def test_signed_garbage_is_a_clear_answer(client: FlaskClient, engine: Engine,
                                          key: ec.EllipticCurvePrivateKey, body: bytes) -> None:
    answer = client.post("/webhooks/sendgrid", data=body, headers=_signed(key, body))
    assert answer.status_code in (200, 400)
    assert _suppressed(engine) == []


def test_no_key_configured_accepts_nothing(web_settings: Settings, engine: Engine,
                                           key: ec.EllipticCurvePrivateKey) -> None:
    plain = create_app(web_settings, engine=engine).test_client()
    body = _events(("e1", "bounce", "b@example.com"))
    assert plain.post("/webhooks/sendgrid", data=body, headers=_signed(key, body)
                      ).status_code == 503
    assert _suppressed(engine) == []


def test_pem_keys_work_too(web_settings: Settings, engine: Engine,
                           key: ec.EllipticCurvePrivateKey) -> None:
    pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                        serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    app = create_app(web_settings.model_copy(update={"sendgrid_webhook_public_key": pem}),
                     engine=engine)
    body = _events(("e9", "spamreport", "p@example.com"))
    answer = app.test_client().post("/webhooks/sendgrid", data=body, headers=_signed(key, body))
    assert answer.status_code == 200 and _suppressed(engine) == [("p@example.com", "spamreport")]


@pytest.mark.parametrize("offset", [-601, 601, -86_400])
def test_signed_requests_from_another_time_are_replays(
    client: FlaskClient, engine: Engine, key: ec.EllipticCurvePrivateKey, offset: int
) -> None:
    _confirmed(engine, "b@example.com")
    body = _events(("e1", "bounce", "b@example.com"))
    stale = _signed(key, body, str(int(time.time()) + offset))
    answer = client.post("/webhooks/sendgrid", data=body, headers=stale)
    assert answer.status_code == 403 and "replayed" in answer.json["error"]
    assert _status(engine, "b@example.com") == "confirmed" and _suppressed(engine) == []
    # Within the window either way is fine: clocks drift.
    fresh = _signed(key, body, str(int(time.time()) - 540))
    assert client.post("/webhooks/sendgrid", data=body, headers=fresh).status_code == 200


@pytest.mark.parametrize("timestamp", ["1.79e9", "-1", "\u0661\u0667\u0669", "", "9" * 40])
def test_signed_requests_with_a_timestamp_that_is_no_unix_time_are_refused(
    client: FlaskClient, engine: Engine, key: ec.EllipticCurvePrivateKey, timestamp: str
) -> None:
    body = _events(("e1", "bounce", "b@example.com"))
    headers = _signed(key, body, timestamp)
    answer = client.post("/webhooks/sendgrid", data=body,
                         headers={k: v.encode().decode("latin-1") for k, v in headers.items()})
    assert answer.status_code == 403
    assert _suppressed(engine) == []


@pytest.mark.parametrize("depth", [9, 100_000])
def test_a_signed_body_nested_too_deep_is_a_400_not_a_crash(
    client: FlaskClient, engine: Engine, key: ec.EllipticCurvePrivateKey, depth: int
) -> None:
    body = b"[" * depth + b"]" * depth
    answer = client.post("/webhooks/sendgrid", data=body, headers=_signed(key, body))
    assert answer.status_code == 400 and "nests deeper" in answer.json["error"]
    # Brackets inside strings are text, not nesting.
    text = json.dumps([{"sg_event_id": "e1", "event": "bounce", "email": "x@example.com",
                        "reason": "[[[[[[[[[[{{{{{{{{{{" * 50}]).encode()
    assert client.post("/webhooks/sendgrid", data=text, headers=_signed(key, text)
                       ).status_code == 200


def test_bounces_find_their_reader_whatever_the_case_or_idn_form(
    client: FlaskClient, engine: Engine, key: ec.EllipticCurvePrivateKey
) -> None:
    email = reader_input.parse_email("Reader@B\u00fccher.example")
    assert email == "reader@xn--bcher-kva.example"
    _confirmed(engine, email)
    body = _events(("e1", "bounce", "READER@B\u00dcCHER.EXAMPLE"),
                   ("e2", "dropped", "reader@xn--bcher-kva.example"),
                   ("e3", "spamreport", "Reader@Xn--Bcher-Kva.Example"))
    answer = client.post("/webhooks/sendgrid", data=body, headers=_signed(key, body))
    assert answer.status_code == 200
    # Three events, one address: one suppression, counted once.
    assert answer.json == {"received": 3, "duplicates": 0, "suppressed": 1}
    assert _status(engine, email) == "complained"  # the latest event says why
    assert _suppressed(engine) == [(email, "bounce")]
