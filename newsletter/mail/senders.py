"""Outgoing mail: a `Message` value, its MIME form, and the senders that deliver it.

Every sender has the same shape, `send(message) -> str` (an id for logs), so the
confirmation and the welcome mail never know where mail goes. MAIL_BACKEND picks one:
`file` (the embedded default: `.eml` files in OUTBOX_DIR), `console`, `smtp` or `sendgrid`.
Digests go out in batches (`registry.batch_sender_for`): SendGrid renders up to a request's limit of
readers from its copy of the digest template; the others render the same template here
(`render_digest`) and send message by message.
"""

from __future__ import annotations

import os
import re
import smtplib
import sys
import tempfile
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.header import Header
from email.message import EmailMessage, MIMEPart
from email.parser import BytesParser
from email.policy import EmailPolicy, default
from email.utils import format_datetime, make_msgid, parseaddr
from pathlib import Path
from typing import Protocol, TextIO

from newsletter.config import Settings
from newsletter.mail.batch import UNLOGGED, Batch, BatchResult, RequestLog
from newsletter.mail.render import render_digest

# Outbox file names are ours; anything else asked of /outbox is refused.
OUTBOX_NAME = re.compile(r"\d{8}T\d{6}\d{6}Z-[0-9a-f]{32}\.eml")


class MailError(Exception):
    """A message could not be handed to the mail backend."""


@dataclass(frozen=True)
class Message:
    to: str
    subject: str
    html: str
    text: str
    # Extra headers: List-Unsubscribe, List-Id, and the like.
    headers: Mapping[str, str] = field(default_factory=dict)


# RFC 5322 §2.1.1: a line MUST be at most 998 characters, and SHOULD be at most 78.
MAX_LINE = 998


class _MailPolicy(EmailPolicy):
    """SMTP's policy (CRLF, headers folded at 78 characters), but a header value of one
    word too long for 78 is written whole, as RFC 5322 allows up to 998.

    Left to the email package, a long List-Unsubscribe URL, which has no whitespace to fold
    at, is RFC 2047-encoded into pieces, and mail clients no longer read it as a link.
    """

    def _whole(self, name: str, value: str) -> str | None:
        text = str(value)
        line = f"{name}: {text}"
        if (self.max_line_length is not None and self.max_line_length < len(line) <= MAX_LINE
                and text.isascii() and text.isprintable() and " " not in text):
            return line + self.linesep
        return None

    def _encoded_subject(self, name: str, value: str) -> str | None:
        """A subject with non-ASCII words, encoded whole (RFC 2047).

        The email package (3.11) encodes each non-ASCII word on its own and leaves the
        spaces between them outside: "thèmes · Paperwire" became two adjacent encoded
        words, and RFC 2047 §6.2 has readers drop the space between them ("thèmes·"),
        while its folding doubled another. Here every space is inside an encoded word.
        """
        text = str(value)
        if name.lower() != "subject" or text.isascii():
            return None
        encoded = Header(text, "utf-8", header_name=name).encode(
            linesep=self.linesep, maxlinelen=self.max_line_length or MAX_LINE)
        return f"{name}: {encoded}{self.linesep}"

    def fold(self, name: str, value: str) -> str:
        return (self._whole(name, value) or self._encoded_subject(name, value)
                or super().fold(name, value))

    def fold_binary(self, name: str, value: str) -> bytes:
        whole = self._whole(name, value) or self._encoded_subject(name, value)
        return whole.encode("ascii") if whole else super().fold_binary(name, value)


_POLICY = _MailPolicy(linesep="\r\n")
# RFC 2045 §6.7: quoted-printable lines are at most 76 characters.
_BODY_POLICY = _POLICY.clone(max_line_length=76)


def _body(content: str, subtype: str) -> MIMEPart:
    part = MIMEPart(policy=_BODY_POLICY)
    part.set_content(content, subtype=subtype, cte="quoted-printable")
    return part


def to_mime(message: Message, mail_from: str, now: datetime | None = None) -> EmailMessage:
    """The RFC 5322 form of a message: plain text first, HTML as the preferred alternative.

    Each part is quoted-printable in lines of at most 76 characters, whatever its own lines
    (MJML writes a whole mail on a few lines of thousands of characters): 7-bit clean, so a
    relay without 8BITMIME carries it as it is, and SpamAssassin's MIME_QP_LONG_LINE and
    LONGLN_* rules find nothing.
    """
    mime = EmailMessage(policy=_POLICY)
    domain = parseaddr(mail_from)[1].rpartition("@")[2] or "localhost"
    mime["From"] = mail_from
    mime["To"] = message.to
    mime["Subject"] = message.subject
    mime["Date"] = format_datetime(now or datetime.now(UTC))
    mime["Message-ID"] = make_msgid(domain=domain)
    for name, value in message.headers.items():
        if not name.lower().startswith("content-"):
            mime[name] = value
    mime["MIME-Version"] = "1.0"
    mime.make_alternative()
    # After: make_alternative moves every Content-* header into the part it makes, and
    # Content-Language (RFC 3282) speaks for the whole message.
    for name, value in message.headers.items():
        if name.lower().startswith("content-"):
            mime[name] = value
    mime.attach(_body(message.text, "plain"))
    mime.attach(_body(message.html, "html"))
    return mime


class Sender(Protocol):
    def send(self, message: Message) -> str: ...


