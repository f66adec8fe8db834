"""A batch: the readers of one digest run, each with their own digest as template data.

Every digest is the same template (`render.digest_template`) filled with one reader's
`data`: their papers, why-lines, scores, subject and links, in a compact JSON-ready shape
(SendGrid's `dynamic_template_data`). SendGrid renders it server-side, up to a request's
limit of readers at a time; the file, console and SMTP senders render it here, message by
message. Either way a digest is built one way only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class Recipient:
    to: str
    # The reader's digest, for the template: JSON-ready values only.
    data: Mapping[str, Any] = field(default_factory=dict)
    # json.dumps(data), when whoever built the data serialised it already ("" if not).
    data_json: str = ""
    # len(json.dumps(data)): what a provider's cap on template data is measured against.
    data_bytes: int = 0
    # Per-recipient headers: List-Unsubscribe must name this recipient's own link.
    headers: Mapping[str, str] = field(default_factory=dict)
    # Echoed back by the provider's event webhook, e.g. {"delivery_id": "42"}.
    custom_args: Mapping[str, str] = field(default_factory=dict)
    # False: the reader opted out of tracking; a provider that tracks opens and clicks
    # must not for this recipient.
    tracking: bool = True
    # The interface language `data` is written in, and so the digest template that renders
    # it (render.digest_template; SendGrid: that language's template).
    language: str = "en"


@dataclass(frozen=True)
class Batch:
    recipients: Sequence[Recipient]
    # Headers every recipient gets (List-Id, List-Unsubscribe-Post).
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class BatchResult:
    """What happened to one batch: who was accepted, who failed for good, and why.

    Anyone in neither list was not sent (the provider was down, or refused the account)
    and stays pending for a later run.
    """

    accepted: tuple[str, ...] = ()
    rejected: tuple[str, ...] = ()
    requests: int = 0
    error: str | None = None


class RequestLog(Protocol):
    """Told of each request a batch sender makes: whom it carries, before it goes, and what
    came of it, once answered (`accepted`, `rejected` for good, neither: not sent).

    A delivery's log is its send journal (newsletter/delivery/journal.py), which keeps
    both on disk before the sender goes on. An exception from either stops the batch
    there, so a request whose outcome could not be kept is the last one made.
    """

    def sending(self, recipients: Sequence[str]) -> None: ...

    def answered(self, accepted: Sequence[str], rejected: Sequence[str], error: str | None,
                 message_id: str | None) -> None: ...


class Unlogged:
    """A batch sent outside a delivery (a tool, a test): nothing to keep."""

    def sending(self, recipients: Sequence[str]) -> None:
        pass

    def answered(self, accepted: Sequence[str], rejected: Sequence[str], error: str | None,
                 message_id: str | None) -> None:
        pass


UNLOGGED = Unlogged()
