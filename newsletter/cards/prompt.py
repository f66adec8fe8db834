"""The card prompt. Its version is stored on every card: change the text, bump the version."""

from __future__ import annotations

from typing import Any

from newsletter.cards.card import KEY_POINTS, PaperText, card_schema
from newsletter.taxonomy import MAX_TOPICS, prompt_listing

PROMPT_VERSION = "card-v1"

_SYSTEM = f"""\
You write the card for one machine-learning paper in Paperwire, a daily research digest \
read by ML researchers and engineers. Work only from the title and abstract you are given: \
never invent numbers, datasets, baselines or claims they do not state. Plain text, no \
Markdown; keep LaTeX as written. Answer with JSON in the given schema.

Fields:
- topics: 1 to {MAX_TOPICS} slugs from the taxonomy below, most relevant first. Only these \
slugs are valid.
- key_points: exactly {KEY_POINTS} bullets, one sentence of about 12 words each, no \
leading dash.
- summary: about 150 words: the problem, the approach and the main findings.
- methodology: about 55 words: how the work was done.
- results: about 45 words: what was found, with the abstract's numbers when it gives them.
- implications: about 45 words: why it matters and for whom.

Taxonomy (slug: name - description):
{prompt_listing()}"""


def card_messages(paper: PaperText) -> list[dict[str, str]]:
    categories = ", ".join(paper.categories) or "none given"
    user = (f"Title: {paper.title}\narXiv categories: {categories}\n\n"
            f"Abstract:\n{paper.abstract or '(no abstract)'}")
    return [{"role": "system", "content": _SYSTEM}, {"role": "user", "content": user}]


def response_format() -> dict[str, Any]:
    return {
        "type": "json_schema",
        "json_schema": {"name": "paper_card", "strict": True, "schema": card_schema()},
    }