class FileSender:
    """Writes each message as an .eml file: nothing leaves the machine."""

    def __init__(self, outbox: Path, mail_from: str) -> None:
        self.outbox = outbox
        self.mail_from = mail_from

    def send(self, message: Message) -> str:
        now = datetime.now(UTC)
        name = f"{now:%Y%m%dT%H%M%S%f}Z-{uuid.uuid4().hex}.eml"
        data = to_mime(message, self.mail_from, now).as_bytes()
        try:
            self.outbox.mkdir(parents=True, exist_ok=True)
            # Write then rename, so the outbox page never shows half a message.
            fd, tmp = tempfile.mkstemp(dir=self.outbox, suffix=".tmp")
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            os.replace(tmp, self.outbox / name)
        except OSError as exc:
            raise MailError(f"cannot write to outbox {self.outbox}: {exc}") from exc
        return name


class ConsoleSender:
    """Prints each message: for trying things out in a terminal."""

    def __init__(self, mail_from: str, stream: TextIO | None = None) -> None:
        self.mail_from = mail_from
        self.stream = stream

    def send(self, message: Message) -> str:
        mime = to_mime(message, self.mail_from)
        stream = self.stream or sys.stdout
        stream.write(mime.as_string(policy=default) + "\n")
        stream.flush()
        return str(mime["Message-ID"])


class SmtpSender:
    """Hands each message to an SMTP server (a relay, Postfix, a provider's SMTP endpoint)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def send(self, message: Message) -> str:
        s = self.settings
        mime = to_mime(message, s.mail_from)
        try:
            with smtplib.SMTP(s.smtp_host, s.smtp_port, timeout=s.smtp_timeout) as smtp:
                if s.smtp_starttls:
                    smtp.starttls()
                if s.smtp_username:
                    smtp.login(s.smtp_username, s.smtp_password or "")
                smtp.send_message(mime)
        except (OSError, smtplib.SMTPException) as exc:
            raise MailError(f"SMTP {s.smtp_host}:{s.smtp_port}: {exc}") from exc
        return str(mime["Message-ID"])


class OneByOne:
    """Sends a batch through a one-message-at-a-time sender, rendering each reader's digest
    from the digest template, as SendGrid would.

    Each message is its own request, so a batch is one reader: a crash can repeat at most
    the message being written.
    """

    max_batch = 1

    def __init__(self, sender: Sender) -> None:
        self.sender = sender

    def prepare(self) -> None:
        """Nothing to check: the template is rendered here, from the package."""

    def send_batch(self, batch: Batch, log: RequestLog = UNLOGGED) -> BatchResult:
        accepted: list[str] = []
        for recipient in batch.recipients:
            digest = render_digest(recipient.data, recipient.language)
            message = Message(to=recipient.to, subject=digest.subject, html=digest.html,
                              text=digest.text, headers={**batch.headers, **recipient.headers})
            log.sending([recipient.to])
            try:
                message_id = self.sender.send(message)
            except MailError as exc:
                log.answered((), (), str(exc), None)
                # The rest stay unsent, for the next run.
                return BatchResult(tuple(accepted), (), len(accepted) + 1, str(exc))
            log.answered([recipient.to], (), None, message_id)
            accepted.append(recipient.to)
        return BatchResult(tuple(accepted), (), len(accepted))


class BatchSender(Protocol):
    max_batch: int

    def prepare(self) -> None:
        """Make sure the digest template can be rendered where it will be, before anyone
        is claimed; raises MailError (with what to do) when it cannot."""

    def send_batch(self, batch: Batch, log: RequestLog = UNLOGGED) -> BatchResult: ...


@dataclass(frozen=True)
class OutboxEntry:
    name: str
    to: str
    subject: str
    date: str


@dataclass(frozen=True)
class OutboxMessage:
    entry: OutboxEntry
    html: str | None
    text: str | None


_URL = re.compile(r"https?://[^\s<>\"']+")


def links_in(text: str | None) -> list[str]:
    """The http(s) links of a plain-text body, in order, once each."""
    found: list[str] = []
    for url in _URL.findall(text or ""):
        if url not in found:
            found.append(url)
    return found


def _parse(path: Path) -> EmailMessage:
    with path.open("rb") as fh:
        return BytesParser(policy=default).parse(fh)  # type: ignore[return-value]


def outbox_entries(outbox: Path, limit: int = 200) -> list[OutboxEntry]:
    """The newest messages first (names start with the UTC time they were written)."""
    if not outbox.is_dir():
        return []
    names = sorted((p.name for p in outbox.iterdir() if OUTBOX_NAME.fullmatch(p.name)),
                   reverse=True)[:limit]
    entries = []
    for name in names:
        mime = _parse(outbox / name)
        entries.append(OutboxEntry(name, str(mime["To"] or ""), str(mime["Subject"] or ""),
                                   str(mime["Date"] or "")))
    return entries


def read_outbox(outbox: Path, name: str) -> OutboxMessage | None:
    if not OUTBOX_NAME.fullmatch(name) or not (outbox / name).is_file():
        return None
    mime = _parse(outbox / name)
    html = mime.get_body(("html",))
    text = mime.get_body(("plain",))
    entry = OutboxEntry(name, str(mime["To"] or ""), str(mime["Subject"] or ""),
                        str(mime["Date"] or ""))
    return OutboxMessage(entry, html.get_content() if html else None,
                         text.get_content() if text else None)
