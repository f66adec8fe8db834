"""A batch: one mail for up to a provider's limit of recipients, each with their own digest.

The body is a layout with substitution tags (`[[pw:papers_html]]`, `[[pw:manage]]`, ...).
Each recipient's substitutions say which of the batch's shared `sections` (a paper's
card, a "why it matched" line) make up their digest, and give their own links. SendGrid
fills both server-side (substitutions first, then sections); the file and console
senders do the same here with `personalize`. So 1,000 readers with 1,000 different
digests still cost one request, and each paper's card is rendered once per request.
"""

from __future__ import annotations

import re
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
    # This recipient's own subject ("7 papers on LLMs"); the batch's when None.
    subject: str | None = None


@dataclass(frozen=True)
class Batch:
    subject: str
    html: str
    text: str
    recipients: Sequence[Recipient]
    # Headers every recipient gets (List-Id, List-Unsubscribe-Post).
    headers: Mapping[str, str] = field(default_factory=dict)
    # Tag -> block shared by the recipients who name it in their substitutions.
    sections: Mapping[str, str] = field(default_factory=dict)


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


def _fill(template: str, values: Mapping[str, str]) -> str:
    if not values:
        return template
    # One pass: a value is never scanned again, so text inside a value cannot pull in a tag.
    pattern = re.compile("|".join(re.escape(tag) for tag in sorted(values, key=len,
                                                                    reverse=True)))
    return pattern.sub(lambda m: values[m.group(0)], template)


def personalize(template: str, substitutions: Mapping[str, str],
                sections: Mapping[str, str] | None = None) -> str:
    """What the recipient reads: substitutions filled, then the sections they name."""
    return _fill(_fill(template, substitutions), sections or {})
