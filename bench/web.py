"""Site benchmark: the landing page and sign-ups at 200 requests/s, on gunicorn and Postgres.

The site runs as production runs it: `gunicorn -w 4 'newsletter.web:create_app()'` in
production mode (SECRET_KEY, an https BASE_URL) on a real Postgres migrated with
`newsletter.db.upgrade`, with a real Redis holding the rate limits' counters, and a week of
papers with cards (200 a day, 10% of them revisions) like the day bench/deliver.py mails.

Locust, headless and used as a library, plays the visitors at a constant throughput:
most open the landing page; the others sign up as a browser does (GET the page, which
holds the form, then POST /subscribe with the Origin and Referer a browser sends; the
form carries no token and the page sets no cookie, docs/SECURITY.md finding 10).
Every visitor is a new person with an address of their own. The confirmation mails leave
through the broker to a real Celery mail worker, as in production (finding 5).

The app sits behind nginx (TRUSTED_PROXIES=1, the README's proxy settings) behind a load
balancer that terminates TLS: Locust plays the balancer and sends X-Forwarded-For with
the visitor's own IP and the public Host. Sign-ups stay rate-limited per IP, in Redis, as
in production: the limit applies to each visitor, not to the one machine the load comes
from. Like a browser, a visitor sends Origin and Referer on the POST as the page's referrer
policy allows, so a policy that breaks the forms over HTTPS shows as errors here.

After each run, and once the worker has sent what was queued, it checks the outcome
rather than the status codes alone: every accepted sign-up is one subscriber row and
exactly one confirmation mail (MAIL_BACKEND=file, one .eml per message in the outbox).

The naive baseline, in the same run, behind the same proxy and under the same load, is
gunicorn's defaults: one sync worker, which is what `gunicorn 'newsletter.web:create_app()'`
with no flags gives.

    .venv/bin/python -m bench.web [--rate 200] [--seconds 60] [--baseline-seconds 60]
"""

from __future__ import annotations

import argparse
import contextlib
import email.utils
import json
import os
import platform
import random
import re
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

# The same topics and words as the delivery benchmark's papers and readers.
from bench.deliver import TOPICS, WORDS

REPO = Path(__file__).resolve().parent.parent
PUBLIC_HOST = "paperwire.example.org"
ORIGIN = f"https://{PUBLIC_HOST}"
# Sign-ups are a small share of visits on a real newsletter's landing page, but enough
# here that the POST path sees about 30 requests/s.
SIGNUP_SHARE = 0.2
VISITORS = 100
WARMUP_SECONDS = 5
PAPERS_A_DAY = 200
DAYS = 7
CATEGORIES = ["cs.LG", "cs.CL", "cs.CV", "cs.AI", "stat.ML", "cs.RO", "math.OC"]


# ---------------------------------------------------------------- the database


def _sentence(rng: random.Random, words: int) -> str:
    text = " ".join(rng.choice(WORDS) for _ in range(words))
    return text[0].upper() + text[1:] + "."


