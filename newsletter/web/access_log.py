"""gunicorn's access log, without the secrets that travel in our URLs.

Manage, unsubscribe, confirmation, view-in-browser and rating links carry signed tokens that act
as the reader's key; an access log (and whatever ships it elsewhere) must not collect
them. Use with `gunicorn --logger-class newsletter.web.access_log.TokenlessLogger`: the
request line, the path and the Referer (our own pages send it for same-origin posts) keep
their route and lose the token.
"""

from __future__ import annotations

import re
from typing import Any

from gunicorn.glogging import Logger

_TOKEN = re.compile(r"/(confirm|manage|unsubscribe|digest|rate)/[^/?#\s]+")
# A paper page opened from a digest carries the reader's rating token: /papers/<key>?rate=
_RATE_PARAMETER = re.compile(r"([?&]rate=)[^&#\s]+")


def without_tokens(text: str) -> str:
    return _RATE_PARAMETER.sub(r"\1[token]", _TOKEN.sub(r"/\1/[token]", text))


class TokenlessLogger(Logger):
    def atoms(self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any
              ) -> dict[str, Any]:
        atoms = super().atoms(resp, req, environ, request_time)
        for key, value in atoms.items():
            if isinstance(value, str) and (key in ("r", "U", "f") or key.endswith("}i")):
                atoms[key] = without_tokens(value)
        return atoms
