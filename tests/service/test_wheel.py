"""The wheel a user installs works on its own: built from the repository with
`python -m build --wheel`, installed into a fresh venv (its dependencies from the package
index, as pip is configured here), then `newsletter demo --no-serve --offline` run from an
empty directory, with nothing of the source tree on the path and no Paperwire variable in
the environment (the demo must switch itself into dev mode).

What a user sees is checked: the database it made is migrated to the package's own head
revision, the sample papers have cards, and the outbox holds the demo reader's digest. Then
the served demo, from the wheel alone: a sign-up on its site is confirmed from the mail its
Celery worker sends.
"""

from __future__ import annotations

import email
import email.policy
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
from setuptools import find_namespace_packages

from tests.conftest import REPO
from tests.support.celery_procs import wait_until
from tests.support.demo_site import sign_up_and_confirm
from tests.support.servers import free_port

# What the wheel is built from: the same files the Dockerfile's build stage copies.
SOURCES = ("pyproject.toml", "setup.py", "README.md", "newsletter", "workers", "email_templates",
           "alembic")
# pip's own settings (index, find-links, cache, certificates) and the basics of a shell.
KEPT_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "SSL_CERT_FILE")


def user_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k in KEPT_ENV or k.startswith("PIP_")}
    env["PATH"] = os.pathsep.join(
        p for p in env.get("PATH", "").split(os.pathsep)
        if not Path(p).resolve().is_relative_to(REPO))
    return env


def assigned(name: str, source: str) -> list[str]:
    """The string values a migration module assigns to `name` (revision, down_revision)."""
    return re.findall(rf"^{name}\b[^=]*=\s*[\"'](\w+)[\"']", source, re.M)


def run(args: list[str | Path], cwd: Path, env: dict[str, str]) -> str:
    proc = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, (
        f"{' '.join(map(str, args))} exited {proc.returncode}\n{proc.stdout[-4000:]}\n"
        f"{proc.stderr[-4000:]}")
    return proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    source = tmp_path_factory.mktemp("source")
    for name in SOURCES:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, source / name,
                            # No compiled catalog: the build must make them.
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.mo"))
        else:
            shutil.copy(src, source / name)
    dist = tmp_path_factory.mktemp("dist")
    run([sys.executable, "-m", "build", "--wheel", "--outdir", dist, source], source,
        user_env())
    (built,) = dist.glob("paperwire-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    venv = tmp_path_factory.mktemp("venv")
    env = user_env()
    run([sys.executable, "-m", "venv", venv], venv, env)
    run([venv / "bin/pip", "install", "--quiet", wheel], venv, env)
    return venv


def test_every_folder_of_the_source_tree_ships_and_the_top_level_data_lands_in_the_package(
        wheel: Path) -> None:
    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
                 ["packages"])
    found = set(find_namespace_packages(where=str(REPO), include=["newsletter*", "workers*"]))
    assert found <= listed, f"add to [tool.setuptools] packages: {sorted(found - listed)}"
    with zipfile.ZipFile(wheel) as built:
        names = set(built.namelist())
    # email_templates/ and alembic/ stand at the top level and ship inside the package.
    for top, inside in (("email_templates", "newsletter/email_templates"),
                        ("alembic", "newsletter/migrations")):
        for path in (REPO / top).rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts:
                shipped = f"{inside}/{path.relative_to(REPO / top).as_posix()}"
                assert shipped in names, f"{shipped} is not in the wheel"
    assert not any(n.startswith(("alembic/", "email_templates/")) for n in names), \
        "a top-level alembic package would shadow the Alembic library"
    # Every catalog ships compiled, made from its .po as the wheel was built.
    catalogs = list((REPO / "newsletter/translations").rglob("*.po"))
    assert catalogs
    for po in catalogs:
        mo = po.with_suffix(".mo").relative_to(REPO).as_posix()
        assert mo in names, f"{mo} is not in the wheel"


def test_the_installed_wheel_runs_the_demo_from_an_empty_directory(
        installed: Path, tmp_path: Path) -> None:
    env = user_env()
    # Nothing of the checkout is importable: the package comes from the venv alone.
    where = run([installed / "bin/python", "-c",
                 "import newsletter, workers; print(newsletter.__file__, workers.__file__)"],
                tmp_path, env)
    assert str(REPO) not in where and str(installed) in where

    out = run([installed / "bin/newsletter", "demo", "--no-serve", "--offline"], tmp_path, env)

    database = re.search(r"^database: sqlite:///(.+)$", out, re.M)
    assert database, out
    db_path = tmp_path / database.group(1)
    assert db_path.is_file(), out
    migrations = [p.read_text() for p in (installed / "lib").glob(
        "python3*/site-packages/newsletter/migrations/versions/*.py")]
    revisions = {m for text in migrations for m in assigned("revision", text)}
    parents = {m for text in migrations for m in assigned("down_revision", text)}
    assert revisions, "the wheel ships no migrations"
    with sqlite3.connect(db_path) as conn:
        (revision,) = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        papers = conn.execute("SELECT count(*) FROM papers").fetchone()[0]
        cards = conn.execute("SELECT count(*) FROM cards WHERE status = 'ok'").fetchone()[0]
    assert {revision} == revisions - parents, "not migrated to the shipped head"
    assert papers > 0 and cards > 0, (papers, cards)

    outbox = re.search(r"^outbox: (.+)$", out, re.M)
    assert outbox, out
    mails = sorted(Path(outbox.group(1)).glob("*.eml"))
    assert mails, f"no .eml in {outbox.group(1)}"
    digests = [m for m in (email.message_from_bytes(p.read_bytes(), policy=email.policy.default)
                           for p in mails) if "demo@example.org" in str(m["To"])]
    assert digests, [m.name for m in mails]
    text = digests[-1].get_body(("plain",))
    assert text is not None
    body = text.get_content()
    # The demo lists the day's papers; the digest carries at least one of their titles.
    titles = re.findall(r"^  \S+\s{2,}(.+)$", out, re.M)
    assert any(t.strip()[:40] in body for t in titles), (titles, body[:2000])


def test_a_sign_up_on_the_installed_wheels_demo_site_is_confirmed(
        installed: Path, tmp_path: Path) -> None:
    # The served demo: its site in this process tree, its Celery worker in another, both
    # from the wheel; the worker's confirmation link must open on the site.
    port = free_port()
    out, err = tmp_path / "out.txt", tmp_path / "err.txt"
    with out.open("w") as stdout, err.open("w") as stderr:
        proc = subprocess.Popen([installed / "bin/newsletter", "demo", "--offline", "--port",
                                 str(port)], cwd=tmp_path, env=user_env(), stdout=stdout,
                                stderr=stderr)
    site = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: f"site: {site}" in out.read_text(), 120, "the site's URL printed",
                   logs=(out, err))
        page = sign_up_and_confirm(site, tmp_path / "outbox", "newcomer@example.org",
                                   logs=(tmp_path / "demo-logs" / "worker.log", err))
        assert "You are subscribed" in page
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(90)
    assert code == 0, err.read_text()[-3000:]
