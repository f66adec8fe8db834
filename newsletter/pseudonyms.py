"""Keyed hashes that stand in for what we must recognise but not keep.

A rate limit must count an address or an IP, and a sign-in throttle the text typed as an
account, yet neither should be readable where the count lives (Redis keys, a table, an
audit row). A plain SHA-256 of an address is no cover: anyone can hash a list of
addresses and compare. An HMAC under a key derived from the signing key
(SECRET_KEY, or the development key in the database) is: without the key it names nobody.

Each purpose has its own derived key, so a value's pseudonym for one purpose says nothing
about its pseudonym for another.
"""

from __future__ import annotations

import hashlib
import hmac
from functools import lru_cache

# Hex characters kept: 128 bits, far from any collision among real inputs.
LENGTH = 32


class Pseudonyms:
    def __init__(self, signing_key: str) -> None:
        self._secret = signing_key.encode("utf-8")

    def of(self, purpose: str, value: str) -> str:
        """The pseudonym of `value` for `purpose`: the same for the same value, every time
        and in every process that shares the signing key."""
        return hmac.new(self._key(purpose), value.encode("utf-8"),
                        hashlib.sha256).hexdigest()[:LENGTH]

    @lru_cache(maxsize=8)  # noqa: B019 (a handful of purposes, one object per process)
    def _key(self, purpose: str) -> bytes:
        return hmac.digest(self._secret, f"paperwire pseudonym: {purpose}".encode(), "sha256")
