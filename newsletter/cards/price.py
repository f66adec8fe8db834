"""What tokens cost: a small table of USD per million tokens, input then output."""

from __future__ import annotations

from typing import Protocol

# Public list prices (standard tier). Longer names first so that a dated snapshot such as
# gpt-4o-mini-2024-07-18 matches gpt-4o-mini, not gpt-4o.
PRICES_PER_MTOK: dict[str, tuple[float, float]] = {
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4o": (2.50, 10.00),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1": (2.00, 8.00),
    "gpt-5-nano": (0.05, 0.40),
    "gpt-5-mini": (0.25, 2.00),
    "gpt-5": (1.25, 10.00),
    "o4-mini": (1.10, 4.40),
    # Embeddings are billed on input only
    # (https://developers.openai.com/api/docs/models/text-embedding-3-large: $0.13 per 1M
    # tokens, and text-embedding-3-small $0.02 in its comparison).
    "text-embedding-3-small": (0.02, 0.0),
    "text-embedding-3-large": (0.13, 0.0),
    "offline": (0.0, 0.0),
}


def price_of(
    model: str, override: tuple[float | None, float | None] = (None, None)
) -> tuple[float, float] | None:
    """(input, output) USD per million tokens; None when unknown and not configured."""
    if override[0] is not None and override[1] is not None:
        return override[0], override[1]
    name = model.lower().rsplit("/", 1)[-1]  # "openai/gpt-4o-mini" on routers
    for known in sorted(PRICES_PER_MTOK, key=len, reverse=True):
        if name == known or name.startswith(known + "-"):
            return PRICES_PER_MTOK[known]
    return None


def cost_usd(price: tuple[float, float] | None, input_tokens: int,
             output_tokens: int) -> float | None:
    if price is None:
        return None
    return (input_tokens * price[0] + output_tokens * price[1]) / 1_000_000


class Spending(Protocol):
    """A report's count of calls and what they cost (cards, translations)."""

    written: int
    failed: int
    input_tokens: int
    output_tokens: int
    cost_usd: float | None


class Outcome(Protocol):
    """One call's result: whether it gave something usable, and what it cost."""

    @property
    def ok(self) -> bool: ...

    input_tokens: int
    output_tokens: int
    cost_usd: float | None


def tally(into: Spending, result: Outcome, *, counted: bool = True) -> None:
    """One result into a report: written or failed (unless not `counted`: paid for, but
    nothing to show), and its tokens and cost. A cost once unknown (a model with no price)
    stays unknown: a sum of some costs would pass for the whole."""
    if counted:
        if result.ok:
            into.written += 1
        else:
            into.failed += 1
    into.input_tokens += result.input_tokens
    into.output_tokens += result.output_tokens
    if into.cost_usd is not None:
        into.cost_usd = None if result.cost_usd is None else into.cost_usd + result.cost_usd
