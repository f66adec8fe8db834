"""The access log a real gunicorn writes with our logger class keeps routes, not tokens."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from newsletter.web.access_log import without_tokens
from tests.support.servers import free_port

TOKEN = "MTIzLnNlY3JldGtleQ.c2lnbmF0dXJlLXNlY3JldA"


def test_tokens_become_a_placeholder_and_routes_stay() -> None:
    assert without_tokens(f"GET /manage/{TOKEN}/export?x=1 HTTP/1.1") == (
        "GET /manage/[token]/export?x=1 HTTP/1.1")
    assert without_tokens(f"https://papers.example/unsubscribe/{TOKEN}") == (
        "https://papers.example/unsubscribe/[token]")
    assert without_tokens("GET /papers/2609.26811 HTTP/1.1") == "GET /papers/2609.26811 HTTP/1.1"


def test_gunicorn_writes_no_token_to_its_access_log(tmp_path: Path) -> None:
    port, log = free_port(), tmp_path / "access.log"
    env = {**os.environ, "PAPERWIRE_DEV": "1",
           "DATABASE_URL": f"sqlite:///{tmp_path / 'paperwire.db'}"}
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-w", "1", "-b", f"127.0.0.1:{port}",
         "--access-logfile", str(log),
         "--logger-class", "newsletter.web.access_log.TokenlessLogger",
         "newsletter.web:create_app()"], env=env, cwd=tmp_path,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        paths = [f"/manage/{TOKEN}", f"/unsubscribe/{TOKEN}", f"/confirm/{TOKEN}",
                 f"/digest/{TOKEN}", "/days"]
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2)
                break
            except (urllib.error.URLError, ConnectionError):
                assert time.monotonic() < deadline, "gunicorn did not start"
                time.sleep(0.2)
        for path in paths:
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}{path}",
                headers={"Referer": f"http://127.0.0.1:{port}/manage/{TOKEN}"})
            # A made-up token is a 404: what matters is the log.
            with contextlib.suppress(urllib.error.HTTPError):
                urllib.request.urlopen(request, timeout=5)
    finally:
        server.terminate()
        server.wait(30)
    written = log.read_text()
    assert TOKEN not in written
    for route in ("/manage/[token]", "/unsubscribe/[token]", "/confirm/[token]",
                  "/digest/[token]", "GET /days"):
        assert route in written, route
