"""Mail a reader asked for leaves the web request through a queue, never from inside it.

Why: a sign-up that sent its confirmation mail itself took about 18 ms, and one for a
suppressed address, which sends nothing, about 7 ms. The answer page is the same for
both, but the time told a stranger which addresses we know (docs/SECURITY.md, finding 5).
Now every valid sign-up takes the same path: decide and store in one transaction, put one
`MailJob` on the queue (a job that says "nothing to send" when nothing is due), answer.
Rendering and sending happen after the answer, in `signup.send_job`.

Two queues behind one interface:
- With a broker (REDIS_URL), the Celery task `paperwire.send_mail` on the `signup` queue,
  sent by name so the web process imports no worker code. Mail workers consume it beside
  the digests (`-Q mail,signup`): Celery's Redis transport takes from its queues in turn,
  so a confirmation does not wait for a whole edition. If the broker cannot take the job,
  it goes to the in-process queue instead: nothing is lost.
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
from typing import Any, Protocol

log = logging.getLogger(__name__)

TASK = "paperwire.send_mail"
QUEUE = "signup"


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


class BrokerQueue:
    """Jobs go to the Celery task by name; the in-process queue takes them if the broker
    does not."""

    def __init__(self, broker_url: str, fallback: InProcessQueue) -> None:
        from celery import Celery  # only a broker deployment pays for importing Celery

        self._app = Celery("paperwire-web", broker=broker_url)
        self._fallback = fallback

    def put(self, job: MailJob) -> None:
        try:
            # No publish retries: a broker that is down must not hold the reader's request.
            self._app.send_task(TASK, args=[job.to_json()], queue=QUEUE, retry=False)
        except Exception as exc:
            log.error("mail queue: the broker refused a job (%s); sending from this process",
                      exc)
            self._fallback.put(job)


def for_broker(broker_url: str | None, handler: Handler) -> MailQueue:
    in_process = InProcessQueue(handler)
    return BrokerQueue(broker_url, in_process) if broker_url else in_process
