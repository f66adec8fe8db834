"""A real SMTP server on loopback (aiosmtpd) that keeps what it receives, for the SMTP
sender's tests."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from aiosmtpd.controller import Controller

from tests.support.servers import free_port


class Inbox:
    """Each message received: (envelope sender, envelope recipients, raw bytes)."""

    def __init__(self) -> None:
        self.received: list[tuple[str, list[str], bytes]] = []

    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
        self.received.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 OK"


@contextlib.contextmanager
def smtp_server() -> Iterator[tuple[Inbox, int]]:
    inbox, port = Inbox(), free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()
