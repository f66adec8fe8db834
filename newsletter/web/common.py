"""What every view needs: the app's services and who is asking."""

from __future__ import annotations

from flask import current_app, request

from newsletter.signup import Services
from newsletter.subscriber import Client

SERVICES = "paperwire"


def services() -> Services:
    return current_app.extensions[SERVICES]


def client() -> Client:
    return Client(ip=request.remote_addr, user_agent=request.user_agent.string)


def no_store(response):  # type: ignore[no-untyped-def]
    """Pages opened with a token must not linger in shared caches or history snapshots."""
    response.headers["Cache-Control"] = "no-store"
    return response
