"""Mail a reader asked for leaves the web request through a queue, never from inside it.

Why: a sign-up that sent its confirmation mail itself took about 18 ms, and one for a
suppressed address, which sends nothing, about 7 ms. The answer page is the same for
both, but the time told a stranger which addresses we know (docs/SECURITY.md, finding 5).
Now every valid sign-up takes the same path: decide and store in one transaction, put one
`MailJob` on the queue (a job that says "nothing to send" when nothing is due), answer.
Rendering and sending happen after the answer, in `services.send_job`.

Two queues behind one interface:
- With a broker (REDIS_URL), the job is written to the `waiting_mail` table, then the
  Celery task `paperwire.send_mail` on the `signup` queue is told of it, by name so the web
  process imports no worker code. Mail workers consume it beside the digests
  (`-Q mail,signup`): Celery's Redis transport takes from its queues in turn, so a
  confirmation does not wait for a whole edition. The worker claims the row before it
  sends and deletes it after, so each job is sent once however often it is handed out.
  A broker that is down costs the request milliseconds (newsletter/broker.py), and the
  job waits in the table: beat's `paperwire.send_waiting_mail` sends what no task took,
  once the broker is back (docs/SECURITY.md, issue 22 finding 3). A job the broker took
  and lost (a Redis restart without persistence) is sent the same way.
- Without one (one machine, `newsletter serve`), a thread in the web process. It is
  started in the process that uses it (gunicorn forks workers after loading the app) and
  drained when the process exits.
"""

from __future__ import annotations

import atexit
import logging
import os
import queue
import threading
import weakref
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, TypeVar

from sqlalchemy import JSON, Column, DateTime, Engine, delete, or_, select, update
from sqlmodel import Field, SQLModel

from newsletter import broker

log = logging.getLogger(__name__)

TASK = "paperwire.send_mail"
QUEUE = "signup"
# A job the broker was told of is normally sent within a second; the sweep leaves younger
# ones to their task.
SWEEP_AFTER = timedelta(seconds=10)
# A claimed job whose worker died is taken again after this: longer than a send with
# its retries and the provider's timeouts.
CLAIM_LEASE = timedelta(minutes=5)
SWEEP_BATCH = 500


@dataclass(frozen=True)
class MailJob:
    """What to mail to whom, as plain values: it may travel through a broker as JSON.

    `kind` is "confirmation", "already_subscribed", "welcome", or None when the request
    decided to mail nothing. A confirmation names the nonce its link carries and the
    choices it lists, as decided in the request: a later sign-up replaces the nonce, and
    the older mail is then not sent at all.
    """

    kind: str | None
    subscriber_id: int | None = None
    limited: bool = False  # an anonymous sign-up: a refused send frees the 10-minute wait
    nonce: str | None = None
    topics: tuple[str, ...] = ()
    frequency: str = "daily"

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "topics": list(self.topics)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> MailJob:
        return cls(kind=data.get("kind"), subscriber_id=data.get("subscriber_id"),
                   limited=bool(data.get("limited")), nonce=data.get("nonce"),
                   topics=tuple(data.get("topics") or ()),
                   frequency=data.get("frequency") or "daily")


Handler = Callable[[MailJob], None]


class MailQueue(Protocol):
    def put(self, job: MailJob) -> None: ...


_IN_PROCESS: weakref.WeakSet[InProcessQueue] = weakref.WeakSet()


