"""Every kind of mail we send, held to yardsticks nobody here wrote.

Each mail is built by the product's own path (the sign-up, confirmation and send code, the
file sender writing .eml files into an outbox) and then:

- loads nothing from any host: no stylesheet, @import, font, image or script, checked in
  its HTML and by Chromium, which must make no request at all for it; the "view in
  browser" page loads nothing from any other host than ours;
- scores at most 0.5 points with SpamAssassin (`spamassassin -L -t`, local rules only);
- keeps RFC 2045's 76 characters per quoted-printable line and RFC 5322's 78 per header
  line wherever a header can fold (an unbroken URL cannot), as written and as sent by SMTP;
- is accessible as the Email Markup Consortium asks: `lang` and `dir` on `<html>` and on
  the body's wrapper (webmail strips `<html>`), `role="presentation"` on every layout table,
  `alt` on every image, and no serious or critical axe-core violation.

SpamAssassin, Chromium and axe-core are skipped locally when missing and fail in CI.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default
from html.parser import HTMLParser
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import pytest
from mjml import mjml2html
from sqlalchemy import Engine, text
from sqlmodel import select

from newsletter import db, delivery
from newsletter.cards.summarize import summarize_pending
from newsletter.config import Settings
from newsletter.ingest.paper import Paper
from newsletter.ingest.store import ingest_files
from newsletter.mail.render import TEMPLATE_DIR, to_html
from newsletter.mail.senders import FileSender, Message, OneByOne, SmtpSender
from newsletter.readers import reader_input
from newsletter.readers import subscriber as subs
from newsletter.subscriptions import mail_queue
from newsletter.web import create_app
from tests.conftest import _ENV, ARXIV_FIXTURES
from tests.support.axe import axe_context, blocking_violations
from tests.support.servers import missing
from tests.support.smtp import smtp_server
from tests.support.web import csrf_token, html_of, link, live_site, text_of

if TYPE_CHECKING:
    from playwright.sync_api import BrowserContext, Route

SITE = "https://paperwire.example.org"
DAY = date(2026, 4, 27)  # the three single-category listings: 9 papers
# Every kind of mail Paperwire sends. There is no goodbye mail: unsubscribing and "Delete
# me" answer with a page. A new kind of mail joins this list (see the test of templates).
KINDS = ("confirmation", "welcome", "already_subscribed", "digest_daily", "digest_weekly")
SPAM_LIMIT = 0.5


# ------------------------------------------------------------------ the mails, as sent


@dataclass(frozen=True)
class Mails:
    raw: dict[str, bytes]
    settings: Settings
    engine: Engine

    def parsed(self, kind: str) -> EmailMessage:
        return message_from_bytes(self.raw[kind], policy=default)  # type: ignore[return-value]

    def html(self, kind: str) -> str:
        return html_of(self.parsed(kind))


class _Outbox:
    """The outbox folder, handing out the files each step added."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.seen: set[Path] = set()

    def new(self) -> bytes:
        mail_queue.drain_all()
        added = sorted(set(self.folder.glob("*.eml")) - self.seen)
        assert len(added) == 1, f"expected one new mail, got {len(added)}"
        self.seen.update(added)
        return added[0].read_bytes()