def build(url: str, today: date, per_day: int = PAPERS_A_DAY, days: int = DAYS,
          seed: int = 11) -> None:
    """A migrated database holding `days` announcement days up to `today`, each with
    `per_day` papers with cards; a tenth of each day's papers are revisions of older ones."""
    from sqlalchemy import insert, text

    from newsletter import db
    from newsletter.cards.card import Card
    from newsletter.ingest.paper import Paper

    rng = random.Random(seed)
    engine = db.make_engine(url)
    db.upgrade(engine)
    now = datetime.now(UTC)
    authors = [f"Author{i} Lastname{i}" for i in range(2000)]
    rows = []
    for d in range(days):
        day = today - timedelta(days=days - 1 - d)
        for i in range(per_day):
            number = f"{day:%y%m}.{d * per_day + i + 10000:05d}"
            revised = d > 0 and i % 10 == 0
            cats = rng.sample(CATEGORIES, rng.randint(1, 3))
            rows.append({
                "key": number, "arxiv_id": number, "version": 2 if revised else 1,
                "title": _sentence(rng, rng.randint(7, 14))[:-1],
                "abstract": " ".join(_sentence(rng, rng.randint(12, 25))
                                     for _ in range(rng.randint(6, 10))),
                "authors": rng.sample(authors, rng.randint(1, 12)), "categories": cats,
                "primary_category": cats[0],
                "announce_type": "replace" if revised else "new",
                "announced_on": day - timedelta(days=30) if revised else day,
                "revised_on": day if revised else None,
                "abs_url": f"https://arxiv.org/abs/{number}",
                "pdf_url": f"https://arxiv.org/pdf/{number}", "source": "arxiv",
                "created_at": now, "updated_at": now,
            })
    with engine.begin() as conn:
        conn.execute(insert(Paper.__table__), rows)  # type: ignore[attr-defined]
        ids = conn.execute(text("SELECT id FROM papers ORDER BY id")).scalars().all()
        conn.execute(insert(Card.__table__), [{  # type: ignore[attr-defined]
            "paper_id": pid, "topics": rng.sample(TOPICS, rng.randint(1, 3)),
            "key_points": [_sentence(rng, 12) for _ in range(4)],
            "summary": " ".join(_sentence(rng, 15) for _ in range(10)),
            "methodology": " ".join(_sentence(rng, 14) for _ in range(4)),
            "results": " ".join(_sentence(rng, 15) for _ in range(3)),
            "implications": " ".join(_sentence(rng, 15) for _ in range(3)),
            "source": "llm", "model": "gpt-4o-mini", "prompt_version": "card-v1",
            "text_hash": f"{pid:064d}", "status": "ok", "checked_at": now,
            "created_at": now, "updated_at": now,
        } for pid in ids])
    engine.dispose()


def create_database(admin_url: str, name: str) -> str:
    from sqlalchemy import create_engine, text

    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return admin_url.rsplit("/", 1)[0] + f"/{name}"


# ---------------------------------------------------------------- the site


@contextlib.contextmanager
def gunicorn(workers: int, env: dict[str, str], log: Path) -> Iterator[tuple[int, int]]:
    """The site on a free loopback port, as the compose file's web service runs it.
    Yields the port and gunicorn's pid."""
    from tests.support.servers import free_port

    port = free_port()
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-w", str(workers), "-b", f"127.0.0.1:{port}",
             "--access-logfile", str(log.with_suffix(".access.log")),
             "--graceful-timeout", "30", "newsletter.web:create_app()"],
            cwd=REPO, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            try:
                _wait_healthy(url, proc)
            except (RuntimeError, TimeoutError) as exc:
                tail = "".join(log.read_text().splitlines(keepends=True)[-15:])
                raise RuntimeError(f"{exc}; its log ends:\n{tail}") from None
            yield port, proc.pid
        finally:
            proc.terminate()
            proc.wait(40)


def cpu_seconds(pid: int) -> float:
    """CPU time used so far by a process and its children (gunicorn and its workers)."""
    import psutil

    root = psutil.Process(pid)
    return sum(t.user + t.system for t in
               [root.cpu_times(), *(c.cpu_times() for c in root.children(recursive=True))])


