"""The Celery app: broker, queues and the beat schedule. Tasks live in workers.tasks."""

from __future__ import annotations

from celery import Celery
from celery.schedules import crontab

from newsletter.config import settings


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
            # Sends wait on the mail provider: their own queue, their own workers.
            "paperwire.send_digests": {"queue": "mail"},
            "paperwire.deliver_chunk": {"queue": "mail"},
        },
        # A worker that dies mid-task hands the task back: ingesting a feed twice is harmless.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        broker_connection_retry_on_startup=True,
        result_expires=3600,
        beat_schedule={
            # arXiv's listing appears around midnight New York time (04:00-05:00 UTC):
            # the 05:30 run has it, with cards written before the morning digest.
            "ingest-every-8-hours": {
                "task": "paperwire.ingest",
                "schedule": crontab(minute=30, hour="5,13,21"),
            },
            # Ingest chains a summarize run; the sweep catches failures and papers added
            # by hand (`newsletter ingest --file`).
            "summarize-sweep": {
                "task": "paperwire.summarize",
                "schedule": crontab(minute="20,50"),
            },
            "daily-digest": {
                "task": "paperwire.send_digests",
                "schedule": crontab(minute=0, hour=config.digest_hour_utc),
                "args": ("daily",),
            },
            "weekly-digest": {
                "task": "paperwire.send_digests",
                "schedule": crontab(minute=0, hour=config.digest_hour_utc,
                                    day_of_week=config.weekly_digest_day[:3]),
                "args": ("weekly",),
            },
            "expire-pending-signups": {
                "task": "paperwire.expire_pending",
                "schedule": crontab(minute=45, hour=3),
            },
        },
    )
    return app


app = make_celery()
