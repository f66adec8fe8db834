"""What the audit log keeps of sign-ins, and for how long (issue 22, finding 9).

The review found a password typed into the address field on /admin/audit, shown to every
operator with no end, and throttled sign-ins missing from the log.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from alembic import command
from flask.testing import FlaskClient
from sqlalchemy import Engine, text
from sqlmodel import Session, select

from newsletter import db
from newsletter.admin import accounts, audit
from newsletter.admin.audit import AuditEntry
from newsletter.config import ConfigError, Settings, load_settings
from tests.admin.test_admin_auth import OPERATOR, Clock, _add_operator, _audit, _sign_in
from tests.support import web

app, client, web_settings = web.app, web.client, web.web_settings

# An operator typing their password where the address goes.
TYPED = "Tr0ub4dor&3-hunter2"


def _stored_text(engine: Engine) -> str:
    """Every value the sign-in's tables hold, as one text."""
    with engine.connect() as conn:
        rows = [*conn.execute(text("SELECT * FROM audit_log")),
                *conn.execute(text("SELECT * FROM admin_login_failures"))]
    return "\n".join(str(value) for row in rows for value in row)


def test_text_typed_as_the_address_is_not_kept(client: FlaskClient, engine: Engine,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    Clock(monkeypatch)
    _add_operator(engine)
    for _ in range(2):
        assert _sign_in(client, email=TYPED, password="whatever it was").status_code == 403
    assert _sign_in(client, email=TYPED.upper(), password="again").status_code == 403
    assert _sign_in(client, password="not the password at all").status_code == 403
    assert _sign_in(client, next="/admin/audit").status_code == 303

    page = client.get("/admin/audit?page=1").get_data(as_text=True)
    assert TYPED.lower() not in page.lower()
    assert TYPED.lower() not in _stored_text(engine).lower()
    failed = [(actor, target) for actor, action, target in _audit(engine)
              if action == "login-failed"]
    # The same text is one unknown actor, every time; a real account is named.
    unknown = failed[0][0]
    assert unknown.startswith("unknown:") and failed[:3] == [(unknown, f"operator:{unknown}")] * 3
    assert failed[3] == (OPERATOR, f"operator:{OPERATOR}")
    # The throttle still counts that text, in any case, as one account.
    with Session(engine) as session:
        counted = session.exec(select(accounts.LoginFailure.account)).all()
    assert len(counted) == 3 and len(set(counted)) == 1


def test_a_throttled_sign_in_is_audited(client: FlaskClient, engine: Engine,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    Clock(monkeypatch)
    _add_operator(engine)
    for attempt in range(accounts.ACCOUNT_FAILURES):
        assert _sign_in(client, password=f"guess number {attempt}").status_code == 403
    assert _sign_in(client, ip="198.51.100.7").status_code == 429
    with Session(engine) as session:
        throttled = session.exec(select(AuditEntry).where(
            AuditEntry.action == "login-throttled")).all()
    assert [(row.actor, row.target, row.detail) for row in throttled] == [
        (OPERATOR, f"operator:{OPERATOR}", "from 198.51.100.7")]


def test_the_log_is_kept_for_the_configured_days(
        engine: Engine, database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from newsletter.config import settings
    from workers.app import beat_entries
    from workers.tasks import forget_old_audit_entries

    now = datetime.now(UTC)
    with db.transaction(engine) as session:
        for days in (400, 91, 89, 0):
            audit.record(session, "cli", "suppress", f"subscriber:{days}",
                         at=now - timedelta(days=days))
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("AUDIT_RETENTION_DAYS", "90")
    settings.cache_clear()
    try:
        assert forget_old_audit_entries() == 2  # the task's body, as a worker runs it
    finally:
        settings.cache_clear()
    assert [target for _, _, target in _audit(engine)] == ["subscriber:89", "subscriber:0"]

    entry = beat_entries(Settings(audit_cleanup_schedule="5 3 * * *"))["forget-old-audit-entries"]
    assert entry["task"] == "paperwire.forget_old_audit_entries"
    assert entry["schedule"].hour == {3} and entry["schedule"].minute == {5}
    assert Settings.model_fields["audit_retention_days"].default == 365


@pytest.mark.parametrize("days", ["0", "forever", "5000"])
def test_a_retention_that_is_no_retention_is_refused_at_start(
        days: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUDIT_RETENTION_DAYS", days)
    with pytest.raises(ConfigError, match="AUDIT_RETENTION_DAYS"):
        load_settings()


def test_the_password_in_the_field_from_before_the_fix_is_rewritten(engine: Engine) -> None:
    """Migration 0015: failed sign-ins already logged under a typed text that names no
    account become "unknown"; an operator's own failures keep their name."""
    config = db._alembic_config(engine)
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, "0014")
    _add_operator(engine)
    with db.transaction(engine) as session:
        audit.record(session, TYPED.lower(), "login-failed", f"operator:{TYPED.lower()}")
        audit.record(session, OPERATOR, "login-failed", f"operator:{OPERATOR}")
        session.add(accounts.LoginFailure(account=TYPED.lower(), network="192.0.2.1",
                                          at=datetime.now(UTC)))
    db.upgrade(engine)
    assert TYPED.lower() not in _stored_text(engine).lower()
    assert _audit(engine)[-2:] == [("unknown", "login-failed", "operator:unknown"),
                                   (OPERATOR, "login-failed", f"operator:{OPERATOR}")]
