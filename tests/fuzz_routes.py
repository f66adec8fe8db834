"""A long fuzz run of the routes hostile input reaches: sign-up, manage, ratings, webhook,
and the admin pages (as a signed-in operator, whose forms carry both tokens).

Not part of the suite (it runs for minutes): `python -m tests.fuzz_routes --minutes 10`.
Hypothesis throws arbitrary forms, tokens and (validly signed) webhook bodies at the app
in-process, on a SQLite database with a day of real arXiv papers and a confirmed reader
whose real manage, unsubscribe and rating tokens are in play too. Any 500 is printed with
its input and fails the run.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import logging
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlmodel import select

from newsletter import db
from newsletter.config import Settings
from newsletter.ingest.paper import Paper
from newsletter.ingest.store import ingest_files
from newsletter.readers import reader_input
from newsletter.readers import subscriber as subs
from newsletter.readers.links import LinkHolder, Links, signing_key
from newsletter.web import create_app
from tests.conftest import ARXIV_FIXTURES
from tests.support.admin_desk import add_operator, sign_in
from tests.support.web import csrf_token

TEXT = st.text(max_size=300)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | TEXT,
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(TEXT, inner, max_size=6),
    max_leaves=40)
EVENT = st.fixed_dictionaries(
    {"sg_event_id": TEXT, "event": st.sampled_from(
        ["bounce", "dropped", "spamreport", "unsubscribe", "delivered", "open"]) | TEXT,
     "email": st.emails().map(str) | TEXT},
    optional={"timestamp": st.integers() | TEXT, "extra": JSON})
# A library file part, as the sign-up and the manage page's upload take it: noise, or the
# start of each format it reads, under any name.
LIBRARY_FILE = st.tuples(
    st.binary(max_size=2000) | st.sampled_from(
        [b"@article{x, title={T}, eprint={2401.00001}}", b"TY  - JOUR\nTI  - T\nER  -\n",
         b'[{"title": "T", "abstract": "A"}]', b"\x89PNG\r\n\x1a\n", b""]),
    TEXT).map(lambda part: (io.BytesIO(part[0]), part[1]))
FORM = st.dictionaries(st.sampled_from(
    ["email", "topics", "frequency", "website", "include_keywords", "exclude_keywords",
     "authors", "max_papers", "include_revised", "csrf_token", "description",
     "liked_papers", "arxiv_author", "entry", "keep"]) | TEXT,
    st.lists(TEXT, max_size=4) | TEXT, max_size=8)
WITH_FILE = st.one_of(st.just({}), st.fixed_dictionaries({"library": LIBRARY_FILE}))


def build(folder: Path) -> tuple[object, object, ec.EllipticCurvePrivateKey, list[str]]:
    key = ec.generate_private_key(ec.SECP256R1())
    public = base64.b64encode(key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)).decode()
    config = Settings(PAPERWIRE_DEV=True, database_url=f"sqlite:///{folder / 'fuzz.db'}",
                      outbox_dir=folder / "outbox", signup_rate_limit="100000/minute",
                      signup_mailbox_limit="100000/hour", signup_domain_limit="100000/hour",
                      signup_mail_limit="100000/hour", sendgrid_webhook_public_key=public,
                      base_url="http://paperwire.test")
    engine = db.make_engine(config.database_url)
    db.upgrade(engine)
    ingest_files(engine, sorted(ARXIV_FIXTURES.glob("rss_cs.*_2026-04-27.xml")))
    with db.transaction(engine) as session:
        paper_id = session.exec(select(Paper.id)).first()
        row = subs.ensure(session, "reader@example.org", subs._utcnow())
        subs.update_preferences(session, row, reader_input.parse_preferences(["llm"]))
        subs.confirm_now(session, row, "admin", reader_input.Client())
        holder = LinkHolder(row.id, row.link_key)  # type: ignore[arg-type]
    links = Links(signing_key(config), config.base_url)
    tokens = [links.manage_token(holder), links.unsubscribe_token(holder),
              links.rate_token(holder, paper_id)]  # type: ignore[arg-type]
    add_operator(engine)
    return create_app(config, engine=engine), engine, key, tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    args = parser.parse_args()
    logging.disable(logging.CRITICAL)
    with tempfile.TemporaryDirectory() as tmp:
        app, _engine, key, tokens = build(Path(tmp))
        client = app.test_client()  # type: ignore[attr-defined]
        statuses: Counter[tuple[str, int]] = Counter()
        failures: list[str] = []

        def check(route: str, answer: object, given_input: object) -> None:
            code = answer.status_code  # type: ignore[attr-defined]
            statuses[(route, code)] += 1
            if code >= 500:
                failures.append(f"{route} -> {code} for {given_input!r}"[:2000])

        def csrf() -> str:
            # The sign-up form has none (docs/SECURITY.md, 10); the reader's manage page has.
            page = client.get(f"/manage/{tokens[0]}").get_data(as_text=True)
            return page.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]

        common = settings(max_examples=300, deadline=None, database=None,
                          suppress_health_check=list(HealthCheck))

        @common
        @given(form=FORM, with_token=st.booleans(), file=WITH_FILE)
        def signup(form: dict, with_token: bool, file: dict) -> None:
            data = {**form, **file}
            if with_token:
                data["csrf_token"] = csrf()
            check("POST /subscribe", client.post("/subscribe", data=data), data)

        @common
        @given(token=TEXT | st.sampled_from(tokens), form=FORM, suffix=st.sampled_from(
            ["", "/export", "/delete", "/resubscribe", "/library", "/library/remove",
             "/library/drop"]), post=st.booleans(), file=WITH_FILE)
        def manage(token: str, form: dict, suffix: str, post: bool, file: dict) -> None:
            token = token.replace("/", "").replace("?", "").replace("#", "") or "x"
            if token in tokens and suffix == "/delete":
                suffix = ""  # keep the real reader, and so their tokens, in play
            path = f"/manage/{token}{suffix}"
            if post:
                data = {**form, **file, "csrf_token": csrf()}
                check(f"POST /manage{suffix}", client.post(path, data=data), (path, data))
            else:
                check(f"GET /manage{suffix}", client.get(path), path)

        @common
        @given(token=TEXT | st.sampled_from(tokens), direction=st.sampled_from(
            ["up", "down", "clear"]) | TEXT, post=st.booleans(), form=FORM)
        def rate(token: str, direction: str, post: bool, form: dict) -> None:
            token = token.replace("/", "").replace("?", "").replace("#", "") or "x"
            direction = direction.replace("/", "").replace("?", "").replace("#", "") or "x"
            path = f"/rate/{token}/{direction}"
            if post:
                data = {**form, "csrf_token": csrf()}
                check("POST /rate", client.post(path, data=data), (path, data))
            else:
                check("GET /rate", client.get(path), path)
            check("GET /papers", client.get(f"/papers/2604.21952?rate={token}"), token)

        operator = app.test_client()  # type: ignore[attr-defined]
        admin_token = sign_in(operator)
        site_token = csrf_token(operator, "/admin/audit")
        ids = st.integers(min_value=-2, max_value=2**64) | st.sampled_from([1, 2, 3])

        @common
        @given(page=st.sampled_from(["", "/subscribers", "/editions", "/cards", "/feeds",
                                     "/audit"]), query=st.dictionaries(st.sampled_from(
                   ["text", "status", "topic", "page", "days", "actor", "action"]) | TEXT,
                   TEXT, max_size=4))
        def admin_pages(page: str, query: dict) -> None:
            check(f"GET /admin{page}", operator.get(f"/admin{page}", query_string=query),
                  (page, query))

        @common
        @given(subscriber=ids, action=st.sampled_from(
            ["", "/preview", "/preview.html", "/suppress", "/unsuppress",
             "/resend-confirmation", "/delete"]), post=st.booleans(), form=FORM,
               tokens_given=st.booleans())
        def admin_reader(subscriber: int, action: str, post: bool, form: dict,
                         tokens_given: bool) -> None:
            path = f"/admin/subscribers/{subscriber}{action}"
            if post:
                data = {**form, **({"csrf_token": site_token, "admin_csrf": admin_token}
                                   if tokens_given else {})}
                check(f"POST /admin/subscribers{action}", operator.post(path, data=data),
                      (path, data))
            else:
                check(f"GET /admin/subscribers{action}", operator.get(path), path)

        @common
        @given(target=ids, path=st.sampled_from(
            ["/admin/editions/{}", "/admin/editions/{}/retry", "/admin/cards/{}/rerun",
             "/admin/cards/rerun-failed"]), form=FORM)
        def admin_actions(target: int, path: str, form: dict) -> None:
            url = path.format(target)
            data = {**form, "csrf_token": site_token, "admin_csrf": admin_token}
            answer = (operator.get(url) if path == "/admin/editions/{}"
                      else operator.post(url, data=data))
            check(path.format("<id>"), answer, (url, data))

        @common
        @given(body=st.lists(EVENT, max_size=5).map(json.dumps).map(str.encode)
               | JSON.map(json.dumps).map(str.encode) | st.binary(max_size=2000))
        def webhook(body: bytes) -> None:
            stamp = str(int(time.time()))
            signature = key.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))
            headers = {"X-Twilio-Email-Event-Webhook-Signature":
                       base64.b64encode(signature).decode(),
                       "X-Twilio-Email-Event-Webhook-Timestamp": stamp}
            check("POST /webhooks/sendgrid",
                  client.post("/webhooks/sendgrid", data=body, headers=headers), body)

        started, rounds = time.monotonic(), 0
        while time.monotonic() - started < args.minutes * 60:
            for prop in (signup, manage, rate, webhook, admin_pages, admin_reader,
                         admin_actions):
                prop()
            rounds += 1
        minutes = (time.monotonic() - started) / 60
        print(f"fuzz: {minutes:.1f} min, {rounds} rounds, {sum(statuses.values())} requests")
        for (route, code), n in sorted(statuses.items()):
            print(f"  {route}: {code} x {n}")
        if failures:
            print(f"{len(failures)} server errors:")
            for line in failures[:20]:
                print("  " + line)
            sys.exit(1)
        print("no 5xx answers")


if __name__ == "__main__":
    main()
