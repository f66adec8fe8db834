"""Signed links: how a reader proves, without an account, that an email reached them.

Each purpose has its own salt, so a token made for one page is worthless on another.
Manage and unsubscribe tokens never expire (old digests must keep working) and name the
subscriber's row and its random `link_key`: deleting the row revokes every link made for
it, even if the database later reuses the id. Confirmation tokens also carry the pending
confirmation's nonce and a timestamp: they expire, and they work once.

Rating links ("more like this" on every paper of every digest) are made about a million
times per edition, so they are short and cheap: `<reader id>.<paper id>.<mac>`, where the
MAC (12 bytes of HMAC-SHA256 under a key kept for this purpose alone) covers the reader's
id, their link key and the paper's id. The key is not in the token: a rating link is read
in two steps, its shape (`read_rate`), then, with the reader's row in hand, its MAC
(`verify_rate`). So a deleted reader's links are revoked like their other links; a forged
token naming a real reader is a bad link, and one naming a missing reader cannot be told
from a revoked one.
"""

from __future__ import annotations

import base64
import hmac
import logging
import re
from dataclasses import dataclass
from datetime import timedelta

from itsdangerous import BadSignature, SignatureExpired, Signer, URLSafeTimedSerializer
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from newsletter.config import ConfigError, Settings
from newsletter.db import engine_for
from newsletter.installation import dev_signing_key

log = logging.getLogger(__name__)

CONFIRM_MAX_AGE = timedelta(days=3)
# Row ids are 32-bit on Postgres: a larger number can name no row, and would reach the
# database as an error (or overflow SQLite's driver) instead of a plain "no such link".
MAX_ROW_ID = 2**31 - 1

_SALTS = {
    "confirm": "paperwire.confirm.v1",
    "manage": "paperwire.manage.v1",
    "unsubscribe": "paperwire.unsubscribe.v1",
    "digest": "paperwire.digest.v1",
}
_RATE_PURPOSE = b"paperwire.rate.v1"
# 12 bytes of MAC, 16 characters: a forger must guess 96 bits per reader and paper.
_RATE_MAC_BYTES = 12
RATE_DIRECTIONS = ("up", "down", "clear")
# Ids written as we write them (no sign, no leading zero), and the MAC in base64url.
_RATE_TOKEN = re.compile(r"([1-9][0-9]{0,9})\.([1-9][0-9]{0,9})\.([A-Za-z0-9_-]{16})")


class BadLink(Exception):
    """The token was not made by us for this purpose (tampered, truncated, or another page's)."""


class ExpiredLink(BadLink):
    """A genuine confirmation token past its age."""


def signing_key(settings: Settings, engine: Engine | None = None) -> str:
    """SECRET_KEY, or in dev mode the installation's own random key, kept in its database
    (`installation.dev_signing_key`), so every process of it signs alike.

    Config refuses to start without SECRET_KEY outside dev mode; in dev mode a start whose
    database cannot be read is refused (ConfigError), as a start without a key would be.
    """
    if settings.secret_key:
        return settings.secret_key
    log.warning("dev mode: SECRET_KEY is not set; signing links with this installation's "
                "development key, kept in its database. Set SECRET_KEY for real use.")
    try:
        return dev_signing_key(engine or engine_for(settings.database_url))
    except SQLAlchemyError as exc:
        # Any other key would sign links the installation's other processes reject.
        raise ConfigError(
            "dev mode keeps its signing key in the database, which cannot be read "
            f"({type(exc).__name__}): check DATABASE_URL, or set SECRET_KEY") from exc


@dataclass(frozen=True)
class LinkHolder:
    """What a manage or unsubscribe link names: the subscriber's row and its link key."""

    subscriber_id: int
    link_key: str


@dataclass(frozen=True)
class RateClaim:
    """What a rating link says before it is checked against the reader's link key."""

    subscriber_id: int
    paper_id: int
    mac: str


@dataclass(frozen=True)
class ConfirmClaim:
    subscriber_id: int
    nonce: str