def _wait_healthy(url: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    import urllib.request  # imports ssl, which the Locust process must patch first

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {proc.returncode}")
        with (contextlib.suppress(OSError),
              urllib.request.urlopen(f"{url}/healthz", timeout=2) as response):
            if response.status == 200:
                return
        time.sleep(0.2)
    raise TimeoutError(f"{url}/healthz did not answer 200 within {timeout:.0f} s")


# The README's nginx site behind a load balancer that terminates TLS: the visitor's address
# comes from the balancer's X-Forwarded-For (realip) and the scheme is https, and buffers
# hold a whole landing page, so a gunicorn sync worker hands it over at once instead of
# waiting on a slow reader (https://docs.gunicorn.org/en/stable/deploy.html: sync workers
# belong behind a buffering proxy). TLS itself is left out: in Locust it cost ten times
# the CPU of the request, and it would measure the load generator, not the site.
_NGINX_CONF = """\
worker_processes 1;
pid {root}/nginx.pid;
error_log {root}/error.log;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {root}/body;
    proxy_temp_path {root}/proxy;
    fastcgi_temp_path {root}/fastcgi;
    uwsgi_temp_path {root}/uwsgi;
    scgi_temp_path {root}/scgi;
    proxy_cache_path {root}/cache keys_zone=pages:1m max_size=10m;
    server {{
        listen 127.0.0.1:{port};
        set_real_ip_from 127.0.0.1;
        real_ip_header X-Forwarded-For;
        proxy_buffer_size 16k;
        proxy_buffers 64 16k;
        proxy_set_header Host $host;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_set_header X-Forwarded-Proto https;
        proxy_set_header X-Forwarded-Host $host;
        location / {{
            proxy_pass http://127.0.0.1:{upstream};
        }}
        # The README's front-page cache: the page says how long it keeps (max-age=30).
        location = / {{
            proxy_pass http://127.0.0.1:{upstream};
            proxy_cache pages;
            proxy_cache_lock on;
            # When the 30 s are up, one request fetches the new page in the background
            # while everyone else is still served the one before: no stall every 30 s.
            proxy_cache_use_stale updating;
            proxy_cache_background_update on;
        }}
    }}
}}
"""


@contextlib.contextmanager
def proxy(upstream: int, work: Path) -> Iterator[str]:
    """Debian's nginx in front of `upstream`, run as an unprivileged user from a prefix of
    its own."""
    from tests.support.servers import _unprivileged, free_port
    from tests.support.web import nginx_process

    root = Path(tempfile.mkdtemp(prefix="nginx-", dir=work))
    port = free_port()
    user = _unprivileged()
    if user:  # nginx's user must reach its prefix inside the bench's folder
        os.chown(work, user.pw_uid, user.pw_gid)
    with nginx_process(root, _NGINX_CONF.format(root=root, port=port, upstream=upstream),
                       port):
        yield f"http://127.0.0.1:{port}"


def site_env(database_url: str, redis_url: str, outbox: Path) -> dict[str, str]:
    return {
        "PAPERWIRE_DEV": "0", "SECRET_KEY": "bench-web-" + "k" * 32, "BASE_URL": ORIGIN,
        # nginx is the one proxy the app trusts; it passes on the visitor's address.
        "DATABASE_URL": database_url, "REDIS_URL": redis_url, "TRUSTED_PROXIES": "1",
        "MAIL_BACKEND": "file", "OUTBOX_DIR": str(outbox),
        "MAIL_FROM": f"Paperwire <digest@{PUBLIC_HOST}>",
        # The cap on all confirmation mail is 1,000 an hour as shipped; this run asks for
        # about 2,000 a minute, as an operator expecting a burst (a launch, a mention on
        # a busy mailing list) would allow for.
        "SIGNUP_MAIL_LIMIT": "1000000/hour",
    }


# ---------------------------------------------------------------- the visitors (Locust)


_FORM = 'action="/subscribe"'
_META_REFERRER = re.compile(r'<meta name="referrer" content="([^"]+)"')


def _referrer_policy(headers: Any, page: str) -> str:
    """The page's referrer policy as a browser applies it: a meta tag overrides the header."""
    meta = _META_REFERRER.search(page)
    return (meta.group(1) if meta else headers.get("Referrer-Policy") or "").strip().lower()


def _form_origin_headers(policy: str) -> dict[str, str]:
    """What a browser sends with a same-origin form POST from our landing page: Origin
    always (`null` under no-referrer), Referer unless the policy forbids it.
    https://fetch.spec.whatwg.org/#origin-header"""
    if policy == "no-referrer":
        return {"Origin": "null"}
    return {"Origin": ORIGIN, "Referer": f"{ORIGIN}/"}


def generate_load(host: str, rate: float, seconds: float, warmup: float, signup_share: float,
                  visitors: int) -> dict[str, Any]:
    """Run Locust for `warmup` + `seconds` at `rate` requests/s; stats cover `seconds`."""
    # Imported here, first in its own process: Locust monkey-patches the standard library
    # for gevent, which the rest of the benchmark must not have.
    import gevent
    from locust import FastHttpUser, constant_throughput, task
    from locust.env import Environment

    accepted: list[str] = []
    numbers = iter(range(1, 1 << 24))
    # Requests per visit: a landing-page view is one, a sign-up two.
    visits_per_second = rate / (1 + signup_share)

    class Visitor(FastHttpUser):
        wait_time = constant_throughput(visits_per_second / visitors)
        network_timeout = 30.0

        def _visitor_headers(self, n: int) -> dict[str, str]:
            # Each visit is a new person: no cookie from an earlier one. They ask for the
            # public name, and the load balancer in front of nginx says who they are.
            self.client.cookiejar.clear()
            ip = f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}"
            return {"Host": PUBLIC_HOST, "X-Forwarded-For": ip}

        @task(round(100 * (1 - signup_share)))
        def read_today(self) -> None:
            self.client.get("/", name="GET /", headers=self._visitor_headers(next(numbers)))

        @task(round(100 * signup_share))
        def sign_up(self) -> None:
            n = next(numbers)
            headers = self._visitor_headers(n)
            with self.client.get("/", name="GET /", headers=headers,
                                 catch_response=True) as page:
                if _FORM not in (page.text or ""):
                    page.failure("no sign-up form on the page")
                    return
            policy = _referrer_policy(page.headers, page.text or "")
            form_headers = {**headers, **_form_origin_headers(policy)}
            # Readers come from many mail domains; the per-domain limit on confirmation
            # mail (SIGNUP_DOMAIN_LIMIT) is about one domain, and stays as shipped.
            address = f"visitor{n}@mail{n % 1000}.example.org"
            rng = random.Random(n)
            form = [("email", address), ("website", ""),
                    ("frequency", rng.choice(("daily", "daily", "weekly")))]
            form += [("topics", t) for t in rng.sample(TOPICS, rng.randint(1, 3))]
            form_headers["Content-Type"] = "application/x-www-form-urlencoded"
            with self.client.post("/subscribe", name="POST /subscribe", data=urlencode(form),
                                  headers=form_headers, catch_response=True) as done:
                if done.status_code == 200 and "Check your inbox" in (done.text or ""):
                    accepted.append(address)
                else:
                    done.failure(f"HTTP {done.status_code}: {_title(done.text or '')}")

    # Stopping lets each visit finish: a sign-up cut off in flight would be stored and
    # mailed with its answer never read, and the check below would count it as a stray.
    env = Environment(user_classes=[Visitor], host=host, stop_timeout=60)
    runner = env.create_local_runner()
    runner.start(visitors, spawn_rate=visitors / 2)
    gevent.sleep(warmup)
    warm = {"requests": env.stats.total.num_requests, "errors": env.stats.total.num_failures,
            "error_kinds": [str(e.error) for e in env.stats.errors.values()]}
    env.stats.reset_all()
    gevent.sleep(seconds)
    runner.quit()
    runner.greenlet.join()
    total = env.stats.total
    measured = (total.last_request_timestamp or total.start_time) - total.start_time
    kinds = {}
    for name in ("GET /", "POST /subscribe"):
        entry = env.stats.get(name, "GET" if name.startswith("GET") else "POST")
        kinds[name] = {
            "requests": entry.num_requests, "errors": entry.num_failures,
            "p50": entry.get_response_time_percentile(0.5),
            "p99": entry.get_response_time_percentile(0.99),
            "max": entry.max_response_time, "rate": entry.num_requests / max(measured, 1e-9),
        }
    # A visit that raised never made its requests: an error too, not a silent gap.
    errors = {str(e.error): e.occurrences for e in env.stats.errors.values()}
    errors.update({f"exception: {e['msg']}": e["count"] for e in runner.exceptions.values()})
    return {"kinds": kinds, "warmup": warm, "seconds": measured, "accepted": accepted,
            "errors": errors, "generator_saturated": runner.cpu_warning_emitted}


