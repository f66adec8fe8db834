"""A digest for a reader with a model: the model decides, topics nudge. Pure.

`digest.PaperIndex` ranks a reader by topics, keywords and authors alone, memoized for
everyone who chose the same. A reader with a model (newsletter/relevance/learn.py) is
ranked over every candidate instead, because topics are a prior, not a filter: each paper
scores `model.blend(topic points, affinity, named points)`, where the points are those of
the rules (the index's memoized ranking; keywords and authors the reader named weigh far
more than topics), and a paper no rule names enters the digest when the model
finds it likely enough (`LEARNED_FLOOR`). Revisions the reader did not ask for and papers
with an excluded keyword still never do.

The why-line says what counted: the topic, keyword and author reasons as before, and for a
paper the model likes, the paper the reader rated up (or said they like) that it resembles
most, or else their description. While a model has seen few ratings, the digest ends with
at most `TUNING` papers the model is least sure about, labelled so the reader knows a
rating there teaches it most (active learning, as Scholar Inbox does for its cold start).

A send ranks tens of thousands of readers with models, so a reader's scores are computed
as arrays over the edition's candidates, and Python objects are made only for the papers
that go into the digest.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from newsletter.digest import reasons as why
from newsletter.digest.selection import Interests, PaperIndex, Pick, Selection, excluded
from newsletter.relevance import model

# A paper nothing but the model points to enters at this score (the model's chance of an
# up-rating, nudged by topics, on blend's 0-100 scale). A day's best match for a one-line
# description starts at 30-40; at 45, P@10 on simulated readers fell by 0.04
# (docs/BENCHMARKS.md, "Relevance: does it learn?").
LEARNED_FLOOR = 30
# Beside topic, keyword and author reasons, the model's own is given for a paper it finds
# at least this likely.
LIKELY = 0.5
FEW_RATINGS = 20
TUNING = 2
TUNING_REASON = why.TUNING


@dataclass(frozen=True)
class Learned:
    """What a reader's model says about one edition's candidates (in `PaperIndex` order)."""

    affinity: np.ndarray  # chance of an up-rating per candidate; NaN: the paper has no vector
    ratings: int  # ratings the model has seen
    # The reason naming the reader's rated-up or liked paper a candidate most resembles,
    # if any (`reasons.resembles`).
    resembles: Callable[[int], str | None] = field(default=lambda _i: None, compare=False)
    # Whether the reader wrote a description: without one, the model speaks of the papers
    # they like (their library, author feed, liked and rated papers), not of their words.
    described: bool = True


def _reason(learned: Learned, i: int) -> str:
    return learned.resembles(i) or (why.DESCRIPTION if learned.described else why.LIKED)


@dataclass
class _Arrays:
    """Per index, computed once: the candidates' sort keys, and allowed masks by the
    exclusions readers chose (a handful of distinct ones an edition)."""

    revised: np.ndarray
    key_order: np.ndarray  # each candidate's rank by key, for ties
    allowed: dict[tuple[tuple[str, ...], bool], np.ndarray]


_ARRAYS: weakref.WeakKeyDictionary[PaperIndex, _Arrays] = weakref.WeakKeyDictionary()


def _arrays(index: PaperIndex) -> _Arrays:
    found = _ARRAYS.get(index)
    if found is None:
        keys = [paper.key for paper in index.candidates]
        key_order = np.empty(len(keys), dtype=np.int64)
        key_order[np.argsort(np.array(keys, dtype=object), kind="stable")] = np.arange(len(keys))
        found = _ARRAYS[index] = _Arrays(
            revised=np.array([paper.revised for paper in index.candidates], dtype=bool),
            key_order=key_order, allowed={})
    return found


def _allowed(index: PaperIndex, arrays: _Arrays, interests: Interests) -> np.ndarray:
    rule = (interests.exclude_keywords, interests.include_revised)
    mask = arrays.allowed.get(rule)
    if mask is None:
        mask = arrays.allowed[rule] = np.array(
            [not excluded(paper, interests) for paper in index.candidates], dtype=bool)
    return mask


def select(index: PaperIndex, interests: Interests, learned: Learned,
           already_sent: frozenset[int] = frozenset()) -> Selection:
    """The reader's digest, best first, cut at their maximum; then, while their model is
    young, up to TUNING papers it is least sure about."""
    arrays = _arrays(index)
    chance = learned.affinity
    points = np.zeros(len(index.candidates), dtype=np.float64)
    named_points = np.zeros(len(index.candidates), dtype=np.float64)
    by_rules: dict[int, Pick] = {}
    for pick in index.ranked(interests):
        i = index.position[pick.candidate.paper_id]
        points[i] = pick.score - pick.named
        named_points[i] = pick.named
        by_rules[i] = pick
    allowed = _allowed(index, arrays, interests)
    if already_sent:
        allowed = allowed.copy()
        allowed[[index.position[p] for p in already_sent if p in index.position]] = False
    total = model.blend_many(points, chance, named_points)
    named = np.zeros(len(index.candidates), dtype=bool)
    named[list(by_rules)] = True
    has_vector = ~np.isnan(chance)
    eligible = np.flatnonzero(allowed & (named | (has_vector & (total >= LEARNED_FLOOR))))
    # digest.rank's order: score, then new before revised, then key.
    order = eligible[np.lexsort((arrays.key_order[eligible], arrays.revised[eligible],
                                 -total[eligible]))]
    limit = max(1, interests.max_papers)
    chosen = []
    for i in order[:limit]:
        rule = by_rules.get(int(i))
        if not has_vector[i]:  # no vector yet: the rules alone, as before
            assert rule is not None
            chosen.append(rule)
            continue
        reasons = rule.reasons if rule else ()
        if rule is None or chance[i] >= LIKELY:  # the model is why it is here, or agrees
            reasons = (_reason(learned, int(i)), *reasons)
        chosen.append(Pick(candidate=index.candidates[i], score=int(total[i]),
                           reasons=reasons))
    if learned.ratings < FEW_RATINGS and chosen:
        open_question = np.where(allowed & has_vector, chance, np.nan)
        open_question[order[:limit]] = np.nan
        chosen += [Pick(candidate=index.candidates[i], score=int(total[i]),
                        reasons=(TUNING_REASON,))
                   for i in model.unsure(open_question, TUNING)]
    return Selection(picks=tuple(chosen), more=max(0, len(order) - limit))
