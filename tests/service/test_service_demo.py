"""The README's first command from a clean copy of the repository, with no network:
`newsletter demo` leaves a digest in the outbox, serves the site with a worker and beat on
an embedded Redis, and stops cleanly on SIGTERM."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.support.celery_procs import wait_until
from tests.support.demo_site import sign_up_and_confirm
from tests.support.servers import free_port

RUN = [sys.executable, "-c", "from newsletter.cli import main; main()"]


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The repository's files as a fresh clone would have them (tracked, plus new files
    not yet committed), and none of this checkout's state (database, outbox, venv)."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO, check=True, capture_output=True).stdout.decode().split("\0")
    target = tmp_path_factory.mktemp("clone") / "paperwire"
    for name in filter(None, listed):
        source = REPO / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


def environment(clone: Path) -> dict[str, str]:
    closed = f"http://127.0.0.1:{free_port()}/rss/"  # no network: arXiv does not answer
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "PAPERWIRE"))}
    # The copy's code, not this checkout's (installed in the venv in editable mode).
    env.update(PYTHONPATH=str(clone), ARXIV_RSS_URL=closed, LOG_LEVEL="ERROR")
    return env


def test_the_copy_runs_its_own_code(clone: Path) -> None:
    found = subprocess.run([sys.executable, "-c", "import newsletter; print(newsletter.__file__)"],
                           cwd=clone, env=environment(clone), capture_output=True, text=True)
    assert found.stdout.strip() == str(clone / "newsletter" / "__init__.py")


def test_demo_leaves_a_digest_in_the_outbox(clone: Path) -> None:
    done = subprocess.run([*RUN, "demo", "--no-serve"], cwd=clone, env=environment(clone),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "arXiv is not reachable from here" in done.stderr
    # Counted as the front page and `status` count them: new papers, then revised ones.
    assert "3 new papers and 1 revised on 2026-09-24 (from the shipped samples):" in done.stdout
    [eml] = (clone / "outbox").glob("*.eml")
    assert f"outbox: {clone / 'outbox'}" in done.stdout and str(eml) in done.stdout
    body = eml.read_text()
    assert "To: demo@example.org" in body and "Subject:" in body
    assert (clone / "paperwire.db").is_file()


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def demo_folders() -> set[Path]:
    return set(Path(tempfile.gettempdir()).glob("paperwire-demo-*"))


def test_demo_serves_the_site_and_stops_cleanly(clone: Path, tmp_path: Path) -> None:
    before = demo_folders()
    port = free_port()
    out, err = tmp_path / "out.txt", tmp_path / "err.txt"
    with out.open("w") as stdout, err.open("w") as stderr:
        proc = subprocess.Popen([*RUN, "demo", "--port", str(port)], cwd=clone,
                                env=environment(clone), stdout=stdout, stderr=stderr)
    try:
        site = f"http://127.0.0.1:{port}"
        wait_until(lambda: f"site: {site}" in out.read_text(), 90, "the site's URL printed",
                   logs=(out, err))

        def healthy() -> bool:
            try:
                status, body = _get(f"{site}/healthz")
            except OSError:
                return False
            return status == 200 and json.loads(body)["broker"] == "ok"

        wait_until(healthy, 30, "/healthz answers with the broker up", logs=(out, err))
        health = json.loads(_get(f"{site}/healthz")[1])
        assert health["status"] == "ok" and health["database"] == "ok"
        assert isinstance(health["last_ingest_age_seconds"], int)
        status, page = _get(f"{site}/")
        assert status == 200 and "The Drift Contract" in page
        status, outbox = _get(f"{site}/outbox")
        assert status == 200 and "demo@example.org" in outbox
        logs = Path(re.search(r"logs in (\S+)\.", out.read_text()).group(1))  # type: ignore[union-attr]
        assert logs == clone / "demo-logs"
        wait_until(lambda: "ready." in (logs / "worker.log").read_text(), 30,
                   "the worker is up", logs=(logs / "worker.log",))
        # The worker mails the confirmation; the site must take its link.
        confirmed = sign_up_and_confirm(site, clone / "outbox", "newcomer@example.org",
                                        logs=(logs / "worker.log", err))
        assert "You are subscribed" in confirmed
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(90)
    assert code == 0, err.read_text()
    stopped = err.read_text()
    for name in ("beat", "worker", "redis"):
        assert f"{name} stopped (exit 0)" in stopped
    assert "Warm shutdown" in (logs / "worker.log").read_text()
    # Nothing left behind in the temporary folder; the logs stay where the output said.
    assert demo_folders() <= before
