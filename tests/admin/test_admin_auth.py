"""The admin site's door: accounts, sign-in, sessions, CSRF and the audit log.

Driven through the Flask test client on SQLite and Postgres, and through the `newsletter`
command with click's runner.
"""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from click.testing import CliRunner, Result
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine, MetaData, func, inspect
from sqlmodel import Session, select

from newsletter import db
from newsletter.admin import accounts, audit
from newsletter.admin.audit import AuditEntry
from newsletter.cli import main
from newsletter.config import Settings
from newsletter.web import create_app
from newsletter.web.admin import frame
from tests.support import web
from tests.support.web import csrf_token, link, outbox, session_form_token, subscribe

app, client, web_settings = web.app, web.client, web.web_settings

OPERATOR = "ada@example.org"
PASSWORD = "correct horse battery staple"
_ADMIN_CSRF = re.compile(r'name="admin_csrf" value="([^"]+)"')
_CSRF_VALUE = re.compile(r'(?<=name="csrf_token" value=")[^"]+')


def _add_operator(engine: Engine, email: str = OPERATOR, password: str = PASSWORD) -> None:
    with db.transaction(engine) as session:
        accounts.add(session, email, password, audit.CLI)


def _sign_in(client: FlaskClient, email: str = OPERATOR, password: str = PASSWORD,
             ip: str = "192.0.2.10", **extra: str):  # type: ignore[no-untyped-def]
    token = csrf_token(client, "/admin/login")
    return client.post("/admin/login", environ_base={"REMOTE_ADDR": ip},
                       data={"csrf_token": token, "email": email, "password": password,
                             **extra})


def _signed_in(client: FlaskClient) -> str:
    """Sign in; the admin session's form token."""
    answer = _sign_in(client, next="/admin/audit")
    assert answer.status_code == 303, answer.get_data(as_text=True)
    return _admin_token(client)


def _admin_token(client: FlaskClient) -> str:
    page = client.get("/admin/audit")
    assert page.status_code == 200, page.status_code
    found = _ADMIN_CSRF.search(page.get_data(as_text=True))
    assert found
    return found.group(1)


def _audit(engine: Engine) -> list[tuple[str, str, str]]:
    with Session(engine) as session:
        rows = session.exec(select(AuditEntry).order_by(AuditEntry.id)).all()
        return [(r.actor, r.action, r.target) for r in rows]


def _sessions(engine: Engine) -> int:
    with Session(engine) as session:
        return session.exec(select(func.count()).select_from(accounts.AdminSession)).one()


def _cookie(client: FlaskClient) -> str | None:
    found = client.get_cookie(frame.COOKIE, path="/admin")
    return found.value if found else None


def _admin_urls(app: Flask) -> list[tuple[str, str]]:
    """(method, path) of every route on the admin blueprint, arguments filled in."""
    adapter = app.url_map.bind("paperwire.test")
    found = []
    for rule in app.url_map.iter_rules():
        if not rule.endpoint.startswith("admin."):
            continue
        values = {name: 1 if type(rule._converters[name]).__name__ == "IntegerConverter"
                  else "x" for name in rule.arguments}
        path = adapter.build(rule.endpoint, values)
        found += [(method, path) for method in sorted(rule.methods or ())
                  if method not in ("HEAD", "OPTIONS")]
    return found


