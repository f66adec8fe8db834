"""Offline topics: does the tagger file papers as the LLM's cards do, with no LLM?

Two checks, each run for the old keyword counting (the baseline, copied below as it was)
and for today's `newsletter.topics.tagger`, in the same run:

1. The example cards (tests/fixtures/topics/example_cards.json, copied from the project's
   example cards): 8 cards of the seed site (the issue said 36; there are 8), 17 topic
   labels, 1-3 a card.
   None of their papers is in the corpus, so the tagger reads the card's title and
   summary, without categories. Micro-F1, precision and recall over the labels.
2. arXiv categories as weak labels: cs.CV and eess.IV say vision, cs.CL nlp, cs.RO
   robotics, math.OC optimization, stat.TH and math.ST theory. The tagger gets the title
   and abstract only (categories would give the answer away); its topics among those five
   are scored against the paper's. Incomplete labels (a cs.LG paper on images is vision
   too), so the figures are lower than true ones, alike for both taggers. On the sample of
   the repository (435 papers of two days), or with --full on the 7,761 papers of the
   corpus's last 23 days: none of them is in the reference sample the tagger ships, which
   comes from the first 40.

Then the time per paper, and the one-off cost of making a taxonomy ready.

    .venv/bin/python -m bench.topics [--full]
    .venv/bin/python -m bench.topics --build-data   # rebuilds newsletter/topics/words.npz
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import random
import re
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from newsletter.topics import tagger
from newsletter.topics.taxonomy import Taxonomy, built_in

ROOT = Path(__file__).resolve().parent.parent
CARDS = ROOT / "tests" / "fixtures" / "topics" / "example_cards.json"
SAMPLE = ROOT / "tests" / "fixtures" / "corpus" / "arxiv_ml_sample.jsonl.gz"
CORPUS = ROOT / "bench" / "corpus" / "arxiv_ml_days.jsonl.gz"  # see its README
REFERENCE_DAYS = 40  # the days words.npz is built from; the checks use the later ones
REFERENCE_PAPERS = 2000
MIN_FREQUENCY = 5  # a word in fewer papers of the 40 days is left out of the vocabulary
WEAK_LABELS = {"cs.CV": "vision", "eess.IV": "vision", "cs.CL": "nlp", "cs.RO": "robotics",
               "math.OC": "optimization", "stat.TH": "theory", "math.ST": "theory"}
TARGET = 0.70

Tagger = Callable[[str, str, Sequence[str]], list[str]]


# The baseline: the keyword counting the tagger replaced, as it was.
def _keyword_pattern(word: str) -> re.Pattern[str]:
    tail = r"s?(?![a-z0-9])" if len(word) <= 4 else ""
    return re.compile(r"(?<![a-z0-9])" + re.escape(word) + tail, re.IGNORECASE)


def keyword_tagger(taxonomy: Taxonomy) -> Tagger:
    patterns = {t.slug: [_keyword_pattern(w) for w in t.keywords] for t in taxonomy.topics}

    def guess(title: str, abstract: str, categories: Sequence[str]) -> list[str]:
        scores = dict.fromkeys(taxonomy.slugs, 0)
        wanted = {c.lower() for c in categories}
        for topic in taxonomy.topics:
            scores[topic.slug] += 3 * sum(c.lower() in wanted for c in topic.categories)
            for pattern in patterns[topic.slug]:
                scores[topic.slug] += 2 * bool(pattern.search(title))
                scores[topic.slug] += bool(pattern.search(abstract))
        order = taxonomy.slugs
        ranked = sorted(order, key=lambda slug: (-scores[slug], order.index(slug)))
        chosen = [slug for slug in ranked if scores[slug] >= 2][:3]
        if chosen:
            return chosen
        return [ranked[0]] if scores[ranked[0]] > 0 else [taxonomy.fallback_topic]

    return guess


def new_tagger(taxonomy: Taxonomy) -> Tagger:
    return lambda title, abstract, categories: tagger.guess_topics(
        title, abstract, categories, taxonomy)


def micro_f1(pairs: Iterable[tuple[Sequence[str], Sequence[str]]]) -> tuple[float, float, float]:
    """(F1, precision, recall) over all (predicted, true) label pairs together."""
    hit = predicted = true = 0
    for guess, labels in pairs:
        hit += len(set(guess) & set(labels))
        predicted += len(set(guess))
        true += len(set(labels))
    precision = hit / predicted if predicted else 0.0
    recall = hit / true if true else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return f1, precision, recall


def load_cards() -> list[dict[str, Any]]:
    return json.loads(CARDS.read_text(encoding="utf-8"))


def load_papers(path: Path) -> list[dict[str, Any]]:
    with gzip.open(path, "rt", encoding="utf-8") as lines:
        return [json.loads(line) for line in lines]


def later_days(papers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    reference = set(sorted({p["date"] for p in papers})[:REFERENCE_DAYS])
    return [p for p in papers if p["date"] not in reference]


def on_cards(guess: Tagger, cards: list[dict[str, Any]]) -> tuple[float, float, float]:
    return micro_f1((guess(c["title"], c["summary"], ()), c["topics"]) for c in cards)


def on_weak_labels(guess: Tagger, papers: list[dict[str, Any]]
                   ) -> tuple[tuple[float, float, float], float, int]:
    """Micro-F1 against the categories' topics, topics per paper, papers with a label."""
    named = set(WEAK_LABELS.values())
    pairs, topics, labelled = [], 0, 0
    for p in papers:
        topics_here = guess(p["title"], p["abstract"], ())
        topics += len(topics_here)
        labels = {WEAK_LABELS[c] for c in p["categories"] if c in WEAK_LABELS}
        labelled += bool(labels)
        pairs.append(([t for t in topics_here if t in named], labels))
    return micro_f1(pairs), topics / len(papers), labelled


