"""A batch: one rendered digest and the recipients who get it, each with their own links.

Recipients whose digests are identical but for their links share one batch. The body
carries substitution tags (`-unsubscribe_url-`, ...) that a sender fills per recipient:
SendGrid does it server-side from `personalizations[].substitutions`; the file and
console senders do it here with `personalize`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Recipient:
    to: str
    # Tag -> value, e.g. {"-unsubscribe_url-": "https://.../unsubscribe/<token>"}.
    substitutions: Mapping[str, str] = field(default_factory=dict)
    # Per-recipient headers: List-Unsubscribe must name this recipient's own link.
    headers: Mapping[str, str] = field(default_factory=dict)
    # Echoed back by the provider's event webhook, e.g. {"delivery_id": "42"}.
    custom_args: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Batch:
    subject: str
    html: str
    text: str
    recipients: Sequence[Recipient]
    # Headers every recipient gets (List-Id, List-Unsubscribe-Post).
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class BatchResult:
    """What happened to one batch: who was accepted, who failed for good, and why."""

    accepted: tuple[str, ...] = ()
    rejected: tuple[str, ...] = ()
    requests: int = 0
    error: str | None = None


class SendError(Exception):
    """The provider refused or could not take the mail."""

    def __init__(self, message: str, *, permanent: bool, status: int | None = None) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.status = status


def personalize(template: str, substitutions: Mapping[str, str]) -> str:
    """Fill substitution tags, longest tag first so no tag is a prefix of another's fill."""
    for tag in sorted(substitutions, key=len, reverse=True):
        template = template.replace(tag, substitutions[tag])
    return template
