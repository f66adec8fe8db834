"""The offline writer: a card made of the abstract's own sentences, with no model at all.

Used when there is no OPENAI_API_KEY. Deterministic: the same paper always gives the same
card. Each field takes the sentences whose wording marks them as method, result or
implication, and falls back on position (abstracts open with the problem and close with
the outcome). Topics come from arXiv categories and keywords (`taxonomy.guess_topics`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from newsletter.cards.card import KEY_POINTS, CardDraft, PaperText, WriteResult
from newsletter.topics.tagger import guess_topics

MODEL = "offline"
PROMPT_VERSION = "extractive-v1"

_ABBREVIATIONS = frozenset({
    "e.g", "i.e", "al", "etc", "vs", "fig", "figs", "eq", "eqs", "sec", "approx", "cf",
    "resp", "no", "dr", "prof", "ref", "refs", "tab", "appx", "ca", "st",
})
# A sentence ends at . ! or ? followed by space and something that can start a sentence.
_BOUNDARY = re.compile(r"[.!?](?=[\"')\]]*\s+[\"'(\[]?[A-Z0-9\\$])")

_STRONG_METHOD = re.compile(
    r"\b(we (propose|introduce|present|develop|design|formulate|construct|build|derive|"
    r"adopt|leverage|employ|cast|frame|combine|extend)|our (method|approach|framework|model|"
    r"algorithm|system|methodology))\b", re.IGNORECASE)
_STRONG_RESULT = re.compile(
    r"\b(experiments?|outperform\w*|surpass\w*|state-of-the-art|sota|we (show|find|observe|"
    r"demonstrate)|results (show|indicate|demonstrate|suggest))\b|\d+(\.\d+)?\s?(%|x\b)",
    re.IGNORECASE)
_STRONG_IMPLICATION = re.compile(
    r"\b(implications?|paves? the way|future (work|research)|opens? (up )?(new )?"
    r"(avenues|directions)|practitioners?|step toward\w*|we release|code (is|and data are) "
    r"(publicly )?available)\b", re.IGNORECASE)

# (pattern, weight) per field: a strong phrase says more than a common word.
_CUES: dict[str, tuple[tuple[re.Pattern[str], int], ...]] = {
    "methodology": ((_STRONG_METHOD, 3), (re.compile(
        r"\b(framework|approach|algorithm|architecture|pipeline|method|technique|procedure|"
        r"objective|loss|module|we (use|train|model)|based on)\b", re.IGNORECASE), 1)),
    "results": ((_STRONG_RESULT, 3), (re.compile(
        r"\b(achiev\w*|improv\w*|benchmarks?|accuracy|evaluat\w*|empirical\w*|"
        r"demonstrat\w*|shows?|shown|reduc\w*|gains?|faster|match\w*|validat\w*)\b",
        re.IGNORECASE), 1)),
    "implications": ((_STRONG_IMPLICATION, 3), (re.compile(
        r"\b(suggest\w*|enabl\w*|potential\w*|insights?|applications?|broad\w*|impact\w*|"
        r"promising|highlight\w*|underscor\w*|generali[sz]\w*|releas\w*|available|"
        r"can be (used|applied)|useful|valuable|important|support)\b", re.IGNORECASE), 1)),
}

SUMMARY_WORDS = 160
FIELD_WORDS = {"methodology": 70, "results": 60, "implications": 60}
KEY_POINT_WORDS = 25


def _tidy(text: str) -> str:
    return " ".join(text.split())


def split_sentences(text: str) -> list[str]:
    """Sentences of an abstract; abbreviations and initials do not end one."""
    text = _tidy(text)
    sentences: list[str] = []
    start = 0
    for match in _BOUNDARY.finditer(text):
        end = match.end()
        words = text[start:end].split()
        last = words[-1].rstrip(".!?\"')]").lower() if words else ""
        if match.group() == "." and (last in _ABBREVIATIONS or re.fullmatch(r"[a-z]", last)):
            continue
        sentences.append(text[start:end].strip())
        start = end
    tail = text[start:].strip()
    if tail:
        sentences.append(tail)
    return [s for s in sentences if s]


def _words(text: str) -> int:
    return len(text.split())


def _shorten(sentence: str, limit: int) -> str:
    """At most `limit` words: cut at a clause break when there is one, else at a word."""
    words = sentence.split()
    if len(words) <= limit:
        return sentence
    head = " ".join(words[:limit])
    cut = max(head.rfind(", "), head.rfind("; "), head.rfind(": "))
    if cut >= len(" ".join(words[: limit // 3])):
        head = head[:cut]
    return head.rstrip(" ,;:.") + "…"


def _take(sentences: Sequence[str], indices: Sequence[int], budget: int) -> str:
    """The sentences at `indices`, in document order, up to a word budget (at least one)."""
    chosen: list[str] = []
    used = 0
    for i in sorted(indices):
        words = _words(sentences[i])
        if chosen and used + words > budget:
            break
        chosen.append(sentences[i])
        used += words
    return _shorten(" ".join(chosen), budget)


def _score(sentences: Sequence[str], field: str) -> list[int]:
    """Cue weight of each sentence, nudged by where such sentences sit in an abstract."""
    last = len(sentences) - 1
    scores = []
    for i, sentence in enumerate(sentences):
        score = sum(weight * len(p.findall(sentence)) for p, weight in _CUES[field])
        if score:
            # The opening sentence states the problem; results and implications come late.
            if i == 0 and last > 0:
                score -= 2
            elif field == "results" and i * 2 >= last:
                score += 1
            elif field == "implications" and i >= last - 1:
                score += 2
        scores.append(max(score, 0))
    return scores


def _pick(sentences: Sequence[str], field: str, taken: set[int], fallback: int) -> list[int]:
    """The indices for one field: the two best cue matches, else a positional sentence."""
    scores = _score(sentences, field)
    ranked = sorted((i for i, s in enumerate(scores) if s > 0 and i not in taken),
                    key=lambda i: (-scores[i], i))
    if not ranked:  # cue sentences already used elsewhere are better than none
        ranked = sorted((i for i, s in enumerate(scores) if s > 0), key=lambda i: (-scores[i], i))
    return ranked[:2] or [fallback]


def extract_card(title: str, abstract: str, categories: Sequence[str]) -> CardDraft:
    """The offline card of a paper. Pure and deterministic."""
    title, abstract = _tidy(title), _tidy(abstract)
    topics = guess_topics(title, abstract, categories)
    sentences = split_sentences(abstract)
    if not sentences:
        sentences = [title.rstrip(".") + "." if title else "Untitled paper."]
    last = len(sentences) - 1
    taken: set[int] = set()
    picks: dict[str, list[int]] = {}
    # Results first: they are the most distinctive cue, and the scarcest.
    for field, fallback in (("results", max(0, last - 1)), ("methodology", min(1, last)),
                            ("implications", last)):
        picks[field] = _pick(sentences, field, taken, fallback)
        taken.update(picks[field])

    summary_indices = []
    used = 0
    for i, sentence in enumerate(sentences):
        if summary_indices and used + _words(sentence) > SUMMARY_WORDS:
            break
        summary_indices.append(i)
        used += _words(sentence)

    # Key points: the problem, then the best method, result and implication sentence,
    # then whatever else the abstract says, in order.
    order = [0, picks["methodology"][0], picks["results"][0], picks["implications"][0],
             *range(len(sentences))]
    points: list[str] = []
    for i in order:
        point = _shorten(sentences[i], KEY_POINT_WORDS)
        if point not in points:
            points.append(point)
        if len(points) == KEY_POINTS:
            break
    fillers = [f"The paper is titled “{title}”." if title else "The paper has no title.",
               f"It is listed under {', '.join(categories)} on arXiv." if categories
               else "It lists no arXiv category.",
               "The abstract gives no further detail.", "See the abstract for details."]
    for filler in fillers:
        if len(points) == KEY_POINTS:
            break
        if filler not in points:
            points.append(filler)

    return CardDraft(
        topics=topics,
        key_points=points,
        summary=_take(sentences, summary_indices, SUMMARY_WORDS + 40),
        methodology=_take(sentences, picks["methodology"], FIELD_WORDS["methodology"]),
        results=_take(sentences, picks["results"], FIELD_WORDS["results"]),
        implications=_take(sentences, picks["implications"], FIELD_WORDS["implications"]),
    )


class OfflineWriter:
    """The `Writer` used without an API key: no network, no cost, never fails."""

    source = "offline"
    model = MODEL
    prompt_version = PROMPT_VERSION
    concurrency = 1

    def write(self, paper: PaperText) -> WriteResult:
        draft = extract_card(paper.title, paper.abstract, paper.categories)
        return WriteResult(source="offline", model=MODEL, prompt_version=PROMPT_VERSION,
                           draft=draft, attempts=1, cost_usd=0.0)

    def close(self) -> None:
        pass

    def __enter__(self) -> OfflineWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