def per_paper_ms(guess: Tagger, papers: list[dict[str, Any]]) -> float:
    start = time.perf_counter()
    for p in papers:
        guess(p["title"], p["abstract"], p["categories"])
    return (time.perf_counter() - start) / len(papers) * 1000


def machine() -> str:
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (f"{platform.machine()}, {os.cpu_count()} cores, {memory:.0f} GiB, "
            f"{platform.platform(terse=True)}, Python {platform.python_version()}")


def run(full: bool) -> None:
    taxonomy = built_in()
    start = time.perf_counter()
    tagger._model(taxonomy)
    ready = time.perf_counter() - start
    taggers = {"keyword counting (old)": keyword_tagger(taxonomy),
               "words + seeds (new)": new_tagger(taxonomy)}
    cards = load_cards()
    labels = sum(len(c["topics"]) for c in cards)
    sample = load_papers(SAMPLE)
    print(f"machine: {machine()}")
    print(f"\n1. The example cards: {len(cards)} cards, {labels} labels (target micro-F1 "
          f">= {TARGET:.2f})")
    for name, guess in taggers.items():
        f1, precision, recall = on_cards(guess, cards)
        topics = sum(len(guess(c["title"], c["summary"], ())) for c in cards) / len(cards)
        print(f"  {name:<24} micro-F1 {f1:.3f} (precision {precision:.3f}, recall "
              f"{recall:.3f}), {topics:.2f} topics a card")
    sets = [("sample", sample)]
    if full:
        sets.append(("corpus's last 23 days", later_days(load_papers(CORPUS))))
    for where, papers in sets:
        print(f"\n2. arXiv categories as weak labels, {where}: {len(papers):,} papers, "
              "categories not given to the tagger")
        for name, guess in taggers.items():
            (f1, precision, recall), topics, labelled = on_weak_labels(guess, papers)
            print(f"  {name:<24} micro-F1 {f1:.3f} (precision {precision:.3f}, recall "
                  f"{recall:.3f}) on {labelled:,} labelled; {topics:.2f} topics a paper")
    print(f"\n3. Time, {len(sample)} papers with their categories")
    for name, guess in taggers.items():
        per_paper_ms(guess, sample[:20])  # warm: caches and the first-use cost
        print(f"  {name:<24} {per_paper_ms(guess, sample):.3f} ms a paper")
    print(f"  making the ML taxonomy ready (once per process): {ready:.2f} s")


def build_data() -> None:
    """words.npz: the vocabulary and document frequencies of the corpus's first 40 days,
    and 2,000 of their papers as word counts with their categories."""
    papers = load_papers(CORPUS)
    days = sorted({p["date"] for p in papers})[:REFERENCE_DAYS]
    kept = set(days)
    reference = [p for p in papers if p["date"] in kept]

    def words_of(paper: dict[str, Any]) -> list[str]:
        title = tagger._TOKEN.findall(paper["title"].lower())
        abstract = tagger._TOKEN.findall(paper["abstract"].lower())
        # The title twice, as the tagger counts it; a word has a letter and two characters.
        return [w for w in (*title, *title, *abstract)
                if len(w) >= 2 and any(ch.isalpha() for ch in w)]

    frequency: Counter[str] = Counter()
    for paper in reference:
        frequency.update(set(words_of(paper)))
    vocabulary = sorted(w for w, n in frequency.items() if n >= MIN_FREQUENCY)
    index = {w: i for i, w in enumerate(vocabulary)}
    chosen = sorted(random.Random(0).sample(range(len(reference)), REFERENCE_PAPERS))
    indptr, indices, counts, categories = [0], [], [], []
    for at in chosen:
        here = Counter(index[w] for w in words_of(reference[at]) if w in index)
        for word in sorted(here):
            indices.append(word)
            counts.append(min(here[word], 255))
        indptr.append(len(indices))
        # arXiv's own categories only: some papers list MSC or ACM classes beside them.
        categories.append(" ".join(c for c in reference[at]["categories"]
                                   if re.fullmatch(r"[a-z-]+\.[A-Za-z-]+", c)))
    source = (f"{CORPUS.name}, first {len(days)} days ({days[0]} to {days[-1]}), "
              f"{len(reference):,} papers; {REFERENCE_PAPERS:,} of them as the sample")
    path = Path(tagger.__file__).with_name(tagger.DATA_FILE)
    np.savez_compressed(
        path, vocabulary=np.str_("\n".join(vocabulary)),
        frequency=np.array([frequency[w] for w in vocabulary], dtype=np.uint16),
        papers=np.int64(len(reference)), indptr=np.array(indptr, dtype=np.int32),
        indices=np.array(indices, dtype=np.uint16), counts=np.array(counts, dtype=np.uint8),
        categories=np.str_("\n".join(categories)), source=np.str_(source))
    print(f"wrote {path} ({path.stat().st_size:,} bytes): {len(vocabulary):,} words; {source}")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.topics", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", action="store_true",
                        help="also check the corpus's last 23 days (bench/corpus)")
    parser.add_argument("--build-data", action="store_true",
                        help="rebuild newsletter/topics/words.npz from the corpus")
    args = parser.parse_args(argv)
    if args.build_data:
        build_data()
    else:
        run(args.full)


if __name__ == "__main__":
    main(sys.argv[1:])
