"""One installation, one development signing key, whichever process signs.

The demo's worker was given an absolute SQLite URL and its site a relative one; with a key
derived from that string, every confirmation the worker mailed was "not valid" on the
site. The key is now made once at random and kept in the database every process shares.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from newsletter import db, installation
from newsletter.config import Settings
from newsletter.readers.links import LinkHolder, Links, signing_key
from tests.conftest import REPO

HOLDER = LinkHolder(7, "k" * 22)

SIGN_ELSEWHERE = """
import sys
from newsletter.config import Settings
from newsletter.readers.links import LinkHolder, Links
links = Links.from_settings(Settings(database_url=sys.argv[1]))
print(links.manage_token(LinkHolder(7, "k" * 22)))
"""


def signed_by_another_process(url: str, cwd: Path) -> str:
    env = {**os.environ, "PAPERWIRE_DEV": "1", "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", SIGN_ELSEWHERE, url], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.fixture
def fresh_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    # Each process reads the key once; a new process starts with nothing remembered.
    monkeypatch.setattr(installation, "_known", {})


def test_a_link_the_worker_signs_with_an_absolute_url_opens_on_a_site_with_a_relative_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_cache: None) -> None:
    monkeypatch.chdir(tmp_path)
    relative, absolute = "sqlite:///paperwire.db", f"sqlite:///{tmp_path / 'paperwire.db'}"
    engine = db.make_engine(relative)
    db.upgrade(engine)
    token = signed_by_another_process(absolute, cwd=REPO)
    site = Links.from_settings(Settings(database_url=relative), engine)
    assert site.read_manage(token) == HOLDER


def test_the_key_is_random_per_installation_and_kept_across_restarts(
        tmp_path: Path, fresh_cache: None) -> None:
    urls = [f"sqlite:///{tmp_path / name}" for name in ("a.db", "b.db")]
    for url in urls:
        db.upgrade(db.make_engine(url))
    first, second = (signing_key(Settings(database_url=url)) for url in urls)
    assert first != second
    # Derived from nothing public: not the URL's hash the old dev key was.
    assert first != hashlib.sha256(f"paperwire-dev:{urls[0]}".encode()).hexdigest()
    assert len(first) == 64
    # A restarted process reads the same key back.
    installation._known.clear()
    assert signing_key(Settings(database_url=urls[0])) == first
    token = signed_by_another_process(urls[0], cwd=tmp_path)
    assert Links(first, "http://x").read_manage(token) == HOLDER


def test_a_second_process_reads_the_first_ones_key(database_url: str, engine: Engine,
                                                   fresh_cache: None) -> None:
    # Each asks with an insert that yields to a row already there, then reads the row.
    keys = {installation.dev_signing_key(engine)}
    installation._known.clear()
    with engine.begin() as conn:
        assert conn.execute(text("SELECT count(*) FROM installation_secrets")).scalar() == 1
    keys.add(installation.dev_signing_key(db.make_engine(database_url)))
    assert len(keys) == 1


def test_secret_key_wins_and_touches_no_database(tmp_path: Path, fresh_cache: None) -> None:
    missing = f"sqlite:///{tmp_path / 'nowhere' / 'none.db'}"
    assert signing_key(Settings(database_url=missing, secret_key="s" * 40)) == "s" * 40
    assert not (tmp_path / "nowhere").exists()