@pytest.fixture(scope="module")
def mails(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mails]:
    """One mail of each kind, built once for the module (the checks are slow, the mails
    do not change): a sign-up's confirmation, the welcome after confirming, the reminder
    to a reader who signs up again, a daily digest and a weekly one with "most read"."""
    folder = tmp_path_factory.mktemp("mail-standards")
    with pytest.MonkeyPatch.context() as env:
        # The function-scoped clean environment of conftest does not reach this fixture.
        for name in _ENV:
            env.delenv(name, raising=False)
        env.setenv("PAPERWIRE_DEV", "1")
        url = f"sqlite:///{folder / 'paperwire.db'}"
        engine = db.make_engine(url)
        db.upgrade(engine)
        settings = Settings(database_url=url, outbox_dir=folder / "outbox", base_url=SITE,
                            signup_rate_limit="1000/minute",
                            arxiv_api_url="http://127.0.0.1:9/api/query")
        outbox = _Outbox(settings.outbox_dir)
        raw: dict[str, bytes] = {}

        client = create_app(settings, engine=engine).test_client()
        client.environ_base["HTTP_ORIGIN"] = SITE  # the site's own form, over https
        signup = {"email": "reader@example.org", "topics": ["llm", "efficient-ml"],
                  "frequency": "daily"}
        assert client.post("/subscribe", data=signup).status_code == 200
        raw["confirmation"] = outbox.new()
        # The reader opens the link and presses the page's button.
        confirm = link(message_from_bytes(raw["confirmation"], policy=default),  # type: ignore[arg-type]
                       "confirm")
        assert client.post(confirm, data={"csrf_token": csrf_token(client, confirm)}
                           ).status_code == 200
        raw["welcome"] = outbox.new()
        # Ten minutes on, the same address signs up again.
        with db.transaction(engine) as session:
            session.execute(text("UPDATE subscribers SET last_confirmation_sent_at = :t"),
                            {"t": datetime.now(UTC) - timedelta(minutes=11)})
        assert client.post("/subscribe", data=signup).status_code == 200
        raw["already_subscribed"] = outbox.new()

        ingest_files(engine, sorted(ARXIV_FIXTURES.glob("rss_cs.*_2026-04-27.xml")))
        summarize_pending(engine, settings)  # offline cards: no OPENAI_API_KEY here
        with db.transaction(engine) as session:
            weekly = subs.ensure(session, "weekly@example.org", datetime.now(UTC))
            subs.update_preferences(session, weekly,
                                    reader_input.parse_preferences(["llm"], "weekly"))
            subs.confirm_now(session, weekly, "admin", reader_input.Client())
            # The weekly edition, planned with its "most read this week" frozen (how the
            # week's clicks and ratings make that list is test_most_read's business).
            popular = session.exec(select(Paper).order_by(Paper.id)).first()  # type: ignore[arg-type]
            assert popular is not None
            edition = delivery.open_edition(session, "weekly", DAY + timedelta(days=6))
            edition.most_read = [[popular.key, popular.title]]
        sender = OneByOne(FileSender(settings.outbox_dir, settings.mail_from))
        assert delivery.send_edition(engine, settings, frequency="daily", day=DAY,
                                     sender=sender).sent == 1
        raw["digest_daily"] = outbox.new()
        assert delivery.send_edition(engine, settings, frequency="weekly",
                                     day=DAY + timedelta(days=6), sender=sender).sent == 1
        raw["digest_weekly"] = outbox.new()
    built = Mails(raw, settings, engine)
    assert len({str(built.parsed(kind)["Subject"]) for kind in KINDS}) == len(KINDS)
    assert "Most read this week" in built.html("digest_weekly")
    assert "Most read this week" not in built.html("digest_daily")
    yield built
    engine.dispose()


def test_every_mail_template_is_a_kind_these_tests_check() -> None:
    """A new template (a goodbye mail, say) must join KINDS, and so every check below."""
    templates = {path.name.removesuffix(".mjml") for path in TEMPLATE_DIR.iterdir()
                 if path.name.endswith(".mjml")}
    covered = {"digest" if kind.startswith("digest_") else kind for kind in KINDS}
    assert templates == covered


# ------------------------------------------------------------------ nothing from elsewhere


class _Markup(HTMLParser):
    """What a mail's HTML would fetch, and the facts the accessibility checks need.

    Outlook's conditional comments (`<!--[if mso]>…<![endif]-->`) hold markup too: Outlook
    renders it, so it is read as if it were outside the comment.
    """

    _RESOURCE_ATTRS = ("src", "srcset", "poster", "background", "data", "xlink:href")
    # Elements without an end tag: `<br />` and `<br>` must not close anything.
    _VOID = frozenset(("area", "base", "br", "col", "embed", "hr", "img", "input", "link",
                       "meta", "source", "track", "wbr"))
    _URL = re.compile(r"""url\(\s*['"]?([^'")\s]+)""", re.I)
    _IMPORT = re.compile(r"""@import\s+(?:url\()?\s*['"]?([^'");\s]+)""", re.I)

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.resources: list[str] = []
        self.tables: list[dict[str, str | None]] = []
        self.images: list[dict[str, str | None]] = []
        self.html: dict[str, str | None] = {}
        self.body_children: list[tuple[str, dict[str, str | None]]] = []
        self._depth = 0  # of open elements inside <body>
        self._in_body = False
        self._in_style = False

    def _css(self, css: str) -> None:
        self.resources += self._URL.findall(css) + self._IMPORT.findall(css)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = dict(attrs)
        for name in self._RESOURCE_ATTRS:
            for value in (named.get(name) or "").split(","):
                if value.strip():
                    self.resources.append(value.split()[0])
        if tag == "link" and named.get("href"):
            self.resources.append(named["href"] or "")
        self._css(named.get("style") or "")
        if tag == "html":
            self.html = named
        elif tag == "table":
            self.tables.append(named)
        elif tag == "img":
            self.images.append(named)
        elif tag == "style":
            self._in_style = True
        if tag == "body":
            self._in_body = True
        elif self._in_body:
            if self._depth == 0:
                self.body_children.append((tag, named))
            if tag not in self._VOID:
                self._depth += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "style":
            self._in_style = False
        elif tag == "body":
            self._in_body = False
        elif self._in_body and self._depth and tag not in self._VOID:
            self._depth -= 1

    def handle_data(self, data: str) -> None:
        if self._in_style:
            self._css(data)

    def handle_comment(self, data: str) -> None:
        conditional = re.match(r"\[if [^\]]*\]>(.*)<!\[endif\]$", data, re.S)
        if conditional:
            inner = _Markup()
            inner.feed(conditional.group(1))
            self.resources += inner.resources
            self.tables += inner.tables
            self.images += inner.images


