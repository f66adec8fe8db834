"""The operator's desk at /admin: the frame (sign-in, sessions, CSRF, the audit trail of
every action: `frame`) and the pages that are routes on its blueprint.

- `auth`: sign in and out; `audit_pages`: the audit log;
- `overview`: the charts (newsletter/admin/stats.py, charts.py);
- `subscribers`, `editions`, `cards`, `feeds`: the pages to act on, reading through
  newsletter/admin/lookups.py, each action a domain function in newsletter/admin/actions.py.

A page imports the frame, never this package, so the pages register on the blueprint
without an import cycle; importing this package registers them all.
"""

from newsletter.web.admin import (  # noqa: F401  (each registers its routes)
    audit_pages,
    auth,
    cards,
    editions,
    feeds,
    overview,
    subscribers,
)
from newsletter.web.admin.frame import blueprint

__all__ = ["blueprint"]
