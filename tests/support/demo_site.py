"""A newcomer's sign-up on a running demo, over HTTP: the form posted, the confirmation
mail the demo's Celery worker writes to the outbox, its link opened and the button pressed.
The site and the worker are separate processes: this is where their keys must agree."""

from __future__ import annotations

import email
import email.policy
import http.cookiejar
import re
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from tests.support.celery_procs import wait_until

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def _open(opener: urllib.request.OpenerDirector, request: urllib.request.Request
          ) -> tuple[int, str]:
    try:
        with opener.open(request, timeout=10) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _post(opener: urllib.request.OpenerDirector, site: str, path: str,
          form: list[tuple[str, str]]) -> tuple[int, str]:
    # A browser's form post: our own Origin, urlencoded fields.
    request = urllib.request.Request(f"{site}{path}", data=urllib.parse.urlencode(form).encode(),
                                     headers={"Origin": site}, method="POST")
    return _open(opener, request)


def confirmation_link(outbox: Path, address: str) -> str | None:
    for path in sorted(outbox.glob("*.eml")):
        mail = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        if address in str(mail["To"]):
            body = mail.get_body(("plain",))
            found = re.search(r"https?://\S+/confirm/\S+", body.get_content() if body else "")
            if found:
                return found.group(0)
    return None


def sign_up_and_confirm(site: str, outbox: Path, address: str,
                        logs: tuple[Path, ...] = ()) -> str:
    """The confirmed page's text, after signing `address` up for one topic."""
    opener = urllib.request.build_opener(
        urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
    status, page = _post(opener, site, "/subscribe",
                         [("email", address), ("topics", "llm"), ("frequency", "daily")])
    assert status == 200, page[:2000]
    wait_until(lambda: confirmation_link(outbox, address) is not None, 60,
               f"the worker's confirmation mail to {address} in {outbox}", logs=logs)
    link = confirmation_link(outbox, address)
    assert link is not None and link.startswith(site), link
    status, page = _open(opener, urllib.request.Request(link))
    assert status == 200, f"{link} answered {status}: {page[:2000]}"
    token = _CSRF.search(page)
    assert token, page[:2000]
    status, page = _post(opener, site, urllib.parse.urlsplit(link).path,
                         [("csrf_token", token.group(1))])
    assert status == 200, page[:2000]
    return page