def markup(html: str) -> _Markup:
    parsed = _Markup()
    parsed.feed(html)
    parsed.close()
    return parsed


def fetched(html: str) -> list[str]:
    """Every resource the HTML names that a mail client would fetch: anything but a data:
    or cid: URI (an inline attachment)."""
    return [url for url in markup(html).resources
            if urlsplit(url).scheme.lower() not in ("data", "cid")]


def test_mjml_web_fonts_are_switched_off() -> None:
    """MJML adds Google Fonts whenever a font-family names one of its defaults (Roboto is
    in our stack); the renderer turns that off. Also shows the scanner finds them."""
    source = ('<mjml><mj-body><mj-section><mj-column><mj-text font-family="Roboto, Arial">'
              "Hi</mj-text></mj-column></mj-section></mj-body></mjml>")
    assert any("fonts.googleapis.com" in url for url in fetched(mjml2html(source)))
    assert fetched(to_html(source)) == []


@pytest.mark.parametrize("kind", KINDS)
def test_no_mail_loads_anything_from_any_host(mails: Mails, kind: str) -> None:
    html = mails.html(kind)
    assert fetched(html) == [], f"the {kind} mail loads these when opened"
    assert "@import" not in html


@pytest.fixture(scope="module")
def browser() -> Iterator[BrowserContext]:
    """One Chromium for the module: each test opens its own pages."""
    with axe_context(width=600, height=900) as context:
        yield context


def refuse_noting(seen: list[str]) -> Callable[[Route], None]:
    """A route handler that notes each URL asked for and refuses it: a test never reaches
    the network. (Playwright passes a second argument to handlers that take two.)"""
    def refuse(route: Route) -> None:
        seen.append(route.request.url)
        route.abort()

    return refuse


def test_chromium_makes_no_request_for_any_mail(mails: Mails,
                                                browser: BrowserContext) -> None:
    requested: dict[str, list[str]] = {}
    for kind in KINDS:
        page = browser.new_page()
        try:
            page.route("**/*", refuse_noting(requested.setdefault(kind, [])))
            page.set_content(mails.html(kind), wait_until="load")
        finally:
            page.close()
    assert requested == {kind: [] for kind in KINDS}


def test_view_in_browser_loads_nothing_from_elsewhere(mails: Mails,
                                                      browser: BrowserContext) -> None:
    """The digest on our site: every request goes to our host, and the page's policy
    blocks nothing (a blocked fetch logs an error in the console)."""
    view = link(mails.parsed("digest_daily"), "digest")
    with live_site(mails.settings, mails.engine) as served:
        ours = urlsplit(served.base_url).netloc
        requested: list[str] = []
        errors: list[str] = []
        page = browser.new_page()
        try:
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.route("**/*", lambda route: (
                requested.append(route.request.url),
                route.continue_() if urlsplit(route.request.url).netloc == ours
                else route.abort()))
            answer = page.goto(served.base_url + view, wait_until="load")
            assert answer is not None and answer.status == 200
            # Its policy, too, lets nothing from another host in.
            policy = answer.headers["content-security-policy"]
            assert "https:" not in policy and "*" not in policy, policy
            assert page.locator("a[href*='/papers/']").count() > 0  # the digest, not an error
            assert blocking_violations(page) == []
        finally:
            page.close()
    elsewhere = [url for url in requested if urlsplit(url).netloc != ours]
    assert elsewhere == [] and errors == [], (elsewhere, errors)


# ------------------------------------------------------------------ spam filters


def _spamassassin(raw: bytes, home: Path) -> tuple[float, list[str]]:
    """SpamAssassin's score for a message and the rules that scored, local tests only
    (`-L`: no DNS or network checks), with a home of its own so a developer's Bayes
    database and user_prefs do not change the score."""
    if shutil.which("spamassassin") is None:
        missing("spamassassin")
    done = subprocess.run(["spamassassin", "-L", "-t"], input=raw, capture_output=True,
                          env={**os.environ, "HOME": str(home)}, timeout=300, check=True)
    report = done.stdout.decode("utf-8", "replace")
    found = (re.search(r"Content analysis details:\s+\((-?\d+(?:\.\d+)?) points", report)
             or re.search(r"^X-Spam-Status: \w+, score=(-?\d+(?:\.\d+)?)", report, re.M))
    assert found, f"no score in SpamAssassin's answer:\n{report}"
    rules = re.findall(r"^\s*(-?\d+\.\d+) ([A-Z0-9_]+)\s+(.*)$", report, re.M)
    return float(found.group(1)), [f"{points} {name}: {what}" for points, name, what in rules
                                   if float(points) != 0]