class Links:
    def __init__(self, secret_key: str, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")
        # Links that never expire need no serializer: a salted signature over "id.key" is
        # as strong, and four times cheaper (three per reader per digest, at 100,000 readers).
        self._plain = {p: Signer(secret_key, salt=s) for p, s in _SALTS.items()}
        # The same signatures itsdangerous makes, keyed once: Signer.sign derives its key
        # (one more hash) and sets up a fresh HMAC on every call, which was 14 us of the
        # send's time per link. Reading a link still goes through Signer.unsign.
        self._signing = {p: hmac.new(signer.derive_key(), digestmod=signer.digest_method)
                         for p, signer in self._plain.items()}
        self._timed = URLSafeTimedSerializer(secret_key, salt=_SALTS["confirm"])
        # HMAC-SHA256 keyed once; each token copies it (HMAC.copy skips the key schedule,
        # which is half the cost of a fresh hmac.digest on messages this short).
        self._rate_hmac = hmac.new(hmac.digest(secret_key.encode("utf-8"), _RATE_PURPOSE,
                                               "sha256"), digestmod="sha256")

    @classmethod
    def from_settings(cls, settings: Settings, engine: Engine | None = None) -> Links:
        return cls(signing_key(settings, engine), settings.base_url)

    def confirm_token(self, subscriber_id: int, nonce: str) -> str:
        return self._timed.dumps([subscriber_id, nonce])

    def _sign(self, purpose: str, number: int, key: str) -> str:
        value = f"{number}.{key}"
        return f"{value}.{_mac(self._signing[purpose], value)}"

    def manage_token(self, holder: LinkHolder) -> str:
        return self._sign("manage", holder.subscriber_id, holder.link_key)

    def unsubscribe_token(self, holder: LinkHolder) -> str:
        return self._sign("unsubscribe", holder.subscriber_id, holder.link_key)

    def digest_token(self, delivery_id: int, link_key: str) -> str:
        # Names the delivery and the reader's link key: deleting the reader revokes it.
        return self._sign("digest", delivery_id, link_key)

    def digest_url(self, delivery_id: int, link_key: str) -> str:
        return f"{self.base_url}/digest/{self.digest_token(delivery_id, link_key)}"

    def rate_token(self, holder: LinkHolder, paper_id: int) -> str:
        """The token of a reader's rating links for one paper (both directions share it)."""
        mac = self._rate_mac(holder.subscriber_id, holder.link_key, paper_id)
        return f"{holder.subscriber_id}.{paper_id}.{mac}"

    def rate_url(self, token: str, direction: str) -> str:
        """"More like this" (up), "less like this" (down), or "remove my rating" (clear)."""
        return f"{self.base_url}/rate/{token}/{direction}"

    def read_rate(self, token: str) -> RateClaim:
        """The reader and paper a rating token names; BadLink when it is not shaped like
        one of ours or names an id no row can have. Not yet proof: see `verify_rate`."""
        found = _RATE_TOKEN.fullmatch(token)
        if found is None:
            raise BadLink("not a rating link")
        subscriber_id, paper_id, mac = found.groups()
        return RateClaim(_row_id(int(subscriber_id)), _row_id(int(paper_id)), mac)

    def verify_rate(self, claim: RateClaim, link_key: str) -> LinkHolder:
        """The reader, when the claim was made by us for the row holding `link_key`."""
        expected = self._rate_mac(claim.subscriber_id, link_key, claim.paper_id)
        if not hmac.compare_digest(expected, claim.mac):
            raise BadLink("not a rating link")
        return LinkHolder(claim.subscriber_id, link_key)

    def _rate_mac(self, subscriber_id: int, link_key: str, paper_id: int) -> str:
        return _mac(self._rate_hmac, f"{subscriber_id}.{link_key}.{paper_id}", _RATE_MAC_BYTES)

    def read_digest(self, token: str) -> tuple[int, str]:
        """(delivery id, link key) of a view-in-browser link."""
        return self._unsign("digest", token)

    def confirm_url(self, subscriber_id: int, nonce: str) -> str:
        return f"{self.base_url}/confirm/{self.confirm_token(subscriber_id, nonce)}"

    def manage_url(self, holder: LinkHolder) -> str:
        return f"{self.base_url}/manage/{self.manage_token(holder)}"

    def unsubscribe_url(self, holder: LinkHolder) -> str:
        return f"{self.base_url}/unsubscribe/{self.unsubscribe_token(holder)}"

    def read_confirm(self, token: str, max_age: timedelta = CONFIRM_MAX_AGE) -> ConfirmClaim:
        try:
            value = self._timed.loads(token, max_age=int(max_age.total_seconds()))
        except SignatureExpired:
            raise ExpiredLink("this confirmation link has expired") from None
        except (BadSignature, ValueError, TypeError):
            raise BadLink("not a confirmation link") from None
        subscriber_id, nonce = _pair(value)
        return ConfirmClaim(subscriber_id, nonce)

    def read_manage(self, token: str) -> LinkHolder:
        return self._read("manage", token)

    def read_unsubscribe(self, token: str) -> LinkHolder:
        return self._read("unsubscribe", token)

    def _read(self, purpose: str, token: str) -> LinkHolder:
        return LinkHolder(*self._unsign(purpose, token))

    def _unsign(self, purpose: str, token: str) -> tuple[int, str]:
        try:
            number, _, key = self._plain[purpose].unsign(token).decode("ascii").partition(".")
            # Signed by us, so well-formed unless a future version changes the shape.
            if not (number.isascii() and number.isdigit()) or not key:
                raise ValueError(token)
            return _row_id(int(number)), key
        except (BadSignature, ValueError, UnicodeError):
            raise BadLink(f"not a {purpose} link") from None


def _mac(keyed: hmac.HMAC, message: str, size: int | None = None) -> str:
    """The MAC of `message` under an HMAC keyed once (copied, so the key schedule is not
    run again), its first `size` bytes, in base64url without padding: itsdangerous's
    encoding, and for the 12 bytes of a rating token, 16 characters with none to strip."""
    mac = keyed.copy()
    mac.update(message.encode("utf-8"))
    return base64.urlsafe_b64encode(mac.digest()[:size]).rstrip(b"=").decode("ascii")


def _pair(value: object) -> tuple[int, str]:
    # Signed by us, so well-formed unless a future version changes the shape.
    if (isinstance(value, list) and len(value) == 2 and type(value[0]) is int
            and isinstance(value[1], str)):
        return _row_id(value[0]), value[1]
    raise BadLink("unexpected link payload")


def _row_id(number: int) -> int:
    if not 0 < number <= MAX_ROW_ID:
        raise BadLink("no such row")
    return number
