"""Does the sign-up answer's timing tell whether we mailed? (docs/SECURITY.md, finding 5)

The site in-process (Flask's test client, SQLite, the file mail backend), production
mode. For each kind of address a stranger could type (new, pending within its 10-minute
wait, confirmed, suppressed) it posts the sign-up form `--rounds` times and reports the
median and 90th percentile answer time. The baseline, in the same run, sends the mail
inside the request, as the site did before: a queue whose `put` runs the job at once.

    .venv/bin/python -m bench.signup_timing [--rounds 300]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import Engine

from newsletter import db
from newsletter.config import Settings
from newsletter.db import transaction
from newsletter.readers import reader_input
from newsletter.readers import subscriber as subs
from newsletter.subscriptions import mail_queue
from newsletter.subscriptions.services import Services, send_job
from newsletter.web import create_app
from newsletter.web.common import SERVICES

KINDS = ("new", "pending", "confirmed", "suppressed")
ORIGIN = "https://paperwire.example.org"


class Inline:
    """The old way, for the baseline: the request itself renders and sends."""

    def __init__(self, handler: Callable[[mail_queue.MailJob], None]) -> None:
        self.put = handler


def _address(kind: str, n: int) -> str:
    return f"{kind}{n}@example.org"


def _prepare(engine: Engine, rounds: int) -> None:
    values = reader_input.parse_preferences(["llm"], "daily")
    with transaction(engine) as session:
        for n in range(rounds):
            subs.subscribe(session, _address("pending", n), values)
            row = subs.ensure(session, _address("confirmed", n), subs._utcnow())
            subs.update_preferences(session, row, values)
            subs.confirm_now(session, row, "admin", reader_input.Client())
            subs.suppress(session, _address("suppressed", n), "bounce")


def measure(folder: Path, rounds: int, inline: bool) -> dict[str, list[float]]:
    url = f"sqlite:///{folder / 'paperwire.db'}"
    engine = db.engine_for(url)
    db.upgrade(engine)
    settings = Settings(database_url=url, dev_mode=False, secret_key="t" * 40,
                        base_url=ORIGIN, mail_backend="file", outbox_dir=folder / "outbox",
                        signup_rate_limit="1000000/minute",
                        signup_mailbox_limit="1000000/hour", signup_domain_limit="1000000/hour",
                        signup_mail_limit="1000000/hour")
    _prepare(engine, rounds)
    app = create_app(settings, engine=engine)
    if inline:
        svc: Services = app.extensions[SERVICES]
        app.extensions[SERVICES] = Services(
            svc.settings, svc.engine, svc.sender, svc.links, svc.limits,
            Inline(lambda job: send_job(svc, job)))
    client = app.test_client()
    times: dict[str, list[float]] = {kind: [] for kind in KINDS}
    for n in range(rounds):
        for kind in KINDS:  # interleaved, so drift in the machine hits every kind alike
            data = {"email": _address(kind, n), "topics": "llm", "frequency": "daily"}
            started = time.perf_counter()
            answer = client.post("/subscribe", data=data, headers={"Origin": ORIGIN},
                                 base_url=ORIGIN)
            times[kind].append(1000 * (time.perf_counter() - started))
            assert answer.status_code == 200, answer.status_code
    mail_queue.drain_all()
    sent = len(list((folder / "outbox").glob("*.eml")))
    assert sent == 2 * rounds, f"{sent} mails for {2 * rounds} due (new and confirmed)"
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=300)
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
          f"{platform.python_version()}; load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}; {args.rounds} sign-ups per "
          "kind of address\n")
    print("| mail sent | address | median | p90 |")
    print("|---|---|---|---|")
    for label, inline in (("after the answer (queue)", False), ("in the request (before)", True)):
        with tempfile.TemporaryDirectory() as tmp:
            times = measure(Path(tmp), args.rounds, inline)
        for kind in KINDS:
            ordered = sorted(times[kind])
            p90 = ordered[int(0.9 * len(ordered))]
            print(f"| {label} | {kind} | {statistics.median(ordered):.1f} ms | {p90:.1f} ms |")


if __name__ == "__main__":
    main()
