"""Forged and malformed link tokens: whatever they hold, every token route answers 404.

The forger here has the signing key (as after a leak), so the signature holds and only what
the token names is wrong: ids no row can have, payloads of the wrong shape. A 500 would
mean the database saw the number first.
"""

from __future__ import annotations

import string

import pytest
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from itsdangerous import Signer, URLSafeTimedSerializer

from newsletter.config import Settings
from newsletter.readers.links import _SALTS, MAX_ROW_ID, BadLink, LinkHolder, Links, signing_key
from tests.support import web

web_settings = web.web_settings
app = web.app
client = web.client

ROUTES = [  # (method, path template, purpose)
    ("GET", "/manage/{}", "manage"),
    ("POST", "/manage/{}", "manage"),
    ("GET", "/manage/{}/export", "manage"),
    ("POST", "/manage/{}/delete", "manage"),
    ("POST", "/manage/{}/resubscribe", "manage"),
    ("GET", "/unsubscribe/{}", "unsubscribe"),
    ("POST", "/unsubscribe/{}", "unsubscribe"),
    ("GET", "/digest/{}", "digest"),
    ("GET", "/confirm/{}", "confirm"),
    ("POST", "/confirm/{}", "confirm"),
]
NUMBERS = ["1" + "0" * 30, str(MAX_ROW_ID + 1), str(2**63), "0", "-1", "1e9", "\u0661\u0662"]


def _forged(settings: Settings, purpose: str, number: str) -> str:
    key = signing_key(settings)
    if purpose == "confirm":
        digits = number.lstrip("-")
        value: object = int(number) if digits.isascii() and digits.isdigit() else number
        return URLSafeTimedSerializer(key, salt=_SALTS["confirm"]).dumps([value, "nonce"])
    return Signer(key, salt=_SALTS[purpose]).sign(f"{number}.somekey").decode()


def _answer(client: FlaskClient, method: str, path: str, csrf: str) -> int:
    # POSTs carry a good form token, so only the link token can be what is refused.
    data = {"List-Unsubscribe": "One-Click"} if path.startswith("/unsubscribe") else {
        "csrf_token": csrf, "topics": "llm", "frequency": "daily"}
    return client.open(path, method=method, data=data).status_code


@pytest.mark.parametrize("number", NUMBERS)
def test_a_validly_signed_token_naming_an_impossible_row_is_a_404(
    web_settings: Settings, client: FlaskClient, number: str
) -> None:
    csrf = web.session_form_token(client)
    for method, path, purpose in ROUTES:
        token = _forged(web_settings, purpose, number)
        assert _answer(client, method, path.format(token), csrf) == 404, (method, path, number)


def test_the_bounds_are_the_rows_a_database_can_hold() -> None:
    links = Links("k" * 32, "https://paperwire.test")
    with pytest.raises(BadLink):
        links.read_manage(Signer("k" * 32, salt=_SALTS["manage"]).sign(
            f"{MAX_ROW_ID + 1}.key").decode())
    assert links.read_manage(Signer("k" * 32, salt=_SALTS["manage"]).sign(
        f"{MAX_ROW_ID}.key").decode()).subscriber_id == MAX_ROW_ID
    with pytest.raises(BadLink):
        links.read_confirm(URLSafeTimedSerializer("k" * 32, salt=_SALTS["confirm"]).dumps(
            [True, "nonce"]))


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(token=st.text(alphabet=string.printable + "é\u0661.-_", max_size=200))
def test_any_token_text_is_a_404_never_a_500(client: FlaskClient, token: str) -> None:
    csrf = web.session_form_token(client)
    token = token.replace("/", "").replace("?", "").replace("#", "").strip() or "x"
    for method, path, _ in ROUTES:
        assert _answer(client, method, path.format(token), csrf) == 404, (method, path, token)


@pytest.mark.parametrize("purpose", ["manage", "unsubscribe", "digest"])
def test_links_are_the_signatures_itsdangerous_makes_and_reads(purpose: str) -> None:
    # The send signs with a key derived once; links already in readers' inboxes were
    # signed by itsdangerous's Signer, so both must be the same token, byte for byte.
    links = Links("k" * 32, "https://paperwire.test")
    holder_key = "Zm9v-bar_baz"
    made = {"manage": lambda: links.manage_token(LinkHolder(42, holder_key)),
            "unsubscribe": lambda: links.unsubscribe_token(LinkHolder(42, holder_key)),
            "digest": lambda: links.digest_token(42, holder_key)}[purpose]()
    assert made == Signer("k" * 32, salt=_SALTS[purpose]).sign(f"42.{holder_key}").decode()
    assert links._unsign(purpose, made) == (42, holder_key)
    other = "manage" if purpose != "manage" else "unsubscribe"
    with pytest.raises(BadLink):
        links._unsign(other, made)