def _title(page: str) -> str:
    found = re.search(r"<h1[^>]*>(.*?)</h1>", page, re.S)
    return found.group(1).strip() if found else page[:80]


# ---------------------------------------------------------------- one run


@dataclass(frozen=True)
class Outcome:
    label: str
    workers: int
    load: dict[str, Any]
    app_cpu: float  # seconds, gunicorn and its workers, warm-up included
    locust_cpu: float
    stored: int
    stored_twice: int
    missing: int
    mailed_once: int
    mail_problems: int


def mails_by_address(outbox: Path) -> Counter[str]:
    counts: Counter[str] = Counter()
    for path in outbox.glob("*.eml"):
        with path.open("rb") as handle:
            message = email.message_from_binary_file(handle)
        counts[email.utils.parseaddr(message["To"])[1].lower()] += 1
    return counts


def verify(database_url: str, outbox: Path, accepted: list[str]) -> dict[str, int]:
    """Every accepted sign-up stored exactly once and mailed exactly once; nothing else."""
    from sqlalchemy import create_engine, text

    engine = create_engine(database_url)
    with engine.connect() as conn:
        rows = Counter(conn.execute(text("SELECT email FROM subscribers")).scalars())
    engine.dispose()
    mails = mails_by_address(outbox)
    wanted = set(accepted)
    return {
        "stored": sum(1 for a in wanted if rows[a] == 1),
        "stored_twice": sum(1 for n in rows.values() if n > 1),
        # Accepted but not stored, or stored although the visitor was refused.
        "missing": len(wanted - set(rows)) + len(set(rows) - wanted),
        "mailed_once": sum(1 for a in wanted if mails[a] == 1),
        "mail_problems": sum(1 for a, n in mails.items() if n != 1 or a not in wanted),
    }


