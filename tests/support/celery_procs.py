"""Real Celery workers and beat as subprocesses, each in its own session (so a test can
kill -9 a worker together with its pool children, as an OOM kill would)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from tests.conftest import REPO

CELERY = [sys.executable, "-m", "celery", "-A", "workers.app"]


def start_worker(env: dict[str, str], log: Path, *, queues: str = "ingest,llm,mail,signup,default",
                 pool: str = "prefork", concurrency: int = 2,
                 name: str = "worker") -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [*CELERY, "worker", "-Q", queues, "--pool", pool, "--concurrency",
             str(concurrency), "--loglevel", "INFO", "-n", f"{name}@%h",
             "--without-heartbeat", "--without-gossip", "--without-mingle"],
            cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def start_beat(env: dict[str, str], workdir: Path) -> subprocess.Popen[bytes]:
    with (workdir / "beat.log").open("ab") as out:
        return subprocess.Popen(
            [*CELERY, "beat", "--loglevel", "INFO",
             "--schedule", str(workdir / "celerybeat-schedule")],
            cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def stop(proc: subprocess.Popen[bytes], timeout: float = 30) -> int | None:
    """SIGTERM (warm shutdown); SIGKILL to the whole group if it does not stop in time."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            kill_group(proc)
    return proc.returncode


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(10)


@contextlib.contextmanager
def running(*procs: subprocess.Popen[bytes]) -> Iterator[None]:
    try:
        yield
    finally:
        for proc in procs:
            stop(proc)


def wait_until(condition: Callable[[], object], timeout: float, what: str,
               logs: tuple[Path, ...] = ()) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    tails = "\n".join(f"--- {p}\n{p.read_text(errors='replace')[-3000:]}"
                      for p in logs if p.exists())
    raise AssertionError(f"{what}: not after {timeout:.0f}s\n{tails}")
