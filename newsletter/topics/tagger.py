"""The offline tagger: 1 to 3 topics for a paper without an LLM, for any taxonomy.

The taxonomy file is all it knows of a topic (name, description, keywords, categories);
no paper is ever labelled by hand. A topic's score for a paper adds up:

1. Its own words, found in the paper (30% of the score). Keywords and the name are stems
   or phrases, as the file documents ("quantiz" finds quantization); the description's
   words count at half weight, cut to a stem ("networks" finds network), a hyphenated one
   kept whole ("cross-modal" is not "cross-entropy"), the common ones ("models", "data")
   left out. Each counts by its inverse document frequency in arXiv's ML listings:
   "federated" is strong evidence, "efficient" (in a third of all abstracts) weak. So a
   statistics paper with "an efficient algorithm" is no longer Efficient ML.
2. Likeness to the papers its words pick out of a reference sample (70%): 2,000 real arXiv
   ML papers ship with the package (`words.npz`). The papers where a topic's words or
   listed categories say it strongly, and near as strongly as their best topic's, are its
   seeds; their mean TF-IDF row, less the sample's mean, is its centroid: the words the
   topic's papers use besides the file's ("perplexity" and "question answering" for NLP,
   because cs.CL papers are its seeds). This reaches the papers that never use a keyword,
   which is most of the second topics a card carries. A topic with fewer than
   `_MIN_SEEDS` seeds keeps its own words as its centroid.
3. A category the topic lists: one typical paper's best score. Editors are right more
   often than words.

Both parts are measured in units of what a typical reference paper's best topic gets, so
any taxonomy adds them alike. Kept: the best topic, then each other one above `_FLOOR` and
above `_RATIO` of the best, three at most. `_FLOOR` is set so the corpus gets two topics
per paper on average, as the cards the LLM writes do (17 topics on the 8 example cards);
no label chose it. bench/topics.py measures all of this against the old keyword counting.

Pure: the data file is read once per process and each taxonomy is made ready once, at
its first paper (about 0.3 s), cached by identity; a paper then takes 0.2-0.3 ms.
`python -m bench.topics --build-data` rebuilds `words.npz` from the corpus.
"""

from __future__ import annotations

import bisect
import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import numpy as np

from newsletter.topics.taxonomy import MAX_TOPICS, Taxonomy, Topic, current

DATA_FILE = "words.npz"
_TOKEN = re.compile(r"[a-z0-9]+")

# Chosen on principles, then checked to be flat around these values on the corpus's
# arXiv categories (bench/topics.py), never fitted to labels.
_KEYWORD = 1.0  # a keyword or the name: what the operator says the topic is
_DESCRIPTION = 0.5  # a description word: prose, also where the topic is not
_GENERIC = 0.2  # a description word in more than this share of papers says nothing
_TITLE = 1.0  # a term in the title adds this to log(1 + its hits in the abstract)
_CATEGORY = 1.0  # a listed category: a typical paper's best score
_WORDS_SHARE = 0.3  # own words against likeness to the seeds: likeness ranked better
_SEED_EVIDENCE = 0.5  # a seed has at least half a typical paper's best evidence...
_SEED_RATIO = 0.6  # ...and 60% of its own best topic's: a paper seeds its 1-3 topics
_MIN_SEEDS = 10  # fewer seeds than this make a noisy centroid: own words instead
_FLOOR = 0.35  # a second or third topic needs this: two topics a paper, on the corpus
_RATIO = 0.2  # and a fifth of the best's, so a very clear paper keeps to its topic


