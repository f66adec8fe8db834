"""The offline tagger: 1 to 3 topics for a paper from its categories and words, no LLM.

Works for any taxonomy: the evidence is what each topic's entry in the file says (its
categories and keywords).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache

from newsletter.topics.taxonomy import MAX_TOPICS, Taxonomy, current


def _keyword_pattern(word: str) -> re.Pattern[str]:
    # Long entries are stems ("quantiz" finds quantization); short ones are acronyms that
    # must end where the word ends ("gan" is not "gang"), plural allowed.
    tail = r"s?(?![a-z0-9])" if len(word) <= 4 else ""
    return re.compile(r"(?<![a-z0-9])" + re.escape(word) + tail, re.IGNORECASE)


@lru_cache(maxsize=8)
def _patterns(taxonomy: Taxonomy) -> dict[str, tuple[re.Pattern[str], ...]]:
    return {t.slug: tuple(_keyword_pattern(w) for w in t.keywords) for t in taxonomy.topics}


_CATEGORY_WEIGHT = 3
_TITLE_WEIGHT = 2
_ABSTRACT_WEIGHT = 1
_MIN_SCORE = 2


def topic_scores(taxonomy: Taxonomy, title: str, abstract: str,
                 categories: Sequence[str]) -> dict[str, int]:
    """Evidence for each topic: categories weigh most, then title words, then abstract words."""
    scores = dict.fromkeys(taxonomy.slugs, 0)
    wanted = {c.lower() for c in categories}
    for topic in taxonomy.topics:
        scores[topic.slug] += _CATEGORY_WEIGHT * sum(c.lower() in wanted
                                                     for c in topic.categories)
    for slug, patterns in _patterns(taxonomy).items():
        for pattern in patterns:
            if pattern.search(title):
                scores[slug] += _TITLE_WEIGHT
            if pattern.search(abstract):
                scores[slug] += _ABSTRACT_WEIGHT
    return scores


def guess_topics(title: str, abstract: str, categories: Sequence[str],
                 taxonomy: Taxonomy | None = None) -> list[str]:
    """1 to 3 topics, strongest first, ties in taxonomy order.

    A topic needs at least a title word, a category or two abstract words; when nothing
    reaches that, the single best-supported topic is kept so a card is never topic-less,
    and a paper with no evidence at all falls back to the taxonomy's fallback topic.
    """
    taxonomy = taxonomy or current()
    scores = topic_scores(taxonomy, title, abstract, categories)
    order = taxonomy.slugs
    ranked = sorted(order, key=lambda slug: (-scores[slug], order.index(slug)))
    chosen = [slug for slug in ranked if scores[slug] >= _MIN_SCORE][:MAX_TOPICS]
    if chosen:
        return chosen
    if scores[ranked[0]] > 0:
        return [ranked[0]]
    return [taxonomy.fallback_topic]