@pytest.mark.parametrize("kind", KINDS)
def test_spamassassin_scores_each_mail_at_most_half_a_point(
        mails: Mails, kind: str, tmp_path: Path) -> None:
    score, rules = _spamassassin(mails.raw[kind], tmp_path)
    assert score <= SPAM_LIMIT, f"the {kind} mail scores {score}: " + "; ".join(rules)


# ------------------------------------------------------------------ line lengths


def _over_long(raw: bytes) -> list[str]:
    """Lines that break RFC 2045's 76 characters in a body (quoted-printable, and any
    other part, which we send as quoted-printable too) or RFC 5322's 78 in a header that
    could have been folded. A header line of one unbroken word (a long URL) may run to 998:
    folding it would mean RFC 2047-encoding it, and clients would no longer see a link."""
    head, _, body = raw.partition(b"\r\n\r\n")
    assert body, "the message's lines do not end in CRLF"
    bad = []
    for line in head.split(b"\r\n"):
        unbroken = re.fullmatch(rb"(?:[!-9;-~]+: | )[!-~]+", line) is not None
        if len(line) > 998 or (len(line) > 78 and not unbroken):
            bad.append(f"header ({len(line)}): {line[:60]!r}…")
    for line in body.split(b"\r\n"):
        if len(line) > 76:
            bad.append(f"body ({len(line)}): {line[:60]!r}…")
    return bad


@pytest.mark.parametrize("kind", KINDS)
def test_lines_keep_to_rfc_2045_and_5322(mails: Mails, kind: str) -> None:
    raw = mails.raw[kind]
    assert _over_long(raw) == []
    mime = mails.parsed(kind)
    for part in mime.walk():
        if part.get_content_maintype() == "text":
            assert part["Content-Transfer-Encoding"] == "quoted-printable"
    # Still the same mail once decoded: its links whole, one URL per List-Unsubscribe.
    unsubscribe = str(mime["List-Unsubscribe"] or "")
    if kind != "confirmation":  # a confirmation goes to someone not yet subscribed
        assert re.fullmatch(r"<https://[^\s<>]+/unsubscribe/[^\s<>]+>", unsubscribe)
        assert unsubscribe.strip("<>") in html_of(mime) and unsubscribe.strip("<>") in text_of(
            mime)


def test_smtp_sends_the_same_short_lines(mails: Mails) -> None:
    """What an SMTP relay receives keeps the limits too, for the longest mail we send."""
    mime = mails.parsed("digest_daily")
    message = Message(to="reader@example.org", subject=str(mime["Subject"]),
                      html=html_of(mime), text=text_of(mime),
                      headers={"List-Unsubscribe": str(mime["List-Unsubscribe"])})
    with smtp_server() as (inbox, port):
        SmtpSender(Settings(mail_backend="smtp", smtp_host="127.0.0.1", smtp_port=port,
                            mail_from="Paperwire <digest@example.org>")).send(message)
    ((_, _, received),) = inbox.received
    assert _over_long(received) == []
    assert html_of(message_from_bytes(received, policy=default)) == message.html  # type: ignore[arg-type]


# ------------------------------------------------------------------ accessibility


@pytest.mark.parametrize("kind", KINDS)
def test_markup_is_accessible_where_webmail_strips_the_html_element(
        mails: Mails, kind: str) -> None:
    html = mails.html(kind)
    found = markup(html)
    lang, direction = found.html.get("lang"), found.html.get("dir")
    assert lang == "en" and direction in ("ltr", "rtl")
    # Webmail keeps what is inside <body>: each top-level element says the language and
    # direction again.
    assert found.body_children, "an empty body"
    for tag, attrs in found.body_children:
        assert (attrs.get("lang"), attrs.get("dir")) == (lang, direction), (tag, attrs)
    # Layout tables are not data tables: a screen reader must not announce rows and cells.
    assert found.tables and all(t.get("role") == "presentation" for t in found.tables)
    # An image without alt has its file name read out; decorative ones say alt="".
    assert all("alt" in image for image in found.images)
    # Nothing hidden: a hidden preheader is what spam filters count as invisible text.
    assert not re.search(r"display:\s*none", html), "hidden text in the mail"


def test_axe_finds_nothing_serious_in_any_mail(mails: Mails, browser: BrowserContext) -> None:
    found: dict[str, list[str]] = {}
    for kind in KINDS:
        page = browser.new_page()
        try:
            page.route("**/*", refuse_noting([]))
            page.set_content(mails.html(kind), wait_until="load")
            found[kind] = blocking_violations(page)
        finally:
            page.close()
    assert found == {kind: [] for kind in KINDS}
