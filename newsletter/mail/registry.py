"""Which sender MAIL_BACKEND names: above every sender, so none of them imports another.

Single messages (confirmation, welcome) take a `Sender`; digests take a `BatchSender`,
SendGrid natively (it renders a request's readers from its copy of the template), the
others message by message through `OneByOne`.
"""

from __future__ import annotations

from newsletter.config import Settings
from newsletter.mail.senders import (
    BatchSender,
    ConsoleSender,
    FileSender,
    OneByOne,
    Sender,
    SmtpSender,
)
from newsletter.mail.sendgrid import SendGridSender


def batch_sender_for(settings: Settings) -> BatchSender:
    """The MAIL_BACKEND as digests use it: SendGrid natively, the others message by message."""
    if settings.mail_backend == "sendgrid":
        return SendGridSender.from_settings(settings)
    if settings.mail_backend == "smtp":
        return OneByOne(SmtpSender(settings))
    if settings.mail_backend == "console":
        return OneByOne(ConsoleSender(settings.mail_from))
    return OneByOne(FileSender(settings.outbox_dir, settings.mail_from))


def sender_for(settings: Settings) -> Sender:
    """The MAIL_BACKEND for single messages (confirmation, welcome)."""
    if settings.mail_backend == "file":
        return FileSender(settings.outbox_dir, settings.mail_from)
    if settings.mail_backend == "console":
        return ConsoleSender(settings.mail_from)
    if settings.mail_backend == "smtp":
        return SmtpSender(settings)
    return SendGridSender.from_settings(settings)
