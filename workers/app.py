"""The Celery app: broker, queues and the beat schedule. Tasks live in workers.tasks.

Every schedule comes from the environment (INGEST_SCHEDULE, SUMMARIZE_SCHEDULE,
SEND_DUE_SCHEDULE, EXPIRE_PENDING_SCHEDULE, ENGAGEMENT_CLEANUP_SCHEDULE, AUDIT_CLEANUP_SCHEDULE,
WAITING_MAIL_SCHEDULE): a cron line or an interval in seconds, checked by config.py.
"""

from __future__ import annotations

from datetime import timedelta

from celery import Celery
from celery.schedules import crontab, schedule

from newsletter.config import Settings, settings

QUEUES = ("ingest", "llm", "mail", "signup", "default")


def beat_schedule_for(spec: float | tuple[str, ...]) -> schedule:
    if isinstance(spec, tuple):
        minute, hour, day_of_month, month_of_year, day_of_week = spec
        return crontab(minute=minute, hour=hour, day_of_month=day_of_month,
                       month_of_year=month_of_year, day_of_week=day_of_week)
    return schedule(timedelta(seconds=spec))


def beat_entries(config: Settings) -> dict[str, dict[str, object]]:
    from newsletter.config import schedule_spec

    return {
        # Ingest chains a summarize run right after it.
        "ingest-every-8-hours": {
            "task": "paperwire.ingest",
            "schedule": beat_schedule_for(schedule_spec(config.ingest_schedule)),
        },
        # The sweep catches failures and papers added by hand (`newsletter ingest --file`).
        "summarize-sweep": {
            "task": "paperwire.summarize",
            "schedule": beat_schedule_for(schedule_spec(config.summarize_schedule)),
        },
        # Each reader's digest at their own hour: every tick sends what has come due.
        "send-due-digests": {
            "task": "paperwire.send_due",
            "schedule": beat_schedule_for(schedule_spec(config.send_due_schedule)),
        },
        "expire-pending-signups": {
            "task": "paperwire.expire_pending",
            "schedule": beat_schedule_for(schedule_spec(config.expire_pending_schedule)),
        },
        # Mail a request queued while the broker was down (newsletter/subscriptions/mail_queue.py).
        "send-waiting-mail": {
            "task": "paperwire.send_waiting_mail",
            "schedule": beat_schedule_for(schedule_spec(config.waiting_mail_schedule)),
        },
        # The admin audit log is kept AUDIT_RETENTION_DAYS.
        "forget-old-audit-entries": {
            "task": "paperwire.forget_old_audit_entries",
            "schedule": beat_schedule_for(schedule_spec(config.audit_cleanup_schedule)),
        },
        # Received provider events are kept ENGAGEMENT_RETENTION_DAYS, then forgotten.
        "forget-old-events": {
            "task": "paperwire.forget_old_events",
            "schedule": beat_schedule_for(schedule_spec(config.engagement_cleanup_schedule)),
        },
    }


def make_celery() -> Celery:
    config = settings()
    broker = config.redis_url or "memory://"
    app = Celery("paperwire", broker=broker, backend=config.redis_url, include=["workers.tasks"])
    app.conf.update(
        timezone="UTC",
        enable_utc=True,
        task_default_queue="default",
        task_routes={
            "paperwire.ingest": {"queue": "ingest"},
            # LLM calls wait on the network for long stretches: keep them off other queues.
            "paperwire.summarize": {"queue": "llm"},
            "paperwire.embed": {"queue": "llm"},
            # Sends wait on the mail provider: their own queue, their own workers.
            "paperwire.send_digests": {"queue": "mail"},
            "paperwire.send_due": {"queue": "mail"},
            "paperwire.deliver_chunk": {"queue": "mail"},
            # Confirmations a reader is waiting for: mail workers take them between chunks.
            "paperwire.send_mail": {"queue": "signup"},
            "paperwire.send_waiting_mail": {"queue": "signup"},
            "paperwire.expire_pending": {"queue": "default"},
            "paperwire.forget_old_events": {"queue": "default"},
            "paperwire.forget_old_audit_entries": {"queue": "default"},
        },
        # A worker that dies mid-task hands the task back: every task is safe to run twice
        # (ingest upserts, cards are per paper, deliveries are claimed, expiry is idempotent).
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        broker_connection_retry_on_startup=True,
        # A killed worker's unacknowledged task returns to the queue after this long.
        broker_transport_options={"visibility_timeout": config.broker_visibility_timeout},
        result_backend_transport_options={"visibility_timeout": config.broker_visibility_timeout},
        result_expires=3600,
        # SIGTERM is Celery's warm shutdown: running tasks finish, nothing new starts.
        # A lost broker connection does not cut a running task off either: a digest chunk
        # needs the database and the provider, not Redis, and one killed between a request
        # and its answer leaves those readers in doubt, to be mailed again after the lease.
        # Finished, its rows are settled; if Redis hands the unacknowledged task out again,
        # its claim finds nothing left to send (every task is safe to run twice, above).
        worker_cancel_long_running_tasks_on_connection_loss=False,
        task_track_started=True,
        beat_schedule=beat_entries(config),
    )
    return app


app = make_celery()
