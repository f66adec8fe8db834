"""Subscribers as a domain: input checks, state changes, links, mail rendering, the CLI."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from itsdangerous import URLSafeTimedSerializer
from sqlalchemy import Engine
from sqlmodel import Session, select

from newsletter import db
from newsletter.cli import main
from newsletter.config import Settings
from newsletter.mail.render import render_email
from newsletter.mail.senders import ConsoleSender, FileSender, Message, outbox_entries, read_outbox
from newsletter.readers import reader_input
from newsletter.readers import subscriber as subs
from newsletter.readers.links import BadLink, ExpiredLink, LinkHolder, Links
from newsletter.readers.reader_input import Client, InvalidInput
from newsletter.readers.subscriber import LinkInvalid
from newsletter.readers.tables import Consent, Subscriber
from newsletter.subscriptions import privacy, signup
from newsletter.subscriptions.services import Services
from tests.support.web import link, outbox, text_of

NOW = datetime(2026, 9, 24, 12, 0, tzinfo=UTC)


# ---------------------------------------------------------------- pure input checks


@pytest.mark.parametrize("raw, stored", [
    ("reader@example.com", "reader@example.com"),
    ("  Reader.Name@Example.COM ", "reader.name@example.com"),
    ("x@bücher.de", "x@xn--bcher-kva.de"),
])
def test_addresses_are_normalized(raw: str, stored: str) -> None:
    assert reader_input.parse_email(raw) == stored


@pytest.mark.parametrize("raw", [
    "", "plain", "a@b", "reader@example.com\r\nBcc: victim@example.com",
    "reader@example.com\n", "a" * 250 + "@example.com", "ü@example.com", "a@@example.com",
])
def test_bad_addresses_are_refused(raw: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        reader_input.parse_email(raw)
    assert "email" in caught.value.errors


def test_preferences_are_checked_field_by_field() -> None:
    values = reader_input.parse_preferences(["llm", "nlp", "llm"], "weekly",
                                            "quantization, LoRA\nlora", "survey",
                                            "Yoshua Bengio", "5", True)
    assert values.topics == ("llm", "nlp")
    assert values.include_keywords == ("quantization", "LoRA")
    assert (values.frequency, values.max_papers, values.include_revised) == ("weekly", 5, True)
    with pytest.raises(InvalidInput) as caught:
        reader_input.parse_preferences(["llm", "astrology"], "hourly", max_papers="500")
    assert set(caught.value.errors) == {"topics", "frequency", "max_papers"}
    with pytest.raises(InvalidInput) as caught:
        reader_input.parse_preferences([], "daily", authors="x" * 101)
    assert set(caught.value.errors) == {"topics", "authors"}


@settings(max_examples=40, deadline=None)
@given(st.text(max_size=300))
def test_any_text_is_either_a_clean_address_or_refused(raw: str) -> None:
    try:
        address = reader_input.parse_email(raw)
    except InvalidInput:
        return
    assert "\r" not in address and "\n" not in address
    assert len(address) <= 254 and address == address.lower() and "@" in address


# ---------------------------------------------------------------- links


def test_links_are_bound_to_their_purpose() -> None:
    links = Links("secret", "https://paperwire.example")
    holder = LinkHolder(7, "key")
    manage, unsubscribe = links.manage_token(holder), links.unsubscribe_token(holder)
    assert links.read_manage(manage) == holder
    assert links.read_unsubscribe(unsubscribe) == holder
    with pytest.raises(BadLink):
        links.read_manage(unsubscribe)
    with pytest.raises(BadLink):
        links.read_unsubscribe(manage[:-2] + ("A" if manage[-2] != "A" else "B") + manage[-1])
    with pytest.raises(BadLink):
        Links("another secret", "https://x").read_manage(manage)
    with pytest.raises(BadLink):
        links.read_confirm(manage)


def test_confirmation_links_expire() -> None:
    links = Links("secret", "https://paperwire.example")
    old = URLSafeTimedSerializer("secret", salt="paperwire.confirm.v1")
    token = old.dumps([1, "nonce"])
    assert links.read_confirm(token).nonce == "nonce"
    with pytest.raises(ExpiredLink):
        links.read_confirm(token, max_age=timedelta(seconds=-1))


# ---------------------------------------------------------------- rendering and mail


def test_emails_escape_what_they_are_given() -> None:
    rendered = render_email("confirmation", {
        "preheader": "p", "email": "a@example.com", "topics": ["<script>alert(1)</script>"],
        "field": "<b>biology</b>", "frequency": "daily",
        "confirm_url": "https://x/confirm/t?a=1&b=2", "expires_days": 3, "site_url": "https://x"})
    assert "<script>alert(1)</script>" not in rendered.html
    assert "&lt;script&gt;" in rendered.html
    assert "<b>biology</b>" not in rendered.html and "&lt;b&gt;biology" in rendered.html
    assert 'href="https://x/confirm/t?a=1&amp;b=2"' in rendered.html
    assert "<script>alert(1)</script>" in rendered.text  # plain text is not HTML


def test_file_sender_writes_a_readable_message(tmp_path: Path) -> None:
    sender = FileSender(tmp_path / "outbox", "Paperwire <digest@paperwire.example>")
    name = sender.send(Message(to="r@example.com", subject="Hello ✓", html="<p>Hi</p>",
                               text="Hi https://paperwire.example/manage/abc",
                               headers={"List-Id": "Paperwire <paperwire.example>"}))
    [entry] = outbox_entries(tmp_path / "outbox")
    assert (entry.name, entry.to, entry.subject) == (name, "r@example.com", "Hello ✓")
    message = read_outbox(tmp_path / "outbox", name)
    assert message is not None and message.html is not None and message.text is not None
    assert "<p>Hi</p>" in message.html and message.text.startswith("Hi")
    assert read_outbox(tmp_path / "outbox", "../" + name) is None
    raw = (tmp_path / "outbox" / name).read_text()
    assert "List-Id: Paperwire <paperwire.example>" in raw


def test_console_sender_prints(capsys: pytest.CaptureFixture[str]) -> None:
    ConsoleSender("p@example.com").send(Message("r@example.com", "Subject", "<p>x</p>", "body"))
    out = capsys.readouterr().out
    assert "To: r@example.com" in out and "Subject: Subject" in out


# ---------------------------------------------------------------- state changes


def _values(*topics: str) -> reader_input.PreferenceValues:
    return reader_input.parse_preferences(list(topics or ("llm",)))


def _row(engine: Engine, email: str) -> Subscriber | None:
    with Session(engine) as session:
        return subs.find_by_email(session, email)


def _confirm_link(engine: Engine, decision: subs.SignupDecision) -> tuple[int, str]:
    ident, nonce = decision.subscriber.id, decision.subscriber.confirm_nonce
    assert ident is not None and nonce
    return ident, nonce


def _prefs(engine: Engine, email: str) -> dict:
    with Session(engine) as session:
        row = subs.find_by_email(session, email)
        assert row is not None
        return subs.profile(session, row)["preferences"]


def _consents(engine: Engine) -> list[Consent]:
    with Session(engine) as session:
        return list(session.exec(select(Consent).order_by(Consent.id)))


def test_signup_decides_what_to_mail(engine: Engine) -> None:
    with db.transaction(engine) as session:
        first = subs.subscribe(session, "r@example.com", _values("llm"), NOW)
        assert first.send == "confirmation" and first.subscriber.status == "pending"
        link = _confirm_link(engine, first)
    with db.transaction(engine) as session:
        again = subs.subscribe(session, "r@example.com", _values("nlp"), NOW + timedelta(minutes=3))
        assert again.send is None  # at most one mail per ten minutes...
    with db.transaction(engine) as session:
        # ...and the attempt in between stored nothing: the first link confirms what it listed.
        subs.confirm(session, *link, Client("192.0.2.1", "pytest"), NOW + timedelta(minutes=5))
    assert _prefs(engine, "r@example.com")["topics"] == ["llm"]
    consents = _consents(engine)
    assert [(c.action, c.ip) for c in consents] == [("confirm", "192.0.2.1")]
    assert "llm" in consents[0].agreed_to


def test_anonymous_signups_record_no_consent_and_each_mail_confirms_its_own_choices(
    engine: Engine,
) -> None:
    with db.transaction(engine) as session:
        first = _confirm_link(engine, subs.subscribe(session, "r@example.com", _values("llm"),
                                                     NOW))
    with db.transaction(engine) as session:
        later = subs.subscribe(session, "r@example.com", _values("nlp"),
                               NOW + timedelta(minutes=11))
        assert later.send == "confirmation" and later.choices.topics == ("nlp",)
        second = _confirm_link(engine, later)
    assert _consents(engine) == []
    assert _prefs(engine, "r@example.com")["topics"] == []  # nothing applied before a click
    # The older mail's link no longer confirms: it listed other choices.
    with pytest.raises(LinkInvalid), db.transaction(engine) as session:
        subs.confirm(session, *first, Client(), NOW + timedelta(minutes=12))
    with db.transaction(engine) as session:
        subs.confirm(session, *second, Client(), NOW + timedelta(minutes=12))
    assert _prefs(engine, "r@example.com")["topics"] == ["nlp"]


def test_confirmed_readers_keep_their_topics(engine: Engine) -> None:
    with db.transaction(engine) as session:
        row = subs.ensure(session, "r@example.com", NOW)
        subs.update_preferences(session, row, _values("vision"), NOW)
        subs.confirm_now(session, row, "admin", Client(), NOW)
    with db.transaction(engine) as session:
        decision = subs.subscribe(session, "r@example.com", _values("llm"), NOW)
        assert decision.send == "already_subscribed"
        assert decision.subscriber.status == "confirmed"
    assert _prefs(engine, "r@example.com")["topics"] == ["vision"]


def test_a_signup_for_an_unsubscribed_reader_changes_nothing_until_they_confirm(
    engine: Engine,
) -> None:
    with db.transaction(engine) as session:
        row = subs.ensure(session, "r@example.com", NOW)
        subs.update_preferences(session, row, _values("vision"), NOW)
        subs.confirm_now(session, row, "admin", Client(), NOW)
        subs.unsubscribe(session, row, Client("192.0.2.7"), NOW)
    for minutes in range(0, 100, 11):  # a stranger keeps trying, every eleven minutes
        with db.transaction(engine) as session:
            decision = subs.subscribe(session, "r@example.com", _values("llm", "nlp"),
                                      NOW + timedelta(minutes=minutes))
            assert decision.send == "confirmation"
    assert _row(engine, "r@example.com").status == "unsubscribed"  # type: ignore[union-attr]
    assert _prefs(engine, "r@example.com")["topics"] == ["vision"]
    assert [c.action for c in _consents(engine)] == ["admin", "unsubscribe"]
    assert _consents(engine)[1].ip == "192.0.2.7"
    with db.transaction(engine) as session:
        subs.confirm(session, *_confirm_link(engine, decision), Client(), NOW + timedelta(hours=2))
    assert _row(engine, "r@example.com").status == "confirmed"  # type: ignore[union-attr]
    assert _prefs(engine, "r@example.com")["topics"] == ["llm", "nlp"]
    assert [c.action for c in _consents(engine)] == ["admin", "unsubscribe", "confirm"]


def test_confirm_works_once(engine: Engine) -> None:
    with db.transaction(engine) as session:
        decision = subs.subscribe(session, "r@example.com", _values(), NOW)
        link = _confirm_link(engine, decision)
    with db.transaction(engine) as session:
        assert subs.confirm(session, *link, Client(), NOW).status == "confirmed"
    with db.transaction(engine) as session:
        subs.unsubscribe(session, subs.find_by_email(session, "r@example.com"), None, NOW)
    with pytest.raises(LinkInvalid), db.transaction(engine) as session:
        subs.confirm(session, *link, Client(), NOW)
    assert _row(engine, "r@example.com").status == "unsubscribed"  # type: ignore[union-attr]


def test_suppression_wins_over_everything(engine: Engine) -> None:
    with db.transaction(engine) as session:
        subs.subscribe(session, "r@example.com", _values(), NOW)
        subs.suppress(session, "r@example.com", "spamreport", NOW)
    assert _row(engine, "r@example.com").status == "complained"  # type: ignore[union-attr]
    with db.transaction(engine) as session:
        decision = subs.subscribe(session, "r@example.com", _values(), NOW + timedelta(days=1))
        assert decision.send is None and decision.subscriber.status == "complained"
        with pytest.raises(LinkInvalid):
            subs.confirm_now(session, decision.subscriber, "admin", Client(), NOW)


def test_pending_signups_expire(engine: Engine) -> None:
    with db.transaction(engine) as session:
        subs.subscribe(session, "old@example.com", _values(), NOW - timedelta(days=8))
        subs.subscribe(session, "new@example.com", _values(), NOW)
    with db.transaction(engine) as session:
        assert privacy.expire_pending(session, NOW) == 1
    assert _row(engine, "old@example.com") is None and _row(engine, "new@example.com")


# ---------------------------------------------------------------- the CLI


@pytest.fixture
def cli_env(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("OUTBOX_DIR", str(tmp_path / "outbox"))
    return Settings(database_url=database_url, outbox_dir=tmp_path / "outbox")


def test_cli_add_and_list(cli_env: Settings) -> None:
    runner = CliRunner()
    result = runner.invoke(main, ["subscribers", "add", "A@Example.com", "--topics", "llm,nlp"])
    assert result.exit_code == 0, result.output
    [mail] = outbox(cli_env)
    assert mail["To"] == "a@example.com" and "/confirm/" in link(mail, "confirm")
    result = runner.invoke(main, ["subscribers", "add", "b@example.com", "--topics", "vision",
                                  "--confirmed", "--frequency", "weekly"])
    assert result.exit_code == 0, result.output
    assert len(outbox(cli_env)) == 1  # --confirmed mails nobody
    result = runner.invoke(main, ["subscribers", "--json"])
    rows = json.loads(result.output)
    assert [(r["email"], r["status"], r["topics"]) for r in rows] == [
        ("a@example.com", "pending", ["llm", "nlp"]), ("b@example.com", "confirmed", ["vision"])]
    result = runner.invoke(main, ["subscribers", "add", "c@example.com", "--topics", "astrology"])
    assert result.exit_code != 0 and "topic" in result.output.lower()


def test_cli_import_is_all_or_nothing(cli_env: Settings, tmp_path: Path) -> None:
    runner = CliRunner()
    bad = tmp_path / "bad.csv"
    bad.write_text("email,topics\nok@example.com,llm\nnot-an-address,llm\n")
    result = runner.invoke(main, ["subscribers", "import", str(bad)])
    assert result.exit_code != 0 and "line 3" in result.output
    assert json.loads(runner.invoke(main, ["subscribers", "--json"]).output) == []
    good = tmp_path / "good.csv"
    good.write_text("email,topics,frequency\nok@example.com,\"llm;rl\",weekly\n"
                    "two@example.com,vision,\n")
    result = runner.invoke(main, ["subscribers", "import", str(good), "--confirmed"])
    assert result.exit_code == 0, result.output
    rows = json.loads(runner.invoke(main, ["subscribers", "--json"]).output)
    assert [(r["email"], r["status"], r["topics"], r["frequency"]) for r in rows] == [
        ("ok@example.com", "confirmed", ["llm", "rl"], "weekly"),
        ("two@example.com", "confirmed", ["vision"], "daily")]
    assert outbox(cli_env) == []


def test_welcome_mail_carries_one_click_headers(engine: Engine, tmp_path: Path) -> None:
    settings_ = Settings(database_url=str(engine.url.render_as_string(hide_password=False)),
                         outbox_dir=tmp_path / "outbox", secret_key="s" * 32)
    svc = Services.build(settings_, engine)
    signup.sign_up(svc, "r@example.com", ["llm"], "daily", "", Client())
    [confirmation] = outbox(settings_)
    token = link(confirmation, "confirm").rsplit("/", 1)[1]
    signup.confirm(svc, token, Client())
    welcome = outbox(settings_)[-1]
    assert welcome["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert welcome["List-Unsubscribe"].startswith("<http://127.0.0.1:8000/unsubscribe/")
    assert "/manage/" in text_of(welcome)