def run(label: str, workers: int, seconds: float, admin_url: str, redis_url: str,
        work: Path, args: argparse.Namespace, today: date) -> Outcome:
    from tests.support.servers import celery_worker

    database_url = create_database(admin_url, f"site_{label}")
    build(database_url, today, args.papers, args.days)
    outbox = work / f"outbox-{label}"
    env = site_env(database_url, redis_url, outbox)
    with (celery_worker(env, "signup", work / f"worker-{label}.log"),
          gunicorn(workers, env, work / f"gunicorn-{label}.log") as (upstream, pid),
          proxy(upstream, work) as url):
        app_cpu, locust_cpu = cpu_seconds(pid), _ended_children_cpu()
        load = in_subprocess(url, args.rate, seconds, args)
        app_cpu = cpu_seconds(pid) - app_cpu
        # The Locust process is the only child that ended meanwhile.
        locust_cpu = _ended_children_cpu() - locust_cpu
        mailed_by = _sent_all(outbox, len(load["accepted"]))
    checks = verify(database_url, outbox, load["accepted"])
    load["mail_lag"] = mailed_by
    return Outcome(label, workers, load, app_cpu, locust_cpu, **checks)


def _sent_all(outbox: Path, expected: int, patience: float = 120.0) -> float:
    """Seconds after the load until the worker had mailed every accepted sign-up (or
    until it gave up): the queue's lag, reported beside the answer times."""
    started = time.monotonic()
    while time.monotonic() - started < patience:
        if sum(1 for _ in outbox.glob("*.eml")) >= expected:
            break
        time.sleep(0.2)
    time.sleep(1.0)  # and nothing more arrives
    return time.monotonic() - started