class Clock:
    """The admin site's time, moved by the test instead of slept through."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.at = datetime.now(UTC)
        monkeypatch.setattr(frame, "now", lambda: self.at)

    def move(self, **delta: float) -> None:
        self.at += timedelta(**delta)


# ---------------------------------------------------------------- no account, no site


def test_there_is_no_admin_site_until_an_account_exists(app: Flask, client: FlaskClient,
                                                        engine: Engine) -> None:
    token = session_form_token(client)
    tried = [*_admin_urls(app), ("GET", "/admin/logout"), ("GET", "/admin/nothing")]
    for method, path in tried:
        data = {"csrf_token": token, "email": OPERATOR, "password": PASSWORD}
        answer = client.open(path, method=method, data=data if method == "POST" else None)
        assert answer.status_code == 404, (method, path, answer.status_code)
    assert _audit(engine) == []

    _add_operator(engine)
    assert client.get("/admin/login").status_code == 200


# ---------------------------------------------------------------- signed out


def test_a_signed_out_visitor_gets_nothing_from_any_admin_url(app: Flask, client: FlaskClient,
                                                              engine: Engine) -> None:
    _add_operator(engine)
    before = _audit(engine)
    token = session_form_token(client)
    routes = [(m, p) for m, p in _admin_urls(app) if p != "/admin/login"]
    assert ("GET", "/admin/audit") in routes and ("POST", "/admin/logout") in routes
    for method, path in routes:
        data = {"csrf_token": token, "admin_csrf": "guess"} if method != "GET" else None
        answer = client.open(path, method=method, data=data)
        assert answer.status_code == 303, (method, path, answer.status_code)
        assert urlsplit(answer.headers["Location"]).path == "/admin/login", (method, path)
        assert "Audit log" not in answer.get_data(as_text=True)
    # A page asked for comes back after sign-in; a post is not replayed.
    assert client.get("/admin/audit?actor=cli").headers["Location"] == (
        "/admin/login?next=/admin/audit?actor%3Dcli")
    assert _audit(engine) == before


def test_a_readers_manage_session_gets_nothing(client: FlaskClient, engine: Engine,
                                               web_settings: Settings) -> None:
    _add_operator(engine)
    assert subscribe(client, "reader@example.com").status_code == 200
    confirm = link(outbox(web_settings)[-1], "confirm")
    assert client.post(confirm, data={"csrf_token": csrf_token(client, confirm)}).status_code == 200
    manage = link(outbox(web_settings)[-1], "manage")
    assert client.get(manage).status_code == 200  # the reader's own page, their session

    answer = client.get("/admin/audit")
    assert answer.status_code == 303
    assert urlsplit(answer.headers["Location"]).path == "/admin/login"
    forged = client.post("/admin/logout", data={"csrf_token": csrf_token(client, manage)})
    assert urlsplit(forged.headers["Location"]).path == "/admin/login"


def test_a_made_up_or_stale_cookie_opens_nothing(client: FlaskClient, engine: Engine) -> None:
    _add_operator(engine)
    client.set_cookie(frame.COOKIE, "made-up", path="/admin")
    answer = client.get("/admin/audit")
    assert urlsplit(answer.headers["Location"]).path == "/admin/login"
    assert _cookie(client) is None  # the browser is told to forget it


# ---------------------------------------------------------------- signing in


def test_signing_in_starts_a_session_and_is_audited(client: FlaskClient,
                                                    engine: Engine) -> None:
    _add_operator(engine)
    answer = _sign_in(client, email="  ADA@example.org ", next="/admin/audit")
    assert answer.status_code == 303
    assert answer.headers["Location"] == "/admin/audit"
    page = client.get("/admin/audit")
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert f"Signed in as <strong>{OPERATOR}</strong>" in text
    assert page.headers["Cache-Control"] == "no-store"
    assert "'unsafe-inline'" not in page.headers["Content-Security-Policy"]
    assert "<script" not in text and "style=" not in text
    assert _audit(engine)[-1] == (OPERATOR, "login", f"operator:{OPERATOR}")


def test_after_sign_in_the_overview_or_a_page_of_this_site(app: Flask, client: FlaskClient,
                                                           engine: Engine) -> None:
    _add_operator(engine)
    with app.test_request_context():
        overview = frame.back_to(None)
    assert urlsplit(overview).path.rstrip("/") == "/admin"
    for elsewhere in ("https://evil.example/admin", "//evil.example/admin", "/\\evil.example",
                      "/papers", "javascript:alert(1)"):
        client.delete_cookie(frame.COOKIE, path="/admin")
        answer = _sign_in(client, next=elsewhere)
        assert answer.status_code == 303
        assert answer.headers["Location"] == overview, elsewhere


def test_wrong_password_and_unknown_account_get_the_same_answer(client: FlaskClient,
                                                                engine: Engine) -> None:
    _add_operator(engine)
    wrong = _sign_in(client, password="not the password at all")
    unknown = _sign_in(client, email="nobody@example.org")
    assert wrong.status_code == unknown.status_code == 403
    texts = [_CSRF_VALUE.sub("", a.get_data(as_text=True).replace(e, "")) for a, e in
             ((wrong, OPERATOR), (unknown, "nobody@example.org"))]
    assert texts[0] == texts[1]
    assert "do not match an operator account" in texts[0]
    assert _cookie(client) is None and _sessions(engine) == 0
    # An address with no account is not kept as typed (tests/admin/test_admin_audit_log.py).
    [(known, _, _), (unknown, action, _)] = _audit(engine)[-2:]
    assert (known, action) == (OPERATOR, "login-failed")
    assert unknown.startswith("unknown:") and "nobody" not in unknown


def test_the_login_form_needs_its_csrf_token(client: FlaskClient, engine: Engine) -> None:
    _add_operator(engine)
    answer = client.post("/admin/login", data={"email": OPERATOR, "password": PASSWORD})
    assert answer.status_code == 400
    assert _cookie(client) is None and _sessions(engine) == 0


# ---------------------------------------------------------------- brute force


def test_guessing_an_accounts_password_is_stopped_after_five_failures(
        client: FlaskClient, engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock(monkeypatch)
    _add_operator(engine)
    for attempt in range(accounts.ACCOUNT_FAILURES):
        assert _sign_in(client, password=f"guess number {attempt}").status_code == 403
    # From another network, and with the right password: this account is locked for now.
    locked = _sign_in(client, ip="198.51.100.7")
    assert locked.status_code == 429
    assert "Too many failed sign-ins" in locked.get_data(as_text=True)
    assert _cookie(client) is None
    assert [a for _, a, _ in _audit(engine)].count("login-failed") == accounts.ACCOUNT_FAILURES

    clock.move(minutes=16)
    assert _sign_in(client, next="/admin/audit").status_code == 303


def test_one_network_guessing_many_accounts_is_stopped(
        client: FlaskClient, engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    Clock(monkeypatch)
    _add_operator(engine)
    for attempt in range(accounts.NETWORK_FAILURES):
        answer = _sign_in(client, email=f"guess{attempt}@example.org", ip="203.0.113.5")
        assert answer.status_code == 403
    # Another address in the same IPv4 address is the same network; the account is not locked.
    assert _sign_in(client, ip="203.0.113.5").status_code == 429
    assert _sign_in(client, ip="203.0.113.6", next="/admin/audit").status_code == 303


def test_an_ipv6_client_is_counted_by_its_64(client: FlaskClient, engine: Engine,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    Clock(monkeypatch)
    _add_operator(engine)
    for attempt in range(accounts.NETWORK_FAILURES):
        answer = _sign_in(client, email=f"guess{attempt}@example.org",
                          ip=f"2001:db8:1:2::{attempt + 1:x}")
        assert answer.status_code == 403
    assert _sign_in(client, ip="2001:db8:1:2::ffff").status_code == 429


# ---------------------------------------------------------------- the session


@pytest.mark.parametrize("base_url", ["https://paperwire.test", "http://paperwire.test"])
def test_the_session_cookie_is_strict_httponly_and_secure_over_https(
        web_settings: Settings, engine: Engine, base_url: str) -> None:
    _add_operator(engine)
    site = create_app(web_settings.model_copy(update={"base_url": base_url}), engine=engine)
    client = site.test_client()
    token = csrf_token(client, "/admin/login")
    answer = client.post("/admin/login", headers={"Origin": base_url},
                         data={"csrf_token": token, "email": OPERATOR, "password": PASSWORD,
                               "next": "/admin/audit"})
    assert answer.status_code == 303
    [cookie] = [c for c in answer.headers.getlist("Set-Cookie")
                if c.startswith(f"{frame.COOKIE}=")]
    flags = {part.strip().split("=")[0].lower(): part.strip() for part in cookie.split(";")}
    assert flags["path"] == "Path=/admin"
    assert flags["samesite"] == "SameSite=Strict"
    assert "httponly" in flags
    assert ("secure" in flags) == base_url.startswith("https://")
    assert "expires" not in flags and "max-age" not in flags  # gone with the browser session


def test_an_idle_session_times_out(client: FlaskClient, engine: Engine,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock(monkeypatch)
    _add_operator(engine)
    _signed_in(client)
    clock.move(minutes=29)
    assert client.get("/admin/audit").status_code == 200  # seen again: the idle time restarts
    clock.move(minutes=29)
    assert client.get("/admin/audit").status_code == 200
    clock.move(minutes=31)
    answer = client.get("/admin/audit")
    assert urlsplit(answer.headers["Location"]).path == "/admin/login"
    assert _sessions(engine) == 0


def test_a_session_ends_twelve_hours_after_sign_in_however_busy(
        client: FlaskClient, engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock(monkeypatch)
    _add_operator(engine)
    _signed_in(client)
    for _ in range(int(accounts.LIFETIME / timedelta(minutes=25))):
        clock.move(minutes=25)
        assert client.get("/admin/audit").status_code == 200
    clock.move(minutes=25)
    assert client.get("/admin/audit").status_code == 303
    assert _sessions(engine) == 0


def test_signing_out_ends_the_session_on_the_server(client: FlaskClient,
                                                    engine: Engine) -> None:
    _add_operator(engine)
    token = _signed_in(client)
    stolen = _cookie(client)
    assert stolen and _sessions(engine) == 1
    answer = client.post("/admin/logout",
                         data={"csrf_token": session_form_token(client), "admin_csrf": token})
    assert answer.status_code == 303
    assert urlsplit(answer.headers["Location"]).path == "/admin/login"
    assert _cookie(client) is None and _sessions(engine) == 0
    assert _audit(engine)[-1] == (OPERATOR, "logout", f"operator:{OPERATOR}")

    client.set_cookie(frame.COOKIE, stolen, path="/admin")  # the old cookie, replayed
    assert client.get("/admin/audit").status_code == 303


def test_a_post_needs_the_admin_sessions_own_token(client: FlaskClient,
                                                   engine: Engine) -> None:
    _add_operator(engine)
    token = _signed_in(client)
    site_wide = session_form_token(client)
    refused = [
        {"csrf_token": site_wide},                                  # no admin token
        {"csrf_token": site_wide, "admin_csrf": token[:-2] + "xx"},  # a wrong one
        {"admin_csrf": token},                                      # no site-wide token
    ]
    for data in refused:
        answer = client.post("/admin/logout", data=data)
        assert answer.status_code == 400, data
        assert "This form has expired" in answer.get_data(as_text=True)
        assert _sessions(engine) == 1
    assert [a for _, a, _ in _audit(engine)].count("logout") == 0


def test_a_new_session_has_a_new_form_token(client: FlaskClient, engine: Engine) -> None:
    _add_operator(engine)
    first = _signed_in(client)
    client.post("/admin/logout", data={"csrf_token": session_form_token(client),
                                       "admin_csrf": first})
    second = _signed_in(client)
    assert second != first
    stale = client.post("/admin/logout", data={"csrf_token": session_form_token(client),
                                               "admin_csrf": first})
    assert stale.status_code == 400


# ---------------------------------------------------------------- the audit page


def test_the_audit_page_filters_and_pages_newest_first(client: FlaskClient,
                                                       engine: Engine) -> None:
    _add_operator(engine)
    start = datetime(2026, 11, 1, tzinfo=UTC)
    with db.transaction(engine) as session:
        for n in range(60):
            audit.record(session, "bob@example.org" if n % 2 else OPERATOR, f"step-{n % 3}",
                         f"edition:{n}", at=start + timedelta(minutes=n))
    _signed_in(client)

    first = client.get("/admin/audit").get_data(as_text=True)
    targets = re.findall(r"<td>(edition:\d+|operator:[^<]+)</td>", first)
    # This sign-in and the account's creation are the newest.
    assert targets[:5] == [f"operator:{OPERATOR}", f"operator:{OPERATOR}",
                           "edition:59", "edition:58", "edition:57"]
    assert "page 1 of 2" in first
    [next_page] = re.findall(r'<a rel="next" href="([^"]+)">Older</a>', first)
    older = client.get(html.unescape(next_page)).get_data(as_text=True)
    assert "edition:0<" in older and "edition:59<" not in older
    assert '<a rel="prev" href="/admin/audit?page=1">Newer</a>' in older
    assert 'rel="next"' not in older

    bobs = client.get("/admin/audit?actor=BOB@example.org&action=step-1").get_data(as_text=True)
    shown = re.findall(r"<td>edition:(\d+)</td>", bobs)
    assert shown and all(int(n) % 2 == 1 and int(n) % 3 == 1 for n in shown)
    assert len(shown) == 10
    assert client.get("/admin/audit?page=99&action=nothing").status_code == 200


def test_act_records_for_the_signed_in_operator(app: Flask, client: FlaskClient,
                                                engine: Engine) -> None:
    """The audit call admin pages make: the row is kept when the answer is not an error."""
    _add_operator(engine)
    cookie_token = None
    _signed_in(client)
    cookie_token = _cookie(client)
    for status in (200, 400):
        with app.test_request_context("/admin/audit", headers={
                "Cookie": f"{frame.COOKIE}={cookie_token}"}):
            app.preprocess_request()
            assert frame.current_operator() == OPERATOR
            frame.act("suppress", "subscriber:42", f"answered {status}")
            app.process_response(app.make_response(("", status)))
            app.do_teardown_request()
    assert (OPERATOR, "suppress", "subscriber:42") in _audit(engine)
    with Session(engine) as session:
        details = session.exec(select(AuditEntry.detail)
                               .where(AuditEntry.action == "suppress")).all()
    assert details == ["answered 200"]


# ---------------------------------------------------------------- the command line


def _run(database_url: str, *args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(main, ["admin", *args], input=input,
                              env={"DATABASE_URL": database_url})


def test_cli_adds_lists_and_removes_operators(database_url: str, engine: Engine) -> None:
    added = _run(database_url, "add", "Ada@Example.org", "--password-stdin",
                 input=PASSWORD + "\n")
    assert added.exit_code == 0, added.output
    assert "added ada@example.org" in added.output

    prompted = _run(database_url, "add", "bob@example.org",
                    input="another long password\nanother long password\n")
    assert prompted.exit_code == 0, prompted.output
    assert "another long password" not in prompted.output  # hidden as typed

    listed = _run(database_url, "list")
    assert listed.exit_code == 0
    assert listed.output.splitlines()[:2][0].startswith("ada@example.org  added ")
    assert "bob@example.org" in listed.output and "2 operator account(s)" in listed.output

    removed = _run(database_url, "remove", "bob@example.org")
    assert removed.exit_code == 0, removed.output
    assert "bob@example.org" not in _run(database_url, "list").output
    assert _audit(engine) == [
        ("cli", "operator-add", "operator:ada@example.org"),
        ("cli", "operator-add", "operator:bob@example.org"),
        ("cli", "operator-remove", "operator:bob@example.org")]


def test_cli_refuses_bad_accounts_with_a_clear_message(database_url: str,
                                                       engine: Engine) -> None:
    short = _run(database_url, "add", OPERATOR, "--password-stdin", input="too short\n")
    assert short.exit_code == 1 and "at least 12 characters" in short.output
    mismatch = _run(database_url, "add", OPERATOR,
                    input="first long password\nsecond long password\n")
    assert mismatch.exit_code != 0 and "Traceback" not in mismatch.output
    bad = _run(database_url, "add", "not an address", "--password-stdin",
               input=PASSWORD + "\n")
    assert bad.exit_code == 1 and "is not an email address" in bad.output
    assert _run(database_url, "add", OPERATOR, "--password-stdin",
                input=PASSWORD + "\n").exit_code == 0
    again = _run(database_url, "add", OPERATOR, "--password-stdin", input=PASSWORD + "\n")
    assert again.exit_code == 1 and "already has an account" in again.output
    missing = _run(database_url, "remove", "nobody@example.org")
    assert missing.exit_code == 1 and "has no account" in missing.output
    assert [a for _, a, _ in _audit(engine)] == ["operator-add"]


def test_removing_an_operator_ends_their_sessions(client: FlaskClient, database_url: str,
                                                  engine: Engine) -> None:
    _add_operator(engine)
    _signed_in(client)
    removed = _run(database_url, "remove", OPERATOR)
    assert removed.exit_code == 0 and "1 session(s) ended" in removed.output
    assert _sessions(engine) == 0
    # The last account gone, the admin site is gone too.
    assert client.get("/admin/audit").status_code == 404


def test_a_password_is_stored_only_as_an_argon2_hash(engine: Engine) -> None:
    _add_operator(engine)
    with Session(engine) as session:
        [operator] = accounts.operators(session)
    assert operator.password_hash.startswith("$argon2id$")
    assert PASSWORD not in operator.password_hash


# ---------------------------------------------------------------- the migration

TABLES = {"operators", "admin_sessions", "admin_login_failures", "audit_log"}


def test_the_migration_makes_what_the_models_describe_and_goes_down_and_up(
        engine: Engine) -> None:
    models = MetaData()
    for table in (accounts.Operator, accounts.AdminSession, accounts.LoginFailure,
                  AuditEntry):
        table.__table__.to_metadata(models)  # type: ignore[attr-defined]

    def ours(_obj, name, type_, _reflected, _compare_to):  # type: ignore[no-untyped-def]
        return type_ != "table" or name in TABLES

    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"include_object": ours})
        assert compare_metadata(context, models) == []

    config = db._alembic_config(engine)
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, "0010")
    assert not TABLES & set(inspect(engine).get_table_names())
    db.upgrade(engine)
    assert set(inspect(engine).get_table_names()) >= TABLES
    _add_operator(engine)