def _stem(word: str) -> str:
    """A crude English stem for description and name words ("networks" -> "network").

    Keywords are stems already; a description is prose, and its words should find their
    other forms, like the keywords do.
    """
    for suffix in ("izations", "ization", "isations", "isation", "ations", "ation",
                   "ences", "ence", "ances", "ance", "ities", "ity", "ings", "ing", "ers",
                   "er", "ies", "es", "ed", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 5:
            return word[:-len(suffix)]
    return word


@dataclass(frozen=True)
class _Words:
    """The package's word statistics: the vocabulary, how many papers use each word, and
    the reference sample as word counts (a CSR matrix's parts)."""

    vocabulary: tuple[str, ...]
    index: dict[str, int]
    idf: np.ndarray  # per vocabulary word
    papers: int  # how many papers the frequencies were counted in
    frequency: np.ndarray  # per vocabulary word: papers that use it
    indptr: np.ndarray
    indices: np.ndarray
    counts: np.ndarray
    categories: tuple[frozenset[str], ...]  # per reference paper, lowercased


@lru_cache(maxsize=1)
def _words() -> _Words:
    with resources.as_file(resources.files("newsletter.topics") / DATA_FILE) as path, \
            np.load(path) as data:
        vocabulary = tuple(str(data["vocabulary"]).split("\n"))
        frequency = data["frequency"].astype(np.float64)
        papers = int(data["papers"])
        categories = tuple(frozenset(c.lower() for c in line.split(" ") if c)
                           for line in str(data["categories"]).split("\n"))
        return _Words(
            vocabulary=vocabulary,
            index={w: i for i, w in enumerate(vocabulary)},
            idf=np.log((1 + papers) / (1 + frequency)) + 1,
            papers=papers, frequency=frequency,
            indptr=data["indptr"].astype(np.int64), indices=data["indices"].astype(np.int32),
            counts=data["counts"].astype(np.float32), categories=categories)


# A term is a tuple of stems, matched on consecutive words: every stem but the last must
# be the whole word, the last may be the start of one (as the file's keywords are written),
# except that a short term (4 letters or fewer, "gan") must be whole, plural allowed.
Term = tuple[str, ...]


def _term(text: str) -> Term:
    return tuple(_TOKEN.findall(text.lower()))


def _matches(term: Term, position: int, tokens: Sequence[str]) -> bool:
    if position + len(term) > len(tokens):
        return False
    *inner, last = term
    for offset, stem in enumerate(inner):
        if tokens[position + offset] != stem:
            return False
    word = tokens[position + len(inner)]
    if sum(map(len, term)) + len(inner) <= 4:
        return word == last or word == last + "s"
    return word.startswith(last)


def _word_matches(term: Term, words: _Words) -> list[list[int]]:
    """For each stem of a term, the vocabulary words it finds."""
    found = []
    for position, stem in enumerate(term):
        if position < len(term) - 1 or sum(map(len, term)) + len(term) - 1 <= 4:
            found.append([words.index[w] for w in (stem, stem + "s") if w in words.index])
        else:
            # The vocabulary is sorted: the words a stem starts are one run of it.
            start = bisect.bisect_left(words.vocabulary, stem)
            end = bisect.bisect_left(words.vocabulary, stem + "\U0010ffff", lo=start)
            found.append(list(range(start, end)))
    return found


def _term_idf(found: list[list[int]], words: _Words) -> float:
    """How rare a term is: a phrase at least as rare as its rarest word, a stem as common
    as all the words it finds together (taken as independent). A word the listings never
    use is rarer than any they do."""
    rarest = 0.0
    for ids in found:
        share = 1 - float(np.prod(1 - words.frequency[ids] / words.papers)) if ids else 0.0
        rarest = max(rarest, math.log((1 + words.papers) / (1 + share * words.papers)) + 1)
    return rarest


@dataclass
class _Model:
    """A taxonomy made ready to tag: its terms with their weights, and its centroids."""

    slugs: tuple[str, ...]
    fallback: str
    terms: list[tuple[int, Term, float]]  # (topic, term, weight x idf)
    by_first: dict[str, list[int]]  # a first stem -> its terms' positions in `terms`
    longest_first: int
    categories: tuple[frozenset[str], ...]
    centroids: np.ndarray  # topics x vocabulary, unit rows
    likeness_scale: float  # the best topic's likeness and evidence in a typical reference
    evidence_scale: float  # paper: the two kinds of score are added in these units
    seeds: tuple[int, ...]  # per topic: reference papers its centroid comes from
    _first: dict[str, tuple[int, ...]]  # token -> terms whose first stem it may start

    def candidates(self, token: str) -> tuple[int, ...]:
        """The terms whose first stem this word matches (cached: words repeat)."""
        known = self._first.get(token)
        if known is None:
            known = tuple(t for k in range(1, min(len(token), self.longest_first) + 1)
                          for t in self.by_first.get(token[:k], ()))
            if len(self._first) < 200_000:  # bounded: a long-lived worker sees many words
                self._first[token] = known
        return known


def _topic_terms(topic: Topic, words: _Words) -> dict[Term, float]:
    """A topic's terms and how much each says: keywords and the name fully, the
    description's words (stemmed, the common ones left out) at `_DESCRIPTION`."""
    weights: dict[Term, float] = {}
    for keyword in (*topic.keywords, topic.name):
        term = _term(keyword)
        if term:
            weights[term] = max(weights.get(term, 0.0), _KEYWORD)
    # A hyphenated word stays one phrase: "cross-modal" is not about "cross" (entropy).
    prose = f"{topic.name} {topic.description}".lower()
    for compound in re.findall(r"[a-z0-9]+(?:-[a-z0-9]+)*", prose):
        parts = compound.split("-")
        if len(parts) == 1 and (not parts[0][0].isalpha() or len(parts[0]) < 3):
            continue
        at = words.index.get(parts[0])
        if len(parts) == 1 and at is not None and \
                words.frequency[at] > _GENERIC * words.papers:
            continue  # "learning", "models", "and": most papers have them
        term = (*parts[:-1], _stem(parts[-1]))
        weights[term] = max(weights.get(term, 0.0), _DESCRIPTION)
    return weights


def _tfidf(ids: np.ndarray, counts: np.ndarray, words: _Words) -> np.ndarray:
    values = np.log1p(counts) * words.idf[ids]
    norm = float(np.sqrt(values @ values))
    return values / norm if norm else values


@lru_cache(maxsize=8)
def _model(taxonomy: Taxonomy) -> _Model:
    import scipy.sparse as sp  # only here: once per taxonomy, not per paper

    words = _words()
    topics = taxonomy.topics
    terms: list[tuple[int, Term, float]] = []
    found: list[list[list[int]]] = []
    for number, topic in enumerate(topics):
        for term, weight in _topic_terms(topic, words).items():
            matched = _word_matches(term, words)
            terms.append((number, term, weight * _term_idf(matched, words)))
            found.append(matched)
    by_first: dict[str, list[int]] = {}
    for position, (_, term, _) in enumerate(terms):
        by_first.setdefault(term[0], []).append(position)
    categories = tuple(frozenset(c.lower() for c in t.categories) for t in topics)

    # The reference sample: word counts, and TF-IDF rows (log counts x idf, unit length).
    counts = sp.csr_matrix((words.counts, words.indices, words.indptr),
                           shape=(len(words.categories), len(words.vocabulary)))
    rows = counts.copy()
    np.log1p(rows.data, out=rows.data)
    rows = rows @ sp.diags(words.idf)
    rows = sp.diags(1 / np.maximum(np.sqrt(rows.multiply(rows).sum(axis=1).A1), 1e-12)
                    ) @ rows

    # Each reference paper's evidence for each topic, from its word counts: a phrase counts
    # as often as its rarest word (the sample keeps counts, not word order).
    evidence = np.zeros((counts.shape[0], len(topics)))
    profiles = np.zeros((len(topics), counts.shape[1]))
    for (number, _, weight), matched in zip(terms, found, strict=True):
        if not all(matched):
            continue
        per_word = np.column_stack([counts[:, ids].sum(axis=1).A1 for ids in matched])
        evidence[:, number] += weight * np.log1p(per_word.min(axis=1))
        for ids in matched:
            profiles[number, ids] += weight / len(ids) ** 0.5
    evidence_scale = max(float(np.median(evidence.max(axis=1))), 1e-6)
    evidence /= evidence_scale
    for number, wanted in enumerate(categories):
        if wanted:
            listed = np.array([bool(wanted & c) for c in words.categories])
            evidence[listed, number] += _CATEGORY

    # A topic's seeds: the papers whose evidence for it is strong, and near their best
    # topic's (a paper is the seed of each topic it would be tagged with).
    best = evidence.max(axis=1)
    mean = np.asarray(rows.mean(axis=0)).ravel()
    centroids = np.zeros_like(profiles)
    seeds = []
    for number in range(len(topics)):
        chosen = np.flatnonzero((evidence[:, number] >= _SEED_EVIDENCE)
                                & (evidence[:, number] >= _SEED_RATIO * best))
        seeds.append(len(chosen))
        profile = profiles[number] / max(np.linalg.norm(profiles[number]), 1e-12)
        if len(chosen) >= _MIN_SEEDS:
            centroid = np.asarray(rows[chosen].mean(axis=0)).ravel() - mean
            centroid /= max(np.linalg.norm(centroid), 1e-12)
            centroids[number] = centroid
        else:
            centroids[number] = profile

    likeness = np.asarray(rows @ centroids.T)
    return _Model(
        slugs=taxonomy.slugs, fallback=taxonomy.fallback_topic, terms=terms,
        by_first=by_first, longest_first=max((len(t[1][0]) for t in terms), default=0),
        categories=categories, centroids=centroids.astype(np.float32),
        likeness_scale=max(float(np.median(likeness.max(axis=1))), 1e-6),
        evidence_scale=evidence_scale,
        seeds=tuple(seeds), _first={})


def _evidence(model: _Model, title: Sequence[str], abstract: Sequence[str]) -> np.ndarray:
    """Each topic's own-words evidence in one paper: per term, its weight times
    log(1 + hits in the abstract), plus `_TITLE` when the title has it."""
    hits: Counter[int] = Counter()
    titled: set[int] = set()
    for tokens, title_words in ((abstract, False), (title, True)):
        for position, token in enumerate(tokens):
            for at in model.candidates(token):
                if _matches(model.terms[at][1], position, tokens):
                    if title_words:
                        titled.add(at)
                    else:
                        hits[at] += 1
    evidence = np.zeros(len(model.slugs))
    for at in hits.keys() | titled:
        topic, _, weight = model.terms[at]
        evidence[topic] += weight * (math.log1p(hits[at]) + _TITLE * (at in titled))
    return evidence


def topic_scores(title: str, abstract: str, categories: Sequence[str],
                 taxonomy: Taxonomy | None = None) -> dict[str, float]:
    """Each topic's score for a paper, in units of a typical paper's best topic (0 when
    nothing at all speaks for it)."""
    model = _model(taxonomy or current())
    title_tokens = _TOKEN.findall(title.lower())
    abstract_tokens = _TOKEN.findall(abstract.lower())
    words = _words()
    counts = Counter(words.index[t] for t in (*title_tokens, *title_tokens, *abstract_tokens)
                     if t in words.index)
    evidence = _evidence(model, title_tokens, abstract_tokens) / model.evidence_scale
    score = _WORDS_SHARE * evidence
    wanted = {c.lower() for c in categories}
    listed = np.array([bool(topic & wanted) for topic in model.categories])
    if counts:
        ids = np.fromiter(counts.keys(), dtype=np.int64, count=len(counts))
        row = _tfidf(ids, np.fromiter(counts.values(), dtype=np.float64, count=len(counts)),
                     words)
        likeness = (1 - _WORDS_SHARE) * np.maximum(
            model.centroids[:, ids] @ row / model.likeness_scale, 0)
        # With no word of any topic and no category, likeness is all there is: it counts
        # only as strong as a second topic must be, not as the noise of "see" or "which".
        if evidence.any() or listed.any() or likeness.max() >= _FLOOR:
            score += likeness
    return dict(zip(model.slugs, (score + _CATEGORY * listed).tolist(), strict=True))


def guess_topics(title: str, abstract: str, categories: Sequence[str],
                 taxonomy: Taxonomy | None = None) -> list[str]:
    """1 to MAX_TOPICS topics, strongest first, ties in taxonomy order; never empty.

    The best topic, then those within `_RATIO` of it. A paper with nothing at all for any
    topic (no known word, keyword or category) is filed under the fallback topic.
    """
    taxonomy = taxonomy or current()
    scores = topic_scores(title, abstract, categories, taxonomy)
    order = taxonomy.slugs
    ranked = sorted(order, key=lambda slug: (-scores[slug], order.index(slug)))
    best = scores[ranked[0]]
    if best <= 0:
        return [taxonomy.fallback_topic]
    cut = max(_FLOOR, _RATIO * best)
    return [ranked[0], *(slug for slug in ranked[1:] if scores[slug] >= cut)][:MAX_TOPICS]
