"""The senders behind MAIL_BACKEND, against real endpoints."""

from __future__ import annotations

from collections.abc import Iterator
from email import message_from_bytes
from email.policy import default

import pytest

from newsletter.config import Settings
from newsletter.mail.batch import Batch, Recipient
from newsletter.mail.registry import batch_sender_for
from newsletter.mail.senders import MailError, Message, OneByOne, SmtpSender
from tests.support.servers import free_port
from tests.support.smtp import Inbox, smtp_server


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    with smtp_server() as served:
        yield served


def test_smtp_sender_delivers_a_batch_reader_by_reader(smtp: tuple[Inbox, int]) -> None:
    inbox, port = smtp
    settings = Settings(mail_backend="smtp", smtp_host="127.0.0.1", smtp_port=port,
                        mail_from="Paperwire <digest@example.org>")
    sender = batch_sender_for(settings)
    assert isinstance(sender, OneByOne)
    sender.prepare()  # nothing to check: the template is rendered here
    batch = Batch(
        recipients=[Recipient(to=f"r{i}@example.org",
                              data={"s": f"{i} papers", "h": f"Digest for r{i}",
                                    "x": f"https://x.org/u/{i}"},
                              headers={"List-Unsubscribe": f"<https://x.org/u/{i}>"})
                    for i in range(3)],
        headers={"List-Unsubscribe-Post": "List-Unsubscribe=One-Click"},
    )
    result = sender.send_batch(batch)
    assert result.accepted == ("r0@example.org", "r1@example.org", "r2@example.org")
    assert [rcpt for _, rcpt, _ in inbox.received] == [[f"r{i}@example.org"] for i in range(3)]
    mail = message_from_bytes(inbox.received[1][2], policy=default)
    assert mail["Subject"] == "1 papers"
    assert mail["List-Unsubscribe"] == "<https://x.org/u/1>"
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    # The digest template, rendered here from the reader's data.
    text = mail.get_body(("plain",)).get_content()
    assert "Digest for r1" in text and "Unsubscribe: https://x.org/u/1" in text
    assert 'href="https://x.org/u/1"' in mail.get_body(("html",)).get_content()


def test_smtp_server_down_is_a_clear_error_and_leaves_readers_unsent() -> None:
    settings = Settings(mail_backend="smtp", smtp_host="127.0.0.1", smtp_port=free_port(),
                        smtp_timeout=2, mail_from="digest@example.org")
    with pytest.raises(MailError, match=r"SMTP 127\.0\.0\.1"):
        SmtpSender(settings).send(Message("a@example.org", "s", "<p>h</p>", "t"))
    result = batch_sender_for(settings).send_batch(Batch(
        recipients=[Recipient(to="a@example.org", data={"s": "s"})]))
    assert result.accepted == () and result.rejected == ()
    assert result.error is not None and "SMTP" in result.error