def _ended_children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def in_subprocess(url: str, rate: float, seconds: float, args: argparse.Namespace
                  ) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "bench.web", "--load", url, "--rate", str(rate),
         "--seconds", str(seconds), "--warmup", str(args.warmup),
         "--signup-share", str(args.signup_share), "--visitors", str(args.visitors)],
        check=True, stdout=subprocess.PIPE, text=True, cwd=REPO)
    return json.loads(out.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------- report


def _row(outcome: Outcome, kind: str) -> str:
    k = outcome.load["kinds"][kind]
    return (f"| {outcome.label} | {kind} | {k['requests']} | {k['rate']:.0f}/s | "
            f"{k['p50']} ms | {k['p99']} ms | {k['max']:.0f} ms | {k['errors']} |")


def report(outcomes: list[Outcome], args: argparse.Namespace, load_before: tuple[float, ...],
           load_after: tuple[float, ...]) -> None:
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
          f"{platform.python_version()}; load average before "
          f"{' '.join(f'{x:.2f}' for x in load_before)}, after "
          f"{' '.join(f'{x:.2f}' for x in load_after)}")
    print(f"offered load: {args.rate:.0f} requests/s ({args.signup_share:.0%} of visits are "
          f"sign-ups), {args.visitors} Locust users, {args.warmup:.0f} s warm-up not counted; "
          f"{args.papers} papers a day, {args.days} days\n")
    print("| site | request | count | rate | p50 | p99 | max | errors |")
    print("|---|---|---|---|---|---|---|---|")
    for outcome in outcomes:
        for kind in ("GET /", "POST /subscribe"):
            print(_row(outcome, kind))
    print()
    for o in outcomes:
        accepted = len(o.load["accepted"])
        print(f"{o.label} ({o.workers} sync worker{'s' if o.workers > 1 else ''}): "
              f"{o.load['seconds']:.0f} s measured; warm-up "
              f"{o.load['warmup']['requests']} requests, {o.load['warmup']['errors']} errors; "
              f"{accepted} sign-ups accepted, {o.stored} stored once, {o.stored_twice} "
              f"stored twice, {o.missing} missing or unexpected, {o.mailed_once} with exactly "
              f"one confirmation mail, {o.mail_problems} addresses with a wrong mail count")
        requests = (sum(k["requests"] for k in o.load["kinds"].values())
                    + o.load["warmup"]["requests"])
        print(f"  mail: every accepted sign-up mailed {o.load['mail_lag']:.1f} s after "
              "the load ended (the mail worker's lag)")
        print(f"  CPU: gunicorn {o.app_cpu:.1f} s ({1000 * o.app_cpu / max(requests, 1):.1f} ms "
              f"a request), Locust {o.locust_cpu:.1f} s")
        if o.load["generator_saturated"]:
            print("  Locust itself went over 90% CPU: the offered load may be short of the rate")
        for error in o.load["warmup"]["error_kinds"]:
            print(f"  warm-up: {error}")
        for error, count in o.load["errors"].items():
            print(f"  {count} x {error}")
    ours = outcomes[0].load["kinds"]
    get_ok = ours["GET /"]["p99"] < 50
    post_ok = ours["POST /subscribe"]["p99"] < 100
    first = outcomes[0]
    clean = (not first.load["errors"] and first.load["warmup"]["errors"] == 0
             and all(k["requests"] for k in ours.values())
             and first.stored == first.mailed_once == len(first.load["accepted"])
             and first.stored_twice == first.missing == first.mail_problems == 0)
    print(f"\ntargets ({first.label}): GET p99 < 50 ms {'met' if get_ok else 'MISSED'}; "
          f"POST p99 < 100 ms {'met' if post_ok else 'MISSED'}; zero errors and every "
          f"sign-up stored and mailed exactly once {'met' if clean else 'MISSED'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=200.0, help="requests per second")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--baseline-seconds", type=float, default=60.0,
                        help="0 skips the baseline")
    parser.add_argument("--warmup", type=float, default=WARMUP_SECONDS)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--signup-share", type=float, default=SIGNUP_SHARE)
    parser.add_argument("--visitors", type=int, default=VISITORS,
                        help="concurrent Locust users")
    parser.add_argument("--papers", type=int, default=PAPERS_A_DAY, help="papers a day")
    parser.add_argument("--days", type=int, default=DAYS)
    parser.add_argument("--load", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load:
        print(json.dumps(generate_load(args.load, args.rate, args.seconds, args.warmup,
                                       args.signup_share, args.visitors)))
        return

    from tests.support.servers import postgres_server, redis_server

    today = datetime.now(UTC).date()
    load_before = os.getloadavg()
    with (tempfile.TemporaryDirectory(prefix="paperwire-web-") as tmp,
          postgres_server() as pg, redis_server() as redis_url):
        admin_url = pg.url("postgres")
        runs = [("paperwire", args.workers, args.seconds, redis_url)]
        if args.baseline_seconds > 0:
            # Its own Redis database: the limiter's counters start from zero.
            runs.append(("baseline", 1, args.baseline_seconds,
                         redis_url.rsplit("/", 1)[0] + "/1"))
        outcomes = [run(label, workers, seconds, admin_url, redis, Path(tmp), args, today)
                    for label, workers, seconds, redis in runs]
    report(outcomes, args, load_before, os.getloadavg())


if __name__ == "__main__":
    main()