class InProcessQueue:
    """A thread that runs the handler on each job, in order."""

    def __init__(self, handler: Handler) -> None:
        self._handler = handler
        self._jobs: queue.Queue[MailJob] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._lock = threading.Lock()
        _IN_PROCESS.add(self)

    def put(self, job: MailJob) -> None:
        self._ensure_thread()
        self._jobs.put(job)

    def _ensure_thread(self) -> None:
        with self._lock:
            if self._thread is not None and self._thread.is_alive() and self._pid == os.getpid():
                return
            if self._pid != os.getpid():  # a forked child: the parent's jobs are not ours
                self._jobs = queue.Queue()
            self._pid = os.getpid()
            self._thread = threading.Thread(target=self._run, name="paperwire-mail",
                                            daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            try:
                self._handler(job)
            except Exception:  # one bad job must not stop the mail of everyone after it
                log.exception("queued mail (%s) failed", job.kind)
            finally:
                self._jobs.task_done()

    def drain(self) -> None:
        """Wait until every job put so far is handled."""
        if self._pid == os.getpid():
            self._jobs.join()


def drain_all() -> None:
    """Wait for every in-process queue of this process: at exit, and in tests."""
    for mail_queue in list(_IN_PROCESS):
        mail_queue.drain()


atexit.register(drain_all)


class WaitingMail(SQLModel, table=True):
    """A job a request queued with a broker configured, until a worker has handled it."""

    __tablename__ = "waiting_mail"

    id: int | None = Field(default=None, primary_key=True)
    job: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    queued_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    claimed_at: datetime | None = Field(default=None,
                                        sa_column=Column(DateTime(timezone=True)))


def forget_reader(session: Any, subscriber_id: int) -> int:
    """Drop the mail still waiting for a reader being erased (it names their row and their
    choices); returns how many. Few wait at any time, so they are read and matched here."""
    waiting = _waiting()
    mine = [row.id for row in session.execute(select(waiting.c.id, waiting.c.job))
            if row.job.get("subscriber_id") == subscriber_id]
    if mine:
        session.execute(delete(waiting).where(waiting.c.id.in_(mine)))
    return len(mine)


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _waiting() -> Any:
    return WaitingMail.__table__  # type: ignore[attr-defined]


class BrokerQueue:
    """Jobs are kept in the database and a mail worker is told of each; the sweep sends
    what no worker was told of."""

    def __init__(self, broker_url: str, engine: Engine) -> None:
        self._publisher = broker.publisher(broker_url)
        self._engine = engine

    def put(self, job: MailJob) -> None:
        with self._engine.begin() as conn:
            waiting_id = conn.execute(_waiting().insert().values(
                job=job.to_json(), queued_at=_utcnow())).inserted_primary_key[0]
        try:
            self._publisher.publish(TASK, QUEUE, args=[job.to_json()],
                                    kwargs={"waiting_id": waiting_id})
        except broker.BrokerDown:
            log.warning("mail queue: job %s waits in the database for the broker", waiting_id)


Sent = TypeVar("Sent")


def send_waiting(engine: Engine, waiting_id: int, handler: Callable[[MailJob], Sent],
                 now: datetime | None = None) -> Sent | None:
    """Handle one waiting job unless another worker has it or had it (None). A handler
    that raises leaves the job claimed: it is taken again after the lease."""
    job = _claim(engine, waiting_id, now or _utcnow())
    if job is None:
        return None
    sent = handler(job)
    _forget(engine, waiting_id)
    return sent


def sweep_waiting(engine: Engine, handler: Callable[[MailJob], object],
                  now: datetime | None = None) -> int:
    """Send the jobs no worker took (the broker was down, or lost them); how many of them
    the handler sent (it answers something, not None)."""
    now = now or _utcnow()
    table = _waiting()
    with engine.connect() as conn:
        ids = conn.execute(
            select(table.c.id).where(or_(
                table.c.claimed_at.is_(None) & (table.c.queued_at < now - SWEEP_AFTER),
                table.c.claimed_at < now - CLAIM_LEASE))
            .order_by(table.c.id).limit(SWEEP_BATCH)).scalars().all()
    return sum(send_waiting(engine, waiting_id, handler, now) is not None
               for waiting_id in ids)


def _claim(engine: Engine, waiting_id: int, now: datetime) -> MailJob | None:
    """The job, now this worker's; None when it is gone or another worker's lease holds."""
    table = _waiting()
    with engine.begin() as conn:
        job = conn.execute(
            update(table).where(table.c.id == waiting_id, or_(
                table.c.claimed_at.is_(None), table.c.claimed_at < now - CLAIM_LEASE))
            .values(claimed_at=now).returning(table.c.job)).scalar_one_or_none()
    return None if job is None else MailJob.from_json(job)


def _forget(engine: Engine, waiting_id: int) -> None:
    table = _waiting()
    with engine.begin() as conn:
        conn.execute(delete(table).where(table.c.id == waiting_id))


def for_broker(broker_url: str | None, handler: Handler, engine: Engine) -> MailQueue:
    return BrokerQueue(broker_url, engine) if broker_url else InProcessQueue(handler)
