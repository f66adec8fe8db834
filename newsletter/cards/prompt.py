"""The card prompt. Its version is stored on every card: change the text, bump the version.

The field and its topics are the installation's (TAXONOMY_FILE): the prompt names the
taxonomy's field and lists its topics, and the schema allows only their slugs.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from newsletter.cards.card import KEY_POINTS, PaperText, card_schema
from newsletter.topics.taxonomy import MAX_TOPICS, Taxonomy, current

PROMPT_VERSION = "card-v2"

_SYSTEM = """\
You write the card for one paper in {field} for Paperwire, a daily research digest read \
by researchers in the field. Work only from the title and abstract you are given: \
never invent numbers, datasets, baselines or claims they do not state. Plain text, no \
Markdown; keep LaTeX as written. Answer with JSON in the given schema.

Fields:
- topics: 1 to {max_topics} slugs from the taxonomy below, most relevant first. Only these \
slugs are valid.
- key_points: exactly {key_points} bullets, one sentence of about 12 words each, no \
leading dash.
- summary: about 150 words: the problem, the approach and the main findings.
- methodology: about 55 words: how the work was done.
- results: about 45 words: what was found, with the abstract's numbers when it gives them.
- implications: about 45 words: why it matters and for whom.

Taxonomy (slug: name - description):
{listing}"""


@lru_cache(maxsize=4)  # per taxonomy (compared by identity): the same for every paper
def system_prompt(taxonomy: Taxonomy) -> str:
    return _SYSTEM.format(field=taxonomy.name or "science", max_topics=MAX_TOPICS,
                          key_points=KEY_POINTS,
                          listing=taxonomy.prompt_listing())


def card_messages(paper: PaperText) -> list[dict[str, str]]:
    categories = ", ".join(paper.categories) or "none given"
    user = (f"Title: {paper.title}\nCategories: {categories}\n\n"
            f"Abstract:\n{paper.abstract or '(no abstract)'}")
    return [{"role": "system", "content": system_prompt(current())},
            {"role": "user", "content": user}]


def response_format() -> dict[str, Any]:
    return {
        "type": "json_schema",
        "json_schema": {"name": "paper_card", "strict": True, "schema": card_schema()},
    }
